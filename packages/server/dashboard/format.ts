/** Formatting for people: times, durations, journal entries' kinds. */

export const time = (iso: string | null | undefined): string => {
  if (iso === null || iso === undefined) return "—"
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit"
  })
}

export const ago = (iso: string | null | undefined, now: number = Date.now()): string => {
  if (iso === null || iso === undefined) return "—"
  const millis = now - new Date(iso).getTime()
  if (Number.isNaN(millis)) return iso
  const future = millis < 0
  const text = duration(Math.abs(millis))
  return future ? `in ${text}` : `${text} ago`
}

/** `1.2 s`, `340 ms`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`. */
export const duration = (millis: number | undefined): string => {
  if (millis === undefined || Number.isNaN(millis)) return "—"
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

export const between = (from: string | null, to: string | null): number | undefined =>
  from === null || to === null ? undefined : new Date(to).getTime() - new Date(from).getTime()

export type EntryKind = "step" | "sleep" | "signal" | "child" | "await" | "event" | "value" | "patch" | "race"

/** What kind of durable operation a journal entry records, from its name. */
export const kindOf = (name: string): EntryKind => {
  switch (name) {
    case "pgflows.sleep":
      return "sleep"
    case "pgflows.signal":
      return "signal"
    case "pgflows.child":
      return "child"
    case "pgflows.await":
      return "await"
    case "pgflows.event":
      return "event"
    case "pgflows.now":
    case "pgflows.uuid":
      return "value"
    case "pgflows.patch":
      return "patch"
    case "pgflows.race":
      return "race"
    default:
      return name.startsWith("pgflows.patch") ? "patch" : "step"
  }
}

export const kindLabel: Record<EntryKind, string> = {
  step: "step",
  sleep: "sleep",
  signal: "signal wait",
  child: "child",
  await: "await child",
  event: "event",
  value: "recorded value",
  patch: "patch",
  race: "race"
}

/** A JSON value for reading: two-space indentation; `undefined` and `null` as `null`. */
export const pretty = (value: unknown): string => JSON.stringify(value ?? null, null, 2) ?? "null"

/** A short one-line form of a JSON value, for tables. */
export const brief = (value: unknown, max = 80): string => {
  const text = JSON.stringify(value ?? null) ?? "null"
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

/** The tag and message of a stored error, when it has them. */
export const errorSummary = (error: unknown): { readonly tag?: string; readonly message?: string } => {
  if (typeof error !== "object" || error === null) return {}
  // A stored envelope (`{ source, error }`), when the server could not decode it: the inner error.
  const envelope = error as { readonly source?: unknown; readonly error?: unknown }
  if (typeof envelope.source === "string" && "error" in envelope) return errorSummary(envelope.error)
  const record = error as { readonly _tag?: unknown; readonly message?: unknown }
  return {
    ...(typeof record._tag === "string" ? { tag: record._tag } : {}),
    ...(typeof record.message === "string" ? { message: record.message } : {})
  }
}
