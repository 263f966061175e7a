/**
 * The durable state of runs: the runs themselves, their journals, and the run queue. The engine
 * depends only on this interface; `PgStore` implements it on PostgreSQL and `MemoryStore` in memory,
 * and one conformance suite holds both to the same rules.
 *
 * Values here are JSON (already encoded by the engine with the workflow's Schemas); times are epoch
 * milliseconds of the store's clock (the database's `now()` for `PgStore`, `Clock` for
 * `MemoryStore`). Every write that belongs to a claimed run carries the claim's `token` and is
 * refused (`"lease-lost"`) once the run has another owner or was cancelled: that is what keeps a
 * worker that lost its lease from writing over the worker that took the run.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { StoreError } from "./PgflowsError.ts"
import type { Status, StepStatus } from "./Run.ts"

/**
 * A run as stored, without its input (see `Store.getInput`): reads never carry more than one large
 * value per row, so a row stays within what the database client can read (see `PgStore`).
 *
 * @category models
 * @since 0.1.0
 */
export interface RunRecord {
  readonly id: string
  readonly workflow: string
  /** The version of the workflow the run started on (0: none). */
  readonly version: number
  readonly status: Status
  /** The output, for a completed run (`null` otherwise, or when `outcomeTooLarge` is set). */
  readonly output: unknown
  /** The stored error, for a failed run (`null` otherwise, or when `outcomeTooLarge` is set). */
  readonly error: unknown
  /** Set when the output or error is larger than the store can read back: its size in bytes. */
  readonly outcomeTooLarge?: number | undefined
  readonly executions: number
  readonly recoveries: number
  /** Counts what should wake the run (signals, children ending); see `Transition` `suspend`. */
  readonly events: number
  readonly deadlineAt: number | null
  /** The span context of the code that started the run, when telemetry was on. */
  readonly trace: TraceContext | null
  readonly leaseOwner: string | null
  readonly leaseExpiresAt: number | null
  readonly wakeAt: number | null
  readonly parentId: string | null
  /** The run this one was forked from, and the key it was forked at. */
  readonly forkedFrom: ForkOrigin | null
  readonly msgId: number | null
  readonly createdAt: number
  readonly updatedAt: number
  readonly startedAt: number | null
  readonly completedAt: number | null
}

/**
 * A row of `listRuns`: a run without its values.
 *
 * @category models
 * @since 0.1.0
 */
export interface RunSummary {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: Status
  readonly executions: number
  readonly createdAt: number
  readonly updatedAt: number
  readonly completedAt: number | null
}

/**
 * Where a forked run came from: the original run, and the key of its journal the fork restarts at.
 *
 * @category models
 * @since 0.1.0
 */
export interface ForkOrigin {
  readonly runId: string
  readonly key: string
}

/**
 * A workflow and one of its versions: what a worker serves.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkflowVersion {
  readonly workflow: string
  readonly version: number
}

/**
 * A stored value as read back: the value, or its size when it is larger than the store can read.
 *
 * @category models
 * @since 0.1.0
 */
export type StoredValue =
  | { readonly _tag: "Value"; readonly value: unknown }
  | { readonly _tag: "TooLarge"; readonly bytes: number }

/**
 * A span context, as stored with a run.
 *
 * @category models
 * @since 0.1.0
 */
export interface TraceContext {
  readonly traceId: string
  readonly spanId: string
}

/**
 * A journal entry as stored.
 *
 * @category models
 * @since 0.1.0
 */
