/**
 * The client's page cursors: a `Store.Cursor` (the time in epoch microseconds and the id of a
 * page's last row) as opaque URL-safe text, and back.
 */
import type { Cursor } from "../Store.ts"

export const encode = (cursor: Cursor): string => Buffer.from(`${cursor.micros}:${cursor.id}`).toString("base64url")

/** The cursor a text holds; `undefined` when it holds none. */
export const decode = (text: string): Cursor | undefined => {
  const decoded = Buffer.from(text, "base64url").toString("utf8")
  const at = decoded.indexOf(":")
  const micros = decoded.slice(0, at)
  return at > 0 && /^\d{1,18}$/.test(micros) && encode({ micros, id: decoded.slice(at + 1) }) === text
    ? { micros, id: decoded.slice(at + 1) }
    : undefined
}
