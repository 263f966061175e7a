/**
 * Workflows: durable programs written as Effect generators.
 *
 * A workflow has a name, Schemas for its input, output and typed error, and a `run` function. Inside
 * `run`, every durable operation (a step call, `Workflow.sleep`, ...) gets a key from its position
 * (a counter, with a branch path inside concurrent combinators) and goes through the replay journal,
 * so the run can stop anywhere (crash, deploy, a long sleep) and resume without repeating what was
 * done. Definitions are plain values and need no services; `Pgflows.layer({ workflows })` runs them.
 *
 * **Gotchas**
 *
 * Between durable operations the code runs again on every replay, so it must be deterministic: read
 * time, randomness and the outside world only through steps. A replay that asks for a different step
 * (or the same step with a different input) at a key fails the run with a `NonDeterminismError`
 * instead of mixing results up. Steps started concurrently with plain `Effect.all` get keys in the
 * order their fibers start, which Effect keeps stable; when it is not (a step after a sleep of
 * random length in one branch), the non-determinism check catches it.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import type { Persisted } from "./internal/codec.ts"
import { nextKey, WorkflowContext as Context } from "./internal/context.ts"
import { AnyError } from "./PgflowsError.ts"

const TypeId = "~pgflows/Workflow"

/**
 * The service a running workflow (and its steps) requires; the engine provides it.
 *
 * @category services
 * @since 0.1.0
 */
export const WorkflowContext = Context

/**
 * @category services
 * @since 0.1.0
 */
export type WorkflowContext = Context

/**
 * Defaults for the steps of a workflow that set none of their own.
 *
 * @category models
 * @since 0.1.0
 */
export interface StepDefaults {
  readonly retry?: Schedule.Schedule<unknown, any> | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Workflow<Name extends string, I extends Persisted, O extends Persisted, E extends Persisted, R> {
  readonly [TypeId]: typeof TypeId
  readonly name: Name
  readonly input: I
  readonly output: O
  readonly error: E
  readonly stepDefaults: StepDefaults
  readonly run: (input: I["Type"]) => Effect.Effect<O["Type"], E["Type"], R | WorkflowContext>
}

/**
 * Any workflow.
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
  readonly stepDefaults: StepDefaults
  readonly run: (input: any) => Effect.Effect<any, any, any>
}

/**
 * @category type-level
 * @since 0.1.0
 */
export type Input<W> = W extends Workflow<any, infer I, any, any, any> ? I["Type"] : never

/**
 * @category type-level
 * @since 0.1.0
 */
export type Output<W> = W extends Workflow<any, any, infer O, any, any> ? O["Type"] : unknown

/**
 * @category type-level
 * @since 0.1.0
 */
export type Error<W> = W extends Workflow<any, any, any, infer E, any> ? E["Type"] : unknown

/**
 * The services a workflow's steps need, which the `Pgflows` layer must be given.
 *
 * @category type-level
 * @since 0.1.0
 */
export type Requirements<W> = W extends Workflow<any, any, any, any, infer R> ? Exclude<R, WorkflowContext> : never

/**
 * @category guards
 * @since 0.1.0
 */
export const isWorkflow = (u: unknown): u is Any => typeof u === "object" && u !== null && (u as any)[TypeId] === TypeId

/**
 * Defines a workflow.
 *
 * @example
 * ```ts
 * const processOrder = Workflow.make("process_order", {
 *   input: OrderInput,
 *   output: Receipt,
 *   stepDefaults: { retry: Schedule.recurs(2) },
 *   run: Effect.fn(function*(order) {
 *     const receipt = yield* chargePayment(order)
 *     yield* Workflow.sleep("1 day")
 *     return receipt
 *   })
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <
  const Name extends string,
  I extends Persisted,
  O extends Persisted,
  R,
  E extends Persisted = AnyError
>(name: Name, options: {
  readonly input: I
  readonly output: O
  readonly error?: E | undefined
  readonly stepDefaults?: StepDefaults | undefined
  readonly run: (input: I["Type"]) => Effect.Effect<O["Type"], E["Type"], R>
}): Workflow<Name, I, O, E, Exclude<R, WorkflowContext>> => {
  if (name.length === 0) throw new globalThis.Error("a workflow name must not be empty")
  return {
    [TypeId]: TypeId,
    name,
    input: options.input,
    output: options.output,
    error: options.error ?? (AnyError as unknown as E),
    stepDefaults: options.stepDefaults ?? {},
    run: options.run as Workflow<Name, I, O, E, Exclude<R, WorkflowContext>>["run"]
  }
}

/**
 * Sleeps durably. Short sleeps (up to `PgflowsConfig.parkThreshold`) happen in the worker; longer
 * ones park the run (no worker is held) until the time comes, surviving restarts.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const sleep = (duration: Duration.Input): Effect.Effect<void, never, WorkflowContext> =>
  Effect.flatMap(Context, (ctx) => ctx.execution.sleep(Duration.fromInputUnsafe(duration), nextKey(ctx.position)))

/**
 * The id of the running run.
 *
 * @category accessors
 * @since 0.1.0
 */
export const runId: Effect.Effect<string, never, WorkflowContext> = Effect.map(Context, (ctx) => ctx.execution.runId)
