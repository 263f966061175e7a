import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Redacted } from "effect"
import { DatabaseUrl, PgflowsConfig } from "pgflows"

const fromEnv = (env: Record<string, string>) =>
  PgflowsConfig.fromEnv.pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })))

const failure = (env: Record<string, string>) => Effect.flip(fromEnv(env))

describe("PgflowsConfig.fromEnv", () => {
  it.effect("has defaults for everything when the environment is empty", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.strictEqual(config.databaseUrl, undefined)
      assert.strictEqual(config.schema, "pgflows")
      assert.strictEqual(config.queue, "pgflows_workflows")
      assert.strictEqual(config.stepQueue, "pgflows_steps")
      assert.strictEqual(config.notifyChannel, "pgflows_wakeup")
      assert.strictEqual(Duration.toMillis(config.lease), 30_000)
      assert.strictEqual(Duration.toMillis(config.visibilityTimeout), 30_000)
      assert.strictEqual(Duration.toMillis(config.pollInterval), 1_000)
      assert.strictEqual(Duration.toMillis(config.parkThreshold), 5_000)
      assert.strictEqual(config.otelEnabled, false)
      assert.strictEqual(config.workerConcurrency, 16)
    }))

  it.effect("reads every variable", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        DATABASE_URL: "postgres://app:pw@db.internal:6543/orders",
        PGFLOWS_SCHEMA: "flows_v2",
        PGFLOWS_QUEUE: "orders_runs",
        PGFLOWS_STEP_QUEUE: "orders_steps",
        PGFLOWS_NOTIFY_CHANNEL: "orders_wake",
        PGFLOWS_LEASE: "2 minutes",
        PGFLOWS_VISIBILITY_TIMEOUT: "45 seconds",
        PGFLOWS_POLL_INTERVAL: "250",
        PGFLOWS_PARK_THRESHOLD: "0 millis",
        PGFLOWS_OTEL_ENABLED: "true",
        PGFLOWS_WORKER_CONCURRENCY: "64"
      })
      assert.strictEqual(config.databaseUrl?.host, "db.internal")
      assert.strictEqual(config.databaseUrl?.port, 6543)
      assert.strictEqual(config.databaseUrl?.database, "orders")
      assert.strictEqual(config.schema, "flows_v2")
      assert.strictEqual(config.queue, "orders_runs")
      assert.strictEqual(config.stepQueue, "orders_steps")
      assert.strictEqual(config.notifyChannel, "orders_wake")
      assert.strictEqual(Duration.toMillis(config.lease), 120_000)
      assert.strictEqual(Duration.toMillis(config.visibilityTimeout), 45_000)
      assert.strictEqual(Duration.toMillis(config.pollInterval), 250)
      assert.strictEqual(Duration.toMillis(config.parkThreshold), 0)
      assert.strictEqual(config.otelEnabled, true)
      assert.strictEqual(config.workerConcurrency, 64)
    }))

  it.effect("treats an empty variable as unset", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({ PGFLOWS_SCHEMA: "", DATABASE_URL: "" })
      assert.strictEqual(config.schema, "pgflows")
      assert.strictEqual(config.databaseUrl, undefined)
    }))

  it.effect("prefers PGFLOWS_DATABASE_URL over DATABASE_URL", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        DATABASE_URL: "postgres://a@one:5432/x",
        PGFLOWS_DATABASE_URL: "postgres://b@two:5432/y"
      })
      assert.strictEqual(config.databaseUrl?.host, "two")
    }))

  const bad: ReadonlyArray<readonly [variable: string, value: string, message: RegExp]> = [
    ["PGFLOWS_SCHEMA", "Flows", /^PGFLOWS_SCHEMA "Flows" is not a valid schema name: it must be 1 to 63 lowercase/],
    ["PGFLOWS_SCHEMA", "flows; drop table x", /^PGFLOWS_SCHEMA "flows; drop table x" is not a valid schema name/],
    ["PGFLOWS_SCHEMA", " ", /^PGFLOWS_SCHEMA " " is not a valid schema name/],
    ["PGFLOWS_SCHEMA", "pg_flows", /^PGFLOWS_SCHEMA "pg_flows" starts with pg_, which PostgreSQL reserves/],
    ["PGFLOWS_QUEUE", "q".repeat(48), /^PGFLOWS_QUEUE is 48 characters long; a queue name must be 1 to 47/],
    ["PGFLOWS_STEP_QUEUE", "steps-1", /^PGFLOWS_STEP_QUEUE "steps-1" is not a valid queue name/],
    ["PGFLOWS_NOTIFY_CHANNEL", "1wake", /^PGFLOWS_NOTIFY_CHANNEL "1wake" is not a valid channel name/],
    ["PGFLOWS_LEASE", "soon", /^PGFLOWS_LEASE "soon" is not a duration; write a number of milliseconds or/],
    ["PGFLOWS_LEASE", "0 seconds", /^PGFLOWS_LEASE must be a finite duration longer than zero, got 0/],
    ["PGFLOWS_VISIBILITY_TIMEOUT", "-5 seconds", /^PGFLOWS_VISIBILITY_TIMEOUT must be a finite duration longer/],
    ["PGFLOWS_POLL_INTERVAL", "1 fortnight", /^PGFLOWS_POLL_INTERVAL "1 fortnight" is not a duration/],
    ["PGFLOWS_PARK_THRESHOLD", "x", /^PGFLOWS_PARK_THRESHOLD "x" is not a duration/],
    ["PGFLOWS_OTEL_ENABLED", "maybe", /^PGFLOWS_OTEL_ENABLED "maybe" is not a boolean; use true or false/],
    ["PGFLOWS_WORKER_CONCURRENCY", "many", /^PGFLOWS_WORKER_CONCURRENCY "many" is not a whole number/],
    ["PGFLOWS_WORKER_CONCURRENCY", "0", /^PGFLOWS_WORKER_CONCURRENCY must be a whole number from 1 to 10000, got 0/],
    ["DATABASE_URL", "mysql://u:pw@h/db", /^DATABASE_URL has scheme mysql: but must start with postgres:\/\//],
    ["DATABASE_URL", "postgres://u:pw@:5432/db", /^DATABASE_URL (has no host|is not a valid URL)/],
    ["DATABASE_URL", "postgres://u:pw@h:99999/db", /^DATABASE_URL (has port 99999|is not a valid URL)/],
    ["PGFLOWS_DATABASE_URL", "   ", /^PGFLOWS_DATABASE_URL is empty/],
    ["PGFLOWS_RETENTION", "a while", /^PGFLOWS_RETENTION "a while" is not a duration/],
    ["PGFLOWS_RETENTION_FAILED", "0", /^PGFLOWS_RETENTION_FAILED must be a finite duration longer than zero/],
    ["PGFLOWS_RETENTION_INTERVAL", "never", /^PGFLOWS_RETENTION_INTERVAL "never" is not a duration/]
  ]
  for (const [variable, value, message] of bad) {
    it.effect(`rejects ${variable}=${JSON.stringify(value.length > 20 ? `${value.slice(0, 20)}...` : value)}`, () =>
      Effect.gen(function*() {
        const error = yield* failure({ [variable]: value })
        assert.strictEqual(error._tag, "PgflowsConfigError")
        assert.strictEqual(error.variable, variable)
        assert.match(error.message, message)
      }))
  }

  it.effect("never prints a password, in values or in errors", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({ DATABASE_URL: "postgres://app:hunter2-secret@db:5432/x" })
      assert.notInclude(String(config.databaseUrl?.url), "hunter2")
      assert.notInclude(JSON.stringify(config), "hunter2")
      assert.notInclude(String(config.databaseUrl?.password), "hunter2")
      assert.strictEqual(Redacted.value(config.databaseUrl!.password!), "hunter2-secret")
      assert.strictEqual(DatabaseUrl.describe(config.databaseUrl!), "postgresql://app@db:5432/x")
      const error = yield* failure({ DATABASE_URL: "postgres://app:hunter2-secret@db:5432/x y%zz" })
      assert.notInclude(error.message, "hunter2")
    }))
})

