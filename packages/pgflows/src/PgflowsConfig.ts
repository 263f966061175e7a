/**
 * pgflows' configuration: which database, which schema, queue and channel names, how long leases,
 * visibility timeouts and polls last, whether OpenTelemetry is on, and how many runs a worker runs at
 * once.
 *
 * Where it comes from: the layers a user builds (`Pgflows.layerPg`, `Pgflows.layerMemory`,
 * `PgDatabase.layer`, the stores, schedulers and step workers) use the configuration provided to
 * them (`PgflowsConfig.layer({ ... })` in code, or `PgflowsConfig.layerFromEnv`), and when none was
 * provided they read the environment (`PgflowsConfig.current`). `PgflowsConfig.fromEnv` reads it
 * with Effect's `Config` (so any `ConfigProvider` works) from these variables, each optional:
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `PGFLOWS_DATABASE_URL` or `DATABASE_URL` | none | connection URL (`postgres://`, `postgresql://`, `postgresql+psycopg://`, ...) |
 * | `PGFLOWS_SCHEMA` | `pgflows` | schema of pgflows' tables and functions |
 * | `PGFLOWS_QUEUE` | `pgflows_workflows` | queue of workflow runs |
 * | `PGFLOWS_STEP_QUEUE` | `pgflows_steps` | queue of push-mode step calls |
 * | `PGFLOWS_NOTIFY_CHANNEL` | `pgflows_wakeup` | NOTIFY channel that wakes idle workers |
 * | `PGFLOWS_LEASE` | `30 seconds` | how long a claim lasts without a heartbeat |
 * | `PGFLOWS_VISIBILITY_TIMEOUT` | `30 seconds` | how long a read queue message stays invisible |
 * | `PGFLOWS_POLL_INTERVAL` | `1 second` | how often idle workers poll when no NOTIFY arrives |
 * | `PGFLOWS_PARK_THRESHOLD` | `5 seconds` | retry delays longer than this park the run instead of sleeping |
 * | `PGFLOWS_OTEL_ENABLED` | `false` | export spans through OpenTelemetry |
 * | `PGFLOWS_WORKER_CONCURRENCY` | `16` | runs a worker executes at once |
 * | `PGFLOWS_SHUTDOWN_GRACE` | `10 seconds` | how long a stopping worker lets in-flight runs finish before handing them back |
 * | `PGFLOWS_MAX_PAYLOAD_BYTES` | `1048576` | largest JSON input, output or error stored |
 * | `PGFLOWS_MAX_RECOVERIES` | `10` | lost leases a run survives before it is failed (crash loops) |
 * | `PGFLOWS_MAX_DELIVERIES` | `10` | deliveries of a push-mode step call no step worker registers before it is failed |
 * | `PGFLOWS_UNCLAIMED_WARNING` | `1 minute` | how long a due run may wait for a worker that registers its workflow before workers warn |
 * | `PGFLOWS_MIGRATIONS` | `auto` | at startup: `auto` applies missing migrations, `verify` only checks that none is missing, `off` does neither |
 * | `PGFLOWS_RETENTION` | none (forever) | how long ended runs are kept, every state (see `Retention`) |
 * | `PGFLOWS_RETENTION_COMPLETED`, `PGFLOWS_RETENTION_FAILED`, `PGFLOWS_RETENTION_CANCELLED` | `PGFLOWS_RETENTION` | the same, for one state |
 * | `PGFLOWS_RETENTION_INTERVAL` | `1 minute` | how often a worker prunes the runs its policies let go |
 *
 * Durations use Effect's form (`500 millis`, `30 seconds`, `2 minutes`) or a bare number of
 * milliseconds. An empty variable counts as unset. Names that reach SQL text are checked here, once
 * (see `Identifier`). Every bad value fails with a `PgflowsConfigError` that names the variable; a
 * password is never printed.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as DatabaseUrl from "./DatabaseUrl.ts"
import * as Identifier from "./Identifier.ts"
import * as Retention from "./Retention.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface PgflowsConfig {
  /** Absent when the application provides its own `SqlClient`. */
  readonly databaseUrl: DatabaseUrl.DatabaseUrl | undefined
  readonly schema: Identifier.Identifier
  readonly queue: Identifier.Identifier
  readonly stepQueue: Identifier.Identifier
  readonly notifyChannel: Identifier.Identifier
  readonly lease: Duration.Duration
  readonly visibilityTimeout: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly parkThreshold: Duration.Duration
  readonly otelEnabled: boolean
  readonly workerConcurrency: number
  readonly shutdownGrace: Duration.Duration
  readonly maxPayloadBytes: number
  readonly maxRecoveries: number
  readonly maxDeliveries: number
  readonly unclaimedWarning: Duration.Duration
  readonly migrations: MigrationsMode
  /** How long ended runs are kept, by state, unless a workflow says otherwise (see `Retention`). */
  readonly retention: Retention.Policy
  /** How often a worker looks for runs that retention lets go. */
  readonly retentionInterval: Duration.Duration
}

