/**
 * `npm run bench`: measures pgflows on PostgreSQL and prints one JSON line with every figure.
 *
 * (a) raw single-row INSERT commit rate at 1 and 8 connections, (b) sequential latency from `start`
 * to `result` of a 3-step workflow, (c) the per-call path: 2,000 three-step workflows by 64
 * concurrent callers, each doing `start` then `result`, with the worker in this process (the way
 * peers are measured), (d) the batch path: the same 2,000 workflows started with `startBatch` and
 * drained by the worker at concurrency 64, (d') the queue path: 64 enqueuers each calling `start`
 * without waiting, drained by the worker of this process, (e) time for a second worker to finish a run whose
 * worker was SIGKILLed, (f) @pgflows/server over loopback HTTP (`http.ts`): the step endpoint and
 * `start`, requests/s and p50/p99, (g) with `--history=100000,1000000`, (b) to (d) again and every
 * client read on top of a preloaded history of ended runs of each size (`history.ts`). (c), (d) and (d')
 * report CPU per workflow of this process and of PostgreSQL, write transactions per workflow and WAL
 * bytes per workflow. (d) is measured again with the runs in a named queue with a per-key limit in force
 * (`throughputKeyed`, `workflows.ts`), beside the default queue's figure.
 * `--statements` and `--wal` break the per-call phase down by statement and by kind of WAL record.
 * (h) with `--purge=100000`, `Pgflows.purge` of a history of that many ended runs,
 * alone and while the batch path runs, and the batch path's throughput meanwhile (`purge.ts`).
 *
 * Every phase runs after a warm-up of `--warmup` per-call runs (1,000 by default), not measured.
 *
 * Uses `DATABASE_URL` when set, else an embedded PostgreSQL 18 with its default (durable) settings.
 * Progress goes to stderr; the JSON line to stdout.
 */
import { PgClient } from "@effect/sql-pg"
import { EmbeddedServer } from "@pgflows/testing"
import { Clock, Context, Effect, Fiber, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { FlowQueue, Pgflows, PgflowsConfig, type Workflow } from "pgflows"
import * as History from "./history.ts"
import * as Http from "./http.ts"
import * as Purge from "./purge.ts"
import { keyedQueue, keyedThreeSteps, recoverable, threeSteps, workflows } from "./workflows.ts"

const progress = (line: string) => Effect.sync(() => process.stderr.write(`[bench] ${line}\n`))
const arg = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`))
  return found === undefined ? fallback : Number(found.split("=")[1])
}
const throughputRuns = arg("runs", 2000)
/**
 * `--warmup=1000`: per-call runs made before anything is measured, unmeasured, so that the figures
 * are those of a process whose code the JIT has compiled (a server that has been up for a while),
 * not of its first seconds. `--warmup=0` measures a cold process.
 */
const warmupRuns = arg("warmup", 1000)
const latencyRuns = arg("latency-runs", 300)
const insertSeconds = arg("insert-seconds", 3)
const concurrency = arg("concurrency", 64)
const httpRequests = arg("http-requests", 2000)
const httpCallers = arg("http-callers", 32)
/** `--history=100000,1000000`: the history phase (`history.ts`) at 0 runs and at each of these sizes. */
const historySizes = (process.argv.find((a) => a.startsWith("--history="))?.split("=")[1] ?? "")
  .split(",").filter((size) => size !== "").map(Number).sort((a, b) => a - b)
const historySamples = arg("history-samples", 200)
/** `--purge=100000`: the purge phase (`purge.ts`) on a history of this many ended runs (0: none). */
const purgeRuns = arg("purge", 0)
/**
 * `--only=latency` (or `inserts`, `per-call`, `queue`, `throughput`, `recovery`, `http`, `purge`, `history`) skips the other
 * measurements.
 */
const only = process.argv.find((a) => a.startsWith("--only="))?.split("=")[1]
/**
 * `--statements`: load `pg_stat_statements` into the embedded server and report, for the per-call
 * phase, every statement with its calls, rows and execution time per workflow (the extension's own
 * cost is in every figure of such a run: compare figures of runs without it).
 */
const statements = process.argv.includes("--statements")
/**
 * `--wal`: the per-call phase's WAL by kind of record (`pg_walinspect`'s `pg_get_wal_stats`): count,
 * bytes and full-page-image bytes per workflow, what `walBytesPerWorkflow` is made of.
 */
const walRecords = process.argv.includes("--wal")

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

const round = (n: number, digits = 2) => Number(n.toFixed(digits))

/** CPU time (ms) of a process and its children: the postmaster and every backend. */
const postgresCpuMillis = (postmaster: number | undefined): number | undefined => {
  if (postmaster === undefined) return undefined
  const tick = 1000 / 100
  let total = 0
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = Fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const pid = Number(entry)
      const ppid = Number(fields[1])
      if (pid === postmaster || ppid === postmaster) total += (Number(fields[11]) + Number(fields[12])) * tick
    } catch {
      // the process ended meanwhile
    }
  }
  return total
}

const ownCpuMillis = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

const rawInserts = (connections: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, v int NOT NULL)`
    const deadline = (yield* Clock.currentTimeMillis) + insertSeconds * 1000
    let count = 0
    const loop = Effect.gen(function*() {
      while ((yield* Clock.currentTimeMillis) < deadline) {
        yield* sql`INSERT INTO bench_raw (v) VALUES (${count})`
        count++
      }
    })
    yield* Effect.all(Array.from({ length: connections }, () => loop), { concurrency: "unbounded" })
    return round(count / insertSeconds, 0)
  })

