// Patches (docs/ARCHITECTURE.md, "Patches"): `Workflow.patched` answers true for runs that reach it
// for the first time and records that, replays false for runs that passed it before the change, and
// `Workflow.deprecatePatch` removes the old branch. Written once and run on every backend.
import { assert } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { type PgflowsConfig, PgflowsError, Step, Workflow } from "pgflows"
import { type Backend, counter, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Order = Schema.Struct({ id: Schema.String })

export const patchesSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  /** The steps of a shipping workflow, counting their executions. */
  const steps = (calls: ReturnType<typeof counter>) => {
    const step = (name: string) =>
      Step.make(name, {
        input: Order,
        output: Schema.String,
        run: (o) => Effect.as(calls.hit(name), `${name} ${o.id}`)
      })
    return { charge: step("charge"), email: step("email"), sms: step("sms") }
  }

  /** The workflow before the fix: charge, wait for "go", email, wait for "done". */
  const original = (calls: ReturnType<typeof counter>) => {
    const { charge, email } = steps(calls)
    return Workflow.make("ship", {
      input: Order,
      output: Schema.String,
      run: Effect.fn(function*(order) {
        yield* charge(order)
        yield* Workflow.waitForSignal("go", Schema.Boolean)
        const sent = yield* email(order)
        yield* Workflow.waitForSignal("done", Schema.Boolean)
        return sent
      })
    })
  }

  /** The fix, shipped in the same version: an SMS instead of the email, for runs that get there now. */
  const patched = (calls: ReturnType<typeof counter>) => {
    const { charge, email, sms } = steps(calls)
    return Workflow.make("ship", {
      input: Order,
      output: Schema.String,
      run: Effect.fn(function*(order) {
        yield* charge(order)
        yield* Workflow.waitForSignal("go", Schema.Boolean)
        const sent = (yield* Workflow.patched("sms-instead-of-email")) ? yield* sms(order) : yield* email(order)
        yield* Workflow.waitForSignal("done", Schema.Boolean)
        return sent
      })
    })
  }

  /** Once no run took the old branch: the branch is gone. */
  const deprecated = (calls: ReturnType<typeof counter>) => {
    const { charge, sms } = steps(calls)
    return Workflow.make("ship", {
      input: Order,
      output: Schema.String,
      run: Effect.fn(function*(order) {
        yield* charge(order)
        yield* Workflow.waitForSignal("go", Schema.Boolean)
        yield* Workflow.deprecatePatch("sms-instead-of-email")
        const sent = yield* sms(order)
        yield* Workflow.waitForSignal("done", Schema.Boolean)
        return sent
      })
    })
  }

  /** And finally without the call: a patch uses no key, so removing it moves nothing. */
  const cleaned = (calls: ReturnType<typeof counter>) => {
    const { charge, sms } = steps(calls)
    return Workflow.make("ship", {
      input: Order,
      output: Schema.String,
      run: Effect.fn(function*(order) {
        yield* charge(order)
        yield* Workflow.waitForSignal("go", Schema.Boolean)
        const sent = yield* sms(order)
        yield* Workflow.waitForSignal("done", Schema.Boolean)
        return sent
      })
    })
  }

  it.effect("a patched workflow replays runs recorded before the patch and after it", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const before = yield* engine([original(calls)])
      const passed = yield* before.start(original(calls), { id: "passed" })
      const waiting = yield* before.start(original(calls), { id: "waiting" })
      yield* before.processOnce
      // "passed" goes past the changed point on the old code (it emails), "waiting" does not.
      yield* before.signal(passed, "go", true)
      yield* before.processOnce
      assert.deepStrictEqual([calls.get("charge"), calls.get("email")], [2, 1])
      // The fix ships in the same version.
      const after = yield* engine([patched(calls)])
      const fresh = yield* after.start(patched(calls), { id: "fresh" })
      yield* after.processOnce
      for (const id of [passed, waiting, fresh]) yield* after.signal(id, "go", true)
      yield* after.processOnce
      for (const id of [passed, waiting, fresh]) yield* after.signal(id, "done", true)
      yield* after.processOnce
      assert.strictEqual(yield* after.result(passed), "email passed", "the run that passed the point replays false")
      assert.strictEqual(yield* after.result(waiting), "sms waiting", "a run reaching it for the first time: true")
      assert.strictEqual(yield* after.result(fresh), "sms fresh")
      assert.deepStrictEqual(
        [calls.get("charge"), calls.get("email"), calls.get("sms")],
        [3, 1, 2],
        "nothing ran twice: the recorded answers were replayed"
      )
      // The answer `true` is in the journal, just before the operation it chose; `false` costs nothing.
      const recorded = (yield* after.status(waiting)).steps.map((step) => [step.key, step.name])
      assert.deepStrictEqual(recorded, [
        ["1", "charge"],
        ["2", "pgflows.signal"],
        ["3~sms-instead-of-email", "pgflows.patch"],
        ["3", "sms"],
        ["4", "pgflows.signal"]
      ])
      assert.isFalse((yield* after.status(passed)).steps.some((step) => step.name === "pgflows.patch"))
    })))

  it.effect("deprecatePatch replays the runs that took the new branch and names the patch for one that did not", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const before = yield* engine([original(calls)])
      const old = yield* before.start(original(calls), { id: "old" })
      yield* before.processOnce
      yield* before.signal(old, "go", true)
      yield* before.processOnce
      const withPatch = yield* engine([patched(calls)])
      const taken = yield* withPatch.start(patched(calls), { id: "taken" })
      yield* withPatch.processOnce
      yield* withPatch.signal(taken, "go", true)
      yield* withPatch.processOnce
      const later = yield* engine([deprecated(calls)])
      const fresh = yield* later.start(deprecated(calls), { id: "after-deprecation" })
      yield* later.processOnce
      yield* later.signal(fresh, "go", true)
      yield* later.processOnce
      for (const id of [old, taken]) yield* later.signal(id, "done", true)
      yield* later.processOnce
      assert.strictEqual(yield* later.result(taken), "sms taken")
      const failed = yield* later.status(old)
      assert.strictEqual(failed.status, "failed")
      const error = Option.getOrThrow(failed.error)
      assert.instanceOf(error, PgflowsError.NonDeterminismError)
      assert.strictEqual(error.patch, "sms-instead-of-email")
      assert.strictEqual(error.key, "3")
      assert.strictEqual(error.journal.name, "email")
      assert.match(error.message, /passed patch "sms-instead-of-email" \(key 3\) before the patch shipped/)
      assert.match(error.message, /Workflow\.deprecatePatch\("sms-instead-of-email"\) removed/)
      assert.match(error.message, /fork the run from a step before key 3/)
      // deprecatePatch records its answer for new runs, and the call can then go away altogether.
      const final = yield* engine([cleaned(calls)])
      yield* final.signal(fresh, "done", true)
      yield* final.processOnce
      assert.strictEqual(yield* final.result(fresh), "sms after-deprecation")
      assert.strictEqual(calls.get("sms"), 2, "every recorded sms was replayed, not sent again")
    })))

  it.effect("a patch in a loop decides at each point: iterations before the change replay false", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const work = Step.make("work", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n) => Effect.as(calls.hit(`work ${n}`), n)
      })
      const audit = Step.make("audit", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n) => Effect.as(calls.hit(`audit ${n}`), n)
      })
      const make = (withAudit: boolean) =>
        Workflow.make("loop", {
          input: Schema.Number,
          output: Schema.Array(Schema.String),
          run: Effect.fn(function*(count) {
            const done: Array<string> = []
            for (let n = 0; n < count; n++) {
              if (withAudit && (yield* Workflow.patched("audit"))) done.push(`audit ${yield* audit(n)}`)
              done.push(`work ${yield* work(n)}`)
              yield* Workflow.waitForSignal("tick", Schema.Boolean)
            }
            return done
          })
        })
      const before = yield* engine([make(false)])
      const id = yield* before.start(make(false), 3)
      yield* before.processOnce
      yield* before.signal(id, "tick", true)
      yield* before.processOnce
      const after = yield* engine([make(true)])
      yield* after.signal(id, "tick", true)
      yield* after.processOnce
      yield* after.signal(id, "tick", true)
      yield* after.processOnce
      assert.deepStrictEqual(yield* after.result(id), ["work 0", "work 1", "audit 2", "work 2"])
      assert.deepStrictEqual([calls.get("work 0"), calls.get("work 1"), calls.get("work 2")], [1, 1, 1])
      assert.strictEqual(calls.get("audit 2"), 1)
      assert.strictEqual(calls.total(), 4)
    })))

  it.effect("a patch inside a branch is false for a run that went on past the branches", () =>
    within(Effect.gen(function*() {
      const calls = counter()
      const step = (name: string) =>
        Step.make(name, { input: Schema.Number, output: Schema.Number, run: (n) => Effect.as(calls.hit(name), n) })
      const [left, right, extra] = [step("left"), step("right"), step("extra")]
      const make = (withExtra: boolean) =>
        Workflow.make("branches", {
          input: Schema.Number,
          output: Schema.String,
          run: Effect.fn(function*(n) {
            yield* Workflow.all([
              Effect.gen(function*() {
                yield* left(n)
                if (withExtra && (yield* Workflow.patched("extra"))) yield* extra(n)
              }),
              right(n)
            ])
            yield* Workflow.waitForSignal("end", Schema.Boolean)
            return "ended"
          })
        })
      const before = yield* engine([make(false)])
      const past = yield* before.start(make(false), 1)
      yield* before.processOnce
      const after = yield* engine([make(true)])
      const fresh = yield* after.start(make(true), 2)
      yield* after.processOnce
      for (const id of [past, fresh]) yield* after.signal(id, "end", true)
      yield* after.processOnce
      assert.strictEqual(yield* after.result(past), "ended")
      assert.strictEqual(yield* after.result(fresh), "ended")
      assert.strictEqual(calls.get("extra"), 1, "only the run that reached the branch on the new code")
      assert.deepStrictEqual(
        (yield* after.status(fresh)).steps.map((s) => s.key),
        ["1.0/1", "1.0/2~extra", "1.0/2", "1.1/1", "2"]
      )
    })))
}
