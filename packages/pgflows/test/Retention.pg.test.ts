// Retention on PostgreSQL (a database of its own for this file): the conformance suite, and what
// only a real database shows.
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { retentionSuite } from "./conformance/retention.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("retention on PostgreSQL", (it) => {
  retentionSuite(postgres, it)
})
