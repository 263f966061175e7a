// Run isolation and failure paths (docs/ARCHITECTURE.md, "Runs are isolated" and "A worker fails
// only what it could have run"), written once and run on every backend: a failed journal write
// stops its execution, a stopped worker hands its runs back, a store outage during a child's start
// only hands the parent over, a step that throws is a step defect, a worker never fails a run it
// cannot execute, and afterStep fires only once the step's checkpoint is durable.
import { assert } from "@effect/vitest"
import { Deferred, type Duration, Effect, Fiber, Logger, Metric, Option, Schedule, Schema } from "effect"
import { Metrics, Pgflows, type PgflowsConfig, PgflowsError, Plugin, Step, Store, Workflow } from "pgflows"
import { withFaults } from "../fixtures/faults.ts"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })

class Boom extends Schema.TaggedError<Boom>()("Boom", { attempt: Schema.Number }) {}

/**
 * Steps a and b run concurrently; a ends while b still runs, so its checkpoint is held and then
 * written by the background flush (the write the faults target); c follows both.
 */
const heldInBackground = (name: string) => {
  const calls = counter()
  const step = (stepName: string, pause: Duration.Input) =>
    Step.make(stepName, {
      input: Num,
      output: Num,
      run: (i) => Effect.as(Effect.andThen(calls.hit(stepName), Effect.sleep(pause)), { n: i.n + 1 })
    })
  const [a, b, c] = [step("a", "10 millis"), step("b", "100 millis"), step("c", 0)]
  const wf = Workflow.make(name, {
    input: Num,
    output: Num,
    run: (input) => Effect.flatMap(Workflow.all([a(input), b(input)]), ([x]) => c(x))
  })
  return { calls, wf }
}

