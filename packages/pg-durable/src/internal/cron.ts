/**
 * Cron expressions: the usual five-field Unix form (minute hour day-of-month month day-of-week,
 * day-of-week 0-7 with Sunday = 0 or 7) translated to what pg_durable's `df.wait_for_schedule`
 * evaluates with the `cron` 0.13 crate: the same five fields (it prepends the seconds), UTC, but
 * day-of-week 1-7 with Sunday = 1, and day-of-month and day-of-week ANDed.
 *
 * Expressions that cannot mean the same thing there are rejected: both day fields restricted (Unix
 * cron ORs them), Quartz extensions (`?`, `L`, `W`, `#`), seconds or years, `@reboot`.
 */
import * as Result from "effect/Result"

interface Field {
  readonly name: string
  readonly min: number
  readonly max: number
  readonly names?: ReadonlyArray<string>
  /** The number of the first name. */
  readonly nameBase?: number
}

const months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
const days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

const fields: ReadonlyArray<Field> = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: months, nameBase: 1 },
  { name: "day of week", min: 0, max: 7, names: days, nameBase: 0 }
]

const macros: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *"
}

interface Item {
  readonly start: number
  readonly end: number
  readonly step: number
  readonly star: boolean
}

const value = (field: Field, text: string): Result.Result<number, string> => {
  const upper = text.toUpperCase()
  if (field.names !== undefined) {
    const index = field.names.indexOf(upper)
    if (index >= 0) return Result.succeed(index + (field.nameBase ?? 0))
  }
  if (!/^\d+$/.test(text)) {
    return Result.fail(
      `${JSON.stringify(text)} is not a number${
        field.names === undefined ? "" : " or a name"
      } in the ${field.name} field`
    )
  }
  const n = Number(text)
  if (n < field.min || n > field.max) {
    return Result.fail(`${n} is out of range ${field.min}-${field.max} in the ${field.name} field`)
  }
  return Result.succeed(n)
}

