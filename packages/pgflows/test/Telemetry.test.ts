// OpenTelemetry spans on the memory backend, with TestClock driving time.
import { describe, it } from "@effect/vitest"
import { memory } from "./conformance/backend.ts"
import { telemetrySuite } from "./conformance/telemetry.ts"

describe("telemetry on the memory backend", () => {
  telemetrySuite(memory, it)
})
