/**
 * What the dashboard reads (`GET /views/...`): SQL over pgflows' tables in the configured schema
 * (an `Identifier` checked by `PgflowsConfig`), every value a bound parameter, and the client for
 * what it already answers (a run's status and journal, the queue's metrics).
 *
 * Every read is bounded by what it returns, never by the history the tables hold (pgflows'
 * docs/ARCHITECTURE.md, "Reads"; its README, "Reads on a long history"): the list, the
 * counts and the dead letters are the client's reads (`list`, `counts`, `deadLetters`), and what the
 * dashboard shows beyond them is read by primary key for the rows of the page; a search is a run id
 * (the run and its children, by the primary key and the `parent_id` index); the versions are a
 * loose index scan; the throughput reads the runs created in the range, at most
 * `throughputLimit`. `test/Views.pg.test.ts` checks the plans on a long history.
 *
 * Times are read as ISO 8601 text with microseconds, so a search's cursor (the creation time and
 * id of the last row) is exact.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as Pgflows from "pgflows/Pgflows"
import type * as PgflowsConfig from "pgflows/PgflowsConfig"
import type * as PgflowsApi from "../PgflowsApi.ts"
import { BadRequest, RunNotFound, ServiceUnavailable } from "../ServerError.ts"
import * as Runs from "./runs.ts"
import * as ViewStatements from "./viewStatements.ts"

type Client = Pgflows.Pgflows["Service"]

/** The states, in the order the dashboard shows their counts. */
const statuses = ["pending", "running", "suspended", "completed", "failed", "cancelled"] as const

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

/**
 * The most runs of a range the throughput reads, newest first: beyond, the buckets before the
 * oldest run read are partial, and `throughputFrom` says from when they are whole.
 */
export const throughputLimit = 100_000

