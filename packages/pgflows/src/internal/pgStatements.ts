/**
 * The SQL of `PgStore`, one statement per store operation, built once per schema. Every identifier
 * is the validated schema name (see `Identifier`); every value is a bound parameter. Values larger
 * than the client can read are never read as such: each statement that returns a stored value
 * returns it as text only when it fits `$limit` bytes, and its size otherwise (docs/ARCHITECTURE.md,
 * "Runs are isolated").
 */
import * as Identifier from "../Identifier.ts"
import type { Status } from "../Run.ts"
import { newestServed, workflowKey } from "./pgVersions.ts"

export type Statements = ReturnType<typeof make>

/**
 * A statement whose parameters are named in its text (`{name}`), numbered in the order they first
 * appear: the statements of one read take different parameters, and `bind` puts the values in
 * their order.
 */
export interface Named<N extends string = string> {
  readonly text: string
  readonly names: ReadonlyArray<N>
}

const named = <N extends string>(template: string): Named<N> => {
  const names: Array<N> = []
  const text = template.replace(/\{([a-z_]+)\}/g, (_, name: N) => {
    if (!names.includes(name)) names.push(name)
    return `$${names.indexOf(name) + 1}`
  })
  return { text, names }
}

/** The values of a named statement's parameters, in order. */
export const bind = <N extends string>(statement: Named<N>, values: Readonly<Record<N, unknown>>) =>
  statement.names.map((name) => values[name])

/** Which of the filters workflow and version a read has: each has statements of its own shape. */
export type Scope = "all" | "workflow" | "workflowVersion" | "version"

export const scopes: ReadonlyArray<Scope> = ["all", "workflow", "workflowVersion", "version"]

/** The parameters of the list statements. */
export type ListParam = "workflow" | "version" | "status" | "upper_us" | "upper_id" | "lower_us" | "limit" | "queue"

/** The parameters of the dead-letter statements. */
export type DeadLetterParam = "workflow" | "version" | "upper_us" | "upper_id" | "lower_us" | "limit" | "max_bytes"

/**
 * A table walked newest first on two indexes, `(time DESC, id DESC)` and `(workflow, version, time
 * DESC, id DESC)`: `runs` (on `created_at`), `failed_runs` (on `created_at` or `failed_at`) and
 * `cancelled_runs` (on `created_at`).
 */
interface Walk {
  readonly table: string
  readonly id: string
  readonly time: string
  /** The select list, of alias `t`; it must include `time` and `id`. */
  readonly columns: string
  /** A condition on `t` the rows must also meet (a filter, not an index condition). */
  readonly filter?: string | undefined
}

/**
 * The keyset bounds of a page on alias `a`: before the upper bound (the cursor, or the end of a
 * time range) and from the lower bound on; a missing bound is infinite, so the statement keeps its
 * shape (and the index its conditions) whatever is set.
 */
const bounds = (a: string, time: string, id: string) =>
  `(${a}.${time}, ${a}.${id}) < (coalesce(timestamptz 'epoch' + {upper_us}::bigint * interval '1 microsecond',
    'infinity'::timestamptz), coalesce({upper_id}::text, ''))
  AND ${a}.${time} >= coalesce(timestamptz 'epoch' + {lower_us}::bigint * interval '1 microsecond',
    '-infinity'::timestamptz)`

/**
 * The newest `{limit}` rows of a walk within the bounds, for a scope. With a workflow and a version,
 * one walk of the second index; with a workflow alone, a walk per version of it (found by a loose
 * index scan, one descent each) merged; with a version alone, a walk per workflow, merged. Every
 * shape reads at most `{limit}` matching rows per walk, whatever the history.
 */
const walk = (w: Walk, scope: Scope): string => {
  const page = (where: ReadonlyArray<string>) =>
    `SELECT ${w.columns} FROM ${w.table} t
  WHERE ${[...where, bounds("t", w.time, w.id), ...(w.filter === undefined ? [] : [w.filter])].join("\n    AND ")}
  ORDER BY t.${w.time} DESC, t.${w.id} DESC LIMIT {limit}`
  const merged = (cte: string, join: ReadonlyArray<string>) =>
    `WITH RECURSIVE ${cte}
SELECT p.* FROM keys k CROSS JOIN LATERAL (
  ${page(join)}
) p
ORDER BY p.${w.time} DESC, p.${w.id} DESC LIMIT {limit}`
  switch (scope) {
    case "all":
      return page([])
    case "workflowVersion":
      return page(["t.workflow = {workflow}::text", "t.version = {version}::int"])
    case "workflow":
      return merged(versionsOf(w.table), ["t.workflow = {workflow}::text", "t.version = k.version"])
    case "version":
      return merged(
        `keys AS (
  (SELECT t.workflow FROM ${w.table} t ORDER BY t.workflow LIMIT 1)
  UNION ALL
  SELECT (SELECT t.workflow FROM ${w.table} t WHERE t.workflow > k.workflow ORDER BY t.workflow LIMIT 1)
  FROM keys k WHERE k.workflow IS NOT NULL
)`,
        ["t.workflow = k.workflow", "t.version = {version}::int"]
      )
  }
}

/**
 * The CTE (`keys` by default) of the versions of `{workflow}` that have rows in `table` (indexed on `(workflow,
 * version, ...)`): a loose index scan, one descent per version, ended by a NULL.
 */
const versionsOf = (table: string, name = "keys") =>
  `${name} AS (
  (SELECT t.version FROM ${table} t WHERE t.workflow = {workflow}::text ORDER BY t.version LIMIT 1)
  UNION ALL
  SELECT (SELECT t.version FROM ${table} t WHERE t.workflow = {workflow}::text AND t.version > k.version
    ORDER BY t.version LIMIT 1)
  FROM ${name} k WHERE k.version IS NOT NULL
)`

/** Where a list by status is answered from. */
export type ListSource =
  /** Every run, or the completed ones: a walk of `runs` (a completed list skips the others). */
  | "runs"
  | "completed"
  /** Runs not ended: the run queue's messages, each joined to its run. */
  | "live"
  | "failed"
  | "cancelled"

export const listSource = (status: Status | undefined): ListSource =>
  status === undefined
    ? "runs"
    : status === "completed"
    ? "completed"
    : status === "failed" || status === "cancelled"
    ? status
    : "live"

/**
 * The statements of the client's reads: a list for each source and scope, the dead letters for
 * each scope, and the counts (docs/ARCHITECTURE.md, "Reads").
 */
