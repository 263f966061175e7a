/**
 * A stand-in for pg_durable, for tests and local development: **not pg_durable**. It runs compiled
 * graphs node by node in a PostgreSQL that has no pg_durable, following the behaviour pg_durable is
 * documented to have (`docs/PG_DURABLE.md` in the pgflows repository), so push mode can be tried,
 * tested and debugged on any PostgreSQL. Nothing in pgflows or in this package's other modules uses
 * it; production runs on pg_durable.
 *
 * - `install` creates a `df` schema with pg_durable's SQL API: the same function names, argument
 *   types, defaults and STRICTness (`df.start`, `df.seq`, `df.join`, `df.if`, `df.http`,
 *   `df.signal`, `df.status`, `df.result`, ...), so `PgDurableClient` and `SqlExporter` send their
 *   exact SQL, with its bind parameters, and PostgreSQL resolves it as it would against pg_durable.
 *   `df.start` stores the graph and returns an 8-hex id; nothing runs it until `execute` or the
 *   `worker` does. It refuses a database that has a `df` schema of its own (pg_durable's, say), and
 *   `uninstall` removes it again.
 * - `execute(id)` plays pg_durable's part for one instance: it walks the node tree `df.start`
 *   stored, running SQL nodes (after pg_durable's substitution of variables and captures; each its
 *   own autocommitted statement; columns read back as pg_durable reads them, `numeric` as text,
 *   `json` as JSON, while arrays, `bytea` and `interval` fail the node), joins
 *   (branches at once), races, branches, loops with breaks, signal waits and `df.http` calls (real
 *   requests), records each node in `df.nodes` and ends the instance `completed` with its root's
 *   result, `failed`, or `cancelled` when `df.cancel` was called meanwhile.
 * - `worker()` does what pg_durable's background worker does: it picks up `pending` instances and
 *   executes them; `layer()` installs the schema and runs the worker while the layer lives.
 *
 * **How it differs from pg_durable, on purpose**
 *
 * - Nothing is durable: a run lives in the process that executes it. If that process stops, the
 *   instance stays `running`; `execute(id)` runs it again from its first node.
 * - Sleeps end at once (with pg_durable's result), schedules (`df.wait_for_schedule`) are not run,
 *   loop iterations have no one-second floor, and a loop fails after 100 iterations (pg_durable:
 *   100 000) unless `maxIterations` says otherwise.
 * - `df.http` may call any URL, loopback included (released pg_durable builds reach only Azure
 *   service domains), and a race's loser is interrupted rather than left running.
 * - Nodes are recorded as they end, not while they run; roles, `pg_durable.database`, retention and
 *   the engine's execution history are not modelled (`df.instance_executions` reports one
 *   execution).
 *
 * **Gotchas**
 *
 * - With the stand-in installed, `PgDurableClient.pgDurableAvailable` is true (it finds `df.start`).
 *   To tell the real pg_durable, use `PgDurableClient.detect` (`extension` is true only for the
 *   extension) or `isInstalled` here.
 * - A `df` schema can belong to one of them only: `uninstall` the stand-in before
 *   `CREATE EXTENSION pg_durable`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as SqlClient from "effect/sql/SqlClient"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { InstanceNotFound } from "./PgDurableError.ts"

// ---------------------------------------------------------------------------------------------------
// The stand-in schema
// ---------------------------------------------------------------------------------------------------

/**
 * What the stand-in's `df.version()` answers.
 *
 * @category constants
 * @since 0.1.0
 */
export const version = "0.0.0-harness (pgflows PgDurableHarness, not pg_durable)"

/** The comment on schema `df` that marks it as the stand-in's. */
const marker = "pgflows PgDurableHarness: a stand-in for the SQL API of pg_durable, not pg_durable"

