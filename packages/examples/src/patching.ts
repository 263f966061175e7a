// The README's "Changing workflows": a safe edit with Workflow.patched, checked with ReplayCheck first.
import { NodeRuntime } from "@effect/platform-node"
import { Console, Context, Effect, Layer, Schema } from "effect"
import { MemoryStore, Pgflows, ReplayCheck, Step, Workflow } from "pgflows"

const Order = Schema.Struct({ id: Schema.String })
const step = (name: string) =>
  Step.make(name, {
    input: Order,
    output: Schema.String,
    run: (order) => Effect.as(Console.log(`  ran ${name} for ${order.id}`), `${name} ${order.id}`)
  })
const [charge, chargeCard, email, sms] = [step("charge"), step("charge_card"), step("email"), step("sms")]

// Deployed: charge, wait until packed, email the customer, wait until delivered.
const deployed = Workflow.make("notify", {
  input: Order,
  output: Schema.String,
  run: Effect.fn(function*(order) {
    yield* charge(order)
    yield* Workflow.waitForSignal("packed", Schema.Boolean)
    const sent = yield* email(order)
    yield* Workflow.waitForSignal("delivered", Schema.Boolean)
    return sent
  })
})

// The edit: an SMS instead of the email, for runs that reach this point from now on. A run that
// already emailed replays `false` from its journal, so its email is neither lost nor sent twice.
const patched = Workflow.make("notify", {
  input: Order,
  output: Schema.String,
  run: Effect.fn(function*(order) {
    yield* charge(order)
    yield* Workflow.waitForSignal("packed", Schema.Boolean)
    const sent = (yield* Workflow.patched("sms-instead-of-email")) ? yield* sms(order) : yield* email(order)
    yield* Workflow.waitForSignal("delivered", Schema.Boolean)
    return sent
  })
})

// An edit that is not safe: the runs in flight recorded "charge" at key 1.
const renamed = Workflow.make("notify", {
  input: Order,
  output: Schema.String,
  run: Effect.fn(function*(order) {
    yield* chargeCard(order)
    yield* Workflow.waitForSignal("packed", Schema.Boolean)
    return yield* sms(order)
  })
})

// Two deploys of the same program on one store (the memory backend stands for the database).
const deploy = <const W extends ReadonlyArray<Workflow.Any>>(workflows: W) =>
  Effect.map(Layer.build(Pgflows.layer({ workflows })), Context.get(Pgflows.Pgflows))

const program = Effect.gen(function*() {
  const before = yield* deploy([deployed])
  const emailed = yield* before.start(deployed, { id: "ORD-1" }, { id: "notify-ORD-1" })
  const waiting = yield* before.start(deployed, { id: "ORD-2" }, { id: "notify-ORD-2" })
  yield* before.processOnce
  yield* before.signal(emailed, "packed", true)
  yield* before.processOnce // ORD-1 emails and waits for delivery; ORD-2 waits to be packed

  // In CI, before the deploy: replay the runs in flight against each candidate.
  const histories = [yield* before.exportHistory(emailed), yield* before.exportHistory(waiting)]
  yield* Console.log(ReplayCheck.format(yield* ReplayCheck.histories([renamed], histories)))
  const check = yield* ReplayCheck.histories([patched], histories)
  yield* Console.log(`patched: ${check.ok ? "safe to deploy" : ReplayCheck.format(check)}`)

  const after = yield* deploy([patched])
  const fresh = yield* after.start(patched, { id: "ORD-3" }, { id: "notify-ORD-3" })
  for (const id of [emailed, waiting, fresh]) yield* after.signal(id, "packed", true)
  yield* after.processOnce
  for (const id of [emailed, waiting, fresh]) yield* after.signal(id, "delivered", true)
  yield* after.processOnce
  for (const id of [emailed, waiting, fresh]) yield* Console.log(`${id}: ${yield* after.result(id)}`)
})

program.pipe(Effect.scoped, Effect.provide(MemoryStore.layer), NodeRuntime.runMain)
