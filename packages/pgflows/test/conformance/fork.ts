// Restart from a step (`Pgflows.fork`), written once and run on every backend: a new run reuses the
// original's journal up to a step, the original is untouched, and the fork says what runs again.
import { assert } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { type PgflowsConfig, PgflowsError, Step, Workflow } from "pgflows"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })

class Broken extends Schema.TaggedError<Broken>()("Broken", { why: Schema.String }) {}

export const forkSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  /** Three steps adding 1, 10 and 100; `third` fails while `broken` says so. */
  const threeSteps = (calls: ReturnType<typeof counter>, state: { broken: boolean }, version = 0) => {
    const add = (name: string, amount: number) =>
      Step.make(name, {
        input: Num,
        output: Num,
        error: Broken,
        run: (i) =>
          Effect.andThen(
            calls.hit(name),
            name === "third" && state.broken
              ? Effect.fail(new Broken({ why: "bug" }))
              : Effect.succeed({ n: i.n + amount })
          )
      })
    const [first, second, third] = [add("first", 1), add("second", 10), add("third", 100)]
    return Workflow.make("three", {
      version,
      input: Num,
      output: Num,
      error: Broken,
      run: (input) => first(input).pipe(Effect.flatMap(second), Effect.flatMap(third))
    })
  }

  it.effect("a fork from the second of three steps executes only the second and third", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const wf = threeSteps(calls, { broken: false })
      const client = yield* engine([wf])
      const original = yield* client.start(wf, { n: 0 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(original), { n: 111 })
      const before = yield* client.status(original)
      const forked = yield* client.fork(original, { fromStep: "second" })
      assert.notStrictEqual(forked.id, original)
      assert.deepStrictEqual(
        [forked.runId, forked.workflow, forked.version, forked.fromKey, forked.kept],
        [original, "three", 0, "2", ["1"]]
      )
      assert.deepStrictEqual(forked.rerun, [
        { key: "2", name: "second", transactional: false },
        { key: "3", name: "third", transactional: false }
      ])
      assert.deepStrictEqual(forked.repeatedSideEffects, forked.rerun, "neither is a transaction step")
      assert.strictEqual(yield* client.processOnce, 1)
      assert.deepStrictEqual(yield* client.result(forked.id), { n: 111 })
      assert.deepStrictEqual([calls.get("first"), calls.get("second"), calls.get("third")], [1, 2, 2])
      const fork = yield* client.status(forked.id)
      assert.deepStrictEqual(fork.forkedFrom, { runId: original, key: "2" })
      assert.deepStrictEqual(fork.steps.map((s) => [s.key, s.name, s.status]), [
        ["1", "first", "completed"],
        ["2", "second", "completed"],
        ["3", "third", "completed"]
      ])
      assert.deepStrictEqual(fork.input, { n: 0 })
      const after = yield* client.status(original)
      assert.deepStrictEqual(after, before, "the original is untouched")
      assert.strictEqual(after.forkedFrom, undefined)
    })))

  it.effect("a failed run forked onto the version that fixes it: the steps before the fix are not repeated", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const v1 = threeSteps(calls, { broken: true }, 1)
      const v2 = threeSteps(calls, { broken: false }, 2)
      const client = yield* engine([v1, v2])
      const failed = yield* client.start(v1, { n: 5 }, { version: 1 })
      yield* client.processOnce
      assert.strictEqual((yield* client.status(failed)).status, "failed")
      const plan = yield* client.planFork(failed, { fromStep: "third", version: 2 })
      assert.deepStrictEqual([plan.version, plan.fromKey, plan.kept, plan.rerun], [2, "3", ["1", "2"], []])
      const forked = yield* client.fork(failed, { fromStep: "3", version: 2, id: "repaired" })
      assert.strictEqual(forked.id, "repaired")
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result("repaired"), { n: 116 })
      assert.strictEqual((yield* client.status("repaired")).version, 2)
      assert.deepStrictEqual([calls.get("first"), calls.get("second"), calls.get("third")], [1, 1, 2])
      // The same id again is the same fork; another run cannot take it.
      const again = yield* client.fork(failed, { fromStep: "3", version: 2, id: "repaired" })
      assert.strictEqual(again.id, "repaired")
      const other = yield* client.start(v2, { n: 1 })
      yield* client.processOnce
      const conflict = yield* Effect.flip(client.fork(other, { fromStep: "1", id: "repaired" }))
      assert.instanceOf(conflict, PgflowsError.RunIdConflict)
    })))

  it.effect("a fork says which completed steps run again and which of them are not transaction steps", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const plain = Step.make("email", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("email"), i) })
      const booked = Step.transaction("book", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("book"), i) })
      const wf = Workflow.make("mixed", {
        input: Num,
        output: Num,
        run: (input) => plain(input).pipe(Effect.flatMap(booked), Effect.flatMap(plain))
      })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      yield* client.processOnce
      assert.deepStrictEqual(
        (yield* client.status(id)).steps.map((s) => [s.key, s.transactional]),
        [["1", false], ["2", true], ["3", false]]
      )
      const plan = yield* client.planFork(id, { fromStep: "1" })
      assert.deepStrictEqual(plan.kept, [])
      assert.deepStrictEqual(plan.rerun.map((s) => [s.key, s.name, s.transactional]), [
        ["1", "email", false],
        ["2", "book", true],
        ["3", "email", false]
      ])
      assert.deepStrictEqual(plan.repeatedSideEffects.map((s) => s.key), ["1", "3"])
      const fromBook = yield* client.planFork(id, { fromStep: booked })
      assert.deepStrictEqual([fromBook.fromKey, fromBook.kept], ["2", ["1"]])
    })))

  it.effect("a fork past a child workflow replays the original's child instead of starting another", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const kid = Workflow.make("kid", {
        input: Num,
        output: Num,
        run: (i) => Effect.as(calls.hit("kid"), { n: i.n * 2 })
      })
      const after = Step.make("after", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("after"), i) })
      const parent = Workflow.make("parent", {
        input: Num,
        output: Num,
        run: (input) => Effect.flatMap(Workflow.child(kid, input), after)
      })
      const client = yield* engine([parent, kid])
      const id = yield* client.start(parent, { n: 4 })
      for (let i = 0; i < 3; i++) yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 8 })
      const forked = yield* client.fork(id, { fromStep: "after" })
      assert.deepStrictEqual(forked.kept, ["1", "2"])
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(forked.id), { n: 8 })
      assert.deepStrictEqual([calls.get("kid"), calls.get("after")], [1, 2], "the child ran once")
      assert.strictEqual((yield* client.list({ workflow: "kid" })).runs.length, 1)
    })))

  it.effect("forks of an unknown run, step or version are typed errors, and nothing is written", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const wf = threeSteps(calls, { broken: false })
      const looped = Workflow.make("looped", {
        input: Num,
        output: Num,
        run: Effect.fn(function*(input) {
          const again = Step.make("again", { input: Num, output: Num, run: Effect.succeed })
          yield* again(input)
          return yield* again({ n: input.n + 1 })
        })
      })
      const client = yield* engine([wf, looped])
      const id = yield* client.start(wf, { n: 0 })
      const loop = yield* client.start(looped, { n: 0 })
      yield* client.processOnce
      const runs = (yield* client.list()).runs.length
      const missing = yield* Effect.flip(client.fork("no-such-run", { fromStep: "first" }))
      assert.instanceOf(missing, PgflowsError.RunNotFound)
      const unknown = yield* Effect.flip(client.fork(id, { fromStep: "fourth" }))
      assert.instanceOf(unknown, PgflowsError.InvalidFork)
      assert.match(
        unknown.message,
        /cannot fork run "[^"]+" from "fourth": the run's journal has no key or step of that name \(its steps: first \(key 1\), second \(key 2\), third \(key 3\)\)/
      )
      assert.instanceOf(yield* Effect.flip(client.fork(id, { fromStep: "7" })), PgflowsError.InvalidFork)
      const twice = yield* Effect.flip(client.fork(loop, { fromStep: "again" }))
      assert.instanceOf(twice, PgflowsError.InvalidFork)
      assert.match(twice.reason, /step "again" ran at keys 1, 2; give the key/)
      const version = yield* Effect.flip(client.fork(id, { fromStep: "second", version: 4 }))
      assert.instanceOf(version, PgflowsError.UnknownVersion)
      assert.deepStrictEqual(version.known, [0])
      assert.instanceOf(yield* Effect.flip(client.planFork(id, { fromStep: "nope" })), PgflowsError.InvalidFork)
      assert.strictEqual((yield* client.list()).runs.length, runs, "nothing was written")
      assert.isTrue(Option.isNone((yield* client.status(id)).error))
    })))
}
