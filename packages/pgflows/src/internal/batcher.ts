/**
 * Group commit: requests made while a batch is being written wait and go together in the next
 * batch, so many concurrent runs share one round trip and one commit. A caller resumes only after
 * the batch holding its request was executed (committed, for SQL).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

export const make = <A, B, E>(
  execute: (batch: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>,
  options: { readonly maxBatch: number; readonly flushers: number }
): Effect.Effect<(request: A) => Effect.Effect<B, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<readonly [A, Deferred.Deferred<B, E>]>()
    const flush = Effect.gen(function*() {
      const items = yield* Queue.takeBetween(queue, 1, options.maxBatch)
      const exit = yield* Effect.exit(execute(items.map((item) => item[0])))
      if (Exit.isSuccess(exit)) {
        items.forEach((item, index) => Deferred.doneUnsafe(item[1], Exit.succeed(exit.value[index]!)))
      } else {
        for (const item of items) Deferred.doneUnsafe(item[1], exit as Exit.Exit<never, E>)
      }
    })
    for (let i = 0; i < options.flushers; i++) yield* Effect.forkScoped(Effect.forever(flush))
    return (request: A) =>
      Effect.uninterruptibleMask((restore) => {
        const deferred = Deferred.makeUnsafe<B, E>()
        Queue.offerUnsafe(queue, [request, deferred])
        // Once queued the request will be written: waiting may be interrupted, the write is not undone.
        return restore(Deferred.await(deferred))
      })
  })
