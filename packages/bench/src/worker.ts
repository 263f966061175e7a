// A worker process for the recovery measurement (configured by DATABASE_URL and PGFLOWS_*).
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { Pgflows, PgflowsConfig } from "pgflows"
import { workflows } from "./workflows.ts"

const Database = Layer.unwrap(
  Effect.map(PgflowsConfig.PgflowsConfig, (config) => PgClient.layer({ url: config.databaseUrl!.url }))
)

Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* Effect.sync(() => process.stdout.write("ready\n"))
  return yield* client.runWorker()
}).pipe(
  Effect.provide(Pgflows.layerPg({ workflows }).pipe(Layer.provideMerge(Database))),
  Effect.provide(PgflowsConfig.layerFromEnv),
  NodeRuntime.runMain
)
