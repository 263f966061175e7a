/**
 * How errors are stored: an envelope that says whose error it is (the workflow's or a step's typed
 * error, encoded with its Schema, or one of pgflows' own `EngineError`s) and the encoded error.
 */
import * as Result from "effect/Result"
import { codec } from "../JsonCodec.ts"
import { EngineError } from "../PgflowsError.ts"

export type ErrorEnvelope =
  | { readonly source: "workflow" | "step"; readonly error: unknown }
  | { readonly source: "pgflows"; readonly error: unknown }

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

/** Decodes a stored engine error; falls back to the raw JSON. */
export const decodeEngineFailure = (json: unknown): EngineError | unknown => {
  const decoded = codec(EngineError).decode(json)
  return Result.isSuccess(decoded) ? decoded.success : json
}
