/**
 * `Store` on PostgreSQL, through the application's own `@effect/sql-pg` pool (no second pool).
 *
 * The run queue lives in the built-in queue tables of `PgWorkQueue` (same schema), so starting a run
 * writes the run and its message in one statement, and ending one updates the run and deletes or
 * archives its message in one statement. Per run on the hot path: one claim (batched with other
 * runs, `FOR UPDATE SKIP LOCKED`), one journal read only when the run was executed before, one
 * INSERT per step, and one completion; checkpoints and completions of concurrent runs are written
 * together (group commit) and a caller resumes only after the commit that holds its write. Every
 * write of a claimed run locks the run row and checks the claim's token, so a worker that lost its
 * lease can never write over the worker that took the run over.
 *
 * Times come from the database (`now()`), never from the workers' clocks. Workers are woken by
 * `NOTIFY` on `PgflowsConfig.notifyChannel`.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Identifier from "./Identifier.ts"
import * as Batcher from "./internal/batcher.ts"
import { encodeEngineFailure } from "./internal/failure.ts"
import * as Params from "./internal/pgParams.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { StoreError, UnknownWorkflow } from "./PgflowsError.ts"
import * as PgMigrations from "./PgMigrations.ts"
import type { Status, StepStatus } from "./Run.ts"
import * as Store from "./Store.ts"

/**
 * Provides `Store` on the application's `PgClient`, after running the migrations.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<Store.Store, StoreError, PgClient.PgClient | SqlClient.SqlClient> = Layer.effect(
  Store.Store,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* PgClient.PgClient
    const config = yield* PgflowsConfig.PgflowsConfig
    yield* PgMigrations.run.pipe(Effect.mapError((cause) => storeError("migrations", cause)))
    yield* sql`INSERT INTO ${sql(`${config.schema}.settings`)} (queue, notify_channel)
      VALUES (${config.queue}, ${config.notifyChannel})
      ON CONFLICT (singleton) DO UPDATE SET queue = EXCLUDED.queue, notify_channel = EXCLUDED.notify_channel`.pipe(
      Effect.mapError((cause) => storeError("settings", cause))
    )
    yield* sql`INSERT INTO ${sql(`${config.schema}.queues`)} (name) VALUES (${config.queue}) ON CONFLICT DO NOTHING`
      .pipe(Effect.mapError((cause) => storeError("create queue", cause)))
    const statements = makeStatements(config.schema)
    const q = config.queue
    const channel = config.notifyChannel

    const write = yield* Batcher.make(
      (batch: ReadonlyArray<Write>) => commitBatch(sql, statements, channel, batch),
      { maxBatch: 512, flushers: 2 }
    )

    const createRuns = (runs: ReadonlyArray<Store.NewRun>) =>
      runs.length === 0 ? Effect.succeed([]) : sql.unsafe<CreatedRow>(statements.createRuns, [
        Params.texts(runs.map((run) => run.id)),
        Params.texts(runs.map((run) => run.workflow)),
        Params.texts(runs.map((run) => JSON.stringify(run.input ?? null))),
        Params.floats(runs.map((run) => run.delayMillis ?? 0)),
        Params.texts(runs.map((run) => run.parentId ?? null)),
        Params.texts(runs.map((run) => run.claimFor?.token ?? null)),
        Params.floats(runs.map((run) => run.claimFor?.leaseMillis ?? 0)),
        q,
        channel,
        Params.floats(runs.map((run) => run.deadlineAt ?? null)),
        Params.floats(runs.map((run) => run.timeoutMillis ?? null)),
        Params.texts(runs.map((run) => run.trace === undefined ? null : JSON.stringify(run.trace)))
      ]).pipe(
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) =>
            row.workflow !== null
              ? Effect.succeed<Store.Created>({
                id: row.id,
                created: row.created,
                workflow: row.workflow,
                msgId: row.msg_id === null ? null : Number(row.msg_id),
                deadlineAt: row.deadline_ms === null ? null : Number(row.deadline_ms)
              })
              // Another transaction created the same id while we ran: read what it wrote.
              : Effect.map(
                sql<{ workflow: string }>`SELECT workflow FROM ${sql(`${config.schema}.runs`)} WHERE id = ${row.id}`,
                (found): Store.Created => ({
                  id: row.id,
                  created: false,
                  workflow: found[0]?.workflow ?? "",
                  msgId: null,
                  deadlineAt: null
                })
              ))
        ),
        Effect.mapError((cause) => storeError("createRuns", cause))
      )

    const claim = Effect.fnUntraced(function*(request: Store.ClaimRequest) {
      const rows = yield* sql.unsafe<ClaimRow>(statements.claim, [
        q,
        request.limit,
        request.leaseMillis,
        request.worker,
        Params.texts(request.workflows)
      ])
      const claimed: Array<Store.ClaimedRun> = []
      const claimedRuns = new Set<string>()
      for (const row of rows) {
        if (row.id === null) continue
        claimedRuns.add(row.id)
        claimed.push({
          run: toRunRecord(row),
          token: row.lease_owner!,
          msgId: Number(row.msg_id),
          journal: [],
          now: Number(row.now_ms)
        })
      }
      // Messages that did not lead to a claim: stale (terminal or missing run), duplicates, early,
      // owned by a live lease, or for a workflow this worker does not know.
      const fixes: Array<{ msgId: number; action: "delete" | "defer"; at: number | null }> = []
      const unknown: Array<{ runId: string; workflow: string; msgId: number; deliveries: number }> = []
      for (const row of rows) {
        if (row.id !== null) continue
        const msgId = Number(row.msg_id)
        const status = row.current_status
        if (status === null || status === "completed" || status === "failed" || status === "cancelled") {
          fixes.push({ msgId, action: "delete", at: null })
        } else if (claimedRuns.has(row.run_id)) {
          fixes.push({ msgId, action: "delete", at: null })
        } else if (!request.workflows.includes(row.message_workflow)) {
          if (row.read_ct >= request.maxDeliveries) {
            unknown.push({ runId: row.run_id, workflow: row.message_workflow, msgId, deliveries: row.read_ct })
          } else {
            fixes.push({ msgId, action: "defer", at: Number(row.now_ms) + request.redeliverMillis })
          }
        } else if (status === "running") {
          fixes.push({ msgId, action: "defer", at: toMillis(row.current_lease) ?? Number(row.now_ms) })
        } else {
          fixes.push({ msgId, action: "defer", at: toMillis(row.current_wake) })
        }
      }
      if (fixes.length > 0) {
        yield* sql.unsafe(statements.fixMessages, [
          Params.bigints(fixes.map((fix) => fix.msgId)),
          Params.texts(fixes.map((fix) => fix.action)),
          Params.floats(fixes.map((fix) => fix.at))
        ])
      }
      for (const run of unknown) {
        const error = new UnknownWorkflow({ workflow: run.workflow, deliveries: run.deliveries })
        yield* sql.unsafe(statements.failUnknown, [
          run.runId,
          run.msgId,
          JSON.stringify(encodeEngineFailure(error)),
          channel
        ])
      }
      // A run executed before has a journal; a first execution cannot.
      const replayed = claimed.filter((c) => c.run.executions > 1).map((c) => c.run.id)
      if (replayed.length === 0) return claimed
      const steps = yield* sql.unsafe<StepRow>(statements.journal, [Params.texts(replayed)])
      const journals = new Map<string, Array<Store.StepRecord>>()
      for (const step of steps) {
        const list = journals.get(step.run_id) ?? []
        list.push(toStepRecord(step))
        journals.set(step.run_id, list)
      }
      return claimed.map((c) => journals.has(c.run.id) ? { ...c, journal: journals.get(c.run.id)! } : c)
    }, Effect.mapError((cause) => storeError("claim", cause)))

    const heartbeat = (leases: ReadonlyArray<Store.Lease>, leaseMillis: number) =>
      leases.length === 0
        ? Effect.succeed(new Set<string>())
        : sql.unsafe<{ token: string }>(statements.heartbeat, [
          Params.texts(leases.map((lease) => lease.runId)),
          Params.texts(leases.map((lease) => lease.token)),
          Params.bigints(leases.map((lease) => lease.msgId)),
          leaseMillis
        ]).pipe(
          Effect.map((rows) => new Set(rows.map((row) => row.token))),
          Effect.mapError((cause) => storeError("heartbeat", cause))
        )

    const cancel = (runId: string) =>
      sql.unsafe<{ cancelled: boolean; status: Status | null }>(statements.cancel, [runId, channel]).pipe(
        Effect.map((rows): Store.CancelResult => {
          const row = rows[0]
          if (row?.cancelled) return "cancelled"
          return row?.status === null || row?.status === undefined ? "not-found" : "already-terminal"
        }),
        Effect.mapError((cause) => storeError("cancel", cause))
      )

    const getRun = (runId: string) =>
      sql.unsafe<RunRow>(statements.getRun, [runId]).pipe(
        Effect.map((rows) => rows[0] === undefined ? undefined : toRunRecord(rows[0])),
        Effect.mapError((cause) => storeError("getRun", cause))
      )

    const getSteps = (runId: string) =>
      sql.unsafe<StepRow>(statements.journal, [Params.texts([runId])]).pipe(
        Effect.map((rows) => rows.map(toStepRecord)),
        Effect.mapError((cause) => storeError("getSteps", cause))
      )

    const listRuns = (query: Store.ListQuery) => {
      const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor)
      return sql.unsafe<RunRow & { created_us: string }>(statements.list, [
        query.workflow ?? null,
        query.status ?? null,
        cursor?.micros ?? null,
        cursor?.id ?? null,
        query.limit + 1
      ]).pipe(
        Effect.map((rows): Store.RunPage => {
          const page = rows.slice(0, query.limit)
          const last = page[page.length - 1]
          return {
            runs: page.map(toRunRecord),
            nextCursor: rows.length > query.limit && last !== undefined
              ? encodeCursor(last.created_us, last.id)
              : undefined
          }
        }),
        Effect.mapError((cause) => storeError("listRuns", cause))
      )
    }

    const nextWakeup = sql.unsafe<{ ms: number | null }>(statements.nextWakeup, [q]).pipe(
      Effect.map((rows) => rows[0]?.ms ?? undefined),
      Effect.map((ms) => ms === null || ms === undefined ? undefined : Math.max(0, Number(ms))),
      Effect.mapError((cause) => storeError("nextWakeup", cause))
    )

    const subscribe = Effect.gen(function*() {
      const notifications = yield* pg.listen(channel).pipe(Effect.mapError((cause) => storeError("listen", cause)))
      const out = yield* Queue.unbounded<Store.Notification, StoreError>()
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.flatMap(Queue.take(notifications), (notification) => {
            const parsed = parseNotification(notification.payload)
            return parsed === undefined ? Effect.void : Queue.offer(out, parsed)
          })
        ).pipe(
          Effect.catchCause((cause) => Queue.fail(out, storeError("listen", Cause.squash(cause))))
        )
      )
      return out as Queue.Dequeue<Store.Notification, StoreError>
    })

    const sendSignal = (runId: string, name: string, payload: unknown) =>
      sql.unsafe<{ status: Status | null; sent: boolean }>(statements.sendSignal, [
        runId,
        name,
        JSON.stringify(payload ?? null),
        channel
      ]).pipe(
        Effect.map((rows): Store.SignalResult =>
          rows[0]?.sent === true ? "sent" : rows[0]?.status === null || rows[0] === undefined ? "not-found" : "ended"
        ),
        Effect.mapError((cause) => storeError("sendSignal", cause))
      )

    const takeSignal = (take: Store.JournalWrite & { readonly signal: string }) =>
      sql.unsafe<{ owned: boolean; taken: boolean; payload: unknown }>(statements.takeSignal, [
        take.runId,
        take.token,
        take.key,
        take.name,
        take.inputHash,
        take.signal
      ]).pipe(
        Effect.map((rows): Store.TakeResult => {
          const row = rows[0]
          if (row?.owned !== true) return { _tag: "LeaseLost" }
          return row.taken ? { _tag: "Taken", payload: row.payload } : { _tag: "None" }
        }),
        Effect.mapError((cause) => storeError("takeSignal", cause))
      )

    const setEvent = (write: Store.JournalWrite & { readonly event: string; readonly value: unknown }) =>
      sql.unsafe<{ owned: boolean }>(statements.setEvent, [
        write.runId,
        write.token,
        write.key,
        write.name,
        write.inputHash,
        write.event,
        JSON.stringify(write.value ?? null),
        channel
      ]).pipe(
        Effect.map((rows): Store.WriteResult => rows[0]?.owned === true ? "ok" : "lease-lost"),
        Effect.mapError((cause) => storeError("setEvent", cause))
      )

    const getEvent = (runId: string, event: string) =>
      sql.unsafe<{ value: unknown; updated_at: Date }>(statements.getEvent, [runId, event]).pipe(
        Effect.map((rows) =>
          rows[0] === undefined ? undefined : { value: rows[0].value, updatedAt: rows[0].updated_at.getTime() }
        ),
        Effect.mapError((cause) => storeError("getEvent", cause))
      )

    const restart = (operation: "retry" | "resume") => (runId: string) =>
      sql.unsafe<{ restarted: boolean; status: Status | null }>(statements[operation], [runId, q, channel]).pipe(
        Effect.map((rows): Store.RestartResult =>
          rows[0]?.restarted === true
            ? "restarted"
            : rows[0]?.status === null || rows[0] === undefined
            ? "not-found"
            : "wrong-state"
        ),
        Effect.mapError((cause) => storeError(operation, cause))
      )

    const checkpointWith = <A, E, R>(checkpoint: (value: A) => Store.Checkpoint, effect: Effect.Effect<A, E, R>) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const value = yield* effect
          const cp = checkpoint(value)
          const rows = yield* sql.unsafe<{ run_id: string }>(statements.transactionalCheckpoint, [
            Params.texts([cp.runId]),
            Params.texts([cp.token]),
            Params.texts([cp.key]),
            Params.texts([cp.name]),
            Params.texts([cp.inputHash]),
            Params.texts([cp.status]),
            Params.texts([cp.output === undefined || cp.output === null ? null : JSON.stringify(cp.output)]),
            Params.texts([cp.error === undefined || cp.error === null ? null : JSON.stringify(cp.error)]),
            Params.ints([cp.attempts]),
            Params.floats([cp.wakeInMillis ?? null])
          ]).pipe(Effect.mapError((cause) => storeError("checkpoint", cause)))
          // Not ours any more: roll the effect back with the checkpoint.
          if (rows.length === 0) return yield* Effect.fail(leaseLost)
          return value
        })
      ).pipe(
        Effect.catchIf(
          (error): error is typeof leaseLost => error === leaseLost,
          () => Effect.succeed("lease-lost" as const)
        ),
        Effect.mapError((error) =>
          (error as { _tag?: string })?._tag === "SqlError" ? storeError("checkpoint", error) : error as E | StoreError
        )
      )

    // The engine's own statements are not traced one by one: pgflows traces workflows and steps,
    // and a span per statement on the hot path would cost more than some statements themselves.
    const untraced = Effect.withTracerEnabled(false)
    return Store.Store.of({
      createRuns: (runs) => untraced(createRuns(runs)),
      claim: (request) => untraced(claim(request)),
      checkpoint: (checkpoint) => untraced(write({ _tag: "Checkpoint", checkpoint })),
      transition: (transition) => untraced(write({ _tag: "Transition", transition })),
      heartbeat: (leases, leaseMillis) => untraced(heartbeat(leases, leaseMillis)),
      cancel,
      sendSignal,
      takeSignal: (take) => untraced(takeSignal(take)),
      setEvent: (write) => untraced(setEvent(write)),
      getEvent,
      retry: restart("retry"),
      resume: restart("resume"),
      checkpointWith,
      getRun: (runId) => untraced(getRun(runId)),
      getSteps,
      listRuns,
      nextWakeup: untraced(nextWakeup),
      subscribe
    })
  })
)

// internal

/** Sentinel for rolling back a transactional checkpoint whose lease was lost. */
const leaseLost = { _tag: "LeaseLost" } as const