const parseField = (field: Field, text: string): Result.Result<ReadonlyArray<Item>, string> => {
  if (/[?LW#]/i.test(text.replace(/[A-Z]{3}/gi, (name) => field.names?.includes(name.toUpperCase()) ? "" : name))) {
    return Result.fail(
      `${JSON.stringify(text)} uses a Quartz extension (?, L, W or #) in the ${field.name} field, which pg_durable ` +
        "does not support; write plain values, ranges, lists and steps"
    )
  }
  const items: Array<Item> = []
  for (const part of text.split(",")) {
    const match = /^([^/]+)(?:\/(\d+))?$/.exec(part)
    if (match === null) return Result.fail(`${JSON.stringify(part)} is not a valid ${field.name} entry`)
    const [, range, stepText] = match
    const step = stepText === undefined ? 1 : Number(stepText)
    if (step < 1) return Result.fail(`the step in ${JSON.stringify(part)} must be at least 1`)
    if (range === "*") {
      items.push({ start: field.min, end: field.max, step, star: true })
      continue
    }
    const bounds = range!.split("-")
    if (bounds.length > 2) return Result.fail(`${JSON.stringify(part)} is not a valid range in the ${field.name} field`)
    const start = value(field, bounds[0]!)
    if (Result.isFailure(start)) return Result.fail(start.failure)
    const end = bounds.length === 2
      ? value(field, bounds[1]!)
      : Result.succeed(stepText === undefined ? start.success : field.max)
    if (Result.isFailure(end)) return Result.fail(end.failure)
    if (end.success < start.success) {
      return Result.fail(`the range ${JSON.stringify(part)} in the ${field.name} field ends before it starts`)
    }
    items.push({ start: start.success, end: end.success, step, star: false })
  }
  return Result.succeed(items)
}

const expand = (items: ReadonlyArray<Item>): ReadonlyArray<number> => {
  const set = new Set<number>()
  for (const item of items) for (let n = item.start; n <= item.end; n += item.step) set.add(n)
  return [...set].sort((a, b) => a - b)
}

const renderItem = (item: Item): string => {
  if (item.star) return item.step === 1 ? "*" : `*/${item.step}`
  if (item.start === item.end) return `${item.start}`
  return item.step === 1 ? `${item.start}-${item.end}` : `${item.start}-${item.end}/${item.step}`
}

/** A sorted set of numbers as a list of values and ranges (`1-5,7`). */
const renderSet = (values: ReadonlyArray<number>): string => {
  const parts: Array<string> = []
  let i = 0
  while (i < values.length) {
    let j = i
    while (j + 1 < values.length && values[j + 1] === values[j]! + 1) j++
    parts.push(j - i >= 2 ? `${values[i]}-${values[j]}` : values.slice(i, j + 1).join(","))
    i = j + 1
  }
  return parts.join(",")
}

interface Parsed {
  readonly fields: ReadonlyArray<ReadonlyArray<Item>>
  /** Days of the week, Sunday = 0; `undefined` for every day. */
  readonly days: ReadonlyArray<number> | undefined
}

const parse = (expression: string, dayNumbering: "unix" | "pg_durable"): Result.Result<Parsed, string> => {
  const trimmed = expression.trim()
  const text = trimmed.startsWith("@") ? macros[trimmed.toLowerCase()] : trimmed
  if (text === undefined) {
    return Result.fail(
      `${JSON.stringify(expression)} is not a known macro; use @yearly, @monthly, @weekly, @daily or @hourly`
    )
  }
  const parts = text.split(/\s+/)
  if (parts.length !== 5) {
    return Result.fail(
      `${JSON.stringify(expression)} has ${parts.length} fields; write five (minute hour day-of-month month ` +
        "day-of-week): pg_durable adds the seconds itself and has no year field"
    )
  }
  const parsed: Array<ReadonlyArray<Item>> = []
  for (let i = 0; i < 5; i++) {
    const field = i === 4 && dayNumbering === "pg_durable"
      ? { name: "day of week", min: 1, max: 7, names: days, nameBase: 1 }
      : fields[i]!
    const items = parseField(field, parts[i]!)
    if (Result.isFailure(items)) return Result.fail(items.failure)
    parsed.push(items.success)
  }
  const dayItems = parsed[4]!
  const dayStar = parts[4]!.startsWith("*")
  if (!dayStar && !parts[2]!.startsWith("*")) {
    return Result.fail(
      `${JSON.stringify(expression)} restricts both the day of month and the day of week: Unix cron runs when either ` +
        "matches, pg_durable only when both do. Restrict one of them, or wait for two schedules in a race"
    )
  }
  if (dayStar && dayItems.length === 1 && dayItems[0]!.step === 1) {
    return Result.succeed({ fields: parsed, days: undefined })
  }
  const expanded = expand(dayItems).map((day) => dayNumbering === "pg_durable" ? day - 1 : day % 7)
  const set = [...new Set(expanded)].sort((a, b) => a - b)
  return Result.succeed({ fields: parsed, days: set.length === 7 ? undefined : set })
}

const render = (parsed: Parsed, dayNumbering: "unix" | "pg_durable"): string => {
  const head = parsed.fields.slice(0, 4).map((items) => items.map(renderItem).join(","))
  const dow = parsed.days === undefined
    ? "*"
    : renderSet(dayNumbering === "unix" ? parsed.days : parsed.days.map((day) => day + 1))
  return [...head, dow].join(" ")
}

/** The expression for pg_durable (day-of-week 1-7, Sunday = 1), or why it cannot be translated. */
export const toPgDurable = (expression: string): Result.Result<string, string> =>
  Result.map(parse(expression, "unix"), (parsed) => render(parsed, "pg_durable"))

/** The Unix form (Sunday = 0) of an expression in pg_durable's numbering. */
export const fromPgDurable = (expression: string): Result.Result<string, string> =>
  Result.map(parse(expression, "pg_durable"), (parsed) => render(parsed, "unix"))

/** The canonical Unix form of an expression (what `fromPgDurable(toPgDurable(e))` gives). */
export const canonical = (expression: string): Result.Result<string, string> =>
  Result.map(parse(expression, "unix"), (parsed) => render(parsed, "unix"))
