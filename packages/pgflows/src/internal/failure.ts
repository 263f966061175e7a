/**
 * How errors are stored, and read back: the one owner of the stored-error envelope. An envelope says
 * whose error it is (the workflow's or a step's typed error, encoded with its Schema, or one of
 * pgflows' own `EngineError`s) and holds the encoded error. Every writer (the engine) and reader
 * (the engine's replay, `status`, `result`, child workflows) goes through this module.
 */
import * as Result from "effect/Result"
import { codec, type Persisted } from "../JsonCodec.ts"
import { EncodeError, EngineError, isEngineError } from "../PgflowsError.ts"

export interface ErrorEnvelope {
  readonly source: "workflow" | "step" | "pgflows"
  readonly error: unknown
  /** For a workflow that failed after running compensations: what they did. */
  readonly compensation?: { readonly undone: number; readonly failed: ReadonlyArray<string> } | undefined
}

/** The stored form of an engine error; its `message` is kept for readers of the raw JSON. */
export const encodeEngineFailure = (error: EngineError): ErrorEnvelope => {
  const encoded = codec(EngineError).encode(error)
  return {
    source: "pgflows",
    error: Result.isSuccess(encoded)
      ? { ...(encoded.success as object), message: error.message }
      : { _tag: error._tag, message: error.message }
  }
}

/**
 * The stored form of a typed failure of a workflow or a step: encoded with its own error Schema; an
 * engine error that reached it as such; else an `EncodeError` that says why it could not be stored.
 */
export const encodeFailure = (
  source: "workflow" | "step",
  schema: Persisted,
  error: unknown,
  subject: string
): ErrorEnvelope => {
  const encoded = codec(schema).encode(error)
  if (Result.isSuccess(encoded)) return { source, error: encoded.success }
  if (isEngineError(error)) return encodeEngineFailure(error)
  return encodeEngineFailure(new EncodeError({ subject, issues: encoded.failure }))
}

/** A stored failure, read back. */
export type StoredFailure =
  /** The workflow's or step's own typed error, decoded with its Schema. */
  | { readonly _tag: "Own"; readonly error: unknown }
  /** One of pgflows' errors. */
  | { readonly _tag: "Engine"; readonly error: EngineError }
  /** Neither: the stored JSON as it is, and why it did not decode. */
  | { readonly _tag: "Raw"; readonly error: unknown; readonly reason: string }

/**
 * Reads a stored failure whose own errors are `source`'s, decoded with `schema` (when this process
 * has the definition; `undefined` leaves them as stored JSON).
 */
export const decodeFailure = (
  stored: unknown,
  source: "workflow" | "step",
  schema: Persisted | undefined
): StoredFailure => {
  const envelope = isEnvelope(stored) ? stored : undefined
  if (envelope?.source === "pgflows") {
    const decoded = codec(EngineError).decode(envelope.error)
    return Result.isSuccess(decoded)
      ? { _tag: "Engine", error: decoded.success }
      : { _tag: "Raw", error: envelope.error, reason: "an engine error this version does not know" }
  }
  if (envelope?.source !== source) {
    return { _tag: "Raw", error: envelope?.error ?? stored, reason: `not a stored ${source} error` }
  }
  if (schema === undefined) return { _tag: "Raw", error: envelope.error, reason: "no definition to decode it with" }
  const decoded = codec(schema).decode(envelope.error)
  return Result.isSuccess(decoded)
    ? { _tag: "Own", error: decoded.success }
    : {
      _tag: "Raw",
      error: envelope.error,
      reason: decoded.failure.map((issue) => `${issue.message}${issue.path === "" ? "" : ` at ${issue.path}`}`).join(
        "; "
      )
    }
}

const isEnvelope = (u: unknown): u is ErrorEnvelope =>
  typeof u === "object" && u !== null && "source" in u &&
  ((u as ErrorEnvelope).source === "workflow" || (u as ErrorEnvelope).source === "step" ||
    (u as ErrorEnvelope).source === "pgflows")
