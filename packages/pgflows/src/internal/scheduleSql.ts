/**
 * The schedule store on PostgreSQL: the `schedules` table of migration 4, through the application's
 * `SqlClient`. Times are the database's (`now()`). `fire` runs in one transaction: it locks the due
 * schedules with `FOR UPDATE SKIP LOCKED` (another scheduler skips them, it never waits), starts the
 * planned runs with `<schema>.enqueue_workflow` (run and queue message together, NOTIFY at commit)
 * and moves each schedule on; a crash before the commit leaves the ticks due for the next scheduler.
 */
import * as Effect from "effect/Effect"
import type * as SqlClient from "effect/sql/SqlClient"
import * as Identifier from "../Identifier.ts"
import { StoreError } from "../PgflowsError.ts"
import * as Params from "./pgParams.ts"
import type { FiredTick, FireResult, PutResult, ScheduleRecord, ScheduleStore, StoredKind } from "./scheduleStore.ts"
import { tickRunId } from "./scheduleStore.ts"
import type { CatchUp, Plan } from "./scheduleTicks.ts"

interface Row {
  readonly name: string
  readonly scheduler: StoredKind
  readonly handle: string | null
  readonly cron: string
  readonly timezone: string
  readonly workflow: string
  readonly input: string
  readonly paused: boolean
  readonly catch_up: CatchUp
  readonly max_catch_up: number
  readonly last_ms: number | null
  readonly next_ms: number | null
}

const columns = `name, scheduler, handle, cron, timezone, workflow, input::text AS input, paused, catch_up,
  max_catch_up, (extract(epoch FROM last_tick) * 1000)::float8 AS last_ms,
  (extract(epoch FROM next_tick) * 1000)::float8 AS next_ms`

const toRecord = (row: Row): ScheduleRecord => ({
  name: row.name,
  scheduler: row.scheduler,
  handle: row.handle,
  cron: row.cron,
  timezone: row.timezone,
  workflow: row.workflow,
  input: JSON.parse(row.input),
  paused: row.paused,
  catchUp: row.catch_up,
  maxCatchUp: row.max_catch_up,
  lastTick: row.last_ms === null ? null : Number(row.last_ms),
  nextTick: row.next_ms === null ? null : Number(row.next_ms)
})

export const storeError = (operation: string) => (cause: unknown): StoreError =>
  cause instanceof StoreError ? cause : new StoreError({
    operation,
    retryable: (cause as { reason?: { isRetryable?: boolean } } | undefined)?.reason?.isRetryable ?? false,
    cause
  })

const timestamp = (millis: string) => `CASE WHEN ${millis} IS NULL THEN NULL ELSE to_timestamp(${millis} / 1000.0) END`

