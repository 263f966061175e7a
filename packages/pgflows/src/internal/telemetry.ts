/**
 * Spans of workflow executions and step attempts, made only when `PgflowsConfig.otelEnabled` is on.
 *
 * The tracer is the application's when it installed one (an Effect `Tracer`, for example from
 * `NodeSdk.layer` or `OtelTracer.layer`), else an OpenTelemetry tracer from the `OtelTracer` in
 * context, else one from the global `TracerProvider` (what an application that set up the
 * OpenTelemetry SDK itself has).
 */
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import * as Otel from "@opentelemetry/api"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import type * as Store from "../Store.ts"

/** The journal entry that keeps the span context of a run's first execution. */
export const traceKey = "trace"
export const traceName = "pgflows.trace"

/** A span context, as stored with the run. */
export type TraceContext = Store.TraceContext

export const isTraceContext = (value: unknown): value is TraceContext =>
  typeof value === "object" && value !== null && typeof (value as TraceContext).traceId === "string" &&
  typeof (value as TraceContext).spanId === "string"

/** The tracer for pgflows' spans, given the services the `Pgflows` layer was built with. */
export const tracerFor = (services: Context.Context<never>): Effect.Effect<Tracer.Tracer> => {
  const installed = Context.get(services, Tracer.Tracer)
  if (installed !== Tracer.nativeTracer) return Effect.succeed(installed)
  const otel = Context.getOption(services, OtelTracer.OtelTracer)
  const tracer = Option.isSome(otel) ? otel.value : Otel.trace.getTracerProvider().getTracer("pgflows")
  return OtelTracer.make.pipe(Effect.provideService(OtelTracer.OtelTracer, tracer))
}

/** A link to the first execution's span, for an execution that resumes a run. */
export const linkTo = (trace: TraceContext): Tracer.SpanLink => ({
  span: Tracer.externalSpan({ traceId: trace.traceId, spanId: trace.spanId }),
  attributes: { "pgflows.link": "first execution" }
})
