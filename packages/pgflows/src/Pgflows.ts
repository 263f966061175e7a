/**
 * The engine and its client: start runs, follow them, cancel them, and execute them (`processOnce`
 * or a long-running `runWorker`).
 *
 * This module is the client; the parts it is built from have modules of their own: the replay
 * engine (`internal/engine.ts`), the executions and their leases (`internal/runner.ts`), the worker
 * loop (`internal/worker.ts`) with its slots and the local hand-off (`internal/slots.ts`), and the
 * notification listener (`internal/listener.ts`). docs/ARCHITECTURE.md says what they guarantee.
 *
 * **Starting inside a transaction.** `start` called inside the application's
 * `sql.withTransaction` (PostgreSQL) writes the run through that transaction: the run exists exactly
 * when the transaction commits, and nothing of it executes before (the transactional outbox). A
 * rollback leaves no run. Call `result` after the commit, not inside the transaction.
 *
 * `Pgflows.layer({ workflows })` builds the service on a `Store` and a `WorkQueue`; the services the
 * workflows' steps need are required by the layer and captured when it is built.
 * `Pgflows.layerPg` and `Pgflows.layerMemory` add the Postgres or in-memory backends.
 *
 * @example
 * ```ts
 * const Live = Pgflows.layerPg({ workflows: [processOrder] }).pipe(
 *   Layer.provide(PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL!) }))
 * )
 * const program = Effect.gen(function*() {
 *   const client = yield* Pgflows.Pgflows
 *   const id = yield* client.start(processOrder, new OrderInput({ orderId: "ORD-1", amount: 99 }))
 *   yield* client.processOnce
 *   const status = yield* client.status(id)
 * })
 * ```
 *
 * @since 0.1.0
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import type * as SqlClient from "effect/sql/SqlClient"
import * as Tracer from "effect/Tracer"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import * as FlowQueue from "./FlowQueue.ts"
import * as Cursor from "./internal/cursor.ts"
import type { EngineEnv } from "./internal/engine.ts"
import { decodeFailure } from "./internal/failure.ts"
import * as Flow from "./internal/flow.ts"
import * as Fork from "./internal/fork.ts"
import { storeProblem } from "./internal/json.ts"
import * as Keys from "./internal/keys.ts"
import * as Listener from "./internal/listener.ts"
import * as RetentionLoop from "./internal/retention.ts"
import * as RunEvents from "./internal/runEvents.ts"
import * as RunIds from "./internal/runIds.ts"
import * as Runner from "./internal/runner.ts"
import type * as Slots from "./internal/slots.ts"
import * as Telemetry from "./internal/telemetry.ts"
import * as Versions from "./internal/versions.ts"
import * as Worker from "./internal/worker.ts"
import { codec } from "./JsonCodec.ts"
import * as MemoryStore from "./MemoryStore.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import {
  type DatabaseUnavailable,
  type InvalidConcurrencyKey,
  InvalidFilter,
  InvalidFork,
  InvalidInput,
  type MigrationsMissing,
  NoRunsMatched,
  PayloadTooLarge,
  RunCancelled,
  RunEnded,
  RunFailed,
  RunIdConflict,
  RunNotFound,
  RunNotRestartable,
  type StoreError,
  UnknownVersion,
  UnstorableValue,
  WaitTimeout
} from "./PgflowsError.ts"
import * as PgStore from "./PgStore.ts"
import * as PgWorkQueue from "./PgWorkQueue.ts"
import * as Plugin from "./Plugin.ts"
import * as Retention from "./Retention.ts"
import type {
  BulkForkResult,
  BulkResult,
  Count,
  DeadLetter,
  DeadLetterPage,
  Forked,
  ForkPlan,
  Page,
  RunCounts,
  RunId,
  RunInfo,
  Status,
  StatusCounts,
  StepInfo,
  Summary,
  WorkflowCounts
} from "./Run.ts"
import { isTerminal, statuses as allStatuses } from "./Run.ts"
import * as RunHistory from "./RunHistory.ts"
import type * as Step from "./Step.ts"
import * as Store from "./Store.ts"
import * as StoredText from "./StoredText.ts"
import type * as Workflow from "./Workflow.ts"
import * as WorkQueue from "./WorkQueue.ts"

/** What wakes a wait for a run's end: its end, here or in another process, or its cancel. */
const isEnd = (event: RunEvents.Event) => event._tag !== "Event"

/** What wakes a wait for a run's event: an event it published. */
const isEvent = (event: RunEvents.Event) => event._tag === "Event"

/**
 * @category models
 * @since 0.1.0
 */
export interface StartOptions {
  /** The run's id; starting again with the same id returns that run and starts nothing. */
  readonly id?: string | undefined
  /** Start no earlier than this from now. */
  readonly delay?: Duration.Input | undefined
  /**
   * The version to start. By default the newest version of the workflow that this client knows
   * (the definitions given to `Pgflows.layer`, and the one passed); the input is checked with that
   * version's Schema.
   */
  readonly version?: number | undefined
  /**
   * For a workflow of a named queue (`FlowQueue`): its runs are claimed highest priority first, in
   * the order they became due within a priority. An integer; default 0.
   */
  readonly priority?: number | undefined
  /**
   * Deduplication: while a run of the workflow started with this `key` is pending (or, with
   * `whileRunning`, has not ended), the start returns that run and starts nothing. Once it runs (or
   * ended), the next start with the key starts a new run, which the key then names. Starts with one
   * key are serialized by the database, so concurrent starts never both create a run.
   */
  readonly deduplication?: { readonly key: string; readonly whileRunning?: boolean | undefined } | undefined
  /**
   * Debounce: the run starts `period` from now, unless a run of the workflow started with this `key`
   * has not executed yet: that run then gets this input (the latest wins) and starts `period` from
   * now, but no later than `maxDelay` after the first start. Returns that run. Not with `delay` or
   * `deduplication`.
   */
  readonly debounce?: {
    readonly key: string
    readonly period: Duration.Input
    readonly maxDelay?: Duration.Input | undefined
  } | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface BatchOptions {
  readonly ids?: ReadonlyArray<string> | undefined
  readonly delay?: Duration.Input | undefined
  /** As `StartOptions.version`. */
  readonly version?: number | undefined
  /** As `StartOptions.priority`, for every run. */
  readonly priority?: number | undefined
}

/**
 * What a worker executes: by default every queue of the workflows it registers.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerOptions {
  /** Runs executed at once by this worker (default `PgflowsConfig.workerConcurrency`). */
  readonly concurrency?: number | undefined
  /**
   * The queues it serves (named queues, or `FlowQueue.defaultName` for the default queue), among
   * those of the workflows it registers; default: all of them. A name that no registered workflow
   * uses is a defect.
   */
  readonly queues?: ReadonlyArray<string | FlowQueue.FlowQueue> | undefined
}

/**
 * The state of the run queue and of the named queues: `queueMetrics`.
 *
 * @category models
 * @since 0.1.0
 */
export interface QueueMetrics extends WorkQueue.Metrics {
  /**
   * For the run queue: each named queue of the registered workflows, with its due runs, its runs
   * executing, and those per concurrency key (empty for another queue).
   */
  readonly queues: ReadonlyArray<Store.QueueState>
}

/**
 * @category models
 * @since 0.1.0
 */
export interface ListOptions {
  readonly workflow?: string | undefined
  /** Only runs that started on this version (0: runs without one). */
  readonly version?: number | undefined
  readonly status?: Status | undefined
  /** Only runs created at or after this. */
  readonly createdAfter?: Date | undefined
  /** Only runs created before this. */
  readonly createdBefore?: Date | undefined
  /** At most this many runs (default 50, at most 1000). */
  readonly limit?: number | undefined
  /** `nextCursor` of the previous page (of a list with the same filters). */
  readonly cursor?: string | undefined
}

/**
 * Which dead letters (failed runs) `deadLetters` lists: of one workflow (and version), failed in
 * `[failedAfter, failedBefore)`.
 *
 * @category models
 * @since 0.1.0
 */
