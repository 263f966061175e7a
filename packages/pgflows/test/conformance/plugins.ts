// Plugins: the order hooks fire in, what they receive, replay, isolation of misbehaving plugins and
// middleware, and the logging and metrics plugins; written once and run on every backend.
import { assert } from "@effect/vitest"
import { Context, Effect, Layer, Logger, Metric, References, Schedule, Schema } from "effect"
import {
  LoggingPlugin,
  MetricsPlugin,
  Pgflows,
  type PgflowsConfig,
  PgflowsError,
  Plugin,
  Step,
  type Store,
  Workflow,
  type WorkQueue
} from "pgflows"
import { type Backend, counter } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })

class Declined extends Schema.TaggedError<Declined>()("Declined", { reason: Schema.String }) {}

/** A plugin that writes down every hook call, as `name:hook[:step]`, with the events. */
const recorder = (name: string) => {
  const calls: Array<string> = []
  const events: Array<{ readonly hook: string; readonly event: any }> = []
  const note = (hook: string, event: any) =>
    Effect.sync(() => {
      calls.push(`${name}:${hook}${event.step === undefined ? "" : `:${event.step}`}`)
      events.push({ hook, event })
    })
  const plugin = Plugin.make(name, {
    beforeWorkflow: (event) => note("beforeWorkflow", event),
    afterWorkflow: (event) => note("afterWorkflow", event),
    onWorkflowError: (event) => note("onWorkflowError", event),
    onWorkflowCancelled: (event) => note("onWorkflowCancelled", event),
    beforeStep: (event) => note("beforeStep", event),
    afterStep: (event) => note("afterStep", event),
    onStepError: (event) => note("onStepError", event)
  })
  return { plugin, calls, events }
}