const makeReads = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  const summary = (a: string) =>
    `${a}.id, ${a}.workflow, ${a}.version, ${a}.status, ${a}.executions, ${a}.created_at, ${a}.updated_at,
    ${a}.completed_at, (extract(epoch FROM ${a}.created_at) * 1000000)::bigint::text AS created_us`
  const runs: Walk = { table: `${s}.runs`, id: "id", time: "created_at", columns: summary("t") }
  /** A run of a side table's walk, with its summary: by primary key, one lookup per row of the page. */
  const joined = (table: string, status: string, scope: Scope) =>
    `SELECT r.* FROM (
${walk({ table: `${s}.${table}`, id: "run_id", time: "created_at", columns: "t.run_id, t.created_at" }, scope)}
) f
CROSS JOIN LATERAL (SELECT ${summary("t")} FROM ${s}.runs t WHERE t.id = f.run_id AND t.status = '${status}' LIMIT 1) r
ORDER BY f.created_at DESC, f.run_id DESC`
  /**
   * The queue's messages, each joined to its run by primary key (a lateral lookup, so the runs are
   * never scanned), filtered and sorted: as many rows as runs in flight, whatever the history.
   */
  const live = (scope: Scope) => {
    const where = [
      "q.queue = {queue}::text",
      "r.status = {status}::text",
      bounds("r", "created_at", "id"),
      ...(scope === "workflow" || scope === "workflowVersion" ? ["r.workflow = {workflow}::text"] : []),
      ...(scope === "version" || scope === "workflowVersion" ? ["r.version = {version}::int"] : [])
    ]
    return `SELECT r.* FROM ${s}.queue_messages q
CROSS JOIN LATERAL (
  SELECT ${summary("t")} FROM ${s}.runs t WHERE t.id = q.message->>'run' AND t.msg_id = q.msg_id LIMIT 1
) r
WHERE ${where.join("\n  AND ")}
ORDER BY r.created_at DESC, r.id DESC LIMIT {limit}`
  }
  const list = (source: ListSource, scope: Scope): Named<ListParam> =>
    named(
      source === "runs"
        ? walk(runs, scope)
        : source === "completed"
        ? walk({ ...runs, filter: "t.status = {status}::text" }, scope)
        : source === "live"
        ? live(scope)
        : joined(source === "failed" ? "failed_runs" : "cancelled_runs", source, scope)
    )
  const bySource = (source: ListSource) =>
    Object.fromEntries(scopes.map((scope) => [scope, list(source, scope)])) as Record<Scope, Named<ListParam>>
  const deadLetters = (scope: Scope): Named<DeadLetterParam> =>
    named(`SELECT r.* FROM (
${walk({ table: `${s}.failed_runs`, id: "run_id", time: "failed_at", columns: "t.run_id, t.failed_at" }, scope)}
) f
CROSS JOIN LATERAL (
  SELECT t.id, t.workflow, t.version, t.executions, t.created_at, f.failed_at,
    CASE WHEN octet_length(v.error) <= {max_bytes} THEN v.error END AS error_text, octet_length(v.error) AS error_bytes,
    (extract(epoch FROM f.failed_at) * 1000000)::bigint::text AS failed_us
  FROM ${s}.runs t CROSS JOIN LATERAL (SELECT t.error::text AS error) v
  WHERE t.id = f.run_id AND t.status = 'failed' LIMIT 1
) r
ORDER BY f.failed_at DESC, f.run_id DESC`)
  const counts = (scope: "all" | "workflow") => {
    const limit = countLimit + 1
    const tables: ReadonlyArray<CountedTable> = ["runs", "failed_runs", "cancelled_runs"]
    const alias = (table: CountedTable) => table === "runs" ? "r" : table === "failed_runs" ? "f" : "c"
    const part = (table: CountedTable) => {
      const x = alias(table)
      const status = table === "runs" ? "t.status" : `'${table === "failed_runs" ? "failed" : "cancelled"}'::text`
      // A workflow's rows a version at a time, by the index (see `capped`), else the table's; never
      // more than `limit` (which the exact count, run only once fewer are found, never reaches: the
      // limit keeps its plan small and serial).
      const rows = (columns: string, limited: boolean) =>
        scope === "all"
          ? `SELECT ${columns} FROM ${s}.${table} t${limited ? ` LIMIT ${limit}` : ""}`
          : `SELECT ${columns} FROM ${x}_versions k CROSS JOIN LATERAL (
    SELECT t.* FROM ${s}.${table} t WHERE t.workflow = {workflow}::text AND t.version = k.version${
            limited ? ` LIMIT ${limit}` : ""
          }
  ) t${limited ? ` LIMIT ${limit}` : ""}`
      return [
        ...(scope === "workflow" ? [versionsOf(`${s}.${table}`, `${x}_versions`)] : []),
        // No row unless the estimate allows a small table; then at most `limit` rows read.
        `${x}_capped AS (
  SELECT n FROM (SELECT count(*)::int AS n FROM (${rows("1", true)}) counted) c
  WHERE coalesce((SELECT sum(runs) FROM estimates WHERE source = '${table}'), 0) <= ${2 * countLimit}
)`,
        `${x}_exact AS (
  SELECT t.workflow, ${status} AS status, count(*)::float8 AS runs
  FROM (${rows(table === "runs" ? "t.workflow, t.status" : "t.workflow", true)}) t
  WHERE (SELECT n FROM ${x}_capped) <= ${countLimit}
  GROUP BY 1, 2
)`
      ]
    }
    const tableList = tables.map((table) => `'${table}'`).join(", ")
    return `WITH RECURSIVE ${
      [
        scope === "all"
          ? `keys AS (
  (SELECT workflow FROM ${s}.runs ORDER BY workflow LIMIT 1)
  UNION ALL
  SELECT (SELECT r.workflow FROM ${s}.runs r WHERE r.workflow > k.workflow ORDER BY r.workflow LIMIT 1)
  FROM keys k WHERE k.workflow IS NOT NULL
)`
          : "keys AS (SELECT {workflow}::text AS workflow)",
        "names AS (SELECT workflow FROM keys WHERE workflow IS NOT NULL)",
        `live AS (${liveCount(scope === "all" ? [] : ["r.workflow = {workflow}::text"])})`,
        `rels AS (
  SELECT c.relname::text AS name, c.reltuples, ${estimatedRows} AS rows FROM pg_class c
  WHERE c.oid IN (${tables.map((table) => `to_regclass('${s}.${table}')`).join(", ")})
)`,
        `stats AS (${statsOf(schema, tableList, "workflow")})`,
        // Each workflow's rows of each table, from the statistics (an even share without them).
        `estimates AS (
  SELECT r.name AS source, n.workflow,
    r.rows * coalesce(${share("st", "n.workflow")}, 1.0 / (SELECT count(*) FROM names)) AS runs
  FROM rels r CROSS JOIN names n LEFT JOIN stats st ON st.name = r.name
)`,
        ...tables.flatMap(part)
      ].join(",\n")
    }
SELECT 'live' AS source, workflow, status, runs::float8 AS runs, true AS exact FROM live
${
      tables.map((table) => {
        const x = alias(table)
        return `UNION ALL SELECT '${table}', workflow, status, runs, true FROM ${x}_exact
UNION ALL SELECT source, workflow, NULL, runs, false FROM estimates
  WHERE source = '${table}' AND coalesce((SELECT n FROM ${x}_capped), ${limit}) > ${countLimit}`
      }).join("\n")
    }`
  }
  const liveCount = (where: ReadonlyArray<string>) =>
    `SELECT r.workflow, r.status, count(*)::int AS runs FROM ${s}.queue_messages q
CROSS JOIN LATERAL (
  SELECT t.workflow, t.status FROM ${s}.runs t WHERE t.id = q.message->>'run' AND t.msg_id = q.msg_id LIMIT 1
) r
WHERE ${["q.queue = {queue}::text", "r.status IN ('pending', 'running', 'suspended')", ...where].join(" AND ")}
GROUP BY 1, 2`
  return {
    list: {
      runs: bySource("runs"),
      completed: bySource("completed"),
      live: bySource("live"),
      failed: bySource("failed"),
      cancelled: bySource("cancelled")
    } satisfies Record<ListSource, Record<Scope, Named<ListParam>>>,
    deadLetters: Object.fromEntries(scopes.map((scope) => [scope, deadLetters(scope)])) as Record<
      Scope,
      Named<DeadLetterParam>
    >,
    /**
     * How many runs are in each state, by workflow (`{workflow}`'s alone, in scope `workflow`), in
     * one statement whose parts run only where they are needed (one-time filters):
     *
     * - `live`: the runs not ended, counted from the queue's messages;
     * - for `runs`, `failed_runs` and `cancelled_runs`: the rows by workflow, estimated from the
     *   statistics; and, when the estimate (or its absence) allows a small table, the rows counted
     *   no further than `countLimit + 1` (`capped`), then, when they are no more than
     *   `countLimit`, counted exactly by workflow and state.
     *
     * Rows: `source` (`live` or the table), the workflow, the state (`NULL` for an estimate of all a
     * workflow's rows of `runs`), the number, and whether it was counted.
     */
    counts: {
      all: named<"queue">(counts("all")),
      workflow: named<"queue" | "workflow">(counts("workflow"))
    }
  }
}

/**
 * The statements of `PgWorkQueue` that read a queue's state: its metrics (the live messages, and its
 * archive, counted or estimated) and its archive's newest messages.
 */
export const queueReads = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  return {
    // The archive is estimated from the statistics, and counted (no further than `countLimit + 1`,
    // in the index's order and to a constant limit, so that even the generic plan walks the index:
    // a filtered scan would read every queue's archive to count a small one) where the estimate
    // allows a small one.
    metrics: `
WITH rel AS (SELECT ${estimatedRows} AS rows FROM pg_class c WHERE c.oid = to_regclass('${s}.queue_archive')),
st AS (${statsOf(schema, "'queue_archive'", "queue")}),
estimate AS (SELECT (SELECT rows FROM rel) * (SELECT ${share("st", "$1::text")} FROM st) AS n),
capped AS (
  SELECT n FROM (
    SELECT count(*)::int AS n FROM (
      SELECT 1 FROM ${s}.queue_archive WHERE queue = $1 ORDER BY archived_at DESC LIMIT ${countLimit + 1}
    ) counted
  ) c
  WHERE coalesce((SELECT n FROM estimate), 0) <= ${2 * countLimit}
)
SELECT count(*)::int AS length,
  (count(*) FILTER (WHERE vt <= clock_timestamp()))::int AS visible,
  extract(epoch FROM clock_timestamp() - max(enqueued_at)) * 1000 AS newest_ms,
  extract(epoch FROM clock_timestamp() - min(enqueued_at)) * 1000 AS oldest_ms,
  coalesce((SELECT n FROM capped) <= ${countLimit}, false) AS archived_exact,
  CASE WHEN (SELECT n FROM capped) <= ${countLimit} THEN (SELECT n FROM capped)
    ELSE round(coalesce((SELECT n FROM estimate), (SELECT rows FROM rel), ${countLimit + 1}))::int END AS archived,
  clock_timestamp() AS now
FROM ${s}.queue_messages WHERE queue = $1`,
    archived: `
SELECT msg_id, read_ct, enqueued_at, vt, message, archived_at FROM ${s}.queue_archive WHERE queue = $1
ORDER BY archived_at DESC, msg_id DESC LIMIT $2`
  }
}

