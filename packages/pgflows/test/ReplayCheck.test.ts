// The replay checker and history export on the memory backend.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { replaySuite } from "./conformance/replay.ts"

describe("replay checks on the memory backend", () => {
  replaySuite(memory, it)
})
