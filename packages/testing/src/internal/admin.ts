/**
 * Server-level statements for tests: version, create and drop databases. Each opens one
 * short-lived connection.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Redacted from "effect/Redacted"
import type { SqlError } from "effect/sql/SqlError"

const databaseName = /^[a-z_][a-z0-9_]{0,62}$/

/** Checks a database name before it reaches SQL text. */
export const checkName = (name: string): string => {
  if (!databaseName.test(name)) throw new Error(`invalid database name ${JSON.stringify(name)}`)
  return name
}

/** `user@host:port/database`, never the password. */
export const describe = (url: Redacted.Redacted<string>): string => {
  try {
    const parsed = new URL(Redacted.value(url))
    return `${decodeURIComponent(parsed.username) || "(default user)"}@${parsed.hostname}:${parsed.port || "5432"}${
      parsed.pathname || "/"
    }`
  } catch {
    return "(unparseable URL)"
  }
}

/** The same server, another database. */
export const withDatabase = (url: Redacted.Redacted<string>, database: string): Redacted.Redacted<string> => {
  const parsed = new URL(Redacted.value(url))
  parsed.pathname = `/${encodeURIComponent(database)}`
  return Redacted.make(parsed.toString(), { label: database })
}

/** Runs `f` with a one-connection client on `url`, closed afterwards. */
export const use = <A, E>(
  url: Redacted.Redacted<string>,
  f: (sql: PgClient.PgClient) => Effect.Effect<A, E>
): Effect.Effect<A, E | SqlError> =>
  Effect.scoped(
    PgClient.makeClient({ url, connectTimeout: "5 seconds", applicationName: "pgflows-testing" }).pipe(
      Effect.flatMap(f),
      Effect.provide(Reactivity.layer)
    )
  )

export const serverVersion = (url: Redacted.Redacted<string>): Effect.Effect<string, SqlError> =>
  use(url, (sql) => Effect.map(sql<{ version: string }>`SELECT version() AS version`, (rows) => rows[0]?.version ?? ""))

export const createDatabase = (
  url: Redacted.Redacted<string>,
  name: string,
  template?: string
): Effect.Effect<void, SqlError> =>
  use(url, (sql) =>
    sql.unsafe(
      template === undefined
        ? `CREATE DATABASE ${checkName(name)}`
        : `CREATE DATABASE ${checkName(name)} TEMPLATE ${checkName(template)}`
    )).pipe(Effect.asVoid)

export const dropDatabase = (url: Redacted.Redacted<string>, name: string): Effect.Effect<void, SqlError> =>
  use(url, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${checkName(name)} WITH (FORCE)`)).pipe(Effect.asVoid)
