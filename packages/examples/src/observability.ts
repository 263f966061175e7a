// The README's plugins, logging, metrics and tracing, runnable: `node packages/examples/src/observability.ts`.
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import { NodeRuntime } from "@effect/platform-node"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Console, Effect, Layer, Metric, Schedule, Schema } from "effect"
import { LoggingPlugin, MetricsPlugin, Pgflows, PgflowsConfig, Plugin, Step, Workflow } from "pgflows"

const Order = Schema.Struct({ orderId: Schema.String })
class Busy extends Schema.TaggedError<Busy>()("Busy", {}) {}

let attempts = 0
const reserve = Step.make("reserve", {
  input: Order,
  output: Schema.String,
  error: Busy,
  retry: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 3 })),
  run: (order) =>
    Effect.suspend(() => ++attempts === 1 ? Effect.fail(new Busy()) : Effect.succeed(`R-${order.orderId}`))
})
const ship = Step.make("ship", {
  input: Schema.String,
  output: Schema.String,
  run: (reservation) => Effect.succeed(`shipped ${reservation}`).pipe(Effect.withSpan("call carrier")) // nests in the step's span
})
const order = Workflow.make("order", {
  input: Order,
  output: Schema.String,
  run: (input) => Effect.flatMap(reserve(input), ship)
})

// A plugin of our own: any subset of the hooks, each with a typed event.
const audit = Plugin.make("audit", {
  onStepError: (event) => Console.log(`audit: ${event.step} attempt ${event.attempt} failed (final: ${event.final})`),
  afterWorkflow: (event) => Console.log(`audit: ${event.workflow} ${event.runId} -> ${JSON.stringify(event.output)}`)
})

// Spans go to the application's TracerProvider: here one that keeps them in memory; in production
// an OTLP exporter (or `NodeSdk.layer` from @effect/opentelemetry).
const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
const Tracing = OtelTracer.layer.pipe(Layer.provide(Layer.succeed(OtelTracer.OtelTracerProvider, provider)))

const Engine = Pgflows.layerMemory({ workflows: [order], plugins: [LoggingPlugin.plugin, MetricsPlugin.plugin, audit] })
  .pipe(
    Layer.provide(Tracing),
    Layer.provide(PgflowsConfig.layer({ otelEnabled: true })) // or PGFLOWS_OTEL_ENABLED=true
  )

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  const id = yield* client.start(order, { orderId: "ORD-9" })
  yield* client.processOnce
  yield* Console.log(`result: ${yield* client.result(id)}`)
  const retried = yield* Metric.value(
    Metric.withAttributes(MetricsPlugin.stepAttempts, { step: "reserve", outcome: "retried" })
  )
  yield* Console.log(`metrics: reserve retried ${retried.count} time(s)`)
  const spans = exporter.getFinishedSpans().map((span) => span.name)
  yield* Console.log(`spans: ${spans.join(", ")}`)
})

program.pipe(Effect.provide(Engine), NodeRuntime.runMain)
