// Restart from a step (fork) on the memory backend.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { forkSuite } from "./conformance/fork.ts"

describe("forks on the memory backend", () => {
  forkSuite(memory, it)
})
