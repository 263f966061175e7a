/**
 * JSON helpers for the replay engine: a canonical form (object keys sorted) so the same value always
 * hashes the same, the hash of a step input, and payload sizes.
 */
import * as Crypto from "node:crypto"
import * as StoredText from "../StoredText.ts"

/** JSON text with object keys sorted at every level; `undefined` members are dropped as JSON does. */
export const canonical = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null"
  if (Array.isArray(value)) return `[${value.map((item) => item === undefined ? "null" : canonical(item)).join(",")}]`
  const record = value as Record<string, unknown>
  const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort()
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`).join(",")}}`
}

/** A short, stable digest of an encoded (JSON) value: the first 16 bytes of its SHA-256, hex. */
export const hash = (encoded: unknown): string =>
  Crypto.createHash("sha256").update(canonical(encoded)).digest("hex").slice(0, 32)

/** The size in bytes of a value's JSON text (UTF-8). */
export const byteSize = (encoded: unknown): number => Buffer.byteLength(JSON.stringify(encoded) ?? "null", "utf8")

/**
 * Where an encoded (JSON) value holds text PostgreSQL cannot store, if anywhere: the path of the
 * first such string or object key, and why. Most values contain no `\u` escape in their JSON at
 * all, and are checked by one scan of the text.
 */
export const unstorable = (
  encoded: unknown,
  json: string = JSON.stringify(encoded) ?? "null"
): { readonly path: string; readonly reason: string } | undefined => {
  // JSON.stringify writes NUL and lone surrogates as \u escapes: no escape, nothing to look for.
  if (!json.includes("\\u")) return undefined
  const visit = (value: unknown, path: string): { readonly path: string; readonly reason: string } | undefined => {
    if (typeof value === "string") {
      const reason = StoredText.problem(value)
      return reason === undefined ? undefined : { path, reason }
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const found = visit(value[i], `${path}[${i}]`)
        if (found !== undefined) return found
      }
      return undefined
    }
    if (value !== null && typeof value === "object") {
      for (const [key, member] of Object.entries(value)) {
        const at = path === "" ? key : `${path}.${key}`
        const reason = StoredText.problem(key)
        if (reason !== undefined) return { path: at, reason: `its key ${reason}` }
        const found = visit(member, at)
        if (found !== undefined) return found
      }
    }
    return undefined
  }
  return visit(encoded, "")
}

/** What keeps an encoded value out of the store: its size, or text PostgreSQL cannot hold. */
export type StoreProblem =
  | { readonly _tag: "TooLarge"; readonly bytes: number }
  | { readonly _tag: "Unstorable"; readonly path: string; readonly reason: string }

/** Checks an encoded value against the payload limit and what `jsonb` can hold, with one `JSON.stringify`. */
export const storeProblem = (encoded: unknown, limit: number): StoreProblem | undefined => {
  const json = JSON.stringify(encoded) ?? "null"
  // UTF-8 takes at most 3 bytes per UTF-16 code unit: most values need no exact count.
  const bytes = json.length * 3 <= limit ? json.length : Buffer.byteLength(json, "utf8")
  if (bytes > limit) return { _tag: "TooLarge", bytes }
  const found = unstorable(encoded, json)
  return found === undefined ? undefined : { _tag: "Unstorable", ...found }
}
