/**
 * Flow control held by the database across worker processes: four workers (test/fixtures/worker.ts
 * with the workflows of `flowWorkflows.ts`, 16 slots each) share one schema. While their runs
 * execute, the test samples from the database how many runs hold a lease, and every step records
 * its interval, so the test also computes afterwards how many ran at once: 500 runs under a global
 * limit of 5, 160 runs of 20 keys under a per-key limit of 2, a backlog of 24 runs ordered by
 * priority in a queue of one slot, and 500 runs under a rate limit of 50 starts per second (ten
 * seconds of them).
 */
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Fiber, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { flowWorkflows, globalJob, keyedJob, ratedJob, serialJob } from "./fixtures/flowWorkflows.ts"
import { client as clientOf, eventually, settings, spawnWorker, stopGracefully } from "./fixtures/processes.ts"

const createTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP TABLE IF EXISTS intervals`
  yield* sql`CREATE TABLE intervals (id serial PRIMARY KEY, queue text NOT NULL, key text NOT NULL, n int NOT NULL,
    worker text NOT NULL, started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)`
  yield* sql`DROP TABLE IF EXISTS gate`
  yield* sql`CREATE TABLE gate (open boolean NOT NULL)`
  yield* sql`INSERT INTO gate VALUES (false)`
})

/** The most runs of `workflow` that held a live lease at once, per concurrency key ("" for all), sampled. */
const sample = (schema: string, workflow: string, peaks: Ref.Ref<ReadonlyMap<string, number>>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    while (true) {
      const rows = yield* sql<{ key: string | null; n: number }>`
        SELECT concurrency_key AS key, count(*)::int AS n FROM ${sql(`${schema}.runs`)}
        WHERE workflow = ${workflow} AND status = 'running' AND lease_expires_at > now()
        GROUP BY ROLLUP (concurrency_key)`
      yield* Ref.update(peaks, (current) => {
        const next = new Map(current)
        for (const row of rows) {
          // ROLLUP's total row has a NULL key; a run without a key has one too, counted in the total.
          const key = row.key ?? ""
          next.set(key, Math.max(next.get(key) ?? 0, row.n))
        }
        return next
      })
      yield* Effect.sleep("5 millis")
    }
  })

/** The most steps of `queue` whose intervals overlapped, per key (or overall with `perKey` false). */
const overlap = (queue: string, perKey: boolean) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ key: string; n: number }>`
      SELECT CASE WHEN ${perKey} THEN i.key ELSE '' END AS key, max((
        SELECT count(*) FROM intervals j
        WHERE j.queue = i.queue AND (NOT ${perKey} OR j.key = i.key)
          AND j.started_at <= i.started_at AND j.ended_at > i.started_at))::int AS n
      FROM intervals i WHERE i.queue = ${queue} GROUP BY 1 ORDER BY 1`)

const done = (schema: string, workflow: string, runs: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventually(
      Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`${schema}.runs`)}
          WHERE workflow = ${workflow} AND status = 'completed'`,
        (rows) => rows[0]!.n === runs ? true : undefined
      ),
      120,
      `${runs} runs of ${workflow} to complete`
    ))

