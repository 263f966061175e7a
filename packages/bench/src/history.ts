// The history phase of `npm run bench` (`--history=100000,1000000`): the hot path and every client
// read measured on top of a preloaded history of ended runs, at 0 runs and at each size asked for.
//
// The history is written with set-based SQL (a few statements per 50,000 runs) shaped like the rows
// the engine writes for the bench's 3-step workflow: a run with its input and output (or its stored
// error), three journal entries, and for a failed run its queue message moved to the archive. Of
// every 1,000 runs, 50 failed, 1 was cancelled (two steps done, the third interrupted) and the rest
// completed; they are spread over four workflows (`bench_three_steps` 40%, `bench_orders`,
// `bench_invoices` and `bench_emails` 20% each; 1 in 20 runs of `bench_orders` (in runs of 20) is version 2, the
// others version 1), created 100 ms apart in the past, oldest first. After each load the tables are
// vacuumed and analyzed, as autovacuum would have done in a database that has been running.
//
// At each size: the sequential latency, the per-call and batch figures of `main.ts` (CPU, write
// transactions and WAL bytes per workflow; each after a CHECKPOINT, so that each pays the full-page
// writes of the pages it touches first), then p50/p99 of each client read over `samples` calls
// (after 10 unmeasured ones, which also take the prepared statements past PostgreSQL's switch to a
// generic plan). 50 runs of a workflow no worker serves stay pending throughout, so lists of live
// runs have something to find. Prints a table to stderr; returns the figures for the JSON line.
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Pgflows, PgflowsConfig, Workflow } from "pgflows"

/** The figures of `main.ts`'s measurements, as the history phase reports them. */
export interface HotPathFigures {
  readonly workflowsPerSecond: number
  readonly seconds: number
  readonly cpuMsPerWorkflow: number
  readonly postgresCpuMsPerWorkflow: number | null
  readonly writeTransactionsPerWorkflow: number
  readonly walBytesPerWorkflow: number
}

export interface Options<E, R> {
  /** History sizes to measure at, besides 0 (ascending). */
  readonly sizes: ReadonlyArray<number>
  /** Calls of each read. */
  readonly samples: number
  readonly sequential: Effect.Effect<{ readonly p50: number; readonly p99: number }, E, R>
  readonly perCall: Effect.Effect<HotPathFigures, E, R>
  readonly throughput: Effect.Effect<HotPathFigures, E, R>
  readonly concurrency: number
}

const progress = (line: string) => Effect.sync(() => process.stderr.write(`[bench] ${line}\n`))
const round = (n: number, digits = 2) => Number(n.toFixed(digits))
const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

/** Runs that stay pending: no worker registers this workflow. */
const parked = Workflow.make("bench_parked", {
  input: Schema.Struct({ n: Schema.Number }),
  output: Schema.Struct({ n: Schema.Number }),
  run: (input) => Effect.succeed(input)
})

