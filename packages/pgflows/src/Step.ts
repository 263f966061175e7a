/**
 * Steps: named, typed, retried units of work whose results are checkpointed.
 *
 * A step is defined once, with Schemas for its input, output and (optionally) its typed error, a
 * retry `Schedule` and a per-attempt `timeout`; it is called from a workflow as `yield* step(input)`.
 * The first execution runs `run` and records the output (or the final error) in the run's journal;
 * a replay after a crash, deploy or wake-up returns the recorded value without running `run` again.
 *
 * **Gotchas**
 *
 * - A step's side effects can happen more than once when a worker dies during the step, before its
 *   checkpoint is written: make them idempotent, or use a transaction step for database work.
 * - Retries follow the step's `Schedule` (or the workflow's `stepDefaults.retry`); typed failures and
 *   timeouts are retried, defects are not. Delays longer than `PgflowsConfig.parkThreshold` park the
 *   run (no worker is held) instead of sleeping.
 * - When a parked retry resumes, the schedule is replayed with the recorded attempt count, so limits
 *   on the number of attempts are exact; time windows (`Schedule.during`) restart at the resume.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { nextKey, WorkflowContext } from "./internal/context.ts"
import type { Persisted } from "./JsonCodec.ts"
import type { StepTimeoutError } from "./PgflowsError.ts"
import * as StoredText from "./StoredText.ts"

const TypeId = "~pgflows/Step"

/**
 * A step definition, callable from a workflow: `yield* step(input)`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Step<
  Name extends string,
  I extends Persisted,
  O extends Persisted,
  E extends Persisted,
  R,
  Timeout = never
> {
  (input: I["Type"]): Effect.Effect<O["Type"], E["Type"] | Timeout, WorkflowContext | R>
  readonly [TypeId]: typeof TypeId
  readonly name: Name
  readonly input: I
  readonly output: O
  readonly error: E
  readonly retry: Schedule.Schedule<unknown, E["Type"] | Timeout> | undefined
  readonly timeout: Duration.Duration | undefined
  readonly run: (input: I["Type"]) => Effect.Effect<O["Type"], E["Type"], R>
}

/**
 * Any step.
 *
 * @category models
 * @since 0.1.0
 */
export interface Any {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  readonly input: Persisted
  readonly output: Persisted
  readonly error: Persisted
  /** A schedule's input is contravariant: `never` accepts the schedule of any step. */
  readonly retry: Schedule.Schedule<unknown, never> | undefined
  readonly timeout: Duration.Duration | undefined
  readonly run: (input: any) => Effect.Effect<any, any, any>
}

/**
 * @category guards
 * @since 0.1.0
 */
export const isStep = (u: unknown): u is Any => typeof u === "function" && (u as any)[TypeId] === TypeId

interface Options<I extends Persisted, O extends Persisted, E extends Persisted, R> {
  readonly input: I
  readonly output: O
  /**
   * The typed failure of the step. Without it the step cannot fail with a typed error (only die);
   * `PgflowsError.AnyError` accepts any failure and stores it as plain JSON.
   */
  readonly error?: E | undefined
  readonly run: (input: I["Type"]) => Effect.Effect<O["Type"], E["Type"], R>
}

/**
 * Defines a step. With `timeout`, each attempt is interrupted after that long and fails with a
 * `StepTimeoutError` (retried like any typed failure).
 *
 * @example
 * ```ts
 * const charge = Step.make("charge_payment", {
 *   input: OrderInput,
 *   output: Receipt,
 *   error: Declined,
 *   retry: Schedule.exponential("1 second").pipe(Schedule.jittered, Schedule.upTo({ times: 3 })),
 *   timeout: "30 seconds",
 *   run: (order) => Effect.succeed(new Receipt({ charged: true, confirmation: `CHG-${order.orderId}` }))
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: {
  <const Name extends string, I extends Persisted, O extends Persisted, R, E extends Persisted = Schema.Never>(
    name: Name,
    options: Options<I, O, E, R> & {
      readonly retry?: Schedule.Schedule<unknown, E["Type"] | StepTimeoutError> | undefined
      readonly timeout: Duration.Input
    }
  ): Step<Name, I, O, E, R, StepTimeoutError>
  <const Name extends string, I extends Persisted, O extends Persisted, R, E extends Persisted = Schema.Never>(
    name: Name,
    options: Options<I, O, E, R> & {
      readonly retry?: Schedule.Schedule<unknown, E["Type"]> | undefined
      readonly timeout?: undefined
    }
  ): Step<Name, I, O, E, R>
} = (name: string, options: any): any => {
  const spec = specOf(name, options)
  return callable(spec, (ctx, input) => ctx.execution.step(spec, input, nextKey(ctx.position)))
}

/**
 * Defines a step whose effect runs in the same database transaction that writes its journal entry:
 * the effect and its record commit together, or neither does (a crash or a failure rolls both
 * back). Its `run` uses the application's `SqlClient`; PostgreSQL only (on the memory backend the
 * effect runs, then the entry is written).
 *
 * @example
 * ```ts
 * const debit = Step.transaction("debit_account", {
 *   input: Debit,
 *   output: Schema.Struct({ balance: Schema.Number }),
 *   run: (debit) =>
 *     Effect.gen(function*() {
 *       const sql = yield* SqlClient.SqlClient
 *       const [row] = yield* sql<{ balance: number }>`
 *         UPDATE accounts SET balance = balance - ${debit.amount} WHERE id = ${debit.account} RETURNING balance`
 *       return { balance: row!.balance }
 *     }).pipe(Effect.orDie)
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const transaction: {
  <const Name extends string, I extends Persisted, O extends Persisted, R, E extends Persisted = Schema.Never>(
    name: Name,
    options: Options<I, O, E, R> & {
      readonly retry?: Schedule.Schedule<unknown, E["Type"]> | undefined
      readonly timeout?: undefined
    }
  ): Step<Name, I, O, E, R>
} = (name: string, options: any): any => {
  const spec = specOf(name, options)
  return callable(spec, (ctx, input) => ctx.execution.transaction(spec, input, nextKey(ctx.position)))
}

// internal

const specOf = (name: string, options: any) => {
  if (name.length === 0 || name.startsWith("pgflows.")) {
    throw new Error(`invalid step name ${JSON.stringify(name)}: it must be non-empty and not start with "pgflows."`)
  }
  const problem = StoredText.nameProblem(name)
  if (problem !== undefined) throw new Error(`invalid step name ${JSON.stringify(name)}: it ${problem}`)
  return {
    name,
    input: options.input,
    output: options.output,
    error: options.error ?? Schema.Never,
    retry: options.retry,
    timeout: options.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout),
    run: options.run
  }
}

const callable = (
  spec: ReturnType<typeof specOf>,
  invoke: (ctx: WorkflowContext["Service"], input: unknown) => Effect.Effect<unknown, unknown, any>
) => {
  const call = (input: unknown) => Effect.flatMap(WorkflowContext, (ctx) => invoke(ctx, input))
  // `name` of a function is read-only: define it rather than assign it.
  Object.defineProperty(call, "name", { value: spec.name })
  const { name: _, ...rest } = spec
  return Object.assign(call, { [TypeId]: TypeId }, rest)
}
