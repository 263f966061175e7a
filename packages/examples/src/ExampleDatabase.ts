/**
 * The database the runnable examples use (`npm start`, `npm run example:sre`, `npm run
 * example:push`): the one the environment names (`DATABASE_URL` or `PGFLOWS_DATABASE_URL`), else an
 * embedded PostgreSQL in a temporary directory that lives as long as the scope, each step said on
 * the example's own output.
 */
import { EmbeddedServer } from "@pgflows/testing"
import { Effect } from "effect"
import type * as Redacted from "effect/Redacted"
import { DatabaseUrl, PgflowsConfig } from "pgflows"

/**
 * The URL of the database, saying where it comes from with `say`; an embedded server started here
 * is stopped (and its data directory removed) when the scope closes.
 */
export const url = <E, R>(say: (line: string) => Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const config = yield* PgflowsConfig.fromEnv
    if (config.databaseUrl !== undefined) {
      yield* say(`using ${DatabaseUrl.describe(config.databaseUrl)} (from the environment)`)
      return config.databaseUrl.url as Redacted.Redacted<string>
    }
    yield* say("no DATABASE_URL: starting an embedded PostgreSQL in a temporary directory...")
    // Registered before the server, so it runs after the server's own finalizer has stopped it.
    let started = false
    yield* Effect.addFinalizer(() =>
      started ? say("embedded PostgreSQL stopped, its data directory removed").pipe(Effect.ignore) : Effect.void
    )
    const server = yield* EmbeddedServer.start()
    started = true
    yield* say(`embedded PostgreSQL ${server.version} is up on ${server.host}:${server.port} (pid ${server.pid})`)
    return server.url
  })
