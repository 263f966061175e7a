// The README's "Running workers in production", runnable: `PGFLOWS_DATABASE_URL=... node packages/examples/src/worker.ts`
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { PgDatabase, Pgflows } from "pgflows"
import { processOrder } from "./Order.ts"

// Everything from the environment: PGFLOWS_DATABASE_URL, PGFLOWS_WORKER_CONCURRENCY,
// PGFLOWS_SHUTDOWN_GRACE, PGFLOWS_MIGRATIONS=verify (migrations applied by the deploy step), ...
const Live = Pgflows.layerPg({ workflows: [processOrder] }).pipe(
  Layer.provideMerge(PgDatabase.layer({ maxConnections: 8 }))
)

// The worker is the program. SIGTERM (or Ctrl-C) interrupts it: it stops claiming, lets the runs in
// flight finish for PGFLOWS_SHUTDOWN_GRACE, and hands the rest back to the other workers at once.
const main = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  return yield* client.runWorker()
})

main.pipe(Effect.provide(Live), NodeRuntime.runMain)
