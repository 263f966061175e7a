/**
 * The built-in scheduler: cron schedules kept by pgflows itself, no extension needed.
 *
 * Schedules live in the `schedules` table (`layer`, on PostgreSQL) or in memory (`layerMemory`, for
 * tests: `TestClock` drives the ticks). Ticks are computed with `effect/Cron`, in the schedule's
 * time zone, daylight-saving changes included. They are fired by `run`, a loop that any number of
 * processes fork next to their workers (or `layerRun`): each pass takes the due schedules with
 * `FOR UPDATE SKIP LOCKED`, starts one run per tick with the id `schedule:<name>:<tick>` through
 * `<schema>.enqueue_workflow`, and moves the schedules on, in one transaction. However many
 * schedulers are up, a tick starts exactly one run; when none is up, the catch-up policy says what
 * happens to the ticks missed (see `Scheduler.CatchUp`).
 *
 * @example
 * ```ts
 * const Live = Layer.mergeAll(Pgflows.layerPg({ workflows: [report] }), BuiltinScheduler.layer).pipe(
 *   Layer.provide(PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL!) }))
 * )
 * const main = Effect.gen(function*() {
 *   const scheduler = yield* Scheduler.Scheduler
 *   yield* scheduler.schedule("hourly-report", "0 * * * *", report, {}, { replace: true })
 *   const client = yield* Pgflows.Pgflows
 *   yield* Effect.all([client.runWorker(), BuiltinScheduler.run()], { concurrency: "unbounded" })
 * })
 * ```
 *
 * **Gotchas**
 *
 * - Schedulers only start runs; workers (`Pgflows.runWorker`) that register the workflow execute
 *   them. A scheduler does not need to know the workflows it fires.
 * - Times come from the database (`now()`), never from the processes' clocks.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Cron from "effect/Cron"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Result from "effect/Result"
import * as SqlClient from "effect/sql/SqlClient"
import * as ScheduleCron from "./internal/scheduleCron.ts"
import * as ScheduleSql from "./internal/scheduleSql.ts"
import * as ScheduleStore from "./internal/scheduleStore.ts"
import * as ScheduleTicks from "./internal/scheduleTicks.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import type { StoreError } from "./PgflowsError.ts"
import * as PgMigrations from "./PgMigrations.ts"
import * as Scheduler from "./Scheduler.ts"
import * as Store from "./Store.ts"
import type * as Workflow from "./Workflow.ts"

/**
 * A run started by a tick.
 *
 * @category models
 * @since 0.1.0
 */
export interface Fired {
  readonly schedule: string
  readonly workflow: string
  readonly tick: Date
  /** `schedule:<name>:<tick>` */
  readonly runId: string
}

/**
 * @category models
 * @since 0.1.0
 */