const latency = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  const samples: Array<number> = []
  for (let i = 0; i < latencyRuns + 30; i++) {
    const started = performance.now()
    const id = yield* client.start(threeSteps, { n: i })
    yield* client.result(id)
    if (i >= 30) samples.push(performance.now() - started)
  }
  samples.sort((a, b) => a - b)
  return { p50: round(percentile(samples, 50)), p99: round(percentile(samples, 99)), runs: samples.length }
})

/** The database's counters: write transactions so far (the next xid) and the WAL position. */
const databaseCounters = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ xid: string; lsn: string }>`
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid, pg_current_wal_lsn()::text AS lsn`
  return row!
})

/**
 * Measures `body`, which completes `workflows` runs: wall time, CPU of this process and of
 * PostgreSQL, write transactions and WAL bytes, per workflow.
 */
const measured = <E, R>(postmaster: number | undefined, workflows: number, body: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const before = yield* databaseCounters
    const cpu0 = ownCpuMillis()
    const pg0 = postgresCpuMillis(postmaster)
    const started = performance.now()
    yield* body
    const seconds = (performance.now() - started) / 1000
    const cpu = ownCpuMillis() - cpu0
    const pg1 = postgresCpuMillis(postmaster)
    const after = yield* databaseCounters
    const [wal] = yield* sql<{ bytes: string }>`SELECT pg_wal_lsn_diff(${after.lsn}, ${before.lsn})::text AS bytes`
    return {
      workflowsPerSecond: round(workflows / seconds, 0),
      stepsPerSecond: round((workflows * 3) / seconds, 0),
      seconds: round(seconds),
      cpuMsPerWorkflow: round(cpu / workflows, 3),
      postgresCpuMsPerWorkflow: pg0 === undefined || pg1 === undefined ? null : round((pg1 - pg0) / workflows, 3),
      writeTransactionsPerWorkflow: round((Number(after.xid) - Number(before.xid)) / workflows),
      walBytesPerWorkflow: round(Number(wal!.bytes) / workflows, 0)
    }
  })

/** A statement's text on one line, cut to a length a table can show. */
const oneLine = (query: string) => {
  const line = query.replace(/\s+/g, " ").trim()
  return line.length > 400 ? `${line.slice(0, 397)}...` : line
}

/**
 * Runs `body` (which completes `workflows` runs) with `pg_stat_statements` reset before, and reads
 * what each statement cost per workflow after: calls, rows, execution time.
 */
