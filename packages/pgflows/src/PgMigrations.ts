/**
 * The database schema of pgflows on PostgreSQL, as numbered migrations applied by Effect's SQL
 * migrator (`effect/sql/Migrator`, the machinery behind `PgMigrator`) into the configured schema.
 *
 * `run` takes a transaction-scoped advisory lock first, so two processes that start together apply
 * each migration once, and it is idempotent: a restart applies nothing. `PgStore.layer` and
 * `PgWorkQueue.layer` call `prepare` when they are built, which does what `PgflowsConfig.migrations`
 * says (`auto`: `run`; `verify`: `verify`; `off`: nothing); `layer` runs them alone, and the
 * `pgflows-migrate` command (`bin/migrate.ts`) is the same for a deploy pipeline.
 *
 * Privileges: `run` needs CREATE on the database (for `CREATE SCHEMA IF NOT EXISTS`) or on an
 * existing schema; `verify` and the engine itself need only USAGE on the schema, SELECT, INSERT,
 * UPDATE and DELETE on its tables, USAGE on its sequence and EXECUTE on its functions.
 *
 * Migrations, one concern each:
 *
 * 1. `queue`: the built-in queue (`queues`, `queue_messages`, `queue_archive`) with pgmq's semantics;
 * 2. `runs`: runs and their journal (`runs`, `steps`);
 * 3. `enqueue_workflow`: the SQL entry point `<schema>.enqueue_workflow(name, input, id)` and the
 *    `settings` row it reads (queue and channel names);
 * 4. `schedules`: the built-in and pg_durable schedulers' schedules;
 * 5. `primitives`: signals, events, and the counters and deadlines of runs;
 * 6. `trace`: the span context that started a run;
 * 7. `workers`: the running workers and the workflows each serves, so that a run no worker can take
 *    is shown as waiting for one instead of being failed;
 * 8. `versions`: the version a run started on, the run a fork came from, which journal entries
 *    transaction steps wrote, and `enqueue_workflow` with a version (by default the newest a live
 *    worker serves);
 * 9. `reads`: the index of runs by workflow and version, and the tables of failed and of cancelled
 *    runs (`failed_runs`, `cancelled_runs`), so that the client's reads stay bounded by what they
 *    return whatever the history (docs/ARCHITECTURE.md, "Reads"). On a large `runs` table, building
 *    the index and filling the tables takes a while under a lock that blocks writes to `runs`.
 * 10. `flow_control`: a run's concurrency key and priority (for the named queues of `FlowQueue`),
 *    the table `flow_slots` of the runs that hold a slot of a limited queue, `flow_starts` of the
 *    starts of a rate-limited queue's runs within its period, and `run_dedup`, the
 *    latest run started with each deduplication key (docs/ARCHITECTURE.md, "Queues and flow
 *    control"). Constant defaults: adding the columns rewrites no table.
 * 11. `retention`: the indexes a purge deletes by (docs/ARCHITECTURE.md, "Retention"): the signals of
 *    a run, the archived queue messages of a run, and the deduplication keys of a run. On a large
 *    archive or signals table, building them blocks writes to that table for a while.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Identifier from "./Identifier.ts"
import { newestServed, workflowKey } from "./internal/pgVersions.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { MigrationsMissing } from "./PgflowsError.ts"

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
    [1, "queue", [
      `CREATE SEQUENCE ${s}.queue_msg_id_seq`,
      `CREATE TABLE ${s}.queues (
  name text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE TABLE ${s}.queue_messages (
  msg_id bigint PRIMARY KEY DEFAULT nextval('${schema}.queue_msg_id_seq'),
  queue text NOT NULL,
  read_ct integer NOT NULL DEFAULT 0,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  vt timestamptz NOT NULL,
  message jsonb NOT NULL
)`,
      `CREATE INDEX queue_messages_visible ON ${s}.queue_messages (queue, vt)`,
      `CREATE TABLE ${s}.queue_archive (
  msg_id bigint PRIMARY KEY,
  queue text NOT NULL,
  read_ct integer NOT NULL,
  enqueued_at timestamptz NOT NULL,
  vt timestamptz NOT NULL,
  message jsonb NOT NULL,
  archived_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE INDEX queue_archive_queue ON ${s}.queue_archive (queue, archived_at DESC)`
    ]],
    [2, "runs", [
      `CREATE TABLE ${s}.runs (
  id text PRIMARY KEY,
  workflow text NOT NULL,
  status text NOT NULL CONSTRAINT runs_status CHECK (
    status IN ('pending', 'running', 'suspended', 'completed', 'failed', 'cancelled')),
  input jsonb NOT NULL,
  output jsonb,
  error jsonb,
  executions integer NOT NULL DEFAULT 0,
  recoveries integer NOT NULL DEFAULT 0,
  lease_owner text,
  lease_expires_at timestamptz,
  wake_at timestamptz,
  parent_id text,
  msg_id bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  completed_at timestamptz
) WITH (fillfactor = 80)`,
      `-- Listing, newest first (keyset pagination). No index covers a column that claims and completions
-- update, so those updates stay HOT.
CREATE INDEX runs_created ON ${s}.runs (created_at DESC, id DESC)`,
      `CREATE INDEX runs_workflow_created ON ${s}.runs (workflow, created_at DESC, id DESC)`,
      `CREATE INDEX runs_parent ON ${s}.runs (parent_id) WHERE parent_id IS NOT NULL`,
      // No foreign key to runs: a journal entry is only ever written in a statement that locks its
      // run's row and checks the claim's token, and the check of a foreign key would cost every step.
      `CREATE TABLE ${s}.steps (
  run_id text NOT NULL,
  key text NOT NULL,
  name text NOT NULL,
  input_hash text NOT NULL,
  status text NOT NULL CONSTRAINT steps_status CHECK (
    status IN ('running', 'retrying', 'waiting', 'completed', 'failed')),
  output jsonb,
  error jsonb,
  attempts integer NOT NULL DEFAULT 1,
  wake_at timestamptz,
  started_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  PRIMARY KEY (run_id, key)
)`
    ]],
    [3, "enqueue_workflow", [
      `CREATE TABLE ${s}.settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  queue text NOT NULL,
  notify_channel text NOT NULL
)`,
      `CREATE FUNCTION ${s}.enqueue_workflow(name text, input jsonb, id text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  run_id text := coalesce(id, gen_random_uuid()::text);
  msg bigint;
  cfg record;
BEGIN
  IF name IS NULL OR name = '' THEN
    RAISE EXCEPTION 'enqueue_workflow: the workflow name is missing';
  END IF;
  SELECT queue, notify_channel INTO cfg FROM ${s}.settings;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'enqueue_workflow: no settings row; start pgflows once against this database';
  END IF;
  INSERT INTO ${s}.runs (id, workflow, status, input, msg_id)
  VALUES (run_id, name, 'pending', coalesce(input, 'null'::jsonb), nextval('${schema}.queue_msg_id_seq'))
  ON CONFLICT ON CONSTRAINT runs_pkey DO NOTHING
  RETURNING msg_id INTO msg;
  IF msg IS NOT NULL THEN
    INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
    VALUES (msg, cfg.queue, now(), jsonb_build_object('run', run_id, 'workflow', name));
    PERFORM pg_notify(cfg.notify_channel, 'run');
  END IF;
  RETURN run_id;
END
$fn$`
    ]],
    [5, "primitives", [
      // Bumped by anything that should wake the run (a signal, a child's end): an execution that
      // saw an older value does not park, so no wake-up is lost between its check and its end.
      `ALTER TABLE ${s}.runs ADD COLUMN events integer NOT NULL DEFAULT 0`,
      `ALTER TABLE ${s}.runs ADD COLUMN deadline_at timestamptz`,
      `CREATE TABLE ${s}.signals (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id text NOT NULL,
  name text NOT NULL,
  payload jsonb NOT NULL,
  sent_at timestamptz NOT NULL DEFAULT now(),
  consumed_key text,
  consumed_at timestamptz
)`,
      `CREATE INDEX signals_pending ON ${s}.signals (run_id, name, id) WHERE consumed_key IS NULL`,
      `CREATE TABLE ${s}.events (
  run_id text NOT NULL,
  key text NOT NULL,
  value jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, key)
)`
    ]],
    [4, "schedules", [
      // The schedules of the built-in scheduler (fired by BuiltinScheduler.run) and of the pg_durable
      // scheduler (whose instance id is the handle); pg_cron keeps its own jobs in cron.job.
      `CREATE TABLE ${s}.schedules (
  name text PRIMARY KEY,
  scheduler text NOT NULL DEFAULT 'builtin' CONSTRAINT schedules_scheduler CHECK (
    scheduler IN ('builtin', 'pg_durable')),
  handle text,
  cron text NOT NULL,
  timezone text NOT NULL DEFAULT 'UTC',
  workflow text NOT NULL,
  input jsonb NOT NULL,
  paused boolean NOT NULL DEFAULT false,
  catch_up text NOT NULL DEFAULT 'latest' CONSTRAINT schedules_catch_up CHECK (catch_up IN ('skip', 'latest', 'all')),
  max_catch_up integer NOT NULL DEFAULT 10 CONSTRAINT schedules_max_catch_up CHECK (max_catch_up BETWEEN 1 AND 1000),
  last_tick timestamptz,
  next_tick timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
)`,
      `-- The due schedules in tick order: what every pass of a built-in scheduler reads.
CREATE INDEX schedules_due ON ${s}.schedules (next_tick) WHERE scheduler = 'builtin' AND NOT paused`
    ]],
    [6, "trace", [
      // The span context of the code that started the run (OpenTelemetry on), the parent of its first
      // execution's span.
      `ALTER TABLE ${s}.runs ADD COLUMN trace jsonb`
    ]],
    [7, "workers", [
      // Each running worker announces itself (and renews it about every third of a lease): which queue
      // it serves and which workflows it registers.
      `CREATE TABLE ${s}.workers (
  id text PRIMARY KEY,
  queue text NOT NULL,
  workflows text[] NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
)`
    ]],
    [8, "versions", [
      // Constant defaults: adding the columns rewrites no table, and every run recorded before is
      // version 0, the version of a definition without one. No index: claims and completions update
      // runs, and an index on these columns would stop those updates from being HOT.
      `ALTER TABLE ${s}.runs ADD COLUMN version integer NOT NULL DEFAULT 0`,
      `ALTER TABLE ${s}.runs ADD COLUMN forked_from text`,
      `ALTER TABLE ${s}.runs ADD COLUMN forked_at text`,
      `ALTER TABLE ${s}.steps ADD COLUMN transactional boolean NOT NULL DEFAULT false`,
      // Queue messages and worker announcements name a workflow version by one text, its key: the
      // name for version 0 (as before), else the name, chr(31) and the version.
      `DROP FUNCTION ${s}.enqueue_workflow(text, jsonb, text)`,
      `CREATE FUNCTION ${s}.enqueue_workflow(name text, input jsonb, id text DEFAULT NULL, version integer DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  run_id text := coalesce(id, gen_random_uuid()::text);
  run_version integer := version;
  msg bigint;
  cfg record;
BEGIN
  IF name IS NULL OR name = '' THEN
    RAISE EXCEPTION 'enqueue_workflow: the workflow name is missing';
  END IF;
  IF run_version < 0 THEN
    RAISE EXCEPTION 'enqueue_workflow: the version must not be negative';
  END IF;
  SELECT queue, notify_channel INTO cfg FROM ${s}.settings;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'enqueue_workflow: no settings row; start pgflows once against this database';
  END IF;
  IF run_version IS NULL THEN
    run_version := ${newestServed(s, "cfg.queue", "name")};
  END IF;
  INSERT INTO ${s}.runs (id, workflow, version, status, input, msg_id)
  VALUES (run_id, name, run_version, 'pending', coalesce(input, 'null'::jsonb), nextval('${schema}.queue_msg_id_seq'))
  ON CONFLICT ON CONSTRAINT runs_pkey DO NOTHING
  RETURNING msg_id INTO msg;
  IF msg IS NOT NULL THEN
    INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
    VALUES (msg, cfg.queue, now(), jsonb_build_object('run', run_id, 'workflow', ${
        workflowKey("name", "run_version")
      }));
    PERFORM pg_notify(cfg.notify_channel, 'run');
  END IF;
  RETURN run_id;
END
$fn$`
    ]],
    [9, "reads", [
      // Reads bounded by what they return, whatever the history (docs/ARCHITECTURE.md, "Reads"). No
      // index of runs covers a column that claims, heartbeats or completions update, so those stay
      // HOT: the list of one workflow version walks this index, and a list of one workflow merges its
      // versions' walks. It replaces runs_workflow_created, so a run's start writes as many index
      // entries as before.
      `CREATE INDEX runs_workflow_version_created ON ${s}.runs (workflow, version, created_at DESC, id DESC)`,
      `DROP INDEX ${s}.runs_workflow_created`,
      // The runs that failed and the runs that were cancelled, written with the transition or the
      // cancel that ends them and deleted by the retry or the resume that restarts them: the same
      // statements, never at a completion. Failed and cancelled runs are a small share of history;
      // these tables answer their lists, the dead letters and their counts.
      `CREATE TABLE ${s}.failed_runs (
  run_id text PRIMARY KEY,
  workflow text NOT NULL,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE INDEX failed_runs_created ON ${s}.failed_runs (created_at DESC, run_id DESC)`,
      `CREATE INDEX failed_runs_workflow_created ON ${s}.failed_runs (workflow, version, created_at DESC, run_id DESC)`,
      `CREATE INDEX failed_runs_failed ON ${s}.failed_runs (failed_at DESC, run_id DESC)`,
      `CREATE INDEX failed_runs_workflow_failed ON ${s}.failed_runs (workflow, version, failed_at DESC, run_id DESC)`,
      `CREATE TABLE ${s}.cancelled_runs (
  run_id text PRIMARY KEY,
  workflow text NOT NULL,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  cancelled_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE INDEX cancelled_runs_created ON ${s}.cancelled_runs (created_at DESC, run_id DESC)`,
      `CREATE INDEX cancelled_runs_workflow_created ON ${s}.cancelled_runs
  (workflow, version, created_at DESC, run_id DESC)`,
      `INSERT INTO ${s}.failed_runs (run_id, workflow, version, created_at, failed_at)
SELECT id, workflow, version, created_at, coalesce(completed_at, updated_at) FROM ${s}.runs WHERE status = 'failed'`,
      `INSERT INTO ${s}.cancelled_runs (run_id, workflow, version, created_at, cancelled_at)
SELECT id, workflow, version, created_at, coalesce(completed_at, updated_at) FROM ${s}.runs WHERE status = 'cancelled'`
    ]],
    [10, "flow_control", [
      // Set when a run of a named queue starts, never changed after: no index, so the updates of the
      // hot path stay HOT (docs/ARCHITECTURE.md, "Reads").
      `ALTER TABLE ${s}.runs ADD COLUMN concurrency_key text`,
      `ALTER TABLE ${s}.runs ADD COLUMN priority integer NOT NULL DEFAULT 0`,
      // A row per claim of a run of a limited queue, written by that claim. It holds a slot while its
      // run still has that claim's live lease (the run's row says so: nothing else writes here when a
      // run ends, parks or loses its lease); the queue's next claim deletes the rows that no longer do.
      `CREATE TABLE ${s}.flow_slots (
  run_id text PRIMARY KEY,
  queue text NOT NULL,
  key text,
  token text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE INDEX flow_slots_queue ON ${s}.flow_slots (queue, key)`,
      // The starts (first executions) of runs of a rate-limited queue, by bucket (the key, or '' for
      // the whole queue): a claim counts those within the period and deletes the older ones.
      `CREATE TABLE ${s}.flow_starts (
  queue text NOT NULL,
  key text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE INDEX flow_starts_queue ON ${s}.flow_starts (queue, key, started_at)`,
      // The latest run started with a deduplication key of a workflow: a start with the key returns
      // it while it is pending (or not ended, by choice), else replaces it. One row per key.
      `CREATE TABLE ${s}.run_dedup (
  workflow text NOT NULL,
  key text NOT NULL,
  run_id text NOT NULL,
  -- For a debounced run: the latest it may be pushed to (its first start and the maximum delay).
  until_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow, key)
)`
    ]],
    [11, "retention", [
      // A purge deletes a run's rows of every table by the run's id (docs/ARCHITECTURE.md,
      // "Retention"). steps, events, failed_runs and cancelled_runs have it as their key; these two
      // tables had no index on it. Neither column is ever updated.
      `CREATE INDEX signals_run ON ${s}.signals (run_id)`,
      // Only a failure archives a run's message (the message names its run): one entry per failure.
      `CREATE INDEX queue_archive_run ON ${s}.queue_archive ((message->>'run')) WHERE message ? 'run'`,
      // The deduplication key a purged run was the latest of (flow_slots has the run's id as its key).
      `CREATE INDEX run_dedup_run ON ${s}.run_dedup (run_id)`
    ]],
    [12, "runs_fillfactor", [
      // Room on each page of runs for every run's end (docs/PERFORMANCE.md, "The end is a HOT update"):
      // the rows of runs started together share pages and end within moments of each other, while
      // their old versions are still visible to concurrent snapshots, so at 80 about half of the ends
      // found no room and were written to another page with a new entry in each index of runs. At 50
      // they all stay on their page. It applies to pages written from now on.
      `ALTER TABLE ${s}.runs SET (fillfactor = 50)`
    ]],
    [13, "queue_by_workflow", [
      // A claim reads the due messages of each workflow version it serves by this index, so a backlog
      // of another workflow's due runs (one no worker serves) never slows it (docs/ARCHITECTURE.md,
      // "A worker fails only what it could have run"). A message's workflow key is written once,
      // with the message.
      `CREATE INDEX queue_messages_workflow ON ${s}.queue_messages (queue, (message->>'workflow'), vt, msg_id)`
    ]]
  ]
}

/**
 * A set of numbered migrations with a table of its own: pgflows' (`core`), and those packages built
 * on it add (`@pgflows/pg-durable`, `@pgflows/server`), applied after pgflows' own.
 *
 * @category models
 * @since 0.1.0
 */