type Write =
  | { readonly _tag: "Checkpoint"; readonly checkpoint: Store.Checkpoint }
  | { readonly _tag: "Transition"; readonly transition: Store.Transition }

interface CreatedRow {
  readonly id: string
  readonly created: boolean
  readonly workflow: string | null
  readonly msg_id: string | number | null
  readonly deadline_ms: number | null
}

interface RunRow {
  readonly id: string
  readonly workflow: string
  readonly status: Status
  readonly input: unknown
  readonly output: unknown
  readonly error: unknown
  readonly executions: number
  readonly recoveries: number
  readonly events: number
  readonly deadline_at: Date | null
  readonly trace: Store.TraceContext | null
  readonly lease_owner: string | null
  readonly lease_expires_at: Date | null
  readonly wake_at: Date | null
  readonly parent_id: string | null
  readonly msg_id: string | number | null
  readonly created_at: Date
  readonly updated_at: Date
  readonly started_at: Date | null
  readonly completed_at: Date | null
}

interface ClaimRow extends Omit<RunRow, "id" | "msg_id"> {
  readonly id: string | null
  readonly msg_id: string | number
  readonly read_ct: number
  readonly run_id: string
  readonly message_workflow: string
  readonly now_ms: number | string
  readonly current_status: Status | null
  readonly current_lease: Date | null
  readonly current_wake: Date | null
}