/** A search's cursor: the creation time (as text) and id of the page's last row. */
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
  ) => Effect.Effect<typeof PgflowsApi.RunRowPage.Type, BadRequest | ServiceUnavailable>
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
  const statements = ViewStatements.make(config.schema)

  const toRow = (row: RunRowRecord): typeof PgflowsApi.RunRow.Type => ({
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
  })

  /** The rows of these runs, by primary key, in the order given (a run gone meanwhile is left out). */
  const byId = (ids: ReadonlyArray<string>) =>
    ids.length === 0
      ? Effect.succeed([])
      : Effect.map(
        sql.unsafe<RunRowRecord>(statements.byId, [ids]),
        (rows) => {
          const found = new Map(rows.map((row) => [row.id, row]))
          return ids.flatMap((id) => {
            const row = found.get(id)
            return row === undefined ? [] : [toRow(row)]
          })
        }
      )

  const badCursor = new BadRequest({ message: "cursor: not one that this list handed out", issues: [] })

  /** The client's list, each run of the page then read by primary key for the dashboard's columns. */
  const listed = (query: typeof PgflowsApi.RunsViewQuery.Type, limit: number) =>
    client.list({
      workflow: query.workflow,
      version: query.version,
      status: query.status,
      createdAfter: query.from === undefined ? undefined : new Date(query.from),
      createdBefore: query.to === undefined ? undefined : new Date(query.to),
      limit,
      cursor: query.cursor
    }).pipe(
      Effect.catchTags({
        InvalidFilter: (error) => Effect.fail(new BadRequest({ message: error.message, issues: [] })),
        StoreError: unavailable("listing runs")
      }),
      Effect.flatMap((page) =>
        Effect.map(
          byId(page.runs.map((run) => run.id)).pipe(Effect.catch(unavailable("listing runs"))),
          (rows) => ({ runs: rows, nextCursor: page.nextCursor ?? null })
        )
      )
    )

  /** A search: the run with this id and its children, with the other filters, newest first. */
  const searched = (query: typeof PgflowsApi.RunsViewQuery.Type, id: string, limit: number) =>
    Effect.gen(function*() {
      const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor)
      if (query.cursor !== undefined && cursor === undefined) return yield* Effect.fail(badCursor)
      const rows = yield* sql.unsafe<RunRowRecord>(
        statements.search,
        [
          id,
          query.workflow ?? null,
          query.version ?? null,
          query.status ?? null,
          query.from ?? null,
          query.to ?? null,
          cursor?.[0] ?? null,
          cursor?.[1] ?? null,
          limit + 1
        ]
      ).pipe(Effect.catch(unavailable("searching runs")))
      const page = rows.slice(0, limit)
      const last = page[page.length - 1]
      return {
        runs: page.map(toRow),
        nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.created_at, last.id) : null
      }
    })

  const runs: Views["runs"] = (query) => {
    const limit = query.limit ?? 50
    return query.q === undefined ? listed(query, limit) : searched(query, query.q, limit)
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
          statements.signals,
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
          statements.children,
          [id]
        ),
        sql.unsafe<{ key: string; value: unknown; updated_at: string }>(
          statements.events,
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
      const [throughput, versions, workers] = yield* Effect.all([
        sql.unsafe<{
          workflow: string
          status: string
          created: number
          ended: number | null
          n: number
          oldest: string
        }>(
          statements.throughput,
          [from.toISOString(), to.toISOString(), bucketSeconds, throughputLimit]
        ),
        sql.unsafe<{ workflow: string; version: number }>(
          statements.versions
        ),
        sql.unsafe<{
          id: string
          workflows: ReadonlyArray<string>
          started_at: string
          heartbeat_at: string
          alive: boolean
        }>(
          statements.workers,
          [config.queue]
        )
      ], { concurrency: "unbounded" }).pipe(Effect.catch(unavailable("reading statistics")))
      const [counts, letters, metrics] = yield* Effect.all([
        client.counts(),
        client.deadLetters({ limit: 20 }),
        client.queueMetrics()
      ], { concurrency: "unbounded" }).pipe(
        Effect.catchTags({
          // No filter is given, so none can be refused.
          InvalidFilter: Effect.die,
          StoreError: unavailable("reading statistics")
        })
      )
      const dead = yield* byId(letters.deadLetters.map((letter) => letter.id)).pipe(
        Effect.catch(unavailable("reading dead letters"))
      )
      const failedAt = new Map(letters.deadLetters.map((letter) => [letter.id, letter.failedAt.toISOString()]))
      const read = throughput.reduce((total, row) => total + row.n, 0)
      const throughputFrom = read < throughputLimit || throughput.length === 0
        ? from.toISOString()
        : throughput.reduce((oldest, row) => row.oldest < oldest ? row.oldest : oldest, to.toISOString())
      const buckets = Math.ceil(span / 1000 / bucketSeconds)
      const names = new Set<string>([
        ...counts.workflows.map((row) => row.workflow),
        ...throughput.map((row) => row.workflow),
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
        for (const row of throughput) {
          if (row.workflow !== workflow) continue
          const created = series[row.created]
          if (created !== undefined) created.started += row.n
          const ended = row.ended === null ? undefined : series[row.ended]
          if (
            ended !== undefined &&
            (row.status === "completed" || row.status === "failed" || row.status === "cancelled")
          ) {
            ended[row.status] += row.n
          }
        }
        const counted = counts.workflows.find((row) => row.workflow === workflow)
        const states = counted === undefined
          ? []
          : statuses.flatMap((status) => counted[status].count > 0 ? [[status, counted[status]] as const] : [])
        return {
          workflow,
          versions: versions.filter((row) => row.workflow === workflow).map((row) => Number(row.version)),
          counts: Object.fromEntries(states.map(([status, { count }]) => [status, count])),
          estimated: states.flatMap(([status, { exact }]) => exact ? [] : [status]),
          buckets: series
        }
      })
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        bucketSeconds,
        throughputFrom,
        workflows,
        queue: {
          name: metrics.queue,
          depth: metrics.length,
          visible: metrics.visible,
          oldestAgeSeconds: metrics.oldestMessageAge === undefined
            ? null
            : Duration.toMillis(metrics.oldestMessageAge) / 1000,
          archived: metrics.archived,
          archivedExact: metrics.archivedExact
        },
        deadLetters: dead.map((row) => ({
          id: row.id,
          workflow: row.workflow,
          version: row.version,
          errorTag: row.errorTag,
          errorMessage: row.errorMessage,
          completedAt: failedAt.get(row.id) ?? row.completedAt
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
