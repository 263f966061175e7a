/**
 * The server: `PgflowsApi` implemented on pgflows' client and the push-mode step endpoint, as Layers.
 *
 * - `layer(options)` adds the routes to the application's own `HttpRouter`, next to its routes:
 *   serve it with `HttpRouter.serve(Layer.mergeAll(MyRoutes, PgflowsServer.layer({ ... })))`. It
 *   needs `Pgflows` (the engine, for the REST API), the `SqlClient` (the step endpoint's records,
 *   `ServerMigrations`, applied when the layer is built), and what the steps need; a
 *   `PgDurableClient` in context serves `POST /pg-durable/instances/:id/signals/:name`.
 * - `layerServer(options)` is the same routes as a server of its own on Node's `http` (host and port
 *   from the options, loopback by default), with a JSON 404 for unknown routes.
 *
 * The step endpoint runs each call with `StepExecutor` (the step's retry `Schedule`, per-attempt
 * `timeout` and plugins, all attempts bounded by `stepDeadline`) and records the answer in
 * `step_calls` per (instance id, result key): a repeated call gets the recorded answer, and a
 * completed step never runs again. Steps run in the server's scope, so a caller that hangs up does
 * not stop one half-way; closing the layer interrupts them and releases their claims.
 *
 * **Gotchas**
 *
 * - Keep `stepDeadline` (25 seconds by default) under the HTTP binding's timeout
 *   (`StepBinding.http(url, { timeout })`, 30 seconds by default): pg_durable fails the node when its
 *   request times out, and does not retry it.
 * - Released pg_durable builds send `df.http` only to Azure service domains (never `localhost` or a
 *   bare IP): the step endpoint must be reachable under such a name (an Azure App Service, Front Door
 *   or API Management in front of it).
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as PgDurableClient from "@pgflows/pg-durable/PgDurableClient"
import * as StepExecutor from "@pgflows/pg-durable/StepExecutor"
import type * as StepWorker from "@pgflows/pg-durable/StepWorker"
import * as ByteSize from "effect/ByteSize"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as FileSystem from "effect/FileSystem"
import * as HttpApiBuilder from "effect/http-api/HttpApiBuilder"
import * as HttpApiError from "effect/http-api/HttpApiError"
import type * as Etag from "effect/http/Etag"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpRouter from "effect/http/HttpRouter"
import type * as HttpServer from "effect/http/HttpServer"
import * as HttpServerError from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Path from "effect/Path"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { unhandled } from "effect/Types"
import * as Http from "node:http"
import { formatIssues, toIssues } from "pgflows/JsonCodec"
import * as Pgflows from "pgflows/Pgflows"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import type { MigrationsMissing } from "pgflows/PgflowsError"
import type * as Plugin from "pgflows/Plugin"
import type * as Step from "pgflows/Step"
import * as Auth from "./Auth.ts"
import * as Dashboard from "./Dashboard.ts"
import * as Runs from "./internal/runs.ts"
import * as StepCalls from "./internal/stepCalls.ts"
import * as Views from "./internal/views.ts"
import * as PgflowsApi from "./PgflowsApi.ts"
import * as ServerConfig from "./ServerConfig.ts"
import {
  BadRequest,
  type Forbidden,
  RequestTooLarge,
  RouteNotFound,
  Unauthorized,
  UnsupportedMediaType
} from "./ServerError.ts"
import * as ServerMigrations from "./ServerMigrations.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options<S extends ReadonlyArray<Step.Any>> {
  /** Who may call the REST API: `Auth.tokens([...])`, or `Auth.none` said explicitly. */
  readonly auth: Auth.Auth
  /** The steps the step endpoint runs (`POST /steps/:name`). */
  readonly steps?: S | undefined
  /** The secret compiled graphs send (`StepBinding.http(url, { secret })`); without it every step call is refused. */
  readonly stepSecret?: Redacted.Redacted<string> | undefined
  /** Default `X-Pgflows-Step-Secret`. */
  readonly stepSecretHeader?: string | undefined
  /** How long all attempts of one step call may take together (default 25 seconds). */
  readonly stepDeadline?: Duration.Input | undefined
  /** How long a running call's claim holds without renewal (default 30 seconds). */
  readonly stepLease?: Duration.Input | undefined
  /** Plugins whose step hooks see each attempt of the step endpoint; then those of `Plugin.layer`. */
  readonly plugins?: ReadonlyArray<Plugin.Plugin> | undefined
  readonly pluginTimeout?: Duration.Input | undefined
  /** The largest request body (default 1 MiB). */
  readonly maxBodyBytes?: number | undefined
  /** A path prefix for every route, such as `/pgflows`. */
  readonly prefix?: `/${string}` | undefined
  /** Where the OpenAPI document is served (default `/openapi.json`, under the prefix); `false` for nowhere. */
  readonly openapiPath?: `/${string}` | false | undefined
}

