/**
 * Plugins: hooks and middleware around workflow executions and step attempts.
 *
 * A plugin implements any subset of the hooks below. Each receives a typed event (run id, workflow,
 * step name, key, attempt, and the input, output or error); `aroundWorkflow` and `aroundStep` wrap
 * the execution itself (Effect in, Effect out), to provide services, annotate logs, time or trace.
 * Register plugins with `Pgflows.layer({ workflows, plugins })` or as a layer (`Plugin.layer`);
 * they run in registration order (the first `around` is the outermost).
 *
 * When hooks fire:
 *
 * - `beforeWorkflow` fires at the start of every execution of a run: the first, and each one that
 *   resumes it after a sleep, a signal, a parked retry, a crash or a deploy (`resumed` tells them
 *   apart). `afterWorkflow`, `onWorkflowError` and `onWorkflowCancelled` fire once, when the run's
 *   end is committed (a run that parks fires none of them).
 * - Step hooks fire for attempts that really run: a step whose result is replayed from the journal
 *   fires nothing. `beforeStep` fires before each attempt, then `afterStep` once the attempt
 *   succeeded and its checkpoint has committed (a step `afterStep` saw never runs again; the
 *   checkpoint of a step may share its commit with what follows it, so `afterStep` can come just
 *   after the next step's `beforeStep` in concurrent branches, never before its own commit), or
 *   `onStepError` after a failed attempt (`final` is `true` when no attempt follows it). `aroundWorkflow` wraps the workflow's
 *   body in each execution, not the compensations that run after a failure.
 *
 * Isolation: a hook that fails, dies or runs longer than the bound (`Pgflows.layer`'s
 * `pluginTimeout`, 5 seconds by default) is logged and abandoned; the run's outcome and the other
 * plugins are unaffected. A middleware cannot change an outcome either: the step or execution it
 * wraps runs exactly once, its result is the result, and a middleware that fails, never calls it or
 * hangs is logged and bypassed.
 *
 * @example
 * ```ts
 * const audit = Plugin.make("audit", {
 *   afterStep: (event) => Effect.logInfo(`${event.step} took ${event.durationMillis} ms`),
 *   onWorkflowError: (event) => Effect.logError(`run ${event.runId} failed`, event.error)
 * })
 * const Live = Pgflows.layerPg({ workflows: [order], plugins: [audit, LoggingPlugin.plugin] })
 * ```
 *
 * **Gotchas**
 *
 * - Hooks are observers: they run in the worker that executes the run, may run again when an
 *   execution is retried after a crash, and must not be used for effects that need exactly-once
 *   (use a step).
 * - A run cancelled while no worker executes it (queued or parked) fires no hook.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"

/**
 * @category models
 * @since 0.1.0
 */
export interface WorkflowEvent {
  readonly runId: string
  readonly workflow: string
  /** The run's input, decoded with the workflow's input Schema. */
  readonly input: unknown
  /** `false` for the first execution of a run, `true` for one that resumes it. */
  readonly resumed: boolean
}

/**
 * @category models
 * @since 0.1.0
 */
export interface WorkflowEndEvent extends WorkflowEvent {
  readonly output: unknown
  /** Milliseconds this execution took (not the run's whole life). */
  readonly durationMillis: number
}

/**
 * @category models
 * @since 0.1.0
 */
export interface WorkflowErrorEvent extends Omit<WorkflowEvent, "input"> {
  /** The input, or `undefined` when it could not be decoded (the error says why). */
  readonly input: unknown
  /**
   * The typed error: the workflow's own (decoded with its error Schema) or one of pgflows' engine
   * errors (`NonDeterminismError`, `DecodeError`, `WorkflowTimeout`, `StepDefect`, ...).
   */
  readonly error: unknown
  readonly durationMillis: number
}

/**
 * @category models
 * @since 0.1.0
 */
export interface WorkflowCancelledEvent extends WorkflowEvent {
  readonly durationMillis: number
}

/**
 * @category models
 * @since 0.1.0
 */
export interface StepEvent {
  readonly runId: string
  readonly workflow: string
  readonly step: string
  /** The step's key in the journal (its position in the workflow). */
  readonly key: string
  /** 1 for the first attempt; counts attempts across executions. */
  readonly attempt: number
  readonly input: unknown
}

/**
 * @category models
 * @since 0.1.0
 */
export interface StepEndEvent extends StepEvent {
  readonly output: unknown
  readonly durationMillis: number
}

/**
 * @category models
 * @since 0.1.0
 */
export interface StepErrorEvent extends StepEvent {
  /** The step's typed error, `StepTimeoutError`, or `StepDefect` when the attempt died. */
  readonly error: unknown
  readonly durationMillis: number
  /** `true` when no attempt follows (the schedule gave up, or the step died). */
  readonly final: boolean
}

