// The consumer test's database, from the installed @pgflows/testing: the server of DATABASE_URL when
// it is set, else an embedded PostgreSQL 18. It creates an empty database there, prints
// `{"url": ...}` as one line, and on SIGTERM drops the database and stops a server it started.
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { DatabaseServer } from "@pgflows/testing"
import { Console, Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"

const onServer = (url: Redacted.Redacted<string>, statement: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(statement)
  }).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1 })))

const main = Effect.gen(function*() {
  const server = yield* DatabaseServer.acquire({ docker: false })
  const name = `pgflows_consumer_${Crypto.randomBytes(4).toString("hex")}`
  yield* Effect.acquireRelease(
    onServer(server.url, `CREATE DATABASE ${name}`),
    () => Effect.ignore(onServer(server.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  )
  const url = new URL(Redacted.value(server.url))
  url.pathname = `/${name}`
  yield* Console.log(JSON.stringify({ url: url.toString(), description: server.description }))
  return yield* Effect.never
})

main.pipe(Effect.scoped, NodeRuntime.runMain)
