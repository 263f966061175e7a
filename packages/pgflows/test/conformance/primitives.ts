// Durable primitives (signals, children, events, concurrency, deadlines, sagas, recorded values,
// retry and resume), written once and run on every backend.
import { assert } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Option, Schedule, Schema } from "effect"
import { type PgflowsConfig, PgflowsError, Step, Store, Workflow } from "pgflows"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })
const Approval = Schema.Struct({ approved: Schema.Boolean, by: Schema.String })

class Refused extends Schema.TaggedError<Refused>()("Refused", { why: Schema.String }) {}

export const primitivesSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  // Signals

  const approval = Workflow.make("approval", {
    input: Num,
    output: Approval,
    run: () => Workflow.waitForSignal("approve", Approval)
  })

  it.effect("signals: a signal sent before the wait is taken by it", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([approval])
      const id = yield* client.start(approval, { n: 1 })
      yield* client.signal(id, "approve", { approved: true, by: "ana" })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { approved: true, by: "ana" })
    })))

  it.effect("signals: a wait parks the run, and the signal wakes it", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([approval])
      const id = yield* client.start(approval, { n: 1 })
      yield* client.processOnce
      const parked = yield* client.status(id)
      assert.strictEqual(parked.status, "suspended")
      assert.deepStrictEqual(parked.steps.map((s) => [s.name, s.status]), [["pgflows.signal", "waiting"]])
      assert.strictEqual(yield* client.processOnce, 0, "nothing to do until the signal")
      yield* client.signal(id, "approve", { approved: false, by: "bo" })
      assert.strictEqual(yield* client.processOnce, 1)
      assert.deepStrictEqual(yield* client.result(id), { approved: false, by: "bo" })
    })))

  it.effect("signals: each wait takes exactly one signal; the next wait takes the next one", () =>
    within(Effect.gen(function*() {
      const twice = Workflow.make("twice", {
        input: Num,
        output: Schema.Array(Num),
        run: () => Effect.all([Workflow.waitForSignal("tick", Num), Workflow.waitForSignal("tick", Num)])
      })
      const client = yield* engine([twice])
      const id = yield* client.start(twice, { n: 0 })
      yield* client.signal(id, "tick", { n: 1 })
      yield* client.processOnce
      yield* client.signal(id, "tick", { n: 2 })
      yield* client.signal(id, "tick", { n: 3 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), [{ n: 1 }, { n: 2 }])
    })))

  it.effect("signals: with a timeout, the wait says when the time ran out", () =>
    within(Effect.gen(function*() {
      const bounded = Workflow.make("bounded", {
        input: Num,
        output: Schema.String,
        run: () =>
          Effect.map(
            Workflow.waitForSignal("approve", Approval, { timeout: "2 hours" }),
            (result) => result._tag === "TimedOut" ? "timed out" : `approved by ${result.value.by}`
          )
      })
      const client = yield* engine([bounded])
      const late = yield* client.start(bounded, { n: 1 })
      const early = yield* client.start(bounded, { n: 2 })
      yield* client.processOnce
      yield* client.signal(early, "approve", { approved: true, by: "cy" })
      yield* client.processOnce
      assert.strictEqual(yield* client.result(early), "approved by cy")
      assert.strictEqual((yield* client.status(late)).status, "suspended")
      yield* backend.advance("3 hours")
      yield* client.processOnce
      assert.strictEqual(yield* client.result(late), "timed out")
    })))

  it.effect("signals: a payload that does not decode is a typed InvalidSignal, not a crash", () =>
    within(Effect.gen(function*() {
      const strict = Workflow.make("strict_signal", {
        input: Num,
        output: Schema.String,
        error: PgflowsError.InvalidSignal,
        run: () =>
          Workflow.waitForSignal("approve", Approval).pipe(
            Effect.map((a) => a.by),
            Effect.catchTag("InvalidSignal", (error) => Effect.succeed(`rejected: ${error.issues[0]?.path}`))
          )
      })
      const client = yield* engine([strict])
      const id = yield* client.start(strict, { n: 1 })
      yield* client.signal(id, "approve", { approved: "yes", by: "dee" })
      yield* client.processOnce
      assert.strictEqual(yield* client.result(id), "rejected: approved")
    })))

  it.effect("signals: to a missing run or one that ended, the client says so", () =>
    within(Effect.gen(function*() {
      const quick = Workflow.make("quick", { input: Num, output: Num, run: Effect.succeed })
      const client = yield* engine([quick])
      const id = yield* client.start(quick, { n: 1 })
      yield* client.processOnce
      assert.instanceOf(yield* Effect.flip(client.signal(id, "x", 1)), PgflowsError.RunEnded)
      assert.instanceOf(yield* Effect.flip(client.signal("nope", "x", 1)), PgflowsError.RunNotFound)
    })))

  it.effect("signals: 200 concurrent signal/wait races lose no signal", () =>
    within(
      Effect.gen(function*() {
        const waiter = Workflow.make("waiter", {
          input: Num,
          output: Num,
          run: (input) => Effect.map(Workflow.waitForSignal("go", Num), (signal) => ({ n: signal.n * 1000 + input.n }))
        })
        const client = yield* engine([waiter])
        const ids = yield* client.startBatch(waiter, Array.from({ length: 200 }, (_, n) => ({ n })))
        yield* Effect.forkChild(client.runWorker({ concurrency: 64 }))
        // Signals race with the runs reaching their wait: some come before, some after.
        yield* Effect.forEach(ids, (id, n) =>
          Effect.andThen(
            backend.name === "postgres" ? Effect.sleep(Duration.millis((n * 7) % 23)) : Effect.yieldNow,
            client.signal(id, "go", { n })
          ), { concurrency: 50, discard: true })
        const results = yield* Effect.forEach(ids, (id) => client.result(id, { timeout: "60 seconds" }), {
          concurrency: 20
        })
        assert.deepStrictEqual(results, ids.map((_, n) => ({ n: n * 1000 + n })))
      }),
      { pollInterval: "100 millis" }
    ))

  // Child workflows

  const double = Workflow.make("double_child", {
    input: Num,
    output: Num,
    error: Refused,
    run: (input) => input.n < 0 ? Effect.fail(new Refused({ why: "negative" })) : Effect.succeed({ n: input.n * 2 })
  })

  it.effect("children: a parent waits (parked) for its child and gets its result", () =>
    within(Effect.gen(function*() {
      const parent = Workflow.make("parent", {
        input: Num,
        output: Num,
        run: (input) => Effect.map(Workflow.child(double, input), (doubled) => ({ n: doubled.n + 1 }))
      })
      const client = yield* engine([parent, double])
      const id = yield* client.start(parent, { n: 20 })
      yield* client.processOnce
      const waiting = yield* client.status(id)
      assert.strictEqual(waiting.status, "suspended")
      const childId = `${id}:1`
      const child = yield* client.status(childId)
      assert.strictEqual(child.parentId, id, "the child's id comes from the parent's and the key")
      yield* client.processOnce
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 41 })
      assert.deepStrictEqual(yield* client.result(childId), { n: 40 })
    })))

  it.effect("children: a child's typed failure reaches the parent as the same typed error", () =>
    within(Effect.gen(function*() {
      const parent = Workflow.make("careful_parent", {
        input: Num,
        output: Schema.String,
        run: (input) =>
          Workflow.child(double, input).pipe(
            Effect.map(() => "fine"),
            Effect.catchTag("Refused", (refused) => Effect.succeed(`child refused: ${refused.why}`))
          )
      })
      const client = yield* engine([parent, double])
      const id = yield* client.start(parent, { n: -1 })
      for (let i = 0; i < 3; i++) yield* client.processOnce
      assert.strictEqual(yield* client.result(id), "child refused: negative")
    })))

  it.effect("children: startChild gives handles to await later, and replay finds the same children", () =>
    within(Effect.gen(function*() {
      const fan = Workflow.make("fan", {
        input: Num,
        output: Schema.Array(Num),
        run: (input) =>
          Effect.gen(function*() {
            const a = yield* Workflow.startChild(double, { n: input.n })
            const b = yield* Workflow.startChild(double, { n: input.n + 1 }, { id: `custom-${input.n}` })
            return [yield* a.result, yield* b.result]
          })
      })
      const client = yield* engine([fan, double])
      const id = yield* client.start(fan, { n: 3 })
      for (let i = 0; i < 5; i++) yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), [{ n: 6 }, { n: 8 }])
      assert.strictEqual((yield* client.status("custom-3")).parentId, id)
      assert.strictEqual((yield* client.list({ workflow: "double_child" })).runs.length, 2, "each child started once")
    })))

  it.effect("children: cancelling a parent cancels the child it waits for", () =>
    within(Effect.gen(function*() {
      const slow = Workflow.make("slow_child", {
        input: Num,
        output: Num,
        run: (input) => Effect.as(Workflow.sleep("1 day"), input)
      })
      const parent = Workflow.make("cancelled_parent", {
        input: Num,
        output: Num,
        run: (input) => Workflow.child(slow, input)
      })
      const client = yield* engine([parent, slow])
      const id = yield* client.start(parent, { n: 1 })
      yield* client.processOnce
      yield* client.processOnce
      assert.strictEqual((yield* client.status(`${id}:1`)).status, "suspended")
      assert.strictEqual(yield* client.cancel(id), "cancelled")
      assert.strictEqual((yield* client.status(`${id}:1`)).status, "cancelled")
      yield* backend.advance("2 days")
      assert.strictEqual(yield* client.processOnce, 0)
    })))

  // Events

  it.effect("events: a workflow publishes, readers get the latest value (waiting for it if asked)", () =>
    within(Effect.gen(function*() {
      const progress = Workflow.make("progress", {
        input: Num,
        output: Num,
        run: (input) =>
          Effect.gen(function*() {
            yield* Workflow.setEvent("stage", { stage: "charged" })
            yield* Workflow.setEvent("stage", { stage: "shipped" })
            yield* Workflow.waitForSignal("done", Schema.Unknown)
            return input
          })
      })
      const client = yield* engine([progress])
      const id = yield* client.start(progress, { n: 1 })
      assert.deepStrictEqual(yield* client.getEvent(id, "stage"), Option.none())
      const waiting = yield* Effect.forkChild(client.getEvent(id, "stage", { timeout: "10 seconds" }))
      yield* client.processOnce
      assert.isTrue(Option.isSome(yield* backend.settle(waiting)), "the waiting reader got a value")
      assert.deepStrictEqual(yield* client.getEvent(id, "stage"), Option.some({ stage: "shipped" }), "the latest")
      yield* client.signal(id, "done", null)
      yield* client.processOnce
      assert.deepStrictEqual(
        yield* client.getEvent(id, "stage"),
        Option.some({ stage: "shipped" }),
        "replay did not re-publish"
      )
      assert.instanceOf(yield* Effect.flip(client.getEvent("nope", "stage")), PgflowsError.RunNotFound)
    })))

  // Deterministic concurrency

  it.effect("concurrency: Workflow.all gives each branch its own keys, whatever order they finish in", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const gates = yield* Effect.forEach([0, 1, 2], () => Deferred.make<void>())
      const slow = Step.make("branch_step", {
        input: Num,
        output: Num,
        run: (input) =>
          Effect.as(Effect.andThen(calls.hit(String(input.n)), Deferred.await(gates[input.n]!)), { n: input.n * 10 })
      })
      const fan = Workflow.make("fan_out", {
        input: Num,
        output: Schema.Array(Num),
        run: () =>
          Effect.gen(function*() {
            const results = yield* Workflow.all([slow({ n: 0 }), slow({ n: 1 }), slow({ n: 2 })])
            yield* Workflow.sleep("1 hour")
            return results
          })
      })
      const client = yield* engine([fan])
      const id = yield* client.start(fan, { n: 0 })
      const running = yield* Effect.forkChild(client.processOnce)
      // Finish in the order 2, 0, 1.
      for (const n of [2, 0, 1]) {
        while (calls.get(String(n)) === 0) yield* Effect.yieldNow
        yield* Deferred.succeed(gates[n]!, undefined)
        yield* Effect.yieldNow
      }
      yield* Fiber.join(running)
      const keys = (yield* client.status(id)).steps.map((s) => s.key)
      assert.deepStrictEqual(keys, ["1.0/1", "1.1/1", "1.2/1", "2"])
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), [{ n: 0 }, { n: 10 }, { n: 20 }])
      assert.deepStrictEqual([calls.get("0"), calls.get("1"), calls.get("2")], [1, 1, 1], "replay ran nothing again")
    })))

  it.effect("concurrency: forEach keeps one position per item; race records its winner", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const square = Step.make("square", {
        input: Num,
        output: Num,
        run: (i) => Effect.as(calls.hit(`sq${i.n}`), { n: i.n * i.n })
      })
      const fast = Step.make("fast", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("fast"), i) })
      const never = Step.make("never", { input: Num, output: Num, run: () => Effect.never })
      const flow = Workflow.make("for_each_race", {
        input: Num,
        output: Schema.Struct({ squares: Schema.Array(Num), winner: Num }),
        run: (input) =>
          Effect.gen(function*() {
            const squares = yield* Workflow.forEach([1, 2, 3, 4], (n) => square({ n }), { concurrency: 2 })
            const winner = yield* Workflow.race([never({ n: 0 }), fast(input)])
            yield* Workflow.sleep("1 hour")
            return { squares, winner }
          })
      })
      const client = yield* engine([flow])
      const id = yield* client.start(flow, { n: 7 })
      yield* client.processOnce
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), {
        squares: [{ n: 1 }, { n: 4 }, { n: 9 }, { n: 16 }],
        winner: { n: 7 }
      })
      assert.strictEqual(calls.total(), 5, "each square once, the winner once; the replay only replayed")
    })))

  it.effect("concurrency: plain Effect.all over steps is caught by the non-determinism check when the order changes", () =>
    within(Effect.gen(function*() {
      const a = Step.make("a", { input: Num, output: Num, run: Effect.succeed })
      const b = Step.make("b", { input: Num, output: Num, run: Effect.succeed })
      const make = (swap: boolean) =>
        Workflow.make("plain_all", {
          input: Num,
          output: Schema.Void,
          run: (i) =>
            Effect.andThen(Effect.all(swap ? [b(i), a(i)] : [a(i), b(i)], { concurrency: 2 }), Workflow.sleep("1 hour"))
        })
      const first = yield* engine([make(false)])
      const id = yield* first.start(make(false), { n: 1 })
      yield* first.processOnce
      yield* backend.advance("2 hours")
      const swapped = yield* engine([make(true)])
      yield* swapped.processOnce
      assert.instanceOf(Option.getOrThrow((yield* swapped.status(id)).error), PgflowsError.NonDeterminismError)
    })))

  // Deadlines

  it.effect("deadlines: a run past its workflow's timeout fails with WorkflowTimeout, even while parked", () =>
    within(Effect.gen(function*() {
      const patient = Workflow.make("patient", {
        input: Num,
        output: Num,
        timeout: "1 hour",
        run: (input) => Effect.as(Workflow.sleep("1 day"), input)
      })
      const client = yield* engine([patient])
      const id = yield* client.start(patient, { n: 1 })
      yield* client.processOnce
      const parked = yield* client.status(id)
      assert.strictEqual(parked.status, "suspended")
      assert.isAtMost(parked.wakeAt!.getTime() - parked.createdAt.getTime(), 3_600_000 + 1000, "woken at the deadline")
      yield* backend.advance("61 minutes")
      yield* client.processOnce
      // `result`'s rule: the workflow's own errors as they are, what pgflows decided inside RunFailed.
      const error = yield* Effect.flip(client.result(id))
      assert.instanceOf(error, PgflowsError.RunFailed)
      const timeout = (error as PgflowsError.RunFailed).error
      assert.instanceOf(timeout, PgflowsError.WorkflowTimeout)
      assert.strictEqual((timeout as PgflowsError.WorkflowTimeout).workflow, "patient")
    })))

  it.effect("deadlines: a child inherits what is left of its parent's deadline", () =>
    within(Effect.gen(function*() {
      const child = Workflow.make("unbounded_child", {
        input: Num,
        output: Num,
        run: (i) => Effect.as(Workflow.sleep("1 day"), i)
      })
      const parent = Workflow.make("bounded_parent", {
        input: Num,
        output: Num,
        timeout: "2 hours",
        run: (input) => Workflow.child(child, input)
      })
      const client = yield* engine([parent, child])
      const id = yield* client.start(parent, { n: 1 })
      yield* client.processOnce
      yield* client.processOnce
      const childStatus = yield* client.status(`${id}:1`)
      assert.isAtMost(childStatus.wakeAt!.getTime() - childStatus.createdAt.getTime(), 2 * 3_600_000 + 1000)
      yield* backend.advance("121 minutes")
      yield* client.processOnce
      yield* client.processOnce
      const childError = yield* Effect.flip(client.result(`${id}:1`))
      assert.instanceOf(childError, PgflowsError.RunFailed)
      assert.instanceOf((childError as PgflowsError.RunFailed).error, PgflowsError.WorkflowTimeout)
      const parentError = yield* Effect.flip(client.result(id))
      assert.instanceOf(parentError, PgflowsError.RunFailed)
    })))

  it.effect("deadlines: a step timeout interrupts the attempt and counts as a failed attempt", () =>
    within(Effect.gen(function*() {
      let calls = 0
      const sometimesSlow = Step.make("sometimes_slow", {
        input: Num,
        output: Num,
        timeout: "50 millis",
        retry: Schedule.recurs(3),
        run: (i) => Effect.suspend(() => ++calls === 1 ? Effect.as(Effect.never, i) : Effect.succeed(i))
      })
      const flow = Workflow.make("step_timeout", {
        input: Num,
        output: Num,
        error: PgflowsError.StepTimeoutError,
        run: sometimesSlow
      })
      const client = yield* engine([flow])
      const id = yield* client.start(flow, { n: 5 })
      yield* backend.settle(yield* Effect.forkChild(client.processOnce))
      assert.deepStrictEqual(yield* client.result(id), { n: 5 })
      assert.strictEqual((yield* client.status(id)).steps[0]?.attempts, 2)
    })))

  // Sagas

  it.effect("compensation: when the workflow fails, the undos of completed steps run in reverse order", () =>
    within(Effect.gen(function*() {
      const undone: Array<string> = []
      const act = (name: string) => Step.make(name, { input: Num, output: Num, run: Effect.succeed })
      const undo = (name: string) =>
        Step.make(`undo_${name}`, {
          input: Num,
          output: Num,
          run: (i) => Effect.as(Effect.sync(() => undone.push(name)), i)
        })
      const [reserve, charge, ship] = [act("reserve"), act("charge"), act("ship")]
      const [unreserve, refund] = [undo("reserve"), undo("charge")]
      const failing = Step.make("ship_fails", {
        input: Num,
        output: Num,
        error: Refused,
        run: () => Effect.fail(new Refused({ why: "no courier" }))
      })
      const saga = Workflow.make("saga", {
        input: Num,
        output: Num,
        error: Refused,
        run: (input) =>
          Effect.gen(function*() {
            yield* reserve(input).pipe(Workflow.withCompensation(unreserve))
            yield* charge(input).pipe(Workflow.withCompensation(refund))
            yield* failing(input)
            return yield* ship(input)
          })
      })
      const client = yield* engine([saga])
      const id = yield* client.start(saga, { n: 1 })
      yield* client.processOnce
      assert.deepStrictEqual(undone, ["charge", "reserve"])
      const status = yield* client.status(id)
      assert.strictEqual(status.status, "failed")
      assert.deepStrictEqual(status.error, Option.some(new Refused({ why: "no courier" })))
      assert.deepStrictEqual(status.steps.map((s) => s.name), [
        "reserve",
        "charge",
        "ship_fails",
        "undo_charge",
        "undo_reserve"
      ])
      const stored = yield* (yield* Store.Store).getRun(id)
      assert.deepStrictEqual((stored!.error as { compensation: unknown }).compensation, { undone: 2, failed: [] })
    })))

  // Recorded values

  it.effect("Workflow.now and Workflow.randomUUID are recorded once and replayed", () =>
    within(Effect.gen(function*() {
      const stamped = Workflow.make("stamped", {
        input: Num,
        output: Schema.Struct({ at: Schema.Date, id: Schema.String, again: Schema.Date }),
        run: () =>
          Effect.gen(function*() {
            const at = yield* Workflow.now
            const id = yield* Workflow.randomUUID
            yield* Workflow.sleep("1 hour")
            const again = yield* Workflow.now
            return { at, id, again }
          })
      })
      const client = yield* engine([stamped])
      const id = yield* client.start(stamped, { n: 1 })
      yield* client.processOnce
      const first = (yield* client.status(id)).steps.slice(0, 2).map((s) => s.output)
      yield* backend.advance("2 hours")
      yield* client.processOnce
      const result = yield* client.result(id)
      const replayed = (yield* client.status(id)).steps.slice(0, 2).map((s) => s.output)
      assert.deepStrictEqual(replayed, first)
      assert.strictEqual(result.at.toISOString(), first[0])
      assert.strictEqual(result.id, first[1])
      assert.match(result.id, /^[0-9a-f-]{36}$/)
      // TestClock moves time for memory; PostgreSQL's test "advance" moves stored times, not the clock.
      if (backend.name === "memory") assert.isAtLeast(result.again.getTime() - result.at.getTime(), 3_600_000)
      else assert.isAtLeast(result.again.getTime(), result.at.getTime())
    })))

  // Recovery tools

  it.effect("retry restarts a failed run at the step that failed; nothing before it runs again", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      let broken = true
      const first = Step.make("first", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("first"), i) })
      const fragile = Step.make("fragile", {
        input: Num,
        output: Num,
        error: Refused,
        run: (i) =>
          Effect.flatMap(
            calls.hit("fragile"),
            () => broken ? Effect.fail(new Refused({ why: "down" })) : Effect.succeed(i)
          )
      })
      const flow = Workflow.make("retried", {
        input: Num,
        output: Num,
        error: Refused,
        run: (i) => Effect.flatMap(first(i), fragile)
      })
      const client = yield* engine([flow])
      const id = yield* client.start(flow, { n: 9 })
      yield* client.processOnce
      assert.strictEqual((yield* client.status(id)).status, "failed")
      broken = false
      yield* client.retry(id)
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 9 })
      assert.deepStrictEqual([calls.get("first"), calls.get("fragile")], [1, 2])
      const again = yield* Effect.flip(client.retry(id))
      assert.instanceOf(again, PgflowsError.RunNotRestartable)
      assert.match(again.message, /only failed runs can be retried/)
    })))

  it.effect("resume continues a cancelled run from its journal", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const first = Step.make("first", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("first"), i) })
      const flow = Workflow.make("resumed", {
        input: Num,
        output: Num,
        run: (i) => Effect.flatMap(first(i), (x) => Effect.as(Workflow.sleep("1 hour"), x))
      })
      const client = yield* engine([flow])
      const id = yield* client.start(flow, { n: 4 })
      yield* client.processOnce
      yield* client.cancel(id)
      yield* client.resume(id)
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 4 })
      assert.strictEqual(calls.get("first"), 1)
      assert.instanceOf(yield* Effect.flip(client.resume(id)), PgflowsError.RunNotRestartable)
    })))
}
