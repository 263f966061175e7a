/**
 * Runs as the client sees them: ids, states, and what `status` and `list` return.
 *
 * Lifecycle: `pending -> running -> (suspended -> running)* -> completed | failed | cancelled`.
 *
 * @since 0.1.0
 */
import type * as Option from "effect/Option"

/**
 * @category models
 * @since 0.1.0
 */
export type Status = "pending" | "running" | "suspended" | "completed" | "failed" | "cancelled"

/**
 * @category models
 * @since 0.1.0
 */
export const statuses: ReadonlyArray<Status> = ["pending", "running", "suspended", "completed", "failed", "cancelled"]

/**
 * Whether a run in this state will never change again.
 *
 * @category predicates
 * @since 0.1.0
 */
export const isTerminal = (status: Status): status is "completed" | "failed" | "cancelled" =>
  status === "completed" || status === "failed" || status === "cancelled"

declare const WorkflowOf: unique symbol

/**
 * A run's id. `start` returns it tagged with the workflow's type, so `status` and `result` know the
 * output and error types; any string id is accepted too.
 *
 * @category models
 * @since 0.1.0
 */
export type RunId<W = unknown> = string & { readonly [WorkflowOf]?: W }

/**
 * The state of one journal entry.
 *
 * - `running`: an attempt has been going for a while (recorded so a crash shows in `attempts`);
 * - `retrying`: the last attempt failed and the run is parked until the next one;
 * - `waiting`: a durable sleep or wait that has not ended;
 * - `completed` / `failed`: final, replayed as they are.
 *
 * @category models
 * @since 0.1.0
 */
export type StepStatus = "running" | "retrying" | "waiting" | "completed" | "failed"

/**
 * A journal entry as `status` shows it. Outputs and errors are their stored JSON.
 *
 * @category models
 * @since 0.1.0
 */
export interface StepInfo {
  readonly key: string
  readonly name: string
  readonly status: StepStatus
  readonly attempts: number
  readonly output: unknown
  readonly error: unknown
  /** Whether a transaction step wrote it, in the transaction of its effect (see `Step.transaction`). */
  readonly transactional: boolean
  readonly startedAt: Date | undefined
  readonly completedAt: Date | undefined
  readonly wakeAt: Date | undefined
}

/**
 * What `status` returns. `output` and `error` are decoded with the workflow's Schemas when this
 * process registers the workflow; `error` is the workflow's typed error or an `EngineError`.
 *
 * @category models
 * @since 0.1.0
 */
export interface RunInfo<A = unknown, E = unknown> {
  readonly id: string
  readonly workflow: string
  /** The version of the workflow the run started on (0: a definition without one). */
  readonly version: number
  readonly status: Status
  readonly input: unknown
  readonly output: Option.Option<A>
  readonly error: Option.Option<E>
  /** How many times the run was claimed by a worker. */
  readonly executions: number
  /** How many of those claims took over a lost lease. */
  readonly recoveries: number
  readonly parentId: string | undefined
  /** For a fork: the run it was forked from, and the journal key it restarted at. */
  readonly forkedFrom: { readonly runId: string; readonly key: string } | undefined
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly startedAt: Date | undefined
  readonly completedAt: Date | undefined
  readonly wakeAt: Date | undefined
  /**
   * Set while the run is due but cannot start: what it waits for (for example, no running worker
   * registers its workflow, during a rolling deploy).
   */
  readonly waitingFor?: string | undefined
  readonly steps: ReadonlyArray<StepInfo>
}

/**
 * A row of `list`: a run without its steps, input and output.
 *
 * @category models
 * @since 0.1.0
 */
export interface Summary {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: Status
  readonly executions: number
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly completedAt: Date | undefined
}

/**
 * One page of `list`, newest first; pass `nextCursor` back for the next page.
 *
 * @category models
 * @since 0.1.0
 */
export interface Page {
  readonly runs: ReadonlyArray<Summary>
  readonly nextCursor: string | undefined
}

