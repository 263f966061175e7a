/**
 * The one subscription of a process to the store's notifications: it wakes the worker, interrupts
 * executions of cancelled runs, and passes the ends of runs and published events to the waits of
 * `result` and `getEvent`. When it fails (a database restart), it is re-established with backoff;
 * polling covers the gap.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Store from "../Store.ts"
import type * as Runner from "./runner.ts"

export const listen = (options: {
  readonly store: Store.Store["Service"]
  readonly runner: Runner.Runner
  /** Offered a value when runs may have become claimable. */
  readonly wakeups: Queue.Queue<void>
}): Effect.Effect<void, never, Scope.Scope> => {
  const { store, runner, wakeups } = options
  let failures = 0
  return Effect.asVoid(Effect.forkScoped(
    Effect.scoped(Effect.gen(function*() {
      const notifications = yield* store.subscribe
      if (failures > 0) yield* Effect.logInfo("pgflows: notifications re-established")
      failures = 0
      while (true) {
        const notification = yield* Queue.take(notifications)
        if (notification._tag === "Runnable") yield* Queue.offer(wakeups, undefined)
        else {
          if (notification._tag === "Cancelled") yield* runner.interrupt(notification.runId, "cancelled")
          runner.events.publish(notification)
        }
      }
    })).pipe(
      Effect.tapError((error) =>
        Effect.suspend(() =>
          failures++ === 0
            ? Effect.logWarning(`pgflows: notifications interrupted (${error.message}); polling until they are back`)
            : Effect.void
        )
      ),
      Effect.retry(Schedule.min([Schedule.exponential("200 millis"), Schedule.spaced("5 seconds")])),
      Effect.ignore
    )
  ))
}
