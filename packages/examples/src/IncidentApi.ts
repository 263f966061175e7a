/**
 * The HTTP side of the AI SRE example: what the monitoring system and the on-call engineers talk
 * to. It runs no workflow itself (the workers do); it starts runs, signals them and reads them
 * through the `Pgflows` client.
 *
 * - `POST /alerts` with an `Alert`: starts `incident_response` with the incident id as the run id,
 *   so an alert delivered twice starts one run. `201 { runId }`.
 * - `POST /incidents/:id/approval` with an `Approval`: the `approval` signal. `202`; `404` for an
 *   unknown incident, `409` for one that already ended.
 * - `GET /incidents/:id`: the run's status, the diagnosis it published, its resolution or error, and
 *   its journal (step, status, attempts).
 *
 * @since 0.1.0
 */
import { NodeHttpServer } from "@effect/platform-node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type * as HttpServerError from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Http from "node:http"
import { Pgflows } from "pgflows"
import { Alert, Approval, incidentResponse } from "./Incident.ts"

/**
 * The running API.
 *
 * @category services
 * @since 0.1.0
 */
export class IncidentApi extends Context.Service<IncidentApi, { readonly url: string }>()("examples/IncidentApi") {}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** 0 (the default) picks a free port. */
  readonly port?: number | undefined
  /** `127.0.0.1` unless given (`0.0.0.0` in a container). */
  readonly host?: string | undefined
}

/**
 * The API on a `Pgflows` client, listening until the layer's scope closes.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<IncidentApi, HttpServerError.ServeError, Pgflows.Pgflows> =>
  Layer.effect(IncidentApi, make).pipe(
    Layer.provide(NodeHttpServer.layer(() => Http.createServer(), {
      port: options.port ?? 0,
      host: options.host ?? "127.0.0.1"
    }))
  )

// internal

const json = (body: unknown, status: number) => HttpServerResponse.jsonUnsafe(body, { status })

const make = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  const server = yield* HttpServer.HttpServer
  const router = yield* HttpRouter.make
  const incidentId = Effect.map(HttpRouter.params, (params) => params["id"] ?? "")

  const alert = Effect.gen(function*() {
    const input = yield* HttpServerRequest.schemaBodyJson(Alert)
    const runId = yield* client.start(incidentResponse, input, { id: input.incidentId })
    return json({ runId }, 201)
  }).pipe(
    Effect.catchTags({
      SchemaError: (error) => Effect.succeed(json({ error: error.message }, 400)),
      InvalidInput: (error) => Effect.succeed(json({ error: error.message }, 400)),
      RunIdConflict: (error) => Effect.succeed(json({ error: error.message }, 409))
    })
  )

  const approval = Effect.gen(function*() {
    const id = yield* incidentId
    const payload = yield* HttpServerRequest.schemaBodyJson(Approval)
    yield* client.signal(id, "approval", Schema.encodeSync(Approval)(payload))
    return json({ accepted: true }, 202)
  }).pipe(
    Effect.catchTags({
      SchemaError: (error) => Effect.succeed(json({ error: error.message }, 400)),
      RunNotFound: (error) => Effect.succeed(json({ error: error.message }, 404)),
      RunEnded: (error) => Effect.succeed(json({ error: error.message }, 409))
    })
  )

  const incident = Effect.gen(function*() {
    const id = yield* incidentId
    const info = yield* client.status(id)
    const diagnosis = yield* client.getEvent(id, "diagnosis")
    return json({
      id: info.id,
      status: info.status,
      executions: info.executions,
      recoveries: info.recoveries,
      diagnosis: Option.getOrNull(diagnosis),
      resolution: Option.getOrNull(info.output),
      error: Option.getOrNull(info.error),
      steps: info.steps.map((step) => ({ name: step.name, status: step.status, attempts: step.attempts }))
    }, 200)
  }).pipe(
    Effect.catchTags({ RunNotFound: (error) => Effect.succeed(json({ error: error.message }, 404)) })
  )

  yield* router.addAll([
    HttpRouter.route("POST", "/alerts", alert.pipe(Effect.orDie)),
    HttpRouter.route("POST", "/incidents/:id/approval", approval.pipe(Effect.orDie)),
    HttpRouter.route("GET", "/incidents/:id", incident.pipe(Effect.orDie))
  ])
  yield* server.serve(router.asHttpEffect())
  const address = server.address
  const port = address._tag === "UnixPathAddress" ? 0 : address.port
  return IncidentApi.of({ url: `http://127.0.0.1:${port}` })
})
