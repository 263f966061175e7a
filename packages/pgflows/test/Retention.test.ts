// Retention on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { retentionSuite } from "./conformance/retention.ts"

describe("retention on the memory backend", () => {
  retentionSuite(memory, it)
})
