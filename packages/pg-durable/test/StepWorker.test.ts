// The worker binding against a real PostgreSQL without pg_durable: the migrations, the push-mode SQL
// functions called directly (playing pg_durable's part), the StepWorker running steps with their
// Schemas, retries and timeouts, and a compiled graph whose SQL nodes are executed exactly as
// pg_durable would execute them (PgDurableHarness, on its stand-in of pg_durable's API).
import { assert, describe, layer } from "@effect/vitest"
import { Compiler, Graph, PgDurableHarness, PgDurableMigrations, StepWorker } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { PgflowsConfig, PgWorkQueue, Plugin, Step, WorkQueue } from "pgflows"
import { chargePayment, double, flaky, sendReceipt } from "./fixtures/steps.ts"

const unique = () => Crypto.randomBytes(4).toString("hex")

/** The messages of an error and of its causes (PostgreSQL's own text is in the SqlError's cause). */
const messages = (error: unknown): string => {
  const out: Array<string> = []
  for (let current: any = error, depth = 0; current != null && depth < 6; current = current.cause, depth++) {
    if (typeof current.message === "string") out.push(current.message)
  }
  return out.join(" / ")
}

/** Each test: its own schema, step queue and channel. */
const setup = (config: PgflowsConfig.Options = {}) => {
  const suffix = unique()
  return Layer.effect(
    PgflowsConfig.PgflowsConfig,
    Effect.orDie(PgflowsConfig.make({
      schema: `s_${suffix}`,
      stepQueue: `steps_${suffix}`,
      notifyChannel: `c_${suffix}`,
      visibilityTimeout: "10 seconds",
      pollInterval: "100 millis",
      ...config
    }))
  )
}

const withWorker = <A, E, R>(
  steps: ReadonlyArray<Step.Any>,
  body: (worker: StepWorker.StepWorker["Service"], schema: string) => Effect.Effect<A, E, R>,
  config?: PgflowsConfig.Options
) =>
  Effect.gen(function*() {
    const worker = yield* StepWorker.make({ steps })
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    return yield* body(worker, `"${schema}"`)
  }).pipe(Effect.provide(PgWorkQueue.layer.pipe(Layer.orDie)), Effect.provide(setup(config)))

/**
 * Starts a compiled graph on the stand-in of pg_durable's API with the statement PgDurableClient
 * sends, and runs it node by node as pg_durable would (PgDurableHarness), the worker taking its steps.
 */
const runGraph = (
  compiled: Compiler.Compiled,
  worker: StepWorker.StepWorker["Service"],
  options?: { readonly label?: string }
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* PgDurableHarness.install
    const statement = Compiler.startStatement(compiled, options)
    const [row] = yield* sql.unsafe<{ instance_id: string }>(statement.text, [...statement.params])
    const fiber = yield* Effect.forkChild(worker.run)
    const outcome = yield* PgDurableHarness.execute(row!.instance_id).pipe(Effect.ensuring(Fiber.interrupt(fiber)))
    return { id: row!.instance_id, ...outcome }
  }).pipe(Effect.orDie)

const enqueue = (s: string, step: string, input: unknown, key = "s1", instance = unique()) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { notifyChannel, stepQueue } = yield* PgflowsConfig.PgflowsConfig
    const rows = yield* sql.unsafe<{ call: string }>(
      `SELECT ${s}.pgd_enqueue_step($1, $2, $3, $4, $5, $6::jsonb) AS call`,
      [stepQueue, notifyChannel, instance, key, step, JSON.stringify(input)]
    )
    return { call: rows[0]!.call, instance }
  })

const result = (s: string, call: string, wait = 5) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql.unsafe<{ output: string }>(`SELECT ${s}.pgd_step_result($1, $2::int) AS output`, [call, wait]).pipe(
        Effect.map((rows) => JSON.parse(rows[0]!.output) as unknown)
      )
  )

