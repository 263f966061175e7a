/**
 * The worker loop behind `Pgflows.runWorker`: claims due runs of the workflows this process
 * registers (woken by NOTIFY, polling as a fallback), runs up to `concurrency` at once, announces
 * itself so that runs no worker can take are shown as such, and stops gracefully.
 *
 * Stopping (the fiber interrupted: SIGTERM under `NodeRuntime.runMain`, a scope that closes, a
 * `Fiber.interrupt`): no more claims and no more hand-offs from `start`; the runs in flight get
 * `PgflowsConfig.shutdownGrace` to finish; the rest are handed back (lease released, message
 * visible), so another worker takes them at once instead of waiting for their lease to expire
 * (docs/ARCHITECTURE.md, "Shutdown").
 *
 * A worker never fails a run it cannot execute: it reads only messages of the workflow versions it
 * registers. Runs due for longer than `PgflowsConfig.unclaimedWarning` whose workflow version no live
 * worker registers are logged and counted in `Metrics.runsWithoutWorker`; the runs not ended of each
 * version are counted in `Metrics.runsInFlight`, so an operator sees when an old version is drained.
 * A worker whose workflows have a retention policy prunes their ended runs in the background
 * (`retention.ts`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Metrics from "../Metrics.ts"
import type * as PgflowsConfig from "../PgflowsConfig.ts"
import type { StoreError } from "../PgflowsError.ts"
import type * as Store from "../Store.ts"
import * as Retention from "./retention.ts"
import type * as Runner from "./runner.ts"
import * as Slots from "./slots.ts"
import * as Versions from "./versions.ts"

export interface Options {
  readonly runner: Runner.Runner
  readonly config: PgflowsConfig.PgflowsConfig
  readonly store: Store.Store["Service"]
  readonly workflows: ReadonlyArray<Store.WorkflowVersion>
  readonly claim: (limit: number) => Effect.Effect<ReadonlyArray<Store.ClaimedRun>, StoreError>
  /** Offered a value when runs may have become claimable (NOTIFY, a run handed back, a freed slot). */
  readonly wakeups: Queue.Queue<void>
  /** Where `start` finds the worker of this process for the local fast path. */
  readonly local: { current: Slots.LocalWorker | undefined }
  readonly concurrency: number
  /** Claim again whenever one of its executions ends (it serves a limited queue, whose slot it freed). */
  readonly wakeOnEnd?: boolean | undefined
  /** The named queues it serves, whose state it sets in `Metrics.queue*`. */
  readonly queues?:
    | ReadonlyArray<{
      readonly queue: Store.ClaimQueue
      readonly workflows: ReadonlyArray<Store.WorkflowVersion>
    }>
    | undefined
  /** The workflows whose ended runs this worker prunes, and their policies (see `retention.ts`). */
  readonly retention: ReadonlyArray<Retention.Rule>
}

/** Claims at most this many runs per statement. */
const claimBatch = 64

export const run = (options: Options): Effect.Effect<never> =>
  Effect.gen(function*() {
    const { runner, config, store, claim, wakeups, concurrency } = options
    const worker = runner.worker
    const slots = Slots.make(concurrency, () => Queue.offerUnsafe(wakeups, undefined), options.wakeOnEnd === true)
    const previous = options.local.current
    options.local.current = Slots.local(slots, runner, yield* Effect.context<never>())

    const ttl = Duration.toMillis(config.lease)
    const announce = store.announceWorker({ worker, workflows: options.workflows, ttlMillis: ttl })
    yield* Effect.ignore(announce)
    yield* Effect.forkScoped(
      Effect.forever(Effect.andThen(Effect.sleep(Duration.millis(ttl / 3)), Effect.ignore(announce)))
    )
    yield* Effect.forkScoped(watchUnclaimed(store, config))
    yield* Effect.forkScoped(watchInFlight(store, config))
    if ((options.queues ?? []).length > 0) yield* Effect.forkScoped(watchQueues(store, config, options.queues ?? []))
    if (options.retention.length > 0) {
      yield* Effect.forkScoped(Retention.run(store, options.retention, config.retentionInterval))
    }

    // Added after the fibers above, so it runs first when the loop stops (finalizers run in reverse).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        options.local.current = previous
        const mine = [...slots.running]
        yield* Effect.logInfo(`pgflows: worker ${worker} stopping, ${mine.length} runs in flight`)
        // The wait is a race of forked fibers, so it ends at the grace even inside this finalizer.
        yield* Effect.timeoutOption(Fiber.awaitAll(mine), config.shutdownGrace)
        const remaining = [...runner.inflight.values()].filter(({ fiber }) => slots.running.has(fiber))
        yield* runner.handBack(remaining)
        yield* Effect.ignore(store.retireWorker(worker))
        yield* Effect.logInfo(`pgflows: worker ${worker} stopped, ${remaining.length} runs handed back`)
      })
    )
    yield* Effect.logInfo(`pgflows: worker ${worker} started (concurrency ${concurrency})`)
    let failing = 0
    while (true) {
      // The engine is closing (its layer's scope): it lets its runs finish, this loop claims no more.
      const free = runner.closing() ? 0 : slots.free()
      if (free > 0) {
        const limit = Math.min(free, claimBatch)
        const claimed = yield* Effect.result(claim(limit))
        if (Result.isFailure(claimed)) {
          failing++
          const pause = Math.min(100 * 2 ** Math.min(failing, 6), 5000)
          yield* Effect.logWarning(
            `pgflows: worker ${worker} cannot claim runs (${claimed.failure.message}); retrying in ${pause} ms`
          )
          yield* Effect.sleep(Duration.millis(pause))
          continue
        }
        if (failing > 0) {
          yield* Effect.logInfo(`pgflows: worker ${worker} reaches the store again`)
          failing = 0
        }
        for (const run of claimed.success) slots.track(yield* runner.launch(run))
        if (claimed.success.length === limit) continue
      }
      // Idle (or full): wait for a NOTIFY, a freed slot, the next due message, or the poll interval.
      const next = free > 0 ? yield* Effect.orElseSucceed(store.nextWakeup, () => undefined) : undefined
      const wait = Math.min(Duration.toMillis(config.pollInterval), next ?? Infinity)
      yield* Queue.take(wakeups).pipe(Effect.timeoutOption(Duration.millis(Math.max(1, wait))))
    }
  }).pipe(Effect.scoped) as Effect.Effect<never>

