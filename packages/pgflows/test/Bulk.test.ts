// Bulk operations on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { bulkSuite } from "./conformance/bulk.ts"

describe("bulk operations on the memory backend", () => {
  bulkSuite(memory, it)
})