/**
 * The first key of the advisory locks that serialize the claims of a limited named queue (the
 * second is a hash of the queue's lock name), so they never meet the one-key locks of migrations.
 */
export const flowLockSpace = 160_001

/** The first key of the advisory locks that serialize the starts with one deduplication key. */
export const dedupLockSpace = 160_002

/**
 * Counting stops after this many rows: a table (or a workflow's rows, or a queue's archive) with
 * more is estimated.
 */
export const countLimit = 1_000

/** The tables whose rows `countRuns` counts, or estimates. */
export type CountedTable = "runs" | "failed_runs" | "cancelled_runs"

/**
 * A table's rows as the planner estimates them, reading no row of it (from `pg_class c`):
 * `reltuples` as of the last VACUUM or ANALYZE, scaled to the table's current size as the planner
 * does; `NULL` when it was never analyzed.
 */
const estimatedRows = `CASE WHEN c.reltuples < 0 THEN NULL::float8 WHEN c.relpages = 0 THEN c.reltuples::float8
    ELSE c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::float8) END`

/**
 * The statistics of a column of tables (`tables`, a list of SQL literals), from `pg_stats`, which
 * shows what its reader may read (SELECT on the table is enough): by table (`name`), its most common
 * values and their frequencies, and how many distinct values it has.
 */
const statsOf = (schema: Identifier.Identifier, tables: string, column: string) =>
  `SELECT s.tablename::text AS name, s.most_common_vals::text::text[] AS vals, s.most_common_freqs AS freqs,
    s.null_frac, CASE WHEN s.n_distinct >= 0 THEN s.n_distinct::float8
      ELSE -s.n_distinct * (SELECT c.reltuples FROM pg_class c
        WHERE c.oid = to_regclass('${Identifier.quote(schema)}.' || s.tablename)) END AS distinct_values
  FROM pg_stats s WHERE s.schemaname = '${schema}' AND s.tablename IN (${tables}) AND s.attname = '${column}'
    AND NOT s.inherited`

/**
 * The share of a table's rows whose column holds `value`, from its statistics `st` (`statsOf`):
 * the value's frequency when it is one of the most common, else an even share of the rest.
 */
const share = (st: string, value: string) =>
  `coalesce(
    (SELECT ${st}.freqs[i] FROM generate_subscripts(${st}.vals, 1) AS i WHERE ${st}.vals[i] = ${value} LIMIT 1),
    greatest(1 - coalesce((SELECT sum(f) FROM unnest(${st}.freqs) AS f), 0) - ${st}.null_frac, 0)
      / greatest(${st}.distinct_values - coalesce(cardinality(${st}.vals), 0), 1))`

/**
 * The oldest `limit` due messages of queue `$1` among those of the workflow keys `$5`, oldest first
 * (`columns` of `queue_messages q`; with `lock`, each locked, skipping those locked by others). One
 * descent of `queue_messages_workflow` per key: a backlog of due messages of a workflow this worker
 * does not serve is never read, where a walk of the queue in due order had to skip past all of it
 * (docs/ARCHITECTURE.md, "A worker fails only what it could have run").
 */
const dueOfKeys = (s: string, columns: string, limit: string, lock: boolean) =>
  `(
    SELECT d.* FROM unnest($5::text[]) AS w(key)
    CROSS JOIN LATERAL (
      SELECT ${columns} FROM ${s}.queue_messages q
      WHERE q.queue = $1 AND q.message->>'workflow' = w.key AND q.vt <= now()
      ORDER BY q.vt, q.msg_id
      LIMIT ${limit}${lock ? "\n      FOR UPDATE SKIP LOCKED" : ""}
    ) d
    ORDER BY d.vt, d.msg_id
    LIMIT ${limit}
  )`

/**
 * The rows of a batch's parameters from `$first` on, one per type: from arrays (`unnest`), or with
 * `one`, a single row from scalars. A batch of one is the common case of a lone run (a sequential
 * caller), and the scalar form's generic plan finds its rows by key instead of joining unnested
 * arrays.
 */
const rowsOf = (first: number, types: ReadonlyArray<string>, one: boolean) => {
  const params = types.map((type, i) => `$${first + i}::${type}${one ? "" : "[]"}`).join(", ")
  return one ? `(SELECT ${params})` : `unnest(${params})`
}

/**
 * The end of executions, as CTEs over the transitions' parameters from `$first` on (arrays, or with
 * `one` the scalars of a single transition), after a `locked` CTE that locked the runs: update the
 * runs (a suspend whose run was woken meanwhile, or whose child ends in this same statement, becomes
 * a release), delete, archive or reschedule their messages, wake the parents of runs that ended,
 * notify. `checkpoints` names the CTE of the batch's
 * checkpoints, if any (to exclude nothing else).
 */
const transitionCtes = (schema: Identifier.Identifier, first: number, one = false) => {
  const s = Identifier.quote(schema)
  const ms = "* interval '1 millisecond'"
  const p = (n: number) => `$${first + n}`
  // One transition binds scalars (see `rows`), an array each otherwise.
  const rows = (types: ReadonlyArray<string>) => rowsOf(first, types, one)
  // A parent's row is updated once per statement: the wake-up of a parent that parks in the same
  // statement as its child's end (which `woken` cannot write) is its release.
  return `tr AS (
  SELECT t.*, CASE WHEN t.kind = 'suspend' AND (l.events <> t.observed OR EXISTS (
      SELECT 1 FROM ${rows(["text", "text", "text"])} AS e(run_id, token, kind)
      JOIN locked lc ON lc.id = e.run_id AND lc.lease_owner = e.token
      JOIN ${s}.runs c ON c.id = e.run_id
      WHERE e.kind IN ('complete', 'fail') AND c.parent_id = t.run_id))
    THEN 'release' ELSE t.kind END AS effective
  FROM ${rows(["text", "text", "text", "text", "text", "float8", "bigint", "int"])}
    AS t(run_id, token, kind, output, error, wake_ms, msg_id, observed)
  JOIN locked l ON l.id = t.run_id AND l.lease_owner = t.token
), moved AS (
  UPDATE ${s}.runs r SET
    status = CASE tr.effective WHEN 'complete' THEN 'completed' WHEN 'fail' THEN 'failed'
      WHEN 'suspend' THEN 'suspended' ELSE 'pending' END,
    output = CASE WHEN tr.effective = 'complete' THEN tr.output::jsonb ELSE r.output END,
    error = CASE WHEN tr.effective = 'fail' THEN tr.error::jsonb ELSE r.error END,
    wake_at = CASE WHEN tr.effective = 'suspend' AND tr.wake_ms IS NOT NULL THEN now() + tr.wake_ms ${ms} END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    completed_at = CASE WHEN tr.effective IN ('complete', 'fail') THEN now() END,
    updated_at = now()
  FROM tr
  WHERE r.id = tr.run_id
  RETURNING r.id, r.parent_id, r.wake_at, tr.effective AS kind, tr.msg_id, r.workflow, r.version, r.created_at
), failures AS (
  -- The failed runs' own table (docs/ARCHITECTURE.md, "Reads"): written only for a failure.
  INSERT INTO ${s}.failed_runs (run_id, workflow, version, created_at)
  SELECT id, workflow, version, created_at FROM moved WHERE kind = 'fail'
  ON CONFLICT (run_id) DO UPDATE SET failed_at = now()
), removed AS (
  DELETE FROM ${s}.queue_messages q USING moved m
  WHERE q.msg_id = m.msg_id AND m.kind IN ('complete', 'fail')
  RETURNING q.msg_id, q.queue, q.read_ct, q.enqueued_at, q.vt, q.message, m.kind
), archived AS (
  INSERT INTO ${s}.queue_archive (msg_id, queue, read_ct, enqueued_at, vt, message)
  SELECT msg_id, queue, read_ct, enqueued_at, vt, message FROM removed WHERE kind = 'fail'
), rescheduled AS (
  UPDATE ${s}.queue_messages q
  SET vt = CASE WHEN m.kind = 'release' THEN now() ELSE coalesce(m.wake_at, 'infinity'::timestamptz) END
  FROM moved m WHERE q.msg_id = m.msg_id AND m.kind IN ('suspend', 'release')
), woken AS (
  -- A parent waits for its children: wake it (parents ending in this same batch need no wake-up).
  UPDATE ${s}.runs p SET
    events = p.events + 1,
    wake_at = CASE WHEN p.status = 'suspended' THEN now() ELSE p.wake_at END,
    updated_at = now()
  FROM (SELECT DISTINCT parent_id FROM moved WHERE kind IN ('complete', 'fail') AND parent_id IS NOT NULL) c
  WHERE p.id = c.parent_id AND p.id NOT IN (SELECT run_id FROM tr)
    AND p.status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING p.status, p.msg_id
), woken_messages AS (
  UPDATE ${s}.queue_messages q SET vt = now() FROM woken w WHERE q.msg_id = w.msg_id AND w.status = 'suspended'
), notified AS (
  SELECT pg_notify(${p(8)}, CASE WHEN kind = 'release' THEN 'run' ELSE 'done:' || id END) AS n
  FROM moved WHERE kind IN ('complete', 'fail', 'release')
  UNION ALL SELECT pg_notify(${p(8)}, 'run') FROM (SELECT 1 FROM woken WHERE status = 'suspended' LIMIT 1) w
)`
}

