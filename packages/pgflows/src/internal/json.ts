/**
 * JSON helpers for the replay engine: a canonical form (object keys sorted) so the same value always
 * hashes the same, the hash of a step input, and payload sizes.
 */
import * as Crypto from "node:crypto"

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