interface StepRow {
  readonly run_id: string
  readonly key: string
  readonly name: string
  readonly input_hash: string
  readonly status: StepStatus
  readonly output: unknown
  readonly error: unknown
  readonly attempts: number
  readonly wake_at: Date | null
  readonly started_at: Date | null
  readonly completed_at: Date | null
}

const toMillis = (date: Date | null): number | null => date === null ? null : date.getTime()

const toRunRecord = (row: Omit<RunRow, "id"> & { readonly id: string | null }): Store.RunRecord => ({
  id: row.id!,
  workflow: row.workflow,
  status: row.status,
  input: row.input,
  output: row.output,
  error: row.error,
  executions: row.executions,
  recoveries: row.recoveries,
  events: row.events,
  deadlineAt: toMillis(row.deadline_at),
  trace: row.trace,
  leaseOwner: row.lease_owner,
  leaseExpiresAt: toMillis(row.lease_expires_at),
  wakeAt: toMillis(row.wake_at),
  parentId: row.parent_id,
  msgId: row.msg_id === null ? null : Number(row.msg_id),
  createdAt: row.created_at.getTime(),
  updatedAt: row.updated_at.getTime(),
  startedAt: toMillis(row.started_at),
  completedAt: toMillis(row.completed_at)
})

const toStepRecord = (row: StepRow): Store.StepRecord => ({
  runId: row.run_id,
  key: row.key,
  name: row.name,
  inputHash: row.input_hash,
  status: row.status,
  output: row.output,
  error: row.error,
  attempts: row.attempts,
  wakeAt: toMillis(row.wake_at),
  startedAt: toMillis(row.started_at),
  completedAt: toMillis(row.completed_at)
})