/**
 * The journal writes of a batch, as CTEs after a `locked` CTE, over the arrays `$1` to `$10` (with
 * `one`, the scalars of a single entry). With `transactional`, the entries are marked as written by
 * a transaction step (`checkpointWith`); the group-commit statements leave the column to its
 * default, so they stay as they were.
 */
const checkpointCtes = (schema: Identifier.Identifier, transactional = false, one = false) => {
  const s = Identifier.quote(schema)
  const column = transactional ? ", transactional" : ""
  const value = transactional ? ", true" : ""
  const update = transactional ? ", transactional = EXCLUDED.transactional" : ""
  const ms = "* interval '1 millisecond'"
  return `accepted AS MATERIALIZED (
  SELECT t.* FROM ${rowsOf(1, ["text", "text", "text", "text", "text", "text", "text", "text", "int", "float8"], one)}
    AS t(run_id, token, key, name, input_hash, status, output, error, attempts, wake_ms)
  JOIN locked l ON l.id = t.run_id AND l.lease_owner = t.token
), written AS (
  INSERT INTO ${s}.steps AS st
    (run_id, key, name, input_hash, status, output, error, attempts, wake_at, completed_at${column})
  SELECT run_id, key, name, input_hash, status, output::jsonb, error::jsonb, attempts,
         CASE WHEN wake_ms IS NOT NULL THEN now() + wake_ms ${ms} END,
         CASE WHEN status IN ('completed', 'failed') THEN now() END${value}
  FROM accepted
  ON CONFLICT (run_id, key) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error, attempts = EXCLUDED.attempts,
    wake_at = EXCLUDED.wake_at, completed_at = EXCLUDED.completed_at${update}
  WHERE st.status NOT IN ('completed', 'failed')
)`
}

