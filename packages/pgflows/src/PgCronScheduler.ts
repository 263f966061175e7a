/**
 * `Scheduler` on pg_cron: each schedule is a pg_cron job named `pgflows:<schema>:<name>` whose
 * command calls `<schema>.enqueue_workflow(workflow, input, 'schedule:<name>:<tick>')`. pg_cron runs
 * it in the database, with no pgflows process up; workers execute the runs. `list` reads `cron.job`
 * (and `cron.job_run_details` for the last run); `pause` and `resume` set the job's `active` flag.
 *
 * pg_cron must be set up by an administrator: the server package (Debian:
 * `apt-get install postgresql-<major>-cron`), `shared_preload_libraries = 'pg_cron'`,
 * `cron.database_name` set to pgflows' database, a restart, then `CREATE EXTENSION pg_cron` there.
 * Jobs run through background workers (`cron.use_background_workers = on`) or a connection pg_cron
 * opens to `cron.host` (which must then be allowed to log in without a password).
 * `PgCronScheduler.detect` tells what is missing; every operation fails with a
 * `SchedulerUnavailable` that says it when pg_cron is not usable.
 *
 * **Gotchas**
 *
 * - pg_cron evaluates schedules in UTC (or its `cron.timezone`, 1.5 and later): a schedule's time
 *   zone must be that one.
 * - Intervals of seconds (`"5 seconds"`, or `"*\/5 * * * * *"`) need pg_cron 1.5 or later;
 *   pg_cron 1.4 (Debian 12's) runs jobs every minute at most.
 * - pg_cron does not run the jobs it missed while the server was down: the catch-up policy is
 *   always `"skip"`.
 * - The command is SQL text stored in `cron.job`: the workflow name and input are written into it
 *   as literals, quoted the way PostgreSQL's `quote_literal` quotes them.
 * - `pause` and `resume` call `cron.alter_job`, which pg_cron grants to nobody by default: a role
 *   other than a superuser needs `GRANT EXECUTE ON FUNCTION cron.alter_job TO ...`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Result from "effect/Result"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Identifier from "./Identifier.ts"
import * as SchedulePgCron from "./internal/schedulePgCron.ts"
import * as ScheduleSql from "./internal/scheduleSql.ts"
import * as ScheduleTicks from "./internal/scheduleTicks.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import type { StoreError } from "./PgflowsError.ts"
import * as PgMigrations from "./PgMigrations.ts"
import * as Scheduler from "./Scheduler.ts"
import type * as Workflow from "./Workflow.ts"

/** Names of UTC: pg_cron 1.5's `cron.timezone` is `GMT` by default. */

/**
 * What `detect` found.
 *
 * @category models
 * @since 0.1.0
 */
export interface Detection {
  /** pg_cron is installed in this database, in a version pgflows supports (1.4 or later). */
  readonly available: boolean
  /** `pg_extension.extversion`, e.g. `1.4-1`, when the extension is created here. */
  readonly version: string | undefined
  /** pg_cron 1.5 or later: schedules of a few seconds (`"5 seconds"`). */
  readonly seconds: boolean
  /** The server has the extension's files (`pg_available_extensions`). */
  readonly installable: boolean
  /** `pg_cron` is in `shared_preload_libraries` (false when this role may not read it). */
  readonly preloaded: boolean
  /** `cron.database_name`, when pg_cron is loaded (and this role may read it). */
  readonly cronDatabase: string | undefined
  /** This database. */
  readonly database: string
  /** `cron.timezone` (1.5 and later; its default, `GMT`, and other names of UTC read `UTC`), else `UTC`. */
  readonly timezone: string
  /** What to do to make pg_cron usable here, when it is not. */
  readonly problem: string | undefined
}

/**
 * What pg_cron knows of this database; never fails for pg_cron's absence. `shared_preload_libraries`
 * and pg_cron's settings are superuser-only: for a role without `pg_read_all_settings`, `preloaded`
 * is false, `cronDatabase` undefined and `timezone` `UTC`.
 *
 * @category accessors
 * @since 0.1.0
 */