export interface FireOptions {
  /**
   * A tick reached within this long of its time is on time and always fires; older due ticks were
   * missed and follow the schedule's catch-up policy. Default 1 minute.
   */
  readonly grace?: Duration.Input | undefined
  /** At most this many schedules per pass (default 64). */
  readonly batch?: number | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface RunOptions extends FireOptions {
  /**
   * How often to look for schedules made by other processes when no tick is due sooner (default
   * `PgflowsConfig.pollInterval`). Schedules made in this process wake the loop at once.
   */
  readonly pollInterval?: Duration.Input | undefined
  /** Called with the runs each pass of this loop started (for metrics or logs). */
  readonly onFired?: ((fired: ReadonlyArray<Fired>) => Effect.Effect<void>) | undefined
}

/**
 * The firing side of the built-in scheduler.
 *
 * @category services
 * @since 0.1.0
 */
export class BuiltinScheduler extends Context.Service<BuiltinScheduler, {
  /** One pass: fires the ticks due now (on time or caught up), returns the runs it started. */
  readonly fireDue: (options?: FireOptions) => Effect.Effect<ReadonlyArray<Fired>, StoreError>
  /**
   * Fires ticks until interrupted: sleeps until the next tick (or the poll interval), then fires
   * what is due. A failing database is retried with backoff and logged, never fatal.
   */
  readonly run: (options?: RunOptions) => Effect.Effect<never>
}>()("pgflows/BuiltinScheduler") {}

/**
 * Runs the scheduler of the context until interrupted; fork it next to `Pgflows.runWorker`.
 *
 * @category running
 * @since 0.1.0
 */
export const run = (options?: RunOptions): Effect.Effect<never, never, BuiltinScheduler> =>
  Effect.flatMap(BuiltinScheduler, (scheduler) => scheduler.run(options))

/**
 * `Scheduler` and `BuiltinScheduler` on PostgreSQL (the `schedules` table of `PgMigrations`, which
 * it applies), on the application's `SqlClient`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  Scheduler.Scheduler | BuiltinScheduler,
  StoreError | PgflowsConfig.PgflowsConfigError,
  SqlClient.SqlClient
> = Layer
  .effectContext(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const config = yield* PgflowsConfig.PgflowsConfig
      yield* PgMigrations.prepare.pipe(Effect.mapError(ScheduleSql.storeError("migrations")))
      // `enqueue_workflow` reads this row; PgStore writes it too (and wins: it updates, we only insert).
      yield* sql`INSERT INTO ${sql(`${config.schema}.settings`)} (queue, notify_channel)
        VALUES (${config.queue}, ${config.notifyChannel}) ON CONFLICT (singleton) DO NOTHING`.pipe(
        Effect.mapError(ScheduleSql.storeError("settings"))
      )
      return yield* make(ScheduleSql.make(sql, config.schema))
    })
  ).pipe(Layer.provide(PgflowsConfig.layerDefault))

/**
 * `Scheduler` and `BuiltinScheduler` in memory, starting runs through the `Store` in context (use
 * with `Pgflows.layerMemory`); time comes from `Clock`, so `TestClock` drives the ticks.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerMemory: Layer.Layer<Scheduler.Scheduler | BuiltinScheduler, never, Store.Store> = Layer
  .effectContext(
    Effect.gen(function*() {
      return yield* make(ScheduleStore.makeMemory(yield* Store.Store))
    })
  )

/**
 * Runs `run(options)` for the life of the layer.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerRun = (options?: RunOptions): Layer.Layer<never, never, BuiltinScheduler> =>
  Layer.effectDiscard(Effect.forkScoped(run(options)))

// internal

const make = (store: ScheduleStore.ScheduleStore) =>
  Effect.gen(function*() {
    const config = yield* PgflowsConfig.PgflowsConfig
    const wakeups = yield* Queue.make<void>({ capacity: 1, strategy: "dropping" })
    const wake = Queue.offer(wakeups, undefined)
    const crons = new Map<string, Cron.Cron>()

    /** The parsed cron of a stored schedule (cached: the same few are read on every pass). */
    const cronOf = (record: ScheduleStore.ScheduleRecord): Cron.Cron | undefined => {
      const key = `${record.cron}\u0000${record.timezone}`
      const cached = crons.get(key)
      if (cached !== undefined) return cached
      const parsed = Scheduler.toCron(record.cron, record.timezone)
      if (Result.isFailure(parsed)) return undefined
      if (crons.size > 1000) crons.clear()
      crons.set(key, parsed.success)
      return parsed.success
    }

    const info = (record: ScheduleStore.ScheduleRecord): Scheduler.ScheduleInfo => ({
      name: record.name,
      scheduler: "builtin",
      cron: record.cron,
      timezone: record.timezone,
      workflow: record.workflow,
      input: record.input,
      paused: record.paused,
      catchUp: record.catchUp,
      maxCatchUp: record.maxCatchUp,
      lastTick: record.lastTick === null ? undefined : new Date(record.lastTick),
      nextTick: record.nextTick === null || record.paused ? undefined : new Date(record.nextTick),
      handle: record.name
    })

    const find = (name: string) =>
      Effect.flatMap(store.get(name), (record) =>
        record === undefined || record.scheduler !== "builtin"
          ? Effect.fail(new Scheduler.ScheduleNotFound({ name }))
          : Effect.succeed(record))

