/**
 * The first hour, on a real PostgreSQL: configuration read from the environment by the layers users
 * build, migrations as a deploy step (`auto`, `verify`, `off`, the `pgflows-migrate` command, a role
 * with only USAGE and DML rights), and connection errors that say where and what to check.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { ConfigProvider, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as Path from "node:path"
import { PgDatabase, Pgflows, PgflowsError, PgMigrations, Step, Workflow } from "pgflows"

const Num = Schema.Struct({ n: Schema.Number })
const double = Step.make("double", { input: Num, output: Num, run: (i) => Effect.succeed({ n: i.n * 2 }) })
const doubling = Workflow.make("deploy_doubling", { input: Num, output: Num, run: double })

const suffix = () => Crypto.randomBytes(4).toString("hex")

/** Runs `self` with the given variables as the only environment Effect's `Config` sees. */
const withEnv = (env: Record<string, string>) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

/** The wiring the README shows: no configuration in code, everything from the environment. */
const app = Pgflows.layerPg({ workflows: [doubling] }).pipe(Layer.provideMerge(PgDatabase.layer()))

/** Starts a run and completes it through the application's layers. */
const roundTrip = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  const id = yield* client.start(doubling, { n: 21 })
  yield* client.processOnce
  return yield* client.result(id)
}).pipe(Effect.provide(app), Effect.scoped)

/** A URL of the test database with other parts (scheme, user, password, database, port). */
const variant = (url: Redacted.Redacted<string>, change: (parsed: URL) => void, scheme?: string) => {
  const parsed = new URL(Redacted.value(url))
  change(parsed)
  const text = parsed.toString()
  return scheme === undefined ? text : text.replace(/^[a-z+]+:/, `${scheme}:`)
}

