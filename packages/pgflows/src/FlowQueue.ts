/**
 * Named queues of workflow runs, with flow control that holds across every worker. A workflow is
 * assigned to a queue (`Workflow.make(name, { queue })`); without one it is in the default queue,
 * which has no limits and is claimed exactly as before queues existed. A worker serves the queues
 * of the workflows it registers, or the ones it is given (`runWorker({ queues })`).
 *
 * A queue may limit:
 *
 * - `concurrency`: runs of the queue executing at once, across all workers;
 * - `keyConcurrency`: runs executing at once per concurrency key, the key computed by each of the
 *   queue's workflows from its decoded input (`Workflow.make(name, { concurrencyKey })`), for
 *   example per tenant;
 * - `rateLimit`: runs started (first executions; a resume is not a start) per period, for the
 *   queue or (`perKey`) per concurrency key. A run held back waits, due, and is looked at again by
 *   the next claim (at the latest after the poll interval).
 *
 * The limits are enforced by the database: claims of a limited queue are serialized by an
 * advisory lock and count the runs of the queue that hold a live lease, so several worker
 * processes together never exceed them. A run that parks (a durable sleep, a wait for a signal or
 * a child) holds no lease, so it gives its slot back, and takes one again when it is claimed to
 * resume. Runs of a named queue are claimed highest `priority` first (a start option), and in the
 * order they became due within a priority.
 *
 * **Gotchas**: every worker must define a queue with the same limits (as with workflow
 * definitions, the code is the configuration); the claim of a worker applies its own. Runs of a
 * named queue do not take the local fast path of `start` (they go through the queue, so the limit
 * and the priorities apply to them too).
 *
 * @example
 * ```ts
 * const emails = FlowQueue.make("emails", { concurrency: 5, keyConcurrency: 2 })
 * const sendEmail = Workflow.make("send_email", {
 *   input: Email,
 *   output: Schema.Void,
 *   queue: emails,
 *   concurrencyKey: (email) => email.tenant,
 *   run: (email) => deliver(email)
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as StoredText from "./StoredText.ts"

/**
 * @category type ids
 * @since 0.1.0
 */
export const TypeId = "~pgflows/FlowQueue" as const

/**
 * A named queue and its limits.
 *
 * @category models
 * @since 0.1.0
 */
export interface FlowQueue {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  /** Runs of the queue executing at once across all workers; `undefined`: no limit. */
  readonly concurrency: number | undefined
  /** Runs executing at once per concurrency key; `undefined`: no limit. */
  readonly keyConcurrency: number | undefined
  /** Runs started per period, for the queue or per key; `undefined`: no limit. */
  readonly rateLimit: RateLimit | undefined
}

/**
 * At most `limit` runs start in any `period` (a sliding window), for the queue or, with `perKey`,
 * per concurrency key.
 *
 * @category models
 * @since 0.1.0
 */
export interface RateLimit {
  readonly limit: number
  readonly period: Duration.Duration
  readonly perKey: boolean
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** At most this many runs of the queue execute at once, across all workers (an integer, 1 or more). */
  readonly concurrency?: number | undefined
  /** At most this many runs with the same concurrency key execute at once (an integer, 1 or more). */
  readonly keyConcurrency?: number | undefined
  /** At most `limit` runs start per `period` (at least 1 millisecond), or per key with `perKey`. */
  readonly rateLimit?: {
    readonly limit: number
    readonly period: Duration.Input
    readonly perKey?: boolean | undefined
  } | undefined
}

/**
 * The name of the default queue: the queue of every workflow that names none.
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultName = "default"

/**
 * The default queue: no limits, claimed in due order (priorities do not apply to it).
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultQueue: FlowQueue = {
  [TypeId]: TypeId,
  name: defaultName,
  concurrency: undefined,
  keyConcurrency: undefined,
  rateLimit: undefined
}

/**
 * Defines a named queue. Throws when the name is empty, `default`, or not storable as a name, or
 * a limit is not a positive integer.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (name: string, options: Options = {}): FlowQueue => {
  const problem = nameProblem(name)
  if (problem !== undefined) throw new globalThis.Error(`invalid queue name ${JSON.stringify(name)}: it ${problem}`)
  for (const [option, value] of [["concurrency", options.concurrency], ["keyConcurrency", options.keyConcurrency]]) {
    if (
      value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= maxLimit)
    ) {
      throw new globalThis.Error(
        `invalid ${String(option)} ${String(value)} of queue "${name}": it must be an integer from 1 to ${maxLimit}`
      )
    }
  }
  const rate = options.rateLimit
  if (rate !== undefined && !(Number.isSafeInteger(rate.limit) && rate.limit >= 1 && rate.limit <= maxLimit)) {
    throw new globalThis.Error(
      `invalid rateLimit.limit ${String(rate.limit)} of queue "${name}": it must be an integer from 1 to ${maxLimit}`
    )
  }
  const period = rate === undefined ? undefined : Duration.fromInputUnsafe(rate.period)
  if (period !== undefined && !(Duration.toMillis(period) >= 1 && Number.isFinite(Duration.toMillis(period)))) {
    throw new globalThis.Error(`invalid rateLimit.period of queue "${name}": it must be at least 1 millisecond`)
  }
  return {
    [TypeId]: TypeId,
    name,
    concurrency: options.concurrency,
    keyConcurrency: options.keyConcurrency,
    rateLimit: rate === undefined || period === undefined
      ? undefined
      : { limit: rate.limit, period, perKey: rate.perKey === true }
  }
}

/**
 * Whether a queue limits its runs (globally or per key): its claims are counted and serialized.
 *
 * @category predicates
 * @since 0.1.0
 */
export const isLimited = (queue: FlowQueue): boolean =>
  queue.concurrency !== undefined || queue.keyConcurrency !== undefined || queue.rateLimit !== undefined

/**
 * Why a text is not a queue name, or `undefined`.
 *
 * @category validation
 * @since 0.1.0
 */
export const nameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "is empty"
  if (name === defaultName) return `is the default queue's name (leave \`queue\` out for the default queue)`
  if (name.length > 200) return "is longer than 200 characters"
  return StoredText.nameProblem(name)
}

/**
 * Why a priority is not one, or `undefined`: an integer of PostgreSQL's `integer` range.
 *
 * @category validation
 * @since 0.1.0
 */
export const priorityProblem = (priority: number): string | undefined =>
  Number.isInteger(priority) && priority >= -2147483648 && priority <= 2147483647
    ? undefined
    : "must be an integer from -2147483648 to 2147483647"

// internal

/** The largest limit: PostgreSQL's `integer`. */
const maxLimit = 2147483647