layer(TestDatabase.layer, { excludeTestServices: true })("push mode on PostgreSQL (no pg_durable)", (it) => {
  describe("PgDurableMigrations", () => {
    it.effect("apply pgflows' migrations and their own, once, in their own table", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* PgflowsConfig.PgflowsConfig
        const applied = yield* PgDurableMigrations.run
        assert.deepStrictEqual(applied.map(([id, name]) => [id, name]), [
          [1, "step_results"],
          [2, "push_functions"],
          [3, "http_calls"]
        ])
        assert.deepStrictEqual(yield* PgDurableMigrations.run, [], "a second run applies nothing")
        const tables = yield* sql<{ table_name: string }>`
          SELECT table_name FROM information_schema.tables WHERE table_schema = ${schema} ORDER BY table_name`
        assert.includeMembers(tables.map((row) => row.table_name), [
          "http_calls",
          "migrations",
          "pg_durable_migrations",
          "queue_messages",
          "step_results"
        ])
        yield* PgDurableMigrations.grant("pg_database_owner")
      }).pipe(Effect.provide(setup())))

    it.effect("two processes migrating at once apply each migration once", () =>
      Effect.gen(function*() {
        const [a, b] = yield* Effect.all([PgDurableMigrations.run, PgDurableMigrations.run], { concurrency: 2 })
        assert.strictEqual(a.length + b.length, 3)
      }).pipe(Effect.provide(setup())))
  })

  describe("the SQL functions and the StepWorker", () => {
    it.effect("enqueue, run, read: the output comes back as JSON text and the call is marked read", () =>
      withWorker([chargePayment], (worker, s) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const { call, instance } = yield* enqueue(s, "charge_payment", { orderId: "O-1", amount: 20 })
          assert.strictEqual(call, `${instance}:s1:1`)
          const queues = yield* WorkQueue.WorkQueue
          const { stepQueue } = yield* PgflowsConfig.PgflowsConfig
          assert.strictEqual((yield* queues.metrics(stepQueue)).length, 1)
          assert.strictEqual(yield* worker.processOnce, 1)
          assert.deepStrictEqual(yield* result(s, call), { charged: true, confirmation: "CHG-O-1" })
          const [row] = yield* sql.unsafe<{ status: string; attempts: number; read: boolean }>(
            `SELECT status, attempts, consumed_at IS NOT NULL AS read FROM ${s}.step_results WHERE call_id = $1`,
            [call]
          )
          assert.deepStrictEqual(row, { status: "completed", attempts: 1, read: true })
          assert.strictEqual((yield* queues.metrics(stepQueue)).length, 0, "the message is deleted")
        })))

    it.effect("enqueue is idempotent until the result is read, then starts the next iteration", () =>
      withWorker([double], (worker, s) =>
        Effect.gen(function*() {
          const first = yield* enqueue(s, "double", 2, "s4")
          const again = yield* enqueue(s, "double", 2, "s4", first.instance)
          assert.strictEqual(again.call, first.call, "a re-run of the node finds its call")
          assert.strictEqual(yield* worker.processOnce, 1)
          assert.strictEqual(yield* worker.processOnce, 0, "one message only")
          assert.strictEqual(yield* result(s, first.call), 4)
          const next = yield* enqueue(s, "double", 5, "s4", first.instance)
          assert.strictEqual(next.call, `${first.instance}:s4:2`)
          yield* worker.processOnce
          assert.strictEqual(yield* result(s, next.call), 10)
          // Reading again (pg_durable may re-run the result node) gives the same output.
          assert.strictEqual(yield* result(s, first.call), 4)
        })))

    it.effect("a typed failure: stored encoded with its message, and the result function raises", () =>
      withWorker([chargePayment], (worker, s) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const { call } = yield* enqueue(s, "charge_payment", { orderId: "O-2", amount: 5000 })
          yield* worker.processOnce
          const error = messages(yield* Effect.flip(result(s, call)))
          assert.include(error, "step \"charge_payment\" failed: Declined {\"reason\":\"amount 5000 over the limit\"}")
          const [row] = yield* sql.unsafe<{ status: string; error: Record<string, unknown> }>(
            `SELECT status, error FROM ${s}.step_results WHERE call_id = $1`,
            [call]
          )
          assert.strictEqual(row!.status, "failed")
          assert.deepStrictEqual(row!.error, {
            _tag: "Declined",
            reason: "amount 5000 over the limit",
            message: "Declined {\"reason\":\"amount 5000 over the limit\"}"
          })
        })))

    it.effect("retries follow the step's schedule", () =>
      withWorker([flaky(2)], (worker, s) =>
        Effect.gen(function*() {
          const { call } = yield* enqueue(s, "flaky", 10)
          yield* worker.processOnce
          assert.strictEqual(yield* result(s, call), 13, "two failures, then the third attempt succeeds")
        })))

    it.effect("plugins see each attempt: before, the failed ones with final false, then after", () =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const events: Array<any> = []
        const recorder = Plugin.make("recorder", {
          beforeStep: (event) => Effect.sync(() => (seen.push(`before:${event.attempt}`), events.push(event))),
          onStepError: (event) => Effect.sync(() => seen.push(`error:${event.attempt}:${event.final}`)),
          afterStep: (event) => Effect.sync(() => seen.push(`after:${event.attempt}:${JSON.stringify(event.output)}`)),
          aroundStep: (_event, attempt) => Effect.tap(attempt, () => Effect.sync(() => seen.push("around")))
        })
        const worker = yield* StepWorker.make({ steps: [flaky(2)], plugins: [recorder] })
        const { schema } = yield* PgflowsConfig.PgflowsConfig
        const { call, instance } = yield* enqueue(`"${schema}"`, "flaky", 10, "s7")
        yield* worker.processOnce
        assert.strictEqual(yield* result(`"${schema}"`, call), 13)
        assert.deepStrictEqual(seen, [
          "before:1",
          "error:1:false",
          "before:2",
          "error:2:false",
          "before:3",
          "around",
          "after:3:13"
        ])
        assert.deepStrictEqual(
          {
            runId: events[0].runId,
            workflow: events[0].workflow,
            step: events[0].step,
            key: events[0].key,
            input: events[0].input
          },
          { runId: instance, workflow: "pg_durable", step: "flaky", key: "s7:1", input: 10 }
        )
      }).pipe(Effect.provide(PgWorkQueue.layer.pipe(Layer.orDie)), Effect.provide(setup())))

    it.effect("a step that times out fails with StepTimeoutError", () =>
      withWorker([
        Step.make("slow", {
          input: Schema.Number,
          output: Schema.Number,
          timeout: "50 millis",
          run: (n) => Effect.as(Effect.sleep("5 seconds"), n)
        })
      ], (worker, s) =>
        Effect.gen(function*() {
          const { call } = yield* enqueue(s, "slow", 1)
          yield* worker.processOnce
          const error = messages(yield* Effect.flip(result(s, call)))
          assert.include(error, "step \"slow\" failed: step \"slow\" timed out after 50 ms")
        })))

    it.effect("an input that does not decode, and a step that dies, fail the call", () =>
      withWorker([
        sendReceipt,
        Step.make("boom", { input: Schema.Number, output: Schema.Number, run: () => Effect.die(new Error("kaput")) })
      ], (worker, s) =>
        Effect.gen(function*() {
          const bad = yield* enqueue(s, "send_receipt", { charged: "yes" })
          const boom = yield* enqueue(s, "boom", 1)
          assert.strictEqual(yield* worker.processOnce, 2)
          assert.include(
            messages(yield* Effect.flip(result(s, bad.call))),
            "the input of step \"send_receipt\" does not decode"
          )
          assert.include(messages(yield* Effect.flip(result(s, boom.call))), "step \"boom\" died")
        })))

    it.effect("a step no worker registers fails after maxDeliveries", () =>
      withWorker([double], (worker, s) =>
        Effect.gen(function*() {
          const { call } = yield* enqueue(s, "nobody_runs_this", 1)
          yield* worker.processOnce
          const error = messages(yield* Effect.flip(result(s, call)))
          assert.include(error, "no StepWorker registers step \"nobody_runs_this\"")
        }), { maxDeliveries: 1 }))

    it.effect("the result function gives up after its wait, naming the step", () =>
      withWorker([double], (_, s) =>
        Effect.gen(function*() {
          const { call } = yield* enqueue(s, "double", 1)
          const error = messages(yield* Effect.flip(result(s, call, 1)))
          assert.include(error, "step \"double\" (call")
          assert.include(error, "has no result after 1 seconds; is a StepWorker running")
          assert.include(messages(yield* Effect.flip(result(s, "nope:s1:1"))), "unknown step call nope:s1:1")
        })))

    it.effect("pgd_http_output: the body of a 2xx answer, else an error", () =>
      withWorker([], (_, s) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const output = (response: unknown) =>
            sql.unsafe<{ output: string }>(`SELECT ${s}.pgd_http_output($1::jsonb, 'charge') AS output`, [
              JSON.stringify(response)
            ]).pipe(Effect.map((rows) => rows[0]!.output))
          assert.strictEqual(
            yield* output({ status: 200, ok: true, encoding: "text", body: "{\"a\": 1}" }),
            "{\"a\": 1}"
          )
          assert.strictEqual(
            yield* output({ status: 200, ok: true, encoding: "base64", body: Buffer.from("[1,2]").toString("base64") }),
            "[1, 2]"
          )
          assert.include(
            messages(yield* Effect.flip(output({ status: 404, ok: false, encoding: "text", body: "no such step" }))),
            "step \"charge\" answered HTTP 404: no such step"
          )
          assert.include(
            messages(yield* Effect.flip(output({ status: 200, ok: true, encoding: "text", body: "<html>" }))),
            "answered a body that is not JSON"
          )
        })))

    it.effect("run: woken by NOTIFY, works until interrupted", () =>
      withWorker([double], (worker, s) =>
        Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(worker.run)
          const calls = yield* Effect.forEach([1, 2, 3], (n) => enqueue(s, "double", n, `s${n}`))
          const outputs = yield* Effect.forEach(calls, ({ call }) => result(s, call, 20))
          assert.deepStrictEqual(outputs, [2, 4, 6])
          yield* Fiber.interrupt(fiber)
        }), { pollInterval: "30 seconds" }))
  })

  describe("a compiled graph, executed as pg_durable would", () => {
    it.effect("two steps, a capture passed on, a branch on the output, and a final SQL node", () =>
      withWorker([chargePayment, sendReceipt], (worker, _) =>
        Effect.gen(function*() {
          const graph = Graph.sequence(
            Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
            Graph.branch(
              Graph.sql`SELECT (${Graph.ref("receipt")})::jsonb->>'charged' = 'true'`,
              Graph.step(sendReceipt, { input: Graph.capture("receipt") })
            ).pipe(Graph.as("mail")),
            Graph.sql`SELECT (${Graph.ref("mail")})::jsonb->>'to' AS sent_to, ${Graph.instanceId} AS instance`
          )
          const compiled = yield* Compiler.compile(graph, { input: { orderId: "O-'7' $x {y}", amount: 3 } }).pipe(
            Effect.catchTag("GraphCompileError", (error) => Effect.die(error))
          )
          // The parameterised statement, with its values: what PgDurableClient sends.
          const run = yield* runGraph(compiled, worker, { label: "sim" })
          assert.strictEqual(run.status, "completed", run.error)
          assert.deepStrictEqual(run.result, {
            rows: [{ sent_to: "CHG-O-'7' $x {y}", instance: run.id }],
            row_count: 1
          })
          assert.include(run.executed[1]!, "pgd_enqueue_step('")
          assert.include(run.executed[1]!, `'${run.id}', 's1', 'charge_payment'`)
        }), { pollInterval: "50 millis" }))

    it.effect("a step in a loop gets one call per iteration", () =>
      withWorker([double], (worker, s) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql.unsafe(`CREATE TABLE ${s}.ticks (n int)`)
          const graph = Graph.loop(
            Graph.sequence(
              Graph.sql(`INSERT INTO ${s}.ticks VALUES (1) RETURNING n`).pipe(Graph.as("tick", Schema.Number)),
              Graph.step(double, { capture: "doubled", input: Graph.capture("tick") })
            ),
            { while: `SELECT count(*) < 3 FROM ${s}.ticks` }
          )
          const compiled = yield* Compiler.compile(graph).pipe(Effect.orDie)
          const run = yield* runGraph(compiled, worker)
          assert.strictEqual(run.status, "completed", run.error)
          assert.deepStrictEqual(run.result, { rows: [{ output: "2" }], row_count: 1 })
          const rows = yield* sql.unsafe<{ call_id: string; iteration: number; status: string }>(
            `SELECT call_id, iteration, status FROM ${s}.step_results WHERE instance_id = $1 ORDER BY iteration`,
            [run.id]
          )
          assert.deepStrictEqual(rows.map((row) => [row.call_id, row.iteration, row.status]), [
            [`${run.id}:s1:1`, 1, "completed"],
            [`${run.id}:s1:2`, 2, "completed"],
            [`${run.id}:s1:3`, 3, "completed"]
          ])
        }), { pollInterval: "50 millis" }))

    it.effect("a failed step fails the node that reads it", () =>
      withWorker([chargePayment], (worker, _) =>
        Effect.gen(function*() {
          const compiled = yield* Compiler.compile(
            Graph.step(chargePayment, { input: Graph.value({ orderId: "big", amount: 1e6 }) })
          ).pipe(Effect.orDie)
          const run = yield* runGraph(compiled, worker)
          assert.strictEqual(run.status, "failed")
          assert.include(
            run.error,
            "step \"charge_payment\" failed: Declined {\"reason\":\"amount 1000000 over the limit\"}"
          )
        }), { pollInterval: "50 millis" }))
  })
})