export const make = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  const ms = "* interval '1 millisecond'"
  const lock = (ids: string) =>
    `locked AS MATERIALIZED (
  SELECT id, lease_owner, events FROM ${s}.runs WHERE id IN (${ids}) ORDER BY id FOR NO KEY UPDATE
)`
  // A checkpoint that finds its key already final (a retried commit) is accepted as written.
  // Data-modifying CTEs always run; the notify CTE is a SELECT, so it runs only when referenced.
  const transitionsResult = `SELECT 'tr' AS kind, id AS run_id, NULL AS key FROM moved
UNION ALL SELECT 'n', NULL, NULL FROM (SELECT count(*) AS c FROM notified) AS forced WHERE forced.c < 0`
  /** Whether the run `r` may be claimed now (its message is due): pending, woken, or its lease lost. */
  const claimable = `
      (r.status = 'pending' AND (r.wake_at IS NULL OR r.wake_at <= now()))
      OR (r.status = 'suspended' AND r.wake_at <= now())
      OR (r.status = 'running' AND r.lease_expires_at < now())`.slice(1)
  /**
   * What a named queue's claim would take (`$1` run queue, `$5` workflow keys, `$7` queue, `$8` and
   * `$9` its limits, `$10` the window): `live`, the runs holding a slot; `candidates`, the oldest due
   * messages of its workflows and whether their run is claimable; `ranked`, the claimable ones
   * numbered within their key; `allowed`, those their key's limit lets through, numbered in claim
   * order (priority, then due order). The queue's own limit is applied by what follows.
   */
  const flowPlan = `live AS MATERIALIZED (
  SELECT f.run_id, f.key FROM ${s}.flow_slots f JOIN ${s}.runs r ON r.id = f.run_id
  WHERE f.queue = $7 AND r.lease_owner = f.token AND r.status = 'running' AND r.lease_expires_at > now()
), candidates AS MATERIALIZED (
  SELECT m.msg_id, m.vt, m.run_id, r.concurrency_key AS key, coalesce(r.priority, 0) AS priority,
    coalesce(${workflowKey("r.workflow", "r.version")} = ANY($5::text[]) AND (${claimable}), false) AS claimable,
    coalesce(r.executions = 0, false) AS fresh, CASE WHEN $13::boolean THEN coalesce(r.concurrency_key, '') ELSE '' END
      AS bucket
  FROM ${dueOfKeys(s, "q.msg_id, q.vt, q.message->>'run' AS run_id", "$10", false)} m
  LEFT JOIN ${s}.runs r ON r.id = m.run_id
), recent AS MATERIALIZED (
  -- The starts within the rate limit's period, per bucket (the key, or '' for the whole queue). The
  -- clock of the statement, not of its transaction, which began before the queue's lock was taken.
  SELECT fs.key AS bucket, count(*) AS n FROM ${s}.flow_starts fs
  WHERE $11::int IS NOT NULL AND fs.queue = $7
    AND fs.started_at > clock_timestamp() - $12::float8 * interval '1 millisecond'
  GROUP BY 1
), ranked AS (
  SELECT c.*, row_number() OVER (PARTITION BY c.key ORDER BY c.priority DESC, c.vt, c.msg_id) AS of_key,
    row_number() OVER (PARTITION BY c.bucket, c.fresh ORDER BY c.priority DESC, c.vt, c.msg_id) AS of_bucket
  FROM candidates c WHERE c.claimable
), allowed AS (
  SELECT a.msg_id, row_number() OVER (ORDER BY a.priority DESC, a.vt, a.msg_id) AS nth FROM ranked a
  WHERE ($9::int IS NULL OR a.key IS NULL
      OR a.of_key + (SELECT count(*) FROM live l WHERE l.key = a.key) <= $9::int)
    AND ($11::int IS NULL OR NOT a.fresh
      OR a.of_bucket + coalesce((SELECT n FROM recent WHERE recent.bucket = a.bucket), 0) <= $11::int)
)`
  /**
   * A claim after its `due` CTE (the messages to read): hide them for the lease, claim their runs
   * that are due, and return each message with its run (claimed, or as it is now). `returning`: more
   * columns of the claimed runs, for `ctes`, more CTEs after `claimed`.
   */
  const claimTail = (returning = "", ctes = "") =>
    `msgs AS (
  UPDATE ${s}.queue_messages m SET vt = now() + $3 ${ms}, read_ct = m.read_ct + 1
  FROM due WHERE m.msg_id = due.msg_id
  RETURNING m.msg_id, m.read_ct, m.message->>'run' AS run_id, m.message->>'workflow' AS message_workflow
), claimed AS (
  UPDATE ${s}.runs r SET
    status = 'running',
    lease_owner = $4 || ':' || m.msg_id || ':' || m.read_ct,
    lease_expires_at = now() + $3 ${ms},
    executions = r.executions + 1,
    recoveries = r.recoveries + CASE WHEN r.status = 'running' THEN 1 ELSE 0 END,
    started_at = coalesce(r.started_at, now()),
    wake_at = NULL,
    msg_id = m.msg_id,
    updated_at = now()
  FROM msgs m
  WHERE r.id = m.run_id
    AND ${workflowKey("r.workflow", "r.version")} = ANY($5::text[])
    AND (
${claimable}
    )
  RETURNING r.id, r.workflow, r.version, r.status, r.input, r.executions, r.recoveries, r.events, r.deadline_at,
    r.trace, r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.forked_from, r.forked_at, r.created_at,
    r.updated_at, r.started_at, r.completed_at${returning}, m.msg_id AS claimed_msg_id
)${ctes}
SELECT m.msg_id, m.read_ct, m.run_id, c.id, c.workflow, c.version, c.status, c.executions, c.recoveries, c.events,
  c.deadline_at, c.trace, c.lease_owner, c.lease_expires_at, c.wake_at, c.parent_id, c.forked_from, c.forked_at,
  c.created_at, c.updated_at, c.started_at, c.completed_at,
  CASE WHEN octet_length(v.input) <= $6 THEN v.input END AS input_text, octet_length(v.input) AS input_bytes,
  extract(epoch FROM now()) * 1000 AS now_ms,
  cur.status AS current_status, cur.lease_expires_at AS current_lease, cur.wake_at AS current_wake
FROM msgs m
LEFT JOIN claimed c ON c.claimed_msg_id = m.msg_id
LEFT JOIN LATERAL (SELECT c.input::text AS input) v ON true
LEFT JOIN ${s}.runs cur ON cur.id = m.run_id`
  /**
   * `createRuns`, writing the runs of `source`, a row per run (its columns are named after it). Two
   * sources: arrays of any length (`unnest`), and one run from scalars. Only the scalar form gets a
   * generic plan: the planner sizes `unnest` of a parameter at 10 rows, so the custom plan of the
   * array form (its length known at bind) looks cheaper for fewer, and a lone start would be planned
   * again every time (0.45 ms of the database's CPU per start, measured; docs/PERFORMANCE.md).
   */
  const createRuns = (source: string) => `
WITH input AS (
  SELECT t.id, t.workflow, t.input::jsonb AS input, t.delay_ms, t.parent_id, t.owner, t.lease_ms, t.ord,
         t.trace::jsonb AS trace, t.concurrency_key, coalesce(t.priority, 0) AS priority,
         least(to_timestamp(t.deadline_ms / 1000.0), now() + t.timeout_ms ${ms}) AS deadline_at,
         -- Without a version (runs from SQL, schedulers): the newest a live worker serves.
         CASE WHEN t.version IS NOT NULL THEN t.version ELSE ${newestServed(s, "$8", "t.workflow")} END AS version,
         nextval('${schema}.queue_msg_id_seq') AS msg_id,
         -- An id given twice is created by its first occurrence only.
         row_number() OVER (PARTITION BY t.id ORDER BY t.ord) = 1 AS first_of_id
  FROM ${source} AS t(id, workflow, input, delay_ms, parent_id, owner, lease_ms, deadline_ms, timeout_ms, trace,
      version, concurrency_key, priority, ord)
), inserted AS (
  INSERT INTO ${s}.runs AS r
    (id, workflow, version, status, input, wake_at, parent_id, msg_id, lease_owner, lease_expires_at, executions,
     started_at, deadline_at, trace, concurrency_key, priority)
  SELECT id, workflow, version,
         CASE WHEN owner IS NULL THEN 'pending' ELSE 'running' END,
         input,
         CASE WHEN delay_ms > 0 THEN now() + delay_ms ${ms} END,
         parent_id, msg_id, owner,
         CASE WHEN owner IS NOT NULL THEN now() + lease_ms ${ms} END,
         CASE WHEN owner IS NOT NULL THEN 1 ELSE 0 END,
         CASE WHEN owner IS NOT NULL THEN now() END,
         deadline_at, trace, concurrency_key, priority
  FROM input WHERE first_of_id
  ON CONFLICT (id) DO NOTHING
  RETURNING r.id, r.workflow, r.version, r.status, r.executions, r.recoveries, r.events, r.deadline_at, r.trace,
    r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.msg_id, r.created_at, r.updated_at, r.started_at
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $8, coalesce(lease_expires_at, wake_at, now()),
    jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM inserted
  RETURNING msg_id
), notified AS (
  SELECT pg_notify($9, 'run') AS n
  FROM (SELECT 1 FROM inserted WHERE lease_expires_at IS NULL AND wake_at IS NULL LIMIT 1) AS runnable
)
SELECT i.id, ins.id IS NOT NULL AS created, coalesce(ins.workflow, existing.workflow) AS workflow, ins.version,
  ins.status, ins.executions, ins.recoveries, ins.events, ins.deadline_at, ins.trace, ins.lease_owner, ins.lease_expires_at,
  ins.wake_at, ins.parent_id, ins.msg_id, ins.created_at, ins.updated_at, ins.started_at,
  extract(epoch FROM now()) * 1000 AS now_ms
FROM input i
LEFT JOIN inserted ins ON ins.id = i.id AND i.first_of_id
LEFT JOIN ${s}.runs existing ON existing.id = i.id
CROSS JOIN (SELECT count(*) FROM notified) AS forced
ORDER BY i.ord`
  return {
    createRuns: createRuns(
      `unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::float8[],
    $10::float8[], $11::float8[], $12::text[], $13::int[], $14::text[], $15::int[]) WITH ORDINALITY`
    ),
    /** `createRuns` of one run, its parameters scalars (`createRuns`'s elements). */
    createRun: createRuns(`(SELECT $1::text, $2::text, $3::text, $4::float8, $5::text, $6::text, $7::float8,
    $10::float8, $11::float8, $12::text, $13::int, $14::text, $15::int, 1::bigint)`),
    // Only messages of the workflow versions this worker registers are read (by their key, see
    // `internal/versions.ts`); a run's input is returned as text only when it fits $6 bytes (its size
    // otherwise).
    claim: `
WITH due AS (
  SELECT m.msg_id FROM ${dueOfKeys(s, "q.msg_id, q.vt", "$2", true)} m
), ${claimTail()}`,
    /**
     * The claim of a named queue (`FlowQueue`): `claim` after a `due` of its own. Among the oldest
     * `$10` due messages of the queue's workflows, the claimable runs highest priority first (then in
     * due order), as many as the queue's limits leave room for: `$8` runs at once and `$9` per
     * concurrency key (`NULL`: no limit), counting the runs that hold a slot (a row of `flow_slots`
     * whose run still has that claim's live lease). Messages whose run cannot be claimed (ended,
     * owned) are read as well, so the claim fixes them as `claim` does. The claims of a limited queue
     * run one at a time (`flowLock` first, in the same transaction), so each counts what the one
     * before it claimed; it deletes the rows of runs that gave their slot back (ended, parked, handed
     * back) and writes one for each run it claims.
     */
    flowClaim: `
WITH ${flowPlan}, freed AS (
  -- A candidate's own row stays: its claim writes it again.
  DELETE FROM ${s}.flow_slots f WHERE f.queue = $7
    AND NOT EXISTS (
      SELECT 1 FROM ${s}.runs r WHERE r.id = f.run_id AND r.lease_owner = f.token AND r.status = 'running')
    AND NOT EXISTS (SELECT 1 FROM candidates c WHERE c.run_id = f.run_id)
), chosen AS (
  SELECT msg_id FROM allowed
  WHERE nth <= least($2::int, coalesce($8::int - (SELECT count(*) FROM live)::int, $2::int))
  UNION ALL SELECT msg_id FROM candidates WHERE NOT claimable
), due AS (
  SELECT q.msg_id FROM ${s}.queue_messages q WHERE q.msg_id IN (SELECT msg_id FROM chosen)
  FOR UPDATE SKIP LOCKED
), ${
      claimTail(
        ", r.concurrency_key",
        `, slots AS (
  INSERT INTO ${s}.flow_slots (run_id, queue, key, token)
  SELECT c.id, $7, c.concurrency_key, c.lease_owner FROM claimed c
  ON CONFLICT (run_id) DO UPDATE SET queue = EXCLUDED.queue, key = EXCLUDED.key, token = EXCLUDED.token,
    claimed_at = now()
), starts AS (
  -- A run's first execution is a start, for the rate limit.
  INSERT INTO ${s}.flow_starts (queue, key, started_at)
  SELECT $7, CASE WHEN $13::boolean THEN coalesce(c.concurrency_key, '') ELSE '' END, clock_timestamp() FROM claimed c
  WHERE $11::int IS NOT NULL AND c.executions = 1
), expired AS (
  DELETE FROM ${s}.flow_starts fs
  WHERE fs.queue = $7 AND fs.started_at <= clock_timestamp() - coalesce($12::float8, 0) * interval '1 millisecond'
)`
      )
    }`,
    /** Serializes the starts with one deduplication key (`$1`: its lock name). */
    dedupLock: `SELECT pg_advisory_xact_lock(${dedupLockSpace}, hashtext($1))`,
    /**
     * The run a start with deduplication key `$2` of workflow `$1` returns instead of starting one:
     * the latest started with the key, while it is pending (or, with `$3`, not ended).
     */
    dedupFind: `
SELECT r.id FROM ${s}.run_dedup d JOIN ${s}.runs r ON r.id = d.run_id
WHERE d.workflow = $1 AND d.key = $2
  AND (r.status = 'pending' OR ($3::boolean AND r.status IN ('running', 'suspended')))`,
    /**
     * Debounce: the run key `$2` of workflow `$1` names, if it never executed, gets input `$3` and
     * starts `$4` ms from now, but no later than the key's `until_at` (its first start and the
     * maximum delay; `NULL`: none); its message with it. A claim that meets it meanwhile finds it not
     * due (and defers its message).
     */
    debounce: `
WITH target AS (
  SELECT r.id, least(now() + $4::float8 ${ms}, d.until_at) AS wake
  FROM ${s}.run_dedup d JOIN ${s}.runs r ON r.id = d.run_id
  WHERE d.workflow = $1 AND d.key = $2 AND r.status = 'pending' AND r.executions = 0
), moved AS (
  UPDATE ${s}.runs r SET input = $3::jsonb, wake_at = t.wake, updated_at = now() FROM target t
  WHERE r.id = t.id AND r.status = 'pending' AND r.executions = 0
  RETURNING r.id, r.msg_id, r.wake_at
), shown AS (
  UPDATE ${s}.queue_messages q SET vt = m.wake_at FROM moved m WHERE q.msg_id = m.msg_id
)
SELECT id FROM moved`,
    /**
     * Records run `$3` as the latest started with deduplication key `$2` of workflow `$1`; a debounced
     * one may be pushed back until `$4` ms from now (`NULL`: no limit).
     */
    dedupRecord: `
INSERT INTO ${s}.run_dedup (workflow, key, run_id, until_at) VALUES ($1, $2, $3, now() + $4::float8 ${ms})
ON CONFLICT (workflow, key) DO UPDATE SET run_id = EXCLUDED.run_id, until_at = EXCLUDED.until_at, updated_at = now()`,
    /** Serializes the claims of a limited named queue (`$1`: the queue's lock name). */
    flowLock: `SELECT pg_advisory_xact_lock(${flowLockSpace}, hashtext($1))`,
    /**
     * A named queue's state (the parameters of `flowClaim`, unused ones aside): its due messages, the
     * runs holding a slot by concurrency key, and the claimable runs its limits hold back.
     */
    queueState: `
WITH ${flowPlan},
-- The claim's parameters this statement does not use, typed (a statement must type all it has).
unused AS (SELECT $2::int, $3::float8, $4::text, $6::int, $11::int, $12::float8, $13::boolean)
SELECT 'due' AS kind, NULL::text AS key, count(*)::int AS n FROM ${s}.queue_messages q
WHERE q.queue = $1 AND q.vt <= now() AND q.message->>'workflow' = ANY($5::text[])
UNION ALL SELECT 'running', l.key, count(*)::int FROM live l GROUP BY l.key
UNION ALL SELECT 'throttled', NULL, ((SELECT count(*) FROM ranked) - (SELECT count(*) FROM allowed
  WHERE nth <= coalesce($8::int - (SELECT count(*) FROM live)::int, nth)))::int`,
    fixMessages: `
WITH fix AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS f(msg_id, action, at_ms)
), removed AS (
  DELETE FROM ${s}.queue_messages q USING fix f WHERE q.msg_id = f.msg_id AND f.action = 'delete' RETURNING q.msg_id
), deferred AS (
  UPDATE ${s}.queue_messages q
  SET vt = CASE WHEN f.at_ms IS NULL THEN 'infinity'::timestamptz ELSE to_timestamp(f.at_ms / 1000.0) END
  FROM fix f WHERE q.msg_id = f.msg_id AND f.action = 'defer'
  RETURNING q.msg_id
)
SELECT (SELECT count(*) FROM removed) AS removed, (SELECT count(*) FROM deferred) AS deferred`,
    journal: `
SELECT st.run_id, st.key, st.name, st.input_hash, st.status, st.attempts, st.wake_at, st.started_at, st.completed_at,
  st.transactional,
  CASE WHEN octet_length(v.output) <= $2 THEN v.output END AS output_text,
  CASE WHEN octet_length(v.error) <= $2 THEN v.error END AS error_text,
  greatest(octet_length(v.output), octet_length(v.error)) AS value_bytes
FROM ${s}.steps st CROSS JOIN LATERAL (SELECT st.output::text AS output, st.error::text AS error) v
WHERE st.run_id = ANY($1::text[])`,
    checkpoints: `
WITH ${lock("SELECT unnest($1::text[])")}, ${checkpointCtes(schema)}
SELECT 'cp' AS kind, run_id, key FROM accepted`,
    transitions: `
WITH ${lock("SELECT unnest($1::text[])")}, ${transitionCtes(schema, 1)}
${transitionsResult}`,
    commit: `
WITH ${lock("SELECT unnest($1::text[]) UNION SELECT unnest($11::text[])")}, ${checkpointCtes(schema)},
${transitionCtes(schema, 11)}
SELECT 'cp' AS kind, run_id, key FROM accepted
UNION ALL ${transitionsResult}`,
    /** `checkpoints`, `transitions` and `commit` of one checkpoint and one transition, from scalars. */
    checkpoint: `
WITH ${lock("$1::text")}, ${checkpointCtes(schema, false, true)}
SELECT 'cp' AS kind, run_id, key FROM accepted`,
    transition: `
WITH ${lock("$1::text")}, ${transitionCtes(schema, 1, true)}
${transitionsResult}`,
    commitOne: `
WITH ${lock("$1::text, $11::text")}, ${checkpointCtes(schema, false, true)},
${transitionCtes(schema, 11, true)}
SELECT 'cp' AS kind, run_id, key FROM accepted
UNION ALL ${transitionsResult}`,
    heartbeat: `
WITH lease AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS l(run_id, token, msg_id)
), renewed AS (
  UPDATE ${s}.runs r SET lease_expires_at = now() + $4 ${ms}
  FROM lease l
  WHERE r.id = l.run_id AND r.lease_owner = l.token AND r.status = 'running'
  RETURNING l.token, l.msg_id
), hidden AS (
  UPDATE ${s}.queue_messages q SET vt = now() + $4 ${ms}
  FROM renewed WHERE q.msg_id = renewed.msg_id
  RETURNING q.msg_id
)
SELECT token FROM renewed CROSS JOIN (SELECT count(*) FROM hidden) AS forced`,
    cancel: `
WITH RECURSIVE tree AS (
  SELECT id FROM ${s}.runs WHERE id = $1
  UNION
  SELECT c.id FROM ${s}.runs c JOIN tree t ON c.parent_id = t.id
), cancelled AS (
  UPDATE ${s}.runs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, wake_at = NULL,
    completed_at = now(), updated_at = now()
  WHERE id IN (SELECT id FROM tree) AND status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING id, msg_id, parent_id, workflow, version, created_at
), listed AS (
  INSERT INTO ${s}.cancelled_runs (run_id, workflow, version, created_at)
  SELECT id, workflow, version, created_at FROM cancelled
  ON CONFLICT (run_id) DO UPDATE SET cancelled_at = now()
), removed AS (
  DELETE FROM ${s}.queue_messages q USING cancelled c WHERE q.msg_id = c.msg_id RETURNING q.msg_id
), woken AS (
  -- A parent (outside the cancelled tree) waiting for the cancelled run is woken.
  UPDATE ${s}.runs p SET events = p.events + 1,
    wake_at = CASE WHEN p.status = 'suspended' THEN now() ELSE p.wake_at END, updated_at = now()
  FROM cancelled c
  WHERE c.id = $1 AND p.id = c.parent_id AND p.status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING p.status, p.msg_id
), woken_messages AS (
  UPDATE ${s}.queue_messages q SET vt = now() FROM woken w WHERE q.msg_id = w.msg_id AND w.status = 'suspended'
), notified AS (
  SELECT pg_notify($2, 'cancel:' || id) AS n FROM cancelled
  UNION ALL SELECT pg_notify($2, 'run') FROM woken
)
SELECT EXISTS (SELECT 1 FROM cancelled WHERE id = $1) AS cancelled,
  (SELECT status FROM ${s}.runs WHERE id = $1) AS status,
  (SELECT count(*) FROM removed) + (SELECT count(*) FROM notified) AS forced`,
    sendSignal: `
WITH target AS (
  SELECT id, status FROM ${s}.runs WHERE id = $1 FOR NO KEY UPDATE
), inserted AS (
  INSERT INTO ${s}.signals (run_id, name, payload)
  SELECT id, $2, $3::jsonb FROM target WHERE status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING run_id
), woken AS (
  UPDATE ${s}.runs r SET events = r.events + 1,
    wake_at = CASE WHEN r.status = 'suspended' THEN now() ELSE r.wake_at END, updated_at = now()
  FROM inserted i WHERE r.id = i.run_id
  RETURNING r.status, r.msg_id
), woken_messages AS (
  UPDATE ${s}.queue_messages q SET vt = now() FROM woken w WHERE q.msg_id = w.msg_id AND w.status = 'suspended'
), notified AS (
  SELECT pg_notify($4, 'run') AS n FROM woken WHERE status = 'suspended'
)
SELECT (SELECT status FROM target) AS status, EXISTS (SELECT 1 FROM inserted) AS sent,
  (SELECT count(*) FROM notified) AS forced`,
    takeSignal: `
WITH owned AS (
  SELECT id FROM ${s}.runs WHERE id = $1 AND lease_owner = $2 FOR NO KEY UPDATE
), oldest AS (
  SELECT sg.id FROM ${s}.signals sg JOIN owned o ON sg.run_id = o.id
  WHERE sg.name = $6 AND sg.consumed_key IS NULL
  ORDER BY sg.id LIMIT 1 FOR UPDATE
), taken AS (
  UPDATE ${s}.signals sg SET consumed_key = $3, consumed_at = now() FROM oldest o WHERE sg.id = o.id
  RETURNING sg.payload
), written AS (
  INSERT INTO ${s}.steps AS st (run_id, key, name, input_hash, status, output, attempts, completed_at)
  SELECT $1, $3, $4, $5, 'completed', jsonb_build_object('signal', payload), 1, now() FROM taken
  ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed', output = EXCLUDED.output, error = NULL,
    completed_at = now(), wake_at = NULL
  WHERE st.status NOT IN ('completed', 'failed')
)
SELECT EXISTS (SELECT 1 FROM owned) AS owned, EXISTS (SELECT 1 FROM taken) AS taken,
  (SELECT payload FROM taken) AS payload`,
    setEvent: `
WITH owned AS (
  SELECT id FROM ${s}.runs WHERE id = $1 AND lease_owner = $2 FOR NO KEY UPDATE
), written AS (
  INSERT INTO ${s}.steps (run_id, key, name, input_hash, status, attempts, completed_at)
  SELECT id, $3, $4, $5, 'completed', 1, now() FROM owned
  ON CONFLICT (run_id, key) DO NOTHING
  RETURNING run_id
), published AS (
  INSERT INTO ${s}.events (run_id, key, value) SELECT run_id, $6, $7::jsonb FROM written
  ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
), notified AS (
  SELECT pg_notify($8, 'event:' || run_id) AS n FROM written
)
SELECT EXISTS (SELECT 1 FROM owned) AS owned, (SELECT count(*) FROM notified) AS forced`,
    getEvent: `SELECT value, updated_at FROM ${s}.events WHERE run_id = $1 AND key = $2`,
    retry: `
WITH restarted AS (
  UPDATE ${s}.runs SET status = 'pending', error = NULL, completed_at = NULL, recoveries = 0, wake_at = NULL,
    lease_owner = NULL, lease_expires_at = NULL, events = events + 1, updated_at = now(),
    msg_id = nextval('${schema}.queue_msg_id_seq')
  WHERE id = $1 AND status = 'failed'
  RETURNING id, workflow, version, msg_id
), unlisted AS (
  DELETE FROM ${s}.failed_runs f USING restarted r WHERE f.run_id = r.id
), dropped AS (
  -- The failed entries run again; compensations that ran after the failure are forgotten with it.
  DELETE FROM ${s}.steps st USING restarted r
  WHERE st.run_id = r.id AND (st.status IN ('failed', 'running', 'retrying') OR st.key LIKE 'c%')
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $2, now(), jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM restarted
), notified AS (SELECT pg_notify($3, 'run') AS n FROM restarted)
SELECT EXISTS (SELECT 1 FROM restarted) AS restarted, (SELECT status FROM ${s}.runs WHERE id = $1) AS status,
  (SELECT count(*) FROM notified) AS forced`,
    resume: `
WITH RECURSIVE tree AS (
  SELECT id FROM ${s}.runs WHERE id = $1 AND status = 'cancelled'
  UNION
  SELECT c.id FROM ${s}.runs c JOIN tree t ON c.parent_id = t.id WHERE c.status = 'cancelled'
), resumed AS (
  UPDATE ${s}.runs SET status = 'pending', completed_at = NULL, wake_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL, events = events + 1, updated_at = now(),
    msg_id = nextval('${schema}.queue_msg_id_seq')
  WHERE id IN (SELECT id FROM tree)
  RETURNING id, workflow, version, msg_id
), unlisted AS (
  DELETE FROM ${s}.cancelled_runs c USING resumed r WHERE c.run_id = r.id
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $2, now(), jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM resumed
), notified AS (SELECT pg_notify($3, 'run') AS n FROM (SELECT 1 FROM resumed LIMIT 1) x)
SELECT EXISTS (SELECT 1 FROM resumed WHERE id = $1) AS restarted,
  (SELECT status FROM ${s}.runs WHERE id = $1) AS status, (SELECT count(*) FROM notified) AS forced`,
    transactionalCheckpoint: `
WITH ${lock("SELECT unnest($1::text[])")}, ${checkpointCtes(schema, true)}
SELECT 'cp' AS kind, run_id, key FROM accepted`,
    getRun: `
SELECT r.id, r.workflow, r.version, r.status, r.executions, r.recoveries, r.events, r.deadline_at, r.trace,
  r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.forked_from, r.forked_at, r.msg_id, r.created_at,
  r.updated_at, r.started_at, r.completed_at,
  CASE WHEN octet_length(v.output) <= $2 THEN v.output END AS output_text,
  CASE WHEN octet_length(v.error) <= $2 THEN v.error END AS error_text,
  greatest(octet_length(v.output), octet_length(v.error)) AS value_bytes
FROM ${s}.runs r
CROSS JOIN LATERAL (SELECT CASE WHEN r.status = 'completed' THEN r.output::text END AS output,
  CASE WHEN r.status = 'failed' THEN r.error::text END AS error) v
WHERE r.id = $1`,
    getInput: `
SELECT CASE WHEN octet_length(v.input) <= $2 THEN v.input END AS input_text, octet_length(v.input) AS input_bytes
FROM ${s}.runs r CROSS JOIN LATERAL (SELECT r.input::text AS input) v WHERE r.id = $1`,
    reads: makeReads(schema),
    // The oldest runs of a filter, with the count of all that match (the window runs before LIMIT).
    findRuns: `
SELECT id, count(*) OVER () AS total
FROM ${s}.runs
WHERE workflow = $1
  AND ($2::int IS NULL OR version = $2)
  AND status = ANY($3::text[])
  AND ($4::float8 IS NULL OR created_at >= to_timestamp($4 / 1000.0))
  AND ($5::float8 IS NULL OR created_at < to_timestamp($5 / 1000.0))
ORDER BY created_at, id
LIMIT $6`,
    // A new run from an original: its input copied in the database (never through the client), the
    // chosen journal entries with it, and its queue message; the original is only read.
    forkRun: `
WITH source AS (
  SELECT id, workflow, input, concurrency_key, priority FROM ${s}.runs WHERE id = $1
), inserted AS (
  INSERT INTO ${s}.runs (id, workflow, version, status, input, msg_id, forked_from, forked_at, deadline_at,
    concurrency_key, priority)
  SELECT $2, workflow, $3, 'pending', input, nextval('${schema}.queue_msg_id_seq'), id, $5,
    now() + $6::float8 ${ms}, concurrency_key, priority
  FROM source
  ON CONFLICT (id) DO NOTHING
  RETURNING id, workflow, version, msg_id
), copied AS (
  INSERT INTO ${s}.steps (run_id, key, name, input_hash, status, output, error, attempts, wake_at, started_at,
    completed_at, transactional)
  SELECT i.id, st.key, st.name, st.input_hash, st.status, st.output, st.error, st.attempts, st.wake_at,
    st.started_at, st.completed_at, st.transactional
  FROM inserted i JOIN ${s}.steps st ON st.run_id = $1 AND st.key = ANY($4::text[])
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $7, now(), jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM inserted
), notified AS (SELECT pg_notify($8, 'run') AS n FROM inserted)
SELECT EXISTS (SELECT 1 FROM source) AS found, EXISTS (SELECT 1 FROM inserted) AS created,
  existing.workflow, existing.forked_from, existing.forked_at, (SELECT count(*) FROM notified) AS forced
FROM (SELECT 1) AS one
LEFT JOIN ${s}.runs existing ON existing.id = $2 AND NOT EXISTS (SELECT 1 FROM inserted)`,
    // Every run that has not ended has its message on the queue, so the queue alone answers.
    inFlight: `
SELECT message->>'workflow' AS key, count(*)::int AS runs
FROM ${s}.queue_messages WHERE queue = $1 GROUP BY 1 ORDER BY 1`,
    nextWakeup: `
SELECT extract(epoch FROM (min(vt) - now())) * 1000 AS ms
FROM ${s}.queue_messages WHERE queue = $1 AND vt > now() AND vt < 'infinity'::timestamptz`,
    announceWorker: `
WITH forgotten AS (
  DELETE FROM ${s}.workers WHERE expires_at < now() - interval '1 hour'
)
INSERT INTO ${s}.workers (id, queue, workflows, expires_at) VALUES ($1, $2, $3::text[], now() + $4 ${ms})
ON CONFLICT (id) DO UPDATE SET workflows = EXCLUDED.workflows, heartbeat_at = now(), expires_at = EXCLUDED.expires_at`,
    retireWorker: `DELETE FROM ${s}.workers WHERE id = $1`,
    hasWorkerFor: `
SELECT EXISTS (
  SELECT 1 FROM ${s}.workers WHERE queue = $1 AND expires_at > now() AND $2 = ANY(workflows)
) AS served`,
    unclaimed: `
SELECT m.message->>'workflow' AS key, count(*)::int AS runs
FROM ${s}.queue_messages m
WHERE m.queue = $1 AND m.vt <= now() - $2 ${ms}
  AND NOT EXISTS (
    SELECT 1 FROM ${s}.workers w
    WHERE w.queue = $1 AND w.expires_at > now() AND (m.message->>'workflow') = ANY(w.workflows))
GROUP BY 1 ORDER BY 1`
  }
}

