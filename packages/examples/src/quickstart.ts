// The README's quick start, runnable: `PGFLOWS_DATABASE_URL=postgres://... node packages/examples/src/quickstart.ts`
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Schedule, Schema } from "effect"
import { PgDatabase, Pgflows, Step, Workflow } from "pgflows"

class OrderInput extends Schema.Class<OrderInput>("OrderInput")({ orderId: Schema.String, amount: Schema.Number }) {}
class Receipt extends Schema.Class<Receipt>("Receipt")({ charged: Schema.Boolean, confirmation: Schema.String }) {}
class Declined extends Schema.TaggedError<Declined>()("Declined", { reason: Schema.String }) {}

// A step: a named, typed, retried unit whose result is checkpointed.
const chargePayment = Step.make("charge_payment", {
  input: OrderInput,
  output: Receipt,
  error: Declined,
  retry: Schedule.exponential("1 second").pipe(Schedule.jittered, Schedule.upTo({ times: 3 })),
  run: (order) => Effect.succeed(new Receipt({ charged: true, confirmation: `CHG-${order.orderId}` }))
})

// A workflow: every yield* of a step goes through the replay journal.
const processOrder = Workflow.make("process_order", {
  input: OrderInput,
  output: Receipt,
  error: Declined,
  run: Effect.fn(function*(order) {
    const receipt = yield* chargePayment(order)
    yield* Workflow.sleep("1 second") // durable: survives restarts
    return receipt
  })
})

// The app: Layers, configured by the environment (PGFLOWS_DATABASE_URL or DATABASE_URL, PGFLOWS_*).
// PgDatabase.layer is a PgClient pool the application can use too; or give Pgflows your own.
const Live = Pgflows.layerPg({ workflows: [processOrder] }).pipe(Layer.provideMerge(PgDatabase.layer()))

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  const id = yield* client.start(processOrder, new OrderInput({ orderId: "ORD-1", amount: 99 }))
  yield* client.processOnce // runs the charge, then sleeps 1 second in the worker
  const status = yield* client.status(id)
  yield* Effect.log(`${status.status}: ${status.steps.map((step) => step.name).join(", ")}`)
})

program.pipe(Effect.provide(Live), NodeRuntime.runMain)