export const pluginsSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  const engineWith = <const W extends ReadonlyArray<Workflow.Any>>(
    workflows: W,
    plugins: ReadonlyArray<Plugin.Plugin>,
    extra: Layer.Layer<never> = Layer.empty
  ) =>
    Effect.map(
      Layer.build(
        Pgflows.layer({ workflows, plugins, pluginTimeout: "200 millis" }).pipe(Layer.provide(extra)) as Layer.Layer<
          Pgflows.Pgflows,
          never,
          Store.Store | WorkQueue.WorkQueue
        >
      ),
      (context) => Context.get(context, Pgflows.Pgflows)
    )

  const add = Step.make("add", { input: Num, output: Num, run: ({ n }) => Effect.succeed({ n: n + 1 }) })
  const double = Step.make("double", { input: Num, output: Num, run: ({ n }) => Effect.succeed({ n: n * 2 }) })
  const twoSteps = Workflow.make("two_steps", {
    input: Num,
    output: Num,
    run: (input) => Effect.flatMap(add(input), double)
  })

  it.effect("a two-step workflow fires before_workflow, before_step, after_step, before_step, after_step, after_workflow", () =>
    within(Effect.gen(function*() {
      const { calls, events, plugin } = recorder("p")
      const client = yield* engineWith([twoSteps], [plugin])
      const id = yield* client.start(twoSteps, { n: 3 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 8 })
      assert.deepStrictEqual(calls, [
        "p:beforeWorkflow",
        "p:beforeStep:add",
        "p:afterStep:add",
        "p:beforeStep:double",
        "p:afterStep:double",
        "p:afterWorkflow"
      ])
      const [before, beforeAdd, afterAdd, , afterDouble, after] = events.map((e) => e.event)
      assert.deepStrictEqual(before, { runId: id, workflow: "two_steps", input: { n: 3 }, resumed: false })
      assert.deepStrictEqual(beforeAdd, {
        runId: id,
        workflow: "two_steps",
        step: "add",
        key: "1",
        attempt: 1,
        input: { n: 3 }
      })
      assert.deepStrictEqual(afterAdd.output, { n: 4 })
      assert.isAtLeast(afterAdd.durationMillis, 0)
      assert.deepStrictEqual([afterDouble.key, afterDouble.input, afterDouble.output], ["2", { n: 4 }, { n: 8 }])
      assert.deepStrictEqual(after.output, { n: 8 })
    })))

  it.effect("plugins run in registration order, Plugin.layer's after the options'; the first middleware is outermost", () =>
    within(Effect.gen(function*() {
      const trail: Array<string> = []
      const around = (name: string) =>
        Plugin.make(name, {
          beforeStep: () => Effect.sync(() => trail.push(`${name}:before`)),
          aroundStep: (_event, step) =>
            Effect.sync(() => trail.push(`${name}:enter`)).pipe(
              Effect.andThen(step),
              Effect.tap(() => Effect.sync(() => trail.push(`${name}:exit`)))
            )
        })
      const one = Step.make("one", {
        input: Num,
        output: Num,
        run: (input) => Effect.sync(() => (trail.push("step"), input))
      })
      const single = Workflow.make("single", { input: Num, output: Num, run: one })
      const client = yield* engineWith([single], [around("a"), around("b")], Plugin.layer(around("c")))
      const id = yield* client.start(single, { n: 1 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 1 })
      assert.deepStrictEqual(trail, [
        "a:before",
        "b:before",
        "c:before",
        "a:enter",
        "b:enter",
        "c:enter",
        "step",
        "c:exit",
        "b:exit",
        "a:exit"
      ])
    })))

  it.effect("failures reach the error hooks typed: each failed attempt, then the workflow's error", () =>
    within(Effect.gen(function*() {
      const { calls, events, plugin } = recorder("p")
      const charge = Step.make("charge", {
        input: Num,
        output: Num,
        error: Declined,
        retry: Schedule.recurs(1),
        run: () => Effect.fail(new Declined({ reason: "card" }))
      })
      const failing = Workflow.make("failing", { input: Num, output: Num, error: Declined, run: charge })
      const client = yield* engineWith([failing], [plugin])
      const id = yield* client.start(failing, { n: 1 })
      yield* backend.settle(yield* Effect.forkChild(client.processOnce))
      assert.deepStrictEqual(calls, [
        "p:beforeWorkflow",
        "p:beforeStep:charge",
        "p:onStepError:charge",
        "p:beforeStep:charge",
        "p:onStepError:charge",
        "p:onWorkflowError"
      ])
      const errors = events.filter((e) => e.hook === "onStepError").map((e) => e.event)
      assert.deepStrictEqual(errors.map((e) => [e.attempt, e.final]), [[1, false], [2, true]])
      assert.instanceOf(errors[1].error, Declined)
      const end = events.at(-1)!.event
      assert.instanceOf(end.error, Declined)
      assert.strictEqual(end.error.reason, "card")
      assert.strictEqual((yield* client.status(id)).status, "failed")
    })))

  it.effect("an engine error reaches onWorkflowError as pgflows' typed error (a step that dies)", () =>
    within(Effect.gen(function*() {
      const { events, plugin } = recorder("p")
      const boom = Step.make("boom", { input: Num, output: Num, run: () => Effect.die("kaput") })
      const dies = Workflow.make("dies", { input: Num, output: Num, run: boom })
      const client = yield* engineWith([dies], [plugin])
      yield* client.start(dies, { n: 1 })
      yield* client.processOnce
      const stepError = events.find((e) => e.hook === "onStepError")!.event
      assert.instanceOf(stepError.error, PgflowsError.StepDefect)
      assert.isTrue(stepError.final)
      assert.instanceOf(events.at(-1)!.event.error, PgflowsError.StepDefect)
      assert.strictEqual(events.at(-1)!.hook, "onWorkflowError")
    })))

  it.effect("replayed steps fire nothing; a resumed execution says it resumed", () =>
    within(Effect.gen(function*() {
      const { calls, events, plugin } = recorder("p")
      const sleeper = Workflow.make("sleeper", {
        input: Num,
        output: Num,
        run: (input) =>
          Effect.gen(function*() {
            const one = yield* add(input)
            yield* Workflow.sleep("1 hour")
            return yield* double(one)
          })
      })
      const client = yield* engineWith([sleeper], [plugin])
      const id = yield* client.start(sleeper, { n: 1 })
      yield* client.processOnce
      assert.strictEqual((yield* client.status(id)).status, "suspended")
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 4 })
      assert.deepStrictEqual(calls, [
        "p:beforeWorkflow",
        "p:beforeStep:add",
        "p:afterStep:add",
        "p:beforeWorkflow",
        "p:beforeStep:double",
        "p:afterStep:double",
        "p:afterWorkflow"
      ])
      const starts = events.filter((e) => e.hook === "beforeWorkflow").map((e) => e.event.resumed)
      assert.deepStrictEqual(starts, [false, true])
    })))

  it.effect("a plugin that fails, dies or hangs is logged and isolated: the run and the other plugins are unaffected", () =>
    within(Effect.gen(function*() {
      const ran = counter()
      const counted = Step.make("counted", {
        input: Num,
        output: Num,
        run: (input) => Effect.as(ran.hit("counted"), { n: input.n + 1 })
      })
      const flow = Workflow.make("isolated", {
        input: Num,
        output: Num,
        run: (input) => Effect.flatMap(counted(input), counted)
      })
      const bad = [
        Plugin.make("fails", {
          beforeWorkflow: () => Effect.fail("no"),
          beforeStep: () => Effect.fail(new Error("no")),
          afterWorkflow: () => Effect.fail("no")
        }),
        Plugin.make("dies", {
          beforeStep: () => {
            throw new Error("thrown")
          },
          afterStep: () => Effect.die("died")
        }),
        Plugin.make("hangs", { afterStep: () => Effect.never, afterWorkflow: () => Effect.never }),
        Plugin.make("bypass", {
          aroundStep: () => Effect.fail("never runs the step") as any,
          aroundWorkflow: (_event, execution) => Effect.andThen(execution, Effect.die("after"))
        }),
        Plugin.make("twice", {
          aroundStep: (_event, step) => Effect.andThen(step, step)
        }),
        Plugin.make("slow", {
          aroundStep: (_event, step) => Effect.andThen(step, Effect.never)
        }),
        Plugin.make("skips", {
          aroundStep: () => Effect.succeed({ n: -1 }) as any
        })
      ]
      const good = recorder("good")
      const logged: Array<string> = []
      const capture = Logger.make((options) => {
        logged.push(String(Array.isArray(options.message) ? options.message[0] : options.message))
      })
      const client = yield* engineWith([flow], [...bad, good.plugin])
      const id = yield* client.start(flow, { n: 1 })
      yield* Effect.flatMap(Effect.forkChild(client.processOnce), backend.settle).pipe(
        Effect.provide(Logger.layer([capture]))
      )
      assert.deepStrictEqual(yield* client.result(id), { n: 3 })
      assert.strictEqual(ran.get("counted"), 2, "each step ran exactly once")
      assert.deepStrictEqual(good.calls, [
        "good:beforeWorkflow",
        "good:beforeStep:counted",
        "good:afterStep:counted",
        "good:beforeStep:counted",
        "good:afterStep:counted",
        "good:afterWorkflow"
      ])
      const about = (name: string) => logged.filter((line) => line.includes(`plugin "${name}"`))
      assert.isAbove(about("fails").length, 0)
      assert.isAbove(about("dies").length, 0)
      assert.isTrue(about("hangs").some((line) => line.includes("ran longer than 200 ms")))
      assert.isTrue(about("bypass").some((line) => line.includes("failed before running its execution")))
      assert.isTrue(about("slow").some((line) => line.includes("did not return within 200 ms")))
      assert.isTrue(about("skips").some((line) => line.includes("returned without running its execution")))
      assert.deepStrictEqual(about("twice"), [], "a second call gets the first result, quietly")
    })))

  it.effect("onWorkflowCancelled fires when a run is cancelled while it executes", () =>
    within(Effect.gen(function*() {
      const { calls, plugin } = recorder("p")
      const stuck = Step.make("stuck", { input: Num, output: Num, run: () => Effect.never })
      const flow = Workflow.make("cancellable", { input: Num, output: Num, run: stuck })
      const client = yield* engineWith([flow], [plugin])
      const id = yield* client.start(flow, { n: 1 })
      const worker = yield* Effect.forkChild(client.processOnce)
      while (!calls.includes("p:beforeStep:stuck")) yield* Effect.yieldNow
      yield* client.cancel(id)
      yield* backend.settle(worker)
      assert.deepStrictEqual(calls, ["p:beforeWorkflow", "p:beforeStep:stuck", "p:onWorkflowCancelled"])
      assert.strictEqual((yield* client.status(id)).status, "cancelled")
    })))

  it.effect("LoggingPlugin writes a structured line per event, with run, workflow, step and duration", () =>
    within(Effect.gen(function*() {
      const lines: Array<{ message: string; level: string; annotations: Record<string, unknown> }> = []
      const capture = Logger.make((options) =>
        lines.push({
          message: String(Array.isArray(options.message) ? options.message[0] : options.message),
          level: options.logLevel,
          annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) }
        })
      )
      const client = yield* engineWith([twoSteps], [LoggingPlugin.plugin])
      const id = yield* client.start(twoSteps, { n: 1 })
      yield* client.processOnce.pipe(Effect.provide(Logger.layer([capture])))
      yield* client.result(id)
      const ours = lines.filter((line) => line.annotations["pgflows.run.id"] === id)
      assert.deepStrictEqual(ours.map((line) => line.message), [
        "workflow two_steps started",
        "step add completed",
        "step double completed",
        "workflow two_steps completed"
      ])
      const step = ours[1]!
      assert.strictEqual(step.level, "Info")
      assert.strictEqual(step.annotations["pgflows.workflow"], "two_steps")
      assert.strictEqual(step.annotations["pgflows.step"], "add")
      assert.strictEqual(step.annotations["pgflows.step.key"], "1")
      assert.strictEqual(step.annotations["pgflows.step.attempt"], 1)
      assert.isNumber(step.annotations["pgflows.duration_ms"])
    })))

  it.effect("MetricsPlugin counts runs and step attempts and records step durations", () =>
    within(Effect.gen(function*() {
      const suffix = Math.random().toString(36).slice(2, 8)
      const ok = Step.make(`ok_${suffix}`, { input: Num, output: Num, run: Effect.succeed })
      const flaky = Step.make(`flaky_${suffix}`, {
        input: Num,
        output: Num,
        error: Declined,
        retry: Schedule.recurs(1),
        run: () => Effect.fail(new Declined({ reason: "no" }))
      })
      const good = Workflow.make(`good_${suffix}`, { input: Num, output: Num, run: ok })
      const bad = Workflow.make(`bad_${suffix}`, { input: Num, output: Num, error: Declined, run: flaky })
      const client = yield* engineWith([good, bad], [MetricsPlugin.plugin])
      yield* client.start(good, { n: 1 })
      yield* client.start(good, { n: 2 })
      yield* client.start(bad, { n: 3 })
      yield* backend.settle(yield* Effect.forkChild(Effect.repeat(client.processOnce, { until: (n) => n === 0 })))
      const count = (metric: Metric.Counter<number>, attributes: Record<string, string>) =>
        Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => state.count)
      assert.strictEqual(yield* count(MetricsPlugin.runsStarted, { workflow: good.name }), 2)
      assert.strictEqual(yield* count(MetricsPlugin.runsCompleted, { workflow: good.name }), 2)
      assert.strictEqual(yield* count(MetricsPlugin.runsStarted, { workflow: bad.name }), 1)
      assert.strictEqual(yield* count(MetricsPlugin.runsFailed, { workflow: bad.name }), 1)
      assert.strictEqual(yield* count(MetricsPlugin.runsFailed, { workflow: good.name }), 0)
      assert.strictEqual(yield* count(MetricsPlugin.stepAttempts, { step: ok.name, outcome: "completed" }), 2)
      assert.strictEqual(yield* count(MetricsPlugin.stepAttempts, { step: flaky.name, outcome: "retried" }), 1)
      assert.strictEqual(yield* count(MetricsPlugin.stepAttempts, { step: flaky.name, outcome: "failed" }), 1)
      const durations = yield* Metric.value(Metric.withAttributes(MetricsPlugin.stepDuration, { step: flaky.name }))
      assert.strictEqual(durations.count, 2)
    })))

  it.effect("without plugins nothing is called and the run is the same", () =>
    within(Effect.gen(function*() {
      const client = yield* engineWith([twoSteps], [])
      const id = yield* client.start(twoSteps, { n: 5 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 12 })
    })))
}