/**
 * A completed step of the original run that a fork executes again.
 *
 * @category models
 * @since 0.1.0
 */
export interface RerunStep {
  readonly key: string
  readonly name: string
  /** A transaction step: its effect was committed with its entry, and commits again in the fork. */
  readonly transactional: boolean
}

/**
 * What a fork does: it replays the original's journal entries at `kept` (nothing of them runs
 * again) and executes the rest from `fromKey` on. `rerun` lists the original's completed steps that
 * execute again, in execution order; `repeatedSideEffects` those of them that are not transaction
 * steps, whose side effects happen a second time unless they are idempotent.
 *
 * @category models
 * @since 0.1.0
 */
export interface ForkPlan {
  /** The original run. */
  readonly runId: string
  readonly workflow: string
  /** The version the fork runs on. */
  readonly version: number
  readonly fromKey: string
  readonly kept: ReadonlyArray<string>
  readonly rerun: ReadonlyArray<RerunStep>
  readonly repeatedSideEffects: ReadonlyArray<RerunStep>
}

/**
 * A fork that was started (or found, when its id was given again): its id, and its plan.
 *
 * @category models
 * @since 0.1.0
 */
export interface Forked extends ForkPlan {
  readonly id: RunId
}

/**
 * What a bulk operation did (or, in a dry run, would do). `matched` counts every run the filter
 * matches, `selected` the ids acted on: the oldest, at most the filter's limit. `done` lists the
 * runs changed; `skipped` those that could not be (they changed state meanwhile, or have no such
 * fork point), with why.
 *
 * @category models
 * @since 0.1.0
 */
export interface BulkResult {
  readonly operation: "cancel" | "retry" | "fork"
  readonly dryRun: boolean
  readonly matched: number
  readonly selected: ReadonlyArray<string>
  readonly done: ReadonlyArray<string>
  readonly skipped: ReadonlyArray<{ readonly runId: string; readonly reason: string }>
}

/**
 * What a bulk fork did: also the plan (dry run) or the fork of each run.
 *
 * @category models
 * @since 0.1.0
 */
export interface BulkForkResult extends BulkResult {
  readonly forks: ReadonlyArray<ForkPlan | Forked>
}

/**
 * A number of runs: counted (`exact`), or estimated from the database's statistics where counting
 * would read more than a bounded number of rows (see `Pgflows.counts`).
 *
 * @category models
 * @since 0.1.0
 */
export interface Count {
  readonly count: number
  readonly exact: boolean
}

/**
 * How many runs are in each state.
 *
 * @category models
 * @since 0.1.0
 */
export interface StatusCounts {
  readonly pending: Count
  readonly running: Count
  readonly suspended: Count
  readonly completed: Count
  readonly failed: Count
  readonly cancelled: Count
}

/**
 * How many runs of one workflow (all its versions) are in each state.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkflowCounts extends StatusCounts {
  readonly workflow: string
}

/**
 * What `counts` returns: each workflow's counts, by name, and their sums (`exact` when every count
 * summed is).
 *
 * @category models
 * @since 0.1.0
 */
export interface RunCounts {
  readonly workflows: ReadonlyArray<WorkflowCounts>
  readonly total: StatusCounts
}

/**
 * A failed run as `deadLetters` lists it. `error` is decoded like `status`'s: the workflow's typed
 * error or an `EngineError` when this process registers the workflow, else the stored JSON;
 * `undefined` when it is larger than the client can read (`errorTooLarge` gives its size).
 *
 * @category models
 * @since 0.1.0
 */
export interface DeadLetter {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly executions: number
  readonly error: unknown
  readonly errorTooLarge?: number | undefined
  readonly createdAt: Date
  readonly failedAt: Date
}

/**
 * One page of `deadLetters`, newest failure first; pass `nextCursor` back for the next page.
 *
 * @category models
 * @since 0.1.0
 */
export interface DeadLetterPage {
  readonly deadLetters: ReadonlyArray<DeadLetter>
  readonly nextCursor: string | undefined
}
