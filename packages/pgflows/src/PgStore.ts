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
 * Isolation (docs/ARCHITECTURE.md, "Runs are isolated"):
 *
 * - `createRuns` called inside the caller's transaction (`sql.withTransaction`) writes through it,
 *   so the runs exist exactly when the caller commits, and never creates them claimed (the local
 *   fast path): nothing of them executes before the commit, whose NOTIFY wakes the workers. Every
 *   other operation of the engine runs outside any caller's transaction, on connections it acquires
 *   itself.
 * - A shared (group-commit) statement that the database rejects because of one write's values is
 *   written again in halves, so the other writes commit; the write at fault fails with a
 *   `StoreError` whose `rejected` is true.
 * - A stored value is read only when it fits what the client can read (`PgClient`'s
 *   `maxMessageSize`, less some room); a larger one is reported by size, so one run's value can
 *   never make a claim, a `status` or a `list` fail for others. `maxPayloadBytes` is checked against
 *   that limit when the layer is built.
 *
 * Times come from the database (`now()`), never from the workers' clocks. Workers are woken by
 * `NOTIFY` on `PgflowsConfig.notifyChannel`.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgTypes from "@effect/sql-pg/PgTypes"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Batcher from "./internal/batcher.ts"
import { sqlState } from "./internal/causes.ts"
import * as Params from "./internal/pgParams.ts"
import * as Statements from "./internal/pgStatements.ts"
import * as Versions from "./internal/versions.ts"
import * as PgDatabase from "./PgDatabase.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { type DatabaseUnavailable, MigrationsMissing, StoreError } from "./PgflowsError.ts"
import * as PgMigrations from "./PgMigrations.ts"
import type { Status, StepStatus } from "./Run.ts"
import * as Store from "./Store.ts"

