/**
 * What the dashboard reads (`GET /views/...`): SQL over pgflows' tables in the configured schema
 * (an `Identifier` checked by `PgflowsConfig`), every value a bound parameter, and the client for
 * what it already answers (a run's status and journal, the queue's metrics).
 *
 * Times are read as ISO 8601 text with microseconds, so the list's cursor (the creation time and
 * id of the last row) is exact. None of these queries is on the engine's hot path: the list uses the
 * `runs_created` and `runs_workflow_created` indexes; the statistics scan the runs of the range.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as SqlClient from "effect/sql/SqlClient"
import * as Identifier from "pgflows/Identifier"
import type * as Pgflows from "pgflows/Pgflows"
import type * as PgflowsConfig from "pgflows/PgflowsConfig"
import type * as PgflowsApi from "../PgflowsApi.ts"
import { RunNotFound, ServiceUnavailable } from "../ServerError.ts"
import * as Runs from "./runs.ts"

type Client = Pgflows.Pgflows["Service"]

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

const unavailable = (operation: string) => (cause: unknown) =>
  Effect.andThen(
    Effect.logError(`pgflows server: ${operation} failed`, cause),
    Effect.fail(
      new ServiceUnavailable({ message: `the database is not available (${operation}); try again`, retryable: true })
    )
  )

interface RunRowRecord {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: typeof PgflowsApi.RunStatus.Type
  readonly executions: number
  readonly parent_id: string | null
  readonly forked_from: string | null
  readonly error_tag: string | null
  readonly error_message: string | null
  readonly created_at: string
  readonly updated_at: string
  readonly completed_at: string | null
  readonly wake_at: string | null
}

/** The list's cursor: the creation time (as text) and id of the page's last row. */
const encodeCursor = (createdAt: string, id: string) =>
  Buffer.from(JSON.stringify([createdAt, id]), "utf8").toString("base64url")

const decodeCursor = (cursor: string): readonly [string, string] | undefined => {
  try {
    const value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown
    return Array.isArray(value) && value.length === 2 && typeof value[0] === "string" &&
        typeof value[1] === "string" && !Number.isNaN(Date.parse(value[0]))
      ? [value[0], value[1]]
      : undefined
  } catch {
    return undefined
  }
}

export interface Views {
  readonly runs: (
    query: typeof PgflowsApi.RunsViewQuery.Type
  ) => Effect.Effect<typeof PgflowsApi.RunRowPage.Type, ServiceUnavailable>
  readonly run: (id: string) => Effect.Effect<typeof PgflowsApi.RunDetail.Type, RunNotFound | ServiceUnavailable>
  readonly stats: (
    query: typeof PgflowsApi.StatsQuery.Type
  ) => Effect.Effect<typeof PgflowsApi.Stats.Type, ServiceUnavailable>
}

