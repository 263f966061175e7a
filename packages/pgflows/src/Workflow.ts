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
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Result from "effect/Result"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"
import * as FlowQueue from "./FlowQueue.ts"
import { type ChildOutcome, nextKey, WorkflowContext as Context } from "./internal/context.ts"
import { decodeFailure } from "./internal/failure.ts"
import * as Versions from "./internal/versions.ts"
import { codec, type Persisted } from "./JsonCodec.ts"
import { AnyError, ChildCancelled, ChildFailed, InvalidSignal } from "./PgflowsError.ts"
import * as Retention from "./Retention.ts"
import * as StoredText from "./StoredText.ts"

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
  /**
   * The version of this definition (0 when it has none). A run records the version it started on
   * and is only executed by a worker that registers a definition of that version.
   */
  readonly version: number
  readonly input: I
  readonly output: O
  readonly error: E
  readonly stepDefaults: StepDefaults
  /** A durable deadline: a run past it fails with `WorkflowTimeout`. */
  readonly timeout: Duration.Duration | undefined
  /** The queue its runs go to (`FlowQueue.defaultQueue` unless one was given). */
  readonly queue: FlowQueue.FlowQueue
  /** The concurrency key of a run, from its decoded input (see `FlowQueue`). */
  readonly concurrencyKey: ((input: I["Type"]) => string) | undefined
  /** How long this workflow's ended runs are kept, over `PgflowsConfig.retention` (see `Retention`). */
  readonly retention: Retention.Policy | undefined
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
  readonly version: number
  readonly input: Persisted
  readonly output: Persisted
  readonly error: Persisted
  readonly stepDefaults: StepDefaults
  readonly timeout: Duration.Duration | undefined
  readonly queue: FlowQueue.FlowQueue
  readonly concurrencyKey: ((input: any) => string) | undefined
  readonly retention: Retention.Policy | undefined
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
 * Defines a workflow. With `version`, the definition is that version of the workflow: a run
 * records the version it started on, and only a worker that registers a definition of that version
 * executes it, so the definitions of several versions can be registered side by side while the old
 * runs drain (see the README, "Changing workflows"). Without one it is version 0, the version of
 * every run recorded before versions existed.
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
  /** An integer from 0 (the default: no version) to 2147483647. */
  readonly version?: number | undefined
  readonly stepDefaults?: StepDefaults | undefined
  /**
   * A durable deadline, counted from the start: a run still going after it fails with
   * `WorkflowTimeout`, even while parked. Child workflows inherit what is left of it.
   */
  readonly timeout?: Duration.Input | undefined
  /**
   * The queue its runs go to, whose limits they share with the other workflows of the queue (see
   * `FlowQueue`); without one, the default queue.
   */
  readonly queue?: FlowQueue.FlowQueue | undefined
  /**
   * The run's concurrency key, computed from its decoded input when it starts, for the queue's
   * `keyConcurrency` (for example the tenant). It must return a string; when it throws or returns
   * anything else, that start fails with `InvalidConcurrencyKey` and nothing is written. Only for a
   * named queue.
   */
  readonly concurrencyKey?: ((input: I["Type"]) => string) | undefined
  /**
   * How long the runs of this workflow are kept once they ended, per state, over the global
   * `PgflowsConfig.retention` (see `Retention`): the workers that register this definition prune
   * them. Child runs go with their top-level run, under its workflow's policy.
   */
  readonly retention?: Retention.Input | undefined
  readonly run: (input: I["Type"]) => Effect.Effect<O["Type"], E["Type"], R>
}): Workflow<Name, I, O, E, Exclude<R, WorkflowContext>> => {
  if (name.length === 0) throw new globalThis.Error("a workflow name must not be empty")
  const problem = StoredText.nameProblem(name)
  if (problem !== undefined) {
    throw new globalThis.Error(`invalid workflow name ${JSON.stringify(name)}: it ${problem}`)
  }
  const version = options.version ?? 0
  const versionProblem = Versions.problem(version)
  if (versionProblem !== undefined) {
    throw new globalThis.Error(`invalid version ${String(version)} of workflow "${name}": it ${versionProblem}`)
  }
  const queue = options.queue ?? FlowQueue.defaultQueue
  if (options.concurrencyKey !== undefined && queue.name === FlowQueue.defaultName) {
    throw new globalThis.Error(`workflow "${name}" has a concurrencyKey but no queue: a key needs a named queue`)
  }
  const retention = options.retention === undefined ? undefined : Retention.decode(options.retention)
  if (retention !== undefined && Result.isFailure(retention)) {
    throw new globalThis.Error(`invalid retention of workflow "${name}": ${retention.failure}`)
  }
  return {
    [TypeId]: TypeId,
    name,
    version,
    input: options.input,
    output: options.output,
    error: options.error ?? (AnyError as unknown as E),
    stepDefaults: options.stepDefaults ?? {},
    timeout: options.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout),
    queue,
    concurrencyKey: options.concurrencyKey,
    retention: retention?.success,
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
 * The current time, recorded once: a replay returns the same `Date`.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const now: Effect.Effect<Date, never, WorkflowContext> = Effect.flatMap(
  Context,
  (ctx) =>
    ctx.execution.record(
      "pgflows.now",
      nextKey(ctx.position),
      Schema.Date,
      Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))
    )
)

