/**
 * pgflows' `Scheduler` on pg_durable: each schedule is a pg_durable instance running
 *
 * ```sql
 * df.loop(df.seq(df.wait_for_schedule('<cron>'),
 *   df.sql('SELECT "<schema>".enqueue_workflow(''<workflow>'', ''<input>''::jsonb, ''schedule:<name>:'' || <minute>)')))
 * ```
 *
 * built with the graph algebra (`graph`), compiled and checked by the compiler, and started with
 * `PgDurableClient.start`: pg_durable waits for each tick inside the database and starts the run;
 * pgflows' workers execute it. The schedule's definition is a row of pgflows' `schedules` table
 * (scheduler `pg_durable`), whose handle is the instance id; `unschedule` and `pause` cancel the
 * instance, `resume` starts a new one.
 *
 * **Gotchas**
 *
 * - pg_durable evaluates cron in UTC, five fields, a minute at the finest; the expression is written
 *   in the usual Unix form and translated (`Compiler.translateCron`), and expressions that restrict
 *   both the day of month and the day of week are refused (pg_durable ANDs them).
 * - pg_durable computes the next tick when the wait starts and never catches up ticks it missed.
 * - A loop runs at most 100 000 iterations in pg_durable: a schedule of every minute ends after about
 *   69 days. `list` shows the instance's `status`; `resume` starts a new instance when it ended.
 * - The run id's tick is the minute at which the enqueue node runs (normally the tick's minute).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Result from "effect/Result"
import * as SqlClient from "effect/sql/SqlClient"
import * as Identifier from "pgflows/Identifier"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import { StoreError } from "pgflows/PgflowsError"
import * as PgMigrations from "pgflows/PgMigrations"
import * as Scheduler from "pgflows/Scheduler"
import type * as Workflow from "pgflows/Workflow"
import * as Compiler from "./Compiler.ts"
import * as Graph from "./Graph.ts"
import * as PgDurableClient from "./PgDurableClient.ts"
import type { PgDurableError, PgDurableUnavailable } from "./PgDurableError.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface GraphOptions {
  readonly schema: Identifier.Identifier
  readonly name: string
  /** Five cron fields in the Unix form (Sunday = 0 or 7), or a macro; read in UTC. */
  readonly cron: string
  readonly workflow: string
  /** The run input, as JSON (already encoded). */
  readonly input: unknown
}

/**
 * The label of a schedule's instance (`df.list_instances` filters on it).
 *
 * @category utils
 * @since 0.1.0
 */
export const label = (schema: string, name: string): string => `pgflows-schedule:${schema}:${name}`

/**
 * The graph of a schedule: forever, wait for the next tick, then start the run with
 * `<schema>.enqueue_workflow` (id `schedule:<name>:<minute of the tick>`). The workflow name and the
 * input are literals safe from pg_durable's text substitution (`Graph.literal`).
 *
 * @category constructors
 * @since 0.1.0
 */
export const graph = (options: GraphOptions): Graph.Graph<unknown, {}, {}> => {
  const parts = [
    `SELECT ${Identifier.quote(options.schema)}.enqueue_workflow(`,
    ", ",
    "::jsonb, ",
    " || to_char(date_trunc('minute', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) AS run_id"
  ]
  const strings = Object.assign([...parts], { raw: parts }) as unknown as TemplateStringsArray
  return Graph.loop(
    Graph.sequence(
      Graph.waitForSchedule(options.cron),
      Graph.sql(
        strings,
        Graph.literal(options.workflow),
        Graph.literal(JSON.stringify(options.input ?? null)),
        Graph.literal(`schedule:${options.name}:`)
      )
    )
  )
}

