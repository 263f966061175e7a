/**
 * Crash and concurrency: workers run as child processes (test/fixtures/worker.ts) against a real
 * PostgreSQL, are killed with SIGKILL, run four at a time, and see their database restarted. Every
 * step records its side effect in a table, so the tests count what really ran.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { EmbeddedServer, TestDatabase } from "@pgflows/testing"
import { Effect, Option } from "effect"
import { SqlClient } from "effect/sql"
import type { Run } from "pgflows"
import { all, bulk, crashChain, fanOut, lingering, paced3, transactional } from "./fixtures/crashWorkflows.ts"
import {
  client as clientOf,
  countEffects,
  createEffects,
  eventually,
  settings,
  spawnWorker,
  stopGracefully
} from "./fixtures/processes.ts"

/** Waits until a step has recorded its side effect at least once (see `crashWorkflows.ts`). */
const stepStarted = (step: string, what: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventually(
      Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM effects WHERE step = ${step}`,
        (rows) => rows[0]!.n > 0 ? true : undefined
      ),
      30,
      what
    ))

/** A client in the test process with the same settings as the workers (it runs no worker). */
const client = (env: Record<string, string>) => clientOf(env, all)

layer(TestDatabase.layer, { excludeTestServices: true })("crashes and concurrency (child processes)", (it) => {
  it.effect(
    "a worker killed with SIGKILL mid-step loses its run to a second worker, which completes it",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const env = settings(database.url, { PGFLOWS_LEASE: "1500 millis" })
        yield* createEffects
        const victim = yield* spawnWorker("victim", env)
        const flows = yield* client(env)
        const id = yield* flows.start(crashChain, { label: "order-1" })
        yield* stepStarted("slow", "the victim to start the slow step")
        // Long enough for the engine to record that an attempt of the slow step is under way.
        yield* Effect.sleep("600 millis")
        victim.child.kill("SIGKILL")
        const killed = yield* Effect.promise(() => victim.exited)
        assert.strictEqual(killed.signal, "SIGKILL")
        const before = yield* flows.status(id)
        assert.strictEqual(before.status, "running")
        assert.deepStrictEqual(before.steps.map((s) => [s.name, s.status, s.attempts]), [
          ["first", "completed", 1],
          ["slow", "running", 1]
        ])
        const rescuer = yield* spawnWorker("rescuer", env)
        const output = yield* flows.result(id, { timeout: "60 seconds" })
        assert.deepStrictEqual(output, { label: "order-1" })
        assert.deepStrictEqual(yield* countEffects, [
          "first@victim:1",
          "last@rescuer:1",
          "slow@rescuer:1",
          "slow@victim:1"
        ])
        const after = yield* flows.status(id)
        assert.strictEqual(after.status, "completed")
        assert.strictEqual(after.recoveries, 1)
        assert.strictEqual(after.executions, 2)
        assert.deepStrictEqual(after.steps.map((s) => [s.name, s.status, s.attempts]), [
          ["first", "completed", 1],
          ["slow", "completed", 2],
          ["last", "completed", 1]
        ])
        yield* stopGracefully(rescuer)
      }),
    120_000
  )

  it.effect(
    "a fan-out whose branches finish in random order survives a crash: every branch gets its own result",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const env = settings(database.url, { PGFLOWS_LEASE: "1500 millis" })
        yield* createEffects
        const victim = yield* spawnWorker("victim", env)
        const flows = yield* client(env)
        const id = yield* flows.start(fanOut, { label: "fan" })
        // Kill once the seven other branches are checkpointed; branch 5 hangs on the victim.
        yield* eventually(
          Effect.map(
            flows.status(id),
            (status) => status.steps.filter((s) => s.status === "completed").length === 7 ? true : undefined
          ),
          30,
          "seven completed branches"
        )
        victim.child.kill("SIGKILL")
        yield* Effect.promise(() => victim.exited)
        const rescuer = yield* spawnWorker("rescuer", env)
        assert.deepStrictEqual(yield* flows.result(id, { timeout: "60 seconds" }), [0, 10, 20, 30, 40, 50, 60, 70])
        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ step: string; n: number }>`
        SELECT step, count(*)::int AS n FROM effects GROUP BY step ORDER BY step`
        assert.deepStrictEqual(runs.map((r) => [r.step, r.n]), [0, 1, 2, 3, 4, 5, 6, 7].map((n) => [`branch-${n}`, 1]))
        const keys = (yield* flows.status(id)).steps.map((s) => s.key)
        assert.deepStrictEqual(keys, [0, 1, 2, 3, 4, 5, 6, 7].map((n) => `1.${n}/1`))
        yield* stopGracefully(rescuer)
      }),
    120_000
  )

  it.effect(
    "a worker killed inside Step.transaction leaves neither the write nor the record; the takeover does both once",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const env = settings(database.url, { PGFLOWS_LEASE: "1500 millis" })
        const sql = yield* SqlClient.SqlClient
        yield* createEffects
        yield* sql`DROP TABLE IF EXISTS ledger`
        yield* sql`CREATE TABLE ledger (label text NOT NULL, worker text NOT NULL)`
        const victim = yield* spawnWorker("victim", env)
        const flows = yield* client(env)
        const id = yield* flows.start(transactional, { label: "pay-1" })
        yield* eventually(
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE '%INSERT INTO ledger%'`,
            (rows) => rows[0]!.n > 0 ? true : undefined
          ),
          30,
          "the victim's open transaction"
        )
        assert.deepStrictEqual(yield* sql`SELECT * FROM ledger`, [], "the write is not committed")
        victim.child.kill("SIGKILL")
        yield* Effect.promise(() => victim.exited)
        const rescuer = yield* spawnWorker("rescuer", env)
        assert.strictEqual(yield* flows.result(id, { timeout: "60 seconds" }), 1, "the step saw exactly its own row")
        const rows = yield* sql<{ worker: string }>`SELECT worker FROM ledger`
        assert.deepStrictEqual(rows.map((r) => r.worker), ["rescuer"])
        const status = yield* flows.status(id)
        assert.deepStrictEqual(status.steps.map((s) => [s.name, s.status]), [["transfer", "completed"]])
        yield* stopGracefully(rescuer)
      }),
    120_000
  )

  it.effect(
    "a worker process stopped with SIGTERM mid-step lets the step finish within the grace, then exits",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const env = settings(database.url, { PGFLOWS_SHUTDOWN_GRACE: "20 seconds", LINGER_MILLIS: "1500" })
        yield* createEffects
        const victim = yield* spawnWorker("victim", env)
        const flows = yield* client(env)
        const id = yield* flows.start(lingering, { label: "deploy-1" })
        yield* stepStarted("linger-start", "the step to start")
        yield* stopGracefully(victim)
        assert.match(victim.output(), /stopping, 1 runs in flight/)
        assert.match(victim.output(), /stopped, 0 runs handed back/)
        const status = yield* flows.status(id)
        assert.strictEqual(status.status, "completed", "the run finished before the process exited")
        assert.deepStrictEqual(yield* countEffects, ["linger-end@victim:1", "linger-start@victim:1"])
      }),
    120_000
  )

  it.effect(
    "a worker process stopped with SIGTERM hands back a run that outlasts the grace; another takes it at once",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const env = settings(database.url, {
          PGFLOWS_SHUTDOWN_GRACE: "300 millis",
          PGFLOWS_LEASE: "60 seconds",
          LINGER_MILLIS: "600000"
        })
        yield* createEffects
        const victim = yield* spawnWorker("victim", env)
        const flows = yield* client(env)
        const id = yield* flows.start(lingering, { label: "deploy-2" })
        yield* stepStarted("linger-start", "the step to start")
        const stoppedAt = Date.now()
        yield* stopGracefully(victim)
        assert.match(victim.output(), /stopped, 1 runs handed back/)
        const handed = yield* flows.status(id)
        assert.strictEqual(handed.status, "pending", "the lease was released and the run is claimable")
        const rescuer = yield* spawnWorker("rescuer", env)
        assert.deepStrictEqual(yield* flows.result(id, { timeout: "60 seconds" }), { label: "deploy-2" })
        assert.isBelow(Date.now() - stoppedAt, 15_000, "taken over long before the 60 second lease ran out")
        yield* stopGracefully(rescuer)
      }),
    120_000
  )

  it.effect("four workers and 500 runs: every run completes and no step executes twice", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const env = settings(database.url, { PGFLOWS_WORKER_CONCURRENCY: "16" })
      yield* createEffects
      const workers = yield* Effect.all(
        ["w1", "w2", "w3", "w4"].map((name) => spawnWorker(name, env)),
        { concurrency: "unbounded" }
      )
      const flows = yield* client(env)
      const ids = yield* flows.startBatch(bulk, Array.from({ length: 500 }, (_, i) => ({ label: `run-${i}` })))
      assert.strictEqual(ids.length, 500)
      const sql = yield* SqlClient.SqlClient
      const runs = sql(`${env.PGFLOWS_SCHEMA}.runs`)
      yield* eventually(
        Effect.map(
          sql<{ done: number }>`SELECT count(*)::int AS done FROM ${runs} WHERE status = 'completed'`,
          (rows) => rows[0]!.done === 500 ? true : undefined
        ),
        120,
        "500 completed runs"
      )
      const repeated = yield* sql<{ label: string; step: string; n: number }>`
        SELECT label, step, count(*)::int AS n FROM effects GROUP BY label, step HAVING count(*) > 1`
      assert.deepStrictEqual(repeated, [], "no step of any run executed twice")
      const [totals] = yield* sql<{ effects: number; runs: number; workers: number }>`
        SELECT count(*)::int AS effects, count(DISTINCT label)::int AS runs, count(DISTINCT worker)::int AS workers
        FROM effects`
      assert.strictEqual(totals?.effects, 1500)
      assert.strictEqual(totals?.runs, 500)
      assert.isAtLeast(totals!.workers, 2, "the runs were shared between workers")
      yield* Effect.all(workers.map(stopGracefully), { concurrency: "unbounded" })
    }), 180_000)
})

