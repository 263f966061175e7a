// OpenTelemetry spans on PostgreSQL.
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { telemetrySuite } from "./conformance/telemetry.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("telemetry on PostgreSQL", (it) => {
  telemetrySuite(postgres, it)
})
