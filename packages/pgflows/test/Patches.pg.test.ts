// Patches on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { patchesSuite } from "./conformance/patches.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("patches on PostgreSQL", (it) => {
  patchesSuite(postgres, it)
})
