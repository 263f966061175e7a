// The client's reads on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { readsSuite } from "./conformance/reads.ts"

describe("reads on the memory backend", () => {
  readsSuite(memory, it)
})
