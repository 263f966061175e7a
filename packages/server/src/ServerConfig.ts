/**
 * The server's settings, written in code (`PgflowsServer.layer({ ... })`) or read from the
 * environment by `ServerConfig.fromEnv` (through Effect's `Config`, so any `ConfigProvider` works):
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `PGFLOWS_SERVER_TOKENS` | none | bearer tokens of the REST API: `[name=]read:<token>,[name=]admin:<token>`, each of 16 printable ASCII characters or more |
 * | `PGFLOWS_SERVER_AUTH` | `tokens` | `none` turns the REST API's authentication off (it must be said explicitly); otherwise `PGFLOWS_SERVER_TOKENS` is required |
 * | `PGFLOWS_STEP_SECRET` | none | the shared secret compiled graphs send to the step endpoint (which refuses every call without one configured) |
 * | `PGFLOWS_STEP_SECRET_HEADER` | `X-Pgflows-Step-Secret` | the header that carries it |
 * | `PGFLOWS_STEP_DEADLINE` | `25 seconds` | how long all attempts of one step call may take together (keep it under the binding's timeout, 30 seconds by default) |
 * | `PGFLOWS_SERVER_MAX_BODY_BYTES` | `1048576` | largest request body |
 * | `PGFLOWS_SERVER_HOST` | `127.0.0.1` | where the standalone server listens (`0.0.0.0` for every interface) |
 * | `PGFLOWS_SERVER_PORT` | `8080` | its port |
 *
 * An empty variable counts as unset. Every bad value fails with a `ServerConfigError` naming the
 * variable (or option); a token or secret is never printed.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Auth from "./Auth.ts"

/**
 * A setting has a bad value: `setting` is the variable or option, `reason` what is wrong.
 *
 * @category errors
 * @since 0.1.0
 */
export class ServerConfigError extends Schema.TaggedError<ServerConfigError>()("ServerConfigError", {
  setting: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.setting}: ${this.reason}`
  }
}

/**
 * What the environment says (the steps and plugins are code, so they are not here).
 *
 * @category models
 * @since 0.1.0
 */
export interface Settings {
  readonly auth: Auth.Auth
  readonly stepSecret: Redacted.Redacted<string> | undefined
  readonly stepSecretHeader: string
  readonly stepDeadline: Duration.Duration
  readonly maxBodyBytes: number
  readonly host: string
  readonly port: number
}

/**
 * @category models
 * @since 0.1.0
 */
export const defaults = {
  stepSecretHeader: "X-Pgflows-Step-Secret",
  stepDeadline: Duration.seconds(25),
  stepLease: Duration.seconds(30),
  maxBodyBytes: 1024 * 1024,
  host: "127.0.0.1",
  port: 8080,
  openapiPath: "/openapi.json"
} as const

/**
 * Reads the settings from the current `ConfigProvider` (the environment by default).
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromEnv: Effect.Effect<Settings, ServerConfigError> = Effect.gen(function*() {
  const read = (variable: string) =>
    Effect.mapError(
      Config.option(Config.String(variable)),
      (error) => new ServerConfigError({ setting: variable, reason: `cannot be read: ${error.message}` })
    ).pipe(Effect.map((value) => Option.getOrUndefined(Option.filter(value, (text) => text.trim() !== ""))))
  const parsed = <A>(variable: string, parse: (raw: string) => Result.Result<A, string>) =>
    Effect.flatMap(read(variable), (raw) =>
      raw === undefined
        ? Effect.succeed(undefined)
        : Effect.mapError(
          Effect.fromResult(parse(raw.trim())),
          (reason) => new ServerConfigError({ setting: variable, reason })
        ))
  const mode = yield* parsed(
    "PGFLOWS_SERVER_AUTH",
    (raw) => raw === "none" || raw === "tokens" ? Result.succeed(raw) : Result.fail("must be tokens or none")
  )
  const tokens = yield* parsed("PGFLOWS_SERVER_TOKENS", Auth.parseTokens)
  if (mode === "none" && tokens !== undefined) {
    return yield* new ServerConfigError({
      setting: "PGFLOWS_SERVER_AUTH",
      reason: "is none, yet PGFLOWS_SERVER_TOKENS lists tokens: choose one"
    })
  }
  if (mode !== "none" && tokens === undefined) {
    return yield* new ServerConfigError({
      setting: "PGFLOWS_SERVER_TOKENS",
      reason: "is required: list the REST API's bearer tokens, or set PGFLOWS_SERVER_AUTH=none to turn checking off"
    })
  }
  const secret = yield* parsed("PGFLOWS_STEP_SECRET", (raw) => {
    const problem = Auth.secretProblem(raw)
    return problem === undefined ? Result.succeed(Redacted.make(raw)) : Result.fail(`the secret ${problem}`)
  })
  const settings: Settings = {
    auth: tokens === undefined ? Auth.none : Auth.tokens(tokens),
    stepSecret: secret,
    stepSecretHeader: (yield* parsed("PGFLOWS_STEP_SECRET_HEADER", headerName)) ?? defaults.stepSecretHeader,
    stepDeadline: (yield* parsed("PGFLOWS_STEP_DEADLINE", duration)) ?? defaults.stepDeadline,
    maxBodyBytes: (yield* parsed("PGFLOWS_SERVER_MAX_BODY_BYTES", (raw) => Result.flatMap(integer(raw), bodyLimit))) ??
      defaults.maxBodyBytes,
    host: (yield* read("PGFLOWS_SERVER_HOST"))?.trim() ?? defaults.host,
    port: (yield* parsed("PGFLOWS_SERVER_PORT", (raw) => Result.flatMap(integer(raw), port))) ?? defaults.port
  }
  return settings
})

/**
 * A header name (an HTTP token).
 *
 * @category validation
 * @since 0.1.0
 */
export const headerName = (raw: string): Result.Result<string, string> =>
  /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(raw) ? Result.succeed(raw) : Result.fail("is not a header name")

/**
 * A request body limit: a whole number of bytes from 1 KiB to 1 GiB.
 *
 * @category validation
 * @since 0.1.0
 */
export const bodyLimit = (value: number): Result.Result<number, string> =>
  Number.isInteger(value) && value >= 1024 && value <= 1024 * 1024 * 1024
    ? Result.succeed(value)
    : Result.fail("must be a whole number of bytes from 1024 to 1073741824")

/**
 * A positive duration (Effect's form, or a number of milliseconds).
 *
 * @category validation
 * @since 0.1.0
 */
export const duration = (raw: string): Result.Result<Duration.Duration, string> => {
  const parsed = /^\d+(\.\d+)?$/.test(raw)
    ? Option.some(Duration.millis(Number(raw)))
    : Duration.fromInput(raw as Duration.Input)
  return Option.match(Option.filter(parsed, (d) => Duration.toMillis(d) > 0), {
    onNone: () => Result.fail(`${JSON.stringify(raw)} is not a positive duration such as "25 seconds"`),
    onSome: Result.succeed
  })
}

// internal

const integer = (raw: string): Result.Result<number, string> =>
  /^\d+$/.test(raw) ? Result.succeed(Number(raw)) : Result.fail(`${JSON.stringify(raw)} is not a whole number`)

const port = (value: number): Result.Result<number, string> =>
  value >= 0 && value <= 65535 ? Result.succeed(value) : Result.fail("must be a port from 0 to 65535")