/** Runs `[from, to)` of a history of `total`, written in one transaction (also the purge phase's, `purge.ts`). */
export const load = (from: number, to: number, total: number, anchor: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { schema, queue } = yield* PgflowsConfig.PgflowsConfig
    const s = `"${schema}"`
    // Run i was created (total - i) * 100 ms before the start of the bench's history, an hour ago.
    const rows = `
SELECT i, id, workflow, version, status, created, created + interval '2 milliseconds' AS started,
  created + interval '50 milliseconds' AS ended,
  workflow || CASE WHEN version = 0 THEN '' ELSE chr(31) || version::text END AS key
FROM (
  SELECT i, created,
    substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' ||
      substr(r, 7, 12) AS id,
    CASE i % 5 WHEN 2 THEN 'bench_orders' WHEN 3 THEN 'bench_invoices' WHEN 4 THEN 'bench_emails'
      ELSE 'bench_three_steps' END AS workflow,
    CASE WHEN i % 5 <> 2 THEN 0 WHEN i / 100 % 20 = 7 THEN 2 ELSE 1 END AS version,
    CASE WHEN i / 5 % 1000 = 7 THEN 'cancelled' WHEN i / 5 % 20 = 3 THEN 'failed' ELSE 'completed' END AS status
  FROM (
    SELECT i, $3::timestamptz - ($2::bigint - i) * interval '100 milliseconds' AS created, md5(i::text || ':history') AS r
    FROM generate_series($1::bigint, $4::bigint - 1) AS i
  ) t
  CROSS JOIN LATERAL (SELECT lpad(to_hex((extract(epoch FROM created) * 1000)::bigint), 12, '0') AS h) x
) u`
    const params = [from, total, anchor, to]
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql.unsafe(
        `
INSERT INTO ${s}.runs (id, workflow, version, status, input, output, error, executions, recoveries, msg_id,
  created_at, updated_at, started_at, completed_at)
SELECT id, workflow, version, status, jsonb_build_object('n', i),
  CASE WHEN status = 'completed' THEN jsonb_build_object('n', i + 3) END,
  CASE WHEN status = 'failed' THEN jsonb_build_object('source', 'workflow', 'error',
    jsonb_build_object('n', i + 2, '_tag', 'Boom')) END,
  1, 0, nextval('${schema}.queue_msg_id_seq'), created, ended, started, ended
FROM (${rows}) v`,
        params
      )
      yield* sql.unsafe(
        `
INSERT INTO ${s}.steps (run_id, key, name, input_hash, status, output, error, attempts, started_at, completed_at)
SELECT v.id, k::text, (ARRAY['one', 'two', 'three'])[k], substr(md5(k::text || ':' || (v.i + k - 1)::text), 1, 32),
  CASE WHEN k < 3 OR v.status = 'completed' THEN 'completed' WHEN v.status = 'failed' THEN 'failed' ELSE 'running' END,
  CASE WHEN k < 3 OR v.status = 'completed' THEN jsonb_build_object('n', v.i + k) END,
  CASE WHEN k = 3 AND v.status = 'failed' THEN jsonb_build_object('source', 'step', 'error',
    jsonb_build_object('n', v.i + 2, '_tag', 'Boom')) END,
  1, v.started + k * interval '10 milliseconds',
  CASE WHEN k < 3 OR v.status <> 'cancelled' THEN v.started + k * interval '10 milliseconds' END
FROM (${rows}) v CROSS JOIN generate_series(1, 3) AS k`,
        params
      )
      yield* sql.unsafe(
        `
INSERT INTO ${s}.queue_archive (msg_id, queue, read_ct, enqueued_at, vt, message, archived_at)
SELECT r.msg_id, $5, 1, v.created, v.started + interval '30 seconds',
  jsonb_build_object('run', v.id, 'workflow', v.key), v.ended
FROM (${rows}) v JOIN ${s}.runs r ON r.id = v.id
WHERE v.status = 'failed'`,
        [...params, queue]
      )
      // The failed and the cancelled runs' own tables, where the schema has them (migration 9).
      const [side] = yield* sql<{ found: boolean }>`SELECT to_regclass(${`${s}.failed_runs`}) IS NOT NULL AS found`
      if (side?.found === true) {
        for (
          const [table, status, time] of [["failed_runs", "failed", "failed_at"], [
            "cancelled_runs",
            "cancelled",
            "cancelled_at"
          ]]
        ) {
          yield* sql.unsafe(
            `
INSERT INTO ${s}.${table} (run_id, workflow, version, created_at, ${time})
SELECT id, workflow, version, created, ended FROM (${rows}) v WHERE v.status = '${status}'`,
            params
          )
        }
      }
    }))
  })

/** p50 and p99 of `samples` calls of `read`, after 10 that are not measured. */
const timed = <A, E, R>(samples: number, read: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10; i++) yield* read
    const times: Array<number> = []
    for (let i = 0; i < samples; i++) {
      const started = performance.now()
      yield* read
      times.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    return { p50: round(percentile(times, 50)), p99: round(percentile(times, 99)) }
  })

/**
 * The client reads a dashboard or a CLI makes, each by a name for the table; `window` is an hour in
 * the middle of the history. Reads the client does not have (before the reads of issue 19: the
 * counts, the dead letters, a time range) are left out.
 */
const reads = (
  client: Pgflows.Pgflows["Service"],
  oldRun: string,
  window: { readonly createdAfter: Date; readonly createdBefore: Date }
) => {
  const secondPage = Effect.flatMap(
    client.list({ status: "failed", limit: 50 }),
    (page) => client.list({ status: "failed", limit: 50, cursor: page.nextCursor })
  )
  const newer = typeof client.counts === "function"
    ? {
      "list({ createdAfter, createdBefore })": client.list(window),
      "list({ workflow, status: completed, createdBefore })": client.list({
        workflow: "bench_invoices",
        status: "completed",
        createdBefore: window.createdBefore
      }),
      "counts()": client.counts(),
      "deadLetters()": client.deadLetters(),
      "deadLetters({ workflow })": client.deadLetters({ workflow: "bench_invoices" })
    }
    : {}
  return {
    "list()": client.list(),
    "list({ workflow })": client.list({ workflow: "bench_orders" }),
    "list({ workflow, version: 2 })": client.list({ workflow: "bench_orders", version: 2 }),
    "list({ version: 2 })": client.list({ version: 2 }),
    "list({ status: running })": client.list({ status: "running" }),
    "list({ status: pending })": client.list({ status: "pending" }),
    "list({ status: completed })": client.list({ status: "completed" }),
    "list({ workflow, status: failed })": client.list({ workflow: "bench_orders", status: "failed", limit: 50 }),
    "list({ status: failed }), 2 pages": secondPage,
    "list({ status: cancelled })": client.list({ status: "cancelled" }),
    "status(old run)": client.status(oldRun),
    "runsInFlight()": client.runsInFlight(),
    "queueMetrics()": client.queueMetrics(),
    ...newer
  } satisfies Record<string, Effect.Effect<unknown, unknown>>
}

