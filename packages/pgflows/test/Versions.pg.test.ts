// Workflow versions on PostgreSQL (a database of its own for this file).
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { versionsSuite } from "./conformance/versions.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("versions on PostgreSQL", (it) => {
  versionsSuite(postgres, it)
})