export const make = (
  sql: SqlClient.SqlClient,
  config: PgflowsConfig.PgflowsConfig,
  client: Client
): Views => {
  const s = Identifier.quote(config.schema)

  const runs: Views["runs"] = (query) => {
    const limit = query.limit ?? 50
    const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor)
    const params = [
      query.workflow ?? null,
      query.version ?? null,
      query.status ?? null,
      query.from ?? null,
      query.to ?? null,
      query.q ?? null,
      cursor?.[0] ?? null,
      cursor?.[1] ?? null,
      limit + 1
    ]
    return sql.unsafe<RunRowRecord>(
      `SELECT id, workflow, version, status, executions, parent_id, forked_from,
  CASE WHEN status = 'failed' THEN ${errorTag} END AS error_tag,
  CASE WHEN status = 'failed' THEN ${errorMessage} END AS error_message,
  ${iso("created_at")} AS created_at, ${iso("updated_at")} AS updated_at,
  ${iso("completed_at")} AS completed_at, ${iso("wake_at")} AS wake_at
FROM ${s}.runs
WHERE ($1::text IS NULL OR workflow = $1)
  AND ($2::int IS NULL OR version = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4::timestamptz)
  AND ($5::timestamptz IS NULL OR created_at < $5::timestamptz)
  AND ($6::text IS NULL OR strpos(id, $6) > 0)
  AND ($7::timestamptz IS NULL OR (created_at, id) < ($7::timestamptz, $8::text))
ORDER BY created_at DESC, id DESC
LIMIT $9`,
      params
    ).pipe(
      Effect.map((rows) => {
        const page = rows.slice(0, limit)
        const last = page[page.length - 1]
        return {
          runs: page.map((row) => ({
            id: row.id,
            workflow: row.workflow,
            version: Number(row.version),
            status: row.status,
            executions: Number(row.executions),
            parentId: row.parent_id,
            forkedFrom: row.forked_from,
            errorTag: row.error_tag,
            errorMessage: row.error_message,
            createdAt: row.created_at,
            updatedAt: row.updated_at,
            completedAt: row.completed_at,
            wakeAt: row.wake_at
          })),
          nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.created_at, last.id) : null
        }
      }),
      Effect.catch(unavailable("listing runs"))
    )
  }

  const run: Views["run"] = (id) =>
    Effect.gen(function*() {
      const info = yield* client.status(id).pipe(
        Effect.catchTags({
          RunNotFound: () => Effect.fail(new RunNotFound({ runId: id, message: `no run with id "${id}"` })),
          StoreError: unavailable("reading a run")
        })
      )
      const [signals, children, events] = yield* Effect.all([
        sql.unsafe<{
          name: string
          payload: unknown
          sent_at: string
          consumed_key: string | null
          consumed_at: string | null
        }>(
          `SELECT name, ${bounded("payload")} AS payload, ${iso("sent_at")} AS sent_at, consumed_key,
  ${iso("consumed_at")} AS consumed_at
FROM ${s}.signals WHERE run_id = $1 ORDER BY id LIMIT 500`,
          [id]
        ),
        sql.unsafe<{
          id: string
          workflow: string
          version: number
          status: typeof PgflowsApi.RunStatus.Type
          created_at: string
          completed_at: string | null
        }>(
          `SELECT id, workflow, version, status, ${iso("created_at")} AS created_at,
  ${iso("completed_at")} AS completed_at
FROM ${s}.runs WHERE parent_id = $1 ORDER BY created_at, id LIMIT 500`,
          [id]
        ),
        sql.unsafe<{ key: string; value: unknown; updated_at: string }>(
          `SELECT key, ${bounded("value")} AS value, ${iso("updated_at")} AS updated_at
FROM ${s}.events WHERE run_id = $1 ORDER BY key LIMIT 500`,
          [id]
        )
      ], { concurrency: "unbounded" }).pipe(Effect.catch(unavailable("reading a run's signals, children and events")))
      return {
        run: Runs.view(client, info),
        version: info.version,
        forkedFrom: info.forkedFrom ?? null,
        signals: signals.map((row) => ({
          name: row.name,
          payload: row.payload ?? null,
          sentAt: row.sent_at,
          consumedKey: row.consumed_key,
          consumedAt: row.consumed_at
        })),
        children: children.map((row) => ({
          id: row.id,
          workflow: row.workflow,
          version: Number(row.version),
          status: row.status,
          createdAt: row.created_at,
          completedAt: row.completed_at
        })),
        events: events.map((row) => ({ key: row.key, value: row.value ?? null, updatedAt: row.updated_at }))
      }
    })

  const stats: Views["stats"] = (query) =>
    Effect.gen(function*() {
      const to = query.to === undefined ? new Date() : new Date(query.to)
      const from = query.from === undefined ? new Date(to.getTime() - 3_600_000) : new Date(query.from)
      const span = Math.max(1, to.getTime() - from.getTime())
      const count = query.buckets ?? 30
      const bucketSeconds = Math.max(1, Math.ceil(span / count / 1000))
      const params = [from.toISOString(), to.toISOString(), bucketSeconds]
      const [counts, ended, started, versions, dead, workers] = yield* Effect.all([
        sql.unsafe<{ workflow: string; status: string; n: number }>(
          `SELECT workflow, status, count(*)::int AS n FROM ${s}.runs
WHERE status IN ('pending', 'running', 'suspended') OR (created_at >= $1::timestamptz AND created_at < $2::timestamptz)
GROUP BY workflow, status`,
          params.slice(0, 2)
        ),
        sql.unsafe<{ workflow: string; bucket: number; status: string; n: number }>(
          `SELECT workflow, floor(extract(epoch FROM completed_at - $1::timestamptz) / $3)::int AS bucket, status,
  count(*)::int AS n
FROM ${s}.runs
WHERE completed_at >= $1::timestamptz AND completed_at < $2::timestamptz
  AND status IN ('completed', 'failed', 'cancelled')
GROUP BY 1, 2, 3`,
          params
        ),
        sql.unsafe<{ workflow: string; bucket: number; n: number }>(
          `SELECT workflow, floor(extract(epoch FROM created_at - $1::timestamptz) / $3)::int AS bucket,
  count(*)::int AS n
FROM ${s}.runs WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz
GROUP BY 1, 2`,
          params
        ),
        sql.unsafe<{ workflow: string; version: number }>(
          `SELECT workflow, version FROM ${s}.runs GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 2000`
        ),
        sql.unsafe<{
          id: string
          workflow: string
          version: number
          error_tag: string | null
          error_message: string | null
          completed_at: string | null
        }>(
          `SELECT id, workflow, version, ${errorTag} AS error_tag, ${errorMessage} AS error_message,
  ${iso("completed_at")} AS completed_at
FROM ${s}.runs WHERE status = 'failed' ORDER BY completed_at DESC NULLS LAST, id DESC LIMIT 20`
        ),
        sql.unsafe<{
          id: string
          workflows: ReadonlyArray<string>
          started_at: string
          heartbeat_at: string
          alive: boolean
        }>(
          `SELECT id, workflows, ${iso("started_at")} AS started_at, ${iso("heartbeat_at")} AS heartbeat_at,
  expires_at > now() AS alive
FROM ${s}.workers WHERE queue = $1 ORDER BY heartbeat_at DESC LIMIT 100`,
          [config.queue]
        )
      ], { concurrency: "unbounded" }).pipe(Effect.catch(unavailable("reading statistics")))
      const metrics = yield* client.queueMetrics().pipe(Effect.catch(unavailable("reading the queue")))
      const buckets = Math.ceil(span / 1000 / bucketSeconds)
      const names = new Set<string>([
        ...counts.map((row) => row.workflow),
        ...ended.map((row) => row.workflow),
        ...started.map((row) => row.workflow),
        ...versions.map((row) => row.workflow)
      ])
      const workflows = [...names].sort().map((workflow) => {
        const series = Array.from({ length: buckets }, (_, index) => ({
          start: new Date(from.getTime() + index * bucketSeconds * 1000).toISOString(),
          started: 0,
          completed: 0,
          failed: 0,
          cancelled: 0
        }))
        for (const row of started) {
          if (row.workflow === workflow && series[row.bucket] !== undefined) series[row.bucket]!.started += row.n
        }
        for (const row of ended) {
          const bucket = row.workflow === workflow ? series[row.bucket] : undefined
          if (
            bucket !== undefined &&
            (row.status === "completed" || row.status === "failed" || row.status === "cancelled")
          ) {
            bucket[row.status] += row.n
          }
        }
        return {
          workflow,
          versions: versions.filter((row) => row.workflow === workflow).map((row) => Number(row.version)),
          counts: Object.fromEntries(
            counts.filter((row) => row.workflow === workflow).map((row) => [row.status, row.n])
          ),
          buckets: series
        }
      })
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        bucketSeconds,
        workflows,
        queue: {
          name: metrics.queue,
          depth: metrics.length,
          visible: metrics.visible,
          oldestAgeSeconds: metrics.oldestMessageAge === undefined
            ? null
            : Duration.toMillis(metrics.oldestMessageAge) / 1000,
          archived: metrics.archived
        },
        deadLetters: dead.map((row) => ({
          id: row.id,
          workflow: row.workflow,
          version: Number(row.version),
          errorTag: row.error_tag,
          errorMessage: row.error_message,
          completedAt: row.completed_at
        })),
        workers: workers.map((row) => ({
          id: row.id,
          // A worker announces workflow keys: the name, or the name, U+001F and the version.
          workflows: row.workflows.map((key) => key.replace("\u001f", " v")),
          startedAt: row.started_at,
          heartbeatAt: row.heartbeat_at,
          alive: row.alive
        }))
      }
    })

  return { runs, run, stats }
}
