/**
 * Run isolation on PostgreSQL (docs/ARCHITECTURE.md, "Runs are isolated"): the shared conformance
 * suite, and what only a real database shows: a run started inside the caller's transaction, a
 * value PostgreSQL rejects inside a shared (group-commit) statement, and values larger than the
 * client can read back.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { QueryPlans, TestDatabase } from "@pgflows/testing"
import { Data, Effect, Exit, Fiber, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { PgflowsConfig, PgflowsError, PgStore, PgWorkQueue, Step, Store, Workflow } from "pgflows"
import * as Statements from "../src/internal/pgStatements.ts"
import * as Versions from "../src/internal/versions.ts"
import { counter, engine, postgres } from "./conformance/backend.ts"
import { isolationSuite } from "./conformance/isolation.ts"

const Label = Schema.Struct({ label: Schema.String })
const Text = Schema.Struct({ s: Schema.String })

class Rollback extends Data.TaggedError("Rollback")<{}> {}

const within = <A, E, R>(body: Effect.Effect<A, E, R>, config: PgflowsConfig.Options = {}) =>
  body.pipe(Effect.provide(postgres.layer(config)))

/** Three steps that count their executions per run label. */
const counted = (name: string) => {
  const calls = counter()
  const step = (stepName: string) =>
    Step.make(stepName, {
      input: Label,
      output: Label,
      run: (input) => Effect.as(calls.hit(`${input.label}:${stepName}`), input)
    })
  const [a, b, c] = [step("a"), step("b"), step("c")]
  const workflow = Workflow.make(name, {
    input: Label,
    output: Label,
    run: (input) => a(input).pipe(Effect.flatMap(b), Effect.flatMap(c))
  })
  return { calls, workflow }
}