export const detect: Effect.Effect<Detection, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<{
    version: string | null
    installable: boolean
    preloaded: boolean | null
    cron_database: string | null
    database: string
    timezone: string | null
    major: string
  }>(`SELECT
  (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') AS version,
  EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_cron') AS installable,
  (SELECT 'pg_cron' = ANY (string_to_array(replace(setting, ' ', ''), ','))
    FROM pg_catalog.pg_settings WHERE name = 'shared_preload_libraries') AS preloaded,
  (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'cron.database_name') AS cron_database,
  current_database() AS database,
  (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'cron.timezone') AS timezone,
  current_setting('server_version_num') AS major`)
  const found = row!
  const version = found.version ?? undefined
  const [major = 0, minor = 0] = (version ?? "").split(/[.-]/).map(Number)
  const supported = version !== undefined && (major > 1 || (major === 1 && minor >= 4))
  const pgMajor = Math.floor(Number(found.major) / 10000)
  const database = found.database
  const setUp = `set shared_preload_libraries = 'pg_cron' and cron.database_name = '${database}' ` +
    "(and cron.use_background_workers = on, or a password-less login for pg_cron's connections), " +
    `restart PostgreSQL, then run CREATE EXTENSION pg_cron in database "${database}"`
  const problem = supported
    ? undefined
    : version !== undefined
    ? `pg_cron ${version} is too old; pgflows needs 1.4 or later: install a newer package, then ALTER EXTENSION pg_cron UPDATE`
    : !found.installable
    ? `the pg_cron extension is not installed on this server: install it (Debian and Ubuntu: ` +
      `apt-get install postgresql-${pgMajor}-cron), ${setUp}`
    : found.preloaded === false
    ? `pg_cron is installed but not loaded: ${setUp}`
    : found.preloaded === null
    ? `pg_cron may not be loaded (this role cannot read shared_preload_libraries): ${setUp}`
    : found.cron_database !== null && found.cron_database !== database
    ? `pg_cron runs its jobs from database "${found.cron_database}" (cron.database_name): set cron.database_name = ` +
      `'${database}', restart PostgreSQL, then run CREATE EXTENSION pg_cron in database "${database}"`
    : `run CREATE EXTENSION pg_cron in database "${database}"`
  return {
    available: supported,
    version,
    seconds: supported && (major > 1 || minor >= 5),
    installable: found.installable,
    preloaded: found.preloaded === true,
    cronDatabase: found.cron_database ?? undefined,
    database,
    timezone: found.timezone === null || Scheduler.isUtc(found.timezone) ? "UTC" : found.timezone,
    problem
  } satisfies Detection
}).pipe(Effect.withSpan("PgCronScheduler.detect"))

/**
 * Whether pg_cron (1.4 or later) is installed in the `SqlClient`'s database.
 *
 * @category accessors
 * @since 0.1.0
 */
export const pgCronAvailable: Effect.Effect<boolean, SqlError, SqlClient.SqlClient> = Effect.map(
  detect,
  (found) => found.available
)

/**
 * The pg_cron job name of a schedule.
 *
 * @category utils
 * @since 0.1.0
 */
export const jobName = (schema: string, name: string): string => `pgflows:${schema}:${name}`

/**
 * @category models
 * @since 0.1.0
 */
export interface CommandOptions {
  readonly schema: Identifier.Identifier
  readonly name: string
  readonly workflow: string
  /** The run input, as JSON (already encoded). */
  readonly input: unknown
  /** Seconds schedules put the second of the tick in the run id; others the minute. */
  readonly seconds?: boolean | undefined
}

/**
 * The SQL command of a schedule's job: `SELECT "<schema>".enqueue_workflow('<workflow>',
 * '<input>'::jsonb, 'schedule:<name>:' || <tick>)`, values quoted as PostgreSQL's `quote_literal`
 * quotes them.
 *
 * @category utils
 * @since 0.1.0
 */
export const command = (options: CommandOptions): string =>
  SchedulePgCron.render({
    schema: options.schema,
    name: options.name,
    workflow: options.workflow,
    input: JSON.stringify(options.input ?? null),
    unit: options.seconds === true ? "second" : "minute"
  })

/**
 * Reads a command written by `command` back; `undefined` for any other text.
 *
 * @category utils
 * @since 0.1.0
 */
export const parseCommand = (
  text: string
):
  | { readonly schema: string; readonly name: string; readonly workflow: string; readonly input: unknown }
  | undefined =>
{
  const parsed = SchedulePgCron.parse(text)
  if (parsed === undefined) return undefined
  try {
    return { schema: parsed.schema, name: parsed.name, workflow: parsed.workflow, input: JSON.parse(parsed.input) }
  } catch {
    return undefined
  }
}

