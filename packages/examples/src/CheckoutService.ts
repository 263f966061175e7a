/**
 * The service the AI SRE example looks after: a small "checkout" HTTP service on a loopback port,
 * whose health can be broken on purpose, so the incident workflow (`Incident.ts`) meets real HTTP
 * behaviour: answers, transient failures, requests that never end.
 *
 * - `GET /health` answers 200 with a `HealthReport` (healthy or degraded, with the figures a person
 *   would look at), or, while glitches are queued, one 503 or one request that hangs per glitch.
 * - `POST /admin/remediate` applies a remediation (`rollback`, `restart`, `scale_out`) for an
 *   incident. It is idempotent by incident id: a second call for the same incident changes nothing.
 * - `POST /admin/revert` undoes the remediation of an incident (the compensation of the workflow).
 *
 * Which remediation cures which fault is the service's business: a rollback cures a bad deploy, a
 * restart a memory leak; nothing the workflow can do cures a saturated database (more replicas only
 * add connections), so that incident's verification fails.
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
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Http from "node:http"

/**
 * What is wrong with the service.
 *
 * @category models
 * @since 0.1.0
 */
export const Fault = Schema.Literals(["none", "bad_deploy", "memory_leak", "db_saturation"])

/**
 * @category models
 * @since 0.1.0
 */
export type Fault = typeof Fault.Type

/**
 * A remediation the incident workflow may apply.
 *
 * @category models
 * @since 0.1.0
 */
export const Action = Schema.Literals(["rollback", "restart", "scale_out"])

/**
 * @category models
 * @since 0.1.0
 */
export type Action = typeof Action.Type

/**
 * A transport problem of the next `/health` request: `unavailable` answers 503, `hang` never answers.
 *
 * @category models
 * @since 0.1.0
 */
export type Glitch = "unavailable" | "hang"

/**
 * What `GET /health` reports.
 *
 * @category models
 * @since 0.1.0
 */
export class HealthReport extends Schema.Class<HealthReport>("HealthReport")({
  service: Schema.String,
  status: Schema.Literals(["healthy", "degraded"]),
  version: Schema.String,
  previousVersion: Schema.String,
  minutesSinceDeploy: Schema.Number,
  errorRate: Schema.Number,
  p99Millis: Schema.Number,
  memoryPercent: Schema.Number,
  dbPoolInUse: Schema.Number,
  dbPoolSize: Schema.Number,
  replicas: Schema.Number
}) {}

/**
 * The body of `POST /admin/remediate`.
 *
 * @category models
 * @since 0.1.0
 */
export const RemediateRequest = Schema.Struct({ incidentId: Schema.String, action: Action })

/**
 * The body of `POST /admin/revert`.
 *
 * @category models
 * @since 0.1.0
 */
export const RevertRequest = Schema.Struct({ incidentId: Schema.String })

/**
 * A remediation request the service received, as it logged it.
 *
 * @category models
 * @since 0.1.0
 */
export interface Received {
  readonly incidentId: string
  readonly request: "remediate" | "revert"
  readonly action: Action | undefined
  /** `false` when the request repeated one already applied (idempotency). */
  readonly applied: boolean
}

/**
 * The running service: its URL, and the controls of the scripted incidents.
 *
 * @category services
 * @since 0.1.0
 */
export class CheckoutService extends Context.Service<CheckoutService, {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  /** Breaks the service: a fault, and glitches for the next `/health` requests, in order. */
  readonly inject: (fault: Fault, glitches?: ReadonlyArray<Glitch>) => Effect.Effect<void>
  /** The remediation requests received so far. */
  readonly received: Effect.Effect<ReadonlyArray<Received>>
  /** The current report (what `/health` would answer without glitches). */
  readonly report: Effect.Effect<HealthReport>
}>()("examples/CheckoutService") {}

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
 * The service, listening until the layer's scope closes.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<CheckoutService, HttpServerError.ServeError> =>
  Layer.effect(CheckoutService, make).pipe(
    Layer.provide(NodeHttpServer.layer(() => Http.createServer(), {
      port: options.port ?? 0,
      host: options.host ?? "127.0.0.1"
    }))
  )

// internal

interface State {
  readonly fault: Fault
  readonly glitches: ReadonlyArray<Glitch>
  readonly version: string
  readonly previousVersion: string
  readonly replicas: number
  /** The state before each incident's remediation, for its revert. */
  readonly before: ReadonlyMap<string, { readonly fault: Fault; readonly version: string; readonly replicas: number }>
  readonly received: ReadonlyArray<Received>
}

const initial: State = {
  fault: "none",
  glitches: [],
  version: "2.4.1",
  previousVersion: "2.4.0",
  replicas: 3,
  before: new Map(),
  received: []
}

