/**
 * Who may call the server.
 *
 * - The **REST API** takes bearer tokens (`Authorization: Bearer <token>`), each with a scope:
 *   `read` (status, list, events) or `admin` (everything, including start, cancel, retry and
 *   signals). `Auth.tokens([...])` lists them; `Auth.none` turns checking off, and must be chosen
 *   explicitly.
 * - The **step endpoint** takes the shared secret that compiled graphs send
 *   (`StepBinding.http(baseUrl, { secret })`), in `X-Pgflows-Step-Secret` unless configured
 *   otherwise; without a configured secret it refuses every call.
 *
 * Tokens and secrets are compared in constant time (SHA-256 digests compared with
 * `crypto.timingSafeEqual`, every configured token checked whatever matched), and are kept
 * `Redacted`.
 *
 * @since 0.1.0
 */
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Crypto from "node:crypto"
import { Forbidden, Unauthorized } from "./ServerError.ts"

/**
 * `read`: status, list, events, the OpenAPI document. `admin`: everything.
 *
 * @category models
 * @since 0.1.0
 */
export type Scope = "read" | "admin"

/**
 * @category models
 * @since 0.1.0
 */
export interface Token {
  readonly token: Redacted.Redacted<string>
  readonly scope: Scope
  /** Names the token in the logs (never the token itself). */
  readonly name?: string | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export type Auth =
  | { readonly _tag: "None" }
  | { readonly _tag: "Tokens"; readonly tokens: ReadonlyArray<Token> }

/**
 * No authentication: every request may do everything. For a server only reachable by trusted
 * callers (a sidecar, a test).
 *
 * @category constructors
 * @since 0.1.0
 */
export const none: Auth = { _tag: "None" }

/**
 * Bearer tokens with their scopes. Each token must be at least 16 printable ASCII characters
 * without spaces (checked when the server's layer is built).
 *
 * @category constructors
 * @since 0.1.0
 */
export const tokens = (list: ReadonlyArray<Token>): Auth => ({ _tag: "Tokens", tokens: list })

/**
 * What is wrong with a token or secret, if anything.
 *
 * @category validation
 * @since 0.1.0
 */
export const secretProblem = (value: string): string | undefined =>
  value.length < 16
    ? "is shorter than 16 characters"
    : /[^\x21-\x7e]/.test(value)
    ? "has a character that is not printable ASCII (or a space)"
    : undefined

/**
 * Parses `scope:token,scope:token` (the form of `PGFLOWS_SERVER_TOKENS`); `name=scope:token` names
 * a token. Fails with what is wrong, never quoting a token.
 *
 * @category constructors
 * @since 0.1.0
 */
export const parseTokens = (text: string): Result.Result<ReadonlyArray<Token>, string> => {
  const out: Array<Token> = []
  const entries = text.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "")
  for (const [index, entry] of entries.entries()) {
    const match = /^(?:([A-Za-z0-9_.-]+)=)?(read|admin):(.+)$/.exec(entry)
    if (match === null) return Result.fail(`entry ${index + 1} is not [name=]read:<token> or [name=]admin:<token>`)
    const problem = secretProblem(match[3]!)
    if (problem !== undefined) return Result.fail(`the token of entry ${index + 1} ${problem}`)
    out.push({ token: Redacted.make(match[3]!), scope: match[2] as Scope, name: match[1] ?? `token ${index + 1}` })
  }
  return out.length === 0 ? Result.fail("no token given") : Result.succeed(out)
}

/**
 * Checks a presented bearer token against the configured ones for an operation that needs
 * `required`; the token that matched.
 *
 * @category checking
 * @since 0.1.0
 */
export const authorize = (
  auth: Auth,
  presented: string,
  required: Scope
): Result.Result<Token | undefined, Unauthorized | Forbidden> => {
  if (auth._tag === "None") return Result.succeed(undefined)
  if (presented === "") {
    return Result.fail(new Unauthorized({ message: "this endpoint needs a bearer token (Authorization: Bearer ...)" }))
  }
  const digest = sha256(presented)
  let found: Token | undefined
  for (const token of auth.tokens) {
    // Every token is compared, so the time taken does not tell which one matched.
    if (Crypto.timingSafeEqual(digest, sha256(Redacted.value(token.token))) && found === undefined) found = token
  }
  if (found === undefined) return Result.fail(new Unauthorized({ message: "unknown bearer token" }))
  if (required === "admin" && found.scope !== "admin") {
    return Result.fail(new Forbidden({ message: "this operation needs a token of scope admin", required: "admin" }))
  }
  return Result.succeed(found)
}

/**
 * Whether a presented secret is the configured one, in constant time.
 *
 * @category checking
 * @since 0.1.0
 */
export const secretMatches = (configured: Redacted.Redacted<string>, presented: string): boolean =>
  Crypto.timingSafeEqual(sha256(Redacted.value(configured)), sha256(presented))

// internal

const sha256 = (text: string): Buffer => Crypto.createHash("sha256").update(text, "utf8").digest()