const statements: ReadonlyArray<string> = [
  `CREATE SCHEMA df`,
  `COMMENT ON SCHEMA df IS '${marker}'`,
  `CREATE TABLE df.instances (
    id varchar(8) PRIMARY KEY, label text, root_node jsonb NOT NULL, status text NOT NULL DEFAULT 'pending',
    transaction_mode text, created_at timestamptz NOT NULL DEFAULT now(), completed_at timestamptz, result jsonb)`,
  `CREATE TABLE df.nodes (
    id varchar(8) NOT NULL, instance_id varchar(8) NOT NULL, node_type text NOT NULL, query text, result_name text,
    status text NOT NULL DEFAULT 'pending', result jsonb, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, id))`,
  `CREATE TABLE df.signals (instance_id text, name text, data text, sent_at timestamptz DEFAULT clock_timestamp())`,
  `CREATE TABLE df.vars (name text PRIMARY KEY, value text)`,
  `CREATE FUNCTION df.node(kind text, fields jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS
    $$ SELECT (jsonb_build_object('node_type', kind) || fields)::text $$`,
  `CREATE FUNCTION df.wrap(fut text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN fut ~ '^\\s*\\{' AND (fut::jsonb ? 'node_type') THEN fut::jsonb
      ELSE jsonb_build_object('node_type', 'SQL', 'query', fut) END $$`,
  `CREATE FUNCTION df.sql(query text) RETURNS text LANGUAGE sql STRICT AS $$ SELECT df.node('SQL', jsonb_build_object('query', query)) $$`,
  `CREATE FUNCTION df.seq(a text, b text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT df.node('THEN', jsonb_build_object('left_node', df.wrap(a), 'right_node', df.wrap(b))) $$`,
  `CREATE FUNCTION df.as(fut text, name text) RETURNS text LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'df.as: result name ''%'' is not a valid identifier — must match [a-zA-Z_][a-zA-Z0-9_]*', name;
      END IF;
      RETURN (df.wrap(fut) || jsonb_build_object('result_name', name))::text;
    END $$`,
  `CREATE FUNCTION df.join(a text, b text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT df.node('JOIN', jsonb_build_object('left_node', df.wrap(a), 'right_node', df.wrap(b))) $$`,
  `CREATE FUNCTION df.join3(a text, b text, c text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT df.node('JOIN', jsonb_build_object('left_node', df.wrap(a), 'right_node', df.wrap(b),
      'extra_nodes', jsonb_build_array(df.wrap(c)))) $$`,
  `CREATE FUNCTION df.race(a text, b text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT df.node('RACE', jsonb_build_object('left_node', df.wrap(a), 'right_node', df.wrap(b))) $$`,
  `CREATE FUNCTION df.if(condition text, then_branch text, else_branch text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT df.node('IF', jsonb_build_object('left_node', df.wrap(then_branch), 'right_node', df.wrap(else_branch),
      'condition_node', df.wrap(condition))) $$`,
  `CREATE FUNCTION df.if_rows(result_name text, then_branch text, else_branch text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT df.node('IF', jsonb_build_object('left_node', df.wrap(then_branch), 'right_node', df.wrap(else_branch),
      'query', jsonb_build_object('condition_type', 'result_has_rows', 'result_name', result_name)::text)) $$`,
  `CREATE FUNCTION df.loop(body text, condition text DEFAULT NULL) RETURNS text LANGUAGE sql AS
    $$ SELECT df.node('LOOP', jsonb_build_object('left_node', df.wrap(body))
      || CASE WHEN condition IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('condition_node', df.wrap(condition)) END) $$`,
  `CREATE FUNCTION df.break(value text DEFAULT NULL) RETURNS text LANGUAGE sql AS
    $$ SELECT df.node('BREAK', jsonb_build_object('query', jsonb_build_object('break_value', value)::text)) $$`,
  `CREATE FUNCTION df.sleep(seconds bigint) RETURNS text LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF seconds < 0 THEN RAISE EXCEPTION 'Sleep duration must be non-negative'; END IF;
      RETURN df.node('SLEEP', jsonb_build_object('query', seconds::text));
    END $$`,
  `CREATE FUNCTION df.wait_for_schedule(cron_expr text) RETURNS text LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF split_part(cron_expr, ' ', 5) ~ '(^|[,-])0([,/-]|$)' THEN
        RAISE EXCEPTION 'Invalid cron expression ''%'': day of week 0', cron_expr;
      END IF;
      RETURN df.node('WAIT_SCHEDULE', jsonb_build_object('query', jsonb_build_object('cron_expr', cron_expr)::text));
    END $$`,
  `CREATE FUNCTION df.wait_for_signal(name text, timeout_seconds int DEFAULT NULL) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      IF name IS NULL OR name = '' THEN RAISE EXCEPTION 'Signal name cannot be empty'; END IF;
      IF timeout_seconds <= 0 THEN RAISE EXCEPTION 'Timeout must be positive'; END IF;
      RETURN df.node('SIGNAL', jsonb_build_object('query',
        jsonb_build_object('signal_name', name, 'timeout_seconds', timeout_seconds)::text));
    END $$`,
  `CREATE FUNCTION df.http(url text, method text DEFAULT 'POST', body text DEFAULT NULL, headers jsonb DEFAULT NULL,
      timeout_seconds int DEFAULT 30) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      IF upper(method) NOT IN ('GET', 'POST', 'PUT', 'DELETE', 'PATCH') THEN RAISE EXCEPTION 'bad method'; END IF;
      IF timeout_seconds <= 0 THEN RAISE EXCEPTION 'timeout_seconds must be positive'; END IF;
      RETURN df.node('HTTP', jsonb_build_object('query', jsonb_build_object('url', url, 'method', upper(method),
        'body', body, 'headers', headers, 'timeout_seconds', timeout_seconds)::text));
    END $$`,
  `CREATE FUNCTION df.start(fut text, label text DEFAULT NULL, database text DEFAULT NULL,
      transaction_mode text DEFAULT 'caller') RETURNS text LANGUAGE plpgsql AS $$
    DECLARE id text := substr(md5(random()::text || clock_timestamp()::text), 1, 8);
    BEGIN
      IF lower(transaction_mode) NOT IN ('caller', 'new') THEN
        RAISE EXCEPTION 'invalid transaction_mode "%" for df.start(): expected ''caller'' or ''new''', transaction_mode;
      END IF;
      INSERT INTO df.instances (id, label, root_node, transaction_mode) VALUES (id, label, df.wrap(fut), transaction_mode);
      RETURN id;
    END $$`,
  `CREATE FUNCTION df.status(instance_id text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT status FROM df.instances WHERE id = instance_id $$`,
  `CREATE FUNCTION df.result(instance_id text) RETURNS text LANGUAGE sql STRICT AS
    $$ SELECT result::text FROM df.instances WHERE id = instance_id AND status = 'completed' $$`,
  `CREATE FUNCTION df.cancel(instance_id text, reason text DEFAULT 'Cancelled by user') RETURNS text LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM df.instances WHERE id = instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id;
      END IF;
      UPDATE df.instances SET status = 'cancelled' WHERE id = instance_id AND status IN ('pending', 'running');
      RETURN 'Instance ' || instance_id || ' cancelled: ' || reason;
    END $$`,
  // A signal is only recorded: the harness's wait takes the first one sent after it began, so one
  // sent earlier is lost, as pg_durable drops signals nobody waits for yet.
  `CREATE FUNCTION df.signal(instance_id text, signal_name text, signal_data text DEFAULT '{}') RETURNS text
    LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM df.instances WHERE id = instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id;
      END IF;
      INSERT INTO df.signals (instance_id, name, data) VALUES (instance_id, signal_name, signal_data);
      RETURN 'OK';
    END $$`,
  `CREATE FUNCTION df.setvar(name text, value text) RETURNS text LANGUAGE sql STRICT AS
    $$ INSERT INTO df.vars VALUES (name, value) ON CONFLICT (name) DO UPDATE SET value = excluded.value RETURNING 'OK' $$`,
  `CREATE FUNCTION df.instance_info(instance_id text) RETURNS TABLE (instance_id text, label text, function_name text,
      function_version text, current_execution_id bigint, status text, output text) LANGUAGE sql AS
    $$ SELECT i.id::text, i.label, 'durable-function', '1.0.0', 1::bigint, i.status, i.result::text
       FROM df.instances i WHERE i.id = $1 $$`,
  `CREATE FUNCTION df.instance_nodes(instance_id_param text) RETURNS TABLE (node_id varchar, node_type text, query text,
      result_name text, left_node varchar, right_node varchar, status text, result text, status_details text,
      inferred_status text, inferred_status_from_ancestor_id varchar, updated_at timestamptz) LANGUAGE sql AS
    $$ SELECT n.id, n.node_type, n.query, n.result_name, NULL::varchar, NULL::varchar, n.status, n.result::text,
         NULL::text, n.status, NULL::varchar, n.updated_at
       FROM df.nodes n WHERE n.instance_id = instance_id_param ORDER BY n.id $$`,
  `CREATE FUNCTION df.instance_executions(instance_id text, limit_count int DEFAULT 5) RETURNS TABLE (
      execution_id bigint, status text, event_count bigint, duration_ms bigint, output text) LANGUAGE plpgsql AS $$
    BEGIN
      IF limit_count < 1 THEN RAISE EXCEPTION 'limit_count must be at least 1'; END IF;
      RETURN QUERY SELECT 1::bigint,
          CASE i.status WHEN 'completed' THEN 'Completed' WHEN 'failed' THEN 'Failed' WHEN 'cancelled' THEN 'Terminated'
            ELSE 'Running' END,
          (SELECT count(*) FROM df.nodes n WHERE n.instance_id = i.id),
          (extract(epoch FROM coalesce(i.completed_at, now()) - i.created_at) * 1000)::bigint,
          i.result::text
        FROM df.instances i WHERE i.id = instance_executions.instance_id LIMIT limit_count;
    END $$`,
  `CREATE FUNCTION df.metrics() RETURNS TABLE (total_instances bigint, running_instances bigint,
      completed_instances bigint, failed_instances bigint, total_executions bigint, total_events bigint) LANGUAGE sql AS
    $$ SELECT count(*), count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'completed'),
         count(*) FILTER (WHERE status = 'failed'), count(*), 0::bigint FROM df.instances $$`,
  `CREATE FUNCTION df.list_instances(status_filter text, limit_count int, label_filter text, after_cursor text DEFAULT NULL)
    RETURNS TABLE (instance_id text, label text, function_name text, status text, execution_count bigint, output text,
      created_at timestamptz, completed_at timestamptz, next_cursor text) LANGUAGE sql AS $$
    WITH page AS (
      SELECT * FROM df.instances i
      WHERE (status_filter IS NULL OR i.status = status_filter) AND (label_filter IS NULL OR i.label = label_filter)
        AND (after_cursor IS NULL OR i.id > after_cursor)
      ORDER BY i.id LIMIT limit_count + 1
    ), shown AS (SELECT * FROM page ORDER BY id LIMIT limit_count)
    SELECT s.id::text, s.label, 'durable-function', s.status, 1::bigint, s.result::text, s.created_at, s.completed_at,
      CASE WHEN (SELECT count(*) FROM page) > limit_count THEN (SELECT max(id) FROM shown)::text END
    FROM shown s ORDER BY s.id $$`,
  `CREATE FUNCTION df.explain(input text) RETURNS text LANGUAGE sql STRICT AS $$
    SELECT CASE WHEN input ~ '^[0-9a-f]{8}$' THEN
        coalesce((SELECT 'instance ' || id || ' ' || status FROM df.instances WHERE id = input), 'Instance ''' || input || ''' not found')
      ELSE 'graph ' || (df.wrap(input)->>'node_type') END $$`,
  // Polls every 100 ms, as pg_durable's does.
  `CREATE FUNCTION df.await_instance(instance_id text, timeout_seconds int DEFAULT 30) RETURNS text LANGUAGE plpgsql STRICT AS $$
    DECLARE
      s text;
      deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_seconds);
    BEGIN
      LOOP
        SELECT i.status INTO s FROM df.instances i WHERE i.id = await_instance.instance_id;
        IF NOT FOUND THEN RAISE EXCEPTION 'Instance not found: %', instance_id; END IF;
        IF s IN ('completed', 'failed', 'cancelled') THEN RETURN s; END IF;
        IF clock_timestamp() >= deadline THEN
          RAISE EXCEPTION 'Timeout after %s waiting for instance %', timeout_seconds, instance_id;
        END IF;
        PERFORM pg_sleep(0.1);
      END LOOP;
    END $$`,
  `CREATE FUNCTION df.version() RETURNS text LANGUAGE sql AS $$ SELECT '${version}' $$`
]