/**
 * `Scheduler` on pg_cron, on the application's `SqlClient` (connected to the database where pg_cron
 * and pgflows' schema live). Building it applies pgflows' migrations (for `enqueue_workflow`); pg_cron
 * itself is looked for at the first call.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  Scheduler.Scheduler,
  StoreError | PgflowsConfig.PgflowsConfigError,
  SqlClient.SqlClient
> = Layer.effect(
  Scheduler.Scheduler,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const config = yield* PgflowsConfig.PgflowsConfig
    yield* PgMigrations.prepare.pipe(Effect.mapError(ScheduleSql.storeError("migrations")))
    yield* sql`INSERT INTO ${sql(`${config.schema}.settings`)} (queue, notify_channel)
      VALUES (${config.queue}, ${config.notifyChannel}) ON CONFLICT (singleton) DO NOTHING`.pipe(
      Effect.mapError(ScheduleSql.storeError("settings"))
    )
    return make(sql, config)
  })
).pipe(Layer.provide(PgflowsConfig.layerDefault))

// internal

interface JobRow {
  readonly jobid: string | number
  readonly jobname: string
  readonly schedule: string
  readonly command: string
  readonly active: boolean
  readonly last_run: Date | null
}

const make = (sql: SqlClient.SqlClient, config: PgflowsConfig.PgflowsConfig): Scheduler.Scheduler["Service"] => {
  const schema = config.schema
  const prefix = jobName(schema, "")
  let known: Detection | undefined

  const guard = Effect.gen(function*() {
    if (known !== undefined) return known
    const found = yield* detect.pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.mapError(ScheduleSql.storeError("detect pg_cron"))
    )
    if (!found.available) {
      return yield* new Scheduler.SchedulerUnavailable({
        scheduler: "pg_cron",
        database: found.database,
        reason: found.problem ?? "pg_cron is not installed"
      })
    }
    known = found
    return found
  })

  const query = <A extends object>(operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
    sql.unsafe<A>(text, params).pipe(Effect.mapError(ScheduleSql.storeError(operation)))

  const jobs = (name?: string) =>
    query<JobRow>(
      "list pg_cron jobs",
      `SELECT j.jobid, j.jobname::text AS jobname, j.schedule, j.command, j.active,
  (SELECT max(d.start_time) FROM cron.job_run_details d WHERE d.jobid = j.jobid) AS last_run
FROM cron.job j
WHERE ${name === undefined ? "starts_with(j.jobname::text, $1)" : "j.jobname::text = $1"}
ORDER BY j.jobname`,
      [name === undefined ? prefix : jobName(schema, name)]
    )

  const info = (row: JobRow, found: Detection, now: number): Scheduler.ScheduleInfo => {
    const parsed = parseCommand(row.command)
    const cron = Scheduler.toCron(row.schedule, found.timezone)
    const next = Result.isSuccess(cron) && row.active ? ScheduleTicks.next(cron.success, now) : undefined
    return {
      name: row.jobname.slice(prefix.length),
      scheduler: "pg_cron",
      cron: row.schedule,
      timezone: found.timezone,
      workflow: parsed?.workflow ?? "",
      input: parsed?.input,
      paused: !row.active,
      catchUp: "skip",
      maxCatchUp: 1,
      lastTick: row.last_run ?? undefined,
      nextTick: next === undefined ? undefined : new Date(next),
      handle: String(row.jobid)
    }
  }

  const find = (name: string) =>
    Effect.gen(function*() {
      const found = yield* guard
      const [row] = yield* jobs(name)
      if (row === undefined) return yield* new Scheduler.ScheduleNotFound({ name })
      return { row, found, now: yield* Clock.currentTimeMillis }
    })

  const schedule = Effect.fn("Scheduler.schedule")(function*(
    name: string,
    expression: string,
    workflow: Workflow.Any,
    input: unknown,
    options?: Scheduler.ScheduleOptions
  ) {
    yield* Effect.fromResult(Scheduler.checkName(name))
    const parsed = yield* Effect.fromResult(Scheduler.parseExpression(expression))
    const found = yield* guard
    const text = yield* pgCronExpression(expression, parsed, found)
    if (options?.timezone !== undefined) {
      const zone = yield* Effect.fromResult(Scheduler.checkTimeZone(options.timezone))
      if (!Scheduler.isUtc(zone) && zone !== found.timezone) {
        return yield* new Scheduler.InvalidTimeZone({
          timezone: options.timezone,
          reason: `cannot be used with pg_cron, which reads schedules in ${found.timezone}` +
            `${found.seconds ? " (cron.timezone)" : ""}: write the expression in ${found.timezone}, ` +
            "or use the built-in scheduler"
        })
      }
    }
    yield* Scheduler.onlySkip("pg_cron", options?.catchUp)
    const encoded = yield* Scheduler.encodeInput(name, workflow, input, config.maxPayloadBytes)
    const job = jobName(schema, name)
    const body = command({
      schema,
      name,
      workflow: workflow.name,
      input: encoded,
      seconds: /seconds$/.test(text)
    })
    const outcome = yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(hashtext(${job}))`
      const [existing] = yield* sql<{ jobid: string; active: boolean }>`
        SELECT jobid, active FROM cron.job WHERE jobname::text = ${job}`
      if (existing !== undefined && options?.replace !== true) return "exists" as const
      const [scheduled] = yield* sql<{ jobid: string }>`SELECT cron.schedule(${job}, ${text}, ${body}) AS jobid`
      // Replacing keeps a paused job paused.
      if (existing !== undefined && !existing.active) {
        yield* sql`SELECT cron.alter_job(${scheduled!.jobid}::bigint, active => false)`
      }
      return "scheduled" as const
    })).pipe(Effect.mapError(ScheduleSql.storeError("schedule (cron.schedule)")))
    if (outcome === "exists") return yield* new Scheduler.ScheduleAlreadyExists({ name, scheduler: "pg_cron" })
    const { row, now } = yield* find(name).pipe(Effect.orDie)
    return info(row, found, now)
  })

  const unschedule = Effect.fn("Scheduler.unschedule")(function*(name: string) {
    const { row } = yield* find(name)
    yield* query("unschedule (cron.unschedule)", "SELECT cron.unschedule($1::bigint)", [String(row.jobid)])
  })

  const get = Effect.fn("Scheduler.get")(function*(name: string) {
    const { row, found, now } = yield* find(name)
    return info(row, found, now)
  })

  const list = Effect.gen(function*() {
    const found = yield* guard
    const now = yield* Clock.currentTimeMillis
    return (yield* jobs()).map((row) => info(row, found, now))
  }).pipe(Effect.withSpan("Scheduler.list"))

  const setActive = (name: string, active: boolean) =>
    Effect.gen(function*() {
      const { row, found, now } = yield* find(name)
      yield* query(
        active ? "resume (cron.alter_job)" : "pause (cron.alter_job)",
        "SELECT cron.alter_job($1::bigint, active => $2::boolean)",
        [String(row.jobid), active]
      )
      return info({ ...row, active }, found, now)
    })

  const pause = Effect.fn("Scheduler.pause")(function*(name: string) {
    return yield* setActive(name, false)
  })

  const resume = Effect.fn("Scheduler.resume")(function*(name: string) {
    return yield* setActive(name, true)
  })

  const trigger = Effect.fn("Scheduler.trigger")(function*(name: string, options?: Scheduler.TriggerOptions) {
    const { row, now } = yield* find(name)
    const parsed = parseCommand(row.command)
    if (parsed === undefined) {
      // A command edited by hand: run it as pg_cron would.
      const rows = yield* query<Record<string, unknown>>("trigger", row.command)
      const first = rows[0] === undefined ? undefined : Object.values(rows[0])[0]
      return typeof first === "string" ? first : ""
    }
    const n = yield* Random.nextIntBetween(0, 0xffff)
    const id = options?.id ??
      `schedule:${name}:manual:${new Date(now).toISOString()}:${n.toString(16).padStart(4, "0")}`
    yield* query("trigger", `SELECT ${Identifier.quote(schema)}.enqueue_workflow($1, $2::jsonb, $3)`, [
      parsed.workflow,
      JSON.stringify(parsed.input),
      id
    ])
    return id
  })

  return Scheduler.Scheduler.of({
    kind: "pg_cron",
    schedule: schedule as Scheduler.Scheduler["Service"]["schedule"],
    unschedule,
    get,
    list,
    pause,
    resume,
    trigger
  })
}

/** The schedule text pg_cron gets: five fields, a macro, or `N seconds` (pg_cron 1.5 and later). */
const pgCronExpression = (
  expression: string,
  parsed: Scheduler.Expression,
  found: Detection
): Effect.Effect<string, Scheduler.InvalidCron> => {
  const noSeconds = (reason: string) =>
    Effect.fail(
      new Scheduler.InvalidCron({
        expression,
        reason: `${reason}; pg_cron ${found.version} has no schedules of seconds (they came in pg_cron 1.5): ` +
          "write five fields (every minute at most), upgrade pg_cron, or use the built-in scheduler"
      })
    )
  if (parsed._tag === "Interval") {
    return found.seconds ? Effect.succeed(parsed.text) : noSeconds(`runs every ${parsed.text}`)
  }
  if (parsed.fields === 5) {
    const trimmed = expression.trim()
    return Effect.succeed(trimmed.startsWith("@") ? trimmed.toLowerCase() : parsed.text)
  }
  const [second, ...rest] = parsed.text.split(" ")
  const every = second === "*" ? 1 : /^\*\/(\d+)$/.exec(second!)?.[1]
  if (every === undefined || rest.some((field) => field !== "*") || 60 % Number(every) !== 0) {
    return Effect.fail(
      new Scheduler.InvalidCron({
        expression,
        field: "second",
        position: 1,
        reason: "has a seconds field pg_cron cannot run: pg_cron takes five fields, or \"N seconds\" (1.5 and " +
          "later), which a six-field expression can only mean as \"*/N * * * * *\""
      })
    )
  }
  return found.seconds ? Effect.succeed(`${every} seconds`) : noSeconds("runs every few seconds")
}
