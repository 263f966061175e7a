// The README's "Changing workflows": two versions side by side, and the repair of failed runs by a fork.
import { NodeRuntime } from "@effect/platform-node"
import { Console, Context, Effect, Layer, Schema } from "effect"
import { MemoryStore, Pgflows, Step, Workflow } from "pgflows"

const Order = Schema.Struct({ id: Schema.String, country: Schema.String })
class NoRoute extends Schema.TaggedError<NoRoute>()("NoRoute", { country: Schema.String }) {}

const reserve = Step.make("reserve", {
  input: Order,
  output: Schema.String,
  run: (order) => Effect.as(Console.log(`  reserved ${order.id}`), `R-${order.id}`)
})
const pay = Step.transaction("pay", {
  input: Order,
  output: Schema.String,
  run: (order) => Effect.as(Console.log(`  paid ${order.id}`), `P-${order.id}`)
})
const shipV1 = Step.make("ship", {
  input: Order,
  output: Schema.String,
  error: NoRoute,
  run: (order) =>
    order.country === "IS" ? Effect.fail(new NoRoute({ country: order.country })) : Effect.succeed("truck")
})
const shipV2 = Step.make("ship", {
  input: Order,
  output: Schema.String,
  error: NoRoute,
  run: (order) => Effect.succeed(order.country === "IS" ? "ferry" : "truck")
})

const order = (version: number, ship: typeof shipV1) =>
  Workflow.make("order", {
    version,
    input: Order,
    output: Schema.String,
    error: NoRoute,
    run: Effect.fn(function*(input) {
      yield* reserve(input)
      yield* pay(input)
      return `${input.id} by ${yield* ship(input)} (v${version})`
    })
  })
const v1 = order(1, shipV1)
const v2 = order(2, shipV2) // the fix, as a version of its own

const deploy = <const W extends ReadonlyArray<Workflow.Any>>(workflows: W) =>
  Effect.map(Layer.build(Pgflows.layer({ workflows })), Context.get(Pgflows.Pgflows))

const program = Effect.gen(function*() {
  const old = yield* deploy([v1])
  yield* old.startBatch(v1, [{ id: "A-1", country: "IS" }, { id: "A-2", country: "IS" }], { ids: ["A-1", "A-2"] })
  yield* old.processOnce // both fail with NoRoute: dead letters
  const late = yield* old.start(v1, { id: "A-3", country: "FR" }) // started just before the deploy

  // The new deploy registers both versions: runs of version 1 still finish on version 1.
  const next = yield* deploy([v1, v2])
  const fresh = yield* next.start(v1, { id: "B-1", country: "IS" }) // the newest version: 2
  yield* Console.log(`in flight: ${JSON.stringify(yield* next.runsInFlight("order"))}`)

  // Repair the dead letters on version 2 from "ship": reserve and pay are replayed, not repeated.
  const dead = { workflow: "order", version: 1, status: "failed" } as const
  const plan = yield* next.forkMany(dead, { fromStep: "ship", version: 2, dryRun: true })
  const [first] = plan.forks
  yield* Console.log(
    `dry run: ${plan.matched} runs to fork; each keeps keys ${first?.kept} and repeats ` +
      `${first?.repeatedSideEffects.length} completed steps`
  )
  const forked = yield* next.forkMany(dead, { fromStep: "ship", version: 2 })
  yield* next.processOnce
  for (const fork of forked.forks) if ("id" in fork) yield* Console.log(yield* next.result(fork.id))
  for (const id of [late, fresh]) yield* Console.log(yield* next.result(id))
  yield* Console.log(`in flight: ${JSON.stringify(yield* next.runsInFlight("order"))}`)
})

program.pipe(Effect.scoped, Effect.provide(MemoryStore.layer), NodeRuntime.runMain)
