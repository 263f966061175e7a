/**
 * The database the commands work on: pgflows' configuration from the environment (the same
 * variables as the library: `PGFLOWS_DATABASE_URL` or `DATABASE_URL`, `PGFLOWS_SCHEMA`, ...), with
 * `--database-url` in its place when given; the pool (`PgDatabase`, which says what to do when it
 * cannot connect); and the client (`Pgflows` with no workflows registered, enough to read and steer
 * runs).
 *
 * Commands that only read or steer runs check the migrations instead of applying them
 * (`migrations: "verify"`), so pointing one at the wrong database writes nothing there.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as DatabaseUrl from "pgflows/DatabaseUrl"
import * as PgDatabase from "pgflows/PgDatabase"
import * as Pgflows from "pgflows/Pgflows"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import type * as PgMigrations from "pgflows/PgMigrations"
import { fail } from "./exit.ts"

export interface Target {
  /** `--database-url`, when given. */
  readonly databaseUrl: Option.Option<string>
  /** What to do about migrations; default: what `PGFLOWS_MIGRATIONS` says. */
  readonly migrations?: PgflowsConfig.MigrationsMode | undefined
}

/** The configuration: the environment's, with the command line's URL and migrations mode in place. */
export const config = (target: Target) =>
  Effect.gen(function*() {
    const fromEnv = yield* PgflowsConfig.fromEnv
    const url = Option.isSome(target.databaseUrl)
      ? yield* Result.match(DatabaseUrl.parse(target.databaseUrl.value, "--database-url"), {
        onFailure: (reason) => Effect.fail(fail(`--database-url ${reason}`, 2)),
        onSuccess: Effect.succeed
      })
      : fromEnv.databaseUrl
    return {
      ...fromEnv,
      databaseUrl: url,
      ...(target.migrations === undefined ? {} : { migrations: target.migrations })
    } satisfies PgflowsConfig.PgflowsConfig
  })

export const layerConfig = (target: Target) => Layer.effect(PgflowsConfig.PgflowsConfig, config(target))

/** The pool on the configured database (a few connections: one command at a time). */
export const layerDatabase = (target: Target, maxConnections = 4) =>
  PgDatabase.layer({ maxConnections }).pipe(Layer.provideMerge(layerConfig(target)))

/** The client, for commands that read and steer runs: no workflow registered, migrations verified. */
export const layerClient = (target: Omit<Target, "migrations">) =>
  Pgflows.layerPg({ workflows: [] }).pipe(
    Layer.provideMerge(layerDatabase({ ...target, migrations: "verify" }))
  )

/** A package installed next to this one, or undefined when it is not. */
export const optional = async <A>(load: () => Promise<A>): Promise<A | undefined> => {
  try {
    return await load()
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND") return undefined
    throw error
  }
}

/** Every migration set installed: pgflows' own, then those of @pgflows/pg-durable and @pgflows/server. */
export const migrationSets = Effect.promise(async () => {
  const PgMigrationsModule = await import("pgflows/PgMigrations")
  const durable = await optional(() => import("@pgflows/pg-durable/PgDurableMigrations"))
  const server = await optional(() => import("@pgflows/server/ServerMigrations"))
  return [PgMigrationsModule.core, durable?.set, server?.set].filter((set): set is PgMigrations.MigrationSet =>
    set !== undefined
  )
})
