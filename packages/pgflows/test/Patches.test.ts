// Patches on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { patchesSuite } from "./conformance/patches.ts"

describe("patches on the memory backend", () => {
  patchesSuite(memory, it)
})