/**
 * The database already has a `df` schema that is not the stand-in's (pg_durable's, most likely):
 * the harness never replaces or removes it.
 *
 * @category errors
 * @since 0.1.0
 */
export class SchemaConflict extends Schema.TaggedError<SchemaConflict>()("SchemaConflict", {
  database: Schema.String,
  extension: Schema.Boolean
}) {
  override get message() {
    return `database "${this.database}" already has a df schema that is not PgDurableHarness's (${
      this.extension ? "the pg_durable extension is installed: use it" : "another stand-in, or a schema named df"
    }); the harness leaves it alone`
  }
}

const probe = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ schema: boolean; ours: boolean; extension: boolean; database: string }>`SELECT
      to_regnamespace('df') IS NOT NULL AS schema,
      coalesce(obj_description(to_regnamespace('df'), 'pg_namespace') = ${marker}, false) AS ours,
      EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_durable') AS extension,
      current_database() AS database`,
    (rows) => rows[0]!
  )

/**
 * Whether the stand-in's `df` schema is installed in the database.
 *
 * @category accessors
 * @since 0.1.0
 */
export const isInstalled: Effect.Effect<boolean, SqlError, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.map(probe(sql), (found) => found.ours)
)

/**
 * Creates the stand-in's `df` schema, in one transaction; does nothing when it is already there, and
 * fails with `SchemaConflict` when another `df` schema is.
 *
 * @category constructors
 * @since 0.1.0
 */
