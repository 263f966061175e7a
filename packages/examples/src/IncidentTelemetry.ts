/**
 * What the AI SRE example's workers report, and how: a plugin of our own that prints one progress
 * line per workflow and step event (next to pgflows' `LoggingPlugin`, which logs them, and
 * `MetricsPlugin`, which counts them), an OpenTelemetry tracer provider that keeps the finished
 * spans in memory, and the summary a worker prints when it stops: step attempts by outcome (from the
 * metrics) and the names of the spans it exported.
 *
 * In production the tracer provider would send spans to a collector (an OTLP exporter, or
 * `NodeSdk.layer` from `@effect/opentelemetry`); the in-memory exporter lets the example show them.
 *
 * @since 0.1.0
 */
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { MetricsPlugin, Plugin } from "pgflows"

/**
 * A progress plugin: `write` gets one line per event (replayed steps fire nothing, so a step that a
 * worker takes over from the journal prints nothing either).
 *
 * @category constructors
 * @since 0.1.0
 */
export const progress = (write: (line: string) => Effect.Effect<void>): Plugin.Plugin =>
  Plugin.make("sre/progress", {
    beforeWorkflow: (event) => write(`${event.runId} ${event.workflow} ${event.resumed ? "resumed" : "started"}`),
    afterWorkflow: (event) => write(`${event.runId} ${event.workflow} completed: ${describe(event.output)}`),
    onWorkflowError: (event) => write(`${event.runId} ${event.workflow} failed: ${describeError(event.error)}`),
    afterStep: (event) =>
      write(`${event.runId} ${event.step} done (attempt ${event.attempt}): ${describe(event.output)}`),
    onStepError: (event) =>
      write(
        `${event.runId} ${event.step} attempt ${event.attempt} failed${event.final ? "" : ", retrying"}: ${
          describeError(event.error)
        }`
      )
  })

/**
 * A tracer provider that keeps finished spans in memory, and its layer for `@effect/opentelemetry`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const inMemoryTracing = () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const layer = OtelTracer.layer.pipe(Layer.provide(Layer.succeed(OtelTracer.OtelTracerProvider, provider)))
  return { exporter, layer }
}

/**
 * Step attempts by step and outcome, from `MetricsPlugin`'s counter:
 * `check_health: completed 1, retried 3`, one string per step, in name order.
 *
 * @category constructors
 * @since 0.1.0
 */
export const stepAttempts: Effect.Effect<ReadonlyArray<string>> = Effect.map(Metric.snapshot, (snapshots) => {
  const byStep = new Map<string, Map<string, number>>()
  for (const snapshot of snapshots) {
    if (snapshot.id !== MetricsPlugin.stepAttempts.id || snapshot.type !== "Counter") continue
    const attributes = (snapshot.attributes ?? {}) as Record<string, string>
    const step = attributes["step"] ?? "?"
    const outcomes = byStep.get(step) ?? new Map<string, number>()
    outcomes.set(attributes["outcome"] ?? "?", Number(snapshot.state.count))
    byStep.set(step, outcomes)
  }
  return [...byStep.keys()].sort().map((step) =>
    `${step}: ${
      [...byStep.get(step)!].sort(([a], [b]) => a.localeCompare(b)).map(([outcome, n]) => `${outcome} ${n}`).join(
        ", "
      )
    }`
  )
})

/**
 * The distinct names of the finished spans, with how many of each: `pgflows.step diagnose x2`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const spanNames = (exporter: InMemorySpanExporter): ReadonlyArray<string> => {
  const counts = new Map<string, number>()
  for (const span of exporter.getFinishedSpans()) counts.set(span.name, (counts.get(span.name) ?? 0) + 1)
  return [...counts.keys()].sort().map((name) => `${name} x${counts.get(name)}`)
}

/**
 * A one-line description of a step's or workflow's output.
 *
 * @category constructors
 * @since 0.1.0
 */
export const describe = (output: unknown): string => {
  const value = output as Record<string, any> | null | undefined
  if (value === null || typeof value !== "object") return JSON.stringify(output)
  if ("errorRate" in value) {
    return `${value.status}, error rate ${(value.errorRate * 100).toFixed(1)}%, p99 ${value.p99Millis} ms, ` +
      `version ${value.version}`
  }
  if ("confidence" in value) return `${value.action} (confidence ${value.confidence}, ${value.model}): ${value.summary}`
  if ("approvedBy" in value) return `${value.action} applied, approved by ${value.approvedBy}`
  if ("reverted" in value) return `${value.reverted} reverted`
  if ("paged" in value) return `paged ${value.paged}`
  if ("outcome" in value) return `${value.outcome}: ${value.detail}`
  return JSON.stringify(output)
}

/**
 * `Tag: message` of a typed error.
 *
 * @category constructors
 * @since 0.1.0
 */
export const describeError = (error: unknown): string => {
  if (error instanceof Error) return `${(error as { _tag?: string })._tag ?? error.name}: ${error.message}`
  return JSON.stringify(error)
}