    const schedule = Effect.fn("Scheduler.schedule")(function*(
      name: string,
      expression: string,
      workflow: Workflow.Any,
      input: unknown,
      options?: Scheduler.ScheduleOptions
    ) {
      const prepared = yield* prepare(name, expression, workflow, input, options, config)
      const now = yield* store.now
      const cron = yield* Effect.fromResult(Scheduler.toCron(prepared.cron, prepared.timezone))
      const record: ScheduleStore.ScheduleRecord = {
        ...prepared,
        scheduler: "builtin",
        handle: null,
        paused: false,
        lastTick: null,
        nextTick: ScheduleTicks.next(cron, now) ?? null
      }
      const put = yield* store.put(record, options?.replace === true)
      if (put.outcome === "exists") {
        return yield* new Scheduler.ScheduleAlreadyExists({ name, scheduler: put.scheduler })
      }
      yield* wake
      return info(yield* find(name).pipe(Effect.orDie))
    })

    const unschedule = Effect.fn("Scheduler.unschedule")(function*(name: string) {
      if (!(yield* store.remove(name, "builtin"))) return yield* new Scheduler.ScheduleNotFound({ name })
    })

    const get = Effect.fn("Scheduler.get")(function*(name: string) {
      return info(yield* find(name))
    })

    const list = Effect.map(store.list("builtin"), (records) => records.map(info)).pipe(
      Effect.withSpan("Scheduler.list")
    )

    const setPaused = (paused: boolean) =>
      Effect.fnUntraced(function*(name: string) {
        const record = yield* find(name)
        const now = yield* store.now
        const cron = cronOf(record)
        const next = cron === undefined ? null : ScheduleTicks.next(cron, now) ?? null
        const updated = yield* store.setPaused(name, "builtin", paused, next)
        if (updated === undefined) return yield* new Scheduler.ScheduleNotFound({ name })
        if (!paused) yield* wake
        return info(updated)
      })

    const pause = Effect.fn("Scheduler.pause")(function*(name: string) {
      return yield* setPaused(true)(name)
    })

    const resume = Effect.fn("Scheduler.resume")(function*(name: string) {
      return yield* setPaused(false)(name)
    })

    const trigger = Effect.fn("Scheduler.trigger")(function*(name: string, options?: Scheduler.TriggerOptions) {
      const record = yield* find(name)
      const id = options?.id ?? (yield* manualRunId(name, yield* store.now))
      yield* store.start(record.workflow, record.input, id)
      return id
    })

    const fireDue = (options?: FireOptions) =>
      Effect.gen(function*() {
        const grace = Duration.toMillis(Duration.fromInputUnsafe(options?.grace ?? "1 minute"))
        const batch = Math.max(1, Math.min(options?.batch ?? 64, 10_000))
        return yield* fireOnce(grace, batch)
      }).pipe(Effect.map((result) => result.fired), Effect.withSpan("BuiltinScheduler.fireDue"))

    const fireOnce = (graceMillis: number, batch: number) =>
      Effect.gen(function*() {
        const result = yield* store.fire(batch, (record, now) => {
          const cron = cronOf(record)
          if (cron === undefined || record.nextTick === null) {
            return { fire: [], skipped: undefined, lastTick: undefined, nextTick: undefined }
          }
          return ScheduleTicks.plan(
            { cron, nextTick: record.nextTick, catchUp: record.catchUp, maxCatchUp: record.maxCatchUp },
            now,
            graceMillis
          )
        })
        for (const skipped of result.skipped) {
          yield* Effect.logInfo(
            `pgflows: schedule ${skipped.schedule} skipped the ticks it missed from ${
              new Date(skipped.from).toISOString()
            } to ${new Date(skipped.to).toISOString()} (catch-up policy)`
          )
        }
        const fired = result.fired.map((tick): Fired => ({
          schedule: tick.schedule,
          workflow: tick.workflow,
          tick: new Date(tick.tick),
          runId: tick.runId
        }))
        return { claimed: result.claimed, full: result.claimed >= batch, fired }
      })