export const install: Effect.Effect<void, SchemaConflict | SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_advisory_xact_lock(hashtext('pgflows PgDurableHarness'))`
    const found = yield* probe(sql)
    if (found.ours) return
    if (found.schema) {
      return yield* new SchemaConflict({ database: found.database, extension: found.extension })
    }
    for (const statement of statements) yield* sql.unsafe(statement)
  }))
}).pipe(Effect.withSpan("PgDurableHarness.install"))

/**
 * Drops the stand-in's `df` schema with its instances; does nothing when it is not there, and fails
 * with `SchemaConflict` when the `df` schema is not the stand-in's.
 *
 * @category destructors
 * @since 0.1.0
 */
export const uninstall: Effect.Effect<void, SchemaConflict | SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_advisory_xact_lock(hashtext('pgflows PgDurableHarness'))`
    const found = yield* probe(sql)
    if (!found.schema) return
    if (!found.ours) return yield* new SchemaConflict({ database: found.database, extension: found.extension })
    yield* sql.unsafe("DROP SCHEMA df CASCADE")
  }))
}).pipe(Effect.withSpan("PgDurableHarness.uninstall"))

// ---------------------------------------------------------------------------------------------------
// Running instances
// ---------------------------------------------------------------------------------------------------

/**
 * A JSON value, as nodes produce and capture them.
 *
 * @category models
 * @since 0.1.0
 */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Loop iterations before the loop fails (default 100; pg_durable's limit is 100 000). */
  readonly maxIterations?: number | undefined
}

/**
 * How `execute` left an instance.
 *
 * @category models
 * @since 0.1.0
 */
export interface Outcome {
  readonly status: "completed" | "failed" | "cancelled"
  /** The root node's result, as `df.result` gives it, when it completed. */
  readonly result: Json | undefined
  /** Why it failed: the message of the node that failed, wrapped by the nodes around it as pg_durable does. */
  readonly error: string | undefined
  /** Every SQL text executed, after substitution, in order. */
  readonly executed: ReadonlyArray<string>
  /** Every HTTP request sent, after substitution. */
  readonly requests: ReadonlyArray<HttpRequest>
}

/**
 * @category models
 * @since 0.1.0
 */