export interface DeadLetterOptions {
  readonly workflow?: string | undefined
  readonly version?: number | undefined
  readonly failedAfter?: Date | undefined
  readonly failedBefore?: Date | undefined
  /** At most this many (default 50, at most 1000). */
  readonly limit?: number | undefined
  /** `nextCursor` of the previous page. */
  readonly cursor?: string | undefined
}

/**
 * What `cancel` did.
 *
 * @category models
 * @since 0.1.0
 */
export type CancelOutcome = "cancelled" | "already-terminal"

/**
 * Where and how to fork a run (see `Pgflows.fork`).
 *
 * @category models
 * @since 0.1.0
 */
export interface ForkOptions {
  /**
   * The point the fork restarts at: a key of the run's journal (`"2"`, `"3.1/1"`), or the name of
   * a step (or the step itself) that the run executed once. The fork reuses what the run recorded
   * before this point and executes the rest again.
   */
  readonly fromStep: string | Step.Any
  /** The fork's id (default: a new one). Forking again with the same id returns that fork. */
  readonly id?: string | undefined
  /**
   * The version the fork runs on (default: the original's), for example the version that fixes
   * what made the original fail. This client must know a definition of it.
   */
  readonly version?: number | undefined
}

/**
 * Which runs a bulk operation acts on: runs of one workflow, optionally of one version, in some
 * states, created in `[createdAfter, createdBefore)`; the oldest `limit` of them.
 *
 * @category models
 * @since 0.1.0
 */
