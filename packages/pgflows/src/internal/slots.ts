/**
 * A worker's slots: how many runs it executes at once, which executions are its own, and the
 * reservations through which `start` hands it new runs directly (the local fast path). Plain
 * synchronous state, changed only from fibers of the same process.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Store from "../Store.ts"
import type * as Runner from "./runner.ts"

export interface Slots {
  readonly capacity: number
  /** The executions this worker started that have not ended. */
  readonly running: ReadonlySet<Fiber.Fiber<unknown>>
  /** Slots neither running nor reserved. */
  readonly free: () => number
  /** Counts an execution until it ends. */
  readonly track: (fiber: Fiber.Fiber<unknown>) => void
}

/** The worker of this process, as `start` sees it (the local fast path). */
export interface LocalWorker {
  /** Reserves up to `count` free slots; returns how many. */
  readonly reserve: (count: number) => number
  readonly release: (count: number) => void
  /** Executes a run created already claimed, in a slot reserved for it. */
  readonly launch: (claimed: Store.ClaimedRun) => Effect.Effect<void>
}

/**
 * Slots for `capacity` runs. `freed` is called when an execution ends while every slot was taken,
 * so a worker waiting for a slot claims again at once; with `always`, whenever one ends (the slot
 * of a limited queue it gave back may let the worker claim another run).
 */
export const make = (capacity: number, freed: () => void, always = false): Slots & { reserved: number } => {
  const running = new Set<Fiber.Fiber<unknown>>()
  const slots = {
    capacity,
    running,
    reserved: 0,
    free: () => capacity - running.size - slots.reserved,
    track: (fiber: Fiber.Fiber<unknown>) => {
      if (fiber.pollUnsafe() !== undefined) return
      running.add(fiber)
      fiber.addObserver(() => {
        const wasFull = running.size + slots.reserved >= capacity
        running.delete(fiber)
        if (wasFull || always) freed()
      })
    }
  }
  return slots
}

/**
 * The local fast path of a worker's slots: reservations, and launching what `start` created claimed.
 * A run handed over this way executes in `context`, the worker's own, as if the worker had claimed
 * it: nothing of the fiber that called `start` (its transaction, its span, its request's services)
 * reaches the execution (docs/ARCHITECTURE.md, "Runs are isolated").
 */
export const local = (
  slots: Slots & { reserved: number },
  runner: Runner.Runner,
  context: Context.Context<never>
): LocalWorker => ({
  reserve: (count) => {
    if (runner.closing()) return 0
    const granted = Math.max(0, Math.min(count, slots.free()))
    slots.reserved += granted
    return granted
  },
  release: (count) => {
    slots.reserved = Math.max(0, slots.reserved - count)
  },
  launch: (claimed) =>
    Effect.map(Effect.updateContext(runner.launch(claimed), (_: Context.Context<never>) => context), (fiber) => {
      slots.reserved = Math.max(0, slots.reserved - 1)
      slots.track(fiber)
    })
})