describe("DatabaseUrl.parse", () => {
  it("normalises driver-qualified schemes to postgresql://", () => {
    for (const input of ["postgresql+psycopg://u:p@h:1/d", "postgres+asyncpg://u:p@h:1/d", "POSTGRES://u:p@h:1/d"]) {
      const parsed = DatabaseUrl.parse(input)
      assert.isTrue(parsed._tag === "Success", input)
      if (parsed._tag === "Success") {
        assert.strictEqual(Redacted.value(parsed.success.url), "postgresql://u:p@h:1/d")
        assert.strictEqual(parsed.success.user, "u")
        assert.strictEqual(Redacted.value(parsed.success.password!), "p")
      }
    }
  })

  it("decodes percent-encoded parts and accepts a socket directory as host", () => {
    const parsed = DatabaseUrl.parse("postgres://me%40corp:p%2Fw@[::1]:5433/my%20db")
    assert.isTrue(parsed._tag === "Success")
    if (parsed._tag === "Success") {
      assert.strictEqual(parsed.success.user, "me@corp")
      assert.strictEqual(Redacted.value(parsed.success.password!), "p/w")
      assert.strictEqual(parsed.success.host, "::1")
      assert.strictEqual(parsed.success.database, "my db")
    }
    const socket = DatabaseUrl.parse("postgresql:///app?host=/var/run/postgresql")
    assert.isTrue(socket._tag === "Success" && socket.success.host === "/var/run/postgresql")
  })
})

