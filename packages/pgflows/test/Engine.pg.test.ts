// The engine conformance suite on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { engineSuite } from "./conformance/engine.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("engine on PostgreSQL", (it) => {
  engineSuite(postgres, it)
})
