// Named queues and flow control (the conformance suite) on PostgreSQL.
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { flowSuite } from "./conformance/flow.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("named queues and flow control on PostgreSQL", (it) => {
  flowSuite(postgres, it)
})
