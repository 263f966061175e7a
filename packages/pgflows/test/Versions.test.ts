// Workflow versions on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { versionsSuite } from "./conformance/versions.ts"

describe("versions on the memory backend", () => {
  versionsSuite(memory, it)
})