export interface BulkFilter {
  readonly workflow: string
  readonly version?: number | undefined
  /** Default: every state the operation acts on (cancel: not ended; retry: failed; fork: any). */
  readonly status?: Status | ReadonlyArray<Status> | undefined
  readonly createdAfter?: Date | undefined
  readonly createdBefore?: Date | undefined
  /** At most this many runs, oldest first (default 100, at most 10,000). */
  readonly limit?: number | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface BulkOptions {
  /** Count and list what would be done, and write nothing. */
  readonly dryRun?: boolean | undefined
}

/**
 * Which ended runs `purge` deletes: those that ended before `before` (in one of `status`, of
 * `workflow` when given), each with its child runs.
 *
 * @category models
 * @since 0.1.0
 */
export interface PurgeOptions {
  /** Runs that ended before this; not later than now. */
  readonly before: Date
  /** Default: every state a run ends in (completed, failed, cancelled); never a run not ended. */
  readonly status?: Retention.EndedStatus | ReadonlyArray<Retention.EndedStatus> | undefined
  /** Only top-level runs of this workflow (their child runs go with them). */
  readonly workflow?: string | undefined
}

/**
 * What `purge` deleted: runs (child runs included), and rows of every table.
 *
 * @category models
 * @since 0.1.0
 */
export interface PurgeResult {
  readonly runs: number
  readonly rows: number
}

/**
 * @category services
 * @since 0.1.0
 */
export class Pgflows extends Context.Service<Pgflows, {
  /** Starts a run: the run and its queue message are written together. */
  readonly start: <W extends Workflow.Any>(
    workflow: W,
    input: Workflow.Input<W>,
    options?: StartOptions
  ) => Effect.Effect<
    RunId<W>,
    InvalidInput | InvalidConcurrencyKey | PayloadTooLarge | RunIdConflict | UnknownVersion | StoreError
  >
  /**
   * Starts many runs of one workflow in one statement. `ids`, when given, has one id per input;
   * `delay` applies to every run.
   */
  readonly startBatch: <W extends Workflow.Any>(
    workflow: W,
    inputs: ReadonlyArray<Workflow.Input<W>>,
    options?: BatchOptions
  ) => Effect.Effect<
    ReadonlyArray<RunId<W>>,
    InvalidInput | InvalidConcurrencyKey | PayloadTooLarge | RunIdConflict | UnknownVersion | StoreError
  >
  /** The run's state, typed output or error, timestamps, and journal. */
  readonly status: <W>(
    id: RunId<W>
  ) => Effect.Effect<RunInfo<Workflow.Output<W>, Workflow.Error<W> | unknown>, RunNotFound | StoreError>
  /**
   * Waits for the run to end and returns its output. It fails with the workflow's own typed error
   * when the run failed with one (decoded with the workflow's error Schema: this process must
   * register the workflow); with `RunCancelled` when it was cancelled; and with `RunFailed` in every
   * other case, whose `error` is what pgflows recorded: one of its engine errors (`WorkflowTimeout`,
   * `StepDefect`, `NonDeterminismError`, ...) or the stored JSON when it cannot be decoded here.
   * `WaitTimeout` when `timeout` passes first; `PayloadTooLarge` when the output cannot be read.
   */
  readonly result: <W>(
    id: RunId<W>,
    options?: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<
    Workflow.Output<W>,
    | Workflow.Error<W>
    | RunFailed
    | RunCancelled
    | RunNotFound
    | PayloadTooLarge
    | StoreError
    | WaitTimeout
  >
  /**
   * Runs, newest first, one page at a time. Each page reads about as many rows as it returns,
   * whatever the history holds (docs/ARCHITECTURE.md, "Reads"). `InvalidFilter` for a version that
   * is not one, a date that is not valid, or a cursor that is not a `nextCursor`.
   */
  readonly list: (options?: ListOptions) => Effect.Effect<Page, InvalidFilter | StoreError>
  /**
   * How many runs are in each state, by workflow (or of one workflow). Runs not ended are counted;
   * ended runs are counted where that reads at most 10,000 rows, and otherwise estimated from the
   * database's statistics: each `Count` says which (`exact`).
   */
  readonly counts: (options?: { readonly workflow?: string | undefined }) => Effect.Effect<RunCounts, StoreError>
  /**
   * The dead letters: failed runs with their errors, newest failure first, one page at a time. A
   * retried run leaves the list. `InvalidFilter` as for `list`.
   */
  readonly deadLetters: (options?: DeadLetterOptions) => Effect.Effect<DeadLetterPage, InvalidFilter | StoreError>
  /**
   * Cancels a run unless it already ended; a worker running it is interrupted, and its child runs
   * are cancelled with it.
   */
  readonly cancel: (id: string) => Effect.Effect<CancelOutcome, RunNotFound | StoreError>
  /**
   * Sends a signal to a run that has not ended (`Workflow.waitForSignal` takes it). Signals are
   * buffered until a wait takes them, one signal per wait.
   */
  readonly signal: (
    id: string,
    name: string,
    payload: unknown
  ) => Effect.Effect<void, RunNotFound | RunEnded | PayloadTooLarge | UnstorableValue | StoreError>
  /**
   * The latest value the run published under `key` (`Workflow.setEvent`), waiting up to `timeout`
   * for one to appear.
   */
  readonly getEvent: (
    id: string,
    key: string,
    options?: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<Option.Option<unknown>, RunNotFound | StoreError>
  /**
   * Restarts a failed run from its last completed step: the step that failed runs again, nothing
   * before it does.
   */
  readonly retry: (id: string) => Effect.Effect<void, RunNotFound | RunNotRestartable | StoreError>
  /**
   * Resumes a cancelled run (and the children cancelled with it) from its journal: completed steps
   * are not repeated; a step that was interrupted runs again.
   */
  readonly resume: (id: string) => Effect.Effect<void, RunNotFound | RunNotRestartable | StoreError>
  /**
   * Starts a new run of the same workflow whose journal is the original's up to `fromStep`: what
   * was recorded before that point is replayed, not executed again; the rest executes again (on
   * `version`, the original's by default). The original is untouched; the fork's `forkedFrom` links
   * to it. The result says which completed steps execute again, and which of them are not
   * transaction steps (their side effects repeat).
   */
  readonly fork: (
    id: string,
    options: ForkOptions
  ) => Effect.Effect<Forked, RunNotFound | InvalidFork | UnknownVersion | RunIdConflict | StoreError>
  /** What `fork` would do, writing nothing. */
  readonly planFork: (
    id: string,
    options: Omit<ForkOptions, "id">
  ) => Effect.Effect<ForkPlan, RunNotFound | InvalidFork | UnknownVersion | StoreError>
  /** Cancels the runs a filter selects that have not ended (see `cancel`). */
  readonly cancelMany: (
    filter: BulkFilter,
    options?: BulkOptions
  ) => Effect.Effect<BulkResult, InvalidFilter | NoRunsMatched | StoreError>
  /** Retries the failed runs a filter selects (see `retry`). */
  readonly retryMany: (
    filter: BulkFilter,
    options?: BulkOptions
  ) => Effect.Effect<BulkResult, InvalidFilter | NoRunsMatched | StoreError>
  /** Forks every run a filter selects from the same point (see `fork`). */
  readonly forkMany: (
    filter: BulkFilter,
    options: Omit<ForkOptions, "id"> & BulkOptions
  ) => Effect.Effect<BulkForkResult, InvalidFilter | NoRunsMatched | UnknownVersion | StoreError>
  /**
   * Deletes the runs that ended before `before` (completed, failed or cancelled; never a run that
   * has not ended, nor one that ends, is retried or resumed meanwhile) with everything of theirs:
   * journal, signals, events, archived messages, and their child runs. A child run goes with its
   * top-level run, never alone, and a run whose child has not ended is kept. It works in batches of
   * 1,000 runs, each its own short transaction that waits for no lock (docs/ARCHITECTURE.md,
   * "Retention"). `InvalidFilter` for a date that is not valid or is in the future, a state that is
   * not one a run ends in, or an empty workflow name.
   */
  readonly purge: (options: PurgeOptions) => Effect.Effect<PurgeResult, InvalidFilter | StoreError>
  /** The run and its journal as a JSON-ready document (`RunHistory`), for `ReplayCheck`. */
  readonly exportHistory: (
    id: string
  ) => Effect.Effect<RunHistory.History, RunNotFound | PayloadTooLarge | StoreError>
  /** The runs that have not ended, by workflow and version (optionally of one workflow). */
  readonly runsInFlight: (workflow?: string) => Effect.Effect<ReadonlyArray<Store.InFlight>, StoreError>
  /** Claims the runs that are due now (up to the worker concurrency), runs them, returns how many. */
  readonly processOnce: Effect.Effect<number, StoreError>
  /**
   * Works until interrupted: claims due runs of the registered workflows (woken by NOTIFY, polling
   * as a fallback), runs up to `concurrency` at once, renews their leases. Interrupting it (SIGTERM
   * under `NodeRuntime.runMain`, the end of the program that forked it) stops claiming, lets runs in
   * flight finish for `PgflowsConfig.shutdownGrace`, then hands the rest back, claimable at once by
   * another worker. It serves the queues of `options.queues` (all the registered workflows' by
   * default), each within its limits.
   */
  readonly runWorker: (options?: WorkerOptions) => Effect.Effect<never>
  /**
   * The queue's length, visible messages, ages and archive (dead letters); the archive is counted
   * up to 10,000 messages and estimated beyond (`archivedExact`). For the run queue (the default),
   * also the state of each named queue (`queues`).
   */
  readonly queueMetrics: (queue?: string) => Effect.Effect<QueueMetrics, StoreError>
  readonly listQueues: Effect.Effect<ReadonlyArray<WorkQueue.QueueInfo>, StoreError>
  readonly purgeQueue: (queue: string) => Effect.Effect<number, StoreError>
  readonly dropQueue: (queue: string) => Effect.Effect<boolean, StoreError>
  /** The workflows this process executes, by name: the newest version of each. */
  readonly workflows: ReadonlyMap<string, Workflow.Any>
  /** Every definition this process executes, all versions. */
  readonly definitions: ReadonlyArray<Workflow.Any>
}>()("pgflows/Pgflows") {}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options<W extends ReadonlyArray<Workflow.Any>> {
  readonly workflows: W
  /** Plugins, in the order they run (before those added with `Plugin.layer`). See `Plugin`. */
  readonly plugins?: ReadonlyArray<Plugin.Plugin> | undefined
  /** How long a plugin's hook may run before it is abandoned and logged (default 5 seconds). */
  readonly pluginTimeout?: Duration.Input | undefined
}

/**
 * Builds the engine on the `Store` and `WorkQueue` in context.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <const W extends ReadonlyArray<Workflow.Any>>(
  options: Options<W>
): Layer.Layer<
  Pgflows,
  PgflowsConfig.PgflowsConfigError,
  Store.Store | WorkQueue.WorkQueue | Workflow.Requirements<W[number]>
> => Layer.effect(Pgflows, make(options)).pipe(Layer.provide(PgflowsConfig.layerDefault))

/**
 * The engine on PostgreSQL (`PgStore` + `PgWorkQueue`), on the application's `PgClient` pool.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerPg = <const W extends ReadonlyArray<Workflow.Any>>(
  options: Options<W>
): Layer.Layer<
  Pgflows | Store.Store | WorkQueue.WorkQueue,
  StoreError | PgflowsConfig.PgflowsConfigError | DatabaseUnavailable | MigrationsMissing,
  PgClient.PgClient | SqlClient.SqlClient | Workflow.Requirements<W[number]>
> =>
  layer(options).pipe(
    Layer.provideMerge(Layer.merge(PgStore.layer, PgWorkQueue.layer)),
    // One configuration for the engine and its stores: the one provided, else the environment's.
    Layer.provide(PgflowsConfig.layerDefault)
  )

/**
 * The engine in memory, for tests and local tools (`MemoryStore`); time comes from `Clock`, so
 * `TestClock` drives sleeps and retries.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerMemory = <const W extends ReadonlyArray<Workflow.Any>>(
  options: Options<W>
): Layer.Layer<
  Pgflows | Store.Store | WorkQueue.WorkQueue,
  PgflowsConfig.PgflowsConfigError,
  Workflow.Requirements<W[number]>
> => layer(options).pipe(Layer.provideMerge(MemoryStore.layer), Layer.provide(PgflowsConfig.layerDefault))

// internal

const make = <const W extends ReadonlyArray<Workflow.Any>>(options: Options<W>) =>
  Effect.gen(function*() {
    const store = yield* Store.Store
    const queues = yield* WorkQueue.WorkQueue
    const config = yield* PgflowsConfig.PgflowsConfig
    // Steps' spans must nest in pgflows' spans, not in a span the layer happened to be built in.
    const services = Context.omit(Tracer.ParentSpan)(yield* Effect.context<never>()) as Context.Context<never>
    /** The definitions, by workflow key: several versions of one workflow live side by side. */
    const registry = new Map<string, Workflow.Any>()
    /** The newest version of each workflow, by name. */
    const newest = new Map<string, Workflow.Any>()
    for (const workflow of options.workflows) {
      const key = Versions.key(workflow.name, workflow.version)
      const existing = registry.get(key)
      if (existing !== undefined && existing !== workflow) {
        return yield* Effect.die(
          new Error(`two different definitions of ${Versions.label(workflow.name, workflow.version)}`)
        )
      }
      registry.set(key, workflow)
      if ((newest.get(workflow.name)?.version ?? -1) < workflow.version) newest.set(workflow.name, workflow)
    }
    const definitions = [...new Set(registry.values())]
    /** The versions of a workflow this client knows, in order. */
    const versionsOf = (name: string) =>
      definitions.filter((w) => w.name === name).map((w) => w.version).sort((a, b) => a - b)
    const env: EngineEnv = {
      store,
      config,
      services,
      plugins: Plugin.runner([...(options.plugins ?? []), ...(yield* Plugin.Plugins)], options.pluginTimeout),
      tracer: config.otelEnabled ? yield* Telemetry.tracerFor(services) : undefined
    }
    const workerId = `${Os.hostname()}:${process.pid}:${Crypto.randomBytes(3).toString("hex")}`
    const events = RunEvents.make()
    const runner = yield* Runner.make({ env, registry, worker: workerId, events })
    const wakeups = yield* Queue.make<void>({ capacity: 1, strategy: "dropping" })
    /** The worker running in this process, if any: `start` hands it new runs directly. */
    const local: { current: Slots.LocalWorker | undefined } = { current: undefined }
    let localClaims = 0
    yield* Listener.listen({ store, runner, wakeups })

    /** The workflows whose ended runs a worker of this process prunes: their newest definition's policy. */
    const retentionRules: ReadonlyArray<RetentionLoop.Rule> = [...newest.values()]
      .map((workflow) => ({ workflow: workflow.name, policy: Retention.resolve(workflow.retention, config.retention) }))
      .filter((rule) => Retention.prunes(rule.policy))
    /** The queues of the registered workflows, each with its workflow versions (the default first). */
    const groups = new Map<string, ClaimGroup>()
    for (
      const w of [...definitions].sort((a, b) =>
        a.queue.name === FlowQueue.defaultName ? -1 : b.queue.name === FlowQueue.defaultName ? 1 : 0
      )
    ) {
      const group = groups.get(w.queue.name)
      if (group === undefined) {
        groups.set(w.queue.name, { queue: w.queue, workflows: [{ workflow: w.name, version: w.version }] })
        continue
      }
      if (JSON.stringify(claimQueue(group.queue)) !== JSON.stringify(claimQueue(w.queue))) {
        return yield* Effect.die(
          new Error(`two different definitions of queue "${w.queue.name}" (their limits differ)`)
        )
      }
      group.workflows.push({ workflow: w.name, version: w.version })
    }
    /**
     * Claims from the queues of `served`, each in turn (starting from the next one at every call, so
     * none waits behind another), until `limit` runs are claimed. A queue whose claim fails does not
     * lose the runs the others claimed: they are returned, and the next call meets the failure.
     */
    const claimFrom = (served: ReadonlyArray<ClaimGroup>) => {
      let turn = 0
      const leaseMillis = Duration.toMillis(config.lease)
      const one = (group: ClaimGroup, limit: number) =>
        store.claim({
          worker: workerId,
          workflows: group.workflows,
          limit,
          leaseMillis,
          ...(group.queue.name === FlowQueue.defaultName ? {} : { queue: claimQueue(group.queue) })
        })
      if (served.length === 1) return (limit: number) => one(served[0]!, limit)
      return (limit: number) =>
        Effect.gen(function*() {
          const claimed: Array<Store.ClaimedRun> = []
          const first = turn++ % served.length
          for (let i = 0; i < served.length && claimed.length < limit; i++) {
            const result = yield* Effect.result(one(served[(first + i) % served.length]!, limit - claimed.length))
            if (Result.isFailure(result)) {
              if (claimed.length === 0) return yield* result.failure
              break
            }
            claimed.push(...result.success)
          }
          return claimed as ReadonlyArray<Store.ClaimedRun>
        })
    }
    const claim = claimFrom([...groups.values()])

    /**
     * The definition a start uses: the version asked for, else the newest this client knows (the
     * registered definitions of the workflow's name, and the one passed).
     */
    const definitionFor = (workflow: Workflow.Any, version: number | undefined) => {
      const candidates = [...definitions.filter((w) => w.name === workflow.name), workflow]
      if (version === undefined) {
        return Effect.succeed(candidates.reduce((best, w) => w.version > best.version ? w : best))
      }
      const found = candidates.find((w) => w.version === version)
      return found !== undefined ? Effect.succeed(found) : Effect.fail(
        new UnknownVersion({
          workflow: workflow.name,
          version,
          known: [...new Set(candidates.map((w) => w.version))].sort((a, b) => a - b)
        })
      )
    }

    const prepare = <Wf extends Workflow.Any>(chosen: Wf, input: unknown, startOptions: StartOptions | undefined) =>
      Effect.gen(function*() {
        const workflow = yield* definitionFor(chosen, startOptions?.version)
        const encoded = codec(workflow.input).encode(input)
        if (Result.isFailure(encoded)) {
          return yield* new InvalidInput({ workflow: workflow.name, issues: encoded.failure })
        }
        const problem = storeProblem(encoded.success, config.maxPayloadBytes)
        if (problem?._tag === "TooLarge") {
          return yield* new PayloadTooLarge({
            subject: `input of workflow "${workflow.name}"`,
            bytes: problem.bytes,
            limit: config.maxPayloadBytes
          })
        }
        if (problem?._tag === "Unstorable") {
          return yield* new InvalidInput({
            workflow: workflow.name,
            issues: [{ path: problem.path, message: `cannot be stored: ${problem.reason}` }]
          })
        }
        const priority = startOptions?.priority
        const priorityProblem = priority === undefined ? undefined : FlowQueue.priorityProblem(priority)
        if (priorityProblem !== undefined) {
          return yield* new InvalidInput({
            workflow: workflow.name,
            issues: [{ path: "priority", message: `the priority ${String(priority)} ${priorityProblem}` }]
          })
        }
        const key = Flow.keyOf(workflow, input)
        if (Result.isFailure(key)) return yield* key.failure
        const dedup = startOptions?.deduplication
        const debounce = startOptions?.debounce
        const keyProblem = (text: string) =>
          text.length > Flow.maxKeyLength
            ? `is ${text.length} characters long, more than ${Flow.maxKeyLength}`
            : StoredText.problem(text)
        const optionProblem = dedup !== undefined && debounce !== undefined
          ? { path: "debounce", message: "debounce and deduplication cannot be combined" }
          : debounce !== undefined && startOptions?.delay !== undefined
          ? { path: "debounce", message: "debounce and delay cannot be combined (the period is the delay)" }
          : dedup !== undefined && keyProblem(dedup.key) !== undefined
          ? { path: "deduplication.key", message: `the deduplication key ${keyProblem(dedup.key)}` }
          : debounce !== undefined && keyProblem(debounce.key) !== undefined
          ? { path: "debounce.key", message: `the debounce key ${keyProblem(debounce.key)}` }
          : undefined
        if (optionProblem !== undefined) {
          return yield* new InvalidInput({ workflow: workflow.name, issues: [optionProblem] })
        }
        const debouncePeriod = debounce === undefined ? 0 : Duration.toMillis(Duration.fromInputUnsafe(debounce.period))
        const idProblem = startOptions?.id === undefined ? undefined : StoredText.problem(startOptions.id)
        if (idProblem !== undefined) {
          return yield* new InvalidInput({
            workflow: workflow.name,
            issues: [{ path: "id", message: `the run id cannot be stored: ${idProblem}` }]
          })
        }
        const delay = debounce !== undefined
          ? debouncePeriod
          : startOptions?.delay === undefined
          ? 0
          : Duration.toMillis(Duration.fromInputUnsafe(startOptions.delay))
        // With telemetry on, the caller's span becomes the parent of the run's first execution.
        const caller = config.otelEnabled ? yield* Effect.option(Effect.currentParentSpan) : Option.none()
        return {
          id: startOptions?.id ?? RunIds.make(yield* Clock.currentTimeMillis),
          workflow: workflow.name,
          version: workflow.version,
          input: encoded.success,
          delayMillis: delay,
          ...(key.success === undefined ? {} : { concurrencyKey: key.success }),
          ...(priority === undefined || priority === 0 ? {} : { priority }),
          ...(dedup === undefined
            ? {}
            : { deduplication: { key: dedup.key, whileRunning: dedup.whileRunning === true } }),
          ...(debounce === undefined ? {} : {
            deduplication: {
              key: debounce.key,
              whileRunning: false,
              debounce: {
                periodMillis: debouncePeriod,
                maxDelayMillis: debounce.maxDelay === undefined
                  ? undefined
                  : Duration.toMillis(Duration.fromInputUnsafe(debounce.maxDelay))
              }
            }
          }),
          ...(workflow.timeout === undefined ? {} : { timeoutMillis: Duration.toMillis(workflow.timeout) }),
          ...(Option.isSome(caller) ? { trace: { traceId: caller.value.traceId, spanId: caller.value.spanId } } : {})
        } satisfies Store.NewRun
      })

    /**
     * Writes new runs. When this process runs a worker with free slots that knows the workflow, the
     * runs are written already claimed by it and start at once, without a round trip through the
     * queue (their message stays invisible while the lease holds, so a crash still hands them over).
     * The store may decline (inside the caller's transaction); the reserved slots are then released.
     */
    const create = (workflow: Workflow.Any, runs: ReadonlyArray<Store.NewRun>) =>
      Effect.gen(function*() {
        const worker = local.current
        // This process's worker takes the runs at once when it registers their version, and the run
        // is in the default queue (a named queue's runs go through its claim, its limits and priorities).
        const inDefaultQueue = (run: Store.NewRun) =>
          registry.get(Versions.key(run.workflow, run.version ?? 0))?.queue.name === FlowQueue.defaultName
        const eligible = worker !== undefined
          ? runs.filter((run) => (run.delayMillis ?? 0) <= 0 && inDefaultQueue(run)).length
          : 0
        const reserved = eligible > 0 ? worker!.reserve(eligible) : 0
        const leaseMillis = Duration.toMillis(config.lease)
        let given = 0
        const planned = runs.map((run): Store.NewRun => {
          if (given >= reserved || (run.delayMillis ?? 0) > 0) return run
          if (!inDefaultQueue(run)) return run
          given++
          return { ...run, claimFor: { token: `${workerId}:local:${++localClaims}`, leaseMillis } }
        })
        const created = yield* store.createRuns(planned).pipe(
          Effect.onError(() => Effect.sync(() => worker?.release(reserved)))
        )
        let launched = 0
        for (const row of created) {
          if (row.claimed === undefined) continue
          launched++
          yield* worker!.launch(row.claimed)
        }
        if (reserved > launched) worker!.release(reserved - launched)
        for (const row of created) {
          if (!row.created && row.workflow !== workflow.name) {
            return yield* new RunIdConflict({ runId: row.id, workflow: workflow.name, existingWorkflow: row.workflow })
          }
        }
        return created.map((row) => row.id as RunId<any>)
      })

    const start = Effect.fn("Pgflows.start")(function*<Wf extends Workflow.Any>(
      workflow: Wf,
      input: Workflow.Input<Wf>,
      startOptions?: StartOptions
    ) {
      const run = yield* prepare(workflow, input, startOptions)
      const [id] = yield* create(workflow, [run])
      return id as RunId<Wf>
    })

    const startBatch = Effect.fn("Pgflows.startBatch")(function*<Wf extends Workflow.Any>(
      workflow: Wf,
      inputs: ReadonlyArray<Workflow.Input<Wf>>,
      batchOptions?: BatchOptions
    ) {
      const ids = batchOptions?.ids
      if (ids !== undefined && ids.length !== inputs.length) {
        return yield* Effect.die(new Error(`startBatch: ${ids.length} ids for ${inputs.length} inputs`))
      }
      const runs = yield* Effect.forEach(inputs, (input, index) =>
        prepare(workflow, input, {
          id: ids?.[index],
          delay: batchOptions?.delay,
          version: batchOptions?.version,
          priority: batchOptions?.priority
        }))
      return (yield* create(workflow, runs)) as ReadonlyArray<RunId<Wf>>
    })

    const definitionOf = (workflow: string, version: number) => registry.get(Versions.key(workflow, version))

    const decodeOutput = (workflow: string, version: number, output: unknown): unknown => {
      const definition = definitionOf(workflow, version)
      if (definition === undefined) {
        return output
      }
      const decoded = codec(definition.output).decode(output)
      return Result.isSuccess(decoded) ? decoded.success : output
    }

    const decodeError = (workflow: string, version: number, stored: unknown) =>
      decodeFailure(stored, "workflow", definitionOf(workflow, version)?.error)

    const toStepInfo = (step: Store.StepRecord): StepInfo => ({
      key: step.key,
      name: step.name,
      status: step.status,
      attempts: step.attempts,
      output: step.output,
      error: step.error,
      transactional: step.transactional === true,
      startedAt: toDate(step.startedAt),
      completedAt: toDate(step.completedAt),
      wakeAt: toDate(step.wakeAt)
    })

    /** Why a run that is due does not start, when no live worker registers its workflow version. */
    const waitingFor = (run: Store.RunRecord, now: number) =>
      run.status !== "pending" || (run.wakeAt !== null && run.wakeAt > now)
        ? Effect.succeed(undefined)
        : Effect.map(
          Effect.orElseSucceed(store.hasWorkerFor(run.workflow, run.version), () => true),
          (served) =>
            served
              ? undefined
              : `a worker that registers ${Versions.label(run.workflow, run.version)} ` +
                `(no running worker on queue "${config.queue}" does)`
        )

    const status = Effect.fn("Pgflows.status")(function*(id: string) {
      const run = yield* store.getRun(id)
      if (run === undefined) {
        return yield* new RunNotFound({ runId: id })
      }
      const [input, steps, waiting] = yield* Effect.all([
        store.getInput(id),
        store.getSteps(id),
        waitingFor(run, yield* Clock.currentTimeMillis)
      ], { concurrency: "unbounded" })
      return {
        id: run.id,
        workflow: run.workflow,
        version: run.version,
        status: run.status,
        input: input?._tag === "Value" ? input.value : undefined,
        output: run.status === "completed" && run.outcomeTooLarge === undefined
          ? Option.some(decodeOutput(run.workflow, run.version, run.output))
          : Option.none(),
        error: run.status === "failed" && run.outcomeTooLarge === undefined
          ? Option.some(decodeError(run.workflow, run.version, run.error).error)
          : Option.none(),
        executions: run.executions,
        recoveries: run.recoveries,
        parentId: run.parentId ?? undefined,
        forkedFrom: run.forkedFrom ?? undefined,
        createdAt: new Date(run.createdAt),
        updatedAt: new Date(run.updatedAt),
        startedAt: toDate(run.startedAt),
        completedAt: toDate(run.completedAt),
        wakeAt: toDate(run.wakeAt),
        ...(waiting === undefined ? {} : { waitingFor: waiting }),
        steps: [...steps].sort((a, b) => Keys.byExecution(a.key, b.key)).map(toStepInfo)
      } satisfies RunInfo
    })

    const result = Effect.fn("Pgflows.result")(function*(id: string, resultOptions?: { timeout?: Duration.Input }) {
      const wait = Effect.scoped(Effect.gen(function*() {
        const watch = yield* events.watch(id, isEnd)
        let pause = 10
        while (true) {
          // A run executing here announces its end with its outcome: no need to read it meanwhile.
          if (!runner.inflight.has(id)) {
            const run = yield* store.getRun(id)
            if (run === undefined) {
              return yield* new RunNotFound({ runId: id })
            }
            if (isTerminal(run.status)) {
              return run satisfies Ending
            }
          }
          // Woken by the run's end (NOTIFY or a local execution), else polled with backoff.
          const event = yield* watch.next(pause)
          if (Option.isSome(event) && event.value._tag === "Ended") return event.value satisfies Ending
          pause = Math.min(pause * 2, Duration.toMillis(config.pollInterval))
        }
      }))
      const run: Ending = resultOptions?.timeout === undefined
        ? yield* wait
        : yield* wait.pipe(
          Effect.timeoutOrElse({
            duration: resultOptions.timeout,
            orElse: () => Effect.fail(new WaitTimeout({ runId: id }))
          })
        )
      if (run.outcomeTooLarge !== undefined) {
        return yield* new PayloadTooLarge({
          subject: `outcome of run "${id}"`,
          bytes: run.outcomeTooLarge,
          limit: config.maxPayloadBytes
        })
      }
      if (run.status === "completed") return decodeOutput(run.workflow, run.version, run.output)
      if (run.status === "cancelled") return yield* new RunCancelled({ runId: id })
      // One rule: the workflow's own typed error as it is; anything pgflows decided (an engine error,
      // WorkflowTimeout included) or could not decode, inside RunFailed.
      const failure = decodeError(run.workflow, run.version, run.error)
      if (failure._tag === "Own") return yield* Effect.fail(failure.error)
      return yield* new RunFailed({ runId: id, workflow: run.workflow, error: failure.error })
    })

    /** The filters a read shares, checked: its version, its dates, its cursor. */
    const readFilter = (
      operation: string,
      filter: { readonly version?: number | undefined; readonly cursor?: string | undefined },
      dates: Readonly<Record<string, Date | undefined>>
    ) =>
      Effect.gen(function*() {
        const invalid = (reason: string) => new InvalidFilter({ operation, reason })
        const versionProblem = filter.version === undefined ? undefined : Versions.problem(filter.version)
        if (versionProblem !== undefined) return yield* invalid(`the version ${versionProblem}`)
        const millis: Record<string, number | undefined> = {}
        for (const [name, date] of Object.entries(dates)) {
          if (date === undefined) continue
          const time = date instanceof Date ? date.getTime() : Number.NaN
          if (Number.isNaN(time)) return yield* invalid(`${name} must be a valid date`)
          millis[name] = time
        }
        const cursor = filter.cursor === undefined ? undefined : Cursor.decode(filter.cursor)
        if (filter.cursor !== undefined && cursor === undefined) {
          return yield* invalid("the cursor is not a nextCursor of this list")
        }
        return { millis, cursor }
      })

    const list = Effect.fn("Pgflows.list")(function*(listOptions?: ListOptions) {
      const { millis, cursor } = yield* readFilter("list", listOptions ?? {}, {
        createdAfter: listOptions?.createdAfter,
        createdBefore: listOptions?.createdBefore
      })
      const page = yield* store.listRuns({
        workflow: listOptions?.workflow,
        version: listOptions?.version,
        status: listOptions?.status,
        createdAfter: millis.createdAfter,
        createdBefore: millis.createdBefore,
        limit: Math.min(Math.max(1, listOptions?.limit ?? 50), 1000),
        cursor
      })
      return {
        runs: page.runs.map((run): Summary => ({
          id: run.id,
          workflow: run.workflow,
          version: run.version,
          status: run.status,
          executions: run.executions,
          createdAt: new Date(run.createdAt),
          updatedAt: new Date(run.updatedAt),
          completedAt: toDate(run.completedAt)
        })),
        nextCursor: page.nextCursor === undefined ? undefined : Cursor.encode(page.nextCursor)
      } satisfies Page
    })

    const deadLetters = Effect.fn("Pgflows.deadLetters")(function*(letterOptions?: DeadLetterOptions) {
      const { millis, cursor } = yield* readFilter("deadLetters", letterOptions ?? {}, {
        failedAfter: letterOptions?.failedAfter,
        failedBefore: letterOptions?.failedBefore
      })
      const page = yield* store.deadLetters({
        workflow: letterOptions?.workflow,
        version: letterOptions?.version,
        failedAfter: millis.failedAfter,
        failedBefore: millis.failedBefore,
        limit: Math.min(Math.max(1, letterOptions?.limit ?? 50), 1000),
        cursor
      })
      return {
        deadLetters: page.deadLetters.map((letter): DeadLetter => ({
          id: letter.id,
          workflow: letter.workflow,
          version: letter.version,
          executions: letter.executions,
          error: letter.errorTooLarge === undefined
            ? decodeError(letter.workflow, letter.version, letter.error).error
            : undefined,
          ...(letter.errorTooLarge === undefined ? {} : { errorTooLarge: letter.errorTooLarge }),
          createdAt: new Date(letter.createdAt),
          failedAt: new Date(letter.failedAt)
        })),
        nextCursor: page.nextCursor === undefined ? undefined : Cursor.encode(page.nextCursor)
      } satisfies DeadLetterPage
    })

    const counts = Effect.fn("Pgflows.counts")(function*(countOptions?: { readonly workflow?: string | undefined }) {
      const rows = yield* store.countRuns(countOptions?.workflow)
      const none: Count = { count: 0, exact: true }
      const empty = (): { -readonly [S in Status]: Count } => ({
        pending: none,
        running: none,
        suspended: none,
        completed: none,
        failed: none,
        cancelled: none
      })
      const byWorkflow = new Map<string, { -readonly [S in Status]: Count }>()
      const total = empty()
      for (const row of rows) {
        const counted = byWorkflow.get(row.workflow) ?? empty()
        byWorkflow.set(row.workflow, counted)
        const add = (count: Count): Count => ({ count: count.count + row.runs, exact: count.exact && row.exact })
        counted[row.status] = add(counted[row.status])
        total[row.status] = add(total[row.status])
      }
      return {
        workflows: [...byWorkflow].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map((
          [workflow, counted]
        ): WorkflowCounts => ({ workflow, ...counted })),
        total: total satisfies StatusCounts
      } satisfies RunCounts
    })

    const cancel = Effect.fn("Pgflows.cancel")(function*(id: string) {
      const outcome = yield* store.cancel(id)
      if (outcome === "not-found") return yield* new RunNotFound({ runId: id })
      if (outcome === "cancelled") {
        yield* runner.interrupt(id, "cancelled")
        events.publish({ _tag: "Cancelled", runId: id })
      }
      return outcome satisfies CancelOutcome
    })

    const signal = Effect.fn("Pgflows.signal")(function*(id: string, name: string, payload: unknown) {
      const subject = `signal "${name}"`
      const nameProblem = StoredText.problem(name)
      if (nameProblem !== undefined) {
        return yield* new UnstorableValue({ subject: `name of ${subject}`, path: "", reason: nameProblem })
      }
      const encoded = JSON.parse(JSON.stringify(payload ?? null)) as unknown
      const problem = storeProblem(encoded, config.maxPayloadBytes)
      if (problem?._tag === "TooLarge") {
        return yield* new PayloadTooLarge({ subject, bytes: problem.bytes, limit: config.maxPayloadBytes })
      }
      if (problem?._tag === "Unstorable") {
        return yield* new UnstorableValue({
          subject: `payload of ${subject}`,
          path: problem.path,
          reason: problem.reason
        })
      }
      const sent = yield* store.sendSignal(id, name, encoded)
      if (sent === "not-found") return yield* new RunNotFound({ runId: id })
      if (sent === "ended") return yield* new RunEnded({ runId: id })
    })

    const getEvent = Effect.fn("Pgflows.getEvent")(function*(
      id: string,
      key: string,
      eventOptions?: { readonly timeout?: Duration.Input | undefined }
    ) {
      const read = Effect.gen(function*() {
        const event = yield* store.getEvent(id, key)
        if (event !== undefined) return Option.some(event.value)
        const run = yield* store.getRun(id)
        if (run === undefined) return yield* new RunNotFound({ runId: id })
        return Option.none()
      })
      const timeout = eventOptions?.timeout === undefined
        ? 0
        : Duration.toMillis(Duration.fromInputUnsafe(eventOptions.timeout))
      return yield* Effect.scoped(Effect.gen(function*() {
        const watch = yield* events.watch(id, isEvent)
        const deadline = (yield* Clock.currentTimeMillis) + timeout
        let pause = 10
        while (true) {
          const value = yield* read
          if (Option.isSome(value)) return value
          const left = deadline - (yield* Clock.currentTimeMillis)
          if (left <= 0) return value
          yield* watch.next(Math.min(pause, left))
          pause = Math.min(pause * 2, Duration.toMillis(config.pollInterval))
        }
      }))
    })

    const restart = (operation: "retry" | "resume") =>
      Effect.fn(`Pgflows.${operation}`)(function*(id: string) {
        const outcome = yield* store[operation](id)
        if (outcome === "not-found") return yield* new RunNotFound({ runId: id })
        if (outcome === "wrong-state") {
          const run = yield* store.getRun(id)
          return yield* new RunNotRestartable({ runId: id, operation, status: run?.status ?? "unknown" })
        }
        yield* Queue.offer(wakeups, undefined)
      })

    /** The plan of a fork, from what the store holds now; nothing is written. */
    const forkPlan = (id: string, forkOptions: Omit<ForkOptions, "id">) =>
      Effect.gen(function*() {
        const fromStep = typeof forkOptions.fromStep === "string" ? forkOptions.fromStep : forkOptions.fromStep.name
        const run = yield* store.getRun(id)
        if (run === undefined) return yield* new RunNotFound({ runId: id })
        const version = forkOptions.version ?? run.version
        if (forkOptions.version !== undefined) {
          const problem = Versions.problem(forkOptions.version)
          if (problem !== undefined) {
            return yield* new InvalidFork({ runId: id, fromStep, reason: `the version ${problem}` })
          }
          if (definitionOf(run.workflow, version) === undefined) {
            return yield* new UnknownVersion({ workflow: run.workflow, version, known: versionsOf(run.workflow) })
          }
        }
        const journal = yield* store.getSteps(id)
        const point = Fork.resolve(journal, fromStep)
        if (point._tag === "Invalid") return yield* new InvalidFork({ runId: id, fromStep, reason: point.reason })
        return Fork.plan(run, journal, point.key, version)
      })

    const planFork = Effect.fn("Pgflows.planFork")(function*(id: string, forkOptions: Omit<ForkOptions, "id">) {
      return yield* forkPlan(id, forkOptions)
    })

    const fork = Effect.fn("Pgflows.fork")(function*(id: string, forkOptions: ForkOptions) {
      const plan = yield* forkPlan(id, forkOptions)
      const fromStep = typeof forkOptions.fromStep === "string" ? forkOptions.fromStep : forkOptions.fromStep.name
      const forkId = forkOptions.id ?? RunIds.make(yield* Clock.currentTimeMillis)
      const idProblem = StoredText.problem(forkId)
      if (idProblem !== undefined) {
        return yield* new InvalidFork({ runId: id, fromStep, reason: `the fork's id cannot be stored: ${idProblem}` })
      }
      const timeout = definitionOf(plan.workflow, plan.version)?.timeout
      const written = yield* store.forkRun({
        sourceId: id,
        id: forkId,
        version: plan.version,
        keys: plan.kept,
        fromKey: plan.fromKey,
        ...(timeout === undefined ? {} : { timeoutMillis: Duration.toMillis(timeout) })
      })
      if (written._tag === "NotFound") return yield* new RunNotFound({ runId: id })
      // The id was taken: by this same fork (asked again), or by another run.
      if (written._tag === "Exists" && written.forkedFrom?.runId !== id) {
        return yield* new RunIdConflict({ runId: forkId, workflow: plan.workflow, existingWorkflow: written.workflow })
      }
      yield* Queue.offer(wakeups, undefined)
      return { ...plan, id: forkId as RunId } satisfies Forked
    })

    /** The runs a bulk operation selects: checked, counted, nothing written. */
    const select = (operation: BulkResult["operation"], filter: BulkFilter) =>
      Effect.gen(function*() {
        const name = `${operation}Many`
        const invalid = (reason: string) => new InvalidFilter({ operation: name, reason })
        const eligible: ReadonlyArray<Status> = operation === "cancel"
          ? ["pending", "running", "suspended"]
          : operation === "retry"
          ? ["failed"]
          : allStatuses
        const asked: ReadonlyArray<Status> = filter.status === undefined
          ? eligible
          : typeof filter.status === "string"
          ? [filter.status]
          : filter.status
        const unknown = asked.filter((status) => !allStatuses.includes(status))
        if (unknown.length > 0) return yield* invalid(`unknown status ${unknown.join(", ")}`)
        const statuses = asked.filter((status) => eligible.includes(status))
        if (statuses.length === 0) {
          return yield* invalid(`${operation} acts on runs that are ${eligible.join(", ")}, not ${asked.join(", ")}`)
        }
        if (typeof filter.workflow !== "string" || filter.workflow.length === 0) {
          return yield* invalid("the workflow must be named")
        }
        const versionProblem = filter.version === undefined ? undefined : Versions.problem(filter.version)
        if (versionProblem !== undefined) return yield* invalid(`the version ${versionProblem}`)
        const limit = filter.limit ?? 100
        if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
          return yield* invalid(`the limit must be an integer from 1 to 10000, not ${limit}`)
        }
        const after = filter.createdAfter?.getTime()
        const before = filter.createdBefore?.getTime()
        if ((after !== undefined && Number.isNaN(after)) || (before !== undefined && Number.isNaN(before))) {
          return yield* invalid("createdAfter and createdBefore must be valid dates")
        }
        if (after !== undefined && before !== undefined && after >= before) {
          return yield* invalid("createdAfter must be earlier than createdBefore")
        }
        const found = yield* store.findRuns({
          workflow: filter.workflow,
          version: filter.version,
          statuses,
          createdAfter: after,
          createdBefore: before,
          limit
        })
        if (found.total === 0) {
          const described = [
            `workflow "${filter.workflow}"`,
            filter.version === undefined ? undefined : `version ${filter.version}`,
            `status ${statuses.join(" or ")}`,
            after === undefined ? undefined : `created from ${new Date(after).toISOString()}`,
            before === undefined ? undefined : `created before ${new Date(before).toISOString()}`
          ].filter((part) => part !== undefined).join(", ")
          return yield* new NoRunsMatched({ operation: name, filter: described })
        }
        return found
      })

