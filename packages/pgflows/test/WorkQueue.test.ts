// The WorkQueue conformance suite in memory.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { queueSuite } from "./conformance/queue.ts"

describe("WorkQueue in memory", () => {
  queueSuite(memory, it)
})