/**
 * What the standalone server adds: where it listens.
 *
 * @category models
 * @since 0.1.0
 */
export interface ServerOptions<S extends ReadonlyArray<Step.Any>> extends Options<S> {
  /** Default `127.0.0.1`. */
  readonly host?: string | undefined
  /** Default 8080; 0 picks a free port (see `HttpServer.HttpServer`'s `address`). */
  readonly port?: number | undefined
  /** Logs a line per request (default true). */
  readonly logRequests?: boolean | undefined
  /**
   * Serves the web dashboard too (`Dashboard.layer`, at `/dashboard/` unless said otherwise), and
   * redirects `/` to it; default false.
   */
  readonly dashboard?: boolean | Omit<Dashboard.Options, "apiPrefix"> | undefined
}

/**
 * The services the routes need besides the steps'.
 *
 * @category models
 * @since 0.1.0
 */
export type Requirements = Pgflows.Pgflows | SqlClient.SqlClient

/**
 * The platform services of an HTTP server that the routes need (`NodeHttpServer.layer` provides
 * them).
 *
 * @category models
 * @since 0.1.0
 */
export type HttpServices = Etag.Generator | FileSystem.FileSystem | HttpPlatform.HttpPlatform | Path.Path

/**
 * The routes, added to the application's `HttpRouter`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <const S extends ReadonlyArray<Step.Any> = readonly []>(
  options: Options<S>
): Layer.Layer<
  never,
  | ServerConfig.ServerConfigError
  | Migrator.MigrationError
  | MigrationsMissing
  | SqlError
  | PgflowsConfig.PgflowsConfigError,
  HttpRouter.HttpRouter | Requirements | StepWorker.Requirements<S[number]> | HttpServices
> =>
  Layer.unwrap(Effect.gen(function*() {
    const settings = yield* check(options)
    yield* ServerMigrations.prepare
    const executor = yield* StepExecutor.make({
      plugins: options.plugins,
      pluginTimeout: options.pluginTimeout,
      defects: "hide"
    })
    const calls = yield* StepCalls.make({
      steps: options.steps ?? [],
      executor,
      deadline: settings.stepDeadline,
      lease: settings.stepLease,
      inProgressWait: settings.stepDeadline
    })
    const client = yield* Pgflows.Pgflows
    const pgDurable = yield* Effect.serviceOption(PgDurableClient.PgDurableClient)
    const api = options.prefix === undefined ? PgflowsApi.Api : PgflowsApi.Api.prefix(options.prefix)
    const typed = api as typeof PgflowsApi.Api

    const Steps = HttpApiBuilder.group(typed, "steps", (handlers) =>
      handlers.handle("call", ({ headers, params, payload }) =>
        calls.call(params.name, headers["x-pgflows-instance-id"], headers["x-pgflows-result-key"], payload)))

    const RunsRead = HttpApiBuilder.group(typed, "runsRead", (handlers) =>
      handlers.handleAll({
        list: ({ query }) =>
          Runs.list(client, query),
        status: ({ params }) =>
          Runs.status(client, params.id),
        event: ({ params, query }) =>
          Runs.event(client, params.id, params.key, query.timeout)
      }))

    const RunsAdmin = HttpApiBuilder.group(typed, "runsAdmin", (handlers) =>
      handlers.handleAll({
        start: ({ payload }) => Runs.start(client, payload),
        cancel: ({ params }) => Runs.cancel(client, params.id),
        retry: ({ params }) => Runs.restart(client, params.id, "retry"),
        resume: ({ params }) => Runs.restart(client, params.id, "resume"),
        signal: ({ params, payload }) => Runs.signal(client, params.id, params.name, payload),
        fork: ({ params, payload }) => Runs.fork(client, params.id, payload),
        signalInstance: ({ params, payload, query }) =>
          Runs.signalInstance(pgDurable, params.id, params.name, payload, query.timeout)
      }))

    const views = Views.make(yield* SqlClient.SqlClient, yield* PgflowsConfig.PgflowsConfig, client)
    const ViewsHandlers = HttpApiBuilder.group(typed, "views", (handlers) =>
      handlers.handleAll({
        runs: ({ query }) => views.runs(query),
        run: ({ params }) => views.run(params.id),
        stats: ({ query }) => views.stats(query)
      }))

    const System = HttpApiBuilder.group(typed, "system", (handlers) =>
      handlers.handle("health", () =>
        Effect.succeed({ status: "ok" as const })))

    const openapiPath = options.openapiPath === false
      ? undefined
      : `${options.prefix ?? ""}${options.openapiPath ?? ServerConfig.defaults.openapiPath}` as `/${string}`

    return HttpApiBuilder.layer(typed, { openapiPath }).pipe(
      Layer.provide([Steps, RunsRead, RunsAdmin, ViewsHandlers, System]),
      Layer.provide([
        guard(settings.maxBodyBytes),
        Layer.succeed(PgflowsApi.ReadAccess, bearer(settings.auth, "read")),
        Layer.succeed(PgflowsApi.AdminAccess, bearer(settings.auth, "admin")),
        stepSecret(settings.stepSecret, settings.stepSecretHeader)
      ])
    )
  })).pipe(Layer.provide(PgflowsConfig.layerDefault))

/**
 * The routes as a server of their own, on Node's `http`; unknown routes answer a JSON 404.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerServer = <const S extends ReadonlyArray<Step.Any> = readonly []>(
  options: ServerOptions<S>
): Layer.Layer<
  HttpServer.HttpServer,
  | ServerConfig.ServerConfigError
  | Migrator.MigrationError
  | SqlError
  | HttpServerError.ServeError
  | Dashboard.DashboardError,
  Requirements | StepWorker.Requirements<S[number]>
> => {
  const dashboard = options.dashboard === undefined || options.dashboard === false
    ? undefined
    : options.dashboard === true
    ? {}
    : options.dashboard
  const pages = dashboard === undefined ? Layer.empty : Layer.mergeAll(
    Dashboard.layer({ ...dashboard, apiPrefix: options.prefix }),
    options.prefix === undefined && (dashboard.path ?? Dashboard.defaultPath) !== "/"
      ? Dashboard.layerRedirectRoot(dashboard.path ?? Dashboard.defaultPath)
      : Layer.empty
  )
  return HttpRouter.serve(Layer.mergeAll(layer(options), pages, notFound), {
    disableListenLog: true,
    disableLogger: options.logRequests === false
  }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(Http.createServer, {
      host: options.host ?? ServerConfig.defaults.host,
      port: options.port ?? ServerConfig.defaults.port
    }))
    // HttpRouter.serve's request types do not see through the steps' generic requirements.
  ) as unknown as Layer.Layer<
    HttpServer.HttpServer,
    | ServerConfig.ServerConfigError
    | Migrator.MigrationError
    | SqlError
    | HttpServerError.ServeError
    | Dashboard.DashboardError,
    Requirements | StepWorker.Requirements<S[number]>
  >
}

/**
 * A JSON 404 (`RouteNotFound`) for every route nothing else answers. `layerServer` adds it; add it
 * to an application's own server only when no other route should answer unknown paths.
 *
 * @category layers
 * @since 0.1.0
 */