export const measure = <E, R>(options: Options<E, R>) =>
  Effect.gen(function*() {
    const client = yield* Pgflows.Pgflows
    const sql = yield* SqlClient.SqlClient
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    const total = options.sizes[options.sizes.length - 1] ?? 0
    const [anchor] = yield* sql<{ at: Date }>`SELECT now() - interval '1 hour' AS at`
    yield* client.startBatch(parked, Array.from({ length: 50 }, (_, n) => ({ n })))
    const worker = yield* Effect.forkChild(client.runWorker({ concurrency: options.concurrency }))
    const figures: Array<{
      readonly runs: number
      readonly databaseBytes: number
      readonly sequentialP50Ms: number
      readonly perCall: HotPathFigures
      readonly throughput: HotPathFigures
      readonly reads: Record<string, { readonly p50: number; readonly p99: number }>
    }> = []
    let loaded = 0
    for (const size of [0, ...options.sizes]) {
      if (size > loaded) {
        yield* progress(`history: loading runs ${loaded} to ${size}`)
        for (let from = loaded; from < size; from += 50_000) {
          yield* load(from, Math.min(size, from + 50_000), total, anchor!.at)
        }
        loaded = size
        yield* progress("history: VACUUM (ANALYZE)")
        for (const table of ["runs", "steps", "queue_archive", "queue_messages"]) {
          yield* sql.unsafe(`VACUUM (ANALYZE) "${schema}".${table}`)
        }
      }
      yield* progress(`history ${size}: hot path`)
      // Each measurement starts after a checkpoint, so each pays the same full-page writes.
      const checkpoint = sql.unsafe("CHECKPOINT")
      const sequential = yield* options.sequential
      yield* checkpoint
      const perCall = yield* options.perCall
      yield* checkpoint
      const throughput = yield* options.throughput
      yield* progress(`history ${size}: reads, ${options.samples} calls each`)
      const [old] = yield* sql<{ id: string }>`SELECT id FROM ${sql(`${schema}.runs`)} ORDER BY created_at LIMIT 1`
      const measured: Record<string, { p50: number; p99: number }> = {}
      const middle = anchor!.at.getTime() - total * 50
      const window = { createdAfter: new Date(middle - 3_600_000), createdBefore: new Date(middle) }
      for (const [name, read] of Object.entries(reads(client, old!.id, window))) {
        measured[name] = yield* timed(options.samples, read as Effect.Effect<unknown, unknown>)
      }
      const [bytes] = yield* sql<{ bytes: string }>`SELECT pg_database_size(current_database())::text AS bytes`
      figures.push({
        runs: size,
        databaseBytes: Number(bytes!.bytes),
        sequentialP50Ms: sequential.p50,
        perCall,
        throughput,
        reads: measured
      })
    }
    yield* Fiber.interrupt(worker)
    yield* Effect.sync(() => process.stderr.write(table(figures)))
    return figures
  })

/** The figures as a Markdown table, one column per size. */
const table = (
  figures: ReadonlyArray<{
    readonly runs: number
    readonly databaseBytes: number
    readonly sequentialP50Ms: number
    readonly perCall: HotPathFigures
    readonly throughput: HotPathFigures
    readonly reads: Record<string, { readonly p50: number; readonly p99: number }>
  }>
) => {
  const header = `| figure | ${figures.map((f) => `${f.runs.toLocaleString("en")} runs`).join(" | ")} |`
  const rule = `| --- | ${figures.map(() => "---:").join(" | ")} |`
  const row = (name: string, cell: (f: (typeof figures)[number]) => string) =>
    `| ${name} | ${figures.map(cell).join(" | ")} |`
  const names = Object.keys(figures[0]?.reads ?? {})
  const lines = [
    header,
    rule,
    ...names.map((name) =>
      row(`\`${name}\` p50 / p99 ms`, (f) => {
        const read = f.reads[name]
        return read === undefined ? "-" : `${read.p50} / ${read.p99}`
      })
    ),
    row(
      "per call: wf/s, WAL B/wf, write tx/wf",
      (f) =>
        `${f.perCall.workflowsPerSecond}, ${f.perCall.walBytesPerWorkflow}, ${f.perCall.writeTransactionsPerWorkflow}`
    ),
    row(
      "batch: wf/s, WAL B/wf, write tx/wf",
      (f) =>
        `${f.throughput.workflowsPerSecond}, ${f.throughput.walBytesPerWorkflow}, ${f.throughput.writeTransactionsPerWorkflow}`
    ),
    row("sequential p50 ms", (f) => `${f.sequentialP50Ms}`),
    row("database size", (f) => `${round(f.databaseBytes / 1024 / 1024, 0)} MB`)
  ]
  return `\n${lines.join("\n")}\n\n`
}
