// The replay checker and history export on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { replaySuite } from "./conformance/replay.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("replay checks on PostgreSQL", (it) => {
  replaySuite(postgres, it)
})