export const notFound: Layer.Layer<never, never, HttpRouter.HttpRouter> = HttpRouter.add(
  "*",
  "*",
  (request) =>
    HttpServerResponse.json(
      new RouteNotFound({
        method: request.method,
        path: request.url.split("?")[0] ?? request.url,
        message: `no route for ${request.method} ${request.url.split("?")[0]}`
      }),
      { status: 404 }
    ).pipe(Effect.orDie)
)

// internal

interface Checked {
  readonly auth: Auth.Auth
  readonly stepSecret: Redacted.Redacted<string> | undefined
  readonly stepSecretHeader: string
  readonly stepDeadline: Duration.Duration
  readonly stepLease: Duration.Duration
  readonly maxBodyBytes: number
}

const check = <S extends ReadonlyArray<Step.Any>>(
  options: Options<S>
): Effect.Effect<Checked, ServerConfig.ServerConfigError> =>
  Effect.gen(function*() {
    const fail = (setting: string, reason: string) =>
      Effect.fail(new ServerConfig.ServerConfigError({ setting, reason }))
    if (options.auth === undefined) return yield* fail("auth", "is required: Auth.tokens([...]) or Auth.none")
    if (options.auth._tag === "Tokens") {
      if (options.auth.tokens.length === 0) return yield* fail("auth", "lists no token (use Auth.none for none)")
      for (const [index, token] of options.auth.tokens.entries()) {
        const problem = Auth.secretProblem(Redacted.value(token.token))
        if (problem !== undefined) return yield* fail("auth", `the token of entry ${index + 1} ${problem}`)
      }
    }
    if (options.stepSecret !== undefined) {
      const problem = Auth.secretProblem(Redacted.value(options.stepSecret))
      if (problem !== undefined) return yield* fail("stepSecret", `the secret ${problem}`)
    }
    const header = options.stepSecretHeader ?? ServerConfig.defaults.stepSecretHeader
    if (Result.isFailure(ServerConfig.headerName(header))) {
      return yield* fail("stepSecretHeader", "is not a header name")
    }
    const maxBodyBytes = options.maxBodyBytes ?? ServerConfig.defaults.maxBodyBytes
    const limit = ServerConfig.bodyLimit(maxBodyBytes)
    if (Result.isFailure(limit)) return yield* fail("maxBodyBytes", limit.failure)
    const positive = (setting: string, input: Duration.Input | undefined, fallback: Duration.Duration) => {
      const value = input === undefined ? Option.some(fallback) : Duration.fromInput(input)
      return Option.isSome(value) && Duration.toMillis(value.value) > 0
        ? Effect.succeed(value.value)
        : fail(setting, "must be a positive duration")
    }
    if (options.prefix !== undefined && !/^(\/[A-Za-z0-9._~-]+)+$/.test(options.prefix)) {
      return yield* fail("prefix", "must be a path such as /pgflows (letters, digits, . _ ~ -)")
    }
    return {
      auth: options.auth,
      stepSecret: options.stepSecret,
      stepSecretHeader: header,
      stepDeadline: yield* positive("stepDeadline", options.stepDeadline, ServerConfig.defaults.stepDeadline),
      stepLease: yield* positive("stepLease", options.stepLease, ServerConfig.defaults.stepLease),
      maxBodyBytes
    }
  })