export interface HttpRequest {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

interface Node {
  readonly node_type: string
  readonly query?: string | null
  readonly left_node?: Node
  readonly right_node?: Node
  readonly condition_node?: Node
  readonly extra_nodes?: ReadonlyArray<Node>
  readonly result_name?: string
}

/** A node failed: the instance fails with this message (wrapped on the way up, as pg_durable does). */
class NodeFailed {
  readonly _tag = "NodeFailed"
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

class Break {
  readonly _tag = "Break"
  readonly value: Json
  constructor(value: Json) {
    this.value = value
  }
}

class Cancelled {
  readonly _tag = "Cancelled"
}

type Results = Map<string, Json>

const quote = (text: string) => `'${text.replaceAll("'", "''")}'`

const sqlValue = (value: Json): string => {
  if (value === null) return "NULL"
  if (typeof value === "string") return quote(value)
  if (typeof value === "number" || typeof value === "boolean") return String(value)
  return quote(JSON.stringify(value))
}

const rawValue = (value: Json): string => typeof value === "string" ? value : JSON.stringify(value)

const truthy = (value: Json): boolean => {
  if (value === null) return false
  if (typeof value === "boolean") return value
  if (typeof value === "number") return value !== 0
  if (typeof value === "string") {
    const text = value.trim().toLowerCase()
    if (text === "" || text === "false" || text === "f" || text === "no") return false
    if (text === "true" || text === "t" || text === "yes") return true
    const n = Number(text)
    return Number.isNaN(n) ? true : n !== 0
  }
  return Array.isArray(value) ? value.length > 0 : Object.keys(value).length > 0
}

const rowsOf = (value: Json): ReadonlyArray<Record<string, Json>> | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) && Array.isArray((value as any).rows)
    ? (value as any).rows
    : undefined

const conditionValue = (result: Json): Json => {
  const rows = rowsOf(result)
  if (rows === undefined) return result
  if (rows.length === 0) return false
  const first = Object.values(rows[0]!)
  return first.length === 0 ? rows[0]! : first[0] ?? null
}

/**
 * pg_durable's substitution of a node's text (`docs/PG_DURABLE.md`, "Substitution"): first
 * `{name}` by a variable (one pass, identifiers only; unknown names are left), then `$name.*`,
 * `$name.col?`, `$name.col`, `$name?` and `$name` by a named result, longest name first. In SQL
 * context values are SQL literals (text quoted, numbers bare, JSON as quoted text); in raw context
 * (URLs, bodies, headers) they are inserted as they are. Throws the node's failure when a reference
 * cannot be filled (no rows, NULL, a missing field in raw context).
 *
 * @category internals
 * @since 0.1.0
 */
export const substitute = (
  text: string,
  context: "sql" | "raw",
  results: ReadonlyMap<string, Json>,
  vars: ReadonlyMap<string, string>
): string => {
  const braced = text.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (match, name: string) => vars.get(name) ?? match)
  const names = [...results.keys()].sort((a, b) => b.length - a.length)
  const format = context === "sql" ? sqlValue : rawValue
  let out = ""
  let i = 0
  while (i < braced.length) {
    if (braced[i] !== "$") {
      out += braced[i++]
      continue
    }
    const rest = braced.slice(i + 1)
    let replaced = false
    for (const name of names) {
      if (!rest.startsWith(name)) continue
      const after = rest.slice(name.length)
      const value = results.get(name)!
      const rows = rowsOf(value)
      if (after.startsWith(".*")) {
        if (rows === undefined) throw new NodeFailed(`$${name}.*: invalid result format`)
        if (context === "raw") out += JSON.stringify(rows)
        else {
          const columns = Object.keys(rows[0] ?? {})
          out += rows.length === 0
            ? `(SELECT NULL WHERE false) AS "${name}"`
            : `(VALUES ${
              rows.map((row) =>
                `(${
                  columns.map((c) => {
                    const cell = row[c] ?? null
                    return typeof cell === "string" || (typeof cell === "object" && cell !== null)
                      ? `${sqlValue(cell)}::text`
                      : sqlValue(cell)
                  }).join(", ")
                })`
              ).join(", ")
            }) AS "${name}"(${columns.map((c) => `"${c}"`).join(", ")})`
        }
        i += 1 + name.length + 2
        replaced = true
        break
      }
      const field = /^\.([A-Za-z_][A-Za-z0-9_]*)(\?)?/.exec(after)
      if (field !== null) {
        const optional = field[2] !== undefined
        let cell: Json | undefined
        if (rows !== undefined) {
          if (rows.length === 0) {
            if (!optional) throw new NodeFailed(`$${name}.${field[1]} has no rows — query returned zero results`)
            cell = null
          } else cell = rows[0]![field[1]!]
        } else if (typeof value === "object" && value !== null && !Array.isArray(value)) {
          cell = (value as Record<string, Json>)[field[1]!]
        } else {
          throw new NodeFailed(`$${name}.${field[1]}: result is neither a row set nor a JSON object`)
        }
        if (cell === undefined) {
          if (context === "raw" && !optional) {
            throw new NodeFailed(`$${name}.${field[1]}: result has no field '${field[1]}'`)
          }
          // Left verbatim (PostgreSQL reports the error in SQL).
          out += `$${name}${field[0]}`
        } else if (cell === null && !optional) {
          throw new NodeFailed(`$${name}.${field[1]} is NULL`)
        } else {
          out += format(cell)
        }
        i += 1 + name.length + field[0].length
        replaced = true
        break
      }
      const optional = after.startsWith("?")
      if (!optional && /^[A-Za-z0-9_]/.test(after)) continue
      if (rows === undefined) out += context === "sql" ? quote(JSON.stringify(value)) : JSON.stringify(value)
      else {
        const cell = rows[0] === undefined ? undefined : Object.values(rows[0])[0]
        if (rows.length === 0 && !optional) throw new NodeFailed(`$${name} has no rows — query returned zero results`)
        if ((cell === undefined || cell === null) && !optional) {
          throw new NodeFailed(`$${name} is NULL — first column of first row is NULL`)
        }
        out += format(cell ?? null)
      }
      i += 1 + name.length + (optional ? 1 : 0)
      replaced = true
      break
    }
    if (!replaced) out += braced[i++]
  }
  return out
}

const messageOf = (error: unknown): string => {
  if (error instanceof NodeFailed) return error.message
  const parts: Array<string> = []
  for (let current: any = error, depth = 0; current != null && depth < 6; current = current.cause, depth++) {
    if (typeof current.message === "string" && current.message !== "") parts.push(current.message)
  }
  return parts.join(": ")
}

/** Type OIDs of the column types pg_durable's worker reads back ("Calling it"), and how. */
const columnTypes: ReadonlyMap<number, (value: unknown) => Json> = new Map<number, (value: unknown) => Json>([
  [16, (value) => Boolean(value)], // bool
  [20, (value) => Number(value)], // int8
  [21, (value) => Number(value)], // int2
  [23, (value) => Number(value)], // int4
  [700, (value) => finite(Number(value))], // float4
  [701, (value) => finite(Number(value))], // float8
  [1700, (value) => String(value)], // numeric: a string, exactly
  [25, (value) => String(value)], // text
  [1043, (value) => String(value)], // varchar
  [1042, (value) => String(value)], // bpchar
  [19, (value) => String(value)], // name
  [705, (value) => String(value)], // unknown (an untyped literal)
  [2950, (value) => String(value)], // uuid
  [1184, (value) => value instanceof Date ? value.toISOString() : String(value)], // timestamptz
  [1114, (value) => value instanceof Date ? value.toISOString().replace(/Z$/, "") : String(value)], // timestamp
  [1082, (value) => value instanceof Date ? value.toISOString().slice(0, 10) : String(value)], // date
  [114, json], // json
  [3802, json], // jsonb
  [2278, () => null] // void
])

function finite(n: number): Json {
  return Number.isFinite(n) ? n : null
}

function json(value: unknown): Json {
  if (typeof value !== "string") return value as Json
  try {
    return JSON.parse(value)
  } catch {
    return value
  }
}

/**
 * A SQL cell as pg_durable's worker maps it, by its column's type when the driver says it (the raw
 * result of `@effect/sql-pg` does), else by its JavaScript value; `undefined` for a type pg_durable
 * refuses (bytea, arrays, interval, ...).
 */
const cellOf = (value: unknown, typeOid: number | undefined): Json | undefined => {
  if (typeOid !== undefined) {
    const read = columnTypes.get(typeOid)
    if (read === undefined) return undefined
    return value === null || value === undefined ? null : read(value)
  }
  if (value === null || typeof value === "string" || typeof value === "boolean") return value
  if (typeof value === "number") return finite(value)
  if (typeof value === "bigint") return Number(value)
  if (value instanceof Date) return value.toISOString()
  if (value instanceof Uint8Array || Array.isArray(value)) return undefined
  if (typeof value === "object") return value as Json
  return undefined
}

