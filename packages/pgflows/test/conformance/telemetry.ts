// OpenTelemetry: the spans an in-memory exporter sees (names, parents, attributes, errors), the link
// from a resumed execution to the first, the global TracerProvider, and nothing when switched off;
// written once and run on every backend.
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import { assert } from "@effect/vitest"
import * as Otel from "@opentelemetry/api"
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor
} from "@opentelemetry/sdk-trace-base"
import { Context, Effect, Layer, Schedule, Schema } from "effect"
import { Pgflows, type PgflowsConfig, Step, type Store, Workflow, type WorkQueue } from "pgflows"
import type { Backend } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })

class Declined extends Schema.TaggedError<Declined>()("Declined", { reason: Schema.String }) {}

const exporting = () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const tracing = OtelTracer.layer.pipe(Layer.provide(Layer.succeed(OtelTracer.OtelTracerProvider, provider)))
  return { exporter, provider, tracing }
}

const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((span) => span.name === name)
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

export const telemetrySuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer({ otelEnabled: true, ...config })))

  const engineWith = <const W extends ReadonlyArray<Workflow.Any>>(workflows: W, tracing: Layer.Layer<never>) =>
    Effect.map(
      Layer.build(
        Pgflows.layer({ workflows }).pipe(Layer.provide(tracing)) as Layer.Layer<
          Pgflows.Pgflows,
          never,
          Store.Store | WorkQueue.WorkQueue
        >
      ),
      (context) => Context.get(context, Pgflows.Pgflows)
    )

  const add = Step.make("add", {
    input: Num,
    output: Num,
    run: ({ n }) => Effect.succeed({ n: n + 1 }).pipe(Effect.withSpan("user work"))
  })
  const double = Step.make("double", { input: Num, output: Num, run: ({ n }) => Effect.succeed({ n: n * 2 }) })
  const sleeper = Workflow.make("traced_sleeper", {
    input: Num,
    output: Num,
    run: (input) =>
      Effect.gen(function*() {
        const one = yield* add(input)
        yield* Workflow.sleep("1 hour")
        return yield* double(one)
      })
  })

  it.effect("a span per execution and per step attempt, with their attributes; the resumed execution links to the first", () =>
    within(Effect.gen(function*() {
      const { exporter, tracing } = exporting()
      const client = yield* engineWith([sleeper], tracing)
      const id = yield* client.start(sleeper, { n: 1 })
      yield* client.processOnce
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 4 })
      const spans = exporter.getFinishedSpans()
      const executions = named(spans, "pgflows.workflow traced_sleeper")
      assert.strictEqual(executions.length, 2)
      const [first, resumed] = executions as [ReadableSpan, ReadableSpan]
      assert.deepStrictEqual(first.attributes, {
        "pgflows.workflow.name": "traced_sleeper",
        "pgflows.run.id": id,
        "pgflows.resumed": false,
        "pgflows.outcome": "suspended"
      })
      assert.strictEqual(resumed.attributes["pgflows.resumed"], true)
      assert.strictEqual(resumed.attributes["pgflows.outcome"], "completed")
      assert.strictEqual(parentOf(resumed), undefined, "a resumed execution is the root of its own trace")
      assert.deepStrictEqual(resumed.links.map((link) => link.context.spanId), [first.spanContext().spanId])
      assert.deepStrictEqual(resumed.links.map((link) => link.context.traceId), [first.spanContext().traceId])

      const [addSpan] = named(spans, "pgflows.step add")
      const [doubleSpan] = named(spans, "pgflows.step double")
      assert.strictEqual(parentOf(addSpan!), first.spanContext().spanId)
      assert.strictEqual(parentOf(doubleSpan!), resumed.spanContext().spanId)
      assert.deepStrictEqual(addSpan!.attributes, {
        "pgflows.workflow.name": "traced_sleeper",
        "pgflows.run.id": id,
        "pgflows.step.name": "add",
        "pgflows.step.key": "1",
        "pgflows.step.attempt": 1,
        "pgflows.outcome": "completed"
      })
      assert.strictEqual(doubleSpan!.attributes["pgflows.step.key"], "3")
      const [user] = named(spans, "user work")
      assert.strictEqual(parentOf(user!), addSpan!.spanContext().spanId, "the step's own spans nest in it")
    })))

  it.effect("a run started in a span: its first execution is that span's child; the resumed one is a root", () =>
    within(Effect.gen(function*() {
      const { exporter, tracing } = exporting()
      const client = yield* engineWith([sleeper], tracing)
      const id = yield* client.start(sleeper, { n: 1 }).pipe(Effect.withSpan("POST /orders"), Effect.provide(tracing))
      yield* client.processOnce
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 4 })
      const spans = exporter.getFinishedSpans()
      const [request] = named(spans, "POST /orders")
      const [start] = named(spans, "Pgflows.start")
      const [first, resumed] = named(spans, "pgflows.workflow traced_sleeper") as [ReadableSpan, ReadableSpan]
      assert.strictEqual(parentOf(start!), request!.spanContext().spanId)
      assert.strictEqual(parentOf(first), start!.spanContext().spanId, "POST /orders > Pgflows.start > the run")
      assert.strictEqual(first.spanContext().traceId, request!.spanContext().traceId)
      assert.strictEqual(parentOf(resumed), undefined)
      assert.deepStrictEqual(resumed.links.map((link) => link.context.spanId), [first.spanContext().spanId])
    })))

  it.effect("failures are recorded on the step and workflow spans, one step span per attempt", () =>
    within(Effect.gen(function*() {
      const { exporter, tracing } = exporting()
      const charge = Step.make("charge", {
        input: Num,
        output: Num,
        error: Declined,
        retry: Schedule.recurs(1),
        run: () => Effect.fail(new Declined({ reason: "card" }))
      })
      const failing = Workflow.make("traced_failing", { input: Num, output: Num, error: Declined, run: charge })
      const client = yield* engineWith([failing], tracing)
      yield* client.start(failing, { n: 1 })
      yield* Effect.flatMap(Effect.forkChild(client.processOnce), backend.settle)
      const spans = exporter.getFinishedSpans()
      const attempts = named(spans, "pgflows.step charge")
      assert.deepStrictEqual(attempts.map((span) => span.attributes["pgflows.step.attempt"]), [1, 2])
      for (const attempt of attempts) {
        assert.strictEqual(attempt.status.code, Otel.SpanStatusCode.ERROR)
        assert.strictEqual(attempt.attributes["pgflows.outcome"], "failed")
      }
      const [execution] = named(spans, "pgflows.workflow traced_failing")
      assert.strictEqual(execution!.status.code, Otel.SpanStatusCode.ERROR)
      assert.strictEqual(execution!.attributes["pgflows.outcome"], "failed")
      const exception = execution!.events.find((event) => event.name === "exception")
      assert.isDefined(exception, JSON.stringify(execution!.events))
      assert.include(JSON.stringify(exception!.attributes), "Declined")
    })))

  it.effect("an application's global TracerProvider receives the spans", () =>
    within(
      Effect.gen(function*() {
        const { exporter, provider } = exporting()
        assert.isTrue(Otel.trace.setGlobalTracerProvider(provider))
        const client = yield* engineWith([sleeper], Layer.empty)
        const id = yield* client.start(sleeper, { n: 1 })
        yield* client.processOnce
        const [execution] = named(exporter.getFinishedSpans(), "pgflows.workflow traced_sleeper")
        assert.strictEqual(execution!.attributes["pgflows.run.id"], id)
      }).pipe(Effect.ensuring(Effect.sync(() => Otel.trace.disable())))
    ))

  it.effect("switched off, pgflows makes no spans", () =>
    within(
      Effect.gen(function*() {
        const { exporter, tracing } = exporting()
        const client = yield* engineWith([sleeper], tracing)
        yield* client.start(sleeper, { n: 1 })
        yield* client.processOnce
        assert.deepStrictEqual(
          exporter.getFinishedSpans().map((span) => span.name).filter((name) => name.startsWith("pgflows.")),
          []
        )
      }),
      { otelEnabled: false }
    ))
}
