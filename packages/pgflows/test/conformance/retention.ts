// Retention (docs/ARCHITECTURE.md, "Retention"), written once and run on every backend: `purge`
// deletes the runs that ended before a date with everything of theirs and nothing else; its
// filters; child runs go with their top-level run; the filters it refuses; and the background
// pruning of a worker, by a workflow's own policy and by the global one.
import { assert } from "@effect/vitest"
import { Clock, Effect, Fiber, Metric, Option, Schema } from "effect"
import { Metrics, type Pgflows, type PgflowsConfig, PgflowsError, Step, Store, Workflow } from "pgflows"
import { unavailable } from "../fixtures/faults.ts"
import { type Backend, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

export const Num = Schema.Struct({ n: Schema.Number })

export class Odd extends Schema.TaggedError<Odd>()("Odd", { n: Schema.Number }) {}

/** Completes with an even input, fails with `Odd` with an odd one. */
export const decide = Step.make("decide", {
  input: Num,
  output: Num,
  error: Odd,
  run: (i) => i.n % 2 === 0 ? Effect.succeed(i) : Effect.fail(new Odd({ n: i.n }))
})

/** A step, an event, then the step's outcome: a journal of two entries and one event. */
const work = Workflow.make("ret_work", {
  input: Num,
  output: Num,
  error: Odd,
  run: (input) => Effect.andThen(Workflow.setEvent("seen", input.n), decide(input))
})

/** Parked until it gets the signal "go". */
const wait = Workflow.make("ret_wait", {
  input: Num,
  output: Num,
  run: (input) => Effect.as(Workflow.waitForSignal("go", Schema.Boolean), input)
})

/** Runs `ret_work` as a child and waits for it. */
const family = Workflow.make("ret_family", {
  input: Num,
  output: Num,
  error: Schema.Unknown,
  run: (input) => Workflow.child(work, input)
})

/** Starts a `ret_wait` child and ends without waiting for it. */
const orphaning = Workflow.make("ret_orphaning", {
  input: Num,
  output: Schema.String,
  run: (input) => Effect.map(Workflow.startChild(wait, input), (handle) => handle.id)
})

const gone = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(self), (error) => (error as { _tag?: string })._tag)

