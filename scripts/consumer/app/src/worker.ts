// A worker process as an application runs one: the main effect is `client.runWorker()` under
// `NodeRuntime.runMain`, which interrupts it on SIGTERM. The consumer test starts a run of
// `slow_job` from another process (client.ts) and sends SIGTERM while this worker is in its step.
//
// runMain's default teardown exits with 130 whenever the main fiber ends interrupted, and a signal
// always ends it so, however cleanly the worker stopped. This one exits with 0 for that (a stop
// asked for and carried out) and keeps the default for everything else (a failure still exits 1).
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Cause, Config, Console, Duration, Effect, Exit, Layer, Runtime } from "effect"
import { Pgflows, PgflowsConfig } from "pgflows"
import { slowJob } from "./slowJob.js"

const shutdownGrace = Duration.millis(Number(process.env["SHUTDOWN_GRACE_MS"] ?? "6000"))

const Live = Pgflows.layerPg({ workflows: [slowJob] }).pipe(
  Layer.provide(PgflowsConfig.layer({ shutdownGrace })),
  Layer.provideMerge(PgClient.layerConfig({ url: Config.Redacted("DATABASE_URL") }))
)

const main = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* Console.log("worker ready")
  return yield* client.runWorker()
})

const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

main.pipe(Effect.provide(Live), NodeRuntime.runMain({ teardown }))