export const isolationSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  it.effect("a failed write of held checkpoints stops the execution before its next durable operation", () =>
    within(
      Effect.gen(function*() {
        const { calls, wf } = heldInBackground("held_write")
        const faults = { checkpoint: (cp: Store.Checkpoint) => cp.name === "a" && cp.status === "completed" }
        const client = yield* engine([wf]).pipe(withFaults(faults))
        const id = yield* client.start(wf, { n: 0 })
        yield* backend.settle(yield* Effect.forkChild(client.processOnce))
        assert.strictEqual(calls.get("c"), 0, "nothing after a's step became durable: c never ran")
        const stopped = yield* client.status(id)
        assert.notStrictEqual(stopped.status, "completed")
        assert.isFalse(stopped.steps.some((s) => s.name === "c"))
        // The outage ends: the run is taken over once its lease expires, and completes.
        faults.checkpoint = () => false
        yield* backend.advance("2 seconds")
        yield* backend.settle(yield* Effect.forkChild(client.processOnce))
        assert.deepStrictEqual(yield* client.result(id), { n: 2 })
        assert.strictEqual(calls.get("c"), 1)
      }),
      { lease: "1 second" }
    ))

  it.effect("a held checkpoint the database refuses, written in the background, fails its run with UnstorableValue", () =>
    within(Effect.gen(function*() {
      const { calls, wf } = heldInBackground("held_refused")
      const client = yield* engine([wf]).pipe(
        withFaults({ checkpoint: (cp) => cp.name === "a" && cp.status === "completed", rejected: true })
      )
      const id = yield* client.start(wf, { n: 0 })
      yield* backend.settle(yield* Effect.forkChild(client.processOnce))
      assert.strictEqual(calls.get("c"), 0)
      const error = yield* Effect.flip(client.result(id))
      assert.instanceOf(error, PgflowsError.RunFailed)
      assert.instanceOf(error.error, PgflowsError.UnstorableValue)
      assert.match((error.error as PgflowsError.UnstorableValue).subject, /output of step "a"/)
    })))

  it.effect("interrupting a program that runs a worker lets the run in flight finish within the grace", () =>
    within(
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const calls = counter()
        const work = Step.make("work", {
          input: Num,
          output: Num,
          run: (i) =>
            Effect.andThen(
              Effect.andThen(calls.hit("work"), Deferred.succeed(started, undefined)),
              Effect.as(Effect.sleep("300 millis"), i)
            )
        })
        const wf = Workflow.make("graceful", { input: Num, output: Num, run: work })
        // The application's shape: the engine's layer provided to a program that forks the worker,
        // starts a run, and waits; the program (not the worker fiber) is what gets interrupted.
        const program = Effect.gen(function*() {
          const client = yield* Pgflows.Pgflows
          yield* Effect.forkChild(client.runWorker())
          const id = yield* client.start(wf, { n: 7 })
          yield* Deferred.await(started)
          yield* Effect.never
          return id
        }).pipe(Effect.provide(Pgflows.layer({ workflows: [wf] })))
        const app = yield* Effect.forkChild(program)
        yield* backend.settle(yield* Effect.forkChild(Deferred.await(started)))
        const stopping = yield* Effect.forkChild(Fiber.interrupt(app))
        yield* backend.settle(stopping)
        const client = yield* engine([wf])
        const [run] = (yield* client.list({ workflow: "graceful" })).runs
        assert.strictEqual(run?.status, "completed", "the run in flight finished before the program stopped")
        assert.deepStrictEqual(yield* client.result(run!.id), { n: 7 })
        assert.strictEqual(calls.get("work"), 1)
      }),
      { shutdownGrace: "5 seconds" }
    ))

  it.effect("interrupting a program that runs a worker hands back what does not finish within the grace", () =>
    within(
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const calls = counter()
        const stuck = Step.make("stuck", {
          input: Num,
          output: Num,
          run: (i) =>
            calls.get("stuck") === 0
              ? Effect.andThen(
                Effect.andThen(calls.hit("stuck"), Deferred.succeed(started, undefined)),
                Effect.as(Effect.never, i)
              )
              : Effect.as(calls.hit("stuck"), i)
        })
        const wf = Workflow.make("stuck_at_shutdown", { input: Num, output: Num, run: stuck })
        const program = Effect.gen(function*() {
          const client = yield* Pgflows.Pgflows
          yield* Effect.forkChild(client.runWorker())
          yield* client.start(wf, { n: 3 })
          yield* Effect.never
        }).pipe(Effect.provide(Pgflows.layer({ workflows: [wf] })))
        const app = yield* Effect.forkChild(program)
        yield* backend.settle(yield* Effect.forkChild(Deferred.await(started)))
        yield* backend.settle(yield* Effect.forkChild(Fiber.interrupt(app)))
        const client = yield* engine([wf])
        const [run] = (yield* client.list({ workflow: "stuck_at_shutdown" })).runs
        assert.strictEqual(run?.status, "pending", "handed back: lease released, claimable at once")
        assert.strictEqual(yield* client.processOnce, 1, "another worker takes it without waiting for a lease")
        assert.deepStrictEqual(yield* client.result(run!.id), { n: 3 })
      }),
      { shutdownGrace: "100 millis", lease: "1 hour" }
    ))

  it.effect("a store outage while a child starts hands the parent over instead of failing it", () =>
    within(
      Effect.gen(function*() {
        const child = Workflow.make("outage_child", { input: Num, output: Num, run: Effect.succeed })
        const parent = Workflow.make("outage_parent", {
          input: Num,
          output: Num,
          run: (input) => Workflow.child(child, input)
        })
        const faults = { createRuns: (runs: ReadonlyArray<Store.NewRun>) => runs.some((r) => r.parentId !== undefined) }
        const client = yield* engine([parent, child]).pipe(withFaults(faults))
        const id = yield* client.start(parent, { n: 5 })
        yield* backend.settle(yield* Effect.forkChild(client.processOnce))
        const during = yield* client.status(id)
        assert.strictEqual(during.status, "running", "not failed: its lease runs out and another worker takes it")
        assert.isTrue(Option.isNone(during.error))
        faults.createRuns = () => false
        yield* backend.advance("2 seconds")
        for (let i = 0; i < 3; i++) yield* backend.settle(yield* Effect.forkChild(client.processOnce))
        assert.deepStrictEqual(yield* client.result(id), { n: 5 })
      }),
      { lease: "1 second" }
    ))

  it.effect("a store outage while a parent reads its child's state hands the parent over too", () =>
    within(
      Effect.gen(function*() {
        const child = Workflow.make("read_outage_child", { input: Num, output: Num, run: Effect.succeed })
        const parent = Workflow.make("read_outage_parent", {
          input: Num,
          output: Num,
          run: (input) => Workflow.child(child, input)
        })
        let reading = true
        const client = yield* engine([parent, child]).pipe(
          withFaults({ getRun: (runId) => reading && runId.endsWith(":1") })
        )
        const id = yield* client.start(parent, { n: 6 })
        yield* backend.settle(yield* Effect.forkChild(client.processOnce))
        assert.strictEqual((yield* client.status(id)).status, "running")
        reading = false
        yield* backend.advance("2 seconds")
        for (let i = 0; i < 3; i++) yield* backend.settle(yield* Effect.forkChild(client.processOnce))
        assert.deepStrictEqual(yield* client.result(id), { n: 6 })
      }),
      { lease: "1 second" }
    ))

  it.effect("a child id that belongs to a run of another workflow fails the parent with ChildIdConflict", () =>
    within(Effect.gen(function*() {
      const child = Workflow.make("conflict_child", { input: Num, output: Num, run: Effect.succeed })
      const other = Workflow.make("conflict_other", { input: Num, output: Num, run: Effect.succeed })
      const parent = Workflow.make("conflict_parent", {
        input: Num,
        output: Num,
        run: (input) => Workflow.child(child, input, { id: "taken-id" })
      })
      const client = yield* engine([parent, child, other])
      yield* client.start(other, { n: 1 }, { id: "taken-id" })
      const id = yield* client.start(parent, { n: 2 })
      yield* backend.settle(yield* Effect.forkChild(client.processOnce))
      const error = yield* Effect.flip(client.result(id))
      assert.instanceOf(error, PgflowsError.RunFailed)
      assert.instanceOf(error.error, PgflowsError.ChildIdConflict)
      const conflict = error.error as PgflowsError.ChildIdConflict
      assert.strictEqual(conflict.childId, "taken-id")
      assert.strictEqual(conflict.workflow, "conflict_child")
      assert.strictEqual(conflict.existingWorkflow, "conflict_other")
    })))

  it.effect("a step whose run throws is a StepDefect with a journal entry and onStepError", () =>
    within(Effect.gen(function*() {
      const seen: Array<string> = []
      const spy = Plugin.make("spy", {
        onStepError: (event) =>
          Effect.sync(() => {
            seen.push(`${event.step}:${event.final}:${(event.error as { _tag?: string })._tag}`)
          })
      })
      const throwing = Step.make("throwing", {
        input: Num,
        output: Num,
        run: () => {
          throw new Error("thrown while building the effect")
        }
      })
      const wf = Workflow.make("throws", { input: Num, output: Num, run: throwing })
      const client = yield* engine([wf], [spy])
      const id = yield* client.start(wf, { n: 1 })
      yield* backend.settle(yield* Effect.forkChild(client.processOnce))
      const status = yield* client.status(id)
      assert.strictEqual(status.status, "failed")
      const error = Option.getOrThrow(status.error)
      assert.instanceOf(error, PgflowsError.StepDefect)
      assert.match((error as PgflowsError.StepDefect).defect, /thrown while building the effect/)
      assert.deepStrictEqual(status.steps.map((s) => [s.name, s.status]), [["throwing", "failed"]])
      assert.deepStrictEqual(seen, ["throwing:true:StepDefect"])
    })))

  it.effect("a step's run is called once per attempt", () =>
    within(Effect.gen(function*() {
      let calls = 0
      const flaky = Step.make("per_attempt", {
        input: Num,
        output: Num,
        error: Boom,
        retry: Schedule.recurs(3),
        run: (i) => {
          calls++
          return calls < 3 ? Effect.fail(new Boom({ attempt: calls })) : Effect.succeed(i)
        }
      })
      const wf = Workflow.make("per_attempt_flow", { input: Num, output: Num, run: flaky })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 4 })
      yield* backend.settle(yield* Effect.forkChild(client.processOnce))
      assert.deepStrictEqual(yield* client.result(id), { n: 4 })
      assert.strictEqual(calls, 3, "run(input) is evaluated for each of the 3 attempts")
      assert.strictEqual((yield* client.status(id)).steps[0]?.attempts, 3)
    })))

  it.effect("a worker never fails a run of a workflow it does not register; status says what it waits for", () =>
    within(
      Effect.gen(function*() {
        const known = Workflow.make("registered", { input: Num, output: Num, run: Effect.succeed })
        const later = Workflow.make("deployed_later", { input: Num, output: Num, run: Effect.succeed })
        const old = yield* engine([known])
        const id = yield* old.start(later, { n: 9 })
        const worker = yield* Effect.forkChild(old.runWorker())
        for (let i = 0; i < 30; i++) {
          yield* backend.advance("1 second")
          yield* backend.settle(yield* Effect.forkChild(Effect.sleep("100 millis")))
        }
        const status = yield* old.status(id)
        assert.strictEqual(status.status, "pending", "never dead-lettered by a worker that lacks the code")
        assert.isTrue(Option.isNone(status.error))
        assert.match(status.waitingFor ?? "", /worker that registers workflow "deployed_later"/)
        yield* Fiber.interrupt(worker)
        // The new deploy registers it and runs it.
        const upgraded = yield* engine([known, later])
        assert.strictEqual(yield* upgraded.processOnce, 1)
        assert.deepStrictEqual(yield* upgraded.result(id), { n: 9 })
        assert.strictEqual((yield* upgraded.status(id)).waitingFor, undefined)
      }),
      { pollInterval: "100 millis" }
    ))

  it.effect("runs nobody can claim are counted in a metric and logged once they wait past the threshold", () =>
    within(
      Effect.gen(function*() {
        const lines: Array<string> = []
        const capture = Logger.make((options) => {
          lines.push(String(options.message))
        })
        const known = Workflow.make("present", { input: Num, output: Num, run: Effect.succeed })
        const absent = Workflow.make("absent", { input: Num, output: Num, run: Effect.succeed })
        const client = yield* engine([known])
        yield* client.startBatch(absent, [{ n: 1 }, { n: 2 }])
        const worker = yield* Effect.forkChild(
          client.runWorker().pipe(Effect.provide(Logger.layer([capture])))
        )
        for (let i = 0; i < 80; i++) {
          yield* backend.advance("1 second")
          yield* backend.settle(yield* Effect.forkChild(Effect.sleep("100 millis")))
        }
        yield* Fiber.interrupt(worker)
        const warning = lines.find((line) => line.includes("absent"))
        assert.isDefined(warning, lines.join("\n"))
        assert.match(warning!, /2 runs of workflow "absent" have waited/)
        const gauge = yield* Metric.value(
          Metric.withAttributes(Metrics.runsWithoutWorker, { workflow: "absent", version: "0" })
        )
        assert.strictEqual(gauge.value, 2)
      }),
      { pollInterval: "100 millis", unclaimedWarning: "1 minute" }
    ))

  it.effect("afterStep fires once the step's checkpoint is durable", () =>
    within(Effect.gen(function*() {
      const store = yield* Store.Store
      const early: Array<string> = []
      let checked = 0
      const durable = Plugin.make("durable", {
        afterStep: (event) =>
          Effect.gen(function*() {
            const steps = yield* Effect.orDie(store.getSteps(event.runId))
            checked++
            if (!steps.some((s) => s.key === event.key && s.status === "completed")) {
              early.push(`${event.runId}/${event.key}`)
            }
          })
      })
      const step = (name: string) => Step.make(name, { input: Num, output: Num, run: (i) => Effect.succeed(i) })
      const [a, b, c] = [step("a"), step("b"), step("c")]
      const wf = Workflow.make("audited", {
        input: Num,
        output: Num,
        run: (input) => a(input).pipe(Effect.flatMap(b), Effect.flatMap(c))
      })
      const client = yield* engine([wf], [durable])
      const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 32 }))
      const ids = yield* Effect.forEach(Array.from({ length: 40 }, (_, n) => n), (n) => client.start(wf, { n }), {
        concurrency: "unbounded"
      })
      yield* backend.settle(
        yield* Effect.forkChild(Effect.forEach(ids, (id) => client.result(id), { concurrency: "unbounded" }))
      )
      yield* Fiber.interrupt(worker)
      assert.strictEqual(checked, 120)
      assert.deepStrictEqual(early, [], "afterStep saw a checkpoint that was not written yet")
    })))
}