export interface StepRecord {
  readonly runId: string
  readonly key: string
  readonly name: string
  readonly inputHash: string
  readonly status: StepStatus
  readonly output: unknown
  readonly error: unknown
  readonly attempts: number
  readonly wakeAt: number | null
  readonly startedAt: number | null
  readonly completedAt: number | null
  /** Set when the output or error is larger than the store can read back: its size in bytes. */
  readonly tooLarge?: number | undefined
  /** Whether the entry was written by a transaction step, in the transaction of its effect. */
  readonly transactional?: boolean | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface NewRun {
  readonly id: string
  readonly workflow: string
  /**
   * The version to start; without it, the newest version a live worker on the queue serves (0 when
   * none does): what runs started from SQL (`enqueue_workflow`) and by schedulers get.
   */
  readonly version?: number | undefined
  readonly input: unknown
  readonly delayMillis?: number | undefined
  readonly parentId?: string | undefined
  /** The run fails with `WorkflowTimeout` once the store's clock passes this (epoch ms). */
  readonly deadlineAt?: number | undefined
  /** Or: this long after the run is created (store clock). */
  readonly timeoutMillis?: number | undefined
  /** The span context of the code that starts the run (telemetry on). */
  readonly trace?: TraceContext | undefined
  /** The run's concurrency key in its named queue (see `FlowQueue`). */
  readonly concurrencyKey?: string | undefined
  /** Runs of a named queue are claimed highest priority first (default 0). */
  readonly priority?: number | undefined
  /**
   * Start nothing when a run of the same workflow with this key is pending (or, with
   * `whileRunning`, has not ended): `Created` is then that run, `deduplicated` set.
   */
  readonly deduplication?: {
    readonly key: string
    readonly whileRunning: boolean
    /**
     * Debounce instead: while the key's run has not started executing, give it this input and push
     * its start to `periodMillis` from now, but no later than `maxDelayMillis` after it was created.
     */
    readonly debounce?: { readonly periodMillis: number; readonly maxDelayMillis?: number | undefined } | undefined
  } | undefined
  /**
   * Claim the new run for this worker token at once (the in-process fast path). A store may decline
   * (`PgStore` does inside the caller's transaction: the run must not execute before the commit);
   * `Created.claimed` says whether it did.
   */
  readonly claimFor?: { readonly token: string; readonly leaseMillis: number } | undefined
}

/**
 * The outcome of `createRuns` for one run: `created` is false when the id already existed, and
 * `workflow` is then the existing run's workflow. `claimed` is the run, claimed, when it was created
 * with `claimFor` and the store claimed it.
 *
 * @category models
 * @since 0.1.0
 */
export interface Created {
  readonly id: string
  readonly created: boolean
  readonly workflow: string
  readonly claimed?: ClaimedRun | undefined
  /** Set when the run was not created because of a run with the same deduplication key (`id`). */
  readonly deduplicated?: boolean | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface ClaimRequest {
  /** Prefix of the lease tokens of this claim (the worker's id). */
  readonly worker: string
  /**
   * Workflow versions this worker can execute. Messages of other workflows and versions are not even
   * read: they stay, untouched, for a worker that registers them.
   */
  readonly workflows: ReadonlyArray<WorkflowVersion>
  readonly limit: number
  readonly leaseMillis: number
  /**
   * The named queue the `workflows` belong to: its runs are claimed highest priority first, within
   * its limits across all workers. Without it, the default queue: in due order, no limits.
   */
  readonly queue?: ClaimQueue | undefined
}

/**
 * A named queue as a claim sees it: its name and limits (see `FlowQueue`).
 *
 * @category models
 * @since 0.1.0
 */
export interface ClaimQueue {
  readonly name: string
  readonly concurrency?: number | undefined
  readonly keyConcurrency?: number | undefined
  /** At most `limit` first executions per `periodMillis`, for the queue or per key. */
  readonly rateLimit?: { readonly limit: number; readonly periodMillis: number; readonly perKey: boolean } | undefined
}

/**
 * What a named queue holds now: runs due and waiting for a slot, runs executing (per concurrency
 * key), and due runs held back because a limit is reached.
 *
 * @category models
 * @since 0.1.0
 */
export interface QueueState {
  readonly queue: string
  /** Runs due now, not executing (waiting for a worker or a slot). */
  readonly due: number
  /** Runs executing (holding a live lease). */
  readonly running: number
  /** Runs executing, per concurrency key (runs without a key are left out). */
  readonly runningByKey: ReadonlyArray<{ readonly key: string; readonly running: number }>
  /**
   * Due runs that a claim would leave waiting now because the queue, or their key, is at its limit
   * (among the oldest due runs a claim considers).
   */
  readonly throttled: number
}

/**
 * A run this worker now owns, with its input and its whole journal.
 *
 * @category models
 * @since 0.1.0
 */
export interface ClaimedRun {
  readonly run: RunRecord
  readonly input: StoredValue
  readonly token: string
  readonly msgId: number
  readonly journal: ReadonlyArray<StepRecord>
  /** The store's clock when the claim was made. */
  readonly now: number
}

/**
 * A journal write. `wakeInMillis` sets the entry's wake time relative to the store's clock.
 *
 * @category models
 * @since 0.1.0
 */
export interface Checkpoint {
  readonly runId: string
  readonly token: string
  readonly key: string
  readonly name: string
  readonly inputHash: string
  readonly status: StepStatus
  readonly output: unknown
  readonly error: unknown
  readonly attempts: number
  readonly wakeInMillis?: number | undefined
  /** Written by a transaction step with its effect (see `StepRecord.transactional`). */
  readonly transactional?: boolean | undefined
}

/**
 * The end of one execution of a claimed run.
 *
 * - `complete` / `fail`: final; the message is deleted (completed) or archived (failed);
 * - `suspend`: parked until `wakeInMillis` from now (or until woken, when `null`); lease released.
 *   When the run's `events` moved past `observedEvents` meanwhile (a signal arrived, a child ended),
 *   the run is made claimable at once instead, so no wake-up is lost;
 * - `release`: handed back (worker shutdown); claimable again at once.
 *
 * @category models
 * @since 0.1.0
 */
export type Transition =
  & {
    readonly runId: string
    readonly token: string
    readonly msgId: number | null
    /** Journal entries written in the same commit, under the same lease check. */
    readonly checkpoints?: ReadonlyArray<Checkpoint> | undefined
  }
  & (
    | { readonly kind: "complete"; readonly output: unknown }
    | { readonly kind: "fail"; readonly error: unknown }
    | { readonly kind: "suspend"; readonly wakeInMillis: number | null; readonly observedEvents: number }
    | { readonly kind: "release" }
  )

/**
 * @category models
 * @since 0.1.0
 */
export type WriteResult = "ok" | "lease-lost"

/**
 * @category models
 * @since 0.1.0
 */
export interface Lease {
  readonly runId: string
  readonly token: string
  readonly msgId: number | null
}

/**
 * @category models
 * @since 0.1.0
 */
export interface ListQuery {
  readonly workflow?: string | undefined
  readonly version?: number | undefined
  readonly status?: Status | undefined
  /** Runs created at or after this (epoch ms). */
  readonly createdAfter?: number | undefined
  /** Runs created before this (epoch ms). */
  readonly createdBefore?: number | undefined
  readonly limit: number
  /** Where the previous page of the same list ended. */
  readonly cursor?: Cursor | undefined
}

/**
 * Where a page ends: the time (epoch microseconds, as text) and id of its last row. The next page
 * holds the rows before it, newest first.
 *
 * @category models
 * @since 0.1.0
 */
export interface Cursor {
  readonly micros: string
  readonly id: string
}

/**
 * The failed runs, newest failure first: of one workflow (and version) or all, failed in
 * `[failedAfter, failedBefore)`.
 *
 * @category models
 * @since 0.1.0
 */
export interface DeadLetterQuery {
  readonly workflow?: string | undefined
  readonly version?: number | undefined
  readonly failedAfter?: number | undefined
  readonly failedBefore?: number | undefined
  readonly limit: number
  readonly cursor?: Cursor | undefined
}

/**
 * A failed run as `deadLetters` reads it: without its input and journal, with its stored error.
 *
 * @category models
 * @since 0.1.0
 */
export interface DeadLetterRecord {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly executions: number
  readonly createdAt: number
  readonly failedAt: number
  /** The stored error (`null` when `errorTooLarge` is set). */
  readonly error: unknown
  /** Set when the error is larger than the store can read back: its size in bytes. */
  readonly errorTooLarge?: number | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface DeadLetterPage {
  readonly deadLetters: ReadonlyArray<DeadLetterRecord>
  readonly nextCursor: Cursor | undefined
}

/**
 * How many runs of a workflow are in a state: counted, or (`exact: false`) estimated from the
 * database's statistics where counting would read more than a bounded number of rows.
 *
 * @category models
 * @since 0.1.0
 */
export interface RunCount {
  readonly workflow: string
  readonly status: Status
  readonly runs: number
  readonly exact: boolean
}

/**
 * Runs selected for a bulk operation: of one workflow, optionally one version, some states, created
 * in `[createdAfter, createdBefore)`; the oldest `limit` of them.
 *
 * @category models
 * @since 0.1.0
 */
export interface RunFilter {
  readonly workflow: string
  readonly version?: number | undefined
  readonly statuses: ReadonlyArray<Status>
  readonly createdAfter?: number | undefined
  readonly createdBefore?: number | undefined
  readonly limit: number
}

/**
 * What `findRuns` found: how many runs match, and the ids of the oldest `limit` of them.
 *
 * @category models
 * @since 0.1.0
 */
export interface FoundRuns {
  readonly total: number
  readonly ids: ReadonlyArray<string>
}

/**
 * A fork to write: a new run `id` of the original's workflow at `version`, with the original's input
 * and the journal entries at `keys`, linked to the original at `fromKey`.
 *
 * @category models
 * @since 0.1.0
 */
export interface ForkRequest {
  readonly sourceId: string
  readonly id: string
  readonly version: number
  readonly keys: ReadonlyArray<string>
  readonly fromKey: string
  /** The run fails with `WorkflowTimeout` this long after the fork is created. */
  readonly timeoutMillis?: number | undefined
}

/**
 * The outcome of `forkRun`: the fork was created; the id was taken (by the run described); or there
 * is no original.
 *
 * @category models
 * @since 0.1.0
 */
export type ForkResult =
  | { readonly _tag: "Created" }
  | { readonly _tag: "Exists"; readonly workflow: string; readonly forkedFrom: ForkOrigin | null }
  | { readonly _tag: "NotFound" }

/**
 * Runs of a workflow version that have not ended.
 *
 * @category models
 * @since 0.1.0
 */
export interface InFlight {
  readonly workflow: string
  readonly version: number
  readonly runs: number
}

/**
 * One batch of a purge (docs/ARCHITECTURE.md, "Retention"): the next `limit` runs after `cursor`, in
 * the order of creation, among those created before `before` (of `workflow` when given, in one of
 * `statuses` when that is one state); of them, the runs to delete are the top-level ones (no parent,
 * or a parent no longer stored) that are in one of `statuses` and ended before `before`, each with
 * its descendants, when the run and every descendant ended before `before` and none is being
 * changed meanwhile. A run that is not ended, or that ends, is retried, resumed or changed while the
 * batch runs, is never deleted.
 *
 * @category models
 * @since 0.1.0
 */
export interface PurgeQuery {
  /** Epoch ms; the store never uses a time after its own clock's now. */
  readonly before: number
  readonly statuses: ReadonlyArray<"completed" | "failed" | "cancelled">
  readonly workflow?: string | undefined
  readonly limit: number
  /** Where the previous batch of the same purge ended. */
  readonly cursor?: Cursor | undefined
}

/**
 * What one batch of a purge deleted: runs, and rows of every table (the runs, their journals,
 * signals, events, archived queue messages, and their rows in the tables of failed and cancelled
 * runs). `nextCursor` is where the next batch starts, absent when the walk reached `before`.
 *
 * @category models
 * @since 0.1.0
 */
export interface PurgeBatch {
  readonly runs: number
  readonly rows: number
  /** How many runs the batch read (at most the query's `limit`). */
  readonly scanned: number
  readonly nextCursor: Cursor | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface RunPage {
  readonly runs: ReadonlyArray<RunSummary>
  readonly nextCursor: Cursor | undefined
}

/**
 * What a store tells listening processes: work may be available, a run ended, a run was cancelled.
 *
 * @category models
 * @since 0.1.0
 */
export type Notification =
  | { readonly _tag: "Runnable" }
  | { readonly _tag: "Done"; readonly runId: string }
  | { readonly _tag: "Cancelled"; readonly runId: string }
  | { readonly _tag: "Event"; readonly runId: string }

/**
 * A journal entry written together with another change (taking a signal, publishing an event).
 *
 * @category models
 * @since 0.1.0
 */
export interface JournalWrite {
  readonly runId: string
  readonly token: string
  readonly key: string
  readonly name: string
  readonly inputHash: string
}

/**
 * What taking a signal found: a payload (now recorded in the journal), none yet, or a lost lease.
 *
 * @category models
 * @since 0.1.0
 */
export type TakeResult =
  | { readonly _tag: "Taken"; readonly payload: unknown }
  | { readonly _tag: "None" }
  | { readonly _tag: "LeaseLost" }

/**
 * @category models
 * @since 0.1.0
 */
export type SignalResult = "sent" | "not-found" | "ended"

/**
 * @category models
 * @since 0.1.0
 */
export type RestartResult = "restarted" | "not-found" | "wrong-state"

/**
 * @category models
 * @since 0.1.0
 */
export type CancelResult = "cancelled" | "already-terminal" | "not-found"

/**
 * A worker, as it announces itself: what it serves, for how long without another announcement.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerAnnouncement {
  readonly worker: string
  readonly workflows: ReadonlyArray<WorkflowVersion>
  readonly ttlMillis: number
}

/**
 * Due runs of a workflow version that no live worker registers, waiting longer than asked.
 *
 * @category models
 * @since 0.1.0
 */
export interface Unclaimed {
  readonly workflow: string
  readonly version: number
  readonly runs: number
}

/**
 * @category services
 * @since 0.1.0
 */
export class Store extends Context.Service<Store, {
  /** Inserts runs and their queue messages atomically; existing ids are left alone. */
  readonly createRuns: (runs: ReadonlyArray<NewRun>) => Effect.Effect<ReadonlyArray<Created>, StoreError>
  /** Reads due messages and claims their runs, loading each claimed run's journal. */
  readonly claim: (request: ClaimRequest) => Effect.Effect<ReadonlyArray<ClaimedRun>, StoreError>
  /** Writes a journal entry, durably, if the token still owns the run. */
  readonly checkpoint: (checkpoint: Checkpoint) => Effect.Effect<WriteResult, StoreError>
  /** Ends an execution, durably, if the token still owns the run. */
  readonly transition: (transition: Transition) => Effect.Effect<WriteResult, StoreError>
  /** Renews leases; returns the tokens that still own their run (others were lost or cancelled). */
  readonly heartbeat: (
    leases: ReadonlyArray<Lease>,
    leaseMillis: number
  ) => Effect.Effect<ReadonlySet<string>, StoreError>
  /**
   * Marks a run cancelled unless it is terminal, and removes its message; its descendants (child
   * runs) are cancelled with it, and a parent waiting for it is woken.
   */
  readonly cancel: (runId: string) => Effect.Effect<CancelResult, StoreError>
  /** Buffers a signal for a run that has not ended, and wakes it. */
  readonly sendSignal: (runId: string, name: string, payload: unknown) => Effect.Effect<SignalResult, StoreError>
  /**
   * Takes the oldest signal named `signal` that no wait took yet and records it as the journal
   * entry, in one transaction under the run's lock; each signal is taken once.
   */
  readonly takeSignal: (write: JournalWrite & { readonly signal: string }) => Effect.Effect<TakeResult, StoreError>
  /** Publishes an event of the run and records the journal entry, together. */
  readonly setEvent: (
    write: JournalWrite & { readonly event: string; readonly value: unknown }
  ) => Effect.Effect<WriteResult, StoreError>
  readonly getEvent: (
    runId: string,
    event: string
  ) => Effect.Effect<{ readonly value: unknown; readonly updatedAt: number } | undefined, StoreError>
  /** Makes a failed run claimable again, dropping its failed and unfinished journal entries. */
  readonly retry: (runId: string) => Effect.Effect<RestartResult, StoreError>
  /** Makes a cancelled run (and the children cancelled with it) claimable again. */
  readonly resume: (runId: string) => Effect.Effect<RestartResult, StoreError>
  /**
   * Runs `effect` and writes the journal entry in one database transaction: both happen or
   * neither. Fails with `"lease-lost"` (and rolls back) when the token no longer owns the run.
   */
  readonly checkpointWith: <A, E, R>(
    checkpoint: (value: A) => Checkpoint,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A | "lease-lost", E | StoreError, R>
  readonly getRun: (runId: string) => Effect.Effect<RunRecord | undefined, StoreError>
  /** The run's input; `undefined` when there is no such run. */
  readonly getInput: (runId: string) => Effect.Effect<StoredValue | undefined, StoreError>
  readonly getSteps: (runId: string) => Effect.Effect<ReadonlyArray<StepRecord>, StoreError>
  /** A page of runs, newest first; reads what it returns (docs/ARCHITECTURE.md, "Reads"). */
  readonly listRuns: (query: ListQuery) => Effect.Effect<RunPage, StoreError>
  /** A page of failed runs with their errors, newest failure first. */
  readonly deadLetters: (query: DeadLetterQuery) => Effect.Effect<DeadLetterPage, StoreError>
  /**
   * How many runs are in each state, by workflow (of one workflow when given); states without runs
   * are left out. Runs not ended are counted; ended runs are counted too when that reads a bounded
   * number of rows, and estimated otherwise.
   */
  readonly countRuns: (workflow?: string) => Effect.Effect<ReadonlyArray<RunCount>, StoreError>
  /** How many runs match a filter, and the oldest of them (for bulk operations). */
  readonly findRuns: (filter: RunFilter) => Effect.Effect<FoundRuns, StoreError>
  /**
   * Creates a fork of a run with its queue message, in one transaction: the original's input and
   * the journal entries at the given keys are copied; the original is not changed.
   */
  readonly forkRun: (request: ForkRequest) => Effect.Effect<ForkResult, StoreError>
  /** Runs that have not ended, by workflow and version. */
  readonly inFlight: Effect.Effect<ReadonlyArray<InFlight>, StoreError>
  /** The state of a named queue whose runs are those of the given workflow versions. */
  readonly queueState: (
    queue: ClaimQueue,
    workflows: ReadonlyArray<WorkflowVersion>
  ) => Effect.Effect<QueueState, StoreError>
  /** Milliseconds until the next queued message becomes visible, if any. */
  readonly nextWakeup: Effect.Effect<number | undefined, StoreError>
  /** Records (or renews) a running worker and the workflow versions it serves on this store's queue. */
  readonly announceWorker: (announcement: WorkerAnnouncement) => Effect.Effect<void, StoreError>
  /** Forgets a worker that stopped. */
  readonly retireWorker: (worker: string) => Effect.Effect<void, StoreError>
  /** Whether a live worker serves this version of `workflow` on this store's queue. */
  readonly hasWorkerFor: (workflow: string, version: number) => Effect.Effect<boolean, StoreError>
  /**
   * Runs due for longer than `olderThanMillis` whose workflow version no live worker serves, by
   * workflow and version.
   */
  readonly unclaimed: (olderThanMillis: number) => Effect.Effect<ReadonlyArray<Unclaimed>, StoreError>
  /** One batch of a purge: deletes ended runs with everything of theirs (see `PurgeQuery`). */
  readonly purgeRuns: (query: PurgeQuery) => Effect.Effect<PurgeBatch, StoreError>
  /**
   * Runs `effect` unless another process (or fiber) runs an effect under the same name now (an
   * advisory lock on PostgreSQL, held on a connection of its own for the effect's length): `None`
   * then, without waiting.
   */
  readonly exclusive: <A, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<Option.Option<A>, E | StoreError, R>
  /** Subscribes to notifications (NOTIFY for `PgStore`) for the life of the scope. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Notification, StoreError>, StoreError, Scope.Scope>
}>()("pgflows/Store") {}