/**
 * A random UUID (version 4), recorded once: a replay returns the same id.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const randomUUID: Effect.Effect<string, never, WorkflowContext> = Effect.flatMap(
  Context,
  (ctx) =>
    ctx.execution.record("pgflows.uuid", nextKey(ctx.position), Schema.String, Effect.sync(() => Crypto.randomUUID()))
)

/**
 * Whether this execution takes the new branch of a change: `true` for a run that reaches this point
 * for the first time (recorded in the journal, so a replay answers the same), `false` for a run that
 * passed this point before the change was deployed (it replays its old branch). So a fix can ship
 * without a new version:
 *
 * ```ts
 * if (yield* Workflow.patched("sms-instead-of-email")) yield* sendSms(order)
 * else yield* sendEmail(order)
 * ```
 *
 * A patch uses no key of its own: the operations around it keep their keys whichever way it goes.
 * Each place it is called decides for itself (in a loop, iterations that ran before the change
 * replay `false`, later ones answer `true`). Once no run that took the old branch is in flight,
 * replace the call by `Workflow.deprecatePatch(id)` and delete the old branch.
 *
 * **Gotchas**
 *
 * A run "passed this point" when its journal holds an operation after it: a patch placed where the
 * old code did no durable operation before the run parked cannot tell. Use `ReplayCheck` on the
 * recorded runs before deploying.
 *
 * @category versioning
 * @since 0.1.0
 */
export const patched = (id: string): Effect.Effect<boolean, never, WorkflowContext> =>
  Effect.flatMap(Context, (ctx) => {
    const problem = StoredText.nameProblem(id)
    if (problem !== undefined) {
      return Effect.die(new globalThis.Error(`invalid patch id ${JSON.stringify(id)}: it ${problem}`))
    }
    return ctx.execution.patched(id, ctx.position, false)
  })

/**
 * The second stage of a patch: the old branch is gone, and runs that reach this point take the new
 * one. Runs that took the new branch replay as before; a run that took the old branch (it passed
 * this point before the patch shipped) fails with a `NonDeterminismError` that names the patch,
 * instead of a divergence somewhere after it. Once no run of the workflow recorded before
 * `Workflow.patched(id)` shipped remains, the call can be deleted too: it uses no key.
 *
 * @category versioning
 * @since 0.1.0
 */
export const deprecatePatch = (id: string): Effect.Effect<void, never, WorkflowContext> =>
  Effect.flatMap(Context, (ctx) => {
    const problem = StoredText.nameProblem(id)
    if (problem !== undefined) {
      return Effect.die(new globalThis.Error(`invalid patch id ${JSON.stringify(id)}: it ${problem}`))
    }
    return Effect.asVoid(ctx.execution.patched(id, ctx.position, true))
  })

/**
 * What a wait for a signal with a timeout gives: the payload, or that the time ran out.
 *
 * @category models
 * @since 0.1.0
 */
export type SignalResult<A> =
  | { readonly _tag: "Received"; readonly value: A }
  | { readonly _tag: "TimedOut" }

