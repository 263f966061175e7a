/**
 * `WorkQueue` in memory, with the same semantics as `PgWorkQueue` (one conformance suite runs on
 * both). Time comes from `Clock`, so `TestClock` drives delays and visibility timeouts.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as Identifier from "./Identifier.ts"
import { MemoryQueueState } from "./internal/memoryQueue.ts"
import { StoreError } from "./PgflowsError.ts"
import * as WorkQueue from "./WorkQueue.ts"

/**
 * The state behind a memory queue; `MemoryStore` keeps its run queue in the same state.
 *
 * @category services
 * @since 0.1.0
 */
export class State extends Context.Service<State, MemoryQueueState>()("pgflows/MemoryWorkQueue/State") {
  static readonly layer = Layer.sync(State, () => new MemoryQueueState())
}

/**
 * `WorkQueue` over the `State` in context.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerFromState: Layer.Layer<WorkQueue.WorkQueue, never, State> = Layer.effect(
  WorkQueue.WorkQueue,
  Effect.map(State, (state) => {
    const withNow = <A>(operation: string, queue: string, f: (now: number) => A) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const name = Identifier.check("queue", queue)
        return Result.isFailure(name)
          ? Effect.fail(new StoreError({ operation, retryable: false, cause: new Error(`queue name ${name.failure}`) }))
          : Effect.sync(() => f(now))
      })
    const toMessage = (m: {
      msgId: number
      readCount: number
      enqueuedAt: number
      visibleAt: number
      message: unknown
    }): WorkQueue.Message => ({
      msgId: m.msgId,
      readCount: m.readCount,
      enqueuedAt: new Date(m.enqueuedAt),
      visibleAt: new Date(m.visibleAt),
      message: m.message
    })
    const millis = (input: Duration.Input | undefined) =>
      input === undefined ? 0 : Math.max(0, Duration.toMillis(Duration.fromInputUnsafe(input)))
    const sendBatch = (
      queue: string,
      messages: ReadonlyArray<unknown>,
      options?: { readonly delay?: Duration.Input | undefined }
    ) =>
      withNow(
        "send",
        queue,
        (now) => messages.map((message) => state.send(queue, message ?? null, now, millis(options?.delay)))
      )
    return WorkQueue.WorkQueue.of({
      create: (queue) => withNow("create", queue, (now) => state.create(queue, now)),
      drop: (queue) =>
        withNow("drop", queue, () => {
          for (const [id, m] of state.messages) if (m.queue === queue) state.messages.delete(id)
          for (const [id, m] of state.archive) if (m.queue === queue) state.archive.delete(id)
          return state.queues.delete(queue)
        }),
      list: Effect.sync(() =>
        [...state.queues].sort(([a], [b]) => a.localeCompare(b)).map(([queue, createdAt]) => ({
          queue,
          createdAt: new Date(createdAt)
        }))
      ),
      purge: (queue) =>
        withNow("purge", queue, () => {
          let purged = 0
          for (const [id, m] of state.messages) {
            if (m.queue === queue) {
              state.messages.delete(id)
              purged++
            }
          }
          return purged
        }),
      send: (queue, message, options) => Effect.map(sendBatch(queue, [message], options), (ids) => ids[0]!),
      sendBatch,
      read: (queue, options) =>
        withNow("read", queue, (now) =>
          state.read(queue, now, millis(options.visibilityTimeout), options.limit ?? 1)
            .sort((a, b) => a.msgId - b.msgId)
            .map(toMessage)),
      delete: (queue, msgId) => withNow("delete", queue, () => state.delete(msgId, queue)),
      archive: (queue, msgId) => withNow("archive", queue, (now) => state.archiveMessage(msgId, now, queue)),
      setVisibility: (queue, msgId, delay) =>
        withNow("setVisibility", queue, (now) => {
          const message = state.messages.get(msgId)
          if (message === undefined || message.queue !== queue) return undefined
          message.visibleAt = now + millis(delay)
          return toMessage(message)
        }),
      archived: (queue, options) =>
        withNow("archived", queue, () =>
          [...state.archive.values()]
            .filter((m) => m.queue === queue)
            .sort((a, b) => b.archivedAt - a.archivedAt || b.msgId - a.msgId)
            .slice(0, options?.limit ?? 100)
            .map((m) => ({ ...toMessage(m), archivedAt: new Date(m.archivedAt) }))),
      metrics: (queue) =>
        withNow("metrics", queue, (now) => {
          const messages = [...state.messages.values()].filter((m) => m.queue === queue)
          const enqueued = messages.map((m) => m.enqueuedAt)
          return {
            queue,
            length: messages.length,
            visible: messages.filter((m) => m.visibleAt <= now).length,
            newestMessageAge: enqueued.length === 0 ? undefined : Duration.millis(now - Math.max(...enqueued)),
            oldestMessageAge: enqueued.length === 0 ? undefined : Duration.millis(now - Math.min(...enqueued)),
            archived: [...state.archive.values()].filter((m) => m.queue === queue).length,
            archivedExact: true,
            scrapedAt: new Date(now)
          }
        })
    })
  })
)

/**
 * A fresh in-memory `WorkQueue`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<WorkQueue.WorkQueue> = layerFromState.pipe(Layer.provide(State.layer))
