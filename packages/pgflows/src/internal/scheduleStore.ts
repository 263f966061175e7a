/**
 * Where the built-in scheduler keeps its schedules: a small JSON-level driver, on PostgreSQL
 * (`scheduleSql.ts`, the `schedules` table) or in memory (here). Times are epoch milliseconds of the
 * store's clock: the database's `now()`, or `Clock` in memory (so `TestClock` drives the ticks).
 *
 * `fire` is the heart of it: it takes the due schedules (on PostgreSQL with `FOR UPDATE SKIP
 * LOCKED`, so concurrent schedulers never take the same one), asks `decide` which ticks to fire,
 * starts their runs and moves the schedules on, all in one transaction. A tick's run has the id
 * `schedule:<name>:<tick>`, so even a tick fired twice (it cannot be, short of a bug) would start
 * one run.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { StoreError } from "../PgflowsError.ts"
import type * as Store from "../Store.ts"
import type { CatchUp, Plan } from "./scheduleTicks.ts"

export type StoredKind = "builtin" | "pg_durable"

export interface ScheduleRecord {
  readonly name: string
  readonly scheduler: StoredKind
  readonly handle: string | null
  readonly cron: string
  readonly timezone: string
  readonly workflow: string
  readonly input: unknown
  readonly paused: boolean
  readonly catchUp: CatchUp
  readonly maxCatchUp: number
  readonly lastTick: number | null
  readonly nextTick: number | null
}

export type PutResult =
  | { readonly outcome: "created" | "replaced" }
  | { readonly outcome: "exists"; readonly scheduler: string }

export interface FiredTick {
  readonly schedule: string
  readonly workflow: string
  readonly tick: number
  readonly runId: string
}

export interface FireResult {
  /** How many due schedules this pass handled (a full batch means more may be due). */
  readonly claimed: number
  readonly fired: ReadonlyArray<FiredTick>
  /** Schedules whose missed ticks the catch-up policy dropped. */
  readonly skipped: ReadonlyArray<{ readonly schedule: string; readonly from: number; readonly to: number }>
}

export interface ScheduleStore {
  readonly now: Effect.Effect<number, StoreError>
  /**
   * Inserts, or replaces a schedule of the same scheduler when `replace`: its pause state and last tick
   * stay, and so does its next tick unless the expression or the time zone changed.
   */
  readonly put: (record: ScheduleRecord, replace: boolean) => Effect.Effect<PutResult, StoreError>
  readonly get: (name: string) => Effect.Effect<ScheduleRecord | undefined, StoreError>
  readonly list: (scheduler: StoredKind) => Effect.Effect<ReadonlyArray<ScheduleRecord>, StoreError>
  readonly remove: (name: string, scheduler: StoredKind) => Effect.Effect<boolean, StoreError>
  /** Pauses, or resumes with the given next tick; the record after the change. */
  readonly setPaused: (
    name: string,
    scheduler: StoredKind,
    paused: boolean,
    nextTick: number | null
  ) => Effect.Effect<ScheduleRecord | undefined, StoreError>
  /** Fires the due ticks of up to `limit` built-in schedules, as `decide` plans them. */
  readonly fire: (
    limit: number,
    decide: (record: ScheduleRecord, now: number) => Plan | undefined
  ) => Effect.Effect<FireResult, StoreError>
  /** Starts a run now (idempotent by id). */
  readonly start: (workflow: string, input: unknown, id: string) => Effect.Effect<void, StoreError>
  /** Milliseconds until the earliest tick of an unpaused built-in schedule, if any. */
  readonly nextDue: Effect.Effect<number | undefined, StoreError>
}

/** Schedules in memory; runs are started through the `Store` (memory or not). */
export const makeMemory = (store: Store.Store["Service"]): ScheduleStore => {
  const schedules = new Map<string, ScheduleRecord>()
  const now = Clock.currentTimeMillis
  const sorted = (scheduler: StoredKind) =>
    [...schedules.values()].filter((record) => record.scheduler === scheduler).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0
    )
  return {
    now,
    put: (record, replace) =>
      Effect.sync((): PutResult => {
        const existing = schedules.get(record.name)
        if (existing === undefined) {
          schedules.set(record.name, record)
          return { outcome: "created" }
        }
        if (!replace || existing.scheduler !== record.scheduler) {
          return { outcome: "exists", scheduler: existing.scheduler }
        }
        const sameTimes = existing.cron === record.cron && existing.timezone === record.timezone
        schedules.set(record.name, {
          ...record,
          paused: existing.paused,
          lastTick: existing.lastTick,
          nextTick: sameTimes ? existing.nextTick : record.nextTick
        })
        return { outcome: "replaced" }
      }),
    get: (name) => Effect.sync(() => schedules.get(name)),
    list: (scheduler) => Effect.sync(() => sorted(scheduler)),
    remove: (name, scheduler) =>
      Effect.sync(() => {
        const existing = schedules.get(name)
        if (existing === undefined || existing.scheduler !== scheduler) return false
        schedules.delete(name)
        return true
      }),
    setPaused: (name, scheduler, paused, nextTick) =>
      Effect.sync(() => {
        const existing = schedules.get(name)
        if (existing === undefined || existing.scheduler !== scheduler) return undefined
        const updated = { ...existing, paused, nextTick: paused ? existing.nextTick : nextTick }
        schedules.set(name, updated)
        return updated
      }),
    fire: (limit, decide) =>
      Effect.flatMap(now, (at) => {
        // Planned and moved on in one synchronous step: no other fiber sees a tick half-handled.
        const due = sorted("builtin")
          .filter((record) => !record.paused && record.nextTick !== null && record.nextTick <= at)
          .sort((a, b) => a.nextTick! - b.nextTick!)
          .slice(0, limit)
        const fired: Array<FiredTick & { readonly input: unknown }> = []
        const skipped: Array<FireResult["skipped"][number]> = []
        for (const record of due) {
          const plan = decide(record, at)
          if (plan === undefined) continue
          for (const tick of plan.fire) {
            fired.push({
              schedule: record.name,
              workflow: record.workflow,
              tick,
              runId: tickRunId(record.name, tick),
              input: record.input
            })
          }
          if (plan.skipped !== undefined) skipped.push({ schedule: record.name, ...plan.skipped })
          schedules.set(record.name, {
            ...record,
            lastTick: plan.lastTick ?? record.lastTick,
            nextTick: plan.nextTick ?? null
          })
        }
        const result: FireResult = {
          claimed: due.length,
          fired: fired.map(({ input: _, ...tick }) => tick),
          skipped
        }
        return fired.length === 0 ? Effect.succeed(result) : Effect.as(
          store.createRuns(fired.map((tick) => ({ id: tick.runId, workflow: tick.workflow, input: tick.input }))),
          result
        )
      }),
    start: (workflow, input, id) => Effect.asVoid(store.createRuns([{ id, workflow, input }])),
    nextDue: Effect.flatMap(now, (at) =>
      Effect.sync(() => {
        let earliest: number | undefined
        for (const record of schedules.values()) {
          if (record.scheduler !== "builtin" || record.paused || record.nextTick === null) continue
          if (earliest === undefined || record.nextTick < earliest) earliest = record.nextTick
        }
        return earliest === undefined ? undefined : earliest - at
      }))
  }
}

/** `Scheduler.runId`, here to keep the drivers free of the public module. */
export const tickRunId = (name: string, tick: number): string =>
  `schedule:${name}:${new Date(tick).toISOString().replace(/\.\d{3}Z$/, "Z")}`
