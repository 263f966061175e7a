// Plugins on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { pluginsSuite } from "./conformance/plugins.ts"

describe("plugins on the memory backend", () => {
  pluginsSuite(memory, it)
})