    const runLoop = (options?: RunOptions): Effect.Effect<never> =>
      Effect.gen(function*() {
        const grace = Duration.toMillis(Duration.fromInputUnsafe(options?.grace ?? "1 minute"))
        const batch = Math.max(1, Math.min(options?.batch ?? 64, 10_000))
        const poll = Duration.toMillis(Duration.fromInputUnsafe(options?.pollInterval ?? config.pollInterval))
        let failing = 0
        while (true) {
          const pass = yield* Effect.result(fireOnce(grace, batch))
          if (Result.isFailure(pass)) {
            failing++
            const pause = Math.min(100 * 2 ** Math.min(failing, 6), 5000)
            yield* Effect.logWarning(
              `pgflows: scheduler cannot fire schedules (${pass.failure.message}); retrying in ${pause} ms`
            )
            yield* Effect.sleep(Duration.millis(pause))
            continue
          }
          if (failing > 0) yield* Effect.logInfo("pgflows: scheduler reaches the store again")
          failing = 0
          if (pass.success.fired.length > 0 && options?.onFired !== undefined) {
            yield* options.onFired(pass.success.fired)
          }
          if (pass.success.full) continue
          const due = yield* Effect.orElseSucceed(store.nextDue, () => undefined)
          // Another scheduler may hold a due schedule for a moment: look again soon, never spin.
          const wait = Math.max(10, Math.min(poll, due ?? Infinity))
          yield* Queue.take(wakeups).pipe(Effect.timeoutOption(Duration.millis(wait)))
        }
      }) as Effect.Effect<never>

    const scheduler = Scheduler.Scheduler.of({
      kind: "builtin",
      schedule: schedule as Scheduler.Scheduler["Service"]["schedule"],
      unschedule,
      get,
      list,
      pause,
      resume,
      trigger
    })
    return Context.make(Scheduler.Scheduler, scheduler).pipe(
      Context.add(BuiltinScheduler, BuiltinScheduler.of({ fireDue, run: runLoop }))
    )
  })

interface Prepared {
  readonly name: string
  readonly cron: string
  readonly timezone: string
  readonly workflow: string
  readonly input: unknown
  readonly catchUp: Scheduler.CatchUp
  readonly maxCatchUp: number
}

/** The checks of `schedule` that need no store: name, expression, time zone, options, input. */
const prepare = (
  name: string,
  expression: string,
  workflow: Workflow.Any,
  input: unknown,
  options: Scheduler.ScheduleOptions | undefined,
  config: PgflowsConfig.PgflowsConfig
) =>
  Effect.gen(function*() {
    yield* Effect.fromResult(Scheduler.checkName(name))
    const parsed = yield* Effect.fromResult(Scheduler.parseExpression(expression))
    const timezone = yield* Effect.fromResult(Scheduler.checkTimeZone(options?.timezone))
    // Checks that the expression runs here (an interval must divide a minute).
    yield* Effect.fromResult(Scheduler.toCron(expression, timezone))
    const catchUp = options?.catchUp ?? "latest"
    if (!Scheduler.catchUps.includes(catchUp)) {
      return yield* new Scheduler.UnsupportedScheduleOption({
        scheduler: "builtin",
        option: `catchUp ${JSON.stringify(catchUp)}`,
        reason: "use \"skip\", \"latest\" or \"all\""
      })
    }
    const maxCatchUp = options?.maxCatchUp ?? 10
    if (!Number.isInteger(maxCatchUp) || maxCatchUp < 1 || maxCatchUp > 1000) {
      return yield* new Scheduler.UnsupportedScheduleOption({
        scheduler: "builtin",
        option: `maxCatchUp ${maxCatchUp}`,
        reason: "use a whole number from 1 to 1000"
      })
    }
    const encoded = yield* Scheduler.encodeInput(name, workflow, input, config.maxPayloadBytes)
    return {
      name,
      cron: parsed._tag === "Cron" ? parsed.text : (ScheduleCron.intervalAsCron(parsed.seconds) ?? parsed.text),
      timezone,
      workflow: workflow.name,
      input: encoded,
      catchUp,
      maxCatchUp
    } satisfies Prepared
  })

const manualRunId = (name: string, now: number) =>
  Effect.map(
    Random.nextIntBetween(0, 0xffff),
    (n) => `schedule:${name}:manual:${new Date(now).toISOString()}:${n.toString(16).padStart(4, "0")}`
  )
