// Run isolation on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { isolationSuite } from "./conformance/isolation.ts"

describe("run isolation on the memory backend", () => {
  isolationSuite(memory, it)
})