const parseNotification = (payload: string): Store.Notification | undefined => {
  if (payload === "run") return { _tag: "Runnable" }
  if (payload.startsWith("done:")) return { _tag: "Done", runId: payload.slice(5) }
  if (payload.startsWith("cancel:")) return { _tag: "Cancelled", runId: payload.slice(7) }
  if (payload.startsWith("event:")) return { _tag: "Event", runId: payload.slice(6) }
  return undefined
}

const encodeCursor = (micros: string, id: string): string => Buffer.from(`${micros}:${id}`).toString("base64url")

const decodeCursor = (cursor: string): { micros: string; id: string } | undefined => {
  const text = Buffer.from(cursor, "base64url").toString("utf8")
  const at = text.indexOf(":")
  const micros = text.slice(0, at)
  return at > 0 && /^\d+$/.test(micros) ? { micros, id: text.slice(at + 1) } : undefined
}

const retryableCause = (cause: unknown): boolean => {
  const reason = (cause as { reason?: { isRetryable?: boolean } } | undefined)?.reason
  return reason?.isRetryable ?? false
}

const storeError = (operation: string, cause: unknown): StoreError =>
  cause instanceof StoreError ? cause : new StoreError({ operation, retryable: retryableCause(cause), cause })

/** Writes a batch of checkpoints and transitions in one statement; results in request order. */
const commitBatch = (
  sql: SqlClient.SqlClient,
  statements: Statements,
  channel: string,
  batch: ReadonlyArray<Write>
): Effect.Effect<ReadonlyArray<Store.WriteResult>, StoreError> => {
  // The same journal key twice in one batch (a progress marker and the result): the later wins.
  const checkpoints = new Map<string, Store.Checkpoint>()
  const transitions = new Map<string, Store.Transition>()
  for (const write of batch) {
    if (write._tag === "Checkpoint") {
      checkpoints.set(`${write.checkpoint.runId}\u0000${write.checkpoint.key}`, write.checkpoint)
    } else {
      transitions.set(write.transition.runId, write.transition)
      // Entries that end with the execution: a final entry is never replaced by a progress marker.
      for (const checkpoint of write.transition.checkpoints ?? []) {
        const key = `${checkpoint.runId}\u0000${checkpoint.key}`
        const existing = checkpoints.get(key)
        if (existing === undefined || existing.status === "running") checkpoints.set(key, checkpoint)
      }
    }
  }
  const cps = [...checkpoints.values()]
  const trs = [...transitions.values()]
  // Checkpoints alone, or transitions alone (the common cases), take shorter statements.
  const checkpointParams = () => [
    Params.texts(cps.map((c) => c.runId)),
    Params.texts(cps.map((c) => c.token)),
    Params.texts(cps.map((c) => c.key)),
    Params.texts(cps.map((c) => c.name)),
    Params.texts(cps.map((c) => c.inputHash)),
    Params.texts(cps.map((c) => c.status)),
    Params.texts(cps.map((c) => c.output === undefined || c.output === null ? null : JSON.stringify(c.output))),
    Params.texts(cps.map((c) => c.error === undefined || c.error === null ? null : JSON.stringify(c.error))),
    Params.ints(cps.map((c) => c.attempts)),
    Params.floats(cps.map((c) => c.wakeInMillis ?? null))
  ]
  const transitionParams = () => [
    Params.texts(trs.map((t) => t.runId)),
    Params.texts(trs.map((t) => t.token)),
    Params.texts(trs.map((t) => t.kind)),
    Params.texts(trs.map((t) => t.kind === "complete" ? JSON.stringify(t.output ?? null) : null)),
    Params.texts(trs.map((t) => t.kind === "fail" ? JSON.stringify(t.error ?? null) : null)),
    Params.floats(trs.map((t) => t.kind === "suspend" ? t.wakeInMillis : null)),
    Params.bigints(trs.map((t) => t.msgId)),
    Params.ints(trs.map((t) => t.kind === "suspend" ? t.observedEvents : 0)),
    channel
  ]
  type Row = { kind: string; run_id: string; key: string | null }
  const statement = trs.length === 0
    ? sql.unsafe<Row>(statements.checkpoints, checkpointParams())
    : cps.length === 0
    ? sql.unsafe<Row>(statements.transitions, transitionParams())
    : sql.unsafe<Row>(statements.commit, [...checkpointParams(), ...transitionParams()])
  return statement.pipe(
    Effect.map((rows) => {
      const written = new Set<string>()
      for (const row of rows) {
        written.add(row.kind === "cp" ? `cp\u0000${row.run_id}\u0000${row.key}` : `tr\u0000${row.run_id}`)
      }
      return batch.map((write): Store.WriteResult =>
        write._tag === "Checkpoint"
          ? written.has(`cp\u0000${write.checkpoint.runId}\u0000${write.checkpoint.key}`) ? "ok" : "lease-lost"
          : written.has(`tr\u0000${write.transition.runId}`)
          ? "ok"
          : "lease-lost"
      )
    }),
    Effect.mapError((cause: SqlError) => storeError("commit", cause))
  )
}

