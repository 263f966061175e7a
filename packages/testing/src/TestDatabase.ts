/**
 * One real, empty PostgreSQL database per test file.
 *
 * `TestDatabase.layer` creates a database (copied from the run's template, so it is fast), provides
 * a `PgClient` / `SqlClient` pool on it, and drops it when the layer is released. The server comes
 * from the vitest global setup (`globalSetup.ts`), which looked at `DATABASE_URL`, then Docker,
 * then an embedded PostgreSQL. Share the layer across a file's tests with
 * `layer(TestDatabase.layer)("...", (it) => ...)` from `@effect/vitest`.
 *
 * **Gotchas**
 *
 * Tests in one file share its database and may run concurrently: give each test its own ids,
 * queue names and tables.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Crypto from "node:crypto"
import * as Admin from "./internal/admin.ts"
import { envKey, key, type ServerInfo } from "./internal/provided.ts"

export type { ServerInfo } from "./internal/provided.ts"

/**
 * The database of the current test file.
 *
 * @category services
 * @since 0.1.0
 */
export class TestDatabase extends Context.Service<TestDatabase, {
  /** The database's name, unique per test file and run. */
  readonly name: string
  /** A URL of this database, for child processes and for clients of your own. */
  readonly url: Redacted.Redacted<string>
  /** The server the run uses. */
  readonly server: ServerInfo
}>()("@pgflows/testing/TestDatabase") {}

/**
 * The test database could not be set up.
 *
 * @category errors
 * @since 0.1.0
 */
export class TestDatabaseError extends Data.TaggedError("TestDatabaseError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return this.reason
  }
}

/**
 * The server of this test run, from vitest's provided context (or, in a child process of a test,
 * from the `PGFLOWS_TEST_SERVER` variable).
 *
 * @category accessors
 * @since 0.1.0
 */
export const server: Effect.Effect<ServerInfo, TestDatabaseError> = Effect.tryPromise({
  try: async () => {
    const fromEnv = process.env[envKey]
    if (fromEnv !== undefined) return JSON.parse(fromEnv) as ServerInfo
    const { inject } = await import("vitest")
    const info = inject(key)
    if (info === undefined) throw new Error("nothing was provided")
    return info
  },
  catch: (cause) =>
    new TestDatabaseError({
      reason: "no test server: run the tests through vitest with \"@pgflows/testing/globalSetup\" in " +
        `test.globalSetup of vitest.config.ts, or set ${envKey}`,
      cause
    })
})

/**
 * Creates this file's database and drops it (`WITH (FORCE)`) when released.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerDatabase: Layer.Layer<TestDatabase, TestDatabaseError> = Layer.effect(
  TestDatabase,
  Effect.gen(function*() {
    const info = yield* server
    const serverUrl = Redacted.make(info.url, { label: "test server" })
    const name = yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const name = `t_${fileStem()}_${Crypto.randomBytes(4).toString("hex")}`
        return Effect.as(Admin.createDatabase(serverUrl, name, info.template), name)
      }).pipe(
        Effect.mapError((cause) =>
          new TestDatabaseError({ reason: `cannot create a test database: ${cause.message}`, cause })
        )
      ),
      (name) => Effect.ignore(Admin.dropDatabase(serverUrl, name))
    )
    return TestDatabase.of({ name, url: Admin.withDatabase(serverUrl, name), server: info })
  })
)

/**
 * `layerDatabase` plus a `PgClient` / `SqlClient` pool connected to it.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  TestDatabase | PgClient.PgClient | SqlClient.SqlClient,
  TestDatabaseError | SqlError
> = Layer.unwrap(
  Effect.gen(function*() {
    const database = yield* TestDatabase
    return PgClient.layer({ url: database.url, maxConnections: 8, applicationName: `pgflows-test ${database.name}` })
  })
).pipe(Layer.provideMerge(layerDatabase))

// internal

/** The running test file's name, made safe for a database name (for finding it while debugging). */
const fileStem = (): string => {
  const path = (globalThis as { __vitest_worker__?: { filepath?: string } }).__vitest_worker__?.filepath ?? "file"
  const base = path.split("/").pop() ?? "file"
  return base.replace(/\.test\.ts$/, "").replace(/\.[a-z]+$/, "").toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 30)
}