layer(TestDatabase.layer, { excludeTestServices: true })("run isolation on PostgreSQL", (it) => {
  isolationSuite(postgres, it)

  it.effect(
    "a start inside a transaction that rolls back never runs, among 150 concurrent runs that keep their journals",
    () =>
      within(
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const { schema } = yield* PgflowsConfig.PgflowsConfig
          yield* sql`CREATE TABLE IF NOT EXISTS app_orders (label text NOT NULL)`
          const { calls, workflow } = counted("outbox_rollback")
          const client = yield* engine([workflow])
          const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 64 }))
          let rolledBack: string | undefined
          const inTransaction = sql.withTransaction(Effect.gen(function*() {
            yield* sql`INSERT INTO app_orders (label) VALUES ('rolled-back')`
            rolledBack = yield* client.start(workflow, { label: "rolled-back" })
            // Long enough for a worker to execute the run, if it were handed one before the commit.
            yield* Effect.sleep("400 millis")
            return yield* new Rollback()
          }))
          const others = Effect.andThen(
            Effect.sleep("20 millis"),
            Effect.forEach(
              Array.from({ length: 149 }, (_, i) => `run-${i}`),
              (label) =>
                Effect.flatMap(client.start(workflow, { label }), (id) => client.result(id, { timeout: "30 seconds" })),
              { concurrency: "unbounded" }
            )
          )
          const [rollback, outputs] = yield* Effect.all([Effect.exit(inTransaction), others], {
            concurrency: "unbounded"
          })
          assert.isTrue(Exit.isFailure(rollback))
          assert.strictEqual(outputs.length, 149)
          yield* Effect.sleep("300 millis")
          yield* Fiber.interrupt(worker)
          assert.isDefined(rolledBack)
          assert.instanceOf(yield* Effect.flip(client.status(rolledBack!)), PgflowsError.RunNotFound)
          assert.deepStrictEqual(
            ["a", "b", "c"].map((step) => calls.get(`rolled-back:${step}`)),
            [0, 0, 0],
            "no step of the rolled-back run ever ran"
          )
          assert.deepStrictEqual(yield* sql`SELECT * FROM app_orders WHERE label = 'rolled-back'`, [])
          const journals = yield* sql<{ status: string; runs: number; steps: number }>`
        SELECT r.status, count(DISTINCT r.id)::int AS runs, count(s.key)::int AS steps
        FROM ${sql(`${schema}.runs`)} r LEFT JOIN ${
            sql(`${schema}.steps`)
          } s ON s.run_id = r.id AND s.status = 'completed'
        WHERE r.workflow = 'outbox_rollback' GROUP BY r.status`
          assert.deepStrictEqual(journals, [{ status: "completed", runs: 149, steps: 149 * 3 }])
          for (let i = 0; i < 149; i++) assert.strictEqual(calls.get(`run-${i}:c`), 1)
        }),
        { workerConcurrency: 64 }
      ),
    60_000
  )

  it.effect("a start inside a transaction runs once the caller commits, and not before", () =>
    within(
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE IF NOT EXISTS app_orders (label text NOT NULL)`
        const { calls, workflow } = counted("outbox_commit")
        const client = yield* engine([workflow])
        const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 8 }))
        yield* Effect.sleep("50 millis")
        const id = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO app_orders (label) VALUES ('committed')`
          const id = yield* client.start(workflow, { label: "committed" })
          yield* Effect.sleep("400 millis")
          assert.strictEqual(calls.get("committed:a"), 0, "nothing of the run executes before the commit")
          return id
        }))
        // Woken by the commit (its NOTIFY), not by the hour-long poll.
        assert.deepStrictEqual(yield* client.result(id, { timeout: "10 seconds" }), { label: "committed" })
        assert.deepStrictEqual(["a", "b", "c"].map((step) => calls.get(`committed:${step}`)), [1, 1, 1])
        assert.strictEqual(
          (yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM app_orders WHERE label = 'committed'`)[0]!.n,
          1
        )
        yield* Fiber.interrupt(worker)
      }),
      { pollInterval: "1 hour" }
    ))

  it.effect("each waiting caller gets its own run's outcome: 64 callers, local and notified ends, a failure, a timeout", () =>
    within(
      Effect.gen(function*() {
        class Odd extends Schema.TaggedError<Odd>()("Odd", { n: Schema.Number }) {}
        const Num = Schema.Struct({ n: Schema.Number })
        const bump = Step.make("bump", {
          input: Num,
          output: Num,
          error: Odd,
          run: (i) => i.n === 13 ? Effect.fail(new Odd({ n: i.n })) : Effect.succeed({ n: i.n * 10 })
        })
        const wf = Workflow.make("own_outcome", { input: Num, output: Num, error: Odd, run: bump })
        const parked = Workflow.make("own_outcome_parked", {
          input: Num,
          output: Num,
          run: (i) => Effect.as(Workflow.waitForSignal("never", Schema.Boolean), i)
        })
        // `local` executes what it starts; `remote` only starts runs, and learns their ends by NOTIFY.
        const local = yield* engine([wf, parked])
        const remote = yield* engine([wf, parked])
        const worker = yield* Effect.forkChild(local.runWorker({ concurrency: 16 }))
        const stuck = yield* remote.start(parked, { n: -1 })
        const timedOut = yield* Effect.forkChild(Effect.flip(remote.result(stuck, { timeout: "300 millis" })))
        const outcomes = yield* Effect.forEach(
          Array.from({ length: 64 }, (_, n) => n),
          (n) =>
            Effect.gen(function*() {
              const client = n % 2 === 0 ? local : remote
              const id = yield* client.start(wf, { n })
              return yield* Effect.result(client.result(id, { timeout: "30 seconds" }))
            }),
          { concurrency: "unbounded" }
        )
        for (const [n, outcome] of outcomes.entries()) {
          if (n === 13) {
            assert.strictEqual(outcome._tag, "Failure", "run 13 fails with its own error")
            if (outcome._tag === "Failure") assert.deepStrictEqual(outcome.failure, new Odd({ n: 13 }))
          } else {
            assert.deepStrictEqual(
              outcome._tag === "Success" ? outcome.success : outcome.failure,
              { n: n * 10 },
              `run ${n}`
            )
          }
        }
        assert.instanceOf(yield* Fiber.join(timedOut), PgflowsError.WaitTimeout)
        yield* Fiber.interrupt(worker)
      }),
      { pollInterval: "1 hour" }
    ))

  it.effect("a parent that parks in the same shared statement as its child's end is woken, not left parked", () =>
    within(Effect.gen(function*() {
      const store = yield* Store.Store
      const pairs = Array.from({ length: 20 }, (_, i) => i)
      const parents = yield* store.createRuns(pairs.map((i) => ({
        id: `parent-${i}`,
        workflow: "same_batch_parent",
        input: null,
        claimFor: { token: `parent-token-${i}`, leaseMillis: 60_000 }
      })))
      const children = yield* store.createRuns(pairs.map((i) => ({
        id: `parent-${i}:1`,
        workflow: "same_batch_child",
        input: null,
        parentId: `parent-${i}`,
        claimFor: { token: `child-token-${i}`, leaseMillis: 60_000 }
      })))
      // Each parent waits for its child (no deadline) while the child ends: written together, the
      // parent's park and the child's end share one statement of the group commit.
      const written = yield* Effect.forEach(
        pairs.flatMap((i) => [
          store.transition({
            runId: `parent-${i}`,
            token: `parent-token-${i}`,
            msgId: parents[i]!.claimed!.run.msgId,
            kind: "suspend",
            wakeInMillis: null,
            observedEvents: 0
          }),
          store.transition({
            runId: `parent-${i}:1`,
            token: `child-token-${i}`,
            msgId: children[i]!.claimed!.run.msgId,
            kind: "complete",
            output: { n: i }
          })
        ]),
        (write) => write,
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(new Set(written), new Set(["ok"]))
      // Every parent can be claimed at once to read its child's end.
      const claimed = yield* store.claim({
        worker: "w",
        workflows: [{ workflow: "same_batch_parent", version: 0 }],
        limit: 100,
        leaseMillis: 60_000
      })
      assert.deepStrictEqual(
        claimed.map((run) => run.run.id).sort(),
        pairs.map((i) => `parent-${i}`).sort(),
        "no parent is left parked with nothing to wake it"
      )
    })))

  it.effect("a value PostgreSQL rejects fails only its own write of a shared statement", () =>
    within(Effect.gen(function*() {
      const store = yield* Store.Store
      const runs = Array.from({ length: 60 }, (_, i) => i)
      yield* store.createRuns(runs.map((i) => ({
        id: `shared-${i}`,
        workflow: "shared",
        input: null,
        claimFor: { token: `token-${i}`, leaseMillis: 60_000 }
      })))
      // One transition (odd) and one checkpoint (even) carry a value jsonb rejects.
      const bad = new Set([17, 40])
      const results = yield* Effect.forEach(
        runs,
        (i) =>
          Effect.result(
            i % 2 === 0
              ? store.checkpoint({
                runId: `shared-${i}`,
                token: `token-${i}`,
                key: "1",
                name: "s",
                inputHash: "h",
                status: "completed",
                output: bad.has(i) ? { s: "nul \u0000 here" } : { n: i },
                error: null,
                attempts: 1
              })
              : store.transition({
                runId: `shared-${i}`,
                token: `token-${i}`,
                msgId: null,
                kind: "complete",
                output: bad.has(i) ? { s: "nul \u0000 here" } : { n: i }
              })
          ),
        { concurrency: "unbounded" }
      )
      for (const i of runs) {
        const result = results[i]!
        if (bad.has(i)) {
          assert.strictEqual(result._tag, "Failure", `write ${i} carries a value jsonb rejects`)
          if (result._tag === "Failure") {
            assert.instanceOf(result.failure, PgflowsError.StoreError)
            assert.isTrue(result.failure.rejected, "the database rejected the value: writing it again cannot help")
          }
        } else {
          assert.strictEqual(
            result._tag === "Success" ? result.success : result.failure.message,
            "ok",
            `innocent write ${i}`
          )
        }
      }
      const completed = yield* Effect.forEach(runs, (i) => store.getRun(`shared-${i}`))
      assert.strictEqual(completed.filter((run) => run?.status === "completed").length, 29)
    })))

  it.effect("concurrent starts share statements, and a start PostgreSQL rejects fails alone among them", () =>
    within(Effect.gen(function*() {
      const store = yield* Store.Store
      const sql = yield* SqlClient.SqlClient
      const xid = sql<{ xid: string }>`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid`.pipe(
        Effect.map((rows) => Number(rows[0]!.xid))
      )
      const runs = Array.from({ length: 60 }, (_, i) => i)
      // Past the first two, which lead the first statements: these share a statement with others.
      const bad = new Set([7, 41])
      const before = yield* xid
      const results = yield* Effect.forEach(
        runs,
        (i) =>
          Effect.result(store.createRuns([{
            id: `lone-${i}`,
            workflow: "lone",
            input: bad.has(i) ? { s: "nul \u0000 here" } : { n: i }
          }])),
        { concurrency: "unbounded" }
      )
      const transactions = (yield* xid) - before
      assert.isBelow(transactions, 30, "the 60 starts shared statements (a statement is one write transaction)")
      for (const i of runs) {
        const result = results[i]!
        if (bad.has(i)) {
          assert.strictEqual(result._tag, "Failure", `start ${i} carries a value jsonb rejects`)
          if (result._tag === "Failure") {
            assert.instanceOf(result.failure, PgflowsError.StoreError)
            assert.isTrue(result.failure.rejected)
          }
        } else {
          assert.deepStrictEqual(
            result._tag === "Success" ? result.success.map((created) => [created.id, created.created]) : result.failure,
            [[`lone-${i}`, true]],
            `innocent start ${i}`
          )
        }
      }
      const stored = yield* Effect.forEach(runs, (i) => store.getRun(`lone-${i}`))
      assert.deepStrictEqual(
        runs.filter((i) => stored[i] === undefined),
        [...bad],
        "only the rejected starts are missing"
      )
    })))

  it.effect("starts of one id made together create one run, executed once, whichever statement they share", () =>
    within(Effect.gen(function*() {
      const { calls, workflow } = counted("same_id")
      const client = yield* engine([workflow])
      const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 64 }))
      yield* Effect.sleep("50 millis")
      // 64 concurrent starts of one id (those made while a statement is written share the next).
      const ids = yield* Effect.forEach(
        Array.from({ length: 64 }, () => "one-id"),
        (id) => client.start(workflow, { label: "together" }, { id }),
        { concurrency: "unbounded" }
      )
      // And one id twice in one batch.
      const batch = yield* client.startBatch(workflow, [{ label: "batched" }, { label: "batched" }], {
        ids: ["batch-id", "batch-id"]
      })
      assert.deepStrictEqual([...new Set(ids)], ["one-id"])
      assert.deepStrictEqual(batch, ["batch-id", "batch-id"])
      assert.deepStrictEqual(yield* client.result(ids[0]!, { timeout: "10 seconds" }), { label: "together" })
      assert.deepStrictEqual(yield* client.result(batch[0]!, { timeout: "10 seconds" }), { label: "batched" })
      yield* Effect.sleep("300 millis")
      yield* Fiber.interrupt(worker)
      assert.deepStrictEqual(
        ["together", "batched"].flatMap((label) => ["a", "b", "c"].map((step) => calls.get(`${label}:${step}`))),
        [1, 1, 1, 1, 1, 1],
        "each step of each run executed once"
      )
      const status = yield* client.status(ids[0]!)
      assert.strictEqual(status.executions, 1)
    })))

  it.effect("a backlog of 20,000 due runs of a workflow no worker serves is never read by a claim", () =>
    within(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const config = yield* PgflowsConfig.PgflowsConfig
      const { workflow } = counted("served_behind_backlog")
      const client = yield* engine([workflow])
      // Older than the served runs, so a walk of the queue in due order meets all of them first.
      const enqueue = sql(`${config.schema}.enqueue_workflow`)
      yield* sql`SELECT ${enqueue}('unserved', jsonb_build_object('n', i)) FROM generate_series(1, 20000) AS i`
      for (const label of ["a", "b", "c"]) yield* client.start(workflow, { label })
      yield* sql.unsafe(`ANALYZE ${config.schema}.queue_messages, ${config.schema}.runs`)
      /** The rows each executed scan of `queue_messages` read, those its filter removed included. */
      const read = (node: QueryPlans.PlanNode): number =>
        (node["Relation Name"] === "queue_messages" && (node["Actual Loops"] ?? 0) > 0
          ? ((node["Actual Rows"] ?? 0) + (node["Rows Removed by Filter"] ?? 0)) * (node["Actual Loops"] ?? 0)
          : 0) + (node.Plans ?? []).reduce((sum, child) => sum + read(child), 0)
      const claim = Statements.make(config.schema).claim
      const keys = [Versions.key(workflow.name, workflow.version)]
      // The custom plan, the one PostgreSQL keeps for this statement (its generic plan, with the
      // limit unknown, is estimated dearer); executed, so it claims.
      const plan = yield* QueryPlans.explain(claim, [config.queue, 64, 30_000, "w", keys, 1_000_000], "custom", {
        analyze: true
      })
      assert.isAtMost(read(plan), 10, "the claim read the served workflow's messages only")
      const claimed = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM ${sql(`${config.schema}.runs`)}
        WHERE workflow = ${workflow.name} AND status = 'running'`
      assert.strictEqual(claimed[0]!.n, 3, "the claim took the served runs behind the backlog")
    })))

  it.effect("a step output jsonb cannot hold fails its own run with a typed error; 40 other runs go on", () =>
    within(
      Effect.gen(function*() {
        const calls = counter()
        const produce = Step.make("produce", {
          input: Label,
          output: Text,
          run: (input) =>
            Effect.as(calls.hit(input.label), { s: input.label === "poison" ? "bad \u0000 byte" : input.label })
        })
        const wf = Workflow.make("poisoned", { input: Label, output: Text, run: produce })
        const client = yield* engine([wf])
        const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 64 }))
        const started = Date.now()
        const labels = [...Array.from({ length: 40 }, (_, i) => `ok-${i}`), "poison"]
        const ids = yield* Effect.forEach(labels, (label) => client.start(wf, { label }), { concurrency: "unbounded" })
        const outcomes = yield* Effect.forEach(ids, (id) => Effect.exit(client.result(id, { timeout: "20 seconds" })), {
          concurrency: "unbounded"
        })
        assert.isBelow(Date.now() - started, 10_000, "no run waited for a lease to expire")
        for (const [index, label] of labels.entries()) {
          const exit = outcomes[index]!
          if (label === "poison") {
            assert.isTrue(Exit.isFailure(exit))
            const error = Option.getOrThrow((yield* client.status(ids[index]!)).error)
            assert.instanceOf(error, PgflowsError.UnstorableValue)
            assert.match((error as PgflowsError.UnstorableValue).message, /output of step "produce" \(key 1\)/)
            assert.match((error as PgflowsError.UnstorableValue).message, /NUL/)
          } else {
            assert.deepStrictEqual(exit, Exit.succeed({ s: label }))
          }
          assert.strictEqual(calls.get(label), 1, `${label} executed once`)
        }
        const queues = yield* client.queueMetrics()
        assert.strictEqual(queues.length, 0)
        yield* Fiber.interrupt(worker)
      }),
      { lease: "30 seconds" }
    ), 60_000)

  it.effect("inputs, signals and names that jsonb or text columns cannot hold are refused with typed errors", () =>
    within(Effect.gen(function*() {
      const wf = Workflow.make("nul_inputs", { input: Text, output: Text, run: Effect.succeed })
      const client = yield* engine([wf])
      const input = yield* Effect.flip(client.start(wf, { s: "a\u0000b" }))
      assert.instanceOf(input, PgflowsError.InvalidInput)
      assert.match(input.message, /NUL/)
      const surrogate = yield* Effect.flip(client.start(wf, { s: "lone \ud800" }))
      assert.instanceOf(surrogate, PgflowsError.InvalidInput)
      const id = yield* client.start(wf, { s: "fine" }, { id: "nul-signal-target" })
      const payload = yield* Effect.flip(client.signal(id, "go", { text: "\u0000" }))
      assert.instanceOf(payload, PgflowsError.UnstorableValue)
      const name = yield* Effect.flip(client.signal(id, "go\u0000", {}))
      assert.instanceOf(name, PgflowsError.UnstorableValue)
      const runId = yield* Effect.flip(client.start(wf, { s: "x" }, { id: "id\u0000" }))
      assert.instanceOf(runId, PgflowsError.InvalidInput)
      assert.throws(() => Step.make("bad\u0000name", { input: Text, output: Text, run: Effect.succeed }), /NUL/)
      assert.throws(
        () => Workflow.make("bad\ud800name", { input: Text, output: Text, run: Effect.succeed }),
        /surrogate/
      )
      assert.strictEqual((yield* client.list({ workflow: "nul_inputs" })).runs.length, 1)
    })))

  it.effect("a limit larger than the client can read back is refused at startup, naming both settings", () =>
    Effect.gen(function*() {
      const built = yield* Effect.exit(
        Layer.build(
          Layer.merge(PgStore.layer, PgWorkQueue.layer).pipe(
            Layer.provide(
              Layer.effect(
                PgflowsConfig.PgflowsConfig,
                PgflowsConfig.make({ schema: "too_large", maxPayloadBytes: 32 * 1024 * 1024 })
              )
            )
          )
        )
      )
      assert.isTrue(Exit.isFailure(built))
      const message = Exit.isFailure(built) ? String(Option.getOrUndefined(Exit.findErrorOption(built))) : ""
      assert.match(message, /PGFLOWS_MAX_PAYLOAD_BYTES/)
      assert.match(message, /maxMessageSize/)
    }).pipe(Effect.scoped))

  const bigRoundTrip = (bytes: number) =>
    Effect.gen(function*() {
      const echo = Step.make("echo_big", { input: Text, output: Text, run: (i) => Effect.succeed({ s: `${i.s}!` }) })
      const wf = Workflow.make(`big_${bytes}`, { input: Text, output: Text, run: echo })
      const small = Workflow.make(`small_${bytes}`, { input: Text, output: Text, run: echo })
      const client = yield* engine([wf, small])
      const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 8 }))
      const big = "x".repeat(bytes)
      const id = yield* client.start(wf, { s: big })
      const others = yield* Effect.forEach([1, 2, 3], (n) => client.start(small, { s: `small-${n}` }))
      const output = yield* client.result(id, { timeout: "60 seconds" })
      assert.strictEqual(output.s.length, bytes + 1)
      for (const other of others) {
        assert.match((yield* client.result(other, { timeout: "30 seconds" })).s, /^small-\d!$/)
      }
      const status = yield* client.status(id)
      assert.strictEqual(status.status, "completed")
      assert.strictEqual((status.input as { s: string }).s.length, bytes)
      assert.strictEqual(status.steps[0]?.status, "completed")
      const listed = yield* client.list({ workflow: wf.name })
      assert.deepStrictEqual(listed.runs.map((run) => run.id), [id])
      yield* Fiber.interrupt(worker)
    })

  it.effect(
    "10 MB inputs and outputs go through status, result, list and claim with the default client",
    () => within(bigRoundTrip(10_000_000), { maxPayloadBytes: 10_500_000 }),
    120_000
  )

  it.effect("20 MB inputs and outputs work once the client may read messages that large", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      // Scoped inside: the engine (and its LISTEN connection) ends before the pool it uses closes.
      yield* bigRoundTrip(20_000_000).pipe(
        Effect.scoped,
        Effect.provide(postgres.layer({ maxPayloadBytes: 24_000_000 })),
        Effect.provide(PgClient.layer({ url: database.url, maxMessageSize: 64 * 1024 * 1024 }))
      )
    }), 120_000)

  it.effect(
    "a run too large to read back fails alone with a typed error; the queue keeps moving",
    () =>
      within(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* PgflowsConfig.PgflowsConfig
        const wf = Workflow.make("unreadable", { input: Text, output: Text, run: Effect.succeed })
        const client = yield* engine([wf])
        // Written by SQL (pg_cron, another service): nothing checked its size.
        const [row] = yield* sql<{ id: string }>`
        SELECT ${sql(schema)}.enqueue_workflow('unreadable', jsonb_build_object('s', repeat('y', 20000000))) AS id`
        const huge = row!.id
        const fine = yield* client.startBatch(wf, [{ s: "a" }, { s: "b" }])
        const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 8 }))
        for (const id of fine) assert.match((yield* client.result(id, { timeout: "30 seconds" })).s, /^[ab]$/)
        const error = yield* Effect.flip(client.result(huge, { timeout: "30 seconds" }))
        assert.instanceOf(error, PgflowsError.RunFailed)
        assert.instanceOf(error.error, PgflowsError.PayloadTooLarge)
        assert.match((error.error as PgflowsError.PayloadTooLarge).subject, /input of workflow "unreadable"/)
        const status = yield* client.status(huge)
        assert.strictEqual(status.status, "failed")
        assert.strictEqual(status.input, undefined, "an input too large to read is not read")
        assert.strictEqual((yield* client.list({ workflow: "unreadable" })).runs.length, 3)
        yield* Fiber.interrupt(worker)
      })),
    120_000
  )
})