const perStatement = <A, E, R>(workflows: number, body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`
    yield* sql`SELECT pg_stat_statements_reset()`
    const figures = yield* body
    const rows = yield* sql<{ query: string; calls: string; rows: string; ms: number }>`
      SELECT query, calls::text, rows::text, total_exec_time AS ms FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query NOT LIKE '%pg_stat_statements%'
      ORDER BY calls DESC, total_exec_time DESC`
    const per = (n: number | string, digits = 2) => round(Number(n) / workflows, digits)
    return {
      figures,
      statementsPerWorkflow: per(rows.reduce((total, row) => total + Number(row.calls), 0)),
      statements: rows.filter((row) => Number(row.calls) >= workflows / 100).map((row) => ({
        callsPerWorkflow: per(row.calls),
        rowsPerWorkflow: per(row.rows),
        msPerWorkflow: per(row.ms, 4),
        query: oneLine(row.query)
      }))
    }
  })

/** Runs `body` (which completes `workflows` runs) and reads the WAL it wrote, by kind of record. */
const perRecord = <A, E, R>(workflows: number, body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE EXTENSION IF NOT EXISTS pg_walinspect`
    const lsn = Effect.map(
      sql<{ lsn: string }>`SELECT pg_current_wal_insert_lsn()::text AS lsn`,
      (rows) => rows[0]!.lsn
    )
    const from = yield* lsn
    const figures = yield* body
    const to = yield* lsn
    // Only flushed WAL can be read (with `DATABASE_URL`, commits may not wait for the flush).
    const flushed = sql<{ done: boolean }>`SELECT pg_current_wal_flush_lsn() >= ${to}::pg_lsn AS done`
    for (let i = 0; i < 100 && !(yield* flushed)[0]!.done; i++) yield* Effect.sleep("20 millis")
    const rows = yield* sql<{ kind: string; count: string; record: string; fpi: string }>`
      SELECT "resource_manager/record_type" AS kind, count::text, record_size::text AS record, fpi_size::text AS fpi
      FROM pg_get_wal_stats(${from}::pg_lsn, ${to}::pg_lsn, true)
      WHERE count > 0 ORDER BY combined_size DESC`
    const per = (n: string) => round(Number(n) / workflows, 2)
    return {
      figures,
      records: rows.map((row) => ({
        kind: row.kind,
        perWorkflow: per(row.count),
        bytesPerWorkflow: round(Number(row.record) / workflows, 0),
        fullPageImageBytesPerWorkflow: round(Number(row.fpi) / workflows, 0)
      }))
    }
  })

/** `runs` runs by 64 callers (`--concurrency`), each starting a run and waiting for its result. */
const callers = (runs: number) =>
  Effect.gen(function*() {
    const client = yield* Pgflows.Pgflows
    let next = 0
    const caller = Effect.gen(function*() {
      while (next < runs) {
        const n = next++
        const id = yield* client.start(threeSteps, { n })
        const out = yield* client.result(id)
        if (out.n !== n + 3) return yield* Effect.die(new Error(`run ${id}: ${out.n} instead of ${n + 3}`))
      }
    })
    yield* Effect.all(Array.from({ length: concurrency }, () => caller), { concurrency: "unbounded", discard: true })
  })

/** The per-call path, measured: `callers` until all `--runs` are done. */
const perCall = (postmaster: number | undefined) => measured(postmaster, throughputRuns, callers(throughputRuns))

/** Until none of the benchmark's runs of `workflow` is in flight: the queue's messages, whatever the history. */
const drained = (workflow: Workflow.Workflow<string, any, any, any, never> = threeSteps) =>
  Effect.gen(function*() {
    const client = yield* Pgflows.Pgflows
    let left = throughputRuns
    while (left > 0) {
      yield* Effect.sleep("20 millis")
      left = (yield* client.runsInFlight(workflow.name)).reduce((sum, row) => sum + row.runs, 0)
      if (process.env.BENCH_DEBUG) yield* progress(`left ${left}`)
    }
  })

/**
 * 64 enqueuers (`--concurrency`), each calling `start` without waiting for the result, and the
 * worker of this process draining what they start.
 */
const enqueued = (postmaster: number | undefined) =>
  measured(
    postmaster,
    throughputRuns,
    Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      let next = 0
      const enqueuer = Effect.gen(function*() {
        while (next < throughputRuns) yield* client.start(threeSteps, { n: next++ })
      })
      yield* Effect.all(Array.from({ length: concurrency }, () => enqueuer), {
        concurrency: "unbounded",
        discard: true
      })
      yield* drained()
    })
  )

