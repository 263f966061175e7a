// Retention (README "Retention"): how long ended runs are kept, and a one-off purge. Memory backend.
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schema } from "effect"
import { Pgflows, PgflowsConfig, Step, Workflow } from "pgflows"

const Order = Schema.Struct({ orderId: Schema.String })
const issue = Step.make("issue", { input: Order, output: Schema.String, run: (o) => Effect.succeed(`R-${o.orderId}`) })

// Its own policy: completed receipts are kept a day, failed ones 30 days; cancelled ones follow the
// global policy below (7 days for every workflow without its own).
const receipt = Workflow.make("receipt", {
  input: Order,
  output: Schema.String,
  retention: { completed: "1 day", failed: "30 days" },
  run: issue
})

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* client.startBatch(receipt, [{ orderId: "ORD-1" }, { orderId: "ORD-2" }])
  yield* client.processOnce
  yield* Effect.sleep("10 millis")

  // A running worker (`runWorker`) prunes in the background every `retentionInterval`; a one-off
  // purge deletes what ended before a date, with journals, signals, events and child runs.
  const purged = yield* client.purge({ before: new Date(), status: "completed", workflow: "receipt" })
  yield* Console.log(`purged ${purged.runs} runs (${purged.rows} rows)`)
  yield* Console.log(`runs left: ${(yield* client.list()).runs.length}`)
})

program.pipe(
  Effect.provide(Pgflows.layerMemory({ workflows: [receipt] })),
  // Or PGFLOWS_RETENTION="7 days" and PGFLOWS_RETENTION_INTERVAL="10 minutes".
  Effect.provide(PgflowsConfig.layer({ retention: "7 days", retentionInterval: "10 minutes" })),
  NodeRuntime.runMain
)