/** The rows of a raw result, and the type OID of each column when the driver tells them. */
const rowsAndTypes = (raw: unknown): {
  readonly rows: ReadonlyArray<Record<string, unknown>>
  readonly types: ReadonlyMap<string, number> | undefined
} => {
  if (Array.isArray(raw)) return { rows: raw, types: undefined }
  const result = raw as { rows?: unknown; fields?: unknown }
  const rows = Array.isArray(result?.rows) ? result.rows as ReadonlyArray<Record<string, unknown>> : []
  if (!Array.isArray(result?.fields)) return { rows, types: undefined }
  const types = new Map<string, number>()
  for (const field of result.fields as ReadonlyArray<{ readonly name?: unknown; readonly dataTypeId?: unknown }>) {
    if (typeof field.name === "string" && typeof field.dataTypeId === "number") types.set(field.name, field.dataTypeId)
  }
  return { rows, types }
}

const textual = (contentType: string) =>
  /^text\/|^application\/(json|xml|x-www-form-urlencoded|javascript)|\+json|\+xml/i.test(contentType)

const outsideLoop = "df.break() was called outside of a loop. df.break() may only be used inside df.loop()."

/**
 * Runs instance `instanceId` (started with the stand-in's `df.start`, by `PgDurableClient.start`
 * for instance) to its end, node by node, and records it in `df.instances` and `df.nodes` as
 * pg_durable would: `completed` with the root node's result, `failed` (the failed node's message in
 * its `df.nodes` row), or `cancelled` when `df.cancel` was called (checked every 100 ms; the node
 * running then is interrupted). An instance already cancelled is not run.
 *
 * Fails with `InstanceNotFound` for an unknown id, and with the `SqlError` when the harness itself
 * cannot read or write its tables (the instance then stays `running`, as after a crash; executing it
 * again runs it from its first node).
 *
 * @category running
 * @since 0.1.0
 */
