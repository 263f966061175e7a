/**
 * Recurring runs of workflows: one service, three implementations.
 *
 * - `BuiltinScheduler` (the default, no extension needed): schedules in pgflows' `schedules` table
 *   (or in memory, for tests), ticks computed with `effect/Cron` in any time zone, fired by
 *   `BuiltinScheduler.run` loops that any number of processes run next to their workers; each tick
 *   starts exactly one run, whose id is `schedule:<name>:<tick>`.
 * - `PgCronScheduler`: a pg_cron job per schedule, whose command calls `<schema>.enqueue_workflow`.
 * - `PgDurableScheduler` (in `@pgflows/pg-durable`): a pg_durable instance per schedule, looping over
 *   `df.wait_for_schedule` and the same enqueue call.
 *
 * Expressions: five cron fields (minute hour day-of-month month day-of-week; day of week 0-7 or
 * `SUN`-`SAT`, Sunday = 0 or 7), six with a leading second (built-in only), the macros `@hourly`,
 * `@daily`, `@weekly`, `@monthly`, `@yearly`, or `N seconds` (built-in when N divides a minute,
 * pg_cron 1.5 and later). When both day fields are restricted, a day matches either (as in Unix cron).
 *
 * @example
 * ```ts
 * const program = Effect.gen(function*() {
 *   const scheduler = yield* Scheduler.Scheduler
 *   yield* scheduler.schedule("nightly-report", "30 2 * * *", report, { team: "ops" }, {
 *     timezone: "Europe/Berlin",
 *     catchUp: "latest"
 *   })
 * })
 * ```
 *
 * **Gotchas**
 *
 * - A schedule's input is encoded with the workflow's input Schema when it is scheduled and stored
 *   as JSON; each run decodes it again, so a later change of the Schema can fail those runs.
 * - Two runs of one schedule may overlap when a run takes longer than the interval between ticks;
 *   make the workflow check for that when it matters.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Cron from "effect/Cron"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { byteSize } from "./internal/json.ts"
import * as ScheduleCron from "./internal/scheduleCron.ts"
import * as ScheduleStore from "./internal/scheduleStore.ts"
import * as ScheduleTicks from "./internal/scheduleTicks.ts"
import { codec } from "./JsonCodec.ts"
import { InvalidInput, PayloadTooLarge, type StoreError } from "./PgflowsError.ts"
import type * as Workflow from "./Workflow.ts"

/**
 * Which implementation runs a schedule.
 *
 * @category models
 * @since 0.1.0
 */
export type Kind = "builtin" | "pg_cron" | "pg_durable"

/**
 * What happens to ticks that were due while no scheduler ran (a deploy, an outage):
 *
 * - `"skip"`: they are dropped; the schedule goes on with the next tick;
 * - `"latest"` (default): the most recent of them starts one run, the others are dropped;
 * - `"all"`: each starts a run, up to `maxCatchUp` of them (the most recent).
 *
 * A tick reached within the scheduler's `grace` (one minute by default) of its time is on time, not
 * missed, and always runs. pg_cron and pg_durable only know `"skip"`.
 *
 * @category models
 * @since 0.1.0
 */
export type CatchUp = "skip" | "latest" | "all"

/**
 * @category models
 * @since 0.1.0
 */
export const catchUps: ReadonlyArray<CatchUp> = ["skip", "latest", "all"]

/**
 * @category models
 * @since 0.1.0
 */
export interface ScheduleOptions {
  /**
   * The time zone the expression is read in: an IANA name (`"Europe/Berlin"`), `"UTC"` (default) or
   * a fixed offset (`"+02:00"`). A local time that a daylight-saving change skips runs at the same
   * time after the change (02:30 becomes 03:30); one that repeats runs once, at its first occurrence.
   */
  readonly timezone?: string | undefined
  /** See `CatchUp`; default `"latest"` for the built-in scheduler, `"skip"` elsewhere. */
  readonly catchUp?: CatchUp | undefined
  /** With `catchUp: "all"`, at most this many missed ticks run (default 10; 1 to 1000). */
  readonly maxCatchUp?: number | undefined
  /**
   * Replace a schedule of the same name (its expression, workflow, input and options) instead of
   * failing with `ScheduleAlreadyExists`: what an application that declares its schedules at start-up
   * wants.
   */
  readonly replace?: boolean | undefined
}