/**
 * Middleware: returns `execution`, wrapped. It must run `execution` once and return its result.
 *
 * @category models
 * @since 0.1.0
 */
export type Around<Event> = <A, E, R>(event: Event, execution: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/**
 * The hooks a plugin may implement; all are optional.
 *
 * @category models
 * @since 0.1.0
 */
export interface Hooks {
  readonly beforeWorkflow?: ((event: WorkflowEvent) => Effect.Effect<void, unknown>) | undefined
  readonly afterWorkflow?: ((event: WorkflowEndEvent) => Effect.Effect<void, unknown>) | undefined
  readonly onWorkflowError?: ((event: WorkflowErrorEvent) => Effect.Effect<void, unknown>) | undefined
  readonly onWorkflowCancelled?: ((event: WorkflowCancelledEvent) => Effect.Effect<void, unknown>) | undefined
  readonly beforeStep?: ((event: StepEvent) => Effect.Effect<void, unknown>) | undefined
  readonly afterStep?: ((event: StepEndEvent) => Effect.Effect<void, unknown>) | undefined
  readonly onStepError?: ((event: StepErrorEvent) => Effect.Effect<void, unknown>) | undefined
  readonly aroundWorkflow?: Around<WorkflowEvent> | undefined
  readonly aroundStep?: Around<StepEvent> | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Plugin extends Hooks {
  /** Names the plugin in the logs when one of its hooks misbehaves. */
  readonly name: string
}

/**
 * @category constructors
 * @since 0.1.0
 */
export const make = (name: string, hooks: Hooks): Plugin => ({ ...hooks, name })

/**
 * The plugins added with `layer`, read by `Pgflows.layer` when it is built (after the `plugins`
 * of its options).
 *
 * @category services
 * @since 0.1.0
 */
export const Plugins = Context.Reference<ReadonlyArray<Plugin>>("pgflows/Plugins", { defaultValue: () => [] })

/**
 * Adds plugins for the `Pgflows` layers built on it; a `layer` provided to another appends to its
 * plugins.
 *
 * @example
 * ```ts
 * const Live = Pgflows.layerPg({ workflows }).pipe(Layer.provide(Plugin.layer(MetricsPlugin.plugin)))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (...plugins: ReadonlyArray<Plugin>) =>
  Layer.effect(
    Plugins,
    Effect.gen(function*() {
      return [...(yield* Plugins), ...plugins]
    })
  )

/**
 * The hooks that observe (all but the middlewares).
 *
 * @category models
 * @since 0.1.0
 */
export type Observer =
  | "beforeWorkflow"
  | "afterWorkflow"
  | "onWorkflowError"
  | "onWorkflowCancelled"
  | "beforeStep"
  | "afterStep"
  | "onStepError"

/**
 * Plugins compiled for an executor of steps or workflows (the engine, `StepWorker`): `fire` calls
 * a hook of every plugin in order, isolated; `aroundWorkflow` and `aroundStep` wrap an execution
 * in every middleware, guarded.
 *
 * @category models
 * @since 0.1.0
 */
export interface Runner {
  readonly fire: <K extends Observer>(hook: K, event: EventOf<K>) => Effect.Effect<void>
  readonly aroundWorkflow: <A, E, R>(event: WorkflowEvent, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly aroundStep: <A, E, R>(event: StepEvent, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/**
 * Compiles plugins for an executor; `undefined` when there are none, so that executors pay nothing
 * for hooks nobody registered. `timeout` bounds each hook (default 5 seconds).
 *
 * @category constructors
 * @since 0.1.0
 */
export const runner = (plugins: ReadonlyArray<Plugin>, timeout?: Duration.Input): Runner | undefined => {
  if (plugins.length === 0) return undefined
  const millis = Duration.toMillis(Duration.fromInputUnsafe(timeout ?? "5 seconds"))
  const observers = new Map<Observer, ReadonlyArray<Plugin>>()
  for (const hook of observerHooks) observers.set(hook, plugins.filter((plugin) => plugin[hook] !== undefined))
  const aroundWorkflow = plugins.filter((plugin) => plugin.aroundWorkflow !== undefined)
  const aroundStep = plugins.filter((plugin) => plugin.aroundStep !== undefined)

  const fire = <K extends Observer>(hook: K, event: EventOf<K>): Effect.Effect<void> => {
    const listeners = observers.get(hook)!
    if (listeners.length === 0) return Effect.void
    return Effect.forEach(
      listeners,
      (plugin) =>
        isolate(
          plugin,
          hook,
          millis,
          call(() => (plugin[hook] as (event: EventOf<K>) => Effect.Effect<void, unknown>)(event))
        ),
      { discard: true }
    )
  }

  const wrap =
    <Event>(wrappers: ReadonlyArray<Plugin>, hook: "aroundWorkflow" | "aroundStep") =>
    <A, E, R>(event: Event, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      wrappers.reduceRight(
        (inner, plugin) => guardAround(plugin, hook, millis, plugin[hook] as Around<Event>, event, inner),
        effect
      )

  return {
    fire,
    aroundWorkflow: aroundWorkflow.length === 0 ? (_event, effect) => effect : wrap(aroundWorkflow, "aroundWorkflow"),
    aroundStep: aroundStep.length === 0 ? (_event, effect) => effect : wrap(aroundStep, "aroundStep")
  }
}

// internal

type EventOf<K extends Observer> = Parameters<NonNullable<Hooks[K]>>[0]

const observerHooks: ReadonlyArray<Observer> = [
  "beforeWorkflow",
  "afterWorkflow",
  "onWorkflowError",
  "onWorkflowCancelled",
  "beforeStep",
  "afterStep",
  "onStepError"
]

/** Calls a hook, turning a synchronous throw into a defect. */
const call = <A, E, R>(f: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    try {
      return f()
    } catch (defect) {
      return Effect.die(defect)
    }
  })

const misbehaved = (plugin: Plugin, hook: string, what: string, cause?: Cause.Cause<unknown>) =>
  Effect.logWarning(
    `pgflows: plugin ${JSON.stringify(plugin.name)} ${hook} ${what}; ignored`,
    ...(cause === undefined ? [] : [Cause.pretty(cause)])
  ).pipe(Effect.annotateLogs({ "pgflows.plugin": plugin.name, "pgflows.hook": hook }))

const isolate = (
  plugin: Plugin,
  hook: string,
  millis: number,
  effect: Effect.Effect<void, unknown>
): Effect.Effect<void> =>
  effect.pipe(
    Effect.timeoutOption(Duration.millis(millis)),
    Effect.matchCauseEffect({
      onSuccess: (done) =>
        done._tag === "None" ? misbehaved(plugin, hook, `ran longer than ${millis} ms`) : Effect.void,
      onFailure: (cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : misbehaved(plugin, hook, "failed", cause)
    })
  )

type Race<A, E> =
  | { readonly _tag: "Done"; readonly exit: Exit.Exit<A, E> }
  | { readonly _tag: "Hung"; readonly before: boolean }

/**
 * Runs `inner` through one plugin's middleware. `inner` runs at most once (a second call gets the
 * first result); its exit is the result whatever the middleware returns. A middleware that fails
 * or returns before calling `inner`, or does not call it within the bound, is bypassed (`inner` runs
 * alone); one that fails after it, or does not return within the bound after it ended, is ignored.
 */
const guardAround = <Event, A, E, R>(
  plugin: Plugin,
  hook: string,
  millis: number,
  around: Around<Event>,
  event: Event,
  inner: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const ended = yield* Deferred.make<Exit.Exit<A, E>>()
    let result: Exit.Exit<A, E> | undefined = undefined
    let calls = 0
    const once: Effect.Effect<A, E, R> = Effect.suspend(() => {
      if (calls++ > 0) return Effect.flatten(Deferred.await(ended))
      Deferred.doneUnsafe(started, Effect.void)
      return Effect.onExit(inner, (exit) =>
        Effect.suspend(() => {
          result = exit
          return Deferred.succeed(ended, exit)
        }))
    })
    const watchdog: Effect.Effect<Race<A, E>> = Effect.gen(function*() {
      const inTime = yield* Effect.timeoutOption(Deferred.await(started), Duration.millis(millis))
      if (inTime._tag === "None") return { _tag: "Hung", before: true } as const
      yield* Deferred.await(ended)
      yield* Effect.sleep(Duration.millis(millis))
      return { _tag: "Hung", before: false } as const
    })
    const wrapped = Effect.map(Effect.exit(call(() => around(event, once))), (exit): Race<A, E> => ({
      _tag: "Done",
      exit
    }))
    const race = yield* Effect.raceFirst(wrapped, watchdog)
    const ran = result as Exit.Exit<A, E> | undefined
    if (ran !== undefined) {
      if (race._tag === "Hung") yield* misbehaved(plugin, hook, `did not return within ${millis} ms of its execution`)
      else if (race.exit._tag === "Failure" && ran._tag === "Success") {
        yield* misbehaved(plugin, hook, "failed after its execution", race.exit.cause)
      }
      return yield* ran
    }
    if (race._tag === "Hung") {
      yield* misbehaved(plugin, hook, `did not run its execution within ${millis} ms`)
    } else if (race.exit._tag === "Failure") {
      yield* misbehaved(plugin, hook, "failed before running its execution", race.exit.cause)
    } else {
      yield* misbehaved(plugin, hook, "returned without running its execution")
    }
    return yield* inner
  })