export const execute = (
  instanceId: string,
  options: Options = {}
): Effect.Effect<Outcome, InstanceNotFound | SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [instance] = yield* sql<{ root_node: Node; label: string | null; status: string }>`
      SELECT root_node, label, status FROM df.instances WHERE id = ${instanceId}`
    if (instance === undefined) return yield* new InstanceNotFound({ instanceId })
    const executed: Array<string> = []
    const requests: Array<HttpRequest> = []
    const ended = (status: Outcome["status"], result?: Json, error?: string): Outcome => ({
      status,
      result,
      error,
      executed,
      requests
    })
    const claimed = yield* sql`UPDATE df.instances SET status = 'running'
      WHERE id = ${instanceId} AND status <> 'cancelled' RETURNING id`
    if (claimed.length === 0) return ended("cancelled")
    // df.start snapshots the role's variables.
    const vars = new Map<string, string>(
      (yield* sql<{ name: string; value: string }>`SELECT name, value FROM df.vars`).map((row) => [row.name, row.value])
    )
    vars.set("sys_instance_id", instanceId)
    vars.set("sys_label", instance.label ?? "")
    const maxIterations = options.maxIterations ?? 100
    // Node ids go on after those of an earlier execution of the instance, whose rows stay.
    const [earlier] = yield* sql<{ recorded: number }>`
      SELECT count(*)::int AS recorded FROM df.nodes WHERE instance_id = ${instanceId}`
    let nodeIds = earlier?.recorded ?? 0

    type Run = Effect.Effect<Json, NodeFailed | Break | SqlError>

    const recordNode = (node: Node, status: "completed" | "failed", result: Json) =>
      sql`
        INSERT INTO df.nodes (id, instance_id, node_type, query, result_name, status, result)
        VALUES (${(++nodeIds).toString(16).padStart(8, "0")}, ${instanceId}, ${node.node_type}, ${node.query ?? null},
          ${node.result_name ?? null}, ${status}, ${JSON.stringify(result)}::jsonb)`

    const fail = (node: Node, message: string) =>
      Effect.andThen(recordNode(node, "failed", message), Effect.fail(new NodeFailed(message)))

    const guarded = <A>(node: Node, body: () => A) =>
      Effect.suspend(() => {
        try {
          return Effect.succeed(body())
        } catch (error) {
          return fail(node, messageOf(error))
        }
      })

    const run = (node: Node, results: Results, inLoop: boolean): Run =>
      Effect.gen(function*() {
        const value = yield* exec(node, results, inLoop)
        if (
          node.result_name !== undefined && node.result_name !== null &&
          !["SLEEP", "WAIT_SCHEDULE", "BREAK"].includes(node.node_type)
        ) results.set(node.result_name, value)
        return value
      })

    const sqlNode = (node: Node, results: Results): Run =>
      Effect.gen(function*() {
        const text = yield* guarded(node, () => substitute(node.query ?? "", "sql", results, vars))
        executed.push(text)
        const exit = yield* Effect.exit(sql.unsafe(text).raw)
        if (Exit.isFailure(exit)) {
          return yield* fail(node, `SQL execution failed: ${messageOf(Cause.squash(exit.cause))}`)
        }
        const answer = rowsAndTypes(exit.value)
        const rows: Array<Record<string, Json>> = []
        for (const row of answer.rows) {
          const out: Record<string, Json> = {}
          for (const [column, value] of Object.entries(row)) {
            const cell = cellOf(value, answer.types === undefined ? undefined : answer.types.get(column) ?? -1)
            if (cell === undefined) return yield* fail(node, `Unsupported column type for column '${column}'`)
            out[column] = cell
          }
          rows.push(out)
        }
        const result = { rows, row_count: rows.length }
        yield* recordNode(node, "completed", result)
        return result
      })

    const httpNode = (node: Node, results: Results): Run =>
      Effect.gen(function*() {
        const config = JSON.parse(node.query ?? "{}") as {
          url: string
          method: string
          body: string | null
          headers: Record<string, unknown> | null
          timeout_seconds: number
        }
        const prepared = yield* guarded(node, (): HttpRequest => {
          const headers: Record<string, string> = {}
          if (config.headers !== null && typeof config.headers === "object" && !Array.isArray(config.headers)) {
            for (const [name, value] of Object.entries(config.headers)) {
              // Only string values are sent (others are dropped silently).
              if (typeof value === "string") headers[name] = substitute(value, "raw", results, vars)
            }
          }
          return {
            url: substitute(config.url, "raw", results, vars),
            body: config.body === null ? undefined : substitute(config.body, "raw", results, vars),
            headers
          }
        })
        requests.push(prepared)
        const started = Date.now()
        const answer = yield* Effect.exit(
          Effect.tryPromise({
            try: async (signal) => {
              const response = await fetch(prepared.url, {
                method: config.method,
                headers: { "user-agent": "pg_durable/0.0.0-harness", ...prepared.headers },
                ...(prepared.body === undefined ? {} : { body: prepared.body }),
                redirect: "manual",
                signal
              })
              const bytes = Buffer.from(await response.arrayBuffer())
              return { response, bytes }
            },
            catch: (cause) => cause
          }).pipe(Effect.timeout(Duration.seconds(config.timeout_seconds)))
        )
        if (Exit.isFailure(answer)) {
          const error = Cause.squash(answer.cause)
          return yield* fail(
            node,
            (error as { _tag?: string })?._tag === "TimeoutError"
              ? `HTTP timeout after ${config.timeout_seconds}s: ${config.method} ${prepared.url}`
              : `HTTP connection failed: ${config.method} ${prepared.url}: ${messageOf(error)}`
          )
        }
        const { bytes, response } = answer.value
        const contentType = response.headers.get("content-type") ?? ""
        const encoding = textual(contentType) ? "text" : "base64"
        const body = encoding === "text" ? bytes.toString("utf8") : bytes.toString("base64")
        if (response.status >= 500) {
          return yield* fail(
            node,
            `HTTP ${config.method} ${prepared.url} returned ${response.status}: ${body.slice(0, 200)}`
          )
        }
        const result = {
          status: response.status,
          body,
          encoding,
          headers: Object.fromEntries(response.headers.entries()),
          ok: response.status >= 200 && response.status < 300,
          duration_ms: Date.now() - started
        }
        yield* recordNode(node, "completed", result)
        return result
      })

    const signalNode = (node: Node): Run =>
      Effect.gen(function*() {
        const config = JSON.parse(node.query ?? "{}") as { signal_name: string; timeout_seconds: number | null }
        // Signals are not buffered: only one sent after the wait began counts.
        const [{ since }] = (yield* sql<{ since: Date }>`SELECT clock_timestamp() AS since`) as [{ since: Date }]
        const deadline = config.timeout_seconds === null ? Infinity : Date.now() + config.timeout_seconds * 1000
        while (Date.now() < deadline) {
          const [signal] = yield* sql<{ data: string }>`
            SELECT data FROM df.signals WHERE instance_id = ${instanceId} AND name = ${config.signal_name}
              AND sent_at >= ${since} ORDER BY sent_at LIMIT 1`
          if (signal !== undefined) {
            let data: Json
            try {
              data = JSON.parse(signal.data)
            } catch {
              data = signal.data
            }
            const result = { signal_name: config.signal_name, timed_out: false, data }
            yield* recordNode(node, "completed", result)
            return result
          }
          yield* Effect.sleep("50 millis")
        }
        const result = { signal_name: config.signal_name, timed_out: true, data: null }
        yield* recordNode(node, "completed", result)
        return result
      })

    const exec = (node: Node, results: Results, inLoop: boolean): Run =>
      Effect.gen(function*() {
        switch (node.node_type) {
          case "SQL":
            return yield* sqlNode(node, results)
          case "HTTP":
            return yield* httpNode(node, results)
          case "THEN":
            yield* run(node.left_node!, results, inLoop)
            return yield* run(node.right_node!, results, inLoop)
          case "IF": {
            if (node.condition_node === undefined) {
              const config = JSON.parse(node.query ?? "{}") as { condition_type: string; result_name: string }
              const named = results.get(config.result_name)
              if (named === undefined) return yield* fail(node, `df.if_rows: result '${config.result_name}' not found`)
              const count = (named as { row_count?: unknown } | null)?.row_count
              if (typeof count !== "number") {
                return yield* fail(
                  node,
                  `df.if_rows: result '${config.result_name}' is not a SQL result (missing row_count)`
                )
              }
              return yield* run(count > 0 ? node.left_node! : node.right_node!, results, inLoop)
            }
            const condition = yield* run(node.condition_node, results, inLoop)
            return yield* run(truthy(conditionValue(condition)) ? node.left_node! : node.right_node!, results, inLoop)
          }
          case "JOIN": {
            const branches = [node.left_node!, node.right_node!, ...(node.extra_nodes ?? [])]
            const copies = branches.map(() => new Map(results))
            const values = yield* Effect.forEach(
              branches,
              (branch, index) =>
                run(branch, copies[index]!, inLoop).pipe(
                  Effect.mapError((error) =>
                    error instanceof NodeFailed
                      ? new NodeFailed(`JOIN branch ${index} failed: ${error.message}`)
                      : error
                  )
                ),
              { concurrency: "unbounded" }
            )
            for (const copy of copies) for (const [name, value] of copy) results.set(name, value)
            return values
          }
          case "RACE": {
            const side = (branch: Node, name: "left" | "right") => {
              const scope = new Map(results)
              return Effect.map(run(branch, scope, inLoop), (value) => ({ value, scope })).pipe(
                Effect.mapError((e) =>
                  e instanceof NodeFailed ? new NodeFailed(`RACE ${name} branch failed: ${e.message}`) : e
                )
              )
            }
            const winner = yield* Effect.raceFirst(side(node.left_node!, "left"), side(node.right_node!, "right"))
            for (const [name, value] of winner.scope) results.set(name, value)
            return winner.value
          }
          case "LOOP": {
            const root = node === instance.root_node
            let carried = results
            for (let iteration = 1; iteration <= maxIterations; iteration++) {
              const scope: Results = root ? new Map() : carried
              const body = yield* Effect.exit(run(node.left_node!, scope, true))
              if (Exit.isFailure(body)) {
                const error = Cause.squash(body.cause)
                if (error instanceof Break) return error.value
                return yield* Effect.failCause(body.cause)
              }
              if (node.condition_node !== undefined) {
                const condition = yield* Effect.exit(run(node.condition_node, scope, true))
                if (Exit.isFailure(condition)) {
                  const error = Cause.squash(condition.cause)
                  if (error instanceof Break) return error.value
                  return yield* Effect.failCause(condition.cause)
                }
                if (!truthy(conditionValue(condition.value))) return body.value
              }
              carried = scope
            }
            return yield* fail(node, `Loop exceeded maximum iteration count of ${maxIterations}.`)
          }
          case "BREAK": {
            if (!inLoop) return yield* fail(node, outsideLoop)
            const config = JSON.parse(node.query ?? "{}") as { break_value: string | null }
            let value: Json = null
            if (config.break_value !== null && config.break_value !== undefined) {
              try {
                value = JSON.parse(config.break_value)
              } catch {
                value = config.break_value
              }
            }
            return yield* Effect.fail(new Break(value))
          }
          case "SLEEP": {
            const result = { slept: true, seconds: Number(node.query) }
            yield* recordNode(node, "completed", result)
            return result
          }
          case "SIGNAL":
            return yield* signalNode(node)
          default:
            return yield* fail(node, `the harness cannot run ${node.node_type} nodes`)
        }
      })

    const cancelled: Effect.Effect<never, Cancelled | SqlError> = Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep("100 millis")
        const [row] = yield* sql<{ status: string }>`SELECT status FROM df.instances WHERE id = ${instanceId}`
        if (row?.status === "cancelled") return yield* Effect.fail(new Cancelled())
      }
    })

    const outcome = yield* Effect.exit(Effect.raceFirst(run(instance.root_node, new Map(), false), cancelled))
    if (Exit.isSuccess(outcome)) {
      const done = yield* sql`UPDATE df.instances SET status = 'completed', completed_at = now(),
        result = ${JSON.stringify(outcome.value)}::jsonb WHERE id = ${instanceId} AND status = 'running' RETURNING id`
      return done.length === 0 ? ended("cancelled") : ended("completed", outcome.value)
    }
    const error = Cause.squash(outcome.cause)
    if (error instanceof Cancelled) return ended("cancelled")
    if (isSqlError(error)) return yield* Effect.fail(error)
    // Anything else is a defect or an interruption: its cause goes on as it is.
    if (!(error instanceof NodeFailed) && !(error instanceof Break)) {
      return yield* Effect.failCause(outcome.cause as Cause.Cause<never>)
    }
    const message = error instanceof Break ? outsideLoop : error.message
    const done = yield* sql`UPDATE df.instances SET status = 'failed'
      WHERE id = ${instanceId} AND status = 'running' RETURNING id`
    return done.length === 0 ? ended("cancelled") : ended("failed", undefined, message)
  }).pipe(Effect.withSpan("PgDurableHarness.execute", { attributes: { "pg_durable.instance_id": instanceId } }))

