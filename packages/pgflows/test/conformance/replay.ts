// The replay checker (`ReplayCheck`) and history export (`RunHistory`), written once and run on
// every backend: recorded runs, from the store or from exported JSON, replayed against new code
// without executing anything.
import { assert } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { type PgflowsConfig, PgflowsError, ReplayCheck, RunHistory, Step, Store, Workflow } from "pgflows"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Parcel = Schema.Struct({ id: Schema.String, weight: Schema.Number })

export const replaySuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  const step = <O extends Schema.Top & { readonly DecodingServices: never; readonly EncodingServices: never }>(
    name: string,
    calls: ReturnType<typeof counter>,
    output: O,
    value: (parcel: typeof Parcel.Type) => O["Type"]
  ) => Step.make(name, { input: Parcel, output, run: (parcel) => Effect.as(calls.hit(name), value(parcel)) })

  /** The deployed code: reserve, wait for "packed", print a label. */
  const ship = (calls: ReturnType<typeof counter>, options: {
    readonly reserveName?: string
    readonly append?: boolean
    readonly labelOutput?: "text" | "number"
    readonly weigh?: (parcel: typeof Parcel.Type) => typeof Parcel.Type
  } = {}) => {
    const reserve = step(options.reserveName ?? "reserve", calls, Schema.Boolean, () => true)
    const label = options.labelOutput === "number"
      ? step("label", calls, Schema.Number, () => 1)
      : step("label", calls, Schema.String, (p) => `TRK-${p.id}`)
    const notify = step("notify", calls, Schema.Boolean, () => true)
    return Workflow.make("ship", {
      input: Parcel,
      output: Schema.Unknown,
      run: Effect.fn(function*(parcel) {
        yield* reserve(options.weigh?.(parcel) ?? parcel)
        yield* Workflow.waitForSignal("packed", Schema.Boolean)
        const tracking = yield* label(parcel)
        if (options.append === true) yield* notify(parcel)
        return tracking
      })
    })
  }

  /** Two recorded runs on the deployed code: one parked at the signal, one completed. */
  const record = Effect.gen(function*() {
    const calls = counter()
    const client = yield* engine([ship(calls)])
    const parked = yield* client.start(ship(calls), { id: "p-1", weight: 2 }, { id: "parked" })
    yield* backend.advance("1 millis")
    const done = yield* client.start(ship(calls), { id: "p-2", weight: 3 }, { id: "done" })
    yield* client.processOnce
    yield* client.signal(done, "packed", true)
    yield* client.processOnce
    assert.strictEqual((yield* client.status(done)).status, "completed")
    const histories = [yield* client.exportHistory(parked), yield* client.exportHistory(done)]
    return { client, histories, calls }
  })

  it.effect("the checker catches a renamed step in a recorded history and passes an appended step", () =>
    within(Effect.gen(function*() {
      const { histories } = yield* record
      // Through JSON, as a CI reads them from files.
      const recorded = yield* Effect.forEach(histories, (history) => RunHistory.fromJson(RunHistory.toJson(history)))
      const calls = counter()
      const renamed = yield* ReplayCheck.histories([ship(calls, { reserveName: "reserve_stock" })], recorded)
      assert.isFalse(renamed.ok)
      for (const verdict of renamed.verdicts) {
        assert.strictEqual(verdict._tag, "Diverges")
        if (verdict._tag !== "Diverges") continue
        assert.strictEqual(verdict.key, "1")
        assert.strictEqual(verdict.recorded.name, "reserve")
        assert.strictEqual(verdict.replay.name, "reserve_stock")
        assert.strictEqual(verdict.recorded.inputHash, verdict.replay.inputHash)
        assert.match(verdict.recorded.inputHash, /^[0-9a-f]{32}$/)
        assert.instanceOf(verdict.error, PgflowsError.NonDeterminismError)
      }
      assert.match(
        ReplayCheck.format(renamed),
        /^DIVERGES run parked \(workflow "ship", suspended\) at key 1: recorded "reserve" \(input hash [0-9a-f]+\), the code asks for "reserve_stock"/m
      )
      const appended = yield* ReplayCheck.histories([ship(calls, { append: true })], recorded)
      assert.isTrue(appended.ok, ReplayCheck.format(appended))
      const [parked, done] = appended.verdicts
      assert.deepStrictEqual(
        parked?._tag === "Replays" ? [parked.outcome, parked.next, parked.replayed] : parked,
        ["continues", { key: "2", name: "pgflows.signal" }, 2]
      )
      assert.deepStrictEqual(
        done?._tag === "Replays" ? [done.outcome, done.next, done.replayed] : done,
        ["continues", { key: "4", name: "notify" }, 3]
      )
      assert.strictEqual(calls.total(), 0, "the checker executes no step")
    })))

  it.effect("the checker reads the runs of the store, writes nothing, and reports inputs and values that changed", () =>
    within(Effect.gen(function*() {
      const { client, histories, calls } = yield* record
      const store = yield* Store.Store
      const journals = yield* Effect.forEach(["parked", "done"], (id) => store.getSteps(id))
      const checking = counter()
      // By default, the runs in flight; here every state.
      const all = ["pending", "running", "suspended", "completed", "failed", "cancelled"] as const
      const inFlight = yield* ReplayCheck.stored([ship(checking, { reserveName: "reserve_stock" })])
      assert.deepStrictEqual(inFlight.verdicts.map((v) => [v.runId, v._tag]), [["parked", "Diverges"]])
      const rehashed = yield* ReplayCheck.stored(
        [ship(checking, { weigh: (parcel) => ({ ...parcel, weight: parcel.weight * 1000 }) })],
        { statuses: all }
      )
      assert.deepStrictEqual(rehashed.verdicts.map((v) => [v.runId, v._tag]), [["parked", "Diverges"], [
        "done",
        "Diverges"
      ]])
      const first = rehashed.verdicts[0]
      if (first?._tag === "Diverges") {
        assert.strictEqual(first.recorded.name, first.replay.name)
        assert.notStrictEqual(first.recorded.inputHash, first.replay.inputHash)
      }
      const retyped = yield* ReplayCheck.stored([ship(checking, { labelOutput: "number" })], { statuses: all })
      const [parked, done] = retyped.verdicts
      assert.strictEqual(parked?._tag, "Replays", "the parked run has not reached the label yet")
      assert.strictEqual(done?._tag, "Fails")
      if (done?._tag === "Fails") {
        assert.instanceOf(done.error, PgflowsError.DecodeError)
        assert.strictEqual(done.error.subject, `output of step "label" (key 3)`)
      }
      const v2 = Workflow.make("ship", { version: 2, input: Parcel, output: Schema.Unknown, run: () => Effect.void })
      const missing = yield* ReplayCheck.histories([v2], histories)
      assert.deepStrictEqual(missing.verdicts.map((v) => v._tag === "NoDefinition" ? v.known : v._tag), [[2], [2]])
      assert.match(ReplayCheck.format(missing), /MISSING run parked \(workflow "ship", suspended\): no definition/)
      assert.strictEqual(checking.total(), 0, "the checker executes no step")
      assert.strictEqual(calls.get("reserve"), 2)
      assert.deepStrictEqual(yield* Effect.forEach(["parked", "done"], (id) => store.getSteps(id)), journals)
      assert.strictEqual((yield* client.status("parked")).status, "suspended", "nothing was written")
    })))

  it.effect("an exported history is the run and its journal; a document that is not one is a typed error", () =>
    within(Effect.gen(function*() {
      const { client, histories } = yield* record
      const done = histories[1]!
      assert.strictEqual(done.format, "pgflows.run-history/1")
      assert.deepStrictEqual(
        [done.run.id, done.run.workflow, done.run.version, done.run.status, done.run.input],
        ["done", "ship", 0, "completed", { id: "p-2", weight: 3 }]
      )
      assert.deepStrictEqual(done.journal.map((entry) => [entry.key, entry.name, entry.status]), [
        ["1", "reserve", "completed"],
        ["2", "pgflows.signal", "completed"],
        ["3", "label", "completed"]
      ])
      assert.strictEqual(done.journal[2]?.output, "TRK-p-2")
      const notJson = yield* Effect.flip(RunHistory.fromJson("{ nope"))
      assert.instanceOf(notJson, PgflowsError.InvalidHistory)
      assert.match(notJson.message, /^not a pgflows run history: not JSON/)
      const wrong = yield* Effect.flip(RunHistory.fromJson(JSON.stringify({ ...done, format: "other" })))
      assert.instanceOf(wrong, PgflowsError.InvalidHistory)
      assert.strictEqual(wrong.issues[0]?.path, "format")
      assert.instanceOf(yield* Effect.flip(client.exportHistory("no-such-run")), PgflowsError.RunNotFound)
    })))
}
