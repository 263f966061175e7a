/**
 * The SQL of what the dashboard reads (`internal/views.ts`), in the configured schema (an
 * `Identifier`), every value a bound parameter. Each statement is bounded by what it returns, not by
 * the history the tables hold; `test/Views.pg.test.ts` checks their plans on a long history.
 */
import * as Identifier from "pgflows/Identifier"

/** A timestamptz column as ISO 8601 text in UTC, with microseconds. */
const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

/** A stored JSON value, unless it is larger than the dashboard should load (then its size). */
const bounded = (column: string) =>
  `CASE WHEN pg_column_size(${column}) > 65536 THEN jsonb_build_object('_truncated', pg_column_size(${column})) ` +
  `ELSE ${column} END`

/**
 * A stored error's tag and a line about it. The stored form is an envelope (`{ source, error }`, see
 * pgflows' internal/failure.ts): the tag is the inner error's; the line its message, else its fields.
 */
const errorTag = "coalesce(error->'error'->>'_tag', error->>'_tag')"
const errorMessage = "left(coalesce(error->'error'->>'message', error->>'message', " +
  "CASE WHEN jsonb_typeof(error->'error') = 'object' THEN ((error->'error') - '_tag')::text END), 300)"

export const make = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  /** A row of the list from `t`, a relation with the columns of `runs` (and only it in its FROM). */
  const rowColumns = `t.id, t.workflow, t.version, t.status, t.executions, t.parent_id, t.forked_from,
  CASE WHEN t.status = 'failed' THEN ${errorTag} END AS error_tag,
  CASE WHEN t.status = 'failed' THEN ${errorMessage} END AS error_message,
  ${iso("t.created_at")} AS created_at, ${iso("t.updated_at")} AS updated_at,
  ${iso("t.completed_at")} AS completed_at, ${iso("t.wake_at")} AS wake_at`
  return {
    /** The list's columns of these runs (`$1`), by primary key. */
    byId: `SELECT ${rowColumns} FROM ${s}.runs t WHERE t.id = ANY($1::text[])`,

    /**
     * A search: the run `$1` and its children (the primary key and `runs_parent`), with the list's other
     * filters and a keyset cursor, newest first.
     */
    search: `SELECT ${rowColumns} FROM (
  SELECT r.* FROM ${s}.runs r WHERE r.id = $1
  UNION ALL
  SELECT r.* FROM ${s}.runs r WHERE r.parent_id = $1 AND r.id <> $1
) t
WHERE ($2::text IS NULL OR t.workflow = $2)
  AND ($3::int IS NULL OR t.version = $3)
  AND ($4::text IS NULL OR t.status = $4)
  AND t.created_at >= coalesce($5::timestamptz, '-infinity'::timestamptz)
  AND t.created_at < coalesce($6::timestamptz, 'infinity'::timestamptz)
  AND (t.created_at, t.id) < (coalesce($7::timestamptz, 'infinity'::timestamptz), coalesce($8::text, ''))
ORDER BY t.created_at DESC, t.id DESC
LIMIT $9`,

    /** The signals sent to run `$1`. */
    signals: `SELECT name, ${bounded("payload")} AS payload, ${iso("sent_at")} AS sent_at, consumed_key,
  ${iso("consumed_at")} AS consumed_at
FROM ${s}.signals WHERE run_id = $1 ORDER BY id LIMIT 500`,

    /** The children of run `$1` (`runs_parent`). */
    children: `SELECT id, workflow, version, status, ${iso("created_at")} AS created_at,
  ${iso("completed_at")} AS completed_at
FROM ${s}.runs WHERE parent_id = $1 ORDER BY created_at, id LIMIT 500`,

    /** The events run `$1` set (the primary key). */
    events: `SELECT key, ${bounded("value")} AS value, ${iso("updated_at")} AS updated_at
FROM ${s}.events WHERE run_id = $1 ORDER BY key LIMIT 500`,

    /**
     * The runs created in `[$1, $2)` (a walk of `runs_created`, at most `$4`, newest first), by the
     * bucket of `$3` seconds they were created in and the one they ended in.
     */
    throughput: `SELECT t.workflow, t.status,
  floor(extract(epoch FROM t.created_at - $1::timestamptz) / $3)::int AS created,
  CASE WHEN t.completed_at >= $1::timestamptz AND t.completed_at < $2::timestamptz
    THEN floor(extract(epoch FROM t.completed_at - $1::timestamptz) / $3)::int END AS ended,
  count(*)::int AS n, ${iso("min(t.created_at)")} AS oldest
FROM (
  SELECT r.workflow, r.status, r.created_at, r.completed_at FROM ${s}.runs r
  WHERE r.created_at >= $1::timestamptz AND r.created_at < $2::timestamptz
  ORDER BY r.created_at DESC, r.id DESC LIMIT $4
) t
GROUP BY 1, 2, 3, 4`,

    /** Each workflow's versions: a loose scan of `runs_workflow_version_created`, one descent each. */
    versions: `WITH RECURSIVE names AS (
  (SELECT r.workflow FROM ${s}.runs r ORDER BY r.workflow LIMIT 1)
  UNION ALL
  SELECT (SELECT r.workflow FROM ${s}.runs r WHERE r.workflow > n.workflow ORDER BY r.workflow LIMIT 1)
  FROM names n WHERE n.workflow IS NOT NULL
), versions AS (
  SELECT n.workflow,
    (SELECT r.version FROM ${s}.runs r WHERE r.workflow = n.workflow ORDER BY r.version LIMIT 1) AS version
  FROM names n WHERE n.workflow IS NOT NULL
  UNION ALL
  SELECT v.workflow, (SELECT r.version FROM ${s}.runs r WHERE r.workflow = v.workflow AND r.version > v.version
    ORDER BY r.version LIMIT 1)
  FROM versions v WHERE v.version IS NOT NULL
)
SELECT workflow, version FROM versions WHERE version IS NOT NULL ORDER BY 1, 2 LIMIT 2000`,

    /** The workers that announced themselves on queue `$1`, the latest first. */
    workers: `SELECT id, workflows, ${iso("started_at")} AS started_at, ${iso("heartbeat_at")} AS heartbeat_at,
  expires_at > now() AS alive
FROM ${s}.workers WHERE queue = $1 ORDER BY heartbeat_at DESC LIMIT 100`
  } as const
}
