// The WorkQueue conformance suite on PostgreSQL's built-in queue tables.
import { layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { postgres } from "./conformance/backend.ts"
import { queueSuite } from "./conformance/queue.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("WorkQueue on PostgreSQL", (it) => {
  queueSuite(postgres, it)
})