export const retentionSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  /** A pause, so that runs have distinct times on every backend. */
  const tick = (millis = 10) =>
    Effect.andThen(
      backend.advance(`${millis} millis`),
      Effect.sleep(`${millis} millis`).pipe(Effect.when(Effect.succeed(backend.name === "postgres")))
    )

  /** Now, as the client's clock says (the store's never runs ahead of it here). */
  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

  /** Works until nothing is due. */
  const drain = (client: Pgflows.Pgflows["Service"]) =>
    Effect.gen(function*() {
      while ((yield* client.processOnce) > 0) {
        // until nothing is claimed
      }
    })

  it.effect("purge deletes the runs that ended before a date, with everything of theirs, and nothing else", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([work, wait])
      const completed = yield* client.start(work, { n: 0 })
      const failed = yield* client.start(work, { n: 1 })
      const signalled = yield* client.start(wait, { n: 2 })
      const cancelled = yield* client.start(wait, { n: 3 })
      const parked = yield* client.start(wait, { n: 4 })
      yield* drain(client)
      yield* client.signal(signalled, "go", true)
      yield* client.signal(parked, "go", true)
      yield* client.signal(parked, "go", true)
      yield* client.cancel(cancelled)
      yield* drain(client)
      // `parked` took one signal and completed: start another that stays parked, with a signal waiting.
      const kept = yield* client.start(wait, { n: 5 })
      yield* drain(client)
      yield* tick()
      const before = yield* now
      yield* tick()
      const later = yield* client.start(work, { n: 6 })
      yield* tick()
      const pending = yield* client.start(work, { n: 8 }, { delay: "1 hour" })
      yield* drain(client)
      assert.strictEqual((yield* client.status(later)).status, "completed")
      assert.strictEqual((yield* client.status(kept)).status, "suspended")
      assert.strictEqual((yield* client.status(failed)).status, "failed")
      assert.strictEqual((yield* client.queueMetrics()).archived, 1, "the failure archived its message")
      const keptJournal = (yield* client.status(kept)).steps

      const purged = yield* client.purge({ before })
      // completed (run, 2 entries, 1 event) + failed (run, 2 entries, 1 event, failed_runs, archive)
      // + signalled (run, 1 entry, 1 signal) + cancelled (run, 1 entry, cancelled_runs, 0 signals)
      // + parked (run, 1 entry, 2 signals)
      assert.deepStrictEqual(purged, { runs: 5, rows: 4 + 6 + 3 + 3 + 4 })
      for (const id of [completed, failed, signalled, cancelled, parked] as ReadonlyArray<string>) {
        assert.strictEqual(yield* gone(client.status(id)), "RunNotFound", id)
        assert.strictEqual(yield* gone(client.getEvent(id, "seen")), "RunNotFound", id)
      }
      assert.deepStrictEqual((yield* client.deadLetters()).deadLetters, [])
      assert.strictEqual((yield* client.queueMetrics()).archived, 0, "the archived message went with its run")
      assert.deepStrictEqual(
        (yield* client.list()).runs.map((run) => [run.id, run.status]),
        [[pending, "pending"], [later, "completed"], [kept, "suspended"]]
      )
      const counts = (yield* client.counts()).total
      assert.deepStrictEqual(
        [counts.pending.count, counts.running.count, counts.suspended.count, counts.completed.count],
        [1, 0, 1, 1]
      )
      assert.deepStrictEqual([counts.failed.count, counts.cancelled.count], [0, 0])
      // What was not ended is untouched: its journal, and the signal it will take.
      assert.deepStrictEqual((yield* client.status(kept)).steps, keptJournal)
      yield* client.signal(kept, "go", true)
      yield* drain(client)
      assert.deepStrictEqual(yield* client.result(kept), { n: 5 })
      assert.deepStrictEqual(yield* client.getEvent(later, "seen"), Option.some(6))
      assert.deepStrictEqual(yield* client.purge({ before }), { runs: 0, rows: 0 }, "nothing is left to purge")
    })))

  it.effect("purge deletes a run's flow-control rows: the deduplication key it was the latest of", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([work])
      const keyed = yield* client.start(work, { n: 10 }, { deduplication: { key: "nightly" } })
      yield* drain(client)
      assert.strictEqual((yield* client.status(keyed)).status, "completed")
      yield* tick()
      const before = yield* now
      // The run, its 2 journal entries, its event, and the key's record of it.
      assert.deepStrictEqual(yield* client.purge({ before }), { runs: 1, rows: 4 + 1 })
      // The key starts a new run, as it would have once its last run ended.
      const next = yield* client.start(work, { n: 12 }, { deduplication: { key: "nightly" } })
      assert.notStrictEqual(next, keyed)
      yield* drain(client)
      assert.deepStrictEqual(yield* client.result(next), { n: 12 })
    })))

  it.effect("purge: by state, by workflow, and only what ended before the date", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([work, wait])
      const ok = yield* client.start(work, { n: 0 })
      const bad = yield* client.start(work, { n: 1 })
      const stopped = yield* client.start(wait, { n: 2 })
      yield* drain(client)
      yield* client.cancel(stopped)
      yield* tick()
      const before = yield* now
      yield* tick()
      // Created before the date, ended after it: kept.
      const slow = yield* client.start(wait, { n: 3 })
      yield* drain(client)
      yield* tick()
      yield* client.cancel(slow)
      const status = (id: string) => Effect.map(Effect.option(client.status(id)), Option.map((info) => info.status))
      assert.deepStrictEqual(yield* client.purge({ before, status: "cancelled", workflow: "ret_work" }), {
        runs: 0,
        rows: 0
      })
      assert.deepStrictEqual((yield* client.purge({ before, status: "failed" })).runs, 1)
      assert.deepStrictEqual(yield* status(bad), Option.none())
      assert.deepStrictEqual(yield* status(ok), Option.some("completed"))
      assert.deepStrictEqual((yield* client.purge({ before, workflow: "ret_wait" })).runs, 1)
      assert.deepStrictEqual(yield* status(stopped), Option.none())
      assert.deepStrictEqual(yield* status(slow), Option.some("cancelled"), "it ended after the date")
      assert.deepStrictEqual((yield* client.purge({ before, status: ["completed", "cancelled"] })).runs, 1)
      assert.deepStrictEqual(yield* status(ok), Option.none())
      assert.deepStrictEqual(yield* status(slow), Option.some("cancelled"))
      yield* tick()
      assert.deepStrictEqual((yield* client.purge({ before: yield* now })).runs, 1)
      assert.deepStrictEqual(yield* status(slow), Option.none())
    })))

  it.effect("purge: a child run goes with its top-level run, never alone, and not before it ended", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([work, wait, family, orphaning])
      const parent = yield* client.start(family, { n: 0 })
      const leaving = yield* client.start(orphaning, { n: 1 })
      yield* drain(client)
      assert.strictEqual((yield* client.status(parent)).status, "completed")
      const [child] = (yield* client.list({ workflow: "ret_work" })).runs
      assert.strictEqual(child?.status, "completed")
      const orphan = yield* client.result(leaving)
      assert.strictEqual((yield* client.status(leaving)).status, "completed")
      assert.strictEqual((yield* client.status(orphan)).status, "suspended")
      yield* tick()
      const before = yield* now
      const status = (id: string) => Effect.map(Effect.option(client.status(id)), Option.map((info) => info.status))
      assert.deepStrictEqual((yield* client.purge({ before, workflow: "ret_work" })).runs, 0, "a child is never alone")
      assert.deepStrictEqual(yield* status(child!.id), Option.some("completed"))
      assert.deepStrictEqual(yield* client.purge({ before, workflow: "ret_family" }), { runs: 2, rows: 3 + 4 })
      assert.deepStrictEqual(yield* status(parent), Option.none())
      assert.deepStrictEqual(yield* status(child!.id), Option.none())
      // A parent whose child has not ended is kept, and so is the child.
      assert.deepStrictEqual((yield* client.purge({ before })).runs, 0)
      assert.deepStrictEqual(yield* status(leaving), Option.some("completed"))
      yield* client.cancel(orphan)
      yield* tick()
      assert.deepStrictEqual((yield* client.purge({ before })).runs, 0, "the child ended after the date")
      assert.deepStrictEqual((yield* client.purge({ before: yield* now })).runs, 2)
      assert.deepStrictEqual(yield* status(leaving), Option.none())
      assert.deepStrictEqual(yield* status(orphan), Option.none())
    })))

  it.effect("purge refuses a date that is not valid or is in the future, and states that are not an end", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([work])
      const id = yield* client.start(work, { n: 0 })
      yield* drain(client)
      const future = new Date((yield* Clock.currentTimeMillis) + 60_000)
      const refused = [
        yield* Effect.flip(client.purge({ before: future })),
        yield* Effect.flip(client.purge({ before: new Date(Number.NaN) })),
        yield* Effect.flip(client.purge({ before: yield* now, status: "pending" as never })),
        yield* Effect.flip(client.purge({ before: yield* now, status: ["completed", "lost" as never] })),
        yield* Effect.flip(client.purge({ before: yield* now, status: [] })),
        yield* Effect.flip(client.purge({ before: yield* now, workflow: "" }))
      ]
      for (const error of refused) assert.instanceOf(error, PgflowsError.InvalidFilter)
      assert.deepStrictEqual(refused.map((error) => (error as PgflowsError.InvalidFilter).reason), [
        `before (${future.toISOString()}) is in the future: only runs that already ended can be purged`,
        "before must be a valid date",
        "purge deletes runs that ended (completed, failed, cancelled), not pending",
        "purge deletes runs that ended (completed, failed, cancelled), not lost",
        "the status list is empty",
        "the workflow must be a non-empty name"
      ])
      assert.strictEqual((yield* client.status(id)).status, "completed", "nothing was deleted")
    })))

  it.effect("one pruning of a workflow at a time: exclusive runs nothing while another holds the name", () =>
    within(Effect.gen(function*() {
      const store = yield* Store.Store
      const inner = yield* store.exclusive(
        "retention:ret_a",
        Effect.all([
          store.exclusive("retention:ret_a", Effect.succeed("twice")),
          store.exclusive("retention:ret_b", Effect.succeed("another"))
        ])
      )
      assert.deepStrictEqual(inner, Option.some([Option.none(), Option.some("another")]))
      assert.deepStrictEqual(
        yield* store.exclusive("retention:ret_a", Effect.succeed("again")),
        Option.some("again"),
        "released when the effect ended"
      )
      const failed = yield* Effect.flip(store.exclusive("retention:ret_a", Effect.fail("boom")))
      assert.strictEqual(failed, "boom")
      assert.deepStrictEqual(yield* store.exclusive("retention:ret_a", Effect.succeed(1)), Option.some(1))
    })))

  it.effect("a pruning that fails is logged and tried again later; the worker goes on executing runs", () =>
    within(
      Effect.gen(function*() {
        const store = yield* Store.Store
        const purges = { attempts: 0 }
        const failing = Store.Store.of({
          ...store,
          purgeRuns: () =>
            Effect.suspend(() => {
              purges.attempts++
              return Effect.fail(unavailable("purgeRuns"))
            })
        })
        const short = Workflow.make("ret_failing", {
          input: Num,
          output: Num,
          error: Odd,
          retention: "1 millis",
          run: decide
        })
        const client = yield* Effect.provideService(engine([short]), Store.Store, failing)
        const first = yield* client.start(short, { n: 0 })
        yield* drain(client)
        const worker = yield* Effect.forkChild(client.runWorker())
        for (let i = 0; i < 200 && purges.attempts < 2; i++) yield* tick(20)
        assert.isAtLeast(purges.attempts, 2, "the pass was tried again at the next interval")
        // The worker still executes what is started.
        const next = yield* client.start(short, { n: 2 })
        for (let i = 0; i < 200; i++) {
          if ((yield* client.status(next)).status === "completed") break
          yield* tick(20)
        }
        yield* Fiber.interrupt(worker)
        assert.strictEqual((yield* client.status(next)).status, "completed")
        assert.strictEqual((yield* client.status(first)).status, "completed", "nothing was pruned")
      }),
      { retentionInterval: "100 millis" }
    ))

  const pruned = Effect.map(
    Metric.value(Metric.withAttributes(Metrics.runsPruned, { source: "retention" })),
    (state) => state.count
  )

  it.effect("a worker prunes in the background, by a workflow's own policy and by the global one", () =>
    within(
      Effect.gen(function*() {
        const short = Workflow.make("ret_short", {
          input: Num,
          output: Num,
          error: Odd,
          retention: { completed: "1 millis" },
          run: decide
        })
        const client = yield* engine([short, wait])
        const done = yield* client.start(short, { n: 0 })
        const failed = yield* client.start(short, { n: 1 })
        const waiting = yield* client.start(wait, { n: 2 })
        const stopped = yield* client.start(wait, { n: 3 })
        const parked = yield* client.start(wait, { n: 4 })
        yield* drain(client)
        yield* client.signal(waiting, "go", true)
        yield* drain(client)
        yield* client.cancel(stopped)
        const before = yield* pruned
        const worker = yield* Effect.forkChild(client.runWorker())
        const status = (id: string) => Effect.map(Effect.option(client.status(id)), Option.map((info) => info.status))
        for (let i = 0; i < 200; i++) {
          if (Option.isNone(yield* status(done)) && Option.isNone(yield* status(stopped))) break
          yield* tick(20)
        }
        yield* Fiber.interrupt(worker)
        assert.deepStrictEqual(yield* status(done), Option.none(), "its own policy: completed runs go")
        assert.deepStrictEqual(yield* status(stopped), Option.none(), "the global policy: cancelled runs go")
        assert.deepStrictEqual(yield* status(failed), Option.some("failed"), "no policy keeps failed runs")
        assert.deepStrictEqual(yield* status(waiting), Option.some("completed"), "nor completed ones of ret_wait")
        assert.deepStrictEqual(yield* status(parked), Option.some("suspended"))
        assert.isAtLeast((yield* pruned) - before, 2)
      }),
      { retention: { cancelled: "1 millis" }, retentionInterval: "100 millis" }
    ))
}
