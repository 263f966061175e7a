// Bulk operations on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { bulkSuite } from "./conformance/bulk.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("bulk operations on PostgreSQL", (it) => {
  bulkSuite(postgres, it)
})
