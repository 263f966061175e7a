/**
 * Group commit: requests made while a batch is being written wait and go together in the next
 * batch, so many concurrent runs share one round trip and one commit. A caller resumes only after
 * the batch holding its request was executed (committed, for SQL).
 *
 * When no batch is being written, the caller writes its own request at once, in its own fiber (no
 * hand-off to another fiber, so a lone writer pays nothing for batching). Requests arriving while
 * up to `flushers` batches are in flight queue up; whoever finishes a batch hands the queue to a new
 * flusher.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

export const make = <A, B, E>(
  execute: (batch: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>,
  options: { readonly maxBatch: number; readonly flushers: number }
): Effect.Effect<(request: A) => Effect.Effect<B, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const pending: Array<readonly [A, Deferred.Deferred<B, E>]> = []
    let active = 0

    const flush = (items: ReadonlyArray<readonly [A, Deferred.Deferred<B, E>]>) =>
      Effect.map(Effect.exit(execute(items.map((item) => item[0]))), (exit) => {
        if (Exit.isSuccess(exit)) {
          items.forEach((item, index) => Deferred.doneUnsafe(item[1], Exit.succeed(exit.value[index]!)))
        } else {
          for (const item of items) Deferred.doneUnsafe(item[1], exit as Exit.Exit<never, E>)
        }
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