const reportOf = (state: State): HealthReport => {
  const base = {
    service: "checkout",
    version: state.version,
    previousVersion: state.previousVersion,
    minutesSinceDeploy: 240,
    errorRate: 0.002,
    p99Millis: 180,
    memoryPercent: 41,
    dbPoolInUse: 6,
    dbPoolSize: 20,
    replicas: state.replicas
  }
  switch (state.fault) {
    case "none":
      return new HealthReport({ ...base, status: "healthy" })
    case "bad_deploy":
      return new HealthReport({ ...base, status: "degraded", minutesSinceDeploy: 7, errorRate: 0.38, p99Millis: 2400 })
    case "memory_leak":
      return new HealthReport({ ...base, status: "degraded", errorRate: 0.06, p99Millis: 1800, memoryPercent: 94 })
    case "db_saturation":
      return new HealthReport({ ...base, status: "degraded", errorRate: 0.21, p99Millis: 3100, dbPoolInUse: 20 })
  }
}

/** What an action does to the service: the fault it cures, if it is that one. */
const applyAction = (state: State, action: Action): State => {
  switch (action) {
    case "rollback":
      return {
        ...state,
        fault: state.fault === "bad_deploy" ? "none" : state.fault,
        version: state.previousVersion,
        previousVersion: state.version
      }
    case "restart":
      return { ...state, fault: state.fault === "memory_leak" ? "none" : state.fault }
    case "scale_out":
      // More replicas open more connections to a database that is already the bottleneck.
      return { ...state, replicas: state.replicas + 2 }
  }
}

const make = Effect.gen(function*() {
  const state = yield* Ref.make(initial)
  const server = yield* HttpServer.HttpServer
  const router = yield* HttpRouter.make

  const health = Effect.gen(function*() {
    const glitch = yield* Ref.modify(state, (s): [Glitch | undefined, State] => [s.glitches[0], {
      ...s,
      glitches: s.glitches.slice(1)
    }])
    if (glitch === "hang") return yield* Effect.never
    if (glitch === "unavailable") return HttpServerResponse.text("upstream unavailable", { status: 503 })
    const report = reportOf(yield* Ref.get(state))
    return yield* HttpServerResponse.json(report)
  })

  const remediate = Effect.gen(function*() {
    const request = yield* HttpServerRequest.schemaBodyJson(RemediateRequest)
    const applied = yield* Ref.modify(state, (s): [boolean, State] => {
      if (s.before.has(request.incidentId)) {
        return [false, { ...s, received: [...s.received, { ...request, request: "remediate", applied: false }] }]
      }
      const before = new Map(s.before).set(request.incidentId, {
        fault: s.fault,
        version: s.version,
        replicas: s.replicas
      })
      const next = applyAction({ ...s, before }, request.action)
      return [true, { ...next, received: [...s.received, { ...request, request: "remediate", applied: true }] }]
    })
    return yield* HttpServerResponse.json({ incidentId: request.incidentId, action: request.action, applied })
  })

  const revert = Effect.gen(function*() {
    const request = yield* HttpServerRequest.schemaBodyJson(RevertRequest)
    const reverted = yield* Ref.modify(state, (s): [boolean, State] => {
      const before = s.before.get(request.incidentId)
      const log = { incidentId: request.incidentId, request: "revert" as const, action: undefined }
      if (before === undefined) return [false, { ...s, received: [...s.received, { ...log, applied: false }] }]
      const rest = new Map(s.before)
      rest.delete(request.incidentId)
      return [true, {
        ...s,
        fault: before.fault,
        version: before.version,
        replicas: before.replicas,
        before: rest,
        received: [...s.received, { ...log, applied: true }]
      }]
    })
    return yield* HttpServerResponse.json({ incidentId: request.incidentId, reverted })
  })

  const badRequest = Effect.catch(() => Effect.succeed(HttpServerResponse.text("bad request", { status: 400 })))

  yield* router.addAll([
    HttpRouter.route("GET", "/health", health.pipe(Effect.orDie)),
    HttpRouter.route("POST", "/admin/remediate", badRequest(remediate)),
    HttpRouter.route("POST", "/admin/revert", badRequest(revert))
  ])
  yield* server.serve(router.asHttpEffect())

  const address = server.address
  const port = address._tag === "UnixPathAddress" ? 0 : address.port
  return CheckoutService.of({
    url: `http://127.0.0.1:${port}`,
    inject: (fault, glitches = []) => Ref.update(state, (s) => ({ ...s, fault, glitches: [...glitches] })),
    received: Effect.map(Ref.get(state), (s) => s.received),
    report: Effect.map(Ref.get(state), reportOf)
  })
})
