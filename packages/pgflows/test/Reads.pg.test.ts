// The client's reads on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { readsSuite } from "./conformance/reads.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("reads on PostgreSQL", (it) => {
  readsSuite(postgres, it)
})
