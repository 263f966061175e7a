/**
 * What PostgreSQL can store as text, and what pgflows accepts as a name. A `text` or `jsonb` value
 * cannot hold a NUL character, and a lone UTF-16 surrogate has no UTF-8 form (the driver would store
 * U+FFFD instead, so the name read back would differ). Names of steps and workflows are also written
 * into logs, SQL comments of exported scripts and URLs, so control characters and line separators
 * are refused in them as well.
 *
 * @example
 * ```ts
 * StoredText.problem("a\u0000b") // "contains a NUL character (U+0000), ..."
 * StoredText.nameProblem("charge\rpayment") // "contains a control character (U+000D)"
 * ```
 *
 * @since 0.1.0
 */

/** A UTF-16 surrogate without its other half. */
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/**
 * Why PostgreSQL cannot store a text (in `text` or inside `jsonb`), or `undefined` when it can.
 *
 * @category validation
 * @since 0.1.0
 */
export const problem = (text: string): string | undefined => {
  if (text.includes("\u0000")) return "contains a NUL character (U+0000), which PostgreSQL text and jsonb refuse"
  if (loneSurrogate.test(text)) return "contains a lone UTF-16 surrogate, which has no UTF-8 form"
  return undefined
}

/**
 * The first control character (C0, DEL, C1) of a text, or `undefined`.
 *
 * @category validation
 * @since 0.1.0
 */
export const controlCharacter = (text: string): string | undefined => {
  for (const char of text) {
    const code = char.charCodeAt(0)
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return char
  }
  return undefined
}

/**
 * Why a text cannot be the name of a step or a workflow, or `undefined` when it can: empty, not
 * storable (see `problem`), or holding a control character or a line or paragraph separator.
 *
 * @category validation
 * @since 0.1.0
 */
export const nameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "is empty"
  const stored = problem(name)
  if (stored !== undefined) return stored
  const control = controlCharacter(name)
  if (control !== undefined) return `contains a control character (${codePoint(control)})`
  const separator = /[\u2028\u2029]/.exec(name)
  if (separator !== null) return `contains a line or paragraph separator (${codePoint(separator[0])})`
  return undefined
}

/**
 * `U+000D` for `"\r"`.
 *
 * @category formatting
 * @since 0.1.0
 */
export const codePoint = (char: string): string => `U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`