/**
 * @category models
 * @since 0.1.0
 */
export interface WorkerOptions extends Options {
  /** How often to look for `pending` instances (default 100 milliseconds). */
  readonly pollInterval?: Duration.Input | undefined
}

/**
 * What pg_durable's background worker does, for the stand-in: takes each `pending` instance (once,
 * even with several workers on the database) and executes it, each in a fiber of its own, until
 * interrupted (which interrupts the instances it runs; they stay `running`). A failure of the
 * harness itself is logged, and the worker goes on.
 *
 * @category running
 * @since 0.1.0
 */
export const worker = (options: WorkerOptions = {}): Effect.Effect<never, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const every = Duration.fromInputUnsafe(options.pollInterval ?? "100 millis")
    const claim = sql<{ id: string }>`
      UPDATE df.instances SET status = 'running' WHERE id IN (
        SELECT id FROM df.instances WHERE status = 'pending' ORDER BY created_at, id LIMIT 32 FOR UPDATE SKIP LOCKED)
      RETURNING id`
    while (true) {
      const claimed = yield* claim.pipe(
        Effect.catch((error) =>
          Effect.as(Effect.logWarning(`PgDurableHarness: reading df.instances failed: ${error.message}`), [])
        )
      )
      for (const { id } of claimed) {
        yield* Effect.forkScoped(
          execute(id, options).pipe(
            Effect.catch((error) =>
              Effect.logWarning(`PgDurableHarness: instance ${id} stopped, it stays running: ${error.message}`)
            )
          )
        )
      }
      yield* Effect.sleep(every)
    }
  }).pipe(Effect.scoped, Effect.withSpan("PgDurableHarness.worker")) as Effect.Effect<never, never, SqlClient.SqlClient>

/**
 * Installs the stand-in (`install`) and runs the `worker` while the layer lives.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: WorkerOptions = {}
): Layer.Layer<never, SchemaConflict | SqlError, SqlClient.SqlClient> =>
  Layer.effectDiscard(Effect.andThen(install, Effect.forkScoped(worker(options))))