/** Bounds the body and turns what the HTTP layer refuses into the server's typed errors. */
const guard = (maxBodyBytes: number) =>
  Layer.succeed(PgflowsApi.RequestGuard, (httpEffect) => {
    type Guarded = Effect.Effect<
      HttpServerResponse.HttpServerResponse,
      unhandled | BadRequest | RequestTooLarge | UnsupportedMediaType,
      HttpServerRequest.HttpServerRequest
    >
    const schemaErrors: Guarded = Effect.catchIf(
      httpEffect,
      HttpApiError.HttpApiSchemaError.is,
      (caught): Guarded => {
        const error = caught as unknown as HttpApiError.HttpApiSchemaError
        if (error.kind === "Body" || error.kind === "ResponseHeaders") return Effect.fail(caught)
        const issues = toIssues(error.cause)
        const notJson = issues.some((issue) => issue.message === "Expected a valid JSON body")
        return Effect.fail(
          new BadRequest({
            issues,
            message: notJson
              ? "the body is not valid JSON"
              : `invalid ${error.kind.toLowerCase()}: ${formatIssues(issues)}`
          })
        )
      }
    )
    const bodyErrors: Guarded = Effect.catchDefect(schemaErrors, (defect): Guarded => {
      const reason = HttpServerError.isHttpServerError(defect) ? defect.reason : undefined
      if (reason?._tag === "RequestParseError") {
        return reason.reason === "BodyTooLarge"
          ? Effect.fail(
            new RequestTooLarge({
              limit: maxBodyBytes,
              message: `the request body is larger than ${maxBodyBytes} bytes`
            })
          )
          : Effect.fail(new BadRequest({ issues: [], message: "the request body could not be read" }))
      }
      return Effect.die(defect)
    })
    const mediaType: Guarded = Effect.flatMap(bodyErrors, (response): Guarded =>
      response.status === 415
        ? Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          Effect.fail(
            new UnsupportedMediaType({
              contentType: request.headers["content-type"] ?? "",
              message: "the body must be application/json"
            })
          ))
        : Effect.succeed(response))
    return Effect.provideService(mediaType, HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBodyBytes))
  })

/** Bearer tokens with a scope. */
const bearer = (auth: Auth.Auth, required: Auth.Scope) => ({
  bearer: (
    httpEffect: Effect.Effect<HttpServerResponse.HttpServerResponse, unhandled>,
    { credential }: { readonly credential: Redacted.Redacted<string> }
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, unhandled | Unauthorized | Forbidden> =>
    Result.match(Auth.authorize(auth, Redacted.value(credential), required), {
      onFailure: (error) => Effect.fail(error),
      onSuccess: () => httpEffect
    })
})

/** The step endpoint's shared secret, read from the configured header. */
const stepSecret = (secret: Redacted.Redacted<string> | undefined, header: string) =>
  Layer.succeed(PgflowsApi.StepSecret, {
    stepSecret: (httpEffect) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): Effect.Effect<
        HttpServerResponse.HttpServerResponse,
        unhandled | Unauthorized
      > => {
        if (secret === undefined) {
          return Effect.fail(
            new Unauthorized({
              message: "the step endpoint has no secret configured (PgflowsServer.layer({ stepSecret })), so it " +
                "refuses every call"
            })
          )
        }
        const presented = request.headers[header.toLowerCase()]
        if (presented === undefined || presented === "") {
          return Effect.fail(new Unauthorized({ message: `a step call needs the shared secret in ${header}` }))
        }
        if (!Auth.secretMatches(secret, presented)) {
          return Effect.fail(new Unauthorized({ message: `wrong shared secret in ${header}` }))
        }
        return httpEffect
      })
  })