type Statements = ReturnType<typeof makeStatements>

/**
 * The end of executions, as CTEs over the transition arrays starting at parameter `$first`, after a
 * `locked` CTE that locked the runs: update the runs (a suspend whose run was woken meanwhile becomes
 * a release), delete, archive or reschedule their messages, wake the parents of runs that ended,
 * notify. `checkpoints` names the CTE of the batch's checkpoints, if any (to exclude nothing else).
 */
const transitionCtes = (schema: Identifier.Identifier, first: number) => {
  const s = Identifier.quote(schema)
  const ms = "* interval '1 millisecond'"
  const p = (n: number) => `$${first + n}`
  return `tr AS (
  SELECT t.*, CASE WHEN t.kind = 'suspend' AND l.events <> t.observed THEN 'release' ELSE t.kind END AS effective
  FROM unnest(${p(0)}::text[], ${p(1)}::text[], ${p(2)}::text[], ${p(3)}::text[], ${p(4)}::text[], ${p(5)}::float8[],
    ${p(6)}::bigint[], ${p(7)}::int[])
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
  RETURNING r.id, r.parent_id, r.wake_at, tr.effective AS kind, tr.msg_id
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

/** The journal writes of a batch, as CTEs after a `locked` CTE, over the arrays `$1` to `$10`. */
const checkpointCtes = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  const ms = "* interval '1 millisecond'"
  return `accepted AS MATERIALIZED (
  SELECT t.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::int[], $10::float8[])
    AS t(run_id, token, key, name, input_hash, status, output, error, attempts, wake_ms)
  JOIN locked l ON l.id = t.run_id AND l.lease_owner = t.token
), written AS (
  INSERT INTO ${s}.steps AS st
    (run_id, key, name, input_hash, status, output, error, attempts, wake_at, completed_at)
  SELECT run_id, key, name, input_hash, status, output::jsonb, error::jsonb, attempts,
         CASE WHEN wake_ms IS NOT NULL THEN now() + wake_ms ${ms} END,
         CASE WHEN status IN ('completed', 'failed') THEN now() END
  FROM accepted
  ON CONFLICT (run_id, key) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error, attempts = EXCLUDED.attempts,
    wake_at = EXCLUDED.wake_at, completed_at = EXCLUDED.completed_at
  WHERE st.status NOT IN ('completed', 'failed')
)`
}

const makeStatements = (schema: Identifier.Identifier) => {
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
  return {
    createRuns: `
