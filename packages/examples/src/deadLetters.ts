// The README's "Dead letters", runnable: `node packages/examples/src/deadLetters.ts` (memory backend)
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Option, Schema } from "effect"
import { Pgflows, Step, Workflow } from "pgflows"

class CardExpired extends Schema.TaggedError<CardExpired>()("CardExpired", { card: Schema.String }) {}
const Payment = Schema.Struct({ orderId: Schema.String, card: Schema.String })

let cardUpdated = false // the incident: fixed by hand, then the failed runs are retried
const charge = Step.make("charge", {
  input: Payment,
  output: Schema.String,
  error: CardExpired,
  run: (payment) =>
    Effect.suspend(() =>
      cardUpdated ? Effect.succeed(`CHG-${payment.orderId}`) : Effect.fail(new CardExpired({ card: payment.card }))
    )
})
const pay = Workflow.make("pay", { input: Payment, output: Schema.String, error: CardExpired, run: charge })

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* client.startBatch(pay, [{ orderId: "ORD-1", card: "4242" }, { orderId: "ORD-2", card: "4242" }])
  yield* client.processOnce

  // List: failed runs are the dead letters, newest first (page with `cursor`).
  const failed = yield* client.list({ workflow: "pay", status: "failed" })
  for (const run of failed.runs) {
    // Inspect: the typed error, and the journal with each step's attempts and stored error.
    const info = yield* client.status(run.id)
    const error = Option.getOrUndefined(info.error) as CardExpired
    yield* Console.log(`${run.id}: ${error._tag} (card ${error.card}), step ${info.steps[0]?.name} failed`)
  }

  // Retry: each run goes on from the step that failed; nothing before it runs again.
  cardUpdated = true
  yield* Effect.forEach(failed.runs, (run) => client.retry(run.id), { discard: true })
  yield* client.processOnce
  for (const run of failed.runs) yield* Console.log(`${run.id}: ${yield* client.result(run.id)}`)
})

program.pipe(Effect.provide(Pgflows.layerMemory({ workflows: [pay] })), NodeRuntime.runMain)
