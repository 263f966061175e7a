// The README's "Testing your workflows": one workflow, in memory with TestClock and on PostgreSQL.
import { assert, describe, it, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Pgflows, Step, Workflow } from "pgflows"

const Invoice = Schema.Struct({ invoiceId: Schema.String })
const send = Step.make("send_reminder", {
  input: Invoice,
  output: Schema.String,
  run: (invoice) => Effect.succeed(`reminded ${invoice.invoiceId}`)
})
const remind = Workflow.make("remind", {
  input: Invoice,
  output: Schema.String,
  run: Effect.fn(function*(invoice) {
    yield* Workflow.sleep("3 days") // parks the run: no worker is held
    return yield* send(invoice)
  })
})

describe("remind, in memory", () => {
  it.effect("waits three days, then sends", () =>
    Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      const id = yield* client.start(remind, { invoiceId: "INV-1" })
      yield* client.processOnce
      assert.strictEqual((yield* client.status(id)).status, "suspended")
      yield* TestClock.adjust("3 days") // time is Effect's Clock: no real waiting
      yield* client.processOnce
      assert.strictEqual(yield* client.result(id), "reminded INV-1")
    }).pipe(Effect.provide(Pgflows.layerMemory({ workflows: [remind] }))))
})

// A real PostgreSQL (embedded unless DATABASE_URL is set), a fresh database for this file, real time.
layer(TestDatabase.layer, { excludeTestServices: true })("remind, on PostgreSQL", (it) => {
  it.effect("journals the sleep and the step", () =>
    Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      const id = yield* client.start(remind, { invoiceId: "INV-2" })
      yield* client.processOnce
      const parked = yield* client.status(id)
      assert.deepStrictEqual(parked.steps.map((step) => [step.name, step.status]), [["pgflows.sleep", "waiting"]])
      yield* client.cancel(id) // three real days are too long for a test
      assert.strictEqual((yield* client.status(id)).status, "cancelled")
    }).pipe(Effect.provide(Pgflows.layerPg({ workflows: [remind] }))))
})
