/**
 * Runs one call of a step outside a workflow, as push mode needs it: the step's attempts as its
 * retry `Schedule` says, each bounded by its `timeout`, with the plugins' step hooks around each
 * attempt, and the outcome as JSON (the output encoded with the step's output Schema, or the error
 * encoded with its error Schema). `StepWorker` (worker binding) and `@pgflows/server`'s step
 * endpoint (HTTP binding) both run steps through it, so a step behaves the same whichever way
 * pg_durable calls it.
 *
 * **Gotchas**
 *
 * - The input must already be decoded with the step's input Schema (`JsonCodec.codec(step.input)`):
 *   what to do with an input that does not decode is the caller's business (the worker records a
 *   `DecodeError`, the endpoint answers 422).
 * - A step without a retry schedule runs once. A schedule that never stops keeps retrying: bound it
 *   (`Schedule.upTo({ times })`), or give the call a `deadline`.
 * - `defects: "hide"` (the HTTP endpoint's) keeps what the step did not choose to expose out of the
 *   outcome: a defect, or an error its error Schema does not describe, becomes a generic message,
 *   and the full cause goes to the log instead.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import { codec } from "pgflows/JsonCodec"
import { StepDefect, StepTimeoutError } from "pgflows/PgflowsError"
import * as Plugin from "pgflows/Plugin"
import type * as Step from "pgflows/Step"

/**
 * The error of a failed call, as JSON: the step's typed error encoded with its error Schema (its
 * fields, `_tag` included) plus a `message`, or one of `StepTimeoutError`, `StepDefect`,
 * `EncodeError`, `DeadlineExceeded`.
 *
 * @category models
 * @since 0.1.0
 */
export interface StepErrorJson {
  readonly message: string
  readonly [field: string]: unknown
}

/**
 * How a call ended, with the number of attempts it took.
 *
 * @category models
 * @since 0.1.0
 */
export type Outcome =
  | { readonly _tag: "Completed"; readonly output: unknown; readonly attempts: number }
  | { readonly _tag: "Failed"; readonly error: StepErrorJson; readonly attempts: number }

/**
 * Where a call comes from, for the plugins' events: the pg_durable instance id (`runId`) and the
 * call's key.
 *
 * @category models
 * @since 0.1.0
 */
