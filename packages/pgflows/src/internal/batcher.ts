/**
 * Group commit: requests made while a batch is being written wait and go together in the next
 * batch, so many concurrent runs share one round trip and one commit. A caller resumes only after
 * the batch holding its request was executed (committed, for SQL).
 *
 * When no batch is being written, the caller writes its own request at once, in its own fiber (no
 * hand-off to another fiber, so a lone writer pays nothing for batching). Requests arriving while
 * up to `flushers` batches are in flight queue up; whoever finishes a batch hands the queue to a new
 * flusher.
 *
 * Isolation (docs/ARCHITECTURE.md, "Runs are isolated"): a batch that fails with an error `split`
 * accepts (one the database raised for one of the requests, not an outage) is written again in two
 * halves, recursively, so the innocent requests commit and only the request that caused the error
 * gets it. `execute` must be atomic: a failed batch wrote nothing.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

export const make = <A, B, E>(
  execute: (batch: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>,
  options: { readonly maxBatch: number; readonly flushers: number; readonly split: (error: E) => boolean }
): Effect.Effect<(request: A) => Effect.Effect<B, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const pending: Array<readonly [A, Deferred.Deferred<B, E>]> = []
    let active = 0

    const flush = (items: ReadonlyArray<readonly [A, Deferred.Deferred<B, E>]>): Effect.Effect<void> =>
      Effect.flatMap(Effect.exit(execute(items.map((item) => item[0]))), (exit) => {
        if (Exit.isSuccess(exit)) {
          items.forEach((item, index) => Deferred.doneUnsafe(item[1], Exit.succeed(exit.value[index]!)))
          return Effect.void
        }
        if (
          items.length > 1 && exit.cause.reasons.some((reason) => reason._tag === "Fail" && options.split(reason.error))
        ) {
          const half = Math.ceil(items.length / 2)
          // In order: a later request of a run never commits before an earlier one.
          return Effect.andThen(flush(items.slice(0, half)), flush(items.slice(half)))
        }
        for (const item of items) Deferred.doneUnsafe(item[1], exit as Exit.Exit<never, E>)
        return Effect.void
      })

    /** Writes batches until nothing is pending, then gives its flusher slot back. */
    const drain: Effect.Effect<void> = Effect.suspend(() => {
      if (pending.length === 0) {
        active--
        return Effect.void
      }
      return Effect.andThen(flush(pending.splice(0, options.maxBatch)), drain)
    })

    return (request: A) =>
      Effect.uninterruptibleMask((restore) => {
        const deferred = Deferred.makeUnsafe<B, E>()
        pending.push([request, deferred])
        if (active >= options.flushers) return restore(Deferred.await(deferred))
        active++
        // Lead: write the pending batch (ours among it) here, then let another fiber take the rest.
        const batch = pending.splice(0, options.maxBatch)
        return flush(batch).pipe(
          Effect.andThen(
            Effect.suspend(() => {
              if (pending.length === 0) {
                active--
                return Effect.void
              }
              return Effect.asVoid(Effect.forkIn(drain, scope))
            })
          ),
          Effect.andThen(restore(Deferred.await(deferred)))
        )
      })
  })