/** Where a purge walks: `runs`, or the table of failed or of cancelled runs when it purges that state alone. */
export type PurgeSource = "runs" | "failed" | "cancelled"

/** Which of the filters a purge has: every workflow, or one. */
export type PurgeScope = "all" | "workflow"

/** The parameters of the purge statements. */
export type PurgeParam = "workflow" | "statuses" | "after_us" | "after_id" | "before_us" | "limit"

export const purgeSource = (statuses: ReadonlyArray<Status>): PurgeSource =>
  statuses.length === 1 && statuses[0] === "failed"
    ? "failed"
    : statuses.length === 1 && statuses[0] === "cancelled"
    ? "cancelled"
    : "runs"

/**
 * The statements of a purge batch (docs/ARCHITECTURE.md, "Retention"), one per source and scope:
 *
 * - `scanned`: the next `{limit}` rows of an index walk in creation order, after the cursor and before
 *   the cutoff (`{before_us}`, never later than `now()`): `(created_at, id)` of `runs`, of
 *   `failed_runs` or of `cancelled_runs`, or for one workflow their `(workflow, version, created_at,
 *   id)` walked per version (found by a loose index scan) and merged. The batch reads these rows and
 *   no others, whatever the history, and the last of them is the next cursor;
 * - `roots`: those that are top-level runs (no parent stored) in one of `{statuses}`, ended before
 *   the cutoff; `tree`: each with its descendants (the index of `parent_id`);
 * - `locked`: the rows of the trees still ended before the cutoff, locked `FOR UPDATE SKIP LOCKED`:
 *   a row locked by anything else (a retry, a resume, a signal, a stale worker) is skipped, never
 *   waited for, and a row changed since the snapshot is checked again as it now is, so a run
 *   restarted meanwhile drops out;
 * - `doomed`: the trees whose every run is locked; they are deleted with their journals, signals,
 *   events, archived messages, rows of `failed_runs` and `cancelled_runs` and their flow-control rows
 *   (`run_dedup`, `flow_slots`), each by an index on the run's id.
 */
