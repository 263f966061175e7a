/**
 * Metrics the engine keeps by itself (without a plugin), read with `Metric.value` or exported with
 * the application's metrics exporter.
 *
 * @example
 * ```ts
 * const waiting = yield* Metric.value(
 *   Metric.withAttributes(Metrics.runsWithoutWorker, { workflow: "order", version: "0" })
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"

/**
 * Runs that are due but wait, longer than `PgflowsConfig.unclaimedWarning`, for a worker that
 * registers their workflow version (attributes `workflow` and `version`, `"0"` for a definition
 * without one). Set by running workers at every check; during a rolling deploy that adds a workflow
 * or a version it rises until a new worker starts, and it should stay 0.
 *
 * @category metrics
 * @since 0.1.0
 */
export const runsWithoutWorker = Metric.gauge("pgflows_runs_without_worker", {
  description: "Due runs that wait past PGFLOWS_UNCLAIMED_WARNING for a worker registering their workflow"
})

/**
 * Runs that have not ended, per workflow version (attributes `workflow` and `version`). Set by
 * running workers at the pace of `runsWithoutWorker`'s checks; when an old version reads 0, its
 * runs are drained and the workers that register it can go.
 *
 * @category metrics
 * @since 0.1.0
 */
export const runsInFlight = Metric.gauge("pgflows_runs_in_flight", {
  description: "Runs that have not ended, per workflow version"
})

/**
 * Due runs of a named queue, waiting for a worker or a slot (attribute `queue`). Set by the running
 * workers that serve the queue, at the pace of `runsInFlight`.
 *
 * @category metrics
 * @since 0.1.0
 */
export const queueDue = Metric.gauge("pgflows_queue_due", {
  description: "Due runs of a named queue waiting for a worker or a slot"
})

/**
 * Runs of a named queue executing (holding a slot), across all workers (attribute `queue`).
 *
 * @category metrics
 * @since 0.1.0
 */
export const queueRunning = Metric.gauge("pgflows_queue_running", {
  description: "Runs of a named queue executing, across all workers"
})

/**
 * Runs of a named queue executing per concurrency key (attributes `queue` and `key`); a key whose
 * runs all ended is set to 0 once. One series per key: mind the cardinality of the keys.
 *
 * @category metrics
 * @since 0.1.0
 */
export const queueRunningByKey = Metric.gauge("pgflows_queue_running_by_key", {
  description: "Runs of a named queue executing, per concurrency key"
})

/**
 * Due runs of a named queue that its limits (the queue's, or their key's) hold back now
 * (attribute `queue`).
 *
 * @category metrics
 * @since 0.1.0
 */
export const queueThrottled = Metric.gauge("pgflows_queue_throttled", {
  description: "Due runs of a named queue held back by its limits"
})

/**
 * Runs deleted by retention (attribute `source`: `retention` for the background pruning of a worker,
 * `purge` for `Pgflows.purge`), each with its descendants, journal, signals, events and archived
 * messages (docs/ARCHITECTURE.md, "Retention").
 *
 * @category metrics
 * @since 0.1.0
 */
export const runsPruned = Metric.counter("pgflows_runs_pruned", {
  description: "Ended runs deleted by retention or purge",
  incremental: true
})

/**
 * Rows of every table deleted with those runs (the runs, their journal entries, signals, events,
 * archived queue messages, rows of the tables of failed and cancelled runs); attribute `source` as
 * for `runsPruned`.
 *
 * @category metrics
 * @since 0.1.0
 */
export const rowsPruned = Metric.counter("pgflows_rows_pruned", {
  description: "Rows deleted with the runs that retention or purge deleted",
  incremental: true
})