const throughput = (
  postmaster: number | undefined,
  workflow: Workflow.Workflow<string, any, any, any, never> = threeSteps
) =>
  measured(
    postmaster,
    throughputRuns,
    Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      for (let offset = 0; offset < throughputRuns; offset += 500) {
        const size = Math.min(500, throughputRuns - offset)
        yield* client.startBatch(workflow, Array.from({ length: size }, (_, i) => ({ n: offset + i })))
      }
      // Done when none of them is in flight: the queue's messages, so the poll costs the same whatever
      // history the runs table holds (the history phase measures this with a million ended runs).
      yield* drained(workflow)
    })
  )

const recovery = (url: Redacted.Redacted<string>) =>
  Effect.gen(function*() {
    const suffix = Crypto.randomBytes(3).toString("hex")
    const lease = 2000
    const env = {
      ...process.env,
      DATABASE_URL: Redacted.value(url),
      PGFLOWS_QUEUE: `recovery_${suffix}`,
      PGFLOWS_NOTIFY_CHANNEL: `recovery_${suffix}`,
      PGFLOWS_LEASE: `${lease} millis`,
      PGFLOWS_POLL_INTERVAL: "100 millis"
    }
    const spawn = (role: string) =>
      Effect.promise(() =>
        new Promise<ChildProcess.ChildProcess>((resolve, reject) => {
          const child = ChildProcess.spawn(process.execPath, [Path.join(import.meta.dirname, "worker.ts")], {
            env: { ...env, BENCH_ROLE: role },
            stdio: ["ignore", "pipe", "inherit"]
          })
          child.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve(child))
          child.on("exit", (code) => reject(new Error(`worker ${role} exited (${code})`)))
        })
      )
    const config = yield* PgflowsConfig.make({ queue: env.PGFLOWS_QUEUE, notifyChannel: env.PGFLOWS_NOTIFY_CHANNEL })
    // Fresh: the store layers of the measurements above are memoized with the other queue.
    const client = Context.get(
      yield* Layer.build(
        Layer.fresh(Pgflows.layerPg({ workflows })).pipe(
          Layer.provide(Layer.succeed(PgflowsConfig.PgflowsConfig, config))
        )
      ),
      Pgflows.Pgflows
    )
    const victim = yield* spawn("victim")
    const id = yield* client.start(recoverable, { n: 1 })

    while ((yield* client.status(id)).steps.length < 1) yield* Effect.sleep("10 millis")
    yield* Effect.sleep("100 millis")
    const killedAt = performance.now()
    victim.kill("SIGKILL")
    const rescuer = yield* spawn("rescuer")
    yield* client.result(id, { timeout: "60 seconds" })
    const millis = performance.now() - killedAt
    rescuer.kill("SIGTERM")
    return { millis: round(millis, 0), leaseMillis: lease }
    // Scoped here: the client's LISTEN connection must be released before the pool closes.
  }).pipe(Effect.scoped)

