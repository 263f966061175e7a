// Durable primitives on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { primitivesSuite } from "./conformance/primitives.ts"

describe("durable primitives on the memory backend", () => {
  primitivesSuite(memory, it)
})