/**
 * A schedule as a scheduler reports it.
 *
 * @category models
 * @since 0.1.0
 */
export interface ScheduleInfo {
  readonly name: string
  readonly scheduler: Kind
  /** The expression as stored (macros expanded). */
  readonly cron: string
  readonly timezone: string
  readonly workflow: string
  /** The run input, as JSON (encoded with the workflow's input Schema). */
  readonly input: unknown
  readonly paused: boolean
  readonly catchUp: CatchUp
  readonly maxCatchUp: number
  /** The last tick handled (built-in), or the start of the job's last run (pg_cron). */
  readonly lastTick: Date | undefined
  /** The next tick, when known. */
  readonly nextTick: Date | undefined
  /** The name (built-in), pg_cron's job id, or pg_durable's instance id. */
  readonly handle: string
  /**
   * pg_durable: the status of the schedule's instance (`running`; `failed` or `completed` when it
   * ended, for example after pg_durable's 100 000 loop iterations: `resume` starts a new one).
   */
  readonly status?: string | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface TriggerOptions {
  /** The run's id (default `schedule:<name>:manual:<time>`); a run with this id is not started again. */
  readonly id?: string | undefined
}

/**
 * The schedule name breaks the naming rule.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidScheduleName extends Schema.TaggedError<InvalidScheduleName>()("InvalidScheduleName", {
  name: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `schedule name ${JSON.stringify(this.name)} ${this.reason}`
  }
}

/**
 * The expression is not one the scheduler can run. `field` and `position` (1-based) name the field
 * to blame when there is one.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidCron extends Schema.TaggedError<InvalidCron>()("InvalidCron", {
  expression: Schema.String,
  field: Schema.optional(Schema.String),
  position: Schema.optional(Schema.Number),
  reason: Schema.String
}) {
  override get message() {
    const where = this.field === undefined ? "" : ` (field ${this.position}, ${this.field})`
    return `cron expression ${JSON.stringify(this.expression)}${where} ${this.reason}`
  }
}

/**
 * The time zone is unknown, or the scheduler cannot use it.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidTimeZone extends Schema.TaggedError<InvalidTimeZone>()("InvalidTimeZone", {
  timezone: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `time zone ${JSON.stringify(this.timezone)} ${this.reason}`
  }
}

/**
 * There is no schedule of this name (for this scheduler).
 *
 * @category errors
 * @since 0.1.0
 */
export class ScheduleNotFound extends Schema.TaggedError<ScheduleNotFound>()("ScheduleNotFound", {
  name: Schema.String
}) {
  override get message() {
    return `no schedule is named ${JSON.stringify(this.name)}; Scheduler.list shows the schedules there are`
  }
}

/**
 * A schedule of this name exists already.
 *
 * @category errors
 * @since 0.1.0
 */
export class ScheduleAlreadyExists extends Schema.TaggedError<ScheduleAlreadyExists>()("ScheduleAlreadyExists", {
  name: Schema.String,
  scheduler: Schema.String
}) {
  override get message() {
    return `a schedule named ${JSON.stringify(this.name)} exists already (${this.scheduler}); pass { replace: true } ` +
      "to change it, or unschedule it first"
  }
}

/**
 * The scheduler cannot honour an option (a time zone other than UTC for pg_cron, a catch-up policy
 * pg_durable does not have, ...). `reason` says what to use instead.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnsupportedScheduleOption extends Schema.TaggedError<UnsupportedScheduleOption>()(
  "UnsupportedScheduleOption",
  { scheduler: Schema.String, option: Schema.String, reason: Schema.String }
) {
  override get message() {
    return `${this.scheduler} cannot honour ${this.option}: ${this.reason}`
  }
}

/**
 * The extension a scheduler needs (pg_cron, pg_durable) is not there; `reason` says how to set it up.
 *
 * @category errors
 * @since 0.1.0
 */
export class SchedulerUnavailable extends Schema.TaggedError<SchedulerUnavailable>()("SchedulerUnavailable", {
  scheduler: Schema.String,
  database: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.scheduler} is not usable in database ${JSON.stringify(this.database)}: ${this.reason}`
  }
}

/**
 * The errors of `schedule`.
 *
 * @category errors
 * @since 0.1.0
 */
export type ScheduleError =
  | InvalidScheduleName
  | InvalidCron
  | InvalidTimeZone
  | ScheduleAlreadyExists
  | UnsupportedScheduleOption
  | SchedulerUnavailable
  | InvalidInput
  | PayloadTooLarge
  | StoreError

/**
 * @category services
 * @since 0.1.0
 */
export class Scheduler extends Context.Service<Scheduler, {
  readonly kind: Kind
  /**
   * Schedules runs of `workflow` with `input` at the times `cron` matches. Fails when the name is
   * taken (unless `replace`), the expression or the time zone is invalid, or the input does not
   * match the workflow's input Schema.
   */
  readonly schedule: <W extends Workflow.Any>(
    name: string,
    cron: string,
    workflow: W,
    input: Workflow.Input<W>,
    options?: ScheduleOptions
  ) => Effect.Effect<ScheduleInfo, ScheduleError>
  /** Removes a schedule; runs it started go on. */
  readonly unschedule: (
    name: string
  ) => Effect.Effect<void, ScheduleNotFound | SchedulerUnavailable | StoreError>
  readonly get: (name: string) => Effect.Effect<ScheduleInfo, ScheduleNotFound | SchedulerUnavailable | StoreError>
  /** The schedules of this scheduler, by name. */
  readonly list: Effect.Effect<ReadonlyArray<ScheduleInfo>, SchedulerUnavailable | StoreError>
  /** Stops firing ticks until `resume`; ticks in between are dropped whatever the catch-up policy. */
  readonly pause: (name: string) => Effect.Effect<ScheduleInfo, ScheduleNotFound | SchedulerUnavailable | StoreError>
  /** Fires again from the next tick after now (pg_durable: starts a new instance if its own ended). */
  readonly resume: (
    name: string
  ) => Effect.Effect<ScheduleInfo, ScheduleNotFound | SchedulerUnavailable | StoreError>
  /** Starts a run of the schedule now (paused or not), outside its ticks; returns the run's id. */
  readonly trigger: (
    name: string,
    options?: TriggerOptions
  ) => Effect.Effect<string, ScheduleNotFound | SchedulerUnavailable | StoreError>
}>()("pgflows/Scheduler") {}

/**
 * A read expression (see `parseExpression`).
 *
 * @category models
 * @since 0.1.0
 */
export type Expression = ScheduleCron.Expression

const nameRule = "must be 1 to 100 letters, digits, '_', '-' or '.', starting with a letter or digit"

/**
 * Checks a schedule name: 1 to 100 ASCII letters, digits, `_`, `-` or `.`, starting with a letter or
 * a digit (names become part of run ids, `schedule:<name>:<tick>`, and of pg_cron job names).
 *
 * @category validation
 * @since 0.1.0
 */
export const checkName = (name: string): Result.Result<string, InvalidScheduleName> => {
  if (name.length === 0) return Result.fail(new InvalidScheduleName({ name, reason: `is empty; a name ${nameRule}` }))
  if (name.length > 100) {
    return Result.fail(
      new InvalidScheduleName({ name, reason: `is ${name.length} characters long; a name ${nameRule}` })
    )
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    return Result.fail(new InvalidScheduleName({ name, reason: `is not valid: a name ${nameRule}` }))
  }
  return Result.succeed(name)
}

/**
 * Reads an expression, or says which field is wrong and why.
 *
 * @category validation
 * @since 0.1.0
 */
export const parseExpression = (expression: string): Result.Result<Expression, InvalidCron> =>
  Result.mapError(ScheduleCron.parse(expression), (problem) => invalidCron(expression, problem))

/**
 * Checks a time zone; succeeds with its canonical name (`"UTC"` when omitted).
 *
 * @category validation
 * @since 0.1.0
 */
export const checkTimeZone = (timezone: string | undefined): Result.Result<string, InvalidTimeZone> =>
  Result.mapBoth(ScheduleCron.timeZone(timezone), {
    onFailure: (reason) => new InvalidTimeZone({ timezone: timezone ?? "", reason }),
    onSuccess: DateTime.zoneToString
  })

/**
 * The `effect/Cron` schedule of an expression in a time zone, as the built-in scheduler runs it
 * (intervals must divide a minute).
 *
 * @category validation
 * @since 0.1.0
 */
export const toCron = (
  expression: string,
  timezone?: string | undefined
): Result.Result<Cron.Cron, InvalidCron | InvalidTimeZone> =>
  Result.flatMap(parseExpression(expression), (parsed) =>
    Result.flatMap(
      Result.mapError(ScheduleCron.timeZone(timezone), (reason) =>
        new InvalidTimeZone({ timezone: timezone ?? "", reason })),
      (zone) =>
        Result.mapError(
          ScheduleCron.toCron(parsed, zone),
          (problem) =>
            invalidCron(expression, problem)
        )
    ))

/**
 * The next `count` ticks of an expression after `after`, as the built-in scheduler computes them.
 *
 * @category validation
 * @since 0.1.0
 */
export const upcoming = (
  expression: string,
  options: { readonly after: Date; readonly count?: number | undefined; readonly timezone?: string | undefined }
): Result.Result<ReadonlyArray<Date>, InvalidCron | InvalidTimeZone> =>
  Result.map(toCron(expression, options.timezone), (cron) => {
    const ticks: Array<Date> = []
    let at = options.after.getTime()
    const count = Math.max(0, Math.min(options.count ?? 1, 10_000))
    for (let i = 0; i < count; i++) {
      const tick = ScheduleTicks.next(cron, at)
      if (tick === undefined) break
      ticks.push(new Date(tick))
      at = tick
    }
    return ticks
  })

/**
 * The id of the run a tick starts: `schedule:<name>:<tick, ISO 8601 in UTC, to the second>`. Every
 * scheduler uses it, so a tick starts one run however many schedulers fire it.
 *
 * @category utils
 * @since 0.1.0
 */
export const runId = (name: string, tick: Date | number): string =>
  ScheduleStore.tickRunId(name, new Date(tick).getTime())

/**
 * Whether a time zone name (as `checkTimeZone` returns it) means UTC.
 *
 * @category validation
 * @since 0.1.0
 */
export const isUtc = (zone: string): boolean => utcNames.has(zone)

/**
 * A schedule's input, encoded with the workflow's input Schema and checked against the payload
 * limit, as every scheduler stores it.
 *
 * @category validation
 * @since 0.1.0
 */
export const encodeInput = (
  name: string,
  workflow: Workflow.Any,
  input: unknown,
  maxPayloadBytes: number
): Effect.Effect<unknown, InvalidInput | PayloadTooLarge> => {
  const encoded = codec(workflow.input).encode(input)
  if (Result.isFailure(encoded)) {
    return Effect.fail(new InvalidInput({ workflow: workflow.name, issues: encoded.failure }))
  }
  const bytes = byteSize(encoded.success)
  return bytes > maxPayloadBytes
    ? Effect.fail(new PayloadTooLarge({ subject: `input of schedule "${name}"`, bytes, limit: maxPayloadBytes }))
    : Effect.succeed(encoded.success)
}

/**
 * Refuses a catch-up policy other than `"skip"`, for the schedulers whose extension never runs the
 * ticks it missed.
 *
 * @category validation
 * @since 0.1.0
 */
export const onlySkip = (
  scheduler: "pg_cron" | "pg_durable",
  catchUp: CatchUp | undefined
): Effect.Effect<void, UnsupportedScheduleOption> =>
  catchUp === undefined || catchUp === "skip"
    ? Effect.void
    : Effect.fail(
      new UnsupportedScheduleOption({
        scheduler,
        option: `catchUp ${JSON.stringify(catchUp)}`,
        reason: `${scheduler} never runs the ticks it missed; use catchUp "skip", or the built-in scheduler`
      })
    )

// internal

const utcNames: ReadonlySet<string> = new Set(["UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Z", "+00:00"])

const invalidCron = (expression: string, problem: ScheduleCron.Problem): InvalidCron =>
  new InvalidCron({
    expression,
    reason: problem.reason,
    ...(problem.field === undefined ? {} : { field: problem.field, position: problem.position })
  })