describe("database restart", () => {
  it.live(
    "PostgreSQL stopped and started under a running worker: it reconnects, logs it, every run completes",
    () =>
      Effect.gen(function*() {
        const server = yield* EmbeddedServer.start({ durability: "fast" })
        const env = settings(server.url, { PGFLOWS_POLL_INTERVAL: "200 millis", PGFLOWS_LEASE: "5 seconds" })
        const database = PgClient.layer({ url: server.url, connectTimeout: "2 seconds" })
        yield* Effect.gen(function*() {
          yield* createEffects
          const worker = yield* spawnWorker("steady", env)
          const flows = yield* client(env)
          yield* flows.startBatch(paced3, Array.from({ length: 40 }, (_, i) => ({ label: `r-${i}` })))
          const sql = yield* SqlClient.SqlClient
          const runs = sql(`${env.PGFLOWS_SCHEMA}.runs`)
          yield* eventually(
            Effect.map(
              sql<{ n: number }>`SELECT count(*)::int AS n FROM effects`,
              (rows) => rows[0]!.n >= 5 ? true : undefined
            ),
            30,
            "the first steps"
          )
          yield* EmbeddedServer.restart(server, { downFor: "2 seconds" })
          const done = yield* eventually(
            Effect.map(
              Effect.option(sql<{ n: number }>`SELECT count(*)::int AS n FROM ${runs} WHERE status = 'completed'`),
              (rows) => Option.isSome(rows) && rows.value[0]!.n === 40 ? rows.value[0]!.n : undefined
            ),
            90,
            "40 completed runs after the restart"
          )
          assert.strictEqual(done, 40)
          assert.match(worker.output(), /notifications interrupted/, "the worker logged the outage")
          assert.match(worker.output(), /notifications re-established/, "and the recovery")
          const statuses = yield* sql<{ status: Run.Status; n: number }>`
          SELECT status, count(*)::int AS n FROM ${runs} GROUP BY status`
          assert.deepStrictEqual(statuses.map((s) => [s.status, s.n]), [["completed", 40]])
          yield* stopGracefully(worker)
          // The client and the worker end before the pool they use closes.
        }).pipe(Effect.scoped, Effect.provide(database), Effect.orDie)
      }).pipe(Effect.scoped),
    180_000
  )
})