/**
 * Provides `Store` on the application's `PgClient`, after running the migrations.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  Store.Store,
  StoreError | PgflowsConfig.PgflowsConfigError | DatabaseUnavailable | MigrationsMissing,
  PgClient.PgClient | SqlClient.SqlClient
> = Layer.effect(
  Store.Store,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* PgClient.PgClient
    const config = yield* PgflowsConfig.PgflowsConfig
    const limit = yield* readLimit(pg, config)
    yield* PgMigrations.prepare.pipe(Effect.mapError((cause) => startupError(pg, "migrations", cause)))
    yield* sql`INSERT INTO ${sql(`${config.schema}.settings`)} (queue, notify_channel)
      VALUES (${config.queue}, ${config.notifyChannel})
      ON CONFLICT (singleton) DO UPDATE SET queue = EXCLUDED.queue, notify_channel = EXCLUDED.notify_channel`.pipe(
      Effect.mapError((cause) => startupError(pg, "settings", cause))
    )
    yield* sql`INSERT INTO ${sql(`${config.schema}.queues`)} (name) VALUES (${config.queue}) ON CONFLICT DO NOTHING`
      .pipe(Effect.mapError((cause) => startupError(pg, "create queue", cause)))
    const statements = Statements.make(config.schema)
    const q = config.queue
    const channel = config.notifyChannel

    /** Runs an engine operation outside any transaction of the caller, on a connection of its own. */
    const detached = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.updateContext(
        effect,
        (context: Context.Context<R>) => Context.omit(sql.transactionService)(context) as Context.Context<R>
      )

    const write = yield* Batcher.make(
      (batch: ReadonlyArray<Write>) => detached(commitBatch(sql, statements, channel, batch)),
      { maxBatch: 512, flushers: 2, split: (error) => !error.retryable }
    )

    const insertRuns = Effect.fnUntraced(function*(runs: ReadonlyArray<Store.NewRun>) {
      if (runs.length === 0) return []
      // Inside the caller's transaction the runs must not execute before its commit: none is claimed.
      const inTransaction = Option.isSome(yield* Effect.serviceOption(sql.transactionService))
      const planned: ReadonlyArray<Store.NewRun> = inTransaction ? runs.map(({ claimFor: _, ...run }) => run) : runs
      // One run (a `start`) binds scalars, so its statement keeps a generic plan (`createRun`).
      const one = planned.length === 1
      const { floats, ints, texts } = columns(one)
      const rows = yield* sql.unsafe<CreatedRow>(one ? statements.createRun : statements.createRuns, [
        texts(planned.map((run) => run.id)),
        texts(planned.map((run) => run.workflow)),
        texts(planned.map((run) => JSON.stringify(run.input ?? null))),
        floats(planned.map((run) => run.delayMillis ?? 0)),
        texts(planned.map((run) => run.parentId ?? null)),
        texts(planned.map((run) => run.claimFor?.token ?? null)),
        floats(planned.map((run) => run.claimFor?.leaseMillis ?? 0)),
        q,
        channel,
        floats(planned.map((run) => run.deadlineAt ?? null)),
        floats(planned.map((run) => run.timeoutMillis ?? null)),
        texts(planned.map((run) => run.trace === undefined ? null : JSON.stringify(run.trace))),
        ints(planned.map((run) => run.version ?? null)),
        texts(planned.map((run) => run.concurrencyKey ?? null)),
        ints(planned.map((run) => run.priority ?? null))
      ])
      return yield* Effect.forEach(rows, (row, index) => {
        if (row.workflow === null) {
          // Another transaction created the same id while we ran: read what it wrote.
          return Effect.map(
            sql<{ workflow: string }>`SELECT workflow FROM ${sql(`${config.schema}.runs`)} WHERE id = ${row.id}`,
            (found): Store.Created => ({ id: row.id, created: false, workflow: found[0]?.workflow ?? "" })
          )
        }
        const run = planned[index]!
        const claimed = row.created && row.lease_owner !== null && row.status === "running"
          ? {
            run: toRunRecord({
              ...row,
              output: null,
              error: null,
              completed_at: null,
              forked_from: null,
              forked_at: null
            } as RunRow),
            input: { _tag: "Value", value: run.input ?? null },
            token: row.lease_owner,
            msgId: Number(row.msg_id),
            journal: [],
            now: Number(row.now_ms)
          } satisfies Store.ClaimedRun
          : undefined
        return Effect.succeed<Store.Created>({
          id: row.id,
          created: row.created,
          workflow: row.workflow,
          ...(claimed === undefined ? {} : { claimed })
        })
      })
    }, Effect.mapError((cause) => storeError("createRuns", cause)))

    /**
     * A start with a deduplication key, in a transaction that holds the key's lock (so two starts
     * with the key never both create a run): the run the key points to while it is pending (or not
     * ended, by choice), else a new run, which the key then points to.
     */
    const deduplicated = (run: Store.NewRun, dedup: NonNullable<Store.NewRun["deduplication"]>) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql.unsafe(statements.dedupLock, [`${config.schema}:${q}:${run.workflow}\u001f${dedup.key}`])
        const [found] = dedup.debounce === undefined
          ? yield* sql.unsafe<{ id: string }>(statements.dedupFind, [run.workflow, dedup.key, dedup.whileRunning])
          : yield* sql.unsafe<{ id: string }>(statements.debounce, [
            run.workflow,
            dedup.key,
            JSON.stringify(run.input ?? null),
            dedup.debounce.periodMillis,
            dedup.debounce.maxDelayMillis ?? null
          ])
        if (found !== undefined) {
          return { id: found.id, created: false, workflow: run.workflow, deduplicated: true } satisfies Store.Created
        }
        const [created] = yield* insertRuns([run])
        if (created?.created === true) {
          yield* sql.unsafe(statements.dedupRecord, [
            run.workflow,
            dedup.key,
            created.id,
            dedup.debounce?.maxDelayMillis ?? null
          ])
        }
        return created!
      })).pipe(Effect.mapError((cause) => storeError("createRuns", cause)))

    /**
     * Lone runs (a `start`) written outside any transaction of the caller, by group commit: the
     * starts made while earlier ones are being written share the next statement and its commit. A
     * value the database rejects fails its own start alone (the batcher writes the batch again in
     * halves), and an id given twice in one statement is created by its first start only.
     */
    const createLone = yield* Batcher.make(
      (batch: ReadonlyArray<Store.NewRun>) => detached(insertRuns(batch)),
      { maxBatch: 256, flushers: 2, split: (error) => !error.retryable }
    )

    /**
     * Writes new runs: in one statement, unless some have a deduplication key (one at a time then);
     * a lone run outside the caller's transaction by group commit (`createLone`).
     */
    const createRuns = (runs: ReadonlyArray<Store.NewRun>): Effect.Effect<ReadonlyArray<Store.Created>, StoreError> =>
      runs.some((run) => run.deduplication !== undefined)
        ? Effect.forEach(runs, (run) =>
          run.deduplication === undefined
            ? Effect.map(insertRuns([run]), (rows) => rows[0]!)
            : deduplicated(run, run.deduplication))
        : runs.length !== 1
        ? insertRuns(runs)
        : Effect.flatMap(
          Effect.serviceOption(sql.transactionService),
          (transaction) =>
            Option.isSome(transaction) ? insertRuns(runs) : Effect.map(createLone(runs[0]!), (created) => [created])
        )

    /** A named queue's parameters of `flowClaim` and `queueState` (`$7` to `$13`): its name and limits. */
    const flowParams = (queue: Store.ClaimQueue) => [
      queue.name,
      queue.concurrency ?? null,
      queue.keyConcurrency ?? null,
      flowWindow,
      queue.rateLimit?.limit ?? null,
      queue.rateLimit?.periodMillis ?? null,
      queue.rateLimit?.perKey ?? false
    ]

    /**
     * The claim statement of a request: the default queue's, or a named queue's (docs/ARCHITECTURE.md,
     * "Queues and flow control"), whose claims run one at a time when it has limits, each in a
     * transaction that takes the queue's lock first, so that its statement (a new snapshot) counts
     * every slot the claim before it took.
     */
    const readClaim = (request: Store.ClaimRequest) => {
      const keys = Params.texts(request.workflows.map((served) => Versions.key(served.workflow, served.version)))
      const flow = request.queue
      if (flow === undefined) {
        return sql.unsafe<ClaimRow>(statements.claim, [
          q,
          request.limit,
          request.leaseMillis,
          request.worker,
          keys,
          limit
        ])
      }
      const statement = sql.unsafe<ClaimRow>(statements.flowClaim, [
        q,
        request.limit,
        request.leaseMillis,
        request.worker,
        keys,
        limit,
        ...flowParams(flow)
      ])
      if (flow.concurrency === undefined && flow.keyConcurrency === undefined && flow.rateLimit === undefined) {
        return statement
      }
      return sql.withTransaction(
        Effect.andThen(sql.unsafe(statements.flowLock, [`${config.schema}:${q}:${flow.name}`]), statement)
      )
    }

    const claim = Effect.fnUntraced(function*(request: Store.ClaimRequest) {
      const rows = yield* readClaim(request)
      const claimed: Array<Store.ClaimedRun> = []
      const claimedRuns = new Set<string>()
      for (const row of rows) {
        if (row.id === null) continue
        claimedRuns.add(row.id)
        claimed.push({
          run: toRunRecord({ ...row, id: row.id, output: null, error: null, msg_id: row.msg_id }),
          input: row.input_text === null
            ? { _tag: "TooLarge", bytes: Number(row.input_bytes) }
            : { _tag: "Value", value: JSON.parse(row.input_text) },
          token: row.lease_owner!,
          msgId: Number(row.msg_id),
          journal: [],
          now: Number(row.now_ms)
        })
      }
      // Messages that did not lead to a claim: stale (terminal or missing run), duplicates, early, or
      // owned by a live lease.
      const fixes: Array<{ msgId: number; action: "delete" | "defer"; at: number | null }> = []
      for (const row of rows) {
        if (row.id !== null) continue
        const msgId = Number(row.msg_id)
        const status = row.current_status
        if (status === null || status === "completed" || status === "failed" || status === "cancelled") {
          fixes.push({ msgId, action: "delete", at: null })
        } else if (claimedRuns.has(row.run_id)) {
          fixes.push({ msgId, action: "delete", at: null })
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
      // A run executed before has a journal; a first execution cannot, unless it is a fork.
      const replayed = claimed.filter((c) => c.run.executions > 1 || c.run.forkedFrom !== null).map((c) => c.run.id)
      if (replayed.length === 0) return claimed
      const steps = yield* sql.unsafe<StepRow>(statements.journal, [Params.texts(replayed), limit])
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
      sql.unsafe<RunRow & ValueColumns>(statements.getRun, [runId, limit]).pipe(
        Effect.map((rows) => rows[0] === undefined ? undefined : toRunRecord(withValues(rows[0]))),
        Effect.mapError((cause) => storeError("getRun", cause))
      )

    const getInput = (runId: string) =>
      sql.unsafe<{ input_text: string | null; input_bytes: number | string }>(statements.getInput, [runId, limit]).pipe(
        Effect.map((rows): Store.StoredValue | undefined => {
          const row = rows[0]
          if (row === undefined) return undefined
          return row.input_text === null
            ? { _tag: "TooLarge", bytes: Number(row.input_bytes) }
            : { _tag: "Value", value: JSON.parse(row.input_text) }
        }),
        Effect.mapError((cause) => storeError("getInput", cause))
      )

    const getSteps = (runId: string) =>
      sql.unsafe<StepRow>(statements.journal, [Params.texts([runId]), limit]).pipe(
        Effect.map((rows) => rows.map(toStepRecord)),
        Effect.mapError((cause) => storeError("getSteps", cause))
      )

    const listRuns = (query: Store.ListQuery) => {
      const upper = upperBound(query.cursor, query.createdBefore)
      const statement = statements.reads.list[Statements.listSource(query.status)][scopeOf(query)]
      return sql.unsafe<SummaryRow>(
        statement.text,
        Statements.bind(statement, {
          workflow: query.workflow ?? null,
          version: query.version ?? null,
          status: query.status ?? null,
          upper_us: upper?.micros ?? null,
          upper_id: upper?.id ?? null,
          lower_us: micros(query.createdAfter),
          limit: query.limit + 1,
          queue: q
        })
      ).pipe(
        Effect.map((rows): Store.RunPage => {
          const page = rows.slice(0, query.limit)
          const last = page[page.length - 1]
          return {
            runs: page.map((row) => ({
              id: row.id,
              workflow: row.workflow,
              version: row.version,
              status: row.status,
              executions: row.executions,
              createdAt: row.created_at.getTime(),
              updatedAt: row.updated_at.getTime(),
              completedAt: toMillis(row.completed_at)
            })),
            nextCursor: rows.length > query.limit && last !== undefined
              ? { micros: last.created_us, id: last.id }
              : undefined
          }
        }),
        Effect.mapError((cause) => storeError("listRuns", cause))
      )
    }

    const deadLetters = (query: Store.DeadLetterQuery) => {
      const upper = upperBound(query.cursor, query.failedBefore)
      const statement = statements.reads.deadLetters[scopeOf(query)]
      return sql.unsafe<DeadLetterRow>(
        statement.text,
        Statements.bind(statement, {
          workflow: query.workflow ?? null,
          version: query.version ?? null,
          upper_us: upper?.micros ?? null,
          upper_id: upper?.id ?? null,
          lower_us: micros(query.failedAfter),
          limit: query.limit + 1,
          max_bytes: limit
        })
      ).pipe(
        Effect.map((rows): Store.DeadLetterPage => {
          const page = rows.slice(0, query.limit)
          const last = page[page.length - 1]
          return {
            deadLetters: page.map((row): Store.DeadLetterRecord => ({
              id: row.id,
              workflow: row.workflow,
              version: row.version,
              executions: row.executions,
              createdAt: row.created_at.getTime(),
              failedAt: row.failed_at.getTime(),
              error: parsed(row.error_text),
              ...(row.error_text === null && row.error_bytes !== null ? { errorTooLarge: Number(row.error_bytes) } : {})
            })),
            nextCursor: rows.length > query.limit && last !== undefined
              ? { micros: last.failed_us, id: last.id }
              : undefined
          }
        }),
        Effect.mapError((cause) => storeError("deadLetters", cause))
      )
    }

    const countRuns = (workflow?: string) =>
      counts(sql, statements, q, workflow).pipe(
        Effect.mapError((cause) => storeError("countRuns", cause))
      )

    const findRuns = (filter: Store.RunFilter) =>
      sql.unsafe<{ id: string; total: string | number }>(statements.findRuns, [
        filter.workflow,
        filter.version ?? null,
        Params.texts(filter.statuses),
        filter.createdAfter ?? null,
        filter.createdBefore ?? null,
        filter.limit
      ]).pipe(
        Effect.map((rows): Store.FoundRuns => ({
          total: rows[0] === undefined ? 0 : Number(rows[0].total),
          ids: rows.map((row) => row.id)
        })),
        Effect.mapError((cause) => storeError("findRuns", cause))
      )

    const forkRun = (request: Store.ForkRequest) =>
      sql.unsafe<{
        found: boolean
        created: boolean
        workflow: string | null
        forked_from: string | null
        forked_at: string | null
      }>(statements.forkRun, [
        request.sourceId,
        request.id,
        request.version,
        Params.texts(request.keys),
        request.fromKey,
        request.timeoutMillis ?? null,
        q,
        channel
      ]).pipe(
        Effect.map((rows): Store.ForkResult => {
          const row = rows[0]
          if (row?.created === true) return { _tag: "Created" }
          if (row?.workflow !== null && row?.workflow !== undefined) {
            return {
              _tag: "Exists",
              workflow: row.workflow,
              forkedFrom: row.forked_from === null ? null : { runId: row.forked_from, key: row.forked_at ?? "" }
            }
          }
          return { _tag: "NotFound" }
        }),
        Effect.mapError((cause) => storeError("forkRun", cause))
      )

    const inFlight = sql.unsafe<{ key: string; runs: number }>(statements.inFlight, [q]).pipe(
      Effect.map((rows) => rows.map((row): Store.InFlight => ({ ...Versions.parse(row.key), runs: row.runs }))),
      Effect.mapError((cause) => storeError("inFlight", cause))
    )

    const queueState = (queue: Store.ClaimQueue, workflows: ReadonlyArray<Store.WorkflowVersion>) =>
      sql.unsafe<{ kind: "due" | "running" | "throttled"; key: string | null; n: number }>(statements.queueState, [
        q,
        0,
        0,
        "",
        Params.texts(workflows.map((served) => Versions.key(served.workflow, served.version))),
        limit,
        ...flowParams(queue)
      ]).pipe(
        Effect.map((rows): Store.QueueState => {
          const running = rows.filter((row) => row.kind === "running")
          return {
            queue: queue.name,
            due: rows.find((row) => row.kind === "due")?.n ?? 0,
            running: running.reduce((total, row) => total + row.n, 0),
            runningByKey: running.flatMap((row) => row.key === null ? [] : [{ key: row.key, running: row.n }])
              .sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
            throttled: rows.find((row) => row.kind === "throttled")?.n ?? 0
          }
        }),
        Effect.mapError((cause) => storeError("queueState", cause))
      )

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

    // The step's own transaction, never a savepoint of a transaction the caller happened to have open.
    const checkpointWith = <A, E, R>(checkpoint: (value: A) => Store.Checkpoint, effect: Effect.Effect<A, E, R>) =>
      detached(sql.withTransaction(
        Effect.gen(function*() {
          const value = yield* effect
          const cp = checkpoint(value)
          const rows = yield* sql.unsafe<{ run_id: string }>(statements.transactionalCheckpoint, checkpointParams([cp]))
            .pipe(Effect.mapError((cause) => storeError("checkpoint", cause)))
          // Not ours any more: roll the effect back with the checkpoint.
          if (rows.length === 0) return yield* Effect.fail(leaseLost)
          return value
        })
      )).pipe(
        Effect.catchIf(
          (error): error is typeof leaseLost => error === leaseLost,
          () => Effect.succeed("lease-lost" as const)
        ),
        Effect.mapError((error) =>
          (error as { _tag?: string })?._tag === "SqlError" ? storeError("checkpoint", error) : error as E | StoreError
        )
      )

    const announceWorker = (announcement: Store.WorkerAnnouncement) =>
      sql.unsafe(statements.announceWorker, [
        announcement.worker,
        q,
        Params.texts(announcement.workflows.map((served) => Versions.key(served.workflow, served.version))),
        announcement.ttlMillis
      ]).pipe(Effect.asVoid, Effect.mapError((cause) => storeError("announceWorker", cause)))

    const retireWorker = (worker: string) =>
      sql.unsafe(statements.retireWorker, [worker]).pipe(
        Effect.asVoid,
        Effect.mapError((cause) => storeError("retireWorker", cause))
      )

    const hasWorkerFor = (workflow: string, version: number) =>
      sql.unsafe<{ served: boolean }>(statements.hasWorkerFor, [q, Versions.key(workflow, version)]).pipe(
        Effect.map((rows) => rows[0]?.served === true),
        Effect.mapError((cause) => storeError("hasWorkerFor", cause))
      )

    const unclaimed = (olderThanMillis: number) =>
      sql.unsafe<{ key: string; runs: number }>(statements.unclaimed, [q, olderThanMillis]).pipe(
        Effect.map((rows) => rows.map((row) => ({ ...Versions.parse(row.key), runs: row.runs }))),
        Effect.mapError((cause) => storeError("unclaimed", cause))
      )

    const purgeStatements = Statements.makePurge(config.schema)
    const purgeRuns = (query: Store.PurgeQuery) => {
      const statement = purgeStatements[Statements.purgeSource(query.statuses)][
        query.workflow === undefined ? "all" : "workflow"
      ]
      return sql.unsafe<{
        scanned: number
        last_us: string | null
        last_id: string | null
        runs: number
        rows: number
      }>(
        statement.text,
        Statements.bind(statement, {
          workflow: query.workflow ?? null,
          statuses: Params.texts(query.statuses),
          after_us: query.cursor?.micros ?? null,
          after_id: query.cursor?.id ?? null,
          before_us: micros(query.before),
          limit: query.limit
        })
      ).pipe(
        Effect.map((rows): Store.PurgeBatch => {
          const row = rows[0]
          const scanned = row?.scanned ?? 0
          return {
            runs: row?.runs ?? 0,
            rows: row?.rows ?? 0,
            scanned,
            nextCursor: scanned >= query.limit && row?.last_us != null && row.last_id !== null
              ? { micros: row.last_us, id: row.last_id }
              : undefined
          }
        }),
        Effect.mapError((cause) => storeError("purgeRuns", cause))
      )
    }

    // A session-level advisory lock on a connection reserved for the effect's length (no transaction
    // is held open meanwhile); released when the effect ends, or with the connection if it breaks.
    const exclusive = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
      Effect.scoped(Effect.gen(function*() {
        const key = `pgflows.${name}:${config.schema}`
        const connection = yield* detached(sql.reserve).pipe(
          Effect.mapError((cause) => storeError("exclusive", cause))
        )
        const [row] = yield* connection.execute(
          "SELECT pg_try_advisory_lock(hashtext($1)) AS locked",
          [key],
          undefined
        ).pipe(Effect.mapError((cause) => storeError("exclusive", cause)))
        if ((row as { locked?: boolean } | undefined)?.locked !== true) return Option.none<A>()
        yield* Effect.addFinalizer(() =>
          Effect.ignore(connection.execute("SELECT pg_advisory_unlock(hashtext($1))", [key], undefined))
        )
        return Option.some(yield* effect)
      }))

    // The engine's own statements are not traced one by one: pgflows traces workflows and steps,
    // and a span per statement on the hot path would cost more than some statements themselves.
    const untraced = Effect.withTracerEnabled(false)
    const engine = <A, E, R>(effect: Effect.Effect<A, E, R>) => untraced(detached(effect))
    return Store.Store.of({
      createRuns: (runs) => untraced(createRuns(runs)),
      claim: (request) => engine(claim(request)),
      checkpoint: (checkpoint) => untraced(write({ _tag: "Checkpoint", checkpoint })),
      transition: (transition) => untraced(write({ _tag: "Transition", transition })),
      heartbeat: (leases, leaseMillis) => engine(heartbeat(leases, leaseMillis)),
      cancel,
      sendSignal,
      takeSignal: (take) => engine(takeSignal(take)),
      setEvent: (write) => engine(setEvent(write)),
      getEvent,
      retry: restart("retry"),
      resume: restart("resume"),
      checkpointWith,
      getRun: (runId) => untraced(getRun(runId)),
      getInput,
      getSteps,
      listRuns,
      deadLetters,
      countRuns,
      findRuns,
      forkRun,
      inFlight,
      queueState,
      nextWakeup: engine(nextWakeup),
      announceWorker: (announcement) => engine(announceWorker(announcement)),
      retireWorker: (worker) => engine(retireWorker(worker)),
      hasWorkerFor,
      unclaimed: (olderThanMillis) => engine(unclaimed(olderThanMillis)),
      purgeRuns: (query) => detached(purgeRuns(query)),
      exclusive,
      subscribe
    })
  })
).pipe(Layer.provide(PgflowsConfig.layerDefault))

// internal

/**
 * A named queue's claim considers this many of its oldest due messages: priorities and per-key
 * limits order and skip runs among them (docs/ARCHITECTURE.md, "Queues and flow control").
 */
const flowWindow = 1000

/** Room left in a message for the other columns of a row that holds one stored value. */
const rowOverhead = 64 * 1024

/**
 * How jsonb's text form can grow over the compact JSON `maxPayloadBytes` measures: a space after
 * every `:` and `,`, at most half again.
 */
const textGrowth = 1.5

/**
 * The largest stored value (bytes of text) a read may return, from the client's `maxMessageSize`;
 * fails when `maxPayloadBytes` allows values that could not be read back.
 */
const readLimit = (pg: PgClient.PgClient, config: PgflowsConfig.PgflowsConfig) => {
  const maxMessage = pg.config.maxMessageSize ?? 16 * 1024 * 1024
  const limit = maxMessage - rowOverhead
  const largest = Math.floor(limit / textGrowth)
  return config.maxPayloadBytes <= largest
    ? Effect.succeed(limit)
    : Effect.fail(
      new PgflowsConfig.PgflowsConfigError({
        variable: "PGFLOWS_MAX_PAYLOAD_BYTES",
        reason: `is ${config.maxPayloadBytes}, more than the PostgreSQL client can read back: its maxMessageSize is ` +
          `${maxMessage} bytes, which allows at most ${largest}; lower the limit or raise maxMessageSize in ` +
          `PgClient.layer({ maxMessageSize })`
      })
    )
}

/** Sentinel for rolling back a transactional checkpoint whose lease was lost. */
const leaseLost = { _tag: "LeaseLost" } as const

type Write =
  | { readonly _tag: "Checkpoint"; readonly checkpoint: Store.Checkpoint }
  | { readonly _tag: "Transition"; readonly transition: Store.Transition }

interface RunRow {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: Status
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
  readonly forked_from: string | null
  readonly forked_at: string | null
  readonly msg_id: string | number | null
  readonly created_at: Date
  readonly updated_at: Date
  readonly started_at: Date | null
  readonly completed_at: Date | null
  readonly value_bytes?: number | string | null
}

interface CreatedRow
  extends Omit<RunRow, "workflow" | "output" | "error" | "completed_at" | "forked_from" | "forked_at">
{
  readonly created: boolean
  readonly workflow: string | null
  readonly now_ms: number | string
}

/** A stored value read as text when it fits, with the size of the larger one. */
interface ValueColumns {
  readonly output_text: string | null
  readonly error_text: string | null
  readonly value_bytes: number | string | null
}

interface ClaimRow extends Omit<RunRow, "id" | "msg_id" | "output" | "error"> {
  readonly id: string | null
  readonly msg_id: string | number
  readonly read_ct: number
  readonly run_id: string
  readonly input_text: string | null
  readonly input_bytes: number | string | null
  readonly now_ms: number | string
  readonly current_status: Status | null
  readonly current_lease: Date | null
  readonly current_wake: Date | null
}

interface StepRow extends ValueColumns {
  readonly run_id: string
  readonly key: string
  readonly name: string
  readonly input_hash: string
  readonly status: StepStatus
  readonly attempts: number
  readonly wake_at: Date | null
  readonly started_at: Date | null
  readonly completed_at: Date | null
  readonly transactional: boolean
}

interface SummaryRow {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: Status
  readonly executions: number
  readonly created_at: Date
  readonly updated_at: Date
  readonly completed_at: Date | null
  readonly created_us: string
}

interface DeadLetterRow {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly executions: number
  readonly created_at: Date
  readonly failed_at: Date
  readonly error_text: string | null
  readonly error_bytes: number | string | null
  readonly failed_us: string
}

const toMillis = (date: Date | null): number | null => date === null ? null : date.getTime()

/** Which statement shape a read takes: by the filters it sets (see `pgStatements.ts`). */
const scopeOf = (query: { readonly workflow?: string | undefined; readonly version?: number | undefined }) =>
  query.workflow !== undefined
    ? query.version !== undefined ? "workflowVersion" as const : "workflow" as const
    : query.version !== undefined
    ? "version" as const
    : "all" as const

/** Epoch milliseconds as epoch microseconds (text, for a `bigint` parameter). */
const micros = (millis: number | undefined): string | null =>
  millis === undefined ? null : (BigInt(Math.floor(millis)) * 1000n).toString()

/**
 * The upper bound of a page: the cursor, or the end of the time range when that comes first (a
 * bound whose id is empty excludes its whole microsecond: every id sorts after it).
 */
const upperBound = (cursor: Store.Cursor | undefined, before: number | undefined): Store.Cursor | undefined => {
  const end = micros(before)
  if (end === null) return cursor
  if (cursor !== undefined && BigInt(cursor.micros) < BigInt(end)) return cursor
  return { micros: end, id: "" }
}

/**
 * `Store.countRuns`, from one statement (see `pgStatements.ts`, `counts`): the runs not ended are
 * counted; each table of ended runs is counted where it is small, else estimated; completed runs,
 * when `runs` is estimated, are the estimate of the workflow's runs less those counted or estimated
 * in the other states (docs/ARCHITECTURE.md, "Reads").
 */
const counts = (
  sql: SqlClient.SqlClient,
  statements: Statements.Statements,
  queue: string,
  workflow: string | undefined
) =>
  Effect.gen(function*() {
    const statement = workflow === undefined ? statements.reads.counts.all : statements.reads.counts.workflow
    const rows = yield* sql.unsafe<{
      source: "live" | Statements.CountedTable
      workflow: string
      status: Status | null
      runs: number | null
      exact: boolean
    }>(statement.text, Statements.bind(statement, { queue, workflow }))
    const from = (source: string) => rows.filter((row) => row.source === source)
    const runs = from("runs")
    if (runs.every((row) => row.exact)) {
      return runs.map((row): Store.RunCount => ({
        workflow: row.workflow,
        status: row.status!,
        runs: row.runs ?? 0,
        exact: true
      }))
    }
    const workflows = runs.map((row) => row.workflow)
    /** A table never analyzed has no estimate: at least more than could be counted. */
    const unknown = (Statements.countLimit + 1) / Math.max(workflows.length, 1)
    const ended = (source: "failed_runs" | "cancelled_runs", status: "failed" | "cancelled") =>
      from(source).map((row): Store.RunCount => ({
        workflow: row.workflow,
        status,
        runs: Math.round(row.runs ?? unknown),
        exact: row.exact
      }))
    const live = from("live").map((row): Store.RunCount => ({
      workflow: row.workflow,
      status: row.status!,
      runs: row.runs ?? 0,
      exact: true
    }))
    const failed = ended("failed_runs", "failed")
    const cancelled = ended("cancelled_runs", "cancelled")
    const sum = (counted: ReadonlyArray<Store.RunCount>, name: string) =>
      counted.reduce((total, row) => row.workflow === name ? total + row.runs : total, 0)
    const completed = runs.map((row): Store.RunCount => ({
      workflow: row.workflow,
      status: "completed",
      runs: Math.max(
        0,
        Math.round(
          (row.runs ?? unknown) - sum(live, row.workflow) - sum(failed, row.workflow) - sum(cancelled, row.workflow)
        )
      ),
      exact: false
    }))
    return [...live, ...completed, ...failed, ...cancelled]
  })

const parsed = (text: string | null): unknown => text === null ? null : JSON.parse(text)

/** The values of a row read as text; `value_bytes` set only when one did not fit. */
const withValues = (row: RunRow & ValueColumns): RunRow => {
  const tooLarge = row.output_text === null && row.error_text === null && row.value_bytes !== null
  return {
    ...row,
    output: parsed(row.output_text),
    error: parsed(row.error_text),
    value_bytes: tooLarge ? row.value_bytes : null
  }
}

const toRunRecord = (row: RunRow): Store.RunRecord => ({
  id: row.id,
  workflow: row.workflow,
  version: row.version,
  status: row.status,
  output: row.output ?? null,
  error: row.error ?? null,
  ...(row.value_bytes === null || row.value_bytes === undefined ? {} : { outcomeTooLarge: Number(row.value_bytes) }),
  executions: row.executions,
  recoveries: row.recoveries,
  events: row.events,
  deadlineAt: toMillis(row.deadline_at),
  trace: row.trace,
  leaseOwner: row.lease_owner,
  leaseExpiresAt: toMillis(row.lease_expires_at),
  wakeAt: toMillis(row.wake_at),
  parentId: row.parent_id,
  forkedFrom: row.forked_from === null ? null : { runId: row.forked_from, key: row.forked_at ?? "" },
  msgId: row.msg_id === null ? null : Number(row.msg_id),
  createdAt: row.created_at.getTime(),
  updatedAt: row.updated_at.getTime(),
  startedAt: toMillis(row.started_at),
  completedAt: toMillis(row.completed_at)
})

const toStepRecord = (row: StepRow): Store.StepRecord => {
  const tooLarge = row.output_text === null && row.error_text === null && row.value_bytes !== null
  return {
    runId: row.run_id,
    key: row.key,
    name: row.name,
    inputHash: row.input_hash,
    status: row.status,
    output: parsed(row.output_text),
    error: parsed(row.error_text),
    attempts: row.attempts,
    wakeAt: toMillis(row.wake_at),
    startedAt: toMillis(row.started_at),
    completedAt: toMillis(row.completed_at),
    ...(tooLarge ? { tooLarge: Number(row.value_bytes) } : {}),
    ...(row.transactional ? { transactional: true } : {})
  }
}

const parseNotification = (payload: string): Store.Notification | undefined => {
  if (payload === "run") return { _tag: "Runnable" }
  if (payload.startsWith("done:")) return { _tag: "Done", runId: payload.slice(5) }
  if (payload.startsWith("cancel:")) return { _tag: "Cancelled", runId: payload.slice(7) }
  if (payload.startsWith("event:")) return { _tag: "Event", runId: payload.slice(6) }
  return undefined
}

const retryableCause = (cause: unknown): boolean => {
  const reason = (cause as { reason?: { isRetryable?: boolean } } | undefined)?.reason
  return reason?.isRetryable ?? false
}

/**
 * An error of the layer's startup: a connection failure says where and what to check (the server
 * of the application's `PgClient`); missing migrations say which; anything else is a `StoreError`.
 */
const startupError = (
  pg: PgClient.PgClient,
  operation: string,
  cause: unknown
): StoreError | DatabaseUnavailable | MigrationsMissing => {
  if (cause instanceof MigrationsMissing) return cause
  if (PgDatabase.isConnectionFailure(cause)) {
    const { host, port, database, username, url } = pg.config
    const target = url === undefined
      ? `postgresql://${username === undefined ? "" : `${username}@`}${host ?? "localhost"}:${port ?? 5432}/${
        database ?? ""
      }`
      : Redacted.value(url).replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@")
    return PgDatabase.unavailable(cause, target, "the application's PgClient")
  }
  if (operation === "migrations" && sqlState(cause) === "42501") {
    return storeError(
      "applying migrations (PGFLOWS_MIGRATIONS=auto needs the CREATE privilege: apply them with " +
        "`npx pgflows-migrate` as the schema's owner, and start with PGFLOWS_MIGRATIONS=verify)",
      cause
    )
  }
  return storeError(operation, cause)
}

const storeError = (operation: string, cause: unknown): StoreError => {
  if (cause instanceof StoreError) return cause
  const state = sqlState(cause)
  return new StoreError({
    operation,
    retryable: retryableCause(cause),
    ...(state === undefined ? {} : { sqlState: state }),
    cause
  })
}

/**
 * A batch's columns as array parameters, or with `one` (a batch of one row) as that row's scalars,
 * for the statements that read them so (`Statements` `createRun`, `checkpoint`, `transition`,
 * `commitOne`).
 */
const columns = (one: boolean) => ({
  texts: (values: ReadonlyArray<string | null>) => one ? PgTypes.text(values[0] ?? null) : Params.texts(values),
  floats: (values: ReadonlyArray<number | null>) => one ? PgTypes.float8(values[0] ?? null) : Params.floats(values),
  ints: (values: ReadonlyArray<number | null>) => one ? PgTypes.int4(values[0] ?? null) : Params.ints(values),
  bigints: (values: ReadonlyArray<number | null>) => {
    if (!one) return Params.bigints(values)
    const value = values[0] ?? null
    return PgTypes.int8(value === null ? null : BigInt(value))
  }
})

const checkpointParams = (cps: ReadonlyArray<Store.Checkpoint>, one = false) => {
  const { floats, ints, texts } = columns(one)
  return [
    texts(cps.map((c) => c.runId)),
    texts(cps.map((c) => c.token)),
    texts(cps.map((c) => c.key)),
    texts(cps.map((c) => c.name)),
    texts(cps.map((c) => c.inputHash)),
    texts(cps.map((c) => c.status)),
    texts(cps.map((c) => c.output === undefined || c.output === null ? null : JSON.stringify(c.output))),
    texts(cps.map((c) => c.error === undefined || c.error === null ? null : JSON.stringify(c.error))),
    ints(cps.map((c) => c.attempts)),
    floats(cps.map((c) => c.wakeInMillis ?? null))
  ]
}

/** Writes a batch of checkpoints and transitions in one statement; results in request order. */
const commitBatch = (
  sql: SqlClient.SqlClient,
  statements: Statements.Statements,
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
  // Checkpoints alone, or transitions alone (the common cases), take shorter statements; one of
  // each (a lone run) binds scalars.
  const one = cps.length <= 1 && trs.length <= 1
  const { bigints, floats, ints, texts } = columns(one)
  const transitionParams = () => [
    texts(trs.map((t) => t.runId)),
    texts(trs.map((t) => t.token)),
    texts(trs.map((t) => t.kind)),
    texts(trs.map((t) => t.kind === "complete" ? JSON.stringify(t.output ?? null) : null)),
    texts(trs.map((t) => t.kind === "fail" ? JSON.stringify(t.error ?? null) : null)),
    floats(trs.map((t) => t.kind === "suspend" ? t.wakeInMillis : null)),
    bigints(trs.map((t) => t.msgId)),
    ints(trs.map((t) => t.kind === "suspend" ? t.observedEvents : 0)),
    channel
  ]
  type Row = { kind: string; run_id: string; key: string | null }
  const statement = trs.length === 0
    ? sql.unsafe<Row>(one ? statements.checkpoint : statements.checkpoints, checkpointParams(cps, one))
    : cps.length === 0
    ? sql.unsafe<Row>(one ? statements.transition : statements.transitions, transitionParams())
    : sql.unsafe<Row>(one ? statements.commitOne : statements.commit, [
      ...checkpointParams(cps, one),
      ...transitionParams()
    ])
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