/**
 * What the layers do about the database schema when they start (see `PgMigrations`):
 *
 * - `auto`: apply the missing migrations (creating the schema when needed); the role needs CREATE;
 * - `verify`: check that every migration is applied, and fail with the missing ones otherwise; the
 *   role needs only USAGE on the schema and DML on its tables (apply them in a deploy step);
 * - `off`: neither.
 *
 * @category models
 * @since 0.1.0
 */
export type MigrationsMode = "auto" | "verify" | "off"

/**
 * The same settings as written in code: every field optional, durations as `Duration.Input`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  readonly databaseUrl?: string | undefined
  readonly schema?: string | undefined
  readonly queue?: string | undefined
  readonly stepQueue?: string | undefined
  readonly notifyChannel?: string | undefined
  readonly lease?: Duration.Input | undefined
  readonly visibilityTimeout?: Duration.Input | undefined
  readonly pollInterval?: Duration.Input | undefined
  readonly parkThreshold?: Duration.Input | undefined
  readonly otelEnabled?: boolean | undefined
  readonly workerConcurrency?: number | undefined
  readonly shutdownGrace?: Duration.Input | undefined
  readonly maxPayloadBytes?: number | undefined
  readonly maxRecoveries?: number | undefined
  readonly maxDeliveries?: number | undefined
  readonly unclaimedWarning?: Duration.Input | undefined
  readonly migrations?: MigrationsMode | undefined
  readonly retention?: Retention.Input | undefined
  readonly retentionInterval?: Duration.Input | undefined
}

/**
 * A setting has a bad value. `variable` is the environment variable (or the option, for settings
 * written in code); `reason` says what is wrong and what is expected.
 *
 * @category errors
 * @since 0.1.0
 */
