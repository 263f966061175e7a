// Named queues and flow control (the conformance suite) in memory.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { flowSuite } from "./conformance/flow.ts"

describe("named queues and flow control in memory", () => {
  flowSuite(memory, it)
})