describe("retention settings", () => {
  const millis = (duration: Duration.Duration | undefined) =>
    duration === undefined ? undefined : Duration.isFinite(duration) ? Duration.toMillis(duration) : "forever"
  const policy = (config: PgflowsConfig.PgflowsConfig) => ({
    completed: millis(config.retention.completed),
    failed: millis(config.retention.failed),
    cancelled: millis(config.retention.cancelled)
  })

  it.effect("keeps runs forever and looks every minute by default", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.deepStrictEqual(policy(config), { completed: undefined, failed: undefined, cancelled: undefined })
      assert.strictEqual(Duration.toMillis(config.retentionInterval), 60_000)
    }))

  it.effect("PGFLOWS_RETENTION applies to every state, and each state's variable overrides it", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        PGFLOWS_RETENTION: "7 days",
        PGFLOWS_RETENTION_FAILED: "30 days",
        PGFLOWS_RETENTION_CANCELLED: "forever",
        PGFLOWS_RETENTION_INTERVAL: "5 minutes"
      })
      assert.deepStrictEqual(policy(config), {
        completed: 7 * 86_400_000,
        failed: 30 * 86_400_000,
        cancelled: "forever"
      })
      assert.strictEqual(Duration.toMillis(config.retentionInterval), 300_000)
      const one = yield* fromEnv({ PGFLOWS_RETENTION_COMPLETED: "1 hour" })
      assert.deepStrictEqual(policy(one), { completed: 3_600_000, failed: undefined, cancelled: undefined })
    }))

  it.effect("in code: one duration or one per state, checked", () =>
    Effect.gen(function*() {
      const all = yield* PgflowsConfig.make({ retention: "2 days" })
      assert.deepStrictEqual(policy(all), { completed: 172_800_000, failed: 172_800_000, cancelled: 172_800_000 })
      const some = yield* PgflowsConfig.make({ retention: { failed: "1 day" } })
      assert.deepStrictEqual(policy(some), { completed: undefined, failed: 86_400_000, cancelled: undefined })
      const error = yield* Effect.flip(PgflowsConfig.make({ retention: { completed: "0 millis" } }))
      assert.strictEqual(error.variable, "retention")
      assert.match(error.message, /^retention completed: must be longer than zero/)
    }))
})

describe("PgflowsConfig.make", () => {
  it.effect("checks settings written in code and names the option", () =>
    Effect.gen(function*() {
      const config = yield* PgflowsConfig.make({ schema: "app_flows", lease: "10 seconds", workerConcurrency: 4 })
      assert.strictEqual(config.schema, "app_flows")
      assert.strictEqual(Duration.toMillis(config.lease), 10_000)
      const error = yield* Effect.flip(PgflowsConfig.make({ queue: "Orders" }))
      assert.strictEqual(error.variable, "queue")
      assert.match(error.message, /^queue "Orders" is not a valid queue name/)
      const empty = yield* Effect.flip(PgflowsConfig.make({ schema: "" }))
      assert.strictEqual(
        empty.message,
        "schema is empty; a schema name must be 1 to 63 lowercase letters, digits or underscores, starting with a letter or underscore"
      )
      const negative = yield* Effect.flip(PgflowsConfig.make({ pollInterval: Duration.millis(-1) }))
      assert.match(negative.message, /^pollInterval must be a finite duration longer than zero/)
    }))

  it.effect("layer provides the configuration to PgflowsConfig.PgflowsConfig", () =>
    Effect.gen(function*() {
      const config = yield* PgflowsConfig.PgflowsConfig
      assert.strictEqual(config.notifyChannel, "custom_wake")
    }).pipe(Effect.provide(PgflowsConfig.layer({ notifyChannel: "custom_wake" }))))
})
