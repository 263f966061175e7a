// The WorkQueue contract (pgmq semantics), written once and run on every backend.
import { assert } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import { PgflowsError, WorkQueue } from "pgflows"
import type { Backend } from "./backend.ts"
import type { Tester } from "./engine.ts"

export const queueSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const test = (
    name: string,
    body: (queue: string) => Effect.Effect<unknown, unknown, WorkQueue.WorkQueue | R | Scope.Scope>
  ) =>
    it.effect(name, () => body(`t_${Crypto.randomBytes(4).toString("hex")}`).pipe(Effect.provide(backend.queueLayer)))

  test("send and read: oldest first, invisible while read, delivered again after the visibility timeout", (queue) =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      const ids = yield* q.sendBatch(queue, [{ n: 1 }, { n: 2 }, { n: 3 }])
      assert.deepStrictEqual([...ids].sort((a, b) => a - b), ids)
      const first = yield* q.read(queue, { visibilityTimeout: "30 seconds", limit: 2 })
      assert.deepStrictEqual(first.map((m) => m.message), [{ n: 1 }, { n: 2 }])
      assert.deepStrictEqual(first.map((m) => m.readCount), [1, 1])
      const second = yield* q.read(queue, { visibilityTimeout: "30 seconds", limit: 5 })
      assert.deepStrictEqual(second.map((m) => m.message), [{ n: 3 }], "read messages are invisible")
      assert.deepStrictEqual(yield* q.read(queue, { visibilityTimeout: "30 seconds", limit: 5 }), [])
      yield* backend.advance("31 seconds")
      const again = yield* q.read(queue, { visibilityTimeout: "30 seconds", limit: 5 })
      assert.deepStrictEqual(again.map((m) => [m.message, m.readCount]), [[{ n: 1 }, 2], [{ n: 2 }, 2], [{ n: 3 }, 2]])
    }))

  test("send with a delay keeps the message invisible until then", (queue) =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      const id = yield* q.send(queue, "later", { delay: "10 seconds" })
      assert.deepStrictEqual(yield* q.read(queue, { visibilityTimeout: "1 second" }), [])
      yield* backend.advance("11 seconds")
      const [message] = yield* q.read(queue, { visibilityTimeout: "1 second" })
      assert.strictEqual(message?.msgId, id)
      assert.strictEqual(message?.message, "later")
    }))

  test("delete and archive remove a message; the archive keeps it", (queue) =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      const [a, b] = yield* q.sendBatch(queue, ["a", "b"])
      assert.isTrue(yield* q.delete(queue, a!))
      assert.isFalse(yield* q.delete(queue, a!), "deleting twice reports false")
      assert.isTrue(yield* q.archive(queue, b!))
      assert.isFalse(yield* q.archive(queue, b!))
      assert.deepStrictEqual(yield* q.read(queue, { visibilityTimeout: "1 second", limit: 10 }), [])
      const archived = yield* q.archived(queue)
      assert.deepStrictEqual(archived.map((m) => [m.msgId, m.message]), [[b, "b"]])
      assert.isTrue(archived[0]!.archivedAt instanceof Date)
      assert.isFalse(yield* q.delete("other_queue", b!), "ids are scoped to their queue")
    }))

  test("setVisibility hides or reveals a message", (queue) =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      const id = yield* q.send(queue, { x: true })
      const hidden = yield* q.setVisibility(queue, id, "1 minute")
      assert.strictEqual(hidden?.msgId, id)
      assert.deepStrictEqual(yield* q.read(queue, { visibilityTimeout: "1 second" }), [])
      yield* q.setVisibility(queue, id, 0)
      assert.strictEqual((yield* q.read(queue, { visibilityTimeout: "1 second" })).length, 1)
      assert.strictEqual(yield* q.setVisibility(queue, 999_999_999, 0), undefined)
    }))

  test("metrics, list, purge and drop", (queue) =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      yield* q.create(queue)
      const empty = yield* q.metrics(queue)
      assert.strictEqual(empty.length, 0)
      assert.isTrue(Option.isNone(Option.fromNullishOr(empty.oldestMessageAge)))
      yield* q.sendBatch(queue, [1, 2, 3])
      yield* q.send(queue, 4, { delay: "1 hour" })
      const [read] = yield* q.read(queue, { visibilityTimeout: "1 minute" })
      yield* q.archive(queue, read!.msgId)
      yield* backend.advance("2 seconds")
      const metrics = yield* q.metrics(queue)
      assert.strictEqual(metrics.length, 3)
      assert.strictEqual(metrics.visible, 2)
      assert.strictEqual(metrics.archived, 1)
      assert.isAtLeast(Duration.toMillis(metrics.oldestMessageAge!), 1000)
      assert.isTrue((yield* q.list).some((info) => info.queue === queue))
      assert.strictEqual(yield* q.purge(queue), 3)
      assert.strictEqual((yield* q.metrics(queue)).length, 0)
      assert.strictEqual((yield* q.metrics(queue)).archived, 1, "purge keeps the archive")
      assert.isTrue(yield* q.drop(queue))
      assert.isFalse((yield* q.list).some((info) => info.queue === queue))
      assert.strictEqual((yield* q.metrics(queue)).archived, 0, "drop removes the archive too")
    }))

  test("concurrent readers never receive the same message", (queue) =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      yield* q.sendBatch(queue, Array.from({ length: 50 }, (_, i) => i))
      const batches = yield* Effect.all(
        Array.from({ length: 10 }, () => q.read(queue, { visibilityTimeout: "1 minute", limit: 7 })),
        { concurrency: "unbounded" }
      )
      const seen = batches.flat().map((m) => m.message as number)
      assert.strictEqual(seen.length, 50)
      assert.strictEqual(new Set(seen).size, 50)
    }))

  test("a queue name that could not be a pgmq table name is refused", () =>
    Effect.gen(function*() {
      const q = yield* WorkQueue.WorkQueue
      const error = yield* Effect.flip(q.send("Bad Name", 1))
      assert.instanceOf(error, PgflowsError.StoreError)
      assert.match(error.message, /queue name "Bad Name" is not a valid queue name/)
      assert.isFalse(error.retryable)
    }))
}
