/**
 * JSON codecs derived once per Schema (`Schema.toCodecJson`), with failures turned into the
 * `{ path, message }` issues that pgflows' errors carry.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import type { Issue } from "../PgflowsError.ts"

export interface JsonCodec<T> {
  readonly encode: (value: T) => Result.Result<unknown, ReadonlyArray<Issue>>
  readonly decode: (json: unknown) => Result.Result<T, ReadonlyArray<Issue>>
}

/** A schema whose Type and Encoded sides need no services, as everything persisted must. */
export type Persisted = Schema.ConstraintCodec<any, any, never, never>

const cache = new WeakMap<object, JsonCodec<any>>()
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()
const options = { errors: "all" } as const

const toIssues = (error: Schema.SchemaError): ReadonlyArray<Issue> =>
  formatter(error.issue).issues.map((issue) => ({
    path: (issue.path ?? []).map((segment) =>
      typeof segment === "object" && segment !== null && "key" in segment ? String(segment.key) : String(segment)
    ).map((segment) => /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`).join("").replace(/^\./, ""),
    message: issue.message
  }))

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