/** A TCP port nothing listens on. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
)

const migrate = (env: Record<string, string>, args: ReadonlyArray<string> = []) =>
  Effect.promise(() =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = ChildProcess.spawn(
        process.execPath,
        ["--conditions=@pgflows/source", Path.join(import.meta.dirname, "../src/bin/migrate.ts"), ...args],
        { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] }
      )
      let output = ""
      child.stdout.on("data", (chunk) => output += chunk)
      child.stderr.on("data", (chunk) => output += chunk)
      child.on("exit", (code) => resolve({ code, output }))
    })
  )

layer(TestDatabase.layer, { excludeTestServices: true })("deploying pgflows", (it) => {
  it.effect("the layers read PGFLOWS_* and PGFLOWS_DATABASE_URL alone, without any configuration in code", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const sql = yield* SqlClient.SqlClient
      const schema = `env_${suffix()}`
      const output = yield* roundTrip.pipe(
        withEnv({
          PGFLOWS_DATABASE_URL: Redacted.value(database.url),
          PGFLOWS_SCHEMA: schema,
          PGFLOWS_QUEUE: `q_${schema}`
        })
      )
      assert.deepStrictEqual(output, { n: 42 })
      const rows = yield* sql<{ workflow: string }>`SELECT workflow FROM ${sql(`${schema}.runs`)}`
      assert.deepStrictEqual(rows.map((row) => row.workflow), ["deploy_doubling"], "the run is in PGFLOWS_SCHEMA")
    }))

  it.effect("a bad variable fails the application's startup with an error naming it", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const exit = yield* Effect.exit(
        roundTrip.pipe(withEnv({ PGFLOWS_DATABASE_URL: Redacted.value(database.url), PGFLOWS_SCHEMA: "bad;drop" }))
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit)) : undefined
      assert.strictEqual((error as { _tag?: string } | undefined)?._tag, "PgflowsConfigError")
      assert.match(String((error as Error).message), /^PGFLOWS_SCHEMA /)
      const sql = yield* SqlClient.SqlClient
      const [schemas] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'bad%'`
      assert.strictEqual(schemas!.n, 0, "nothing was created")
    }))

  it.effect("DATABASE_URL, and every URL form the README accepts, reach the database", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const forms = [
        ["DATABASE_URL", variant(database.url, () => {}, "postgres")],
        ["PGFLOWS_DATABASE_URL", variant(database.url, () => {}, "postgresql")],
        ["PGFLOWS_DATABASE_URL", variant(database.url, () => {}, "postgresql+psycopg")],
        ["DATABASE_URL", variant(database.url, () => {}, "postgres+asyncpg")]
      ] as const
      for (const [variable, url] of forms) {
        const schema = `url_${suffix()}`
        const output = yield* roundTrip.pipe(
          withEnv({ [variable]: url, PGFLOWS_SCHEMA: schema, PGFLOWS_QUEUE: schema })
        )
        assert.deepStrictEqual(output, { n: 42 }, `${variable}=${url.replace(/:[^:@/]*@/, ":***@")}`)
      }
    }))

  it.effect(
    "connection failures name the server, the variable and what to check, with the driver's reason first",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const port = yield* closedPort
        const cases = [
          {
            url: variant(database.url, (u) => void (u.port = String(port))),
            reason: /ECONNREFUSED/,
            hint: /nothing listens there/
          },
          {
            url: variant(database.url, (u) => void (u.password = "wrong")),
            reason: /password|auth/i,
            hint: /refused the login/
          },
          {
            url: variant(database.url, (u) => void (u.pathname = "/no_such_database")),
            reason: /no_such_database/,
            hint: /does not exist/
          }
        ]
        for (const { url, reason, hint } of cases) {
          const error = yield* Effect.flip(
            roundTrip.pipe(withEnv({ PGFLOWS_DATABASE_URL: url, PGFLOWS_SCHEMA: `c_${suffix()}` }))
          )
          assert.instanceOf(error, PgflowsError.DatabaseUnavailable, String(error))
          const unavailable = error as PgflowsError.DatabaseUnavailable
          assert.match(unavailable.reason, reason)
          assert.match(unavailable.message, reason, "the driver's reason comes first")
          assert.isTrue(unavailable.message.indexOf(unavailable.reason) === 0)
          assert.include(unavailable.message, `127.0.0.1:${new URL(url).port}`)
          assert.include(unavailable.message, "PGFLOWS_DATABASE_URL")
          assert.match(unavailable.hint, hint)
          assert.notInclude(unavailable.message, "wrong", "no password in the message")
        }
        const missing = yield* Effect.flip(roundTrip.pipe(withEnv({})))
        assert.instanceOf(missing, PgflowsError.DatabaseUrlMissing)
        assert.match(missing.message, /set PGFLOWS_DATABASE_URL \(or DATABASE_URL\)/)
      }),
    60_000
  )

  it.effect("the application's own PgClient that cannot connect is reported as such, not as failed migrations", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const error = yield* Effect.flip(
        Effect.scoped(Effect.asVoid(Layer.build(Pgflows.layerPg({ workflows: [doubling] })))).pipe(
          Effect.provide(
            PgClient.layer({ host: "127.0.0.1", port, database: "app", username: "app", connectTimeout: "2 seconds" })
          ),
          withEnv({})
        )
      )
      assert.instanceOf(error, PgflowsError.DatabaseUnavailable, String(error))
      assert.include(error.message, `app@127.0.0.1:${port}/app`)
      assert.include(error.message, "the application's PgClient")
      assert.match(error.message, /^[^:]*ECONNREFUSED/)
    }))

  it.effect("PGFLOWS_MIGRATIONS=verify names the missing migrations; off touches nothing", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const sql = yield* SqlClient.SqlClient
      const schema = `verify_${suffix()}`
      const env = { PGFLOWS_DATABASE_URL: Redacted.value(database.url), PGFLOWS_SCHEMA: schema, PGFLOWS_QUEUE: schema }
      const error = yield* Effect.flip(roundTrip.pipe(withEnv({ ...env, PGFLOWS_MIGRATIONS: "verify" })))
      assert.instanceOf(error, PgflowsError.MigrationsMissing)
      assert.strictEqual(
        (error as PgflowsError.MigrationsMissing).missing.length,
        PgMigrations.migrations(schema as never).length
      )
      assert.match(error.message, /npx pgflows-migrate/)
      const built = yield* Effect.exit(
        Effect.scoped(Effect.asVoid(Layer.build(app))).pipe(withEnv({ ...env, PGFLOWS_MIGRATIONS: "off" }))
      )
      assert.isTrue(Exit.isFailure(built), "off does not create the tables, so the settings write fails")
      const [created] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${schema}`
      assert.strictEqual(created!.n, 0, "neither verify nor off created the schema")
      const bad = yield* Effect.flip(roundTrip.pipe(withEnv({ ...env, PGFLOWS_MIGRATIONS: "sometimes" })))
      assert.match((bad as Error).message, /^PGFLOWS_MIGRATIONS .*use auto, verify or off/)
    }))

  it.effect(
    "pgflows-migrate applies the migrations in a deploy step; a role with only USAGE and DML then runs with verify",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const sql = yield* SqlClient.SqlClient
        const schema = `least_${suffix()}`
        const admin = { PGFLOWS_DATABASE_URL: Redacted.value(database.url), PGFLOWS_SCHEMA: schema }
        const missing = yield* migrate(admin, ["--verify"])
        assert.strictEqual(missing.code, 1, missing.output)
        assert.match(missing.output, /lacks migrations 1 \(queue\)/)
        const applied = yield* migrate(admin)
        assert.strictEqual(applied.code, 0, applied.output)
        assert.match(applied.output, /applied to schema "least_\w+" at postgresql:\/\/\S+: 1 \(queue\), 2 \(runs\)/)
        assert.notMatch(applied.output, new RegExp(Redacted.value(database.url).replace(/.*:(.*)@.*/, "$1")))
        const again = yield* migrate(admin)
        assert.match(again.output, /is up to date/)
        assert.strictEqual((yield* migrate(admin, ["--verify"])).code, 0)
        assert.strictEqual((yield* migrate({})).code, 1, "no URL: a message, status 1")
        assert.strictEqual((yield* migrate(admin, ["--bogus"])).code, 2)
        // The application's role: no CREATE anywhere, only what the engine needs.
        const role = `app_${suffix()}`
        const s = sql(schema)
        yield* sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'app-secret'`)
        yield* sql`GRANT USAGE ON SCHEMA ${s} TO ${sql(role)}`
        yield* sql`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${s} TO ${sql(role)}`
        yield* sql`GRANT USAGE ON ALL SEQUENCES IN SCHEMA ${s} TO ${sql(role)}`
        yield* sql`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ${s} TO ${sql(role)}`
        yield* sql`REVOKE CREATE ON SCHEMA public FROM PUBLIC`
        const url = variant(database.url, (u) => {
          u.username = role
          u.password = "app-secret"
        })
        const output = yield* roundTrip.pipe(
          withEnv({ PGFLOWS_DATABASE_URL: url, PGFLOWS_SCHEMA: schema, PGFLOWS_MIGRATIONS: "verify" })
        )
        assert.deepStrictEqual(output, { n: 42 })
        const denied = yield* Effect.flip(
          roundTrip.pipe(
            withEnv({ PGFLOWS_DATABASE_URL: url, PGFLOWS_SCHEMA: `${schema}_new`, PGFLOWS_MIGRATIONS: "auto" })
          )
        )
        assert.match((denied as Error).message, /permission denied/, "auto needs CREATE, which the role lacks")
        assert.match((denied as Error).message, /pgflows-migrate/)
      }),
    60_000
  )
})
