// Bulk operations (`cancelMany`, `retryMany`, `forkMany`) for an operator's dead-letter work after an
// incident, written once and run on every backend: a filter (workflow, version, status, time range,
// limit), a dry run that writes nothing, and typed errors for filters that cannot be used.
import { assert } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { type PgflowsConfig, PgflowsError, Step, Workflow } from "pgflows"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })

class Outage extends Schema.TaggedError<Outage>()("Outage", { n: Schema.Number }) {}

export const bulkSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  /** A pause between starts, so that runs have distinct creation times on every backend. */
  const tick = Effect.andThen(
    backend.advance("10 millis"),
    Effect.sleep("10 millis").pipe(Effect.when(Effect.succeed(backend.name === "postgres")))
  )

  /**
   * `charge` then `ship`; odd inputs fail at `ship` while the outage lasts; inputs of 100 and more
   * wait for a signal.
   */
  const incident = (calls: ReturnType<typeof counter>, outage: { on: boolean }, version = 0) => {
    const charge = Step.make("charge", { input: Num, output: Num, run: (i) => Effect.as(calls.hit("charge"), i) })
    const ship = Step.make("ship", {
      input: Num,
      output: Num,
      error: Outage,
      run: (i) =>
        Effect.andThen(
          calls.hit("ship"),
          outage.on && i.n % 2 === 1 ? Effect.fail(new Outage({ n: i.n })) : Effect.succeed(i)
        )
    })
    return Workflow.make("incident", {
      version,
      input: Num,
      output: Num,
      error: Schema.Union([Outage, PgflowsError.InvalidSignal]),
      run: Effect.fn(function*(input) {
        yield* charge(input)
        if (input.n >= 100) yield* Workflow.waitForSignal("resume", Schema.Boolean)
        return yield* ship(input)
      })
    })
  }

  it.effect("after an incident: retry the failed runs, cancel the stuck ones, with dry runs first", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const outage = { on: true }
      const wf = incident(calls, outage)
      const client = yield* engine([wf])
      const ids: Array<string> = []
      for (const n of [1, 2, 3, 5, 100, 101]) {
        ids.push(yield* client.start(wf, { n }))
        yield* tick
      }
      yield* client.processOnce
      const statuses = yield* Effect.forEach(ids, (id) => Effect.map(client.status(id), (s) => s.status))
      assert.deepStrictEqual(statuses, ["failed", "completed", "failed", "failed", "suspended", "suspended"])
      // A dry run counts and lists, and writes nothing.
      const preview = yield* client.retryMany({ workflow: "incident" }, { dryRun: true })
      assert.deepStrictEqual(
        [preview.operation, preview.dryRun, preview.matched, preview.selected, preview.done],
        ["retry", true, 3, [ids[0], ids[2], ids[3]], []]
      )
      assert.strictEqual((yield* client.status(ids[0]!)).status, "failed", "the dry run wrote nothing")
      // The fix is deployed: retry them, two at a time, oldest first.
      outage.on = false
      const first = yield* client.retryMany({ workflow: "incident", limit: 2 })
      assert.deepStrictEqual([first.matched, first.done], [3, [ids[0], ids[2]]])
      const rest = yield* client.retryMany({ workflow: "incident", status: "failed" })
      assert.deepStrictEqual([rest.matched, rest.done], [1, [ids[3]]])
      yield* client.processOnce
      for (const index of [0, 2, 3]) assert.strictEqual((yield* client.status(ids[index]!)).status, "completed")
      assert.strictEqual(calls.get("charge"), 6, "a retry does not repeat the completed charge")
      // The stuck ones: cancel, after looking.
      const stuck = yield* client.cancelMany({ workflow: "incident", status: "suspended" }, { dryRun: true })
      assert.deepStrictEqual([stuck.matched, stuck.selected], [2, [ids[4], ids[5]]])
      assert.strictEqual((yield* client.status(ids[4]!)).status, "suspended")
      const cancelled = yield* client.cancelMany({ workflow: "incident" })
      assert.deepStrictEqual([cancelled.operation, cancelled.done, cancelled.skipped], ["cancel", [ids[4], ids[5]], []])
      for (const index of [4, 5]) assert.strictEqual((yield* client.status(ids[index]!)).status, "cancelled")
      const none = yield* Effect.flip(client.cancelMany({ workflow: "incident" }))
      assert.instanceOf(none, PgflowsError.NoRunsMatched)
      assert.strictEqual(
        none.message,
        `cancelMany: no run matches workflow "incident", status pending or running or suspended`
      )
    })))

  it.effect("a filter selects by version and creation time; forkMany forks every run it selects", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const v1 = incident(calls, { on: true }, 1)
      const v2 = incident(calls, { on: false }, 2)
      const client = yield* engine([v1, v2])
      const ones: Array<string> = []
      const created: Array<Date> = []
      for (const n of [1, 3, 5, 7]) {
        const id = yield* client.start(v1, { n }, { version: 1 })
        ones.push(id)
        created.push((yield* client.status(id)).createdAt)
        yield* tick
      }
      const two = yield* client.start(v2, { n: 9 })
      yield* client.processOnce
      assert.strictEqual((yield* client.status(two)).status, "completed")
      const window = { createdAfter: created[1], createdBefore: created[3] }
      const planned = yield* client.forkMany(
        { workflow: "incident", version: 1, status: "failed", ...window },
        { fromStep: "ship", version: 2, dryRun: true }
      )
      assert.deepStrictEqual([planned.matched, planned.selected, planned.done], [2, [ones[1], ones[2]], []])
      assert.deepStrictEqual(
        planned.forks.map((f): ReadonlyArray<unknown> => [f.runId, f.version, f.fromKey, f.kept]),
        [
          [ones[1], 2, "2", ["1"]],
          [ones[2], 2, "2", ["1"]]
        ]
      )
      assert.isFalse(planned.forks.some((f) => "id" in f), "a dry run starts nothing")
      assert.strictEqual((yield* client.list({ workflow: "incident" })).runs.length, 5)
      const forked = yield* client.forkMany(
        { workflow: "incident", version: 1, ...window },
        { fromStep: "ship", version: 2 }
      )
      assert.deepStrictEqual([forked.matched, forked.done], [2, [ones[1], ones[2]]])
      assert.deepStrictEqual(forked.forks.map((f) => f.runId), forked.selected, "in the order of the selection")
      yield* client.processOnce
      for (const fork of forked.forks) {
        assert.isTrue("id" in fork)
        if (!("id" in fork)) continue
        const status = yield* client.status(fork.id)
        assert.deepStrictEqual([status.status, status.version, status.forkedFrom?.runId], [
          "completed",
          2,
          fork.runId
        ])
      }
      assert.strictEqual((yield* client.list({ workflow: "incident", version: 2 })).runs.length, 3)
      assert.strictEqual(calls.get("charge"), 5, "the forks replay the charge")
      // A run that never reached the fork point is skipped, with why.
      const early = yield* client.forkMany({ workflow: "incident", version: 2, status: "completed" }, {
        fromStep: "nowhere",
        dryRun: true
      })
      assert.strictEqual(early.forks.length, 0)
      assert.match(early.skipped[0]?.reason ?? "", /no key or step of that name/)
    })))

  it.effect("bad filters are typed errors, and nothing is written", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const wf = incident(calls, { on: true })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      yield* client.processOnce
      const invalid = (effect: Effect.Effect<unknown, unknown>) =>
        Effect.map(Effect.flip(effect), (error) => {
          assert.instanceOf(error, PgflowsError.InvalidFilter)
          return (error as PgflowsError.InvalidFilter).reason
        })
      assert.match(
        yield* invalid(client.cancelMany({ workflow: "incident", limit: 0 })),
        /limit must be an integer from 1/
      )
      assert.match(yield* invalid(client.retryMany({ workflow: "incident", limit: 10_001 })), /limit/)
      assert.match(
        yield* invalid(client.cancelMany({ workflow: "incident", status: "completed" })),
        /cancel acts on runs that are pending, running, suspended, not completed/
      )
      assert.match(
        yield* invalid(
          client.retryMany({ workflow: "incident", createdAfter: new Date(5), createdBefore: new Date(5) })
        ),
        /createdAfter must be earlier than createdBefore/
      )
      assert.match(
        yield* invalid(client.retryMany({ workflow: "incident", version: -2 })),
        /version must be an integer/
      )
      assert.match(yield* invalid(client.retryMany({ workflow: "" })), /workflow must be named/)
      const nothing = yield* Effect.flip(client.retryMany({ workflow: "incident", version: 3 }))
      assert.instanceOf(nothing, PgflowsError.NoRunsMatched)
      assert.match(nothing.message, /retryMany: no run matches workflow "incident", version 3, status failed/)
      const unknown = yield* Effect.flip(client.forkMany({ workflow: "incident" }, { fromStep: "ship", version: 8 }))
      assert.instanceOf(unknown, PgflowsError.UnknownVersion)
      assert.strictEqual((yield* client.status(id)).status, "failed", "nothing was written")
      assert.strictEqual((yield* client.list()).runs.length, 1)
    })))
}