    /** Applies `act` to each selected run (a few at a time); what it could not do is skipped, with why. */
    const each = <E>(
      ids: ReadonlyArray<string>,
      act: (id: string, index: number) => Effect.Effect<string | undefined, E>
    ) =>
      Effect.map(
        Effect.forEach(ids, (id, index) => Effect.map(act(id, index), (skipped) => ({ id, skipped })), {
          concurrency: 8
        }),
        (outcomes) => ({
          done: outcomes.filter((o) => o.skipped === undefined).map((o) => o.id),
          skipped: outcomes.flatMap((o) => o.skipped === undefined ? [] : [{ runId: o.id, reason: o.skipped }])
        })
      )

    const cancelMany = Effect.fn("Pgflows.cancelMany")(function*(filter: BulkFilter, bulkOptions?: BulkOptions) {
      const found = yield* select("cancel", filter)
      const dryRun = bulkOptions?.dryRun === true
      const outcome = dryRun ? { done: [], skipped: [] } : yield* each(found.ids, (id) =>
        cancel(id).pipe(
          Effect.map((result) => result === "cancelled" ? undefined : "it ended meanwhile"),
          Effect.catchTag("RunNotFound", () => Effect.succeed("it no longer exists"))
        ))
      return { operation: "cancel", dryRun, matched: found.total, selected: found.ids, ...outcome } satisfies BulkResult
    })

