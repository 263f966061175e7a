/**
 * Schedule expressions, read once for every scheduler: five cron fields (minute hour day-of-month
 * month day-of-week), six with a leading second, the macros `@yearly` ... `@hourly`, and pg_cron's
 * interval form `N seconds`. A bad expression is reported with the field that is wrong (its name and
 * position), found by checking each field alone with `effect/Cron`'s own parser.
 */
import * as Cron from "effect/Cron"
import * as DateTime from "effect/DateTime"
import * as Result from "effect/Result"

/** What is wrong with an expression; `field` and `position` (1-based) when one field is to blame. */
export interface Problem {
  readonly reason: string
  readonly field?: string | undefined
  readonly position?: number | undefined
}

/** An expression, read. */
export type Expression =
  | {
    readonly _tag: "Cron"
    /** The expression as written (trimmed, a macro expanded). */
    readonly text: string
    readonly fields: 5 | 6
  }
  | {
    readonly _tag: "Interval"
    readonly text: string
    readonly seconds: number
  }

const fieldNames = ["minute", "hour", "day of month", "month", "day of week"] as const

export const form = "five fields (minute hour day-of-month month day-of-week, e.g. \"0 9 * * MON-FRI\"), " +
  "six with a leading second (\"*/5 * * * * *\"), a macro (@hourly, @daily, @weekly, @monthly, @yearly) " +
  "or \"N seconds\""

export const macros: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *"
}

export const parse = (expression: string): Result.Result<Expression, Problem> => {
  const trimmed = expression.trim()
  if (trimmed === "") return Result.fail({ reason: `is empty; write ${form}` })
  const interval = /^(\d+)\s*seconds?$/i.exec(trimmed)
  if (interval !== null) {
    const seconds = Number(interval[1])
    if (seconds < 1 || seconds > 59) {
      return Result.fail({
        reason: `asks for every ${seconds} seconds; an interval is 1 to 59 seconds (use cron fields beyond)`
      })
    }
    return Result.succeed({ _tag: "Interval", text: `${seconds} seconds`, seconds })
  }
  if (trimmed.startsWith("@")) {
    const expanded = macros[trimmed.toLowerCase()]
    if (expanded === undefined) {
      return Result.fail({
        reason: `${JSON.stringify(trimmed)} is not a macro pgflows knows (@reboot is not a time); use @hourly, ` +
          "@daily, @weekly, @monthly or @yearly"
      })
    }
    return Result.succeed({ _tag: "Cron", text: expanded, fields: 5 })
  }
  const parts = trimmed.split(/\s+/)
  if (parts.length !== 5 && parts.length !== 6) {
    return Result.fail({ reason: `has ${parts.length} field${parts.length === 1 ? "" : "s"}; write ${form}` })
  }
  const names = parts.length === 6 ? ["second", ...fieldNames] : fieldNames
  for (let i = 0; i < parts.length; i++) {
    const alone = parts.map((part, j) => (j === i ? part : "*")).join(" ")
    const checked = Cron.parse(alone)
    if (Result.isFailure(checked)) {
      return Result.fail({
        reason: `${JSON.stringify(parts[i])} is not a valid ${names[i]}: ${checked.failure.message}`,
        field: names[i],
        position: i + 1
      })
    }
  }
  const text = parts.join(" ")
  const whole = Cron.parse(text, "UTC")
  if (Result.isFailure(whole)) return Result.fail({ reason: whole.failure.message })
  try {
    Cron.next(whole.success, new Date(Date.UTC(2000, 0, 1)))
  } catch {
    return Result.fail({ reason: "never matches a date (such as 30 February); check the day and month fields" })
  }
  return Result.succeed({ _tag: "Cron", text, fields: parts.length as 5 | 6 })
}

/** The canonical name of a time zone (`UTC` when omitted), or why it is not one. */
export const timeZone = (zone: string | undefined): Result.Result<DateTime.TimeZone, string> => {
  if (zone === undefined) return Result.succeed(DateTime.zoneMakeNamedUnsafe("UTC"))
  const trimmed = zone.trim()
  const found = trimmed === "" ? undefined : DateTime.zoneFromString(trimmed)
  if (found === undefined || found._tag === "None") {
    return Result.fail(
      "is not a time zone; use an IANA name such as \"Europe/Berlin\" or \"America/New_York\", \"UTC\", " +
        "or a fixed offset such as \"+02:00\""
    )
  }
  return Result.succeed(found.value)
}

/** Intervals the cron of `effect/Cron` can express exactly: those that divide a minute. */
export const intervalAsCron = (seconds: number): string | undefined =>
  60 % seconds === 0 ? (seconds === 1 ? "* * * * * *" : `*/${seconds} * * * * *`) : undefined

/** The `effect/Cron` schedule of an expression in a time zone, or why there is none. */
export const toCron = (expression: Expression, zone: DateTime.TimeZone): Result.Result<Cron.Cron, Problem> => {
  const text = expression._tag === "Cron" ? expression.text : intervalAsCron(expression.seconds)
  if (text === undefined) {
    return Result.fail({
      reason: `runs every ${expression.text}, which does not divide a minute; use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 ` +
        "or 30 seconds, or six cron fields"
    })
  }
  return Result.mapError(Cron.parse(text, zone), (error) => ({ reason: error.message }))
}
