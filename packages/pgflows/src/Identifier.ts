/**
 * Names that reach SQL text: the schema, queue names and the NOTIFY channel.
 *
 * Values always travel as bound parameters; these few names cannot, so each is checked once, when
 * the configuration is built, against a strict pattern: lowercase ASCII letters, digits and `_`,
 * starting with a letter or `_`, short enough for PostgreSQL (63 bytes) and, for queues, for the
 * table names pgmq derives from them (`q_<name>`, `a_<name>`: 47 characters).
 *
 * @since 0.1.0
 */
import type * as Brand from "effect/Brand"
import * as Result from "effect/Result"

/**
 * A name checked against the pattern of its kind.
 *
 * @category models
 * @since 0.1.0
 */
export type Identifier = string & Brand.Brand<"pgflows/Identifier">

/**
 * @category models
 * @since 0.1.0
 */
export type Kind = "schema" | "queue" | "channel"

const maxLength: Record<Kind, number> = { schema: 63, queue: 47, channel: 63 }

/**
 * The rule a name of this kind must follow, in words.
 *
 * @category utils
 * @since 0.1.0
 */
export const rule = (kind: Kind): string =>
  `1 to ${maxLength[kind]} lowercase letters, digits or underscores, starting with a letter or underscore`

/**
 * Checks `value`; the failure is a sentence that says what is wrong and what is allowed.
 *
 * @category constructors
 * @since 0.1.0
 */
export const check = (kind: Kind, value: string): Result.Result<Identifier, string> => {
  const max = maxLength[kind]
  if (value.length === 0) return Result.fail(`is empty; a ${kind} name must be ${rule(kind)}`)
  if (value.length > max) {
    return Result.fail(`is ${value.length} characters long; a ${kind} name must be ${rule(kind)}`)
  }
  if (!/^[a-z_][a-z0-9_]*$/.test(value)) {
    return Result.fail(`${JSON.stringify(value)} is not a valid ${kind} name: it must be ${rule(kind)}`)
  }
  if (value.startsWith("pg_")) return Result.fail(`${JSON.stringify(value)} starts with pg_, which PostgreSQL reserves`)
  return Result.succeed(value as Identifier)
}

/**
 * Checks `value` and throws when it is not a valid name; for constants written in code.
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeUnsafe = (kind: Kind, value: string): Identifier => {
  const checked = check(kind, value)
  if (Result.isFailure(checked)) throw new Error(`${kind} name ${checked.failure}`)
  return checked.success
}

/**
 * Double-quotes a checked name for SQL text.
 *
 * @category utils
 * @since 0.1.0
 */
export const quote = (identifier: Identifier): string => `"${identifier}"`
