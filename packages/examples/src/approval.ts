// The README's durable primitives, runnable: `node packages/examples/src/approval.ts` (memory backend).
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Option, Schema } from "effect"
import { Pgflows, PgflowsError, Step, Workflow } from "pgflows"

const Order = Schema.Struct({ orderId: Schema.String, amount: Schema.Number })
const Approval = Schema.Struct({ approved: Schema.Boolean, by: Schema.String })
const Receipt = Schema.Struct({ orderId: Schema.String, charge: Schema.String, tracking: Schema.String })
class Declined extends Schema.TaggedError<Declined>()("Declined", { reason: Schema.String }) {}

const charge = Step.make("charge", {
  input: Order,
  output: Schema.String,
  run: (order) => Effect.succeed(`CHG-${order.orderId}`)
})
const refund = Step.make("refund", {
  input: Schema.String,
  output: Schema.Void,
  run: (confirmation) => Console.log(`refunded ${confirmation}`)
})
const reserveStock = Step.make("reserve_stock", {
  input: Order,
  output: Schema.Boolean,
  run: () => Effect.succeed(true)
})
const checkFraud = Step.make("check_fraud", {
  input: Order,
  output: Schema.Boolean,
  run: (o) => Effect.succeed(o.amount < 10_000)
})
const label = Step.make("print_label", {
  input: Order,
  output: Schema.String,
  run: (o) => Effect.succeed(`TRK-${o.orderId}`)
})

const shipOrder = Workflow.make("ship_order", { input: Order, output: Schema.String, error: Schema.Never, run: label })

const order = Workflow.make("order", {
  input: Order,
  output: Receipt,
  error: Schema.Union([Declined, PgflowsError.InvalidSignal, PgflowsError.ChildFailed, PgflowsError.ChildCancelled]),
  timeout: "7 days", // a durable deadline: past it the run fails with WorkflowTimeout, even parked
  run: Effect.fn(function*(input) {
    const placedAt = yield* Workflow.now // recorded once, replayed (also Workflow.randomUUID)
    const confirmation = yield* charge(input).pipe(Workflow.withCompensation((c) => refund(c)))
    const [stocked, clean] = yield* Workflow.all([reserveStock(input), checkFraud(input)]) // a key path per branch
    if (!stocked || !clean) return yield* new Declined({ reason: "stock or fraud check" })
    yield* Workflow.setEvent("stage", { stage: "awaiting approval", placedAt }) // client.getEvent(id, "stage")
    const decision = yield* Workflow.waitForSignal("approval", Approval, { timeout: "2 days" })
    if (decision._tag === "TimedOut" || !decision.value.approved) {
      return yield* new Declined({ reason: "not approved" }) // the refund runs: a saga
    }
    const tracking = yield* Workflow.child(shipOrder, input) // parked until the child ends
    return { orderId: input.orderId, charge: confirmation, tracking }
  })
})

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* Effect.forkChild(client.runWorker())
  for (const [orderId, approved] of [["ORD-7", true], ["ORD-8", false]] as const) {
    const id = yield* client.start(order, { orderId, amount: 120 })
    const stage = yield* client.getEvent(id, "stage", { timeout: "10 seconds" })
    yield* Console.log(`${orderId}: ${JSON.stringify(Option.getOrUndefined(stage))}`)
    yield* client.signal(id, "approval", { approved, by: "ana" })
    const outcome = yield* client.result(id).pipe(
      Effect.map((receipt) => `shipped with ${receipt.tracking}`),
      Effect.catch((error) => Effect.succeed(`failed: ${error._tag}`))
    )
    yield* Console.log(`${orderId}: ${outcome}`)
  }
})

program.pipe(Effect.provide(Pgflows.layerMemory({ workflows: [order, shipOrder] })), NodeRuntime.runMain)
