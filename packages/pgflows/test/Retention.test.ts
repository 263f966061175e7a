// Retention on the memory backend, with TestClock driving time; and the policies as written.
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Result, Schema } from "effect"
import { Retention, Workflow } from "pgflows"
import { memory } from "./conformance/backend.ts"
import { retentionSuite } from "./conformance/retention.ts"

describe("retention on the memory backend", () => {
  retentionSuite(memory, it)
})

describe("retention policies", () => {
  const millis = (policy: Retention.Policy) =>
    Retention.endedStatuses.map((status) => Retention.keepMillis(policy, status))

  it("one duration for every state, or one per state; a workflow's own overrides the global one", () => {
    assert.deepStrictEqual(millis(Retention.make("1 hour")), [3_600_000, 3_600_000, 3_600_000])
    assert.deepStrictEqual(millis(Retention.make({ failed: "2 hours" })), [undefined, 7_200_000, undefined])
    const own = Retention.make({ completed: "1 minute", cancelled: Duration.infinity })
    assert.deepStrictEqual(millis(Retention.resolve(own, Retention.make("1 day"))), [60_000, 86_400_000, undefined])
    assert.isFalse(Retention.prunes(Retention.forever))
    assert.isFalse(Retention.prunes(Retention.make(Duration.infinity)))
    assert.isTrue(Retention.prunes(own))
  })

  it("a bad duration is refused, by Retention.decode and by Workflow.make", () => {
    const decoded = Retention.decode({ completed: "0 millis" })
    assert.isTrue(Result.isFailure(decoded))
    assert.throws(
      () =>
        Workflow.make("ret_bad", {
          input: Schema.Number,
          output: Schema.Number,
          retention: { failed: "soon" as Duration.Input },
          run: Effect.succeed
        }),
      /invalid retention of workflow "ret_bad": failed: "soon" is not a duration/
    )
    const kept = Workflow.make("ret_kept", {
      input: Schema.Number,
      output: Schema.Number,
      retention: "3 days",
      run: Effect.succeed
    })
    assert.deepStrictEqual(millis(kept.retention!), [259_200_000, 259_200_000, 259_200_000])
  })
})