WITH input AS (
  SELECT t.id, t.workflow, t.input::jsonb AS input, t.delay_ms, t.parent_id, t.owner, t.lease_ms, t.ord,
         t.trace::jsonb AS trace,
         least(to_timestamp(t.deadline_ms / 1000.0), now() + t.timeout_ms ${ms}) AS deadline_at,
         nextval('${schema}.queue_msg_id_seq') AS msg_id
  FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::float8[],
    $10::float8[], $11::float8[], $12::text[])
    WITH ORDINALITY AS t(id, workflow, input, delay_ms, parent_id, owner, lease_ms, deadline_ms, timeout_ms, trace,
      ord)
), inserted AS (
  INSERT INTO ${s}.runs AS r
    (id, workflow, status, input, wake_at, parent_id, msg_id, lease_owner, lease_expires_at, executions, started_at,
     deadline_at, trace)
  SELECT id, workflow,
         CASE WHEN owner IS NULL THEN 'pending' ELSE 'running' END,
         input,
         CASE WHEN delay_ms > 0 THEN now() + delay_ms ${ms} END,
         parent_id, msg_id, owner,
         CASE WHEN owner IS NOT NULL THEN now() + lease_ms ${ms} END,
         CASE WHEN owner IS NOT NULL THEN 1 ELSE 0 END,
         CASE WHEN owner IS NOT NULL THEN now() END,
         deadline_at, trace
  FROM input
  ON CONFLICT (id) DO NOTHING
  RETURNING r.id, r.workflow, r.msg_id, r.wake_at, r.lease_expires_at, r.deadline_at
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $8, coalesce(lease_expires_at, wake_at, now()), jsonb_build_object('run', id, 'workflow', workflow)
  FROM inserted
  RETURNING msg_id
), notified AS (
  SELECT pg_notify($9, 'run') AS n
  FROM (SELECT 1 FROM inserted WHERE lease_expires_at IS NULL AND wake_at IS NULL LIMIT 1) AS runnable
)
SELECT i.id, ins.id IS NOT NULL AS created, coalesce(ins.workflow, existing.workflow) AS workflow, ins.msg_id,
  (extract(epoch FROM ins.deadline_at) * 1000)::float8 AS deadline_ms
