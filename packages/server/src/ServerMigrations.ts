/**
 * The server's table, as migrations of this package, applied by Effect's SQL migrator in pgflows'
 * schema under an advisory lock, with their own migrations table (`<schema>.server_migrations`).
 * `run` applies pgflows' own migrations first (they create the schema).
 *
 * 1. `step_calls`: one row per call of the step endpoint, keyed by the pg_durable instance id and
 *    the call's result key (the headers the compiled graph sends), with the step, a hash of the
 *    input, the status (`running`, `completed`, `failed`), the output or the error as the endpoint
 *    answered it, the attempts, and the claim of the request running it (`lease_owner`,
 *    `lease_expires_at`, renewed while the step runs, so a call whose server died can be taken
 *    over). A repeated request gets the recorded answer and never runs a completed step again.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Migrator from "effect/sql/Migrator"
import type * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Identifier from "pgflows/Identifier"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import * as PgMigrations from "pgflows/PgMigrations"

/**
 * The migrations of a schema, in order.
 *
 * @category models
 * @since 0.1.0
 */
export const migrations = (
  schema: Identifier.Identifier
): ReadonlyArray<readonly [id: number, name: string, statements: ReadonlyArray<string>]> => {
  const s = Identifier.quote(schema)
  return [
    [1, "step_calls", [
      `CREATE TABLE ${s}.step_calls (
  instance_id text NOT NULL,
  result_key text NOT NULL,
  step text NOT NULL,
  input_hash text NOT NULL,
  status text NOT NULL CONSTRAINT step_calls_status CHECK (status IN ('running', 'completed', 'failed')),
  output jsonb,
  error jsonb,
  attempts integer NOT NULL DEFAULT 0,
  executions integer NOT NULL DEFAULT 1,
  lease_owner text,
  lease_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  PRIMARY KEY (instance_id, result_key)
)`,
      `CREATE INDEX step_calls_created ON ${s}.step_calls (created_at)`
    ]]
  ]
}

/**
 * The table of this package's applied migrations, in the configured schema.
 *
 * @category models
 * @since 0.1.0
 */
export const table = (schema: Identifier.Identifier): string => `${schema}.server_migrations`

/**
 * The server's migrations, as a set `PgMigrations` applies after pgflows' own.
 *
 * @category models
 * @since 0.1.0
 */
export const set: PgMigrations.MigrationSet = { name: "server", table, migrations }

/**
 * Applies pgflows' migrations, then the pending server's migrations, under an advisory lock.
 * Returns the server's migrations it applied.
 *
 * @category running
 * @since 0.1.0
 */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError,
  SqlClient.SqlClient
> = PgMigrations.apply(set)

/**
 * What a layer does at startup, as `PgflowsConfig.migrations` says (`auto`, `verify`, `off`).
 *
 * @category running
 * @since 0.1.0
 */
export const prepare = PgMigrations.prepareSet(set)

/**
 * Runs the migrations when built, and provides nothing.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  never,
  Migrator.MigrationError | SqlError | PgflowsConfig.PgflowsConfigError,
  SqlClient.SqlClient
> = Layer.effectDiscard(run).pipe(Layer.provide(PgflowsConfig.layerDefault))
