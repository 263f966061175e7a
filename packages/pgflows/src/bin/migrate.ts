#!/usr/bin/env node
/**
 * `pgflows-migrate`: applies pgflows' migrations to the configured database and schema, for a deploy
 * step that runs with a role allowed to create tables, so that the application itself can run with
 * `PGFLOWS_MIGRATIONS=verify` (or `off`) and only USAGE and DML rights. The migrations of the pgflows
 * packages installed next to it (`@pgflows/pg-durable`, `@pgflows/server`) are applied too.
 *
 * Configured like the library: `PGFLOWS_DATABASE_URL` (or `DATABASE_URL`), `PGFLOWS_SCHEMA`, ...
 * `--verify` checks instead of applying (exit 1 when a migration is missing). Exit status 0 on
 * success, 1 on any failure, with a message that says what to do; 2 for a bad argument.
 */
import * as Effect from "effect/Effect"
import * as DatabaseUrl from "../DatabaseUrl.ts"
import * as PgDatabase from "../PgDatabase.ts"
import * as PgflowsConfig from "../PgflowsConfig.ts"
import * as PgMigrations from "../PgMigrations.ts"

const args = process.argv.slice(2)
const unknown = args.filter((arg) => arg !== "--verify" && arg !== "--help")
if (args.includes("--help") || unknown.length > 0) {
  const usage = "usage: pgflows-migrate [--verify]\n" +
    "  applies pgflows' migrations to PGFLOWS_DATABASE_URL (or DATABASE_URL), schema PGFLOWS_SCHEMA (default pgflows);\n" +
    "  --verify only checks that none is missing.\n"
  process.stderr.write(unknown.length > 0 ? `pgflows-migrate: unknown argument ${unknown[0]}\n${usage}` : usage)
  process.exit(unknown.length > 0 ? 2 : 0)
}
const verifyOnly = args.includes("--verify")

/** The migration set a package installed next to pgflows exports, if it is installed. */
const installed = async (specifier: string): Promise<PgMigrations.MigrationSet | undefined> => {
  try {
    const module = (await import(specifier)) as { readonly set?: PgMigrations.MigrationSet }
    return module.set
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND") return undefined
    throw error
  }
}
const sets = [
  PgMigrations.core,
  ...(await Promise.all([
    installed("@pgflows/pg-durable/PgDurableMigrations"),
    installed("@pgflows/server/ServerMigrations")
  ]))
    .filter((set): set is PgMigrations.MigrationSet => set !== undefined)
]

const main = Effect.gen(function*() {
  const config = yield* PgflowsConfig.current
  const where = `schema "${config.schema}" at ${
    config.databaseUrl === undefined ? "?" : DatabaseUrl.describe(config.databaseUrl)
  }`
  if (verifyOnly) {
    yield* Effect.forEach(sets, PgMigrations.check, { discard: true })
    const count = sets.reduce((sum, set) => sum + set.migrations(config.schema).length, 0)
    return `pgflows-migrate: ${where} has every migration (${count}, of ${sets.map((set) => set.name).join(", ")})`
  }
  const lines: Array<string> = []
  for (const set of sets) {
    const applied = yield* PgMigrations.apply(set)
    const label = set === PgMigrations.core ? "" : `${set.name} `
    lines.push(
      applied.length === 0
        ? `pgflows-migrate: ${label}${where} is up to date`
        : `pgflows-migrate: applied to ${where}: ${applied.map(([id, name]) => `${label}${id} (${name})`).join(", ")}`
    )
  }
  return lines.join("\n")
}).pipe(
  Effect.provide(PgDatabase.layer({ maxConnections: 1 })),
  Effect.provide(PgflowsConfig.layerDefault)
)

Effect.runPromise(Effect.result(main)).then((result) => {
  if (result._tag === "Success") {
    process.stdout.write(`${result.success}\n`)
    process.exit(0)
  }
  process.stderr.write(`pgflows-migrate: ${result.failure.message}\n`)
  process.exit(1)
}, (defect) => {
  process.stderr.write(`pgflows-migrate: ${String(defect)}\n`)
  process.exit(1)
})