FROM input i
LEFT JOIN inserted ins ON ins.id = i.id
LEFT JOIN ${s}.runs existing ON existing.id = i.id
CROSS JOIN (SELECT count(*) FROM notified) AS forced
ORDER BY i.ord`,
    claim: `
WITH due AS (
  SELECT msg_id FROM ${s}.queue_messages
  WHERE queue = $1 AND vt <= now()
  ORDER BY vt, msg_id
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), msgs AS (
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
    AND r.workflow = ANY($5::text[])
    AND (
      (r.status = 'pending' AND (r.wake_at IS NULL OR r.wake_at <= now()))
      OR (r.status = 'suspended' AND r.wake_at <= now())
      OR (r.status = 'running' AND r.lease_expires_at < now())
    )
  RETURNING r.id, r.workflow, r.status, r.input, r.output, r.error, r.executions, r.recoveries, r.events,
    r.deadline_at, r.trace, r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.created_at, r.updated_at,
    r.started_at, r.completed_at, m.msg_id AS claimed_msg_id
)
SELECT m.msg_id, m.read_ct, m.run_id, m.message_workflow, c.id, c.workflow, c.status, c.input, c.output, c.error,
  c.executions, c.recoveries, c.events, c.deadline_at, c.trace, c.lease_owner, c.lease_expires_at, c.wake_at, c.parent_id,
  c.created_at, c.updated_at, c.started_at, c.completed_at,
  extract(epoch FROM now()) * 1000 AS now_ms,
  cur.status AS current_status, cur.lease_expires_at AS current_lease, cur.wake_at AS current_wake
