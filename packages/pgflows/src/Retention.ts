/**
 * Retention: how long ended runs are kept, by state (completed, failed, cancelled), for every
 * workflow (`PgflowsConfig.retention`, `PGFLOWS_RETENTION*`) or for one (`Workflow.make(name, {
 * retention })`). A running worker prunes, in the background and in small batches, the runs of the
 * workflows it registers that ended longer ago than their policy says; `Pgflows.purge` does it once,
 * by hand (docs/ARCHITECTURE.md, "Retention").
 *
 * A state without a duration (or with `Duration.infinity`) is kept forever: that is the default.
 * A workflow's own policy overrides the global one state by state.
 *
 * @example
 * ```ts
 * // Completed runs for a day, failed and cancelled ones for 30 days.
 * const policy = Retention.make({ completed: "1 day", failed: "30 days", cancelled: "30 days" })
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Result from "effect/Result"

/**
 * How long runs that ended in each state are kept; `undefined` or an infinite duration: forever.
 *
 * @category models
 * @since 0.1.0
 */
export interface Policy {
  readonly completed?: Duration.Duration | undefined
  readonly failed?: Duration.Duration | undefined
  readonly cancelled?: Duration.Duration | undefined
}

/**
 * A policy as written: one duration for the three states, or one per state.
 *
 * @category models
 * @since 0.1.0
 */
export type Input = Duration.Input | {
  readonly completed?: Duration.Input | undefined
  readonly failed?: Duration.Input | undefined
  readonly cancelled?: Duration.Input | undefined
}

/**
 * The states a run ends in, which retention applies to.
 *
 * @category models
 * @since 0.1.0
 */
export type EndedStatus = "completed" | "failed" | "cancelled"

/**
 * @category models
 * @since 0.1.0
 */
export const endedStatuses: ReadonlyArray<EndedStatus> = ["completed", "failed", "cancelled"]

/**
 * Keeps every run forever.
 *
 * @category constructors
 * @since 0.1.0
 */
export const forever: Policy = {}

/**
 * Checks a policy as written: each duration longer than zero (or infinite); fails with what is wrong.
 *
 * @category constructors
 * @since 0.1.0
 */
export const decode = (input: Input): Result.Result<Policy, string> => {
  const one = (
    state: string,
    value: Duration.Input | undefined
  ): Result.Result<Duration.Duration | undefined, string> => {
    if (value === undefined) return Result.succeed(undefined)
    return Option.match(Duration.fromInput(value), {
      onNone: () => Result.fail(`${state}: ${JSON.stringify(value)} is not a duration`),
      onSome: (duration) =>
        Duration.toMillis(duration) > 0
          ? Result.succeed(duration)
          : Result.fail(`${state}: must be longer than zero, got ${Duration.format(duration)}`)
    })
  }
  const perState = typeof input === "object" && input !== null && !Duration.isDuration(input) &&
      !Array.isArray(input) && ("completed" in input || "failed" in input || "cancelled" in input ||
        Object.keys(input).length === 0)
    ? input as Exclude<Input, Duration.Input>
    : { completed: input as Duration.Input, failed: input as Duration.Input, cancelled: input as Duration.Input }
  return Result.gen(function*() {
    return {
      completed: yield* one("completed", perState.completed),
      failed: yield* one("failed", perState.failed),
      cancelled: yield* one("cancelled", perState.cancelled)
    }
  })
}

/**
 * A policy as written, checked; throws on a bad duration (for definitions, like `Workflow.make`).
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (input: Input): Policy => {
  const decoded = decode(input)
  if (Result.isFailure(decoded)) throw new Error(`invalid retention: ${decoded.failure}`)
  return decoded.success
}

/**
 * The policy of a workflow: its own where it sets a state, else the global one.
 *
 * @category combinators
 * @since 0.1.0
 */
export const resolve = (own: Policy | undefined, global: Policy): Policy => ({
  completed: own?.completed ?? global.completed,
  failed: own?.failed ?? global.failed,
  cancelled: own?.cancelled ?? global.cancelled
})

/**
 * How long runs that ended in `status` are kept, in milliseconds; `undefined`: forever.
 *
 * @category getters
 * @since 0.1.0
 */
export const keepMillis = (policy: Policy, status: EndedStatus): number | undefined => {
  const duration = policy[status]
  return duration === undefined || !Duration.isFinite(duration) ? undefined : Duration.toMillis(duration)
}

/**
 * Whether the policy deletes anything.
 *
 * @category predicates
 * @since 0.1.0
 */
export const prunes = (policy: Policy): boolean =>
  endedStatuses.some((status) => keepMillis(policy, status) !== undefined)