/** How often a worker looks for runs nobody can claim. */
const watchEvery = (config: PgflowsConfig.PgflowsConfig): Duration.Duration =>
  Duration.millis(Math.min(60_000, Math.max(1000, 10 * Duration.toMillis(config.pollInterval))))

/** Repeats a warning about the same workflow and count at most this often. */
const warnAgainAfter = 10 * 60_000

/** The attributes of a per-version gauge. */
const attributes = (workflow: string, version: number) => ({ workflow, version: String(version) })

/**
 * Logs and counts the due runs of workflow versions no live worker registers, once they waited
 * longer than `unclaimedWarning`; a version that is served again is counted 0.
 */
const watchUnclaimed = (store: Store.Store["Service"], config: PgflowsConfig.PgflowsConfig) =>
  Effect.gen(function*() {
    const threshold = Duration.toMillis(config.unclaimedWarning)
    const warned = new Map<string, { readonly workflow: string; readonly version: number; runs: number; at: number }>()
    let elapsed = 0
    while (true) {
      yield* Effect.sleep(watchEvery(config))
      elapsed += Duration.toMillis(watchEvery(config))
      const found = yield* Effect.orElseSucceed(store.unclaimed(threshold), () => undefined)
      if (found === undefined) continue
      const seen = new Set<string>()
      for (const { workflow, version, runs } of found) {
        const key = Versions.key(workflow, version)
        seen.add(key)
        yield* Metric.update(Metric.withAttributes(Metrics.runsWithoutWorker, attributes(workflow, version)), runs)
        const last = warned.get(key)
        if (last !== undefined && last.runs === runs && elapsed - last.at < warnAgainAfter) continue
        warned.set(key, { workflow, version, runs, at: elapsed })
        yield* Effect.logWarning(
          `pgflows: ${runs} runs of ${Versions.label(workflow, version)} have waited more than ` +
            `${Duration.format(config.unclaimedWarning)} for a worker that registers it; no running worker does ` +
            `(deploy one with ${version === 0 ? "it" : "a definition of that version"} in Pgflows.layer({ workflows }))`
        )
      }
      for (const [key, last] of warned) {
        if (seen.has(key)) continue
        warned.delete(key)
        yield* Metric.update(
          Metric.withAttributes(Metrics.runsWithoutWorker, attributes(last.workflow, last.version)),
          0
        )
      }
    }
  })

/**
 * Sets `Metrics.runsInFlight` for every workflow version with runs that have not ended, at the pace
 * of `watchUnclaimed`; a version whose runs all ended is set to 0 once.
 */
const watchInFlight = (store: Store.Store["Service"], config: PgflowsConfig.PgflowsConfig) =>
  Effect.gen(function*() {
    let previous = new Map<string, Store.InFlight>()
    while (true) {
      yield* Effect.sleep(watchEvery(config))
      const found = yield* Effect.orElseSucceed(store.inFlight, () => undefined)
      if (found === undefined) continue
      const current = new Map(found.map((row) => [Versions.key(row.workflow, row.version), row]))
      for (const row of current.values()) {
        yield* Metric.update(
          Metric.withAttributes(Metrics.runsInFlight, attributes(row.workflow, row.version)),
          row.runs
        )
      }
      for (const [key, row] of previous) {
        if (current.has(key)) continue
        yield* Metric.update(Metric.withAttributes(Metrics.runsInFlight, attributes(row.workflow, row.version)), 0)
      }
      previous = current
    }
  })

/**
 * Sets the `Metrics.queue*` gauges of the named queues this worker serves, at the pace of
 * `watchInFlight`; a key whose runs all ended is set to 0 once.
 */
const watchQueues = (
  store: Store.Store["Service"],
  config: PgflowsConfig.PgflowsConfig,
  queues: NonNullable<Options["queues"]>
) =>
  Effect.gen(function*() {
    const previous = new Map<string, ReadonlySet<string>>()
    while (true) {
      yield* Effect.sleep(watchEvery(config))
      for (const { queue, workflows } of queues) {
        const state = yield* Effect.orElseSucceed(store.queueState(queue, workflows), () => undefined)
        if (state === undefined) continue
        const attributes = { queue: queue.name }
        yield* Metric.update(Metric.withAttributes(Metrics.queueDue, attributes), state.due)
        yield* Metric.update(Metric.withAttributes(Metrics.queueRunning, attributes), state.running)
        yield* Metric.update(Metric.withAttributes(Metrics.queueThrottled, attributes), state.throttled)
        const keys = new Set(state.runningByKey.map((row) => row.key))
        for (const row of state.runningByKey) {
          yield* Metric.update(
            Metric.withAttributes(Metrics.queueRunningByKey, { queue: queue.name, key: row.key }),
            row.running
          )
        }
        for (const key of previous.get(queue.name) ?? []) {
          if (keys.has(key)) continue
          yield* Metric.update(Metric.withAttributes(Metrics.queueRunningByKey, { queue: queue.name, key }), 0)
        }
        previous.set(queue.name, keys)
      }
    }
  })