    const retryMany = Effect.fn("Pgflows.retryMany")(function*(filter: BulkFilter, bulkOptions?: BulkOptions) {
      const found = yield* select("retry", filter)
      const dryRun = bulkOptions?.dryRun === true
      const outcome = dryRun ? { done: [], skipped: [] } : yield* each(found.ids, (id) =>
        store.retry(id).pipe(
          Effect.map((result) =>
            result === "restarted" ? undefined : result === "not-found" ? "it no longer exists" : "it is not failed"
          )
        ))
      if (outcome.done.length > 0) yield* Queue.offer(wakeups, undefined)
      return { operation: "retry", dryRun, matched: found.total, selected: found.ids, ...outcome } satisfies BulkResult
    })

    const forkMany = Effect.fn("Pgflows.forkMany")(function*(
      filter: BulkFilter,
      forkOptions: Omit<ForkOptions, "id"> & BulkOptions
    ) {
      const found = yield* select("fork", filter)
      if (forkOptions.version !== undefined && definitionOf(filter.workflow, forkOptions.version) === undefined) {
        return yield* new UnknownVersion({
          workflow: filter.workflow,
          version: forkOptions.version,
          known: versionsOf(filter.workflow)
        })
      }
      const dryRun = forkOptions.dryRun === true
      // In the order of the selection, whatever order the forks finish in.
      const forks: Array<ForkPlan | Forked | undefined> = found.ids.map(() => undefined)
      const attempt = (
        id: string
      ): Effect.Effect<ForkPlan | Forked, InvalidFork | RunNotFound | RunIdConflict | UnknownVersion | StoreError> =>
        dryRun ? forkPlan(id, forkOptions) : fork(id, { fromStep: forkOptions.fromStep, version: forkOptions.version })
      const outcome = yield* each(found.ids, (id, index) =>
        attempt(id)
          .pipe(
            Effect.map((forked) => {
              forks[index] = forked
              return undefined
            }),
            Effect.catchTags({
              InvalidFork: (error) => Effect.succeed(error.reason),
              RunNotFound: () => Effect.succeed("it no longer exists"),
              RunIdConflict: (error) => Effect.succeed(error.message),
              UnknownVersion: (error) => Effect.succeed(error.message)
            })
          ))
      return {
        operation: "fork",
        dryRun,
        matched: found.total,
        selected: found.ids,
        done: dryRun ? [] : outcome.done,
        skipped: outcome.skipped,
        forks: forks.filter((fork) => fork !== undefined)
      } satisfies BulkForkResult
    })