layer(TestDatabase.layer, { excludeTestServices: true })("flow control across worker processes", (it) => {
  it.effect(
    "four workers: a global limit of 5, a per-key limit of 2 for each of 20 keys, priorities ordering a backlog, a rate limit of 50 per second",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        // A worker claims again when its own run ends; one whose slots another worker freed learns it
        // at its next poll: a short poll lets all four take part.
        const env = settings(database.url, { WORKER_WORKFLOWS: "flow", PGFLOWS_POLL_INTERVAL: "100 millis" })
        const schema = env.PGFLOWS_SCHEMA
        const sql = yield* SqlClient.SqlClient
        yield* createTables
        const flows = yield* clientOf(env, flowWorkflows)
        const workers = yield* Effect.forEach(["w1", "w2", "w3", "w4"], (name) => spawnWorker(name, env), {
          concurrency: "unbounded"
        })

        // A global limit of 5: 500 runs, with 64 worker slots between them.
        const globalPeaks = yield* Ref.make<ReadonlyMap<string, number>>(new Map())
        const sampling = yield* Effect.forkChild(sample(schema, globalJob.name, globalPeaks))
        yield* flows.startBatch(globalJob, Array.from({ length: 500 }, (_, n) => ({ key: "all", n })))
        yield* done(schema, globalJob.name, 500)
        yield* Fiber.interrupt(sampling)
        const sampledGlobal = (yield* Ref.get(globalPeaks)).get("") ?? 0
        assert.isAtMost(sampledGlobal, 5, "never more than 5 runs held a lease at once")
        assert.isAtLeast(sampledGlobal, 3, "the runs did execute side by side")
        const [globalOverlap] = yield* overlap("flow_global", false)
        assert.isAtMost(globalOverlap!.n, 5)
        const busy = yield* sql<{ worker: string }>`SELECT DISTINCT worker FROM intervals WHERE queue = 'flow_global'`
        assert.isAtLeast(busy.length, 2, "several worker processes took part")

        // A per-key limit of 2: 20 keys, 8 runs each, started interleaved.
        const keys = Array.from({ length: 20 }, (_, k) => `tenant-${k}`)
        const keyPeaks = yield* Ref.make<ReadonlyMap<string, number>>(new Map())
        const sampleKeys = yield* Effect.forkChild(sample(schema, keyedJob.name, keyPeaks))
        yield* flows.startBatch(
          keyedJob,
          Array.from({ length: 160 }, (_, n) => ({ key: keys[n % keys.length]!, n }))
        )
        yield* done(schema, keyedJob.name, 160)
        yield* Fiber.interrupt(sampleKeys)
        const sampledKeys = yield* Ref.get(keyPeaks)
        for (const key of keys) assert.isAtMost(sampledKeys.get(key) ?? 0, 2, `key ${key}`)
        assert.isAtLeast(sampledKeys.get("") ?? 0, 3, "several keys ran side by side")
        const keyOverlap = yield* overlap("flow_keyed", true)
        assert.deepStrictEqual(keyOverlap.map((row) => row.key), [...keys].sort())
        for (const row of keyOverlap) assert.isAtMost(row.n, 2, `key ${row.key}`)
        assert.isTrue(keyOverlap.some((row) => row.n === 2), "the limit of 2 was reached, not just kept below")

        // Priorities: one slot, held by a gated run while a backlog of 24 runs is started.
        const gated = yield* flows.start(serialJob, { key: "gate", n: -1 })
        yield* eventually(
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM intervals WHERE queue = 'flow_serial'`,
            (rows) => rows[0]!.n > 0 ? true : undefined
          ),
          60,
          "the gated run to start"
        )
        const priorities = [0, 3, 1, 3, 2, 0, 1, 2, 3, 0, 2, 1, 0, 3, 1, 2, 0, 1, 3, 2, 2, 0, 1, 3]
        for (const [n, priority] of priorities.entries()) {
          yield* flows.start(serialJob, { key: `p${priority}`, n }, { priority })
        }
        yield* sql`UPDATE gate SET open = true`
        yield* done(schema, serialJob.name, 25)
        const order = yield* sql<{ n: number }>`
          SELECT n FROM intervals WHERE queue = 'flow_serial' AND key <> 'gate' ORDER BY started_at`
        const expected = [...priorities.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([n]) => n)
        assert.deepStrictEqual(order.map((row) => row.n), expected)
        const [serialOverlap] = yield* overlap("flow_serial", false)
        assert.strictEqual(serialOverlap!.n, 1, "one at a time")
        assert.strictEqual((yield* flows.status(gated)).status, "completed")

        // A rate limit of 50 starts per second: 500 runs take nine seconds at least, and the starts the
        // database counts within the last second (sampled) never exceed 50.
        const ratePeak = yield* Ref.make(0)
        const sampleRate = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
          const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`${schema}.flow_starts`)}
            WHERE queue = 'flow_rated' AND started_at > clock_timestamp() - interval '1 second'`
          yield* Ref.update(ratePeak, (peak) => Math.max(peak, row!.n))
          yield* Effect.sleep("5 millis")
        })))
        const rateStarted = Date.now()
        yield* flows.startBatch(ratedJob, Array.from({ length: 500 }, (_, n) => ({ key: "rated", n })))
        yield* done(schema, ratedJob.name, 500)
        const rateSeconds = (Date.now() - rateStarted) / 1000
        yield* Fiber.interrupt(sampleRate)
        assert.isAtMost(yield* Ref.get(ratePeak), 50, "never more than 50 starts within a second")
        assert.isAtLeast(yield* Ref.get(ratePeak), 25, "the limit was approached")
        assert.isAtLeast(rateSeconds, 9, "500 runs at 50 per second take nine seconds at least")

        yield* Effect.forEach(workers, stopGracefully, { concurrency: "unbounded", discard: true })
      }),
    240_000
  )
})
