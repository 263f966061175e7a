/**
 * JSON codecs derived once per Schema (`Schema.toCodecJson`), failures turned into `{ path, message }`
 * issues (the same shape as pgflows' `Issue`).
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

export interface Issue {
  readonly path: string
  readonly message: string
}

export interface JsonCodec<T> {
  readonly encode: (value: T) => Result.Result<unknown, ReadonlyArray<Issue>>
  readonly decode: (json: unknown) => Result.Result<T, ReadonlyArray<Issue>>
}

const cache = new WeakMap<object, JsonCodec<any>>()
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()
const options = { errors: "all" } as const

export const toIssues = (error: Schema.SchemaError): ReadonlyArray<Issue> =>
  formatter(error.issue).issues.map((issue) => ({
    path: (issue.path ?? []).map((segment) =>
      typeof segment === "object" && segment !== null && "key" in segment ? String(segment.key) : String(segment)
    ).map((segment) => /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`).join("").replace(/^\./, ""),
    message: issue.message
  }))

export const formatIssues = (issues: ReadonlyArray<Issue>): string =>
  issues.map((issue) => issue.path === "" ? issue.message : `${issue.message} at ${issue.path}`).join("; ")

export const codec = <T>(schema: { readonly Type: T }): JsonCodec<T> => {
  const cached = cache.get(schema)
  if (cached !== undefined) return cached
  const json = Schema.toCodecJson(schema as unknown as Schema.Top)
  const encode = Schema.encodeUnknownResult(json as any, options)
  const decode = Schema.decodeUnknownResult(json as any, options)
  const made: JsonCodec<T> = {
    encode: (value) => Result.mapError(encode(value) as Result.Result<unknown, Schema.SchemaError>, toIssues),
    decode: (value) => Result.mapError(decode(value) as Result.Result<T, Schema.SchemaError>, toIssues)
  }
  cache.set(schema, made)
  return made
}