    const purge = Effect.fn("Pgflows.purge")(function*(purgeOptions: PurgeOptions) {
      const invalid = (reason: string) => new InvalidFilter({ operation: "purge", reason })
      const before = purgeOptions.before instanceof Date ? purgeOptions.before.getTime() : Number.NaN
      if (Number.isNaN(before)) return yield* invalid("before must be a valid date")
      const now = yield* Clock.currentTimeMillis
      if (before > now) {
        return yield* invalid(
          `before (${new Date(before).toISOString()}) is in the future: only runs that already ended can be purged`
        )
      }
      const asked: ReadonlyArray<string> = purgeOptions.status === undefined
        ? Retention.endedStatuses
        : typeof purgeOptions.status === "string"
        ? [purgeOptions.status]
        : purgeOptions.status
      const wrong = asked.filter((status) => !(Retention.endedStatuses as ReadonlyArray<string>).includes(status))
      if (wrong.length > 0) {
        return yield* invalid(
          `purge deletes runs that ended (${Retention.endedStatuses.join(", ")}), not ${wrong.join(", ")}`
        )
      }
      if (asked.length === 0) return yield* invalid("the status list is empty")
      if (
        purgeOptions.workflow !== undefined &&
        (typeof purgeOptions.workflow !== "string" || purgeOptions.workflow.length === 0)
      ) {
        return yield* invalid("the workflow must be a non-empty name")
      }
      const purged = yield* RetentionLoop.purge(store, {
        before,
        statuses: [...new Set(asked)] as ReadonlyArray<Retention.EndedStatus>,
        workflow: purgeOptions.workflow
      }, { source: "purge", pause: false })
      return purged satisfies PurgeResult
    })

