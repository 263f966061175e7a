// Workflow versions (docs/ARCHITECTURE.md, "Versions"), written once and run on every backend: runs
// record the version they started on, workers claim only the versions they register, old and new
// versions are served side by side until the old runs drain.
import { assert } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, Metric, Option, Schema } from "effect"
import { Metrics, type PgflowsConfig, PgflowsError, Step, Workflow } from "pgflows"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Name = Schema.Struct({ name: Schema.String })

/** Version `version` of workflow `greet`: a step, a parked hour, a step, all tagged with the version. */
const greet = (version: number, calls = counter()) => {
  const hello = Step.make(`hello_v${version}`, {
    input: Name,
    output: Schema.String,
    run: (input) => Effect.as(calls.hit(`hello v${version}`), `v${version}:${input.name}`)
  })
  const bye = Step.make("bye", {
    input: Schema.String,
    output: Schema.String,
    run: (text) => Effect.as(calls.hit(`bye v${version}`), `${text}!`)
  })
  return Workflow.make("greet", {
    version,
    input: Name,
    output: Schema.String,
    run: Effect.fn(function*(input) {
      const text = yield* hello(input)
      yield* Workflow.sleep("1 hour")
      return yield* bye(text)
    })
  })
}

export const versionsSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  it.effect("an old and a new version are served side by side by two workers, each run finishing on its own", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const v1 = greet(1, calls)
      const v2 = greet(2, calls)
      const old = yield* engine([v1])
      const next = yield* engine([v2])
      const before = yield* old.startBatch(v1, [{ name: "a" }, { name: "b" }, { name: "c" }])
      const after = yield* next.startBatch(v2, [{ name: "d" }, { name: "e" }])
      assert.strictEqual(yield* next.processOnce, 2, "the new worker takes only the runs of its version")
      assert.strictEqual(yield* old.processOnce, 3, "the old worker drains the old runs")
      assert.strictEqual(yield* next.processOnce, 0)
      yield* backend.advance("2 hours")
      // Woken from their sleep, the parked runs go back to the worker of their own version.
      assert.strictEqual(yield* next.processOnce, 2)
      assert.strictEqual(yield* old.processOnce, 3)
      for (const id of before) {
        assert.match(yield* old.result(id), /^v1:[abc]!$/)
        assert.strictEqual((yield* old.status(id)).version, 1)
      }
      for (const id of after) {
        assert.match(yield* next.result(id), /^v2:[de]!$/)
        assert.strictEqual((yield* next.status(id)).version, 2)
      }
      assert.deepStrictEqual(
        [calls.get("hello v1"), calls.get("bye v1"), calls.get("hello v2"), calls.get("bye v2")],
        [3, 3, 2, 2]
      )
    })))

  it.effect("a worker never claims, let alone fails, a run of a version it lacks; status says which it waits for", () =>
    within(
      Effect.gen(function*() {
        const lines: Array<string> = []
        const capture = Logger.make((options) => {
          lines.push(String(options.message))
        })
        const v1 = greet(1)
        const v2 = greet(2)
        const old = yield* engine([v1])
        const newer = yield* engine([v1, v2])
        const id = yield* newer.start(v2, { name: "z" })
        const worker = yield* Effect.forkChild(old.runWorker().pipe(Effect.provide(Logger.layer([capture]))))
        for (let i = 0; i < 20; i++) {
          yield* backend.advance("5 seconds")
          yield* backend.settle(yield* Effect.forkChild(Effect.sleep("100 millis")))
        }
        const status = yield* old.status(id)
        assert.strictEqual(status.status, "pending", "never touched by a worker that lacks version 2")
        assert.strictEqual(status.executions, 0)
        assert.isTrue(Option.isNone(status.error))
        assert.match(status.waitingFor ?? "", /a worker that registers workflow "greet" version 2 \(no running worker/)
        const waiting = yield* Metric.value(
          Metric.withAttributes(Metrics.runsWithoutWorker, { workflow: "greet", version: "2" })
        )
        assert.strictEqual(waiting.value, 1)
        assert.isDefined(lines.find((line) => /1 runs of workflow "greet" version 2 have waited/.test(line)))
        const inFlight = yield* Metric.value(
          Metric.withAttributes(Metrics.runsInFlight, { workflow: "greet", version: "2" })
        )
        assert.strictEqual(inFlight.value, 1)
        yield* Fiber.interrupt(worker)
        // A deploy that registers version 2 runs it.
        assert.strictEqual(yield* newer.processOnce, 1)
        assert.strictEqual((yield* newer.status(id)).waitingFor, undefined)
      }),
      { pollInterval: "100 millis", unclaimedWarning: "1 minute" }
    ))

  it.effect("runs recorded without a version keep running on the definition without one", () =>
    within(Effect.gen(function*() {
      const hello = Step.make("hello", { input: Name, output: Schema.String, run: (i) => Effect.succeed(i.name) })
      const legacy = Workflow.make("legacy", {
        input: Name,
        output: Schema.String,
        run: (input) => Effect.andThen(hello(input), (text) => Effect.as(Workflow.sleep("1 hour"), `old ${text}`))
      })
      const renamed = Step.make("hello_there", {
        input: Name,
        output: Schema.String,
        run: (i) => Effect.succeed(i.name)
      })
      const v3 = Workflow.make("legacy", {
        version: 3,
        input: Name,
        output: Schema.String,
        run: (input) => Effect.andThen(renamed(input), (text) => Effect.as(Workflow.sleep("1 hour"), `new ${text}`))
      })
      const before = yield* engine([legacy])
      const old = yield* before.start(legacy, { name: "x" })
      assert.strictEqual((yield* before.status(old)).version, 0)
      yield* before.processOnce
      // The deploy keeps the unversioned definition next to version 3.
      const both = yield* engine([legacy, v3])
      const fresh = yield* both.start(legacy, { name: "y" })
      assert.strictEqual((yield* both.status(fresh)).version, 3, "a start takes the newest version")
      yield* both.processOnce
      yield* backend.advance("2 hours")
      yield* both.processOnce
      assert.strictEqual(yield* both.result(old), "old x")
      assert.strictEqual(yield* both.result(fresh), "new y")
    })))

  it.effect("start uses the newest version the client knows, or the one asked for; an unknown one writes nothing", () =>
    within(Effect.gen(function*() {
      const v1 = greet(1)
      const v2 = greet(2)
      const client = yield* engine([v1, v2])
      const newest = yield* client.start(v1, { name: "n" })
      assert.strictEqual((yield* client.status(newest)).version, 2, "the newest registered version")
      const pinned = yield* client.start(v2, { name: "p" }, { version: 1 })
      assert.strictEqual((yield* client.status(pinned)).version, 1)
      const batch = yield* client.startBatch(v2, [{ name: "q" }, { name: "r" }], { version: 1 })
      for (const id of batch) assert.strictEqual((yield* client.status(id)).version, 1)
      const unknown = yield* Effect.flip(client.start(v2, { name: "u" }, { version: 7 }))
      assert.instanceOf(unknown, PgflowsError.UnknownVersion)
      assert.deepStrictEqual(unknown.known, [1, 2])
      assert.match(unknown.message, /workflow "greet" has no definition of version 7 here \(versions known: 1, 2\)/)
      assert.instanceOf(
        yield* Effect.flip(client.startBatch(v2, [{ name: "u" }], { version: 7 })),
        PgflowsError.UnknownVersion
      )
      assert.strictEqual((yield* client.list()).runs.length, 4, "nothing was written for the unknown version")
      // A client that registers nothing of the workflow starts the version of the definition passed.
      const other = yield* engine([])
      const passed = yield* other.start(v1, { name: "o" })
      assert.strictEqual((yield* other.status(passed)).version, 1)
      assert.throws(() => greet(-1), /invalid version -1 of workflow "greet": it must be an integer from 0/)
      assert.throws(() => greet(1.5), /invalid version 1.5/)
      const twice = yield* Effect.exit(engine([v1, greet(1)]))
      assert.isTrue(Exit.hasDies(twice), "two different definitions of one version are refused")
    })))

  it.effect("status and list show the version; list filters by it; runsInFlight tells when a version is drained", () =>
    within(Effect.gen(function*() {
      const v1 = greet(1)
      const v2 = greet(2)
      const client = yield* engine([v1, v2])
      const ones: Array<string> = []
      for (const name of ["a", "b"]) {
        ones.push(yield* client.start(v1, { name }, { version: 1 }))
        yield* backend.advance("1 millis")
      }
      const two = yield* client.start(v2, { name: "c" })
      const listed = yield* client.list({ workflow: "greet" })
      assert.deepStrictEqual(listed.runs.map((run) => [run.id, run.version]), [[two, 2], [ones[1], 1], [ones[0], 1]])
      assert.deepStrictEqual((yield* client.list({ version: 1 })).runs.map((run) => run.id).sort(), [...ones].sort())
      assert.deepStrictEqual((yield* client.list({ workflow: "greet", version: 2 })).runs.map((run) => run.id), [two])
      assert.deepStrictEqual((yield* client.list({ version: 3 })).runs, [])
      assert.deepStrictEqual(yield* client.runsInFlight("greet"), [
        { workflow: "greet", version: 1, runs: 2 },
        { workflow: "greet", version: 2, runs: 1 }
      ])
      yield* client.processOnce
      yield* backend.advance("2 hours")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.runsInFlight("greet"), [], "both versions are drained")
      yield* client.start(v2, { name: "d" })
      assert.deepStrictEqual(yield* client.runsInFlight(), [{ workflow: "greet", version: 2, runs: 1 }])
    })))

  it.effect("a child starts on the version of the definition its parent passes", () =>
    within(Effect.gen(function*() {
      const child = (version: number) =>
        Workflow.make("kid", {
          version,
          input: Name,
          output: Schema.String,
          run: (i) => Effect.succeed(`kid v${version} ${i.name}`)
        })
      const kid1 = child(1)
      const kid2 = child(2)
      const parent = Workflow.make("parent", {
        input: Name,
        output: Schema.String,
        run: (input) => Workflow.child(kid1, input)
      })
      const client = yield* engine([parent, kid1, kid2])
      const id = yield* client.start(parent, { name: "p" })
      yield* client.processOnce
      yield* client.processOnce
      yield* client.processOnce
      assert.strictEqual(yield* client.result(id), "kid v1 p")
      const [kid] = (yield* client.list({ workflow: "kid" })).runs
      assert.strictEqual(kid?.version, 1)
    })))
}
