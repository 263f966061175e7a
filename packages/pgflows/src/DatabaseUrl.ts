/**
 * PostgreSQL connection URLs, parsed once and kept `Redacted`.
 *
 * Accepts `postgres://` and `postgresql://`, and normalises the driver-qualified schemes other tools
 * use (`postgresql+psycopg://`, `postgres+asyncpg://`, ...) to `postgresql://`, so one
 * `DATABASE_URL` serves a Python service and this one. The password never appears in messages or
 * logs: the URL itself is `Redacted`, and `describe` prints everything else.
 *
 * @since 0.1.0
 */
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"

/**
 * A parsed, normalised connection URL.
 *
 * @category models
 * @since 0.1.0
 */
export interface DatabaseUrl {
  /** The normalised URL (`postgresql://...`), password included. */
  readonly url: Redacted.Redacted<string>
  readonly host: string
  readonly port: number
  readonly database: string | undefined
  readonly user: string | undefined
  readonly password: Redacted.Redacted<string> | undefined
  /** Where the URL came from (the variable, or the option written in code), for messages. */
  readonly source: string | undefined
}

const scheme = /^(postgres|postgresql)(\+[a-z0-9_]+)?:\/\//i

/**
 * Parses `input`; the failure is a sentence without the password.
 *
 * @category constructors
 * @since 0.1.0
 */
export const parse = (input: string, source?: string): Result.Result<DatabaseUrl, string> => {
  const trimmed = input.trim()
  if (trimmed.length === 0) return Result.fail("is empty; expected postgres://user:password@host:5432/database")
  const match = scheme.exec(trimmed)
  if (match === null) {
    const shown = /^[a-z][a-z0-9+.-]*:/i.exec(trimmed)?.[0] ?? "(no scheme)"
    return Result.fail(
      `has scheme ${shown} but must start with postgres:// or postgresql:// ` +
        "(driver forms such as postgresql+psycopg:// are accepted too)"
    )
  }
  const normalised = `postgresql://${trimmed.slice(match[0].length)}`
  let parsed: URL
  try {
    parsed = new URL(normalised)
  } catch {
    return Result.fail(`is not a valid URL (${mask(trimmed)}); expected postgres://user:password@host:5432/database`)
  }
  const socketHost = parsed.searchParams.get("host") ?? undefined
  const host = parsed.hostname !== "" ? parsed.hostname.replace(/^\[|\]$/g, "") : socketHost
  if (host === undefined || host === "") {
    return Result.fail(`has no host (${mask(trimmed)}); expected postgres://user:password@host:5432/database`)
  }
  const port = parsed.port === "" ? 5432 : Number(parsed.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return Result.fail(`has port ${parsed.port}, which is not between 1 and 65535`)
  }
  let database: string | undefined
  let user: string | undefined
  let password: string | undefined
  try {
    database = parsed.pathname.length > 1 ? decodeURIComponent(parsed.pathname.slice(1)) : undefined
    user = parsed.username !== "" ? decodeURIComponent(parsed.username) : undefined
    password = parsed.password !== "" ? decodeURIComponent(parsed.password) : undefined
  } catch {
    return Result.fail(`has a badly percent-encoded part (${mask(trimmed)})`)
  }
  return Result.succeed({
    url: Redacted.make(normalised, { label: "DatabaseUrl" }),
    host,
    port,
    database,
    user,
    password: password === undefined ? undefined : Redacted.make(password, { label: "DatabaseUrl.password" }),
    source
  })
}

/**
 * `postgresql://user@host:port/database`, without the password, for logs and errors.
 *
 * @category utils
 * @since 0.1.0
 */
export const describe = (url: DatabaseUrl): string =>
  `postgresql://${url.user === undefined ? "" : `${url.user}@`}${url.host}:${url.port}/${url.database ?? ""}`

/** Replaces the password of a URL-looking string with `***`. */
const mask = (input: string): string => input.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@")