export interface Where {
  readonly runId: string
  readonly key: string
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Plugins whose step hooks see each attempt; then those added with `Plugin.layer`. */
  readonly plugins?: ReadonlyArray<Plugin.Plugin> | undefined
  /** How long a plugin's hook may run before it is abandoned and logged (default 5 seconds). */
  readonly pluginTimeout?: Duration.Input | undefined
  /**
   * `"expose"` (default) puts a defect's cause and the message of an error outside the step's error
   * Schema into the outcome; `"hide"` logs them and puts a generic message there.
   */
  readonly defects?: "expose" | "hide" | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface StepExecutor {
  /**
   * Runs the call; never fails (a failure is an outcome), but is interrupted with its caller.
   * `deadline` bounds all attempts together: when it passes, the attempt in flight is interrupted
   * and the call fails with `DeadlineExceeded`.
   */
  readonly execute: (
    step: Step.Any,
    input: unknown,
    where: Where,
    options?: { readonly deadline?: Duration.Input | undefined }
  ) => Effect.Effect<Outcome>
}

/**
 * Builds an executor in the current context: the steps run with the services found there (the
 * layer that builds it must require the steps' services).
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (options?: Options): Effect.Effect<StepExecutor> =>
  Effect.gen(function*() {
    const services = yield* Effect.context<never>()
    const plugins = Plugin.runner([...(options?.plugins ?? []), ...(yield* Plugin.Plugins)], options?.pluginTimeout)
    const hide = options?.defects === "hide"

    const attempts = (
      step: Step.Any,
      input: unknown,
      where: Where,
      counter: { count: number }
    ): Effect.Effect<unknown, unknown, any> =>
      Effect.gen(function*() {
        const once = step.timeout === undefined
          ? step.run(input)
          : Effect.timeoutOrElse(step.run(input), {
            duration: step.timeout,
            orElse: () =>
              Effect.fail(new StepTimeoutError({ step: step.name, timeoutMillis: Duration.toMillis(step.timeout!) }))
          })
        const decide = step.retry === undefined
          ? undefined
          : yield* Schedule.toStep(step.retry as Schedule.Schedule<unknown, unknown>)
        for (let attempt = 1;; attempt++) {
          counter.count = attempt
          const event: Plugin.StepEvent = { ...where, workflow: "pg_durable", step: step.name, attempt, input }
          const startedAt = yield* Clock.currentTimeMillis
          if (plugins !== undefined) yield* plugins.fire("beforeStep", event)
          const exit = yield* Effect.exit(plugins === undefined ? once : plugins.aroundStep(event, once))
          const durationMillis = (yield* Clock.currentTimeMillis) - startedAt
          if (Exit.isSuccess(exit)) {
            if (plugins !== undefined) {
              yield* plugins.fire("afterStep", { ...event, output: exit.value, durationMillis })
            }
            return exit.value
          }
          if (Cause.hasInterruptsOnly(exit.cause)) return yield* exit
          const failure = Cause.findErrorOption(exit.cause)
          const decision = Option.isNone(failure) || decide === undefined
            ? undefined
            : yield* Effect.exit(decide(yield* Clock.currentTimeMillis, failure.value))
          if (plugins !== undefined) {
            yield* plugins.fire("onStepError", {
              ...event,
              error: Option.isSome(failure)
                ? failure.value
                : new StepDefect({ step: step.name, key: where.key, defect: Cause.pretty(exit.cause) }),
              durationMillis,
              final: decision === undefined || Exit.isFailure(decision)
            })
          }
          if (decision === undefined || Exit.isFailure(decision)) return yield* exit
          yield* Effect.sleep(decision.value[1])
        }
      })

    const defect = (step: Step.Any, where: Where, cause: Cause.Cause<unknown>) =>
      hide
        ? Effect.as(
          Effect.logError(`pgflows: step "${step.name}" (${where.runId} ${where.key}) died`, cause),
          { _tag: "StepDefect", step: step.name, message: `step "${step.name}" failed unexpectedly (see the log)` }
        )
        : Effect.succeed({
          _tag: "StepDefect",
          step: step.name,
          message: `step "${step.name}" died: ${Cause.pretty(cause)}`
        })

    const execute: StepExecutor["execute"] = (step, input, where, executeOptions) =>
      Effect.suspend(() => {
        const counter = { count: 0 }
        const retried = Effect.provideContext(attempts(step, input, where, counter), services as Context.Context<any>)
        const bounded = executeOptions?.deadline === undefined
          ? retried
          : Effect.timeoutOrElse(retried, {
            duration: executeOptions.deadline,
            orElse: () => {
              const millis = Duration.toMillis(Duration.fromInputUnsafe(executeOptions.deadline!))
              return Effect.fail(
                new DeadlineExceeded({ step: step.name, deadlineMillis: millis })
              )
            }
          })
        return Effect.exit(bounded).pipe(
          Effect.flatMap((exit): Effect.Effect<Outcome> => {
            const failed = (error: StepErrorJson): Outcome => ({ _tag: "Failed", error, attempts: counter.count })
            if (Exit.isSuccess(exit)) {
              const encoded = codec(step.output).encode(exit.value)
              return Effect.succeed(
                Result.isSuccess(encoded)
                  ? { _tag: "Completed", output: encoded.success ?? null, attempts: counter.count }
                  : failed({
                    _tag: "EncodeError",
                    step: step.name,
                    message: `the output of step "${step.name}" does not match its Schema: ${
                      encoded.failure.map((issue) =>
                        issue.path === "" ? issue.message : `${issue.message} at ${issue.path}`
                      ).join("; ")
                    }`
                  })
              )
            }
            if (Cause.hasInterruptsOnly(exit.cause)) return Effect.failCause(exit.cause as Cause.Cause<never>)
            const failure = Cause.findErrorOption(exit.cause)
            if (Option.isNone(failure)) return Effect.map(defect(step, where, exit.cause), failed)
            if (failure.value instanceof DeadlineExceeded) {
              return Effect.succeed(failed({
                _tag: "DeadlineExceeded",
                step: step.name,
                deadlineMillis: failure.value.deadlineMillis,
                message: failure.value.message
              }))
            }
            const encoded = encodeError(step, failure.value)
            if (encoded !== undefined || !hide) {
              return Effect.succeed(failed(encoded ?? unencoded(step, failure.value)))
            }
            return Effect.map(defect(step, where, exit.cause), failed)
          })
        )
      })

    return { execute }
  })

// internal

class DeadlineExceeded {
  readonly step: string
  readonly deadlineMillis: number
  constructor(fields: { readonly step: string; readonly deadlineMillis: number }) {
    this.step = fields.step
    this.deadlineMillis = fields.deadlineMillis
  }
  get message() {
    return `step "${this.step}" did not finish within its deadline of ${this.deadlineMillis} ms`
  }
}

/** The typed error encoded with the step's error Schema, with a message; undefined when it does not encode. */
const encodeError = (step: Step.Any, error: unknown): StepErrorJson | undefined => {
  if (error instanceof StepTimeoutError) {
    return { _tag: error._tag, step: error.step, timeoutMillis: error.timeoutMillis, message: error.message }
  }
  const encoded = codec(step.error).encode(error)
  if (Result.isFailure(encoded)) return undefined
  const fields = encoded.success
  const message = (error as { message?: unknown } | undefined)?.message
  const text = typeof message === "string" && message !== "" ? message : describe(error, fields)
  if (typeof fields === "object" && fields !== null && !Array.isArray(fields)) return { ...fields, message: text }
  return { error: fields, message: text }
}

/** An error outside the step's error Schema, as the worker binding has always stored it. */
const unencoded = (_step: Step.Any, error: unknown): StepErrorJson => {
  const message = (error as { message?: unknown } | undefined)?.message
  return { message: typeof message === "string" && message !== "" ? message : describe(error, undefined) }
}

/** A message for an error that has none: its tag and its encoded fields. */
const describe = (error: unknown, fields: unknown): string => {
  const tag = (error as { _tag?: unknown } | undefined)?._tag
  const rest = typeof fields === "object" && fields !== null && !Array.isArray(fields)
    ? Object.fromEntries(Object.entries(fields).filter(([key]) => key !== "_tag"))
    : fields
  const json = rest === undefined ? "" : JSON.stringify(rest)
  return typeof tag === "string" ? `${tag}${json === "" || json === "{}" ? "" : ` ${json}`}` : json || String(error)
}
