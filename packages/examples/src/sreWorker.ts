/**
 * A worker of the AI SRE example: runs `incident_response` runs (`Incident.ts`) until SIGTERM, with
 * pgflows' `LoggingPlugin` (logfmt lines on stderr), `MetricsPlugin` and the example's progress
 * plugin (one line per event on stdout), and spans exported to an in-memory OpenTelemetry exporter.
 * When it stops it prints the step attempts it counted and the spans it exported.
 *
 * Configured by the environment: `PGFLOWS_DATABASE_URL` (or `DATABASE_URL`), the other `PGFLOWS_*`
 * variables, `OPENAI_API_KEY` for a real model (see `Diagnoser.ts`), `WORKER_NAME`. `sre.ts` runs
 * two of them; the Docker image of `docker/worker` runs this file.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Logger } from "effect"
import { FetchHttpClient } from "effect/http"
import * as Os from "node:os"
import { LoggingPlugin, MetricsPlugin, PgDatabase, Pgflows, PgflowsConfig } from "pgflows"
import * as Diagnoser from "./Diagnoser.ts"
import { createTables, incidentResponse } from "./Incident.ts"
import * as IncidentTelemetry from "./IncidentTelemetry.ts"

const name = process.env.WORKER_NAME ?? Os.hostname()
const tracing = IncidentTelemetry.inMemoryTracing()

// The environment's configuration, with tracing on (spans go to the tracer provider below).
const Config = Layer.effect(
  PgflowsConfig.PgflowsConfig,
  Effect.map(PgflowsConfig.fromEnv, (config) => ({ ...config, otelEnabled: true }))
)

const Live = Pgflows.layerPg({
  workflows: [incidentResponse],
  plugins: [LoggingPlugin.plugin, MetricsPlugin.plugin, IncidentTelemetry.progress(Console.log)]
}).pipe(
  Layer.provideMerge(PgDatabase.layer({ maxConnections: 8 })),
  Layer.provide([Diagnoser.layer, FetchHttpClient.layer, tracing.layer]),
  Layer.provide(Config)
)

const summary = Effect.gen(function*() {
  yield* Console.log(`${name} stopping; step attempts it counted (MetricsPlugin):`)
  for (const line of yield* IncidentTelemetry.stepAttempts) yield* Console.log(`  ${line}`)
  yield* Console.log(`spans it exported (OpenTelemetry, in memory):`)
  for (const line of IncidentTelemetry.spanNames(tracing.exporter)) yield* Console.log(`  ${line}`)
})

const main = Effect.gen(function*() {
  yield* createTables
  const client = yield* Pgflows.Pgflows
  yield* Effect.addFinalizer(() => summary)
  yield* Console.log(`${name} ready`)
  return yield* client.runWorker()
}).pipe(Effect.scoped)

main.pipe(
  Effect.provide(Live),
  Effect.provide(Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])),
  NodeRuntime.runMain
)