const main = Effect.gen(function*() {
  const fromEnv = process.env.DATABASE_URL
  let url: Redacted.Redacted<string>
  let postmaster: number | undefined
  let server: string
  if (fromEnv !== undefined && fromEnv !== "") {
    url = Redacted.make(fromEnv)
    server = "DATABASE_URL"
  } else {
    yield* progress("starting an embedded PostgreSQL (default, durable settings)")
    const embedded = yield* EmbeddedServer.start(
      statements
        ? { settings: { shared_preload_libraries: "pg_stat_statements", "pg_stat_statements.track": "all" } }
        : {}
    )
    url = embedded.url
    postmaster = embedded.pid
    server = `embedded PostgreSQL ${embedded.version}`
  }
  const Database = PgClient.layer({ url, maxConnections: 16 })
  const config = yield* PgflowsConfig.make({ workerConcurrency: concurrency, pollInterval: "100 millis" })
  return yield* Effect.gen(function*() {
    const skip = (what: string) => only !== undefined && only !== what
    yield* progress(`raw INSERT commit rate, ${insertSeconds}s at 1 connection`)
    const insert1 = skip("inserts") ? null : yield* rawInserts(1)
    yield* progress(`raw INSERT commit rate, ${insertSeconds}s at 8 connections`)
    const insert8 = skip("inserts") ? null : yield* rawInserts(8)
    const client = yield* Pgflows.Pgflows
    // The default queue's worker (its figures are those of a worker that serves no named queue).
    const worker = yield* Effect.forkChild(client.runWorker({ concurrency, queues: [FlowQueue.defaultName] }))
    if (
      warmupRuns > 0 && ["latency", "per-call", "queue", "throughput", "history", "purge"].some((what) => !skip(what))
    ) {
      yield* progress(`warm-up, ${warmupRuns} runs on the per-call path (not measured)`)
      yield* callers(warmupRuns)
    }
    yield* progress(`sequential latency, ${latencyRuns} runs of a 3-step workflow`)
    const sequential = skip("latency") ? null : yield* latency
    yield* progress(`per call, ${throughputRuns} runs of a 3-step workflow by ${concurrency} callers (start, result)`)
    const counted = skip("per-call") || !statements ? null : yield* perStatement(throughputRuns, perCall(postmaster))
    const walled = skip("per-call") || !walRecords || counted !== null
      ? null
      : yield* perRecord(throughputRuns, perCall(postmaster))
    const calls = skip("per-call") ? null : counted?.figures ?? walled?.figures ?? (yield* perCall(postmaster))
    yield* progress(`queue, ${throughputRuns} runs of a 3-step workflow started by ${concurrency} enqueuers (start)`)
    const queue = skip("queue") ? null : yield* enqueued(postmaster)
    yield* progress(`batch, ${throughputRuns} runs of a 3-step workflow (startBatch) at concurrency ${concurrency}`)
    const flow = skip("throughput") ? null : yield* throughput(postmaster)
    yield* Fiber.interrupt(worker)
    yield* progress(
      `batch, ${throughputRuns} runs in a named queue with a per-key limit (${keyedQueue.keyConcurrency} per key, ` +
        `32 keys) at concurrency ${concurrency}`
    )
    const keyedWorker = yield* Effect.forkChild(client.runWorker({ concurrency, queues: [keyedQueue] }))
    const keyed = skip("throughput") ? null : yield* throughput(postmaster, keyedThreeSteps)
    yield* Fiber.interrupt(keyedWorker)
    yield* progress("recovery after SIGKILL")
    const recovered = skip("recovery") ? null : yield* recovery(url)
    yield* progress(`HTTP, ${httpRequests} requests of each kind by ${httpCallers} callers over loopback`)
    const http = skip("http")
      ? null
      : yield* Http.measure({ requests: httpRequests, callers: httpCallers, workflow: threeSteps.name })
    const purge = purgeRuns === 0 || skip("purge")
      ? null
      : yield* Purge.measure({ runs: purgeRuns, throughput: throughput(postmaster) })
    const history = historySizes.length === 0 || skip("history")
      ? null
      : yield* History.measure({
        sizes: historySizes,
        samples: historySamples,
        concurrency,
        sequential: latency,
        perCall: perCall(postmaster),
        throughput: throughput(postmaster)
      })
    return {
      server,
      cpus: Os.cpus().length,
      warmupRuns,
      rawInsertsPerSecond: { connections1: insert1, connections8: insert8 },
      sequentialLatencyMs: sequential,
      perCall: {
        runs: throughputRuns,
        callers: concurrency,
        ...calls,
        ...(counted === null ? {} : { statementsPerWorkflow: counted.statementsPerWorkflow })
      },
      statements: counted?.statements ?? null,
      walRecords: walled?.records ?? null,
      queue: { runs: throughputRuns, enqueuers: concurrency, ...queue },
      throughput: { runs: throughputRuns, concurrency, ...flow },
      throughputKeyed: {
        runs: throughputRuns,
        concurrency,
        keyConcurrency: keyedQueue.keyConcurrency,
        keys: 32,
        ...keyed
      },
      recoveryAfterKillMs: recovered,
      http,
      purge,
      history
    }
  }).pipe(
    Effect.provide(Pgflows.layerPg({ workflows }).pipe(Layer.provideMerge(Database))),
    Effect.provideService(PgflowsConfig.PgflowsConfig, config)
  )
}).pipe(Effect.scoped)

Effect.runPromise(main).then(
  (figures) => {
    process.stdout.write(`${JSON.stringify(figures)}\n`)
    process.exit(0)
  },
  (error) => {
    process.stderr.write(
      `[bench] failed: ${error} ${(error as { reason?: { cause?: unknown } })?.reason?.cause ?? ""}\n`
    )
    process.exit(1)
  }
)
