// The engine's behaviour (docs/ARCHITECTURE.md, "Lifecycle" and "Replay"), written once and run on every backend.
import { assert } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Option, Schedule, Schema } from "effect"
import type * as Scope from "effect/Scope"
import { type Pgflows, PgflowsConfig, PgflowsError, Step, Store, Workflow, WorkQueue } from "pgflows"
import { OrderInput, processOrder, Receipt } from "../fixtures/order.ts"
import { type Backend, counter, engine } from "./backend.ts"

export interface Tester<R> {
  readonly effect: (
    name: string,
    self: () => Effect.Effect<unknown, unknown, R | Scope.Scope>,
    timeout?: number
  ) => void
}

class Boom extends Schema.TaggedError<Boom>()("Boom", { attempt: Schema.Number }) {}

const Num = Schema.Struct({ n: Schema.Number })

const run = <A, E, R, R2>(
  backend: Backend<R2>,
  config: PgflowsConfig.Options,
  body: Effect.Effect<A, E, R>
) => body.pipe(Effect.provide(backend.layer(config)))

export const engineSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    run(backend, config, body)

  it.effect("runs an order workflow: charge, park for a day, complete", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([processOrder])
      const id = yield* client.start(processOrder, new OrderInput({ orderId: "ORD-1", amount: 99 }))
      assert.strictEqual(yield* client.processOnce, 1)
      const parked = yield* client.status(id)
      assert.strictEqual(parked.status, "suspended")
      assert.deepStrictEqual(parked.steps.map((s) => [s.key, s.name, s.status, s.attempts]), [
        ["1", "charge_payment", "completed", 1],
        ["2", "pgflows.sleep", "waiting", 1]
      ])
      assert.strictEqual(yield* client.processOnce, 0, "nothing is due before the day has passed")
      yield* backend.advance("25 hours")
      assert.strictEqual(yield* client.processOnce, 1)
      const done = yield* client.status(id)
      assert.strictEqual(done.status, "completed")
      assert.deepStrictEqual(done.output, Option.some(new Receipt({ charged: true, confirmation: "CHG-ORD-1" })))
      assert.strictEqual(done.executions, 2)
      assert.deepStrictEqual(done.steps.map((s) => s.status), ["completed", "completed"])
      const receipt = yield* client.result(id)
      assert.instanceOf(receipt, Receipt)
      assert.strictEqual(receipt.confirmation, "CHG-ORD-1")
    })))

  it.effect("start is idempotent by id, and refuses an id of another workflow", () =>
    within(Effect.gen(function*() {
      const echo = Workflow.make("echo", { input: Num, output: Num, run: Effect.succeed })
      const other = Workflow.make("other", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([echo, other])
      const first = yield* client.start(echo, { n: 1 }, { id: "fixed-id" })
      const second = yield* client.start(echo, { n: 2 }, { id: "fixed-id" })
      assert.strictEqual(first, "fixed-id")
      assert.strictEqual(second, "fixed-id")
      const metrics = yield* client.queueMetrics()
      assert.strictEqual(metrics.length, 1, "one queue message for one run")
      const conflict = yield* Effect.flip(client.start(other, { n: 3 }, { id: "fixed-id" }))
      assert.instanceOf(conflict, PgflowsError.RunIdConflict)
      assert.strictEqual(conflict.existingWorkflow, "echo")
      assert.strictEqual(yield* client.processOnce, 1)
      assert.deepStrictEqual(yield* client.result(first), { n: 1 }, "the first input was kept")
    })))

  it.effect("startBatch starts many runs at once, with ids and a delay", () =>
    within(Effect.gen(function*() {
      const echo = Workflow.make("echo", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([echo])
      const ids = yield* client.startBatch(echo, [{ n: 1 }, { n: 2 }, { n: 3 }])
      assert.strictEqual(new Set(ids).size, 3)
      const named = yield* client.startBatch(echo, [{ n: 4 }, { n: 5 }], { ids: ["b-1", "b-2"], delay: "1 hour" })
      assert.deepStrictEqual(named, ["b-1", "b-2"])
      assert.strictEqual(yield* client.processOnce, 3, "the delayed runs are not due yet")
      assert.deepStrictEqual(yield* Effect.forEach(ids, (id) => client.result(id)), [{ n: 1 }, { n: 2 }, { n: 3 }])
      assert.strictEqual((yield* client.status("b-1")).status, "pending")
      yield* backend.advance("61 minutes")
      assert.strictEqual(yield* client.processOnce, 2)
      assert.deepStrictEqual(yield* client.result("b-2"), { n: 5 })
    })))

  it.effect("an input that fails its Schema, or is too large, is refused and nothing is written", () =>
    within(
      Effect.gen(function*() {
        const Positive = Schema.Struct({ n: Schema.Number.check(Schema.isGreaterThan(0)), note: Schema.String })
        const wf = Workflow.make("strict", { input: Positive, output: Schema.Void, run: () => Effect.void })
        const client = yield* engine([wf])
        const invalid = yield* Effect.flip(client.start(wf, { n: -1, note: "x" }))
        assert.instanceOf(invalid, PgflowsError.InvalidInput)
        assert.deepStrictEqual(invalid.issues, [{ path: "n", message: "Expected a value greater than 0" }])
        assert.strictEqual(invalid.message, `invalid input for workflow "strict": Expected a value greater than 0 at n`)
        const large = yield* Effect.flip(client.start(wf, { n: 1, note: "x".repeat(5000) }))
        assert.instanceOf(large, PgflowsError.PayloadTooLarge)
        assert.strictEqual(large.limit, 2048)
        assert.isAbove(large.bytes, 5000)
        assert.deepStrictEqual((yield* client.list()).runs, [])
        assert.strictEqual((yield* client.queueMetrics()).length, 0)
      }),
      { maxPayloadBytes: 2048 }
    ))

  it.effect("replay never repeats a completed step", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const step = (name: string) =>
        Step.make(name, { input: Num, output: Num, run: (i) => Effect.as(calls.hit(name), { n: i.n + 1 }) })
      const [a, b, c] = [step("a"), step("b"), step("c")]
      const wf = Workflow.make("three", {
        input: Num,
        output: Num,
        run: Effect.fn(function*(input) {
          const x = yield* a(input)
          const y = yield* b(x)
          yield* Workflow.sleep("1 hour")
          return yield* c(y)
        })
      })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 0 })
      yield* client.processOnce
      assert.deepStrictEqual([calls.get("a"), calls.get("b"), calls.get("c")], [1, 1, 0])
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual([calls.get("a"), calls.get("b"), calls.get("c")], [1, 1, 1])
      assert.deepStrictEqual(yield* client.result(id), { n: 3 })
      assert.deepStrictEqual((yield* client.status(id)).steps.map((s) => s.key), ["1", "2", "3", "4"])
    })))

  it.effect("a different step at a replayed key fails the run with a NonDeterminismError", () =>
    within(Effect.gen(function*() {
      const a = Step.make("a", { input: Num, output: Num, run: Effect.succeed })
      const b = Step.make("b", { input: Num, output: Num, run: Effect.succeed })
      const v1 = Workflow.make("evolving", {
        input: Num,
        output: Num,
        run: (i) => Effect.andThen(a(i), (x) => Effect.as(Workflow.sleep("1 hour"), x))
      })
      const v2 = Workflow.make("evolving", {
        input: Num,
        output: Num,
        run: (i) => Effect.andThen(b(i), (x) => Effect.as(Workflow.sleep("1 hour"), x))
      })
      const first = yield* engine([v1])
      const renamed = yield* first.start(v1, { n: 1 })
      const rehashed = yield* first.start(v1, { n: 2 })
      yield* first.processOnce
      yield* backend.advance("2 hours")
      const changed = yield* engine([v2])
      const claimed = yield* changed.processOnce
      assert.strictEqual(claimed, 2)
      for (const id of [renamed, rehashed]) {
        const status = yield* changed.status(id)
        assert.strictEqual(status.status, "failed")
        const error = Option.getOrThrow(status.error)
        assert.instanceOf(error, PgflowsError.NonDeterminismError)
        assert.strictEqual(error.key, "1")
        assert.strictEqual(error.journal.name, "a")
        assert.strictEqual(error.replay.name, "b")
        // The message names the first diverging key and says what to do.
        assert.match(error.message, /^non-deterministic workflow: at key 1, the first that differs,/)
        assert.match(error.message, /the replay of the run of workflow "evolving" asked for "b" \(input hash \w+\)/)
        assert.match(error.message, /where the journal holds "a"/)
        assert.match(
          error.message,
          /keep the old definition registered as its own version \(Workflow\.make\(name, \{ version \}\)\)/
        )
        assert.match(error.message, /guard the change with Workflow\.patched\(id\)/)
        assert.match(error.message, /fork the run from a step before key 1 \(client\.fork\(runId, \{ fromStep \}\)\)/)
      }
    })))

  it.effect("the same step with a different input at a replayed key fails the run too", () =>
    within(Effect.gen(function*() {
      const a = Step.make("a", { input: Num, output: Num, run: Effect.succeed })
      const make = (delta: number) =>
        Workflow.make("shifting", {
          input: Num,
          output: Num,
          run: (i) => Effect.andThen(a({ n: i.n + delta }), (x) => Effect.as(Workflow.sleep("1 hour"), x))
        })
      const before = yield* engine([make(0)])
      const id = yield* before.start(make(0), { n: 1 })
      yield* before.processOnce
      yield* backend.advance("2 hours")
      const after = yield* engine([make(1)])
      yield* after.processOnce
      const error = Option.getOrThrow((yield* after.status(id)).error)
      assert.instanceOf(error, PgflowsError.NonDeterminismError)
      assert.strictEqual(error.replay.name, "a")
      assert.notStrictEqual(error.replay.inputHash, error.journal.inputHash)
      assert.match(error.message, /at key 1, the first that differs, .* asked for step "a" with another input/)
    })))

  it.effect("retries a failing step by its Schedule and records the attempts", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const flaky = Step.make("flaky", {
        input: Num,
        output: Num,
        error: Boom,
        retry: Schedule.recurs(5),
        run: (i) =>
          Effect.flatMap(calls.hit("flaky"), () =>
            calls.get("flaky") < 3 ? Effect.fail(new Boom({ attempt: calls.get("flaky") })) : Effect.succeed(i))
      })
      const wf = Workflow.make("retrying", { input: Num, output: Num, run: flaky })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 7 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 7 })
      const [step] = (yield* client.status(id)).steps
      assert.strictEqual(step?.attempts, 3)
      assert.strictEqual(step?.status, "completed")
    })))

  it.effect("a retry delay longer than the park threshold parks the run instead of holding a worker", () =>
    within(
      Effect.gen(function*() {
        const calls = counter()
        const flaky = Step.make("slow_retry", {
          input: Num,
          output: Num,
          error: Boom,
          retry: Schedule.spaced("1 minute").pipe(Schedule.upTo({ times: 3 })),
          run: (i) =>
            Effect.flatMap(calls.hit("x"), () =>
              calls.get("x") < 3 ? Effect.fail(new Boom({ attempt: calls.get("x") })) : Effect.succeed(i))
        })
        const wf = Workflow.make("parked_retry", { input: Num, output: Num, run: flaky })
        const client = yield* engine([wf])
        const id = yield* client.start(wf, { n: 1 })
        yield* client.processOnce
        const parked = yield* client.status(id)
        assert.strictEqual(parked.status, "suspended")
        assert.deepStrictEqual(parked.steps.map((s) => [s.status, s.attempts]), [["retrying", 1]])
        assert.deepStrictEqual((parked.steps[0]!.error as { error: unknown }).error, { _tag: "Boom", attempt: 1 })
        assert.isDefined(parked.wakeAt)
        assert.strictEqual(yield* client.processOnce, 0)
        yield* backend.advance("61 seconds")
        yield* client.processOnce
        assert.deepStrictEqual((yield* client.status(id)).steps.map((s) => [s.status, s.attempts]), [["retrying", 2]])
        yield* backend.advance("61 seconds")
        yield* client.processOnce
        const done = yield* client.status(id)
        assert.strictEqual(done.status, "completed")
        assert.deepStrictEqual(done.steps.map((s) => [s.status, s.attempts]), [["completed", 3]])
        assert.strictEqual(done.executions, 3)
      }),
      { parkThreshold: "5 seconds" }
    ))

  it.effect("a parked retry resumes with the attempts it had: the schedule's limit is exact", () =>
    within(
      Effect.gen(function*() {
        const always = Step.make("always_fails", {
          input: Num,
          output: Num,
          error: Boom,
          retry: Schedule.spaced("1 minute").pipe(Schedule.upTo({ times: 2 })),
          run: () => Effect.fail(new Boom({ attempt: 0 }))
        })
        const wf = Workflow.make("exhausted", { input: Num, output: Num, error: Boom, run: always })
        const client = yield* engine([wf])
        const id = yield* client.start(wf, { n: 1 })
        for (let i = 0; i < 3; i++) {
          yield* client.processOnce
          yield* backend.advance("61 seconds")
        }
        const status = yield* client.status(id)
        assert.strictEqual(status.status, "failed")
        assert.deepStrictEqual(status.steps.map((s) => [s.status, s.attempts]), [["failed", 3]])
        const error = yield* Effect.flip(client.result(id))
        assert.instanceOf(error, Boom, "the workflow's typed error comes back typed")
      }),
      { parkThreshold: "5 seconds" }
    ))

  it.effect("stepDefaults.retry applies to steps without a schedule of their own", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const flaky = Step.make("no_own_retry", {
        input: Num,
        output: Num,
        error: Boom,
        run: (i) =>
          Effect.flatMap(calls.hit("x"), () =>
            calls.get("x") < 3 ? Effect.fail(new Boom({ attempt: 1 })) : Effect.succeed(i))
      })
      const wf = Workflow.make("defaults", {
        input: Num,
        output: Num,
        stepDefaults: { retry: Schedule.recurs(2) },
        run: flaky
      })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 2 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 2 })
      assert.strictEqual((yield* client.status(id)).steps[0]?.attempts, 3)
    })))

  it.effect("a run that fails ends in the dead-letter archive with its typed error", () =>
    within(Effect.gen(function*() {
      const wf = Workflow.make("declining", {
        input: Num,
        output: Num,
        error: Boom,
        run: () => Effect.fail(new Boom({ attempt: 9 }))
      })
      const client = yield* engine([wf])
      const queues = yield* WorkQueue.WorkQueue
      const config = yield* PgflowsConfig.PgflowsConfig
      const id = yield* client.start(wf, { n: 1 })
      yield* client.processOnce
      const status = yield* client.status(id)
      assert.strictEqual(status.status, "failed")
      assert.deepStrictEqual(status.error, Option.some(new Boom({ attempt: 9 })))
      const archived = yield* queues.archived(config.queue)
      assert.deepStrictEqual(archived.map((m) => (m.message as { run: string }).run), [id])
      assert.strictEqual((yield* client.queueMetrics()).length, 0)
      assert.strictEqual(yield* client.processOnce, 0, "a failed run is not retried forever")
    })))

  it.effect("a step that dies is not retried and fails the run with a StepDefect", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const dies = Step.make("dies", {
        input: Num,
        output: Num,
        retry: Schedule.recurs(5),
        run: () => Effect.andThen(calls.hit("x"), Effect.die(new Error("kaput")))
      })
      const wf = Workflow.make("dying", { input: Num, output: Num, run: dies })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      yield* client.processOnce
      assert.strictEqual(calls.get("x"), 1)
      const error = yield* Effect.flip(client.result(id))
      assert.instanceOf(error, PgflowsError.RunFailed)
      assert.instanceOf(error.error, PgflowsError.StepDefect)
      assert.match((error.error as PgflowsError.StepDefect).defect, /kaput/)
    })))

  it.effect("a run is claimed by one worker at a time: two engines draining one queue run each run once", () =>
    within(
      Effect.gen(function*() {
        const calls = counter()
        const work = Step.make("work", { input: Num, output: Num, run: (i) => Effect.as(calls.hit(String(i.n)), i) })
        const wf = Workflow.make("shared", { input: Num, output: Num, run: work })
        const left = yield* engine([wf])
        const right = yield* engine([wf])
        const ids = yield* left.startBatch(wf, Array.from({ length: 20 }, (_, n) => ({ n })))
        const handled = yield* Effect.all([left.processOnce, right.processOnce, left.processOnce, right.processOnce], {
          concurrency: "unbounded"
        })
        assert.strictEqual(handled.reduce((a, b) => a + b, 0), 20)
        assert.strictEqual(calls.total(), 20)
        assert.isTrue([...calls.counts.values()].every((n) => n === 1))
        for (const id of ids) assert.strictEqual((yield* left.status(id)).status, "completed")
      }),
      { workerConcurrency: 8 }
    ))

  it.effect("a run whose lease expired is taken over, and the old owner can no longer write", () =>
    within(
      Effect.gen(function*() {
        const wf = Workflow.make("taken_over", { input: Num, output: Num, run: Effect.succeed })
        const client = yield* engine([wf])
        const store = yield* Store.Store
        const id = yield* client.start(wf, { n: 4 })
        const [zombie] = yield* store.claim({
          worker: "zombie",
          workflows: [{ workflow: "taken_over", version: 0 }],
          limit: 1,
          leaseMillis: 1000
        })
        assert.strictEqual(zombie?.run.id, id)
        assert.strictEqual(yield* client.processOnce, 0, "a live lease keeps others out")
        yield* backend.advance("2 seconds")
        assert.strictEqual(yield* client.processOnce, 1)
        assert.deepStrictEqual(yield* client.result(id), { n: 4 })
        const status = yield* client.status(id)
        assert.strictEqual(status.recoveries, 1)
        assert.strictEqual(status.executions, 2)
        const late = yield* store.checkpoint({
          runId: id,
          token: zombie!.token,
          key: "9",
          name: "late",
          inputHash: "x",
          status: "completed",
          output: null,
          error: null,
          attempts: 1
        })
        assert.strictEqual(late, "lease-lost")
        const lateEnd = yield* store.transition({
          runId: id,
          token: zombie!.token,
          msgId: zombie!.msgId,
          kind: "fail",
          error: null
        })
        assert.strictEqual(lateEnd, "lease-lost")
        assert.strictEqual((yield* client.status(id)).status, "completed")
      }),
      { lease: "1 second" }
    ))

  it.effect("a run recovered more than maxRecoveries times is failed with RecoveryLimitExceeded", () =>
    within(
      Effect.gen(function*() {
        const wf = Workflow.make("crash_loop", { input: Num, output: Num, run: Effect.succeed })
        const client = yield* engine([wf])
        const store = yield* Store.Store
        const id = yield* client.start(wf, { n: 1 })
        for (let i = 0; i < 2; i++) {
          yield* store.claim({
            worker: "crasher",
            workflows: [{ workflow: "crash_loop", version: 0 }],
            limit: 1,
            leaseMillis: 1000
          })
          yield* backend.advance("2 seconds")
        }
        yield* client.processOnce
        const error = yield* Effect.flip(client.result(id))
        assert.instanceOf(error, PgflowsError.RunFailed)
        assert.instanceOf(error.error, PgflowsError.RecoveryLimitExceeded)
        assert.strictEqual((error.error as PgflowsError.RecoveryLimitExceeded).recoveries, 2)
      }),
      { maxRecoveries: 1, lease: "1 second" }
    ))

  it.effect("cancel interrupts the running step, and a cancelled run never completes", () =>
    within(Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const blocking = Step.make("blocking", {
        input: Num,
        output: Num,
        run: (i) =>
          Deferred.succeed(started, undefined).pipe(
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)),
            Effect.as(i)
          )
      })
      const wf = Workflow.make("cancellable", { input: Num, output: Num, run: blocking })
      const worker = yield* engine([wf])
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      const processing = yield* Effect.forkChild(worker.processOnce)
      yield* Deferred.await(started)
      assert.strictEqual(yield* client.cancel(id), "cancelled")
      yield* Deferred.await(interrupted)
      yield* Fiber.join(processing)
      const status = yield* client.status(id)
      assert.strictEqual(status.status, "cancelled")
      assert.deepStrictEqual(status.steps.filter((s) => s.status === "completed"), [])
      assert.instanceOf(yield* Effect.flip(client.result(id)), PgflowsError.RunCancelled)
      assert.strictEqual(yield* worker.processOnce, 0)
      assert.strictEqual(yield* client.cancel(id), "already-terminal")
    })))

  it.effect("cancel never overwrites a completed run", () =>
    within(Effect.gen(function*() {
      const wf = Workflow.make("finished", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 3 })
      yield* client.processOnce
      assert.strictEqual(yield* client.cancel(id), "already-terminal")
      assert.deepStrictEqual(yield* client.result(id), { n: 3 })
      assert.instanceOf(yield* Effect.flip(client.cancel("no-such-run")), PgflowsError.RunNotFound)
    })))

  it.effect("a pending run can be cancelled before any worker sees it", () =>
    within(Effect.gen(function*() {
      const wf = Workflow.make("never_started", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      assert.strictEqual(yield* client.cancel(id), "cancelled")
      assert.strictEqual(yield* client.processOnce, 0)
      assert.strictEqual((yield* client.status(id)).executions, 0)
      assert.strictEqual((yield* client.queueMetrics()).length, 0)
    })))

  it.effect("a stored input that no longer decodes fails the run with the decode path, archived", () =>
    within(Effect.gen(function*() {
      const v1 = Workflow.make("reshaped", {
        input: Schema.Struct({ customer: Schema.String }),
        output: Schema.Void,
        run: () => Effect.void
      })
      const v2 = Workflow.make("reshaped", {
        input: Schema.Struct({ customer: Schema.Struct({ id: Schema.String }) }),
        output: Schema.Void,
        run: () => Effect.void
      })
      const client = yield* engine([v1])
      const id = yield* client.start(v1, { customer: "c-1" })
      const worker = yield* engine([v2])
      yield* worker.processOnce
      const error = Option.getOrThrow((yield* worker.status(id)).error)
      assert.instanceOf(error, PgflowsError.DecodeError)
      assert.strictEqual(error.subject, `input of workflow "reshaped"`)
      assert.strictEqual(error.issues[0]?.path, "customer")
      const config = yield* PgflowsConfig.PgflowsConfig
      assert.strictEqual((yield* (yield* WorkQueue.WorkQueue).archived(config.queue)).length, 1)
    })))

  it.effect("a step output that no longer decodes on replay fails the run with its path", () =>
    within(Effect.gen(function*() {
      const make = (output: Schema.Codec<any, any>) => {
        const step = Step.make("lookup", { input: Num, output, run: () => Effect.succeed({ total: "12.50" }) })
        return Workflow.make("replayed_output", {
          input: Num,
          output: Schema.Void,
          run: (i) => Effect.andThen(step(i), Workflow.sleep("1 hour"))
        })
      }
      const before = make(Schema.Struct({ total: Schema.String }))
      const after = make(Schema.Struct({ total: Schema.Number }))
      const first = yield* engine([before])
      const id = yield* first.start(before, { n: 1 })
      yield* first.processOnce
      yield* backend.advance("2 hours")
      const second = yield* engine([after])
      yield* second.processOnce
      const error = Option.getOrThrow((yield* second.status(id)).error)
      assert.instanceOf(error, PgflowsError.DecodeError)
      assert.strictEqual(error.subject, `output of step "lookup" (key 1)`)
      assert.strictEqual(error.issues[0]?.path, "total")
    })))

  it.effect("a step output its Schema rejects, or one too large, fails the run", () =>
    within(
      Effect.gen(function*() {
        const wrong = Step.make("wrong", {
          input: Num,
          output: Num,
          run: () => Effect.succeed({ n: "seven" } as never)
        })
        const huge = Step.make("huge", {
          input: Num,
          output: Schema.String,
          run: () => Effect.succeed("y".repeat(3000))
        })
        const a = Workflow.make("bad_output", { input: Num, output: Num, run: wrong })
        const b = Workflow.make("huge_output", { input: Num, output: Schema.String, run: huge })
        const client = yield* engine([a, b])
        const ida = yield* client.start(a, { n: 1 })
        const idb = yield* client.start(b, { n: 1 })
        yield* client.processOnce
        const encode = Option.getOrThrow((yield* client.status(ida)).error)
        assert.instanceOf(encode, PgflowsError.EncodeError)
        assert.strictEqual(encode.subject, `output of step "wrong" (key 1)`)
        assert.strictEqual(encode.issues[0]?.path, "n")
        const size = Option.getOrThrow((yield* client.status(idb)).error)
        assert.instanceOf(size, PgflowsError.PayloadTooLarge)
        assert.strictEqual(size.subject, `output of step "huge" (key 1)`)
      }),
      { maxPayloadBytes: 2048 }
    ))

  it.effect("a run of a workflow this worker does not know is left for one that does", () =>
    within(
      Effect.gen(function*() {
        const known = Workflow.make("known", { input: Num, output: Num, run: Effect.succeed })
        const elsewhere = Workflow.make("elsewhere", { input: Num, output: Num, run: Effect.succeed })
        const limited = yield* engine([known])
        const full = yield* engine([known, elsewhere])
        const id = yield* limited.start(elsewhere, { n: 8 })
        assert.strictEqual(yield* limited.processOnce, 0)
        assert.strictEqual((yield* limited.status(id)).status, "pending")
        yield* backend.advance("2 seconds")
        assert.strictEqual(yield* full.processOnce, 1)
        assert.deepStrictEqual(yield* full.result(id), { n: 8 })
      }),
      { pollInterval: "1 second" }
    ))

  it.effect("a duplicated queue message executes the run once", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const work = Step.make("work", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("w"), i) })
      const wf = Workflow.make("duplicated", { input: Num, output: Num, run: work })
      const client = yield* engine([wf])
      const queues = yield* WorkQueue.WorkQueue
      const config = yield* PgflowsConfig.PgflowsConfig
      const id = yield* client.start(wf, { n: 1 })
      yield* queues.send(config.queue, { run: id, workflow: "duplicated" })
      yield* queues.send(config.queue, { run: id, workflow: "duplicated" })
      assert.strictEqual((yield* client.queueMetrics()).length, 3)
      assert.strictEqual(yield* client.processOnce, 1)
      assert.strictEqual(yield* client.processOnce, 0)
      assert.strictEqual(calls.get("w"), 1)
      assert.strictEqual((yield* client.queueMetrics()).length, 0, "duplicates are removed")
    })))

  it.effect("result waits for the end of a run, and gives up after its timeout", () =>
    within(Effect.gen(function*() {
      const wf = Workflow.make("awaited", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 6 })
      const timedOut = yield* Effect.forkChild(Effect.flip(client.result(id, { timeout: "200 millis" })))
      const error = yield* backend.settle(timedOut)
      assert.instanceOf(error, PgflowsError.WaitTimeout)
      const waiting = yield* Effect.forkChild(client.result(id))
      yield* client.processOnce
      assert.deepStrictEqual(yield* backend.settle(waiting), { n: 6 })
      assert.instanceOf(yield* Effect.flip(client.result("missing")), PgflowsError.RunNotFound)
    })))

  it.effect("list pages through runs newest first, filtered by workflow and state", () =>
    within(Effect.gen(function*() {
      const a = Workflow.make("list_a", { input: Num, output: Num, run: Effect.succeed })
      const b = Workflow.make("list_b", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([a, b])
      const ids: Array<string> = []
      for (let n = 0; n < 5; n++) {
        ids.push(yield* client.start(a, { n }))
        yield* backend.advance("1 millis")
      }
      yield* client.start(b, { n: 9 })
      const seen: Array<string> = []
      let cursor: string | undefined = undefined
      do {
        const page: Pgflows.ListOptions = { workflow: "list_a", limit: 2, cursor }
        const result = yield* client.list(page)
        assert.isAtMost(result.runs.length, 2)
        seen.push(...result.runs.map((r) => r.id))
        cursor = result.nextCursor
      } while (cursor !== undefined)
      assert.deepStrictEqual(seen, [...ids].reverse())
      assert.strictEqual((yield* client.list({ status: "pending" })).runs.length, 6)
      assert.strictEqual((yield* client.list({ status: "completed" })).runs.length, 0)
    })))

  it.effect("queue administration: metrics, list, purge and drop", () =>
    within(Effect.gen(function*() {
      const wf = Workflow.make("queued", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([wf])
      const config = yield* PgflowsConfig.PgflowsConfig
      yield* client.startBatch(wf, [{ n: 1 }, { n: 2 }])
      const metrics = yield* client.queueMetrics()
      assert.strictEqual(metrics.queue, config.queue)
      assert.strictEqual(metrics.length, 2)
      assert.strictEqual(metrics.visible, 2)
      assert.isTrue((yield* client.listQueues).some((q) => q.queue === config.queue))
      assert.strictEqual(yield* client.purgeQueue(config.queue), 2)
      assert.strictEqual((yield* client.queueMetrics()).length, 0)
      assert.isTrue(yield* client.dropQueue(config.queue))
      assert.isFalse((yield* client.listQueues).some((q) => q.queue === config.queue))
      assert.isFalse(yield* client.dropQueue(config.queue))
    })))

  it.effect("a worker wakes on a notification, not on its poll interval", () =>
    within(
      Effect.gen(function*() {
        const wf = Workflow.make("notified", { input: Num, output: Num, run: Effect.succeed })
        const client = yield* engine([wf])
        yield* Effect.forkChild(client.runWorker({ concurrency: 4 }))
        yield* Effect.sleep("50 millis").pipe(Effect.when(Effect.succeed(backend.name === "postgres")))
        const id = yield* client.start(wf, { n: 11 })
        const outcome = yield* client.result(id).pipe(Effect.timeoutOption(Duration.seconds(5)))
        assert.deepStrictEqual(outcome, Option.some({ n: 11 }), "finished long before the 1 hour poll")
      }),
      { pollInterval: "1 hour" }
    ))

  it.effect("stopping a worker hands back the runs in flight after the grace period", () =>
    within(
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const slow = Step.make("slow", {
          input: Num,
          output: Num,
          run: (i) => Effect.andThen(Deferred.succeed(started, undefined), Effect.as(Effect.never, i))
        })
        const wf = Workflow.make("handed_back", { input: Num, output: Num, run: slow })
        const client = yield* engine([wf])
        const id = yield* client.start(wf, { n: 1 })
        const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 1 }))
        yield* Deferred.await(started)
        const stopping = yield* Effect.forkChild(Fiber.interrupt(worker))
        yield* backend.settle(stopping)
        const status = yield* client.status(id)
        assert.strictEqual(status.status, "pending", "handed back: claimable at once by another worker")
        const exit = yield* Fiber.await(worker)
        assert.isTrue(Exit.hasInterrupts(exit))
      }),
      { shutdownGrace: "100 millis" }
    ))
}