/**
 * Waits for a signal sent to this run with `client.signal(runId, name, payload)`, parked (no worker
 * held). Signals are buffered: one sent before the wait is taken by it. Each wait takes exactly one
 * signal; a second wait with the same name takes the next one. The payload is decoded with `schema`
 * (a payload that does not decode fails the wait with `InvalidSignal`). With `timeout`, the result
 * says whether the signal came or the time ran out.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const waitForSignal: {
  <S extends Persisted>(
    name: string,
    schema: S,
    options: { readonly timeout: Duration.Input }
  ): Effect.Effect<SignalResult<S["Type"]>, InvalidSignal, WorkflowContext>
  <S extends Persisted>(
    name: string,
    schema: S,
    options?: { readonly timeout?: undefined }
  ): Effect.Effect<S["Type"], InvalidSignal, WorkflowContext>
} =
  ((name: string, schema: Persisted, options?: { readonly timeout?: Duration.Input | undefined }) =>
    Effect.flatMap(Context, (ctx) => {
      if (name.length === 0) return Effect.die(new globalThis.Error("a signal name must not be empty"))
      const timeout = options?.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout)
      return Effect.flatMap(ctx.execution.waitForSignal(name, timeout, nextKey(ctx.position)), (received) => {
        if (received === undefined) return Effect.succeed<SignalResult<unknown>>({ _tag: "TimedOut" })
        const decoded = codec(schema).decode(received.payload)
        if (Result.isFailure(decoded)) return Effect.fail(new InvalidSignal({ signal: name, issues: decoded.failure }))
        return Effect.succeed(timeout === undefined ? decoded.success : { _tag: "Received", value: decoded.success })
      })
    })) as any

/**
 * Publishes a value under `key` for readers of `client.getEvent(runId, key)` (progress, a result
 * for a person to review). Written durably with the journal; the latest value wins.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const setEvent = (key: string, value: unknown): Effect.Effect<void, never, WorkflowContext> =>
  Effect.flatMap(Context, (ctx) => ctx.execution.setEvent(key, value, nextKey(ctx.position)))

/**
 * A started child run: its id, and the wait for its result.
 *
 * @category models
 * @since 0.1.0
 */
export interface ChildHandle<W extends Any> {
  readonly id: string
  readonly result: Effect.Effect<Output<W>, Error<W> | ChildFailed | ChildCancelled, WorkflowContext>
}

/**
 * Starts a child workflow and returns a handle; `yield* handle.result` waits for it (parked). The
 * child's id is `<parent id>:<key>` unless given, so a replay finds the same child. Cancelling the
 * parent cancels its children; a child inherits what is left of its parent's deadline.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const startChild = <W extends Any>(
  workflow: W,
  input: Input<W>,
  options?: { readonly id?: string | undefined }
): Effect.Effect<ChildHandle<W>, never, WorkflowContext> =>
  Effect.flatMap(
    Context,
    (ctx) =>
      Effect.map(ctx.execution.startChild(workflow, input, options?.id, nextKey(ctx.position)), (id) => ({
        id,
        result: Effect.flatMap(Context, (inner) =>
          Effect.flatMap(
            inner.execution.awaitChild(workflow, id, nextKey(inner.position)),
            (outcome) => childResult(workflow, id, outcome)
          ))
      }))
  )

/**
 * Runs a child workflow and waits for its result (parked, no worker held). The child's typed
 * failure comes back as the same typed error.
 *
 * @category durable operations
 * @since 0.1.0
 */
export const child = <W extends Any>(
  workflow: W,
  input: Input<W>,
  options?: { readonly id?: string | undefined }
): Effect.Effect<Output<W>, Error<W> | ChildFailed | ChildCancelled, WorkflowContext> =>
  Effect.flatMap(startChild(workflow, input, options), (handle) => handle.result)

/**
 * Runs effects concurrently, each branch with its own stable position, so steps that finish in a
 * different order on replay still get their own results.
 *
 * @category concurrency
 * @since 0.1.0
 */
export const all = <const Effects extends ReadonlyArray<Effect.Effect<any, any, any>>>(
  effects: Effects,
  options?: { readonly concurrency?: number | "unbounded" | undefined }
): Effect.Effect<
  { -readonly [K in keyof Effects]: Effect.Success<Effects[K]> },
  Effect.Error<Effects[number]>,
  Effect.Services<Effects[number]> | WorkflowContext
> =>
  Effect.flatMap(Context, (ctx) => {
    const key = nextKey(ctx.position)
    return Effect.all(effects.map((effect, index) => inBranch(ctx, key, index, effect)), {
      concurrency: options?.concurrency ?? "unbounded"
    })
  }) as any

/**
 * `f` over `items` concurrently (at most `concurrency` at once), each item with its own stable
 * position.
 *
 * @category concurrency
 * @since 0.1.0
 */