export const make = (sql: SqlClient.SqlClient, schema: Identifier.Identifier): ScheduleStore => {
  const s = Identifier.quote(schema)
  const table = `${s}.schedules`
  const run = <A extends object>(operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
    sql.unsafe<A>(text, params).pipe(Effect.mapError(storeError(operation)))

  const now = Effect.map(
    run<{ now: number }>("schedule clock", "SELECT (extract(epoch FROM now()) * 1000)::float8 AS now"),
    (rows) => Number(rows[0]!.now)
  )

  const put = (record: ScheduleRecord, replace: boolean) =>
    Effect.gen(function*() {
      const rows = yield* run<{ created: boolean }>(
        "schedule",
        `INSERT INTO ${table} AS t (name, scheduler, handle, cron, timezone, workflow, input, paused, catch_up,
  max_catch_up, last_tick, next_tick)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, ${timestamp("$11::float8")}, ${timestamp("$12::float8")})
ON CONFLICT (name) DO UPDATE SET handle = EXCLUDED.handle, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
  workflow = EXCLUDED.workflow, input = EXCLUDED.input, catch_up = EXCLUDED.catch_up,
  max_catch_up = EXCLUDED.max_catch_up,
  next_tick = CASE WHEN t.cron = EXCLUDED.cron AND t.timezone = EXCLUDED.timezone THEN t.next_tick
    ELSE EXCLUDED.next_tick END,
  updated_at = now()
  WHERE $13::boolean AND t.scheduler = EXCLUDED.scheduler
RETURNING (xmax = 0) AS created`,
        [
          record.name,
          record.scheduler,
          record.handle,
          record.cron,
          record.timezone,
          record.workflow,
          JSON.stringify(record.input ?? null),
          record.paused,
          record.catchUp,
          record.maxCatchUp,
          record.lastTick,
          record.nextTick,
          replace
        ]
      )
      if (rows[0] !== undefined) return { outcome: rows[0].created ? "created" : "replaced" } satisfies PutResult
      const existing = yield* run<{ scheduler: string }>(
        "schedule",
        `SELECT scheduler FROM ${table} WHERE name = $1`,
        [record.name]
      )
      return { outcome: "exists", scheduler: existing[0]?.scheduler ?? record.scheduler } satisfies PutResult
    })

  const get = (name: string) =>
    Effect.map(
      run<Row>("get schedule", `SELECT ${columns} FROM ${table} WHERE name = $1`, [name]),
      (rows) => (rows[0] === undefined ? undefined : toRecord(rows[0]))
    )

  const list = (scheduler: StoredKind) =>
    Effect.map(
      run<Row>("list schedules", `SELECT ${columns} FROM ${table} WHERE scheduler = $1 ORDER BY name`, [scheduler]),
      (rows) => rows.map(toRecord)
    )

  const remove = (name: string, scheduler: StoredKind) =>
    Effect.map(
      run<{ name: string }>(
        "unschedule",
        `DELETE FROM ${table} WHERE name = $1 AND scheduler = $2 RETURNING name`,
        [name, scheduler]
      ),
      (rows) => rows.length > 0
    )

  const setPaused = (name: string, scheduler: StoredKind, paused: boolean, nextTick: number | null) =>
    Effect.map(
      run<Row>(
        paused ? "pause schedule" : "resume schedule",
        `UPDATE ${table} SET paused = $3,
  next_tick = CASE WHEN $3 THEN next_tick ELSE ${timestamp("$4::float8")} END, updated_at = now()
WHERE name = $1 AND scheduler = $2
RETURNING ${columns}`,
        [name, scheduler, paused, nextTick]
      ),
      (rows) => (rows[0] === undefined ? undefined : toRecord(rows[0]))
    )

  const fire = (limit: number, decide: (record: ScheduleRecord, now: number) => Plan | undefined) =>
    sql.withTransaction(Effect.gen(function*() {
      const rows = yield* run<Row & { now_ms: number }>(
        "fire schedules",
        `SELECT ${columns}, (extract(epoch FROM now()) * 1000)::float8 AS now_ms FROM ${table}
WHERE scheduler = 'builtin' AND NOT paused AND next_tick <= now()
ORDER BY next_tick
LIMIT $1
FOR UPDATE SKIP LOCKED`,
        [limit]
      )
      const fired: Array<FiredTick & { readonly input: string }> = []
      const skipped: Array<FireResult["skipped"][number]> = []
      const moves: Array<{ name: string; last: number | null; next: number | null }> = []
      for (const row of rows) {
        const record = toRecord(row)
        const plan = decide(record, Number(row.now_ms))
        if (plan === undefined) continue
        for (const tick of plan.fire) {
          fired.push({
            schedule: record.name,
            workflow: record.workflow,
            tick,
            runId: tickRunId(record.name, tick),
            input: row.input
          })
        }
        if (plan.skipped !== undefined) skipped.push({ schedule: record.name, ...plan.skipped })
        moves.push({ name: record.name, last: plan.lastTick ?? null, next: plan.nextTick ?? null })
      }
      if (fired.length > 0) {
        yield* run(
          "fire schedules",
          `SELECT ${s}.enqueue_workflow(t.workflow, t.input::jsonb, t.id)
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(workflow, input, id, n)
ORDER BY t.n`,
          [
            Params.texts(fired.map((tick) => tick.workflow)),
            Params.texts(fired.map((tick) => tick.input)),
            Params.texts(fired.map((tick) => tick.runId))
          ]
        )
      }
      if (moves.length > 0) {
        yield* run(
          "fire schedules",
          `UPDATE ${table} AS t SET
  last_tick = CASE WHEN u.last_ms IS NULL THEN t.last_tick ELSE to_timestamp(u.last_ms / 1000.0) END,
  next_tick = CASE WHEN u.next_ms IS NULL THEN NULL ELSE to_timestamp(u.next_ms / 1000.0) END,
  updated_at = now()
FROM unnest($1::text[], $2::float8[], $3::float8[]) AS u(name, last_ms, next_ms)
WHERE t.name = u.name`,
          [
            Params.texts(moves.map((move) => move.name)),
            Params.floats(moves.map((move) => move.last)),
            Params.floats(moves.map((move) => move.next))
          ]
        )
      }
      return {
        claimed: rows.length,
        fired: fired.map(({ input: _, ...tick }) => tick),
        skipped
      } satisfies FireResult
    })).pipe(Effect.mapError(storeError("fire schedules")))

  const start = (workflow: string, input: unknown, id: string) =>
    Effect.asVoid(
      run("trigger schedule", `SELECT ${s}.enqueue_workflow($1, $2::jsonb, $3)`, [
        workflow,
        JSON.stringify(input ?? null),
        id
      ])
    )

  const nextDue = Effect.map(
    run<{ ms: number | null }>(
      "next schedule",
      `SELECT (extract(epoch FROM (min(next_tick) - now())) * 1000)::float8 AS ms FROM ${table}
WHERE scheduler = 'builtin' AND NOT paused`
    ),
    (rows) => (rows[0]?.ms === null || rows[0]?.ms === undefined ? undefined : Number(rows[0].ms))
  )

  return { now, put, get, list, remove, setPaused, fire, start, nextDue }
}
