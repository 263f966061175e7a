// Retention on PostgreSQL (a database of its own for this file): the conformance suite, and what
// only a real database shows: a purge waits for no lock and skips a run that another transaction is
// changing; and 100,000 old runs pruned while new runs execute, which all complete with their whole
// journals, with nothing of a run not ended touched and the reads right afterwards.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { Identifier, PgflowsConfig, Step, Workflow } from "pgflows"
import { engine, postgres } from "./conformance/backend.ts"
import { decide, Num, Odd, retentionSuite } from "./conformance/retention.ts"
import { loadHistory } from "./fixtures/history.ts"

const add = Step.make("add", { input: Num, output: Num, run: (i) => Effect.succeed({ n: i.n + 1 }) })

/** Three steps: a journal of three entries. */
const three = Workflow.make("ret_three", {
  input: Num,
  output: Num,
  run: (input) => Effect.flatMap(add(input), (a) => Effect.flatMap(add(a), add))
})

const fails = Workflow.make("ret_fails", { input: Num, output: Num, error: Odd, run: decide })

const unique = () => {
  const suffix = Crypto.randomBytes(4).toString("hex")
  return { schema: `r_${suffix}`, queue: `q_${suffix}`, notifyChannel: `c_${suffix}` }
}

layer(TestDatabase.layer, { excludeTestServices: true })("retention on PostgreSQL", (it) => {
  retentionSuite(postgres, it)

  it.effect("a purge waits for no lock: a run another transaction is changing is skipped, and kept if it restarts", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const runs = `${Identifier.quote(schema)}.runs`
      const client = yield* engine([fails])
      const held = yield* client.start(fails, { n: 1 })
      const free = yield* client.start(fails, { n: 3 })
      while ((yield* client.processOnce) > 0) {
        // until both failed
      }
      yield* Effect.sleep("10 millis")
      const before = new Date()
      // Another transaction restarts `held` (as a retry does) and has not committed yet.
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const retry = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* sql.unsafe(`UPDATE ${runs} SET status = 'pending', completed_at = NULL WHERE id = $1`, [held])
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(locked)
      const purged = yield* client.purge({ before }).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(purged.runs, 1, "the free run went, without waiting for the other")
      assert.strictEqual((yield* client.status(held)).status, "failed", "the locked run is still there")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(retry)
      // It restarted: not ended any more, so no purge takes it.
      assert.deepStrictEqual(yield* client.purge({ before }), { runs: 0, rows: 0 })
      const info = yield* client.status(held)
      assert.strictEqual(info.status, "pending")
      assert.deepStrictEqual(info.steps.map((step) => [step.name, step.status]), [["decide", "failed"]])
      assert.strictEqual(yield* Effect.flip(client.status(free)).pipe(Effect.map((e) => e._tag)), "RunNotFound")
    }).pipe(Effect.provide(Layer.fresh(postgres.layer(unique())))))

  /** Old runs of the history; sized for a 2-core machine shared with other work. */
  const old = 100_000
  const fresh = 300

  it.effect(
    `${old} old runs pruned while new runs execute: every new run completes with its whole journal, nothing not ended is touched, the reads stay right`,
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema, queue } = yield* PgflowsConfig.PgflowsConfig
        const s = Identifier.quote(schema)
        yield* loadHistory({ runs: old, pending: 200, otherMessages: 0 })
        const pendingBefore = yield* sql.unsafe<{ id: string; input: unknown; msg_id: string }>(
          `SELECT id, input, msg_id FROM ${s}.runs WHERE status = 'pending' ORDER BY id`
        )
        assert.strictEqual(pendingBefore.length, 200)
        const client = yield* engine([three, fails])
        const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 16 }))
        // The history's runs ended an hour ago or more: purge what ended before half an hour ago.
        const before = new Date(Date.now() - 30 * 60_000)
        const started = Date.now()
        const purging = yield* Effect.forkChild(client.purge({ before }))
        const ids: Array<string> = []
        for (let i = 0; i < fresh; i++) {
          ids.push(yield* client.start(three, { n: i }))
          if (i % 10 === 0) yield* Effect.sleep("5 millis")
        }
        const failing = yield* client.start(fails, { n: 1 })
        const purged = yield* Fiber.join(purging)
        const took = Date.now() - started
        for (const id of ids) yield* client.result(id, { timeout: "60 seconds" })
        yield* Effect.flip(client.result(failing, { timeout: "60 seconds" }))
        yield* Fiber.interrupt(worker)
        yield* Effect.logInfo(`purged ${purged.runs} runs (${purged.rows} rows) in ${took} ms`)

        assert.strictEqual(purged.runs, old, "every ended run of the history")
        // A run, its journal entry, and each failure's row and archived message, each cancelled run's row.
        const [history] = yield* sql.unsafe<{ runs: number }>(`SELECT count(*)::int AS runs FROM ${s}.runs`)
        assert.strictEqual(history!.runs, 200 + fresh + 1)
        for (const table of ["failed_runs", "cancelled_runs", "queue_archive"]) {
          const [row] = yield* sql.unsafe<{ n: number }>(
            `SELECT count(*)::int AS n FROM ${s}.${table} t WHERE ${
              table === "queue_archive" ? "t.message->>'run'" : "t.run_id"
            } <> $1`,
            [failing]
          )
          assert.strictEqual(row!.n, 0, `nothing of the purged runs is left in ${table}`)
        }
        const [orphans] = yield* sql.unsafe<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${s}.steps st WHERE NOT EXISTS (SELECT 1 FROM ${s}.runs r WHERE r.id = st.run_id)`
        )
        assert.strictEqual(orphans!.n, 0, "no journal entry outlives its run")
        // Every new run completed with its whole journal.
        for (const id of ids) {
          const info = yield* client.status(id)
          assert.strictEqual(info.status, "completed")
          assert.deepStrictEqual(info.steps.map((step) => [step.name, step.status]), [
            ["add", "completed"],
            ["add", "completed"],
            ["add", "completed"]
          ])
        }
        // The runs not ended are untouched: rows and messages.
        const pendingAfter = yield* sql.unsafe<{ id: string; input: unknown; msg_id: string }>(
          `SELECT id, input, msg_id FROM ${s}.runs WHERE status = 'pending' ORDER BY id`
        )
        assert.deepStrictEqual(pendingAfter, pendingBefore)
        const [messages] = yield* sql.unsafe<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${s}.queue_messages WHERE queue = $1`,
          [queue]
        )
        assert.strictEqual(messages!.n, 200)
        // The reads.
        for (const table of ["runs", "failed_runs", "cancelled_runs", "queue_archive"]) {
          yield* sql.unsafe(`ANALYZE ${s}.${table}`)
        }
        const counts = yield* client.counts()
        assert.deepStrictEqual(
          [counts.total.pending, counts.total.completed, counts.total.failed, counts.total.cancelled],
          [
            { count: 200, exact: true },
            { count: fresh, exact: true },
            { count: 1, exact: true },
            { count: 0, exact: true }
          ]
        )
        assert.deepStrictEqual((yield* client.deadLetters()).deadLetters.map((letter) => letter.id), [failing])
        const listed = yield* client.list({ status: "completed", limit: 1000 })
        assert.deepStrictEqual(listed.runs.map((run) => run.id).sort(), [...ids].sort())
        assert.strictEqual((yield* client.list({ limit: 1000 })).runs.length, 200 + fresh + 1)
        assert.deepStrictEqual((yield* client.queueMetrics()).archived, 1)
      }).pipe(Effect.provide(Layer.fresh(postgres.layer(unique())))),
    Duration.toMillis(Duration.minutes(5))
  )
})
