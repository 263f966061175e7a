/**
 * Reading errors from the database driver: an `SqlError` wraps a reason, which wraps the driver's
 * error, which may wrap a system error. These helpers walk that chain (`reason`, then `cause`).
 */

/** The errors of a chain of causes, outermost first (at most a few levels). */
const chain = (cause: unknown): ReadonlyArray<object> => {
  const found: Array<object> = []
  let current: unknown = cause
  for (let depth = 0; depth < 6 && typeof current === "object" && current !== null; depth++) {
    found.push(current)
    const next = current as { reason?: unknown; cause?: unknown }
    current = next.reason ?? next.cause
  }
  return found
}

/** The innermost message of the chain: the database's or the system's own words. */
export const innermostMessage = (cause: unknown): string | undefined => {
  let found: string | undefined
  for (const error of chain(cause)) {
    const message = (error as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) found = message
  }
  return found
}

/** The first `code` of the chain that `accept` takes: a SQLSTATE, or a system error such as `ECONNREFUSED`. */
export const errorCode = (cause: unknown, accept: (code: string) => boolean = () => true): string | undefined => {
  for (const error of chain(cause)) {
    const code = (error as { code?: unknown }).code
    if (typeof code === "string" && code.length > 0 && accept(code)) return code
  }
  return undefined
}

/** PostgreSQL's SQLSTATE in the chain, if the database answered with one. */
export const sqlState = (cause: unknown): string | undefined => errorCode(cause, (code) => /^[0-9A-Z]{5}$/.test(code))
