/**
 * What happened to runs, for the waits of this process (`result`, `getEvent`): the ends of runs
 * executed here, and the notifications of the store (another process's ends, cancels, events).
 *
 * Each event goes to the waits of its own run only, found by the run's id: with 64 callers waiting
 * for 64 different runs, an end wakes one wait, not 64 (a broadcast to every wait made each end cost
 * as many fiber wake-ups as there were waits, docs/ARCHITECTURE.md, "Waiting for a run").
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Store from "../Store.ts"

/** An event about one run, or a notification that names none (`Runnable`, for the workers). */
export type Event =
  | Store.Notification
  | {
    readonly _tag: "Ended"
    readonly runId: string
    readonly workflow: string
    readonly version: number
    readonly status: "completed" | "failed"
    readonly output: unknown
    readonly error: unknown
  }

/** A wait's view of its run's events, while its scope is open. */
export interface Watch {
  /**
   * The next event of the run that the wait's filter takes, or none after `millis`. The first event
   * that comes while nobody calls `next` is kept for the next call.
   */
  readonly next: (millis: number) => Effect.Effect<Option.Option<Event>>
}

export interface RunEvents {
  /** Gives an event to the waits of its run; one that names no run reaches none. */
  readonly publish: (event: Event) => void
  /** Watches the events of `runId` that `take` accepts, until the scope closes. */
  readonly watch: (runId: string, take: (event: Event) => boolean) => Effect.Effect<Watch, never, Scope.Scope>
}

interface Waiter {
  readonly take: (event: Event) => boolean
  deferred: Deferred.Deferred<Event>
}

export const make = (): RunEvents => {
  const waiters = new Map<string, Set<Waiter>>()

  const publish = (event: Event) => {
    if (event._tag === "Runnable") return
    const found = waiters.get(event.runId)
    if (found === undefined) return
    for (const waiter of found) {
      if (waiter.take(event)) Deferred.doneUnsafe(waiter.deferred, Effect.succeed(event))
    }
  }

  const watch = (runId: string, take: (event: Event) => boolean) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const waiter: Waiter = { take, deferred: Deferred.makeUnsafe<Event>() }
        let found = waiters.get(runId)
        if (found === undefined) {
          found = new Set()
          waiters.set(runId, found)
        }
        found.add(waiter)
        return waiter
      }),
      (waiter) =>
        Effect.sync(() => {
          const found = waiters.get(runId)
          found?.delete(waiter)
          if (found?.size === 0) waiters.delete(runId)
        })
    ).pipe(Effect.map((waiter): Watch => ({
      next: (millis) =>
        Deferred.await(waiter.deferred).pipe(
          Effect.timeoutOption(Duration.millis(millis)),
          // Taken: the next event goes to a new one, from now on (the caller reads the run again).
          Effect.tap((event) => Effect.sync(() => event._tag === "Some" && (waiter.deferred = Deferred.makeUnsafe())))
        )
    })))

  return { publish, watch }
}
