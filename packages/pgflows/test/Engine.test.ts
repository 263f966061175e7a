// The engine conformance suite on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { engineSuite } from "./conformance/engine.ts"

describe("engine on the memory backend", () => {
  engineSuite(memory, it)
})