export const forEach = <A, B, E, R>(
  items: Iterable<A>,
  f: (item: A, index: number) => Effect.Effect<B, E, R>,
  options?: { readonly concurrency?: number | "unbounded" | undefined }
): Effect.Effect<Array<B>, E, R | WorkflowContext> =>
  Effect.flatMap(Context, (ctx) => {
    const key = nextKey(ctx.position)
    return Effect.forEach(items, (item, index) => inBranch(ctx, key, index, f(item, index)), {
      concurrency: options?.concurrency ?? "unbounded"
    })
  })

/**
 * The first of `effects` to succeed; the others are interrupted. The winner is recorded, so a replay
 * runs only the winning branch and gets the same result.
 *
 * @category concurrency
 * @since 0.1.0
 */
export const race = <const Effects extends ReadonlyArray<Effect.Effect<any, any, any>>>(
  effects: Effects
): Effect.Effect<
  Effect.Success<Effects[number]>,
  Effect.Error<Effects[number]>,
  Effect.Services<Effects[number]> | WorkflowContext
> =>
  Effect.flatMap(Context, (ctx) => {
    const key = nextKey(ctx.position)
    const branches = effects.map((effect, index) => inBranch(ctx, key, index, effect))
    // The first time, the race runs and its winner is recorded; a replay runs the winner alone.
    let decided: { readonly index: number; readonly value: unknown } | undefined
    const decide = Effect.raceAll(branches.map((branch, index) => Effect.map(branch, (value) => ({ index, value }))))
    const winner = ctx.execution.record(
      "pgflows.race",
      `${key}.w`,
      Schema.Number,
      Effect.map(decide, (result) => {
        decided = result
        return result.index
      })
    )
    return Effect.flatMap(winner, (index) => decided !== undefined ? Effect.succeed(decided.value) : branches[index]!)
  }) as any

/**
 * Registers `undo` for what `effect` did, once `effect` succeeded. If the workflow then fails, the
 * undos of everything that completed run durably in reverse order (a saga), and the run ends failed
 * with both its error and how the compensation went.
 *
 * @category sagas
 * @since 0.1.0
 */
export const withCompensation: {
  <A, E2, R2>(
    undo: (value: A) => Effect.Effect<unknown, E2, R2>
  ): <E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R | R2 | WorkflowContext>
  <A, E, R, E2, R2>(
    effect: Effect.Effect<A, E, R>,
    undo: (value: A) => Effect.Effect<unknown, E2, R2>
  ): Effect.Effect<A, E, R | R2 | WorkflowContext>
} = dual(
  2,
  <A, E, R, E2, R2>(effect: Effect.Effect<A, E, R>, undo: (value: A) => Effect.Effect<unknown, E2, R2>) =>
    Effect.tap(effect, (value) => Effect.flatMap(Context, (ctx) => ctx.execution.compensate(undo(value))))
)

// internal

/** Runs `effect` as branch `index` of the combinator at `key`: its durable operations get keys `<key>.<index>/n`. */
const inBranch = <A, E, R>(
  ctx: { readonly execution: Context["Service"]["execution"] },
  key: string,
  index: number,
  effect: Effect.Effect<A, E, R>
) =>
  Effect.provideService(effect, Context, {
    execution: ctx.execution,
    position: { prefix: `${key}.${index}/`, counter: 0 }
  })

const childResult = <W extends Any>(
  workflow: W,
  id: string,
  outcome: ChildOutcome
): Effect.Effect<Output<W>, Error<W> | ChildFailed | ChildCancelled> => {
  if (outcome.status === "cancelled") return Effect.fail(new ChildCancelled({ runId: id, workflow: workflow.name }))
  if (outcome.status === "completed") {
    const decoded = codec(workflow.output).decode(outcome.output)
    return Result.isSuccess(decoded)
      ? Effect.succeed(decoded.success)
      : Effect.fail(new ChildFailed({ runId: id, workflow: workflow.name, error: { issues: decoded.failure } }))
  }
  const failure = decodeFailure(outcome.error, "workflow", workflow.error)
  if (failure._tag === "Own") return Effect.fail(failure.error as Error<W>)
  // An engine error keeps its stored JSON (with its message), as a child's failure always did.
  const stored = (outcome.error as { error?: unknown } | null)?.error ?? outcome.error
  return Effect.fail(new ChildFailed({ runId: id, workflow: workflow.name, error: stored }))
}

/**
 * The id of the running run.
 *
 * @category accessors
 * @since 0.1.0
 */
export const runId: Effect.Effect<string, never, WorkflowContext> = Effect.map(Context, (ctx) => ctx.execution.runId)
