/**
 * `WorkQueue` on PostgreSQL with pgflows' built-in tables (`queues`, `queue_messages`,
 * `queue_archive` in the configured schema): pgmq's semantics without the pgmq extension. Reads use
 * `FOR UPDATE SKIP LOCKED`, so concurrent readers never receive the same message while it is
 * invisible. Queue names are values (bound parameters), so any name is safe; they are still checked
 * with the `queue` rule of `Identifier` so they stay portable to pgmq, whose tables are named after
 * them.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as SqlClient from "effect/sql/SqlClient"
import * as Identifier from "./Identifier.ts"
import * as Params from "./internal/pgParams.ts"
import * as Statements from "./internal/pgStatements.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { MigrationsMissing, StoreError } from "./PgflowsError.ts"
import * as PgMigrations from "./PgMigrations.ts"
import * as WorkQueue from "./WorkQueue.ts"

/**
 * Provides `WorkQueue` on the application's `SqlClient`, after running the migrations.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  WorkQueue.WorkQueue,
  StoreError | MigrationsMissing | PgflowsConfig.PgflowsConfigError,
  SqlClient.SqlClient
> = Layer
  .effect(
    WorkQueue.WorkQueue,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      yield* PgMigrations.prepare.pipe(
        Effect.mapError((cause) => cause instanceof MigrationsMissing ? cause : failure("migrations", cause))
      )
      const s = Identifier.quote(schema)
      const reads = Statements.queueReads(schema)

      const checked = <A>(operation: string, queue: string, effect: Effect.Effect<A, StoreError>) => {
        const name = Identifier.check("queue", queue)
        return Result.isFailure(name)
          ? Effect.fail(
            new StoreError({
              operation,
              retryable: false,
              cause: new Error(`queue name ${name.failure}`)
            })
          )
          : effect
      }
      const run = <A extends object>(operation: string, text: string, params: ReadonlyArray<unknown>) =>
        sql.unsafe<A>(text, params).pipe(Effect.mapError((cause) => failure(operation, cause)))

      const create = (queue: string) =>
        checked(
          "create",
          queue,
          Effect.asVoid(run("create", `INSERT INTO ${s}.queues (name) VALUES ($1) ON CONFLICT DO NOTHING`, [queue]))
        )

      const sendBatch = (
        queue: string,
        messages: ReadonlyArray<unknown>,
        options?: { readonly delay?: Duration.Input | undefined }
      ) =>
        checked(
          "send",
          queue,
          run<{ msg_id: string }>(
            "send",
            `
WITH q AS (INSERT INTO ${s}.queues (name) VALUES ($1) ON CONFLICT DO NOTHING)
INSERT INTO ${s}.queue_messages (queue, vt, message)
SELECT $1, now() + $2 * interval '1 millisecond', m::jsonb FROM unnest($3::text[]) WITH ORDINALITY AS t(m, n)
ORDER BY n
RETURNING msg_id`,
            [
              queue,
              delayMillis(options?.delay),
              Params.texts(messages.map((message) => JSON.stringify(message ?? null)))
            ]
          ).pipe(Effect.map((rows) => rows.map((row) => Number(row.msg_id))))
        )

      const columns = `msg_id, read_ct, enqueued_at, vt, message`

      return WorkQueue.WorkQueue.of({
        create,
        drop: (queue) =>
          checked(
            "drop",
            queue,
            run<{ dropped: boolean }>(
              "drop",
              `
WITH m AS (DELETE FROM ${s}.queue_messages WHERE queue = $1),
     a AS (DELETE FROM ${s}.queue_archive WHERE queue = $1),
     q AS (DELETE FROM ${s}.queues WHERE name = $1 RETURNING name)
SELECT EXISTS (SELECT 1 FROM q) AS dropped`,
              [queue]
            ).pipe(Effect.map((rows) => rows[0]?.dropped === true))
          ),
        list: run<{ name: string; created_at: Date }>(
          "list",
          `SELECT name, created_at FROM ${s}.queues ORDER BY name`,
          []
        ).pipe(Effect.map((rows) => rows.map((row) => ({ queue: row.name, createdAt: row.created_at })))),
        purge: (queue) =>
          checked(
            "purge",
            queue,
            run<{ n: number }>(
              "purge",
              `WITH d AS (DELETE FROM ${s}.queue_messages WHERE queue = $1 RETURNING 1) SELECT count(*)::int AS n FROM d`,
              [queue]
            ).pipe(Effect.map((rows) => rows[0]?.n ?? 0))
          ),
        send: (queue, message, options) => Effect.map(sendBatch(queue, [message], options), (ids) => ids[0]!),
        sendBatch,
        read: (queue, options) =>
          checked(
            "read",
            queue,
            run<MessageRow>(
              "read",
              `
WITH due AS (
  SELECT msg_id FROM ${s}.queue_messages WHERE queue = $1 AND vt <= clock_timestamp()
  ORDER BY msg_id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE ${s}.queue_messages m SET vt = clock_timestamp() + $3 * interval '1 millisecond', read_ct = m.read_ct + 1
FROM due WHERE m.msg_id = due.msg_id
RETURNING m.${columns.replaceAll(", ", ", m.")}`,
              [queue, options.limit ?? 1, delayMillis(options.visibilityTimeout)]
            ).pipe(Effect.map((rows) => rows.map(toMessage).sort((a, b) => a.msgId - b.msgId)))
          ),
        delete: (queue, msgId) =>
          checked(
            "delete",
            queue,
            run<{ msg_id: string }>(
              "delete",
              `DELETE FROM ${s}.queue_messages WHERE queue = $1 AND msg_id = $2 RETURNING msg_id`,
              [queue, msgId]
            ).pipe(Effect.map((rows) => rows.length > 0))
          ),
        archive: (queue, msgId) =>
          checked(
            "archive",
            queue,
            run<{ msg_id: string }>(
              "archive",
              `
WITH moved AS (DELETE FROM ${s}.queue_messages WHERE queue = $1 AND msg_id = $2 RETURNING *)
INSERT INTO ${s}.queue_archive (msg_id, queue, read_ct, enqueued_at, vt, message)
SELECT msg_id, queue, read_ct, enqueued_at, vt, message FROM moved
RETURNING msg_id`,
              [queue, msgId]
            ).pipe(Effect.map((rows) => rows.length > 0))
          ),
        setVisibility: (queue, msgId, delay) =>
          checked(
            "setVisibility",
            queue,
            run<MessageRow>(
              "setVisibility",
              `UPDATE ${s}.queue_messages SET vt = clock_timestamp() + $3 * interval '1 millisecond'
WHERE queue = $1 AND msg_id = $2 RETURNING ${columns}`,
              [queue, msgId, delayMillis(delay)]
            ).pipe(Effect.map((rows) => rows[0] === undefined ? undefined : toMessage(rows[0])))
          ),
        archived: (queue, options) =>
          checked(
            "archived",
            queue,
            run<MessageRow & { archived_at: Date }>(
              "archived",
              reads.archived,
              [queue, options?.limit ?? 100]
            ).pipe(Effect.map((rows) => rows.map((row) => ({ ...toMessage(row), archivedAt: row.archived_at }))))
          ),
        metrics: (queue) =>
          checked(
            "metrics",
            queue,
            // The live messages, and the archive counted where it is small, else estimated
            // (docs/ARCHITECTURE.md, "Reads").
            run<{
              length: number
              visible: number
              newest_ms: number | null
              oldest_ms: number | null
              archived: number
              archived_exact: boolean
              now: Date
            }>("metrics", reads.metrics, [queue]).pipe(Effect.map((rows) => {
              const row = rows[0]!
              return {
                queue,
                length: row.length,
                visible: row.visible,
                newestMessageAge: row.newest_ms === null ? undefined : Duration.millis(Number(row.newest_ms)),
                oldestMessageAge: row.oldest_ms === null ? undefined : Duration.millis(Number(row.oldest_ms)),
                archived: row.archived,
                archivedExact: row.archived_exact,
                scrapedAt: row.now
              }
            }))
          )
      })
    })
  ).pipe(Layer.provide(PgflowsConfig.layerDefault))

// internal

interface MessageRow {
  readonly msg_id: string | number
  readonly read_ct: number
  readonly enqueued_at: Date
  readonly vt: Date
  readonly message: unknown
}

const toMessage = (row: MessageRow): WorkQueue.Message => ({
  msgId: Number(row.msg_id),
  readCount: row.read_ct,
  enqueuedAt: row.enqueued_at,
  visibleAt: row.vt,
  message: row.message
})

const delayMillis = (input: Duration.Input | undefined): number =>
  input === undefined ? 0 : Math.max(0, Duration.toMillis(Duration.fromInputUnsafe(input)))

const failure = (operation: string, cause: unknown): StoreError =>
  cause instanceof StoreError ? cause : new StoreError({
    operation,
    retryable: (cause as { reason?: { isRetryable?: boolean } } | undefined)?.reason?.isRetryable ?? false,
    cause
  })
