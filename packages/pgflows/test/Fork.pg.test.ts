// Restart from a step (fork) on PostgreSQL (a database of its own for this file): the shared suite,
// and a fork that waits for a child it shares with its original, which needs real time.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { Step, Workflow } from "pgflows"
import { engine, postgres } from "./conformance/backend.ts"
import { forkSuite } from "./conformance/fork.ts"

const Num = Schema.Struct({ n: Schema.Number })

layer(TestDatabase.layer, { excludeTestServices: true })("forks on PostgreSQL", (it) => {
  forkSuite(postgres, it)

  it.effect("a fork made while the original waits for its child ends when that child ends", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const hold = Step.make("hold", { input: Num, output: Num, run: (i) => Effect.as(Deferred.await(release), i) })
      const kid = Workflow.make("slow_kid", {
        input: Num,
        output: Num,
        run: (i) => Effect.map(hold(i), (o) => ({ n: o.n * 2 }))
      })
      const parent = Workflow.make("waiting_parent", {
        input: Num,
        output: Num,
        run: (input) => Workflow.child(kid, input)
      })
      const client = yield* engine([parent, kid])
      const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 4 }))
      const id = yield* client.start(parent, { n: 4 })
      let waiting = false
      for (let i = 0; i < 200 && !waiting; i++) {
        yield* Effect.sleep("20 millis")
        const status = yield* client.status(id)
        waiting = status.status === "suspended" && status.steps.some((s) => s.name === "pgflows.await")
      }
      assert.isTrue(waiting, "the original waits for its child")
      // Forked at the wait: the fork keeps the child's start and waits for the same child, whose
      // parent is the original, so the child's end wakes the original only.
      const awaitKey = (yield* client.status(id)).steps.find((s) => s.name === "pgflows.await")!.key
      const forked = yield* client.fork(id, { fromStep: awaitKey })
      yield* Effect.sleep("100 millis")
      yield* Deferred.succeed(release, undefined)
      assert.deepStrictEqual(yield* client.result(id, { timeout: "10 seconds" }), { n: 8 })
      assert.deepStrictEqual(yield* client.result(forked.id, { timeout: "10 seconds" }), { n: 8 })
      yield* Fiber.interrupt(worker)
    }).pipe(Effect.provide(postgres.layer({ pollInterval: "200 millis" }))))
})
