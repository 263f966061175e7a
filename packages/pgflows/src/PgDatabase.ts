/**
 * The application's PostgreSQL pool, from pgflows' configuration: `PgDatabase.layer` provides
 * `PgClient` and `SqlClient` on the URL of `PGFLOWS_DATABASE_URL` (or `DATABASE_URL`, or
 * `PgflowsConfig.layer({ databaseUrl })`), in any form `DatabaseUrl` accepts (`postgres://`,
 * `postgresql://`, driver forms such as `postgresql+psycopg://`, a socket directory in `?host=`).
 *
 * It connects once when it is built, so a wrong URL fails at startup with an error that says what
 * to do: `DatabaseUrlMissing` when no URL is set, `DatabaseUnavailable` with the driver's reason
 * first, the server (without the password), the variable that set it and a hint.
 *
 * @example
 * ```ts
 * const Live = Pgflows.layerPg({ workflows: [processOrder] }).pipe(Layer.provideMerge(PgDatabase.layer()))
 * ```
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as SqlClient from "effect/sql/SqlClient"
import * as DatabaseUrl from "./DatabaseUrl.ts"
import { errorCode, innermostMessage } from "./internal/causes.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { DatabaseUnavailable, DatabaseUrlMissing } from "./PgflowsError.ts"

/**
 * Pool settings (everything of `PgClient`'s but where to connect, which comes from the URL).
 *
 * @category models
 * @since 0.1.0
 */
export type Options = Omit<
  PgClient.PgPoolConfig,
  "url" | "host" | "port" | "path" | "database" | "username" | "password"
>

/**
 * `PgClient` and `SqlClient` on the configured database URL, checked by connecting once.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<
  PgClient.PgClient | SqlClient.SqlClient,
  DatabaseUrlMissing | DatabaseUnavailable | PgflowsConfig.PgflowsConfigError
> =>
  Layer.effectContext(Effect.gen(function*() {
    const config = yield* PgflowsConfig.current
    const url = config.databaseUrl
    if (url === undefined) return yield* new DatabaseUrlMissing()
    const failed = (cause: unknown) => unavailable(cause, DatabaseUrl.describe(url), url.source ?? "the configuration")
    const context = yield* Layer.build(PgClient.layer({ ...options, ...connection(url) })).pipe(
      Effect.mapError(failed)
    )
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(
      Effect.provideContext(context),
      Effect.mapError(failed)
    )
    return context
  }))

/**
 * A `DatabaseUnavailable` for a failed connection: the driver's reason first, then where, who set
 * it, and what to check.
 *
 * @category errors
 * @since 0.1.0
 */
export const unavailable = (cause: unknown, target: string, source: string): DatabaseUnavailable => {
  const code = errorCode(cause)
  return new DatabaseUnavailable({
    reason: driverReason(cause),
    target,
    source,
    hint: hintFor(code),
    cause
  })
}

/**
 * Whether a failure is about reaching or logging in to the server (as opposed to a statement's).
 *
 * @category errors
 * @since 0.1.0
 */
export const isConnectionFailure = (cause: unknown): boolean => {
  const tag = (cause as { reason?: { _tag?: unknown } } | undefined)?.reason?._tag
  if (tag === "ConnectionError" || tag === "AuthenticationError") return true
  const code = errorCode(cause)
  return code !== undefined && (connectionCodes.has(code) || code.startsWith("08") || code.startsWith("28") ||
    code === "3D000" || code === "57P03")
}

// internal

const connection = (url: DatabaseUrl.DatabaseUrl): Partial<PgClient.PgPoolConfig> => {
  const socket = url.host.startsWith("/")
  return {
    ...(socket ? { path: `${url.host}/.s.PGSQL.${url.port}` } : { host: url.host, port: url.port }),
    ...(url.database === undefined ? {} : { database: url.database }),
    ...(url.user === undefined ? {} : { username: url.user }),
    ...(url.password === undefined ? {} : { password: Redacted.make(Redacted.value(url.password)) })
  }
}

const connectionCodes = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "EHOSTUNREACH"])

/** The driver's (or the system's) reason, with its code when the words do not say it. */
const driverReason = (cause: unknown): string => {
  const reason = innermostMessage(cause) ?? "the connection failed"
  const code = errorCode(cause)
  return code === undefined || reason.includes(code) ? reason : `${reason} (${code})`
}

const hintFor = (code: string | undefined): string => {
  switch (code) {
    case "ECONNREFUSED":
      return "nothing listens there: is PostgreSQL running, and are the host and port right?"
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "the host name does not resolve: check the host in the URL"
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
      return "the server did not answer: check the host, the port and the network (firewall, VPN)"
    case "28P01":
    case "28000":
      return "the server refused the login: check the user and password in the URL (and pg_hba.conf)"
    case "3D000":
      return "the database does not exist: create it, or fix its name in the URL"
    case "57P03":
      return "the server is starting up or shutting down: try again shortly"
    default:
      return "check that the server is up and that the URL is right"
  }
}