    const exportHistory = (id: string) =>
      RunHistory.read(id).pipe(Effect.provideService(Store.Store, store), Effect.withSpan("Pgflows.exportHistory"))

    const runsInFlight = (workflow?: string) =>
      Effect.map(store.inFlight, (rows) =>
        workflow === undefined ? rows : rows.filter((row) => row.workflow === workflow))

    // Interrupted, it hands back the runs it claimed (as a stopping worker does without a grace).
    const processOnce = Effect.gen(function*() {
      const claimed = yield* claim(config.workerConcurrency)
      const fibers = yield* Effect.forEach(claimed, runner.launch)
      yield* Fiber.awaitAll(fibers).pipe(
        Effect.onInterrupt(() =>
          runner.handBack([...runner.inflight.values()].filter(({ fiber }) =>
            fibers.includes(fiber)
          ))
        )
      )
      return claimed.length
    }).pipe(Effect.withSpan("Pgflows.processOnce"))

    const runWorker = (workerOptions?: WorkerOptions) =>
      Effect.suspend(() => {
        const names = workerOptions?.queues?.map((queue) => typeof queue === "string" ? queue : queue.name)
        const unknown = names?.filter((name) => !groups.has(name)) ?? []
        if (unknown.length > 0) {
          return Effect.die(
            new Error(
              `runWorker: no registered workflow is in queue ${unknown.map((name) => `"${name}"`).join(", ")} ` +
                `(the queues are ${[...groups.keys()].map((name) => `"${name}"`).join(", ")})`
            )
          )
        }
        const served = names === undefined ?
          [...groups.values()] :
          [...groups.values()].filter((group) => names.includes(group.queue.name))
        return Worker.run({
          runner,
          config,
          store,
          workflows: served.flatMap((group) => group.workflows),
          claim: claimFrom(served),
          wakeups,
          local,
          concurrency: workerOptions?.concurrency ?? config.workerConcurrency,
          retention: retentionRules,
          // A limited queue's slot freed by one of this worker's runs may let it claim another at once.
          wakeOnEnd: served.some((group) => FlowQueue.isLimited(group.queue)),
          queues: served.filter((group) => group.queue.name !== FlowQueue.defaultName).map((group) => ({
            queue: claimQueue(group.queue),
            workflows: group.workflows
          }))
        })
      })