FROM msgs m
LEFT JOIN claimed c ON c.claimed_msg_id = m.msg_id
LEFT JOIN ${s}.runs cur ON cur.id = m.run_id`,
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
    failUnknown: `
WITH failed AS (
  UPDATE ${s}.runs SET status = 'failed', error = $3::jsonb, lease_owner = NULL, lease_expires_at = NULL,
    completed_at = now(), updated_at = now()
  WHERE id = $1 AND status IN ('pending', 'suspended', 'running')
  RETURNING id
), moved AS (
  DELETE FROM ${s}.queue_messages WHERE msg_id = $2 RETURNING *
), archived AS (
  INSERT INTO ${s}.queue_archive (msg_id, queue, read_ct, enqueued_at, vt, message)
  SELECT msg_id, queue, read_ct, enqueued_at, vt, message FROM moved
  RETURNING msg_id
), notified AS (SELECT pg_notify($4, 'done:' || id) AS n FROM failed)
SELECT (SELECT count(*) FROM archived) AS archived, (SELECT count(*) FROM notified) AS notified`,
    journal: `
SELECT run_id, key, name, input_hash, status, output, error, attempts, wake_at, started_at, completed_at
FROM ${s}.steps WHERE run_id = ANY($1::text[])`,
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
  RETURNING id, msg_id, parent_id
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
  RETURNING id, workflow, msg_id
), dropped AS (
  -- The failed entries run again; compensations that ran after the failure are forgotten with it.
  DELETE FROM ${s}.steps st USING restarted r
  WHERE st.run_id = r.id AND (st.status IN ('failed', 'running', 'retrying') OR st.key LIKE 'c%')
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $2, now(), jsonb_build_object('run', id, 'workflow', workflow) FROM restarted
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
  RETURNING id, workflow, msg_id
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $2, now(), jsonb_build_object('run', id, 'workflow', workflow) FROM resumed
), notified AS (SELECT pg_notify($3, 'run') AS n FROM (SELECT 1 FROM resumed LIMIT 1) x)
SELECT EXISTS (SELECT 1 FROM resumed WHERE id = $1) AS restarted,
  (SELECT status FROM ${s}.runs WHERE id = $1) AS status, (SELECT count(*) FROM notified) AS forced`,
    transactionalCheckpoint: `
WITH ${lock("SELECT unnest($1::text[])")}, ${checkpointCtes(schema)}
SELECT 'cp' AS kind, run_id, key FROM accepted`,
    getRun: `SELECT * FROM ${s}.runs WHERE id = $1`,
    list: `
SELECT *, (extract(epoch FROM created_at) * 1000000)::bigint::text AS created_us
FROM ${s}.runs
WHERE ($1::text IS NULL OR workflow = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::bigint IS NULL
    OR (created_at, id) < (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::text))
ORDER BY created_at DESC, id DESC
LIMIT $5`,
    nextWakeup: `
SELECT extract(epoch FROM (min(vt) - now())) * 1000 AS ms
FROM ${s}.queue_messages WHERE queue = $1 AND vt > now() AND vt < 'infinity'::timestamptz`
  }
}