/**
 * `Scheduler` on pg_durable, on the application's `SqlClient` (connected to the database where
 * pg_durable and pgflows' schema live) and a `PgDurableClient`. Building it applies pgflows'
 * migrations (the `schedules` table, `enqueue_workflow`); pg_durable is looked for at each start.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  Scheduler.Scheduler,
  StoreError | PgflowsConfig.PgflowsConfigError,
  SqlClient.SqlClient | PgDurableClient.PgDurableClient
> = Layer.effect(
  Scheduler.Scheduler,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const client = yield* PgDurableClient.PgDurableClient
    const config = yield* PgflowsConfig.PgflowsConfig
    yield* PgMigrations.prepare.pipe(Effect.mapError(storeError("migrations")))
    yield* sql`INSERT INTO ${sql(`${config.schema}.settings`)} (queue, notify_channel)
      VALUES (${config.queue}, ${config.notifyChannel}) ON CONFLICT (singleton) DO NOTHING`.pipe(
      Effect.mapError(storeError("settings"))
    )
    return make(sql, client, config)
  })
).pipe(Layer.provide(PgflowsConfig.layerDefault))

// internal

interface Row {
  readonly name: string
  readonly handle: string | null
  readonly cron: string
  readonly workflow: string
  readonly input: unknown
  readonly paused: boolean
}

const storeError = (operation: string) => (cause: unknown): StoreError =>
  cause instanceof StoreError ? cause : new StoreError({
    operation,
    retryable: (cause as { retryable?: boolean; reason?: { isRetryable?: boolean } } | undefined)?.retryable ??
      (cause as { reason?: { isRetryable?: boolean } } | undefined)?.reason?.isRetryable ?? false,
    cause
  })

const make = (
  sql: SqlClient.SqlClient,
  client: PgDurableClient.PgDurableClient["Service"],
  config: PgflowsConfig.PgflowsConfig
): Scheduler.Scheduler["Service"] => {
  const table = `${Identifier.quote(config.schema)}.schedules`

  const query = <A extends object>(operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
    sql.unsafe<A>(text, params).pipe(Effect.mapError(storeError(operation)))

  const durable = <A, E, R>(
    effect: Effect.Effect<A, E | PgDurableUnavailable | PgDurableError, R>
  ): Effect.Effect<
    A,
    Exclude<E, PgDurableUnavailable | PgDurableError> | Scheduler.SchedulerUnavailable | StoreError,
    R
  > =>
    Effect.mapError(effect, (error: any) =>
      error?._tag === "PgDurableUnavailable"
        ? new Scheduler.SchedulerUnavailable({
          scheduler: "pg_durable",
          database: error.database,
          reason: error.message
        })
        : error?._tag === "PgDurableError"
        ? storeError(`pg_durable ${error.operation}`)(error)
        : error) as any

  const row = (name: string) =>
    Effect.map(
      query<Row>(
        "get schedule",
        `SELECT name, handle, cron, workflow, input, paused FROM ${table} WHERE name = $1 AND scheduler = 'pg_durable'`,
        [name]
      ),
      (rows) => rows[0]
    )

  const find = (name: string) =>
    Effect.flatMap(
      row(name),
      (found) => found === undefined ? Effect.fail(new Scheduler.ScheduleNotFound({ name })) : Effect.succeed(found)
    )

  /** The instance's status, `undefined` when pg_durable does not know it (any more). */
  const statusOf = (handle: string | null) =>
    handle === null ? Effect.succeed(undefined) : durable(client.status(handle)).pipe(
      Effect.catchTag("InstanceNotFound", () => Effect.succeed(undefined))
    )

  const info = (found: Row, status: string | undefined, now: number): Scheduler.ScheduleInfo => {
    const cron = Scheduler.toCron(found.cron, "UTC")
    const running = !found.paused && status === "running"
    const next = running && Result.isSuccess(cron)
      ? Result.getOrUndefined(Scheduler.upcoming(found.cron, { after: new Date(now) }))?.[0]
      : undefined
    return {
      name: found.name,
      scheduler: "pg_durable",
      cron: found.cron,
      timezone: "UTC",
      workflow: found.workflow,
      input: found.input,
      paused: found.paused,
      catchUp: "skip",
      maxCatchUp: 1,
      lastTick: undefined,
      nextTick: next,
      handle: found.handle ?? "",
      status
    }
  }

  const describe = (found: Row) =>
    Effect.gen(function*() {
      const status = yield* statusOf(found.handle)
      return info(found, status, yield* Clock.currentTimeMillis)
    })

  /** Starts the schedule's instance; its id. */
  const startInstance = (found: Pick<Row, "name" | "cron" | "workflow" | "input">) =>
    Effect.gen(function*() {
      const built = graph({
        schema: config.schema,
        name: found.name,
        cron: found.cron,
        workflow: found.workflow,
        input: found.input
      })
      return yield* durable(client.start(built, { label: label(config.schema, found.name) })).pipe(
        Effect.catchTag("GraphCompileError", (error) =>
          error.rule === "invalid-cron"
            ? Effect.fail(new Scheduler.InvalidCron({ expression: found.cron, reason: error.reason }))
            : Effect.die(error))
      )
    })

  /** Cancels an instance unless it already ended or is gone. */
  const stopInstance = (handle: string | null) =>
    handle === null ? Effect.void : durable(client.cancel(handle, "pgflows: schedule stopped")).pipe(
      Effect.catchTags({ InstanceNotFound: () => Effect.void, CancelFailed: () => Effect.void }),
      Effect.asVoid
    )

  const schedule = Effect.fn("Scheduler.schedule")(function*(
    name: string,
    expression: string,
    workflow: Workflow.Any,
    input: unknown,
    options?: Scheduler.ScheduleOptions
  ) {
    yield* Effect.fromResult(Scheduler.checkName(name))
    const cron = yield* pgDurableCron(expression)
    if (options?.timezone !== undefined) {
      const zone = yield* Effect.fromResult(Scheduler.checkTimeZone(options.timezone))
      if (!Scheduler.isUtc(zone)) {
        return yield* new Scheduler.InvalidTimeZone({
          timezone: options.timezone,
          reason: "cannot be used with pg_durable, which reads cron in UTC: write the expression in UTC, or use " +
            "the built-in scheduler"
        })
      }
    }
    yield* Scheduler.onlySkip("pg_durable", options?.catchUp)
    const encoded = yield* Scheduler.encodeInput(name, workflow, input, config.maxPayloadBytes)
    const replace = options?.replace === true
    const existing = yield* query<{ scheduler: string; handle: string | null; paused: boolean }>(
      "schedule",
      `SELECT scheduler, handle, paused FROM ${table} WHERE name = $1`,
      [name]
    ).pipe(Effect.map((rows) => rows[0]))
    if (existing !== undefined && (!replace || existing.scheduler !== "pg_durable")) {
      return yield* new Scheduler.ScheduleAlreadyExists({ name, scheduler: existing.scheduler })
    }
    const definition = { name, cron, workflow: workflow.name, input: encoded }
    // pg_durable's start commits on its own statement (its worker waits only 5 s for the commit):
    // the instance first, then the row that names it.
    const paused = existing?.paused === true
    const handle = paused ? existing.handle : yield* startInstance(definition)
    const written = yield* query<{ name: string }>(
      "schedule",
      `INSERT INTO ${table} AS t (name, scheduler, handle, cron, timezone, workflow, input, catch_up, max_catch_up)
VALUES ($1, 'pg_durable', $2, $3, 'UTC', $4, $5::jsonb, 'skip', 1)
ON CONFLICT (name) DO UPDATE SET handle = EXCLUDED.handle, cron = EXCLUDED.cron, workflow = EXCLUDED.workflow,
  input = EXCLUDED.input, updated_at = now()
  WHERE $6::boolean AND t.scheduler = 'pg_durable'
RETURNING name`,
      [name, handle, cron, workflow.name, JSON.stringify(encoded ?? null), replace]
    )
    if (written.length === 0) {
      // Another process took the name meanwhile.
      if (!paused) yield* stopInstance(handle)
      return yield* new Scheduler.ScheduleAlreadyExists({ name, scheduler: "pg_durable" })
    }
    if (existing !== undefined && !paused && existing.handle !== handle) yield* stopInstance(existing.handle)
    return yield* describe(yield* find(name).pipe(Effect.orDie))
  })

  const unschedule = Effect.fn("Scheduler.unschedule")(function*(name: string) {
    const found = yield* find(name)
    yield* stopInstance(found.handle)
    yield* query("unschedule", `DELETE FROM ${table} WHERE name = $1 AND scheduler = 'pg_durable'`, [name])
  })

  const get = Effect.fn("Scheduler.get")(function*(name: string) {
    return yield* describe(yield* find(name))
  })

  const list = Effect.gen(function*() {
    const rows = yield* query<Row>(
      "list schedules",
      `SELECT name, handle, cron, workflow, input, paused FROM ${table} WHERE scheduler = 'pg_durable' ORDER BY name`
    )
    return yield* Effect.forEach(rows, describe)
  }).pipe(Effect.withSpan("Scheduler.list"))

  const setPaused = (name: string, paused: boolean, handle: string | null) =>
    query(
      paused ? "pause schedule" : "resume schedule",
      `UPDATE ${table} SET paused = $2, handle = $3, updated_at = now() WHERE name = $1 AND scheduler = 'pg_durable'`,
      [name, paused, handle]
    )

  const pause = Effect.fn("Scheduler.pause")(function*(name: string) {
    const found = yield* find(name)
    yield* stopInstance(found.handle)
    yield* setPaused(name, true, found.handle)
    return yield* describe({ ...found, paused: true })
  })

  const resume = Effect.fn("Scheduler.resume")(function*(name: string) {
    const found = yield* find(name)
    const status = yield* statusOf(found.handle)
    if (!found.paused && status === "running") return info(found, status, yield* Clock.currentTimeMillis)
    const handle = yield* startInstance(found).pipe(
      Effect.catchTag("InvalidCron", (error) => Effect.die(error))
    )
    yield* setPaused(name, false, handle)
    return yield* describe({ ...found, paused: false, handle })
  })

  const trigger = Effect.fn("Scheduler.trigger")(function*(name: string, options?: Scheduler.TriggerOptions) {
    const found = yield* find(name)
    const now = yield* Clock.currentTimeMillis
    const n = yield* Random.nextIntBetween(0, 0xffff)
    const id = options?.id ??
      `schedule:${name}:manual:${new Date(now).toISOString()}:${n.toString(16).padStart(4, "0")}`
    yield* query("trigger", `SELECT ${Identifier.quote(config.schema)}.enqueue_workflow($1, $2::jsonb, $3)`, [
      found.workflow,
      JSON.stringify(found.input ?? null),
      id
    ])
    return id
  })

  return Scheduler.Scheduler.of({
    kind: "pg_durable",
    schedule: schedule as Scheduler.Scheduler["Service"]["schedule"],
    unschedule,
    get,
    list,
    pause,
    resume,
    trigger
  })
}

/** The expression in the Unix form pg_durable's translation takes (five fields), or why not. */
const pgDurableCron = (expression: string): Effect.Effect<string, Scheduler.InvalidCron> =>
  Effect.gen(function*() {
    const parsed = yield* Effect.fromResult(Scheduler.parseExpression(expression))
    if (parsed._tag === "Interval" || parsed.fields === 6) {
      return yield* new Scheduler.InvalidCron({
        expression,
        reason: "asks for seconds, which pg_durable's df.wait_for_schedule does not have (five fields, a minute at " +
          "the finest): write five fields, or use the built-in scheduler"
      })
    }
    const translated = Compiler.translateCron(parsed.text)
    if (Result.isFailure(translated)) {
      return yield* new Scheduler.InvalidCron({ expression, reason: `cannot run on pg_durable: ${translated.failure}` })
    }
    return parsed.text
  })