export class PgflowsConfigError extends Schema.TaggedError<PgflowsConfigError>()("PgflowsConfigError", {
  variable: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.variable} ${this.reason}`
  }
}

/**
 * The defaults, with no database URL.
 *
 * @category constructors
 * @since 0.1.0
 */
export const defaults: PgflowsConfig = {
  databaseUrl: undefined,
  schema: Identifier.makeUnsafe("schema", "pgflows"),
  queue: Identifier.makeUnsafe("queue", "pgflows_workflows"),
  stepQueue: Identifier.makeUnsafe("queue", "pgflows_steps"),
  notifyChannel: Identifier.makeUnsafe("channel", "pgflows_wakeup"),
  lease: Duration.seconds(30),
  visibilityTimeout: Duration.seconds(30),
  pollInterval: Duration.seconds(1),
  parkThreshold: Duration.seconds(5),
  otelEnabled: false,
  workerConcurrency: 16,
  shutdownGrace: Duration.seconds(10),
  maxPayloadBytes: 1024 * 1024,
  maxRecoveries: 10,
  maxDeliveries: 10,
  unclaimedWarning: Duration.minutes(1),
  migrations: "auto",
  retention: Retention.forever,
  retentionInterval: Duration.minutes(1)
}

/**
 * The configuration in effect; `defaults` unless a layer of this module provides another.
 *
 * @category services
 * @since 0.1.0
 */
export const PgflowsConfig: Context.Reference<PgflowsConfig> = Context.Reference<PgflowsConfig>(
  "pgflows/PgflowsConfig",
  { defaultValue: () => defaults }
)

/**
 * Builds a configuration from settings written in code, checked like the environment's.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<PgflowsConfig, PgflowsConfigError> =>
  Effect.gen(function*() {
    const field = <K extends keyof Options, A>(
      key: K,
      parse: (value: NonNullable<Options[K]>) => Result.Result<A, string>
    ) =>
      options[key] === undefined || options[key] === null
        ? Effect.succeed(undefined)
        : Effect.mapError(
          Effect.fromResult(parse(options[key] as NonNullable<Options[K]>)),
          (reason) => new PgflowsConfigError({ variable: key, reason })
        )
    return merge({
      databaseUrl: yield* field("databaseUrl", (v) => DatabaseUrl.parse(v, "PgflowsConfig.layer({ databaseUrl })")),
      schema: yield* field("schema", (v) => Identifier.check("schema", v)),
      queue: yield* field("queue", (v) => Identifier.check("queue", v)),
      stepQueue: yield* field("stepQueue", (v) => Identifier.check("queue", v)),
      notifyChannel: yield* field("notifyChannel", (v) => Identifier.check("channel", v)),
      lease: yield* field("lease", positiveDuration),
      visibilityTimeout: yield* field("visibilityTimeout", positiveDuration),
      pollInterval: yield* field("pollInterval", positiveDuration),
      parkThreshold: yield* field("parkThreshold", nonNegativeDuration),
      otelEnabled: yield* field("otelEnabled", Result.succeed),
      workerConcurrency: yield* field("workerConcurrency", concurrency),
      shutdownGrace: yield* field("shutdownGrace", nonNegativeDuration),
      maxPayloadBytes: yield* field("maxPayloadBytes", payloadLimit),
      maxRecoveries: yield* field("maxRecoveries", count),
      maxDeliveries: yield* field("maxDeliveries", count),
      unclaimedWarning: yield* field("unclaimedWarning", positiveDuration),
      migrations: yield* field("migrations", migrationsMode),
      retention: yield* field("retention", Retention.decode),
      retentionInterval: yield* field("retentionInterval", positiveDuration)
    })
  })

/**
 * Reads the configuration from the current `ConfigProvider` (the environment by default).
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromEnv: Effect.Effect<PgflowsConfig, PgflowsConfigError> = Effect.gen(function*() {
  const read = <A>(variable: string, parse: (raw: string) => Result.Result<A, string>) =>
    Effect.mapError(
      Config.option(Config.String(variable)),
      (error) => new PgflowsConfigError({ variable, reason: `cannot be read: ${error.message}` })
    ).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.succeed(undefined),
        onSome: (raw) =>
          Effect.mapError(Effect.fromResult(parse(raw)), (reason) => new PgflowsConfigError({ variable, reason }))
      }))
    )
  const specific = yield* read("PGFLOWS_DATABASE_URL", (v) => DatabaseUrl.parse(v, "PGFLOWS_DATABASE_URL"))
  const everyState = yield* read("PGFLOWS_RETENTION", retentionText)
  return merge({
    databaseUrl: specific ?? (yield* read("DATABASE_URL", (v) => DatabaseUrl.parse(v, "DATABASE_URL"))),
    schema: yield* read("PGFLOWS_SCHEMA", (v) => Identifier.check("schema", v)),
    queue: yield* read("PGFLOWS_QUEUE", (v) => Identifier.check("queue", v)),
    stepQueue: yield* read("PGFLOWS_STEP_QUEUE", (v) => Identifier.check("queue", v)),
    notifyChannel: yield* read("PGFLOWS_NOTIFY_CHANNEL", (v) => Identifier.check("channel", v)),
    lease: yield* read("PGFLOWS_LEASE", (v) => Result.flatMap(durationText(v), positiveDuration)),
    visibilityTimeout: yield* read(
      "PGFLOWS_VISIBILITY_TIMEOUT",
      (v) => Result.flatMap(durationText(v), positiveDuration)
    ),
    pollInterval: yield* read("PGFLOWS_POLL_INTERVAL", (v) => Result.flatMap(durationText(v), positiveDuration)),
    parkThreshold: yield* read("PGFLOWS_PARK_THRESHOLD", (v) => Result.flatMap(durationText(v), nonNegativeDuration)),
    otelEnabled: yield* read("PGFLOWS_OTEL_ENABLED", booleanText),
    workerConcurrency: yield* read("PGFLOWS_WORKER_CONCURRENCY", (v) => Result.flatMap(integerText(v), concurrency)),
    shutdownGrace: yield* read("PGFLOWS_SHUTDOWN_GRACE", (v) => Result.flatMap(durationText(v), nonNegativeDuration)),
    maxPayloadBytes: yield* read("PGFLOWS_MAX_PAYLOAD_BYTES", (v) => Result.flatMap(integerText(v), payloadLimit)),
    maxRecoveries: yield* read("PGFLOWS_MAX_RECOVERIES", (v) => Result.flatMap(integerText(v), count)),
    maxDeliveries: yield* read("PGFLOWS_MAX_DELIVERIES", (v) => Result.flatMap(integerText(v), count)),
    unclaimedWarning: yield* read(
      "PGFLOWS_UNCLAIMED_WARNING",
      (v) => Result.flatMap(durationText(v), positiveDuration)
    ),
    migrations: yield* read("PGFLOWS_MIGRATIONS", (v) => migrationsMode(v.trim().toLowerCase())),
    retention: Retention.resolve(
      {
        completed: yield* read("PGFLOWS_RETENTION_COMPLETED", retentionText),
        failed: yield* read("PGFLOWS_RETENTION_FAILED", retentionText),
        cancelled: yield* read("PGFLOWS_RETENTION_CANCELLED", retentionText)
      },
      { completed: everyState, failed: everyState, cancelled: everyState }
    ),
    retentionInterval: yield* read(
      "PGFLOWS_RETENTION_INTERVAL",
      (v) => Result.flatMap(durationText(v), positiveDuration)
    )
  })
})

/**
 * The configuration in effect: the one provided (`layer`, `layerFromEnv`, `Effect.provideService`),
 * else the one the environment gives (`fromEnv`), checked.
 *
 * @category constructors
 * @since 0.1.0
 */
export const current: Effect.Effect<PgflowsConfig, PgflowsConfigError> = Effect.flatMap(
  Effect.context<never>(),
  (context) => context.mapUnsafe.has(PgflowsConfig.key) ? Effect.succeed(Context.get(context, PgflowsConfig)) : fromEnv
)

/**
 * Provides the configuration in effect (`current`) to the layers built on it: what pgflows' own
 * layers use, so that a configuration provided to them wins and the environment is read otherwise.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerDefault: Layer.Layer<never, PgflowsConfigError> = Layer.effect(PgflowsConfig, current) as Layer.Layer<
  never,
  PgflowsConfigError
>

/**
 * Provides a configuration built from settings written in code.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<never, PgflowsConfigError> =>
  Layer.effect(PgflowsConfig, make(options)) as Layer.Layer<never, PgflowsConfigError>

/**
 * Provides the configuration read from the environment.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerFromEnv: Layer.Layer<never, PgflowsConfigError> = Layer.effect(PgflowsConfig, fromEnv) as Layer.Layer<
  never,
  PgflowsConfigError
>

// internal

type Partial<A> = { readonly [K in keyof A]: A[K] | undefined }

const merge = (values: Partial<PgflowsConfig>): PgflowsConfig => {
  const result: Record<string, unknown> = { ...defaults }
  for (const [key, value] of Object.entries(values)) if (value !== undefined) result[key] = value
  return result as unknown as PgflowsConfig
}

const durationText = (raw: string): Result.Result<Duration.Duration, string> => {
  const text = raw.trim()
  if (/^\d+(\.\d+)?$/.test(text)) return Result.succeed(Duration.millis(Number(text)))
  return Option.match(Duration.fromInput(text as Duration.Input), {
    onNone: () =>
      Result.fail(
        `${JSON.stringify(raw)} is not a duration; write a number of milliseconds or "<n> <unit>" ` +
          `such as "500 millis", "30 seconds" or "2 minutes"`
      ),
    onSome: Result.succeed
  })
}

const toDuration = (input: Duration.Input): Result.Result<Duration.Duration, string> =>
  Option.match(Duration.fromInput(input), {
    onNone: () => Result.fail(`${JSON.stringify(input)} is not a duration`),
    onSome: Result.succeed
  })

const positiveDuration = (input: Duration.Input): Result.Result<Duration.Duration, string> =>
  Result.flatMap(toDuration(input), (duration) =>
    Duration.isFinite(duration) && Duration.toMillis(duration) > 0
      ? Result.succeed(duration)
      : Result.fail(`must be a finite duration longer than zero, got ${Duration.format(duration)}`))

const nonNegativeDuration = (input: Duration.Input): Result.Result<Duration.Duration, string> =>
  Result.flatMap(toDuration(input), (duration) =>
    Duration.isFinite(duration) && Duration.toMillis(duration) >= 0
      ? Result.succeed(duration)
      : Result.fail(`must be a finite duration of zero or more, got ${Duration.format(duration)}`))

const booleanText = (raw: string): Result.Result<boolean, string> => {
  const text = raw.trim().toLowerCase()
  if (["true", "1", "yes", "on"].includes(text)) return Result.succeed(true)
  if (["false", "0", "no", "off", ""].includes(text)) return Result.succeed(false)
  return Result.fail(`${JSON.stringify(raw)} is not a boolean; use true or false`)
}

const integerText = (raw: string): Result.Result<number, string> =>
  /^\s*\d+\s*$/.test(raw) ? Result.succeed(Number(raw)) : Result.fail(`${JSON.stringify(raw)} is not a whole number`)

const payloadLimit = (value: number): Result.Result<number, string> =>
  Number.isInteger(value) && value >= 1024 && value <= 256 * 1024 * 1024
    ? Result.succeed(value)
    : Result.fail(`must be a whole number of bytes from 1024 to 268435456, got ${value}`)

const count = (value: number): Result.Result<number, string> =>
  Number.isInteger(value) && value >= 1 && value <= 1_000_000
    ? Result.succeed(value)
    : Result.fail(`must be a whole number from 1 to 1000000, got ${value}`)

/** A retention duration from the environment: as other durations, or `forever`. */
const retentionText = (raw: string): Result.Result<Duration.Duration, string> =>
  raw.trim().toLowerCase() === "forever"
    ? Result.succeed(Duration.infinity)
    : Result.flatMap(durationText(raw), positiveDuration)

const migrationsMode = (value: string): Result.Result<MigrationsMode, string> =>
  value === "auto" || value === "verify" || value === "off"
    ? Result.succeed(value)
    : Result.fail(`${JSON.stringify(value)} is not a migrations mode; use auto, verify or off`)

const concurrency = (value: number): Result.Result<number, string> =>
  Number.isInteger(value) && value >= 1 && value <= 10_000
    ? Result.succeed(value)
    : Result.fail(`must be a whole number from 1 to 10000, got ${value}`)
