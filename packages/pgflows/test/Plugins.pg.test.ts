// Plugins on PostgreSQL.
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { pluginsSuite } from "./conformance/plugins.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("plugins on PostgreSQL", (it) => {
  pluginsSuite(postgres, it)
})