    const queueMetrics = (queue?: string) =>
      Effect.gen(function*() {
        const name = queue ?? config.queue
        const metrics = yield* queues.metrics(name)
        const named = name === config.queue
          ? [...groups.values()].filter((group) => group.queue.name !== FlowQueue.defaultName)
          : []
        const states = yield* Effect.forEach(
          named,
          (group) => store.queueState(claimQueue(group.queue), group.workflows)
        )
        return { ...metrics, queues: states } satisfies QueueMetrics
      })

    return Pgflows.of({
      start: start as Pgflows["Service"]["start"],
      startBatch: startBatch as Pgflows["Service"]["startBatch"],
      status: status as Pgflows["Service"]["status"],
      result: result as unknown as Pgflows["Service"]["result"],
      list,
      counts,
      deadLetters,
      cancel,
      signal,
      getEvent,
      retry: restart("retry"),
      resume: restart("resume"),
      fork,
      planFork,
      cancelMany,
      retryMany,
      forkMany,
      purge,
      exportHistory,
      runsInFlight,
      processOnce,
      runWorker,
      queueMetrics,
      listQueues: queues.list,
      purgeQueue: queues.purge,
      dropQueue: queues.drop,
      workflows: newest,
      definitions
    })
  })

/** A named queue as the store's claims see it. */
const claimQueue = (queue: FlowQueue.FlowQueue): Store.ClaimQueue => ({
  name: queue.name,
  concurrency: queue.concurrency,
  keyConcurrency: queue.keyConcurrency,
  ...(queue.rateLimit === undefined ? {} : {
    rateLimit: {
      limit: queue.rateLimit.limit,
      periodMillis: Duration.toMillis(queue.rateLimit.period),
      perKey: queue.rateLimit.perKey
    }
  })
})

/** A queue of the registered workflows, and their versions in it. */
interface ClaimGroup {
  readonly queue: FlowQueue.FlowQueue
  readonly workflows: Array<Store.WorkflowVersion>
}

/** A run's end as `result` needs it: from the store, or from the event of a local execution. */
interface Ending {
  readonly workflow: string
  readonly version: number
  readonly status: Status
  readonly output: unknown
  readonly error: unknown
  readonly outcomeTooLarge?: number | undefined
}

const toDate = (millis: number | null): Date | undefined => millis === null ? undefined : new Date(millis)
