/**
 * A plugin that keeps Effect `Metric`s of runs and steps, exported by whatever exports the
 * application's metrics (for example `@effect/opentelemetry`'s `OtelMetrics` or a Prometheus
 * endpoint reading `Metric.snapshot`).
 *
 * - `pgflows_runs_started_total`, `pgflows_runs_completed_total`, `pgflows_runs_failed_total`,
 *   `pgflows_runs_cancelled_total`: counters with the attribute `workflow` (a run counts as started
 *   at its first execution, not when it resumes);
 * - `pgflows_step_attempts_total`: a counter with the attributes `step` and `outcome` (`completed`,
 *   `retried` or `failed`);
 * - `pgflows_step_duration_ms`: a histogram of attempt durations with the attribute `step`.
 *
 * @example
 * ```ts
 * const Live = Pgflows.layerPg({ workflows: [order], plugins: [MetricsPlugin.plugin] })
 * const completed = yield* Metric.value(Metric.withAttributes(MetricsPlugin.runsCompleted, { workflow: "order" }))
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Plugin from "./Plugin.ts"

/**
 * @category metrics
 * @since 0.1.0
 */
export const runsStarted = Metric.counter("pgflows_runs_started_total", {
  description: "Runs whose first execution started",
  incremental: true
})

/**
 * @category metrics
 * @since 0.1.0
 */
export const runsCompleted = Metric.counter("pgflows_runs_completed_total", {
  description: "Runs that completed",
  incremental: true
})

/**
 * @category metrics
 * @since 0.1.0
 */
export const runsFailed = Metric.counter("pgflows_runs_failed_total", {
  description: "Runs that failed",
  incremental: true
})

/**
 * @category metrics
 * @since 0.1.0
 */
export const runsCancelled = Metric.counter("pgflows_runs_cancelled_total", {
  description: "Runs cancelled while a worker executed them",
  incremental: true
})

/**
 * @category metrics
 * @since 0.1.0
 */
export const stepAttempts = Metric.counter("pgflows_step_attempts_total", {
  description: "Step attempts, by step and outcome",
  incremental: true
})

/**
 * @category metrics
 * @since 0.1.0
 */
export const stepDuration = Metric.histogram("pgflows_step_duration_ms", {
  description: "Duration of step attempts in milliseconds",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 20 })
})

/**
 * The metrics plugin.
 *
 * @category constructors
 * @since 0.1.0
 */
export const plugin: Plugin.Plugin = Plugin.make("pgflows/metrics", {
  beforeWorkflow: (event) =>
    event.resumed ? Effect.void : Metric.update(Metric.withAttributes(runsStarted, { workflow: event.workflow }), 1),
  afterWorkflow: (event) => Metric.update(Metric.withAttributes(runsCompleted, { workflow: event.workflow }), 1),
  onWorkflowError: (event) => Metric.update(Metric.withAttributes(runsFailed, { workflow: event.workflow }), 1),
  onWorkflowCancelled: (event) => Metric.update(Metric.withAttributes(runsCancelled, { workflow: event.workflow }), 1),
  afterStep: (event) =>
    Effect.andThen(
      Metric.update(Metric.withAttributes(stepAttempts, { step: event.step, outcome: "completed" }), 1),
      Metric.update(Metric.withAttributes(stepDuration, { step: event.step }), event.durationMillis)
    ),
  onStepError: (event) =>
    Effect.andThen(
      Metric.update(
        Metric.withAttributes(stepAttempts, { step: event.step, outcome: event.final ? "failed" : "retried" }),
        1
      ),
      Metric.update(Metric.withAttributes(stepDuration, { step: event.step }), event.durationMillis)
    )
})
