/**
 * Quoting for the SQL the compiler writes. Two layers matter:
 *
 * 1. the outer SQL (`df.sql('...')`), parsed by PostgreSQL: string literals with `'` doubled
 *    (`standard_conforming_strings` on, PostgreSQL's default and what pg_durable assumes);
 * 2. the text of a node, which pg_durable rewrites before running it: `$name` (a bound result) and
 *    `{ident}` (a variable, `{sys_instance_id}`) are replaced anywhere, even inside string literals,
 *    and there is no escape syntax. Text that the compiler writes into a node therefore never
 *    contains `$`, `{` or `}` of its own: JSON literals escape them as `\u0024`, `\u007b`, `\u007d`
 *    inside strings (structural braces are harmless: they are never followed by an identifier and
 *    `}`), and other text literals are built with `chr(36)`, `chr(123)`, `chr(125)`.
 */
import * as StoredText from "pgflows/StoredText"
import type { Json } from "./model.ts"

/** A standard SQL string literal. The text must not contain NUL (PostgreSQL text cannot). */
export const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`

/** What PostgreSQL can store, and what a name may hold: one rule for pgflows and pg-durable. */
export const textProblem = StoredText.problem
export const controlCharacter = StoredText.controlCharacter
export const nameProblem = StoredText.nameProblem

/**
 * Text for a `--` comment of a script: control characters, line and paragraph separators and lone
 * surrogates written as `\uXXXX`, so nothing in it can end the comment (PostgreSQL ends one at `\n`
 * and at `\r`) or make the script invalid UTF-8.
 */
export const commentText = (text: string): string => {
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    const pair = code >= 0xd800 && code <= 0xdbff && i + 1 < text.length &&
      text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) <= 0xdfff
    if (pair) {
      out += text.slice(i, i + 2)
      i++
    } else if (
      StoredText.controlCharacter(text[i]!) !== undefined || code === 0x2028 || code === 0x2029 ||
      (code >= 0xd800 && code <= 0xdfff)
    ) {
      out += `\\u${code.toString(16).padStart(4, "0")}`
    } else out += text[i]
  }
  return out
}

const active = /[${}]/

const codes: Record<string, number> = { "$": 36, "{": 123, "}": 125 }

/**
 * A SQL expression of type text whose value is `text`, safe inside a pg_durable node: a plain
 * literal, or a concatenation with `chr()` for `$`, `{` and `}`.
 */
export const nodeText = (text: string): string => {
  if (!active.test(text)) return literal(text)
  const pieces: Array<string> = []
  let current = ""
  for (const char of text) {
    if (codes[char] !== undefined) {
      if (current !== "") pieces.push(literal(current))
      current = ""
      pieces.push(`chr(${codes[char]})`)
    } else current += char
  }
  if (current !== "") pieces.push(literal(current))
  return `(${pieces.join(" || ")})`
}

const escapeActive = (json: string): string =>
  json.replace(/[${}]/g, (char) => `\\u00${codes[char]!.toString(16).padStart(2, "0")}`)

/**
 * JSON text of a value whose strings (and keys) contain no `$`, `{` or `}`: those characters are
 * written as `\u` escapes, which PostgreSQL's JSON parser decodes.
 */
export const inertJson = (value: Json): string => {
  if (value === null || typeof value !== "object") {
    return typeof value === "string" ? escapeActive(JSON.stringify(value)) : JSON.stringify(value)
  }
  if (Array.isArray(value)) return `[${value.map((item) => inertJson(item as Json)).join(",")}]`
  const entries = Object.entries(value as Record<string, Json>)
  return `{${entries.map(([key, item]) => `${escapeActive(JSON.stringify(key))}:${inertJson(item)}`).join(",")}}`
}

/**
 * Why a value is not JSON that PostgreSQL's `jsonb` accepts (a function, a class instance, a
 * non-finite number, a string with NUL, ...), or `undefined` when it is.
 */
export const jsonProblem = (value: unknown, path = "$"): string | undefined => {
  if (value === null || typeof value === "boolean") return undefined
  if (typeof value === "string") {
    const problem = textProblem(value)
    return problem === undefined ? undefined : `the string at ${path} ${problem}`
  }
  if (typeof value === "number") {
    return Number.isFinite(value) ? undefined : `${path} is ${value}, which JSON cannot hold`
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = jsonProblem(value[i], `${path}[${i}]`)
      if (problem !== undefined) return problem
    }
    return undefined
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) return `${path} is not plain JSON data (a class instance)`
    for (const [key, item] of Object.entries(value)) {
      const keyProblem = textProblem(key)
      if (keyProblem !== undefined) return `the key ${JSON.stringify(key)} at ${path} ${keyProblem}`
      const problem = jsonProblem(item, `${path}.${key}`)
      if (problem !== undefined) return problem
    }
    return undefined
  }
  return `${path} is a ${typeof value}, which JSON cannot hold`
}

/** A dollar-quote tag that does not occur in `text`. */
export const dollarTag = (text: string, base = "pgflows"): string => {
  for (let i = 0;; i++) {
    const tag = i === 0 ? `$${base}$` : `$${base}_${i}$`
    if (!text.includes(tag)) return tag
  }
}
