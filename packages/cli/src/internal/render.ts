/**
 * What the commands print for people (tables, a run with its step timeline) and for scripts (JSON,
 * one document per command, on stdout; progress and errors go to stderr).
 */
import * as Option from "effect/Option"
import type * as Run from "pgflows/Run"

/** A table: a header row, then the rows, columns padded to their widest cell. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, column) => column === cells.length - 1 ? cell : cell.padEnd(widths[column]!)).join("  ")
      .trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/** `2026-05-01 12:00:03` in UTC, or `-`. */
export const time = (date: Date | undefined): string =>
  date === undefined ? "-" : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z")

/** `340 ms`, `1.2 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`. */
export const duration = (millis: number | undefined): string => {
  if (millis === undefined || Number.isNaN(millis)) return "-"
  if (millis < 1000) return `${Math.round(millis)} ms`
  const seconds = millis / 1000
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes} min ${Math.round(seconds - minutes * 60)} s`
  const hours = Math.floor(minutes / 60)
  if (hours < 48) return `${hours} h ${minutes - hours * 60} min`
  const days = Math.floor(hours / 24)
  return `${days} d ${hours - days * 24} h`
}

const between = (from: Date | undefined, to: Date | undefined) =>
  from === undefined || to === undefined ? undefined : to.getTime() - from.getTime()

/** A JSON value on one line, cut at `max` characters. */
export const brief = (value: unknown, max = 100): string => {
  const text = JSON.stringify(value ?? null) ?? "null"
  return text.length > max ? `${text.slice(0, max - 3)}...` : text
}

/** A run of `list` as JSON. */
export const summaryJson = (run: Run.Summary) => ({
  id: run.id,
  workflow: run.workflow,
  version: run.version,
  status: run.status,
  executions: run.executions,
  createdAt: run.createdAt.toISOString(),
  updatedAt: run.updatedAt.toISOString(),
  completedAt: run.completedAt?.toISOString() ?? null
})

export const listTable = (page: Run.Page): string => {
  if (page.runs.length === 0) return "no runs match"
  const rows = page.runs.map((run) => [
    run.id,
    run.workflow,
    String(run.version),
    run.status,
    String(run.executions),
    time(run.createdAt),
    duration(between(run.createdAt, run.completedAt))
  ])
  const more = page.nextCursor === undefined ? "" : `\nmore: --cursor ${page.nextCursor}`
  return `${
    table(["ID", "WORKFLOW", "VERSION", "STATUS", "EXECUTIONS", "CREATED", "TOOK"], rows)
  }\n${page.runs.length} run${page.runs.length === 1 ? "" : "s"}${more}`
}

/** A run with its journal as JSON (the shape of the REST API's run, plus version and fork origin). */
export const runJson = (info: Run.RunInfo) => ({
  id: info.id,
  workflow: info.workflow,
  version: info.version,
  status: info.status,
  input: info.input ?? null,
  output: Option.getOrNull(info.output) ?? null,
  error: jsonError(Option.getOrNull(info.error)),
  executions: info.executions,
  recoveries: info.recoveries,
  parentId: info.parentId ?? null,
  forkedFrom: info.forkedFrom ?? null,
  createdAt: info.createdAt.toISOString(),
  updatedAt: info.updatedAt.toISOString(),
  startedAt: info.startedAt?.toISOString() ?? null,
  completedAt: info.completedAt?.toISOString() ?? null,
  wakeAt: info.wakeAt?.toISOString() ?? null,
  waitingFor: info.waitingFor ?? null,
  steps: info.steps.map((step) => ({
    key: step.key,
    name: step.name,
    status: step.status,
    attempts: step.attempts,
    transactional: step.transactional,
    output: step.output ?? null,
    error: step.error ?? null,
    startedAt: step.startedAt?.toISOString() ?? null,
    completedAt: step.completedAt?.toISOString() ?? null,
    wakeAt: step.wakeAt?.toISOString() ?? null
  }))
})

/** An error as JSON: its fields, with its tag and message (a decoded error class keeps them off `JSON`). */
const jsonError = (error: unknown): unknown => {
  if (error === null || error === undefined) return null
  if (typeof error !== "object") return error
  // A journal entry's error is stored in an envelope (`{ source, error }`): the error is inside.
  const envelope = error as { readonly source?: unknown; readonly error?: unknown }
  if (typeof envelope.source === "string" && "error" in envelope) return jsonError(envelope.error)
  const record = error as { readonly _tag?: unknown; readonly message?: unknown }
  return JSON.parse(JSON.stringify({
    ...(typeof record._tag === "string" ? { _tag: record._tag } : {}),
    ...error,
    ...(typeof record.message === "string" && record.message !== "" ? { message: record.message } : {})
  })) as unknown
}

const errorLine = (error: unknown): string | undefined => {
  const json = jsonError(error) as { readonly _tag?: unknown; readonly message?: unknown } | null
  if (json === null || typeof json !== "object") return json === null ? undefined : brief(json)
  const tag = typeof json._tag === "string" ? json._tag : undefined
  const message = typeof json.message === "string" ? json.message : undefined
  const { _tag: _, message: __, ...fields } = json as Record<string, unknown>
  const detail = message ?? (Object.keys(fields).length === 0 ? undefined : brief(fields))
  return tag !== undefined || detail !== undefined
    ? [tag, detail].filter((part) => part !== undefined).join(": ")
    : brief(json)
}

/** The timeline bar of one entry: where it started and how long it took, over the run's span. */
const bar = (start: number, span: number, from: Date | undefined, to: Date | undefined, width = 24): string => {
  if (from === undefined) return " ".repeat(width)
  const left = Math.min(width - 1, Math.max(0, Math.floor(((from.getTime() - start) / span) * width)))
  const end = to === undefined ? left + 1 : Math.ceil(((to.getTime() - start) / span) * width)
  const length = Math.max(1, Math.min(width - left, end - left))
  return `${" ".repeat(left)}${"#".repeat(length)}${" ".repeat(width - left - length)}`
}

/** A run for people: its facts, input, output or error, then the journal as a timeline. */
export const runText = (info: Run.RunInfo): string => {
  const lines: Array<string> = []
  lines.push(`run ${info.id}`)
  lines.push(`  workflow    ${info.workflow} (version ${info.version})`)
  lines.push(`  status      ${info.status}${info.waitingFor === undefined ? "" : ` (waiting for ${info.waitingFor})`}`)
  lines.push(`  created     ${time(info.createdAt)}`)
  if (info.startedAt !== undefined) lines.push(`  started     ${time(info.startedAt)}`)
  if (info.completedAt !== undefined) {
    lines.push(`  ended       ${time(info.completedAt)} (took ${duration(between(info.createdAt, info.completedAt))})`)
  }
  if (info.wakeAt !== undefined && info.completedAt === undefined) lines.push(`  wakes       ${time(info.wakeAt)}`)
  lines.push(`  executions  ${info.executions}${info.recoveries > 0 ? ` (${info.recoveries} recovered)` : ""}`)
  if (info.parentId !== undefined) lines.push(`  parent      ${info.parentId}`)
  if (info.forkedFrom !== undefined) {
    lines.push(`  forked from ${info.forkedFrom.runId} at key ${info.forkedFrom.key}`)
  }
  lines.push(`  input       ${brief(info.input)}`)
  if (Option.isSome(info.output)) lines.push(`  output      ${brief(info.output.value)}`)
  if (Option.isSome(info.error)) lines.push(`  error       ${errorLine(info.error.value)}`)
  lines.push("")
  if (info.steps.length === 0) {
    lines.push("no steps recorded yet")
    return lines.join("\n")
  }
  const start = (info.startedAt ?? info.createdAt).getTime()
  const ends = info.steps.map((step) => (step.completedAt ?? step.wakeAt ?? step.startedAt)?.getTime() ?? start)
  const end = Math.max(start + 1, (info.completedAt ?? info.updatedAt).getTime(), ...ends)
  const span = end - start
  // The journal records when each entry committed (a step's checkpoint is written when it ends), so
  // an entry is taken to start where the one before it ended, unless it recorded an earlier start.
  let previous = start
  const rows = info.steps.map((step) => {
    const parked = step.status === "waiting" || step.status === "retrying"
    const ended = step.completedAt ?? (parked ? step.wakeAt : undefined)
    const from = step.startedAt === undefined
      ? undefined
      : new Date(Math.min(step.startedAt.getTime(), Math.max(previous, start)))
    if (step.completedAt !== undefined) previous = Math.max(previous, step.completedAt.getTime())
    const notes = [
      step.wakeAt !== undefined && parked
        ? `${step.status === "retrying" ? "next attempt" : "wakes"} ${time(step.wakeAt)}`
        : undefined,
      step.error === null || step.error === undefined ? undefined : errorLine(step.error),
      step.transactional ? "transaction" : undefined
    ].filter((note) => note !== undefined)
    return [
      step.key,
      step.name,
      step.status,
      String(step.attempts),
      from === undefined ? "-" : `+${duration(from.getTime() - start)}`,
      duration(between(from, step.completedAt)),
      `|${bar(start, span, from, ended)}|`,
      notes.join("; ")
    ]
  })
  lines.push(table(["KEY", "STEP", "STATUS", "ATTEMPTS", "AT", "TOOK", "TIMELINE", "NOTES"], rows))
  return lines.join("\n")
}
