// Restart from a step (fork) on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { forkSuite } from "./conformance/fork.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("forks on PostgreSQL", (it) => {
  forkSuite(postgres, it)
})
