/**
 * The registered plugins, compiled for the engine: each hook of each plugin in registration order,
 * isolated (a failure, a defect or a hang beyond the bound is logged and ignored), and each
 * middleware guarded so that what it wraps runs exactly once and keeps its result.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Plugin from "../Plugin.ts"

type Observer =
  | "beforeWorkflow"
  | "afterWorkflow"
  | "onWorkflowError"
  | "onWorkflowCancelled"
  | "beforeStep"
  | "afterStep"
  | "onStepError"

type EventOf<K extends Observer> = Parameters<NonNullable<Plugin.Hooks[K]>>[0]

/** What the engine calls; `undefined` in the engine when no plugin is registered (nothing to pay). */
export interface Plugins {
  readonly fire: <K extends Observer>(hook: K, event: EventOf<K>) => Effect.Effect<void>
  readonly aroundWorkflow: <A, E, R>(
    event: Plugin.WorkflowEvent,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  readonly aroundStep: <A, E, R>(event: Plugin.StepEvent, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export const make = (plugins: ReadonlyArray<Plugin.Plugin>, bound: Duration.Input): Plugins | undefined => {
  if (plugins.length === 0) return undefined
  const millis = Duration.toMillis(Duration.fromInputUnsafe(bound))
  const observers = new Map<Observer, ReadonlyArray<Plugin.Plugin>>()
  const hooks: ReadonlyArray<Observer> = [
    "beforeWorkflow",
    "afterWorkflow",
    "onWorkflowError",
    "onWorkflowCancelled",
    "beforeStep",
    "afterStep",
    "onStepError"
  ]
  for (const hook of hooks) observers.set(hook, plugins.filter((plugin) => plugin[hook] !== undefined))
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

  const wrap = <Event>(
    wrappers: ReadonlyArray<Plugin.Plugin>,
    hook: "aroundWorkflow" | "aroundStep"
  ) =>
  <A, E, R>(event: Event, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    wrappers.reduceRight(
      (inner, plugin) => guardAround(plugin, hook, millis, plugin[hook] as Plugin.Around<Event>, event, inner),
      effect
    )

  return {
    fire,
    aroundWorkflow: aroundWorkflow.length === 0 ? (_event, effect) => effect : wrap(aroundWorkflow, "aroundWorkflow"),
    aroundStep: aroundStep.length === 0 ? (_event, effect) => effect : wrap(aroundStep, "aroundStep")
  }
}

// internal

/** Calls a hook, turning a synchronous throw into a defect. */
const call = <A, E, R>(f: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    try {
      return f()
    } catch (defect) {
      return Effect.die(defect)
    }
  })

const misbehaved = (plugin: Plugin.Plugin, hook: string, what: string, cause?: Cause.Cause<unknown>) =>
  Effect.logWarning(
    `pgflows: plugin ${JSON.stringify(plugin.name)} ${hook} ${what}; ignored`,
    ...(cause === undefined ? [] : [Cause.pretty(cause)])
  ).pipe(Effect.annotateLogs({ "pgflows.plugin": plugin.name, "pgflows.hook": hook }))

const isolate = (
  plugin: Plugin.Plugin,
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
  plugin: Plugin.Plugin,
  hook: string,
  millis: number,
  around: Plugin.Around<Event>,
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
