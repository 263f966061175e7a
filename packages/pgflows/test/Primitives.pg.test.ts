// Durable primitives on PostgreSQL.
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { primitivesSuite } from "./conformance/primitives.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("durable primitives on PostgreSQL", (it) => {
  primitivesSuite(postgres, it)
})
