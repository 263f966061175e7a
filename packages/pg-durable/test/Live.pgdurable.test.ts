// Live tests against a real pg_durable (fixtures/live.ts: PGDURABLE_DATABASE_URL, or the published
// image through testcontainers when a Docker engine answers; otherwise skipped with the reason).
// Every node kind, captures, steps run by a StepWorker, signals, cancel, and the execution history.
import { assert, describe, layer } from "@effect/vitest"
import {
  Graph,
  GraphWorkflow,
  PgDurableClient,
  PgDurableError,
  PgDurableMigrations,
  StepWorker
} from "@pgflows/pg-durable"
import { Effect, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { PgflowsConfig, PgWorkQueue } from "pgflows"
import * as Live from "./fixtures/live.ts"
import { chargePayment, double, OrderInput, sendReceipt } from "./fixtures/steps.ts"

const source = await Live.source()

const suffix = Crypto.randomBytes(3).toString("hex")
const Config = Layer.effect(
  PgflowsConfig.PgflowsConfig,
  Effect.orDie(PgflowsConfig.make({
    schema: `pgflows_live_${suffix}`,
    stepQueue: `live_steps_${suffix}`,
    notifyChannel: `live_${suffix}`,
    pollInterval: "200 millis"
  }))
)

const steps = [chargePayment, sendReceipt, double]

/** The client, the push-mode migrations, and a StepWorker running in the background. */
const environment = (from: Live.Source) => {
  const Worker = Layer.effectDiscard(
    Effect.flatMap(StepWorker.StepWorker, (worker) => Effect.forkScoped(worker.run))
  ).pipe(Layer.provide(StepWorker.layer({ steps })))
  return Layer.mergeAll(PgDurableClient.layer({ steps }), Worker).pipe(
    Layer.provide(Layer.orDie(PgWorkQueue.layer)),
    Layer.provideMerge(Layer.effectDiscard(Effect.orDie(PgDurableMigrations.run))),
    Layer.provideMerge(Config),
    Layer.provideMerge(Live.layer(from))
  )
}

const done = (id: string) =>
  Effect.flatMap(PgDurableClient.PgDurableClient, (client) => client.awaitInstance(id, { timeout: "60 seconds" }))

const resultOf = (id: string) =>
  Effect.flatMap(PgDurableClient.PgDurableClient, (client) => Effect.map(client.result(id), Option.getOrUndefined))

const sqlResult = <A extends Schema.Top>(row: A) => Schema.Struct({ rows: Schema.Array(row), row_count: Schema.Number })

const skipped = source._tag === "none" ? source.reason : undefined
if (skipped !== undefined) console.info(`[pg-durable] live pg_durable tests skipped: ${skipped}`)

describe.skipIf(skipped !== undefined)(
  `pg_durable live${skipped === undefined ? "" : ` (skipped: ${skipped})`}`,
  () => {
    layer(environment(source), { excludeTestServices: true, timeout: "6 minutes" })((it) => {
      describe("nodes and captures", () => {
        it.effect("sql: the result is the row set", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(Graph.sql("SELECT 42 AS answer"), { label: "live-sql" })
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(
              yield* client.result(id, sqlResult(Schema.Struct({ answer: Schema.Number }))),
              Option.some({ rows: [{ answer: 42 }], row_count: 1 })
            )
          }), 90_000)

        it.effect("a capture read by a later SQL node, quoted by pg_durable", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(Graph.sequence(
              Graph.sql("SELECT 42 AS id, 'it''s' AS content").pipe(Graph.as("doc")),
              Graph.sql`SELECT ${Graph.ref("doc", "id")} + 1 AS next, ${Graph.ref("doc", "content")} AS content, ${
                Graph.literal("$doc {x}")
              } AS literal, ${Graph.instanceId} AS instance`
            ))
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), {
              rows: [{ next: 43, content: "it's", literal: "$doc {x}", instance: id }],
              row_count: 1
            })
          }), 90_000)

        it.effect("steps run by the StepWorker, the input and a capture passed on", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const workflow = GraphWorkflow.make("live_order", {
              input: OrderInput,
              graph: Graph.sequence(
                Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
                Graph.step(sendReceipt, { input: Graph.capture("receipt") })
              )
            })
            const id = yield* client.startWorkflow(workflow, new OrderInput({ orderId: "L-1", amount: 3 }))
            assert.strictEqual(yield* done(id), "completed")
            // A step's result node returns the output's JSON text (jsonb's rendering: reordered keys).
            const result = (yield* resultOf(id)) as { rows: ReadonlyArray<{ output: string }> }
            assert.deepStrictEqual(JSON.parse(result.rows[0]!.output), { sent: true, to: "CHG-L-1" })
          }), 90_000)

        it.effect("a failed step fails the instance; the failed node holds the message", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(
              Graph.step(chargePayment, { input: Graph.value({ orderId: "L-2", amount: 1e6 }) })
            )
            assert.strictEqual(yield* done(id), "failed")
            const nodes = yield* client.instanceNodes(id)
            const failed = nodes.filter((node) => node.status === "failed" && node.nodeType === "SQL")
            assert.isTrue(failed.some((node) => (node.result ?? "").includes("step \\\"charge_payment\\\" failed")))
          }), 90_000)

        it.effect("sleep, parallel with captures merged after the join", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(Graph.sequence(
              Graph.sleep("1 second"),
              Graph.parallel(
                Graph.sql("SELECT 100 AS amount").pipe(Graph.as("left_val")),
                Graph.step(double, { capture: "right_val", input: Graph.value(100) })
              ),
              Graph.sql`SELECT ${Graph.ref("left_val")}::int + (${Graph.ref("right_val")})::text::int AS total`
            ))
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), { rows: [{ total: 300 }], row_count: 1 })
          }), 90_000)

        it.effect("race: the first branch to finish wins", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(
              Graph.race(Graph.waitForSignal("never"), Graph.sql("SELECT 'fast' AS winner"))
            )
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), { rows: [{ winner: "fast" }], row_count: 1 })
          }), 90_000)

        it.effect("branch and ifRows take the right arm", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(Graph.sequence(
              Graph.sql("SELECT 1 AS x WHERE false").pipe(Graph.as("empty")),
              Graph.ifRows("empty", Graph.sql("SELECT 'rows' AS arm"), Graph.sql("SELECT 'none' AS arm")).pipe(
                Graph.as("first")
              ),
              Graph.branch(
                Graph.sql`SELECT ${Graph.ref("first")} = 'none'`,
                Graph.sql("SELECT 'then' AS arm"),
                Graph.sql("SELECT 'else' AS arm")
              )
            ))
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), { rows: [{ arm: "then" }], row_count: 1 })
          }), 90_000)

        it.effect("loop: while-loops run do-while, breaks carry an object", () =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const client = yield* PgDurableClient.PgDurableClient
            const table = `live_ticks_${Crypto.randomBytes(3).toString("hex")}`
            yield* sql.unsafe(`CREATE TABLE ${table} (n int)`)
            const id = yield* client.start(Graph.sequence(
              Graph.loop(Graph.sequence(
                Graph.sql(`INSERT INTO ${table} VALUES (1)`),
                Graph.branch(
                  `SELECT count(*) >= 3 FROM ${table}`,
                  Graph.break({ reason: "three" }),
                  Graph.sleep("1 second")
                )
              )).pipe(Graph.as("loop_result")),
              Graph.sql`SELECT (${Graph.ref("loop_result")})::jsonb->>'reason' AS reason`
            ))
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), { rows: [{ reason: "three" }], row_count: 1 })
            const [count] = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)
            assert.strictEqual(count!.n, 3)
          }), 90_000)

        it.effect(
          "waitForSchedule and http are accepted by pg_durable's constructors (explain)",
          () =>
            Effect.gen(function*() {
              const client = yield* PgDurableClient.PgDurableClient
              const text = yield* client.explain(Graph.sequence(
                Graph.waitForSchedule("0 9 * * MON-FRI"),
                Graph.http({ url: "https://example.azurewebsites.net/hook", method: "GET" })
              ))
              assert.include(text, "WAIT")
              assert.include(text, "HTTP")
            }),
          90_000
        )
      })

      describe("signals, cancel, variables, history", () => {
        it.effect(
          "signal: re-sent until the wait takes it; the capture holds the envelope",
          () =>
            Effect.gen(function*() {
              const client = yield* PgDurableClient.PgDurableClient
              const id = yield* client.start(Graph.sequence(
                Graph.waitForSignal("approval", { capture: "approval" }),
                Graph.sql`SELECT (${Graph.ref("approval")})::jsonb->'data'->>'approved' AS approved`
              ))
              const attempts = yield* client.signal(id, "approval", { approved: "yes" }, { timeout: "60 seconds" })
              assert.isAtLeast(attempts, 1)
              assert.strictEqual(yield* done(id), "completed")
              assert.deepStrictEqual(yield* resultOf(id), { rows: [{ approved: "yes" }], row_count: 1 })
            }),
          90_000
        )

        it.effect("a signal wait with a timeout times out", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(Graph.sequence(
              Graph.waitForSignal("never", { capture: "sig", timeout: "1 second" }),
              Graph.sql`SELECT ${Graph.ref("sig", "timed_out")} AS timed_out`
            ))
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), { rows: [{ timed_out: true }], row_count: 1 })
          }), 90_000)

        it.effect("cancel a running loop", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const id = yield* client.start(Graph.loop(Graph.sleep("1 second")), { label: "live-cancel" })
            const answer = yield* client.cancel(id, "live test")
            assert.include(answer, "cancelled")
            assert.strictEqual(yield* client.status(id), "cancelled")
            assert.strictEqual(yield* done(id), "cancelled")
          }), 90_000)

        it.effect("variables are substituted into SQL nodes", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            yield* client.setvar("live_region", "eu-west")
            const id = yield* client.start(Graph.sql("SELECT '{live_region}' AS region"))
            assert.strictEqual(yield* done(id), "completed")
            assert.deepStrictEqual(yield* resultOf(id), { rows: [{ region: "eu-west" }], row_count: 1 })
          }), 90_000)

        it.effect("history: info, nodes, executions, listing, metrics, explain by id", () =>
          Effect.gen(function*() {
            const client = yield* PgDurableClient.PgDurableClient
            const label = `live-history-${Crypto.randomBytes(3).toString("hex")}`
            const id = yield* client.start(
              Graph.sequence(Graph.sql("SELECT 1 AS a").pipe(Graph.as("a")), Graph.sql("SELECT 2 AS b")),
              { label }
            )
            assert.strictEqual(yield* done(id), "completed")
            const info = yield* client.instanceInfo(id)
            assert.strictEqual(info.instanceId, id)
            assert.strictEqual(info.label, label)
            assert.strictEqual(info.status, "completed")
            const nodes = yield* client.instanceNodes(id)
            assert.isTrue(nodes.some((node) => node.nodeType === "THEN"))
            assert.isTrue(nodes.some((node) => node.resultName === "__pgf_a" && node.status === "completed"))
            const executions = yield* client.instanceExecutions(id)
            assert.isAtLeast(executions.length, 1)
            const page = yield* client.listInstances({ label, limit: 10 })
            assert.deepStrictEqual(
              page.instances.map((instance) => instance.instanceId),
              [id]
            )
            const metrics = yield* client.metrics
            assert.isTrue(Option.isNone(metrics) || Option.getOrThrow(metrics).totalInstances >= 1)
            assert.include(yield* client.explain(id), "SQL")
            assert.instanceOf(yield* Effect.flip(client.status("00000000")), PgDurableError.InstanceNotFound)
          }), 90_000)
      })
    })
  }
)
