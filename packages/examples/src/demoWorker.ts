/**
 * A worker process of the demo's crash (`demo.ts` starts two and kills the first with SIGKILL in the
 * middle of a step). Configured by the environment: PGFLOWS_DATABASE_URL, PGFLOWS_LEASE, WORKER_NAME.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { PgDatabase, Pgflows } from "pgflows"
import { sendParcel } from "./Parcel.ts"

const main = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* Effect.sync(() => process.stdout.write(`${process.env.WORKER_NAME} ready\n`))
  return yield* client.runWorker()
})

main.pipe(
  Effect.provide(Pgflows.layerPg({ workflows: [sendParcel] }).pipe(Layer.provideMerge(PgDatabase.layer()))),
  NodeRuntime.runMain
)
