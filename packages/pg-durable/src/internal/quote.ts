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
import type { Json } from "./model.ts"

/** A standard SQL string literal. The text must not contain NUL (PostgreSQL text cannot). */
export const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`

/**
 * Why a text cannot be stored in PostgreSQL (a NUL character, or a lone UTF-16 surrogate, which has
 * no UTF-8 form), or `undefined` when it can.
 */
export const textProblem = (text: string): string | undefined => {
  if (text.includes("\u0000")) return "contains a NUL character, which PostgreSQL text cannot hold"
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)) {
    return "contains a lone UTF-16 surrogate, which has no UTF-8 form"
  }
  return undefined
}

/** A C0 control character, DEL or a C1 control character. */
const isControl = (code: number): boolean => code < 0x20 || (code >= 0x7f && code <= 0x9f)

/** The first control character (C0, DEL, C1) of a text, or `undefined`. */
export const controlCharacter = (text: string): string | undefined => {
  for (const char of text) if (isControl(char.charCodeAt(0))) return char
  return undefined
}

/**
 * Why a name (of a step or a workflow) cannot be used, or `undefined` when it can. Names are written
 * into SQL literals, URLs and the comments of exported scripts, where a line break would end the
 * comment: control characters (C0, DEL, C1), line and paragraph separators, NUL and lone surrogates
 * are refused, and so is the empty name.
 */
export const nameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "is empty"
  const text = textProblem(name)
  if (text !== undefined) return text
  const control = controlCharacter(name)
  if (control !== undefined) return `contains a control character (${codePoint(control)})`
  const separator = /[\u2028\u2029]/.exec(name)
  if (separator !== null) return `contains a line or paragraph separator (${codePoint(separator[0])})`
  return undefined
}

const codePoint = (char: string): string => `U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`

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
    } else if (isControl(code) || code === 0x2028 || code === 0x2029 || (code >= 0xd800 && code <= 0xdfff)) {
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
