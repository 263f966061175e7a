/**
 * The incident API of the AI SRE example as a program of its own (`IncidentApi.ts`): where the
 * monitoring system posts alerts and engineers post approvals. It runs no workflow; the workers
 * (`sreWorker.ts`) do. Configured by the environment: `PGFLOWS_DATABASE_URL` (or `DATABASE_URL`),
 * the other `PGFLOWS_*` variables, `PORT` (default 8080) and `HOST` (default `0.0.0.0`). The
 * `server` service of `docker/compose.full.yml` runs this file.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import { PgDatabase, Pgflows } from "pgflows"
import * as Diagnoser from "./Diagnoser.ts"
import { createTables, incidentResponse } from "./Incident.ts"
import * as IncidentApi from "./IncidentApi.ts"

const port = Number(process.env.PORT ?? 8080)

// The engine is here for its client (start, signal, status); the workflow is registered so that
// results and errors decode, which needs the steps' services even though no step runs here.
const Engine = Pgflows.layerPg({ workflows: [incidentResponse] }).pipe(
  Layer.provideMerge(PgDatabase.layer({ maxConnections: 4 })),
  Layer.provide([Diagnoser.layer, FetchHttpClient.layer])
)

const main = Effect.gen(function*() {
  yield* createTables
  yield* Console.log(
    `incident API listening on port ${port}: POST /alerts, POST /incidents/:id/approval, GET /incidents/:id`
  )
  return yield* Effect.never
})

main.pipe(
  Effect.provide(IncidentApi.layer({ port, host: process.env.HOST ?? "0.0.0.0" }).pipe(Layer.provideMerge(Engine))),
  NodeRuntime.runMain
)
