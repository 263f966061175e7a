/**
 * JSON codecs for the Schemas of workflows and steps: everything pgflows persists or sends goes
 * through `Schema.toCodecJson`, derived once per Schema and cached, with failures turned into the
 * `{ path, message }` issues that pgflows' errors carry.
 *
 * `@pgflows/pg-durable` uses the same codecs for step inputs and outputs, workflow inputs and
 * instance results, so a value means the same thing on both sides.
 *
 * @since 0.1.0
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import type { Issue } from "./PgflowsError.ts"

/**
 * Encodes a value to JSON data and decodes JSON data to a value, with the issues of a failure.
 *
 * @category models
 * @since 0.1.0
 */
export interface JsonCodec<T> {
  readonly encode: (value: T) => Result.Result<unknown, ReadonlyArray<Issue>>
  readonly decode: (json: unknown) => Result.Result<T, ReadonlyArray<Issue>>
}

/**
 * A schema whose Type and Encoded sides need no services, as everything persisted must.
 *
 * @category models
 * @since 0.1.0
 */
export type Persisted = Schema.ConstraintCodec<any, any, never, never>

const cache = new WeakMap<object, JsonCodec<any>>()
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()
const options = { errors: "all" } as const

/**
 * The issues of a Schema failure: each with its path (`items[0].id`) and message.
 *
 * @category issues
 * @since 0.1.0
 */
export const toIssues = (error: Schema.SchemaError): ReadonlyArray<Issue> =>
  formatter(error.issue).issues.map((issue) => ({
    path: (issue.path ?? []).map((segment) =>
      typeof segment === "object" && segment !== null && "key" in segment ? String(segment.key) : String(segment)
    ).map((segment) => /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`).join("").replace(/^\./, ""),
    message: issue.message
  }))

/**
 * Issues as one line: `message at path; message at path`.
 *
 * @category issues
 * @since 0.1.0
 */
export const formatIssues = (issues: ReadonlyArray<Issue>): string =>
  issues.map((issue) => issue.path === "" ? issue.message : `${issue.message} at ${issue.path}`).join("; ")

/**
 * The JSON codec of a schema (`Schema.toCodecJson`), made once per schema.
 *
 * @category constructors
 * @since 0.1.0
 */
export const codec = <S extends Persisted>(schema: S): JsonCodec<S["Type"]> => {
  const cached = cache.get(schema)
  if (cached !== undefined) return cached
  const json = Schema.toCodecJson(schema as unknown as Schema.Top)
  const encode = Schema.encodeUnknownResult(json as any, options)
  const decode = Schema.decodeUnknownResult(json as any, options)
  const made: JsonCodec<S["Type"]> = {
    encode: (value) => Result.mapError(encode(value) as Result.Result<unknown, Schema.SchemaError>, toIssues),
    decode: (value) => Result.mapError(decode(value) as Result.Result<S["Type"], Schema.SchemaError>, toIssues)
  }
  cache.set(schema, made)
  return made
}
