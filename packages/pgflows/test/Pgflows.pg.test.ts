// What only PostgreSQL has: the SQL entry point, the shared pool, migrations, real-time leases.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { PgflowsConfig, PgMigrations, Step, Workflow } from "pgflows"
import { counter, engine, postgres } from "./conformance/backend.ts"

const Num = Schema.Struct({ n: Schema.Number })

const within = <A, E, R>(body: Effect.Effect<A, E, R>, config: PgflowsConfig.Options = {}) =>
  body.pipe(Effect.provide(postgres.layer(config)))

layer(TestDatabase.layer, { excludeTestServices: true })("pgflows on PostgreSQL", (it) => {
  it.effect("<schema>.enqueue_workflow starts a run from SQL, idempotently by id", () =>
    within(Effect.gen(function*() {
      const double = Workflow.make("double", { input: Num, output: Num, run: (i) => Effect.succeed({ n: i.n * 2 }) })
      const client = yield* engine([double])
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const enqueue = sql(`${schema}.enqueue_workflow`)
      const [generated] = yield* sql<{ id: string }>`SELECT ${enqueue}('double', '{"n": 21}'::jsonb) AS id`
      const [first] = yield* sql<{ id: string }>`SELECT ${enqueue}('double', '{"n": 1}'::jsonb, 'sql-run') AS id`
      const [again] = yield* sql<{ id: string }>`SELECT ${enqueue}('double', '{"n": 2}'::jsonb, 'sql-run') AS id`
      assert.match(generated!.id, /^[0-9a-f-]{36}$/)
      assert.strictEqual(first!.id, "sql-run")
      assert.strictEqual(again!.id, "sql-run")
      assert.strictEqual(yield* client.processOnce, 2)
      assert.deepStrictEqual(yield* client.result(generated!.id), { n: 42 })
      assert.deepStrictEqual(yield* client.result("sql-run"), { n: 2 }, "the first call's input was kept")
      const missing = yield* Effect.flip(sql`SELECT ${enqueue}('', '{}'::jsonb)`)
      assert.match(missing.message, /./)
    })))

  it.effect("steps use the application's own pool: no second pool, same database", () =>
    within(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* TestDatabase.TestDatabase
      yield* sql`CREATE TABLE IF NOT EXISTS audit (run text, n int)`
      const audit = Step.make("audit", {
        input: Num,
        output: Num,
        run: (i) =>
          Effect.gen(function*() {
            const db = yield* SqlClient.SqlClient
            yield* db`INSERT INTO audit (run, n) VALUES (${"step"}, ${i.n})`
            return i
          }).pipe(Effect.orDie)
      })
      const wf = Workflow.make("audited", { input: Num, output: Num, run: audit })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 5 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(id), { n: 5 })
      assert.deepStrictEqual(yield* sql`SELECT n FROM audit`, [{ n: 5 }])
      const names = yield* sql<{ application_name: string }>`
        SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = current_database()`
      assert.deepStrictEqual(names.map((n) => n.application_name), [`pgflows-test ${database.name}`])
    })))

  it.effect("migrations: two processes starting together apply them once; a restart applies nothing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const schema = `mig_${Crypto.randomBytes(4).toString("hex")}`
      const config = PgflowsConfig.layer({ schema })
      const [left, right] = yield* Effect.all([PgMigrations.run, PgMigrations.run], { concurrency: 2 }).pipe(
        Effect.provide(config)
      )
      assert.deepStrictEqual(
        [...left, ...right].map(([id]) => id).sort((a, b) => a - b),
        PgMigrations.migrations(schema as never).map(([id]) => id).sort((a, b) => a - b),
        "each migration was applied by exactly one of the two"
      )
      const again = yield* PgMigrations.run.pipe(Effect.provide(config))
      assert.deepStrictEqual(again, [])
      const tables = yield* sql<{ table_name: string }>`
        SELECT table_name FROM information_schema.tables WHERE table_schema = ${schema} ORDER BY table_name`
      for (
        const table of [
          "events",
          "migrations",
          "queue_archive",
          "queue_messages",
          "queues",
          "runs",
          "settings",
          "signals",
          "steps"
        ]
      ) {
        assert.include(tables.map((t) => t.table_name), table)
      }
    }))

  it.effect("a heartbeat keeps the lease of a step longer than the lease: nobody else takes the run", () =>
    within(
      Effect.gen(function*() {
        const calls = counter()
        const long = Step.make("long", {
          input: Num,
          output: Num,
          run: (i) => Effect.as(Effect.andThen(calls.hit("long"), Effect.sleep("2 seconds")), i)
        })
        const wf = Workflow.make("long_running", { input: Num, output: Num, run: long })
        const worker = yield* engine([wf])
        const rival = yield* engine([wf])
        const id = yield* worker.start(wf, { n: 1 })
        const running = yield* Effect.forkChild(worker.processOnce)
        while (calls.get("long") === 0) yield* Effect.sleep("10 millis")
        let stolen = 0
        while (running.pollUnsafe() === undefined) {
          stolen += yield* rival.processOnce
          yield* Effect.sleep("150 millis")
        }
        yield* Fiber.join(running)
        assert.strictEqual(stolen, 0)
        assert.strictEqual(calls.get("long"), 1)
        const status = yield* worker.status(id)
        assert.strictEqual(status.status, "completed")
        assert.strictEqual(status.recoveries, 0)
      }),
      { lease: "600 millis" }
    ))

  it.effect("Step.transaction commits the step's SQL with its record; a failure rolls both back", () =>
    within(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE accounts (id text PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))`
      yield* sql`INSERT INTO accounts VALUES ('a', 100)`
      class Overdrawn extends Schema.TaggedError<Overdrawn>()("Overdrawn", { message: Schema.String }) {}
      const debit = Step.transaction("debit", {
        input: Num,
        output: Num,
        error: Overdrawn,
        run: (input) =>
          Effect.gen(function*() {
            const db = yield* SqlClient.SqlClient
            const rows = yield* db<{ balance: number }>`
              UPDATE accounts SET balance = balance - ${input.n} WHERE id = 'a' RETURNING balance`
            return { n: rows[0]!.balance }
          }).pipe(Effect.mapError((error) => new Overdrawn({ message: error.message })))
      })
      const flow = Workflow.make("debits", {
        input: Num,
        output: Num,
        error: Overdrawn,
        run: (input) => Effect.flatMap(debit(input), () => debit(input))
      })
      const client = yield* engine([flow])
      const ok = yield* client.start(flow, { n: 30 })
      yield* client.processOnce
      assert.deepStrictEqual(yield* client.result(ok), { n: 40 })
      const overdrawn = yield* client.start(flow, { n: 30 })
      yield* client.processOnce
      const error = yield* Effect.flip(client.result(overdrawn))
      assert.instanceOf(error, Overdrawn, "the CHECK violation surfaced as the step's typed error")
      assert.deepStrictEqual(
        yield* sql`SELECT balance FROM accounts`,
        [{ balance: 10 }],
        "the failed debit left no trace"
      )
      assert.deepStrictEqual((yield* client.status(overdrawn)).steps.map((s) => [s.name, s.status]), [
        ["debit", "completed"],
        ["debit", "failed"]
      ])
    })))

  it.effect("a step that runs for a while shows in status as running, with its attempt", () =>
    within(Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const waiting = Step.make("waiting_step", {
        input: Num,
        output: Num,
        run: (i) => Effect.as(Deferred.await(release), i)
      })
      const wf = Workflow.make("observed", { input: Num, output: Num, run: waiting })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      const running = yield* Effect.forkChild(client.processOnce)
      yield* Effect.sleep("600 millis")
      const during = yield* client.status(id)
      assert.strictEqual(during.status, "running")
      assert.deepStrictEqual(during.steps.map((s) => [s.name, s.status, s.attempts]), [["waiting_step", "running", 1]])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(running)
      assert.deepStrictEqual((yield* client.status(id)).steps.map((s) => s.status), ["completed"])
    })))

  it.effect("a step's held-back checkpoint is written soon when a concurrent branch runs on", () =>
    within(Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      // The quick step ends after the slow one started, so no later operation writes its checkpoint.
      const quick = Step.make("quick", { input: Num, output: Num, run: (i) => Effect.as(Effect.sleep("50 millis"), i) })
      const slow = Step.make("slow", { input: Num, output: Num, run: (i) => Effect.as(Deferred.await(release), i) })
      const wf = Workflow.make("branches", {
        input: Num,
        output: Schema.Array(Num),
        run: (input) => Workflow.all([quick(input), slow(input)])
      })
      const client = yield* engine([wf])
      const id = yield* client.start(wf, { n: 1 })
      const running = yield* Effect.forkChild(client.processOnce)
      let quickDone = false
      for (let i = 0; i < 100 && !quickDone; i++) {
        yield* Effect.sleep("20 millis")
        quickDone = (yield* client.status(id)).steps.some((s) => s.name === "quick" && s.status === "completed")
      }
      assert.isTrue(quickDone, "the quick branch's checkpoint was written while the slow branch ran")
      assert.strictEqual((yield* client.status(id)).status, "running")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(running)
      assert.deepStrictEqual(yield* client.result(id), [{ n: 1 }, { n: 1 }])
    })))

  it.effect("a 3-step run commits 4 times: an earlier step's hold timer never splits the last checkpoint from the end", () =>
    within(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const add = (name: string) =>
        Step.make(name, { input: Num, output: Num, run: (i) => Effect.succeed({ n: i.n + 1 }) })
      const [a, b, c] = [add("a"), add("b"), add("c")]
      const wf = Workflow.make("four_commits", {
        input: Num,
        output: Num,
        run: (input) => a(input).pipe(Effect.flatMap(b), Effect.flatMap(c))
      })
      const client = yield* engine([wf])
      const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 4 }))
      // Fault injection: every journal write takes 2.5 ms, longer than a held checkpoint waits, so the
      // timer a step starts fires while later steps run (a slow disk's commits look like this).
      yield* sql.unsafe(`CREATE FUNCTION ${schema}.slow_journal() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN PERFORM pg_sleep(0.0025); RETURN NULL; END $$`)
      yield* sql.unsafe(`CREATE TRIGGER slow_journal AFTER INSERT ON ${schema}.steps
        FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.slow_journal()`)
      const xid = Effect.map(
        sql<{ xid: string }>`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid`,
        (rows) => Number(rows[0]!.xid)
      )
      const before = yield* xid
      for (let n = 0; n < 10; n++) {
        assert.deepStrictEqual(yield* client.result(yield* client.start(wf, { n }), { timeout: "10 seconds" }), {
          n: n + 3
        })
      }
      const transactions = (yield* xid) - before
      yield* Fiber.interrupt(worker)
      // The start, the first two checkpoints, the last one with the end: 40. With the stray timer it
      // was 50; a pause of more than 2 ms between a run's last step and its end (a loaded machine)
      // may still write that checkpoint alone, now and then.
      assert.isAtMost(transactions, 45, `${transactions} write transactions for 10 runs`)
      yield* sql.unsafe(`DROP TRIGGER slow_journal ON ${schema}.steps`)
    })))

  it.effect("the ends of 400 runs started together are HOT updates, writing no index entry", () =>
    within(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const available = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'pg_walinspect'`
      if (available[0]!.n === 0) {
        console.log("skipped: this PostgreSQL has no pg_walinspect, which reads the WAL's records")
        return
      }
      yield* sql`CREATE EXTENSION IF NOT EXISTS pg_walinspect`
      const add = (name: string) =>
        Step.make(name, { input: Num, output: Num, run: (i) => Effect.succeed({ n: i.n + 1 }) })
      const [a, b] = [add("a"), add("b")]
      const wf = Workflow.make("hot_ends", { input: Num, output: Num, run: (input) => Effect.flatMap(a(input), b) })
      const client = yield* engine([wf])
      const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 64 }))
      const lsn = Effect.map(
        sql<{ lsn: string }>`SELECT pg_current_wal_insert_lsn()::text AS lsn`,
        (rows) => rows[0]!.lsn
      )
      const from = yield* lsn
      let next = 0
      const caller = Effect.gen(function*() {
        while (next < 400) yield* client.result(yield* client.start(wf, { n: next++ }), { timeout: "30 seconds" })
      })
      yield* Effect.all(Array.from({ length: 64 }, () => caller), { concurrency: "unbounded", discard: true })
      const to = yield* lsn
      yield* Fiber.interrupt(worker)
      // The WAL is read up to where it was flushed (commits here do not wait for the flush).
      const flushed = sql<{ done: boolean }>`SELECT pg_current_wal_flush_lsn() >= ${to}::pg_lsn AS done`
      for (let i = 0; i < 100 && !(yield* flushed)[0]!.done; i++) yield* Effect.sleep("20 millis")
      // Every heap record of this schema's runs table between the two positions, by kind.
      const records = yield* sql<{ kind: string; n: number }>`
        SELECT record_type AS kind, count(*)::int AS n FROM pg_get_wal_block_info(${from}::pg_lsn, ${to}::pg_lsn)
        WHERE relfilenode = pg_relation_filenode(${`${schema}.runs`}::regclass) AND resource_manager = 'Heap'
          AND record_type IN ('UPDATE', 'HOT_UPDATE')
        GROUP BY 1`
      const count = (kind: string) => records.find((record) => record.kind === kind)?.n ?? 0
      // A run claimed from the queue (not at its start) has a second update, its claim, HOT as well.
      assert.isAtLeast(count("HOT_UPDATE"), 380, "a HOT update per run: its end")
      // With the earlier fill factor (80) about half of them were not. A few may not be when another
      // session's snapshot keeps old versions (tests of other files run meanwhile): at most 5%.
      assert.isAtMost(count("UPDATE"), 20, "ends that moved their run to another page (a new entry in each index)")
    })))
})
