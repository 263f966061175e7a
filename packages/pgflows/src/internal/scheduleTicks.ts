/**
 * Which ticks of a schedule to fire now: a pure function of the schedule (its cron, the next tick
 * not yet handled, its catch-up policy) and the time, so every scheduler, on every backend, decides
 * the same way, and tests can hand it any instant (daylight-saving days included).
 *
 * Ticks due within `grace` of now are on time and always fire. Older due ticks were missed (no
 * scheduler ran): `skip` drops them, `latest` fires the most recent one when no tick is on time,
 * `all` fires up to `maxCatchUp` of them, the most recent. Either way the schedule then moves past
 * now: its last handled tick is the latest tick at or before now, and its next tick the one after.
 */
import * as Cron from "effect/Cron"

export type CatchUp = "skip" | "latest" | "all"

export interface Due {
  readonly cron: Cron.Cron
  /** The first tick not handled yet (epoch milliseconds); ticks before it were handled. */
  readonly nextTick: number
  readonly catchUp: CatchUp
  readonly maxCatchUp: number
}

export interface Plan {
  /** The ticks to start runs for, oldest first. */
  readonly fire: ReadonlyArray<number>
  /** The oldest and newest due ticks the catch-up policy dropped, if any. */
  readonly skipped: { readonly from: number; readonly to: number } | undefined
  /** The latest tick at or before now; `undefined` when none was due after all (keep the old one). */
  readonly lastTick: number | undefined
  /** `undefined` when the cron never matches again. */
  readonly nextTick: number | undefined
}

/** At most this many on-time ticks fire in one pass (a huge grace with a cron of every second). */
export const maxOnTime = 1000

/** The first tick strictly after `after`, or `undefined` when the cron never matches again. */
export const next = (cron: Cron.Cron, after: number): number | undefined => {
  try {
    return Cron.next(cron, new Date(after)).getTime()
  } catch {
    return undefined
  }
}

/** The latest tick strictly before `before`. */
const prev = (cron: Cron.Cron, before: number): number | undefined => {
  try {
    return Cron.prev(cron, new Date(before)).getTime()
  } catch {
    return undefined
  }
}

/** The plan for a schedule at `now`, or `undefined` when no tick is due. */
export const plan = (due: Due, now: number, graceMillis: number): Plan | undefined => {
  if (due.nextTick > now) return undefined
  const windowStart = now - graceMillis
  const latest = prev(due.cron, Math.floor(now / 1000) * 1000 + 1000)
  // Tick times are whole seconds; `latest` is the last tick at or before now.
  if (latest === undefined || latest < due.nextTick) {
    // No tick between the next tick and now (it was set between two ticks): move on.
    return { fire: [], skipped: undefined, lastTick: undefined, nextTick: next(due.cron, now) }
  }
  const onTime: Array<number> = []
  let tick: number | undefined = latest
  while (tick !== undefined && tick >= due.nextTick && tick >= windowStart && onTime.length < maxOnTime) {
    onTime.push(tick)
    tick = prev(due.cron, tick)
  }
  onTime.reverse()
  const missed: Array<number> = []
  let skipped: Plan["skipped"] = undefined
  if (tick !== undefined && tick >= due.nextTick && tick < windowStart) {
    const keep = due.catchUp === "all" ? due.maxCatchUp : due.catchUp === "latest" && onTime.length === 0 ? 1 : 0
    while (tick !== undefined && tick >= due.nextTick && missed.length < keep) {
      missed.push(tick)
      tick = prev(due.cron, tick)
    }
    missed.reverse()
    if (tick !== undefined && tick >= due.nextTick) skipped = { from: due.nextTick, to: tick }
  }
  return { fire: [...missed, ...onTime], skipped, lastTick: latest, nextTick: next(due.cron, latest) }
}
