/**
 * `npm start`: runs a small program through the real stack. With no `DATABASE_URL` (or
 * `PGFLOWS_DATABASE_URL`) it starts an embedded PostgreSQL 18 in a temporary directory; it connects
 * with `@effect/sql-pg`, prints what it did and the server's version, and shuts everything down.
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { EmbeddedServer } from "@pgflows/testing"
import { Console, Effect } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseUrl, PgflowsConfig } from "pgflows"

const say = (line: string) => Console.log(`[demo] ${line}`)

/** The database to use: the configured one, or an embedded server that lives as long as the scope. */
const database = Effect.gen(function*() {
  const config = yield* PgflowsConfig.fromEnv
  if (config.databaseUrl !== undefined) {
    yield* say(`using ${DatabaseUrl.describe(config.databaseUrl)} (from the environment)`)
    return config.databaseUrl.url
  }
  yield* say("no DATABASE_URL: starting an embedded PostgreSQL in a temporary directory...")
  // Registered before the server, so it runs after the server's own finalizer has stopped it.
  let started = false
  yield* Effect.addFinalizer(() =>
    started ? say("embedded PostgreSQL stopped, its data directory removed") : Effect.void
  )
  const server = yield* EmbeddedServer.start()
  started = true
  yield* say(`embedded PostgreSQL ${server.version} is up on ${server.host}:${server.port} (pid ${server.pid})`)
  return server.url
})

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ version: string; database: string; user: string }>`
    SELECT version() AS version, current_database() AS database, current_user AS user`
  yield* say(`connected with @effect/sql-pg to database "${row?.database}" as "${row?.user}"`)
  yield* say(`server version: ${row?.version}`)
})

const main = Effect.gen(function*() {
  const url = yield* database
  yield* program.pipe(Effect.provide(PgClient.layer({ url })))
  yield* say("done, shutting down")
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
