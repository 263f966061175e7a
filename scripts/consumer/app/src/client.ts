// The other side of the worker: a process that starts runs and reads their status, as a web server
// would. `node build/src/client.js start <name> <step millis>` prints the run id;
// `node build/src/client.js status <run id>` prints `{"status": ..., "steps": [...]}`.
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Config, Console, Effect, Layer } from "effect"
import { Pgflows } from "pgflows"
import { slowJob } from "./slowJob.js"

const Live = Pgflows.layerPg({ workflows: [slowJob] }).pipe(
  Layer.provideMerge(PgClient.layerConfig({ url: Config.Redacted("DATABASE_URL") }))
)

const main = Effect.gen(function*() {
  const [command, argument, millis] = process.argv.slice(2)
  const client = yield* Pgflows.Pgflows
  if (command === "start" && argument !== undefined) {
    const id = yield* client.start(slowJob, { name: argument, millis: Number(millis ?? "2000") })
    return yield* Console.log(`started run ${id}`)
  }
  if (command === "status" && argument !== undefined) {
    const status = yield* client.status(argument)
    return yield* Console.log(JSON.stringify({ status: status.status, steps: status.steps.map((step) => step.name) }))
  }
  return yield* Effect.die(new Error("usage: node build/src/client.js start <name> <millis> | status <run id>"))
})

main.pipe(Effect.provide(Live), NodeRuntime.runMain)