export interface MigrationSet {
  /** Names the set in the advisory lock and in messages. */
  readonly name: string
  /** The table that records the set's applied migrations, in the schema. */
  readonly table: (schema: Identifier.Identifier) => string
  readonly migrations: (
    schema: Identifier.Identifier
  ) => ReadonlyArray<readonly [id: number, name: string, statements: ReadonlyArray<string>]>
}

/**
 * pgflows' own migrations.
 *
 * @category models
 * @since 0.1.0
 */
export const core: MigrationSet = { name: "pgflows", table: (schema) => `${schema}.migrations`, migrations }

/**
 * Applies the pending migrations of a set to the configured schema (pgflows' own first, creating
 * the schema when needed), under an advisory lock per set. Returns the migrations of `set` it
 * applied.
 *
 * @category running
 * @since 0.1.0
 */
export const apply = (set: MigrationSet): Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError,
  SqlClient.SqlClient
> =>
  Effect.gen(function*() {
    if (set !== core) yield* apply(core)
    const sql = yield* SqlClient.SqlClient
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    const loader = Effect.succeed(
      [...set.migrations(schema)].sort((a, b) => a[0] - b[0]).map(([id, name, statements]) =>
        // The migrator loads each migration (like a dynamic import) and then runs what it loaded.
        [
          id,
          name,
          Effect.succeed(Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
        ] as const
      )
    )
    const lock = set === core ? `pgflows.migrate:${schema}` : `pgflows.${set.name}.migrate:${schema}`
    return yield* sql.withTransaction(
      Effect.gen(function*() {
        yield* sql`SELECT pg_advisory_xact_lock(hashtext(${lock}))`
        if (set === core) yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${Identifier.quote(schema)}`)
        return yield* Migrator.make({})({ loader, table: set.table(schema) })
      })
    )
  }).pipe(Effect.withSpan("PgMigrations.apply", { attributes: { "pgflows.migrations": set.name } }))

/**
 * Checks, without writing anything, that every migration of a set (and of pgflows' own) is applied
 * to the configured schema; fails with the missing ones.
 *
 * @category running
 * @since 0.1.0
 */
export const check = (set: MigrationSet): Effect.Effect<void, MigrationsMissing | SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    if (set !== core) yield* check(core)
    const sql = yield* SqlClient.SqlClient
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    const wanted = [...set.migrations(schema)].sort((a, b) => a[0] - b[0])
    const [table] = yield* sql<{ exists: boolean }>`SELECT to_regclass(${set.table(schema)}) IS NOT NULL AS exists`
    const applied = table?.exists === true
      ? new Set(
        (yield* sql<{ id: number }>`SELECT migration_id AS id FROM ${sql(set.table(schema))}`).map((row) => row.id)
      )
      : new Set<number>()
    const missing = wanted.filter(([id]) => !applied.has(id)).map(([id, name]) =>
      set === core ? `${id} (${name})` : `${set.name} ${id} (${name})`
    )
    if (missing.length > 0) return yield* new MigrationsMissing({ schema, missing })
  }).pipe(Effect.withSpan("PgMigrations.check", { attributes: { "pgflows.migrations": set.name } }))

/**
 * What the layers do at startup for a set, as `PgflowsConfig.migrations` says: apply (`auto`),
 * check (`verify`) or nothing (`off`).
 *
 * @category running
 * @since 0.1.0
 */
export const prepareSet = (
  set: MigrationSet
): Effect.Effect<void, Migrator.MigrationError | MigrationsMissing | SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(
    PgflowsConfig.PgflowsConfig,
    (config): Effect.Effect<void, Migrator.MigrationError | MigrationsMissing | SqlError, SqlClient.SqlClient> =>
      config.migrations === "auto"
        ? Effect.asVoid(apply(set))
        : config.migrations === "verify"
        ? check(set)
        : Effect.void
  )

/**
 * Applies pgflows' pending migrations (`apply(core)`). Returns the migrations it applied.
 *
 * @category running
 * @since 0.1.0
 */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError,
  SqlClient.SqlClient
> = apply(core)

/**
 * Checks pgflows' own migrations (`check(core)`).
 *
 * @category running
 * @since 0.1.0
 */
export const verify: Effect.Effect<void, MigrationsMissing | SqlError, SqlClient.SqlClient> = check(core)

/**
 * `prepareSet(core)`: what `PgStore` and `PgWorkQueue` do at startup.
 *
 * @category running
 * @since 0.1.0
 */
export const prepare: Effect.Effect<
  void,
  Migrator.MigrationError | MigrationsMissing | SqlError,
  SqlClient.SqlClient
> = prepareSet(core)

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