export const makePurge = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  const cutoff = `least(timestamptz 'epoch' + {before_us}::bigint * interval '1 microsecond', now())`
  const walk = (source: PurgeSource, scope: PurgeScope) => {
    const table = source === "runs" ? `${s}.runs` : source === "failed" ? `${s}.failed_runs` : `${s}.cancelled_runs`
    const id = source === "runs" ? "id" : "run_id"
    const page = (where: ReadonlyArray<string>) =>
      `SELECT t.${id} AS id, t.created_at, (extract(epoch FROM t.created_at) * 1000000)::bigint::text AS created_us
  FROM ${table} t
  WHERE ${
        [
          ...where,
          `(t.created_at, t.${id}) > (coalesce(timestamptz 'epoch' + {after_us}::bigint * interval '1 microsecond',
    '-infinity'::timestamptz), coalesce({after_id}::text, ''))`,
          `t.created_at < ${cutoff}`
        ].join("\n    AND ")
      }
  ORDER BY t.created_at, t.${id} LIMIT {limit}`
    return scope === "all"
      ? { ctes: [] as ReadonlyArray<string>, scanned: page([]) }
      : {
        ctes: [versionsOf(table)],
        scanned: `SELECT p.* FROM keys k CROSS JOIN LATERAL (
  ${page(["t.workflow = {workflow}::text", "t.version = k.version"])}
) p
ORDER BY p.created_at, p.id LIMIT {limit}`
      }
  }
  const statement = (source: PurgeSource, scope: PurgeScope): Named<PurgeParam> => {
    const { ctes, scanned } = walk(source, scope)
    const ids = (cte: string) => `(SELECT coalesce(array_agg(id), '{}') FROM ${cte})::text[]`
    return named(`WITH RECURSIVE ${
      [
        ...ctes,
        `scanned AS MATERIALIZED (
${scanned}
)`,
        `roots AS MATERIALIZED (
  SELECT r.id FROM scanned sc JOIN ${s}.runs r ON r.id = sc.id
  WHERE r.status = ANY({statuses}::text[]) AND r.completed_at < ${cutoff}
    AND (r.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM ${s}.runs p WHERE p.id = r.parent_id))
)`,
        `tree AS (
  SELECT id AS root, id FROM roots
  UNION
  SELECT t.root, c.id FROM tree t JOIN ${s}.runs c ON c.parent_id = t.id
)`,
        `locked AS MATERIALIZED (
  SELECT r.id FROM ${s}.runs r
  WHERE r.id = ANY(${ids("tree")}) AND r.status IN ('completed', 'failed', 'cancelled')
    AND r.completed_at < ${cutoff}
  ORDER BY r.id
  FOR UPDATE SKIP LOCKED
)`,
        `doomed AS MATERIALIZED (
  SELECT coalesce(array_agg(t.id), '{}') AS ids FROM tree t
  WHERE NOT EXISTS (
    SELECT 1 FROM tree u WHERE u.root = t.root AND NOT EXISTS (SELECT 1 FROM locked l WHERE l.id = u.id))
)`,
        `steps AS (DELETE FROM ${s}.steps st WHERE st.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `signals AS (DELETE FROM ${s}.signals sg WHERE sg.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `events AS (DELETE FROM ${s}.events ev WHERE ev.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `failed AS (DELETE FROM ${s}.failed_runs f WHERE f.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `cancelled AS (DELETE FROM ${s}.cancelled_runs c WHERE c.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `archived AS (
  DELETE FROM ${s}.queue_archive a WHERE a.message ? 'run' AND a.message->>'run' = ANY((SELECT ids FROM doomed)::text[])
  RETURNING 1
)`,
        // The flow-control rows of a run (docs/ARCHITECTURE.md, "Queues and flow control"): the
        // latest run of a deduplication key, and a slot not given back yet.
        `dedup AS (DELETE FROM ${s}.run_dedup d WHERE d.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `slots AS (DELETE FROM ${s}.flow_slots fs WHERE fs.run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`,
        `deleted AS (DELETE FROM ${s}.runs r WHERE r.id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)`
      ].join(",\n")
    }
SELECT (SELECT count(*) FROM scanned)::int AS scanned,
  (SELECT created_us FROM scanned ORDER BY created_at DESC, id DESC LIMIT 1) AS last_us,
  (SELECT id FROM scanned ORDER BY created_at DESC, id DESC LIMIT 1) AS last_id,
  (SELECT count(*) FROM deleted)::int AS runs,
  ((SELECT count(*) FROM deleted) + (SELECT count(*) FROM steps) + (SELECT count(*) FROM signals)
    + (SELECT count(*) FROM events) + (SELECT count(*) FROM failed) + (SELECT count(*) FROM cancelled)
    + (SELECT count(*) FROM archived) + (SELECT count(*) FROM dedup) + (SELECT count(*) FROM slots))::int AS rows`)
  }
  const sources: ReadonlyArray<PurgeSource> = ["runs", "failed", "cancelled"]
  return Object.fromEntries(
    sources.map((source) => [source, { all: statement(source, "all"), workflow: statement(source, "workflow") }])
  ) as Record<PurgeSource, Record<PurgeScope, Named<PurgeParam>>>
}
