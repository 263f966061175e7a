// SqlExporter: scripts that PostgreSQL's parser accepts, that run in a database (here one with the
// stand-in of pg_durable's API), and whose start function hands pg_durable the compiled graph with
// the run's input; dryRun, compose (typos fail fast) and exportAll.
import { assert, describe, layer } from "@effect/vitest"
import {
  Compiler,
  Graph,
  GraphWorkflow,
  PgDurableError,
  PgDurableHarness,
  PgDurableMigrations,
  SqlExporter,
  StepBinding
} from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as PgQuery from "libpg-query"
import { PgflowsConfig } from "pgflows"
import { chargePayment, double, OrderInput, sendReceipt, steps } from "./fixtures/steps.ts"

const processOrder = GraphWorkflow.make("process_order", {
  input: OrderInput,
  description: "charge, then mail the receipt",
  graph: Graph.sequence(
    Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
    Graph.step(sendReceipt, { input: Graph.capture("receipt") })
  )
})

const nightly = GraphWorkflow.make("Nightly Report!", {
  input: Schema.Null,
  graph: Graph.sequence(Graph.waitForSchedule("0 2 * * *"), Graph.sql("SELECT 1"))
})

const exporter = (binding?: StepBinding.StepBinding) =>
  SqlExporter.make({ workflows: [processOrder, nightly], steps, binding })

// The scripts' prerequisites: pg_durable's API (here the stand-in) and the push-mode migrations.
const Database = Layer.effectDiscard(Effect.andThen(PgDurableHarness.install, PgDurableMigrations.run)).pipe(
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)

layer(Database, { excludeTestServices: true })("SqlExporter", (it) => {
  describe("exportWorkflow", () => {
    it.effect("a header comment and a start function, accepted by PostgreSQL's parser (SQL and PL/pgSQL)", () =>
      Effect.gen(function*() {
        const sql = yield* (yield* exporter()).exportWorkflow("process_order")
        const lines = sql.split("\n")
        assert.strictEqual(lines[0], "-- pgflows: pg_durable workflow \"process_order\"")
        assert.include(
          sql,
          "-- Binding: worker: steps go to queue pgflows_steps (schema pgflows, channel pgflows_wakeup)"
        )
        assert.include(sql, "--   s1 charge_payment -> capture receipt\n--   s2 send_receipt\n")
        assert.include(
          sql,
          "--   SELECT \"pgflows\".\"pgd_start_process_order\"('<input as JSON>'::jsonb, 'optional label');"
        )
        assert.include(
          sql,
          "CREATE OR REPLACE FUNCTION \"pgflows\".\"pgd_start_process_order\"(p_input jsonb DEFAULT 'null'::jsonb, p_label text DEFAULT NULL)"
        )
        yield* Effect.promise(() => PgQuery.loadModule())
        const parsed = PgQuery.parseSync(sql) as any
        assert.strictEqual(parsed.stmts.length, 1)
        assert.property(parsed.stmts[0].stmt, "CreateFunctionStmt")
        const plpgsql = PgQuery.parsePlPgSQLSync(sql) as any
        assert.strictEqual(plpgsql.plpgsql_funcs.length, 1)
      }))

    it.effect("the start function builds the compiled graph around the run's input and calls df.start", () =>
      Effect.gen(function*() {
        const db = yield* SqlClient.SqlClient
        const sql = yield* (yield* exporter()).exportWorkflow("process_order")
        yield* db.unsafe(sql)
        const input = { orderId: "O-'1' $__x {sys_label} é", amount: 12.5 }
        const [started] = yield* db.unsafe<{ id: string }>(
          `SELECT "pgflows"."pgd_start_process_order"($1::jsonb, 'exported') AS id`,
          [JSON.stringify(input)]
        )
        const [row] = yield* db<{ root_node: any; label: string }>`
          SELECT root_node, label FROM df.instances WHERE id = ${started!.id}`
        assert.strictEqual(row!.label, "exported")
        // The first node binds the input: running its SQL gives the input back, whatever it holds.
        let node = row!.root_node
        while (node.node_type === "THEN") node = node.left_node
        assert.strictEqual(node.result_name, "__pgf_input")
        const [decoded] = yield* db.unsafe<{ input: string }>(node.query)
        assert.deepStrictEqual(JSON.parse(decoded!.input), input)
        // The rest is the compiled graph: the same JSON once the input nodes are made equal.
        const compiled = yield* Compiler.compile(processOrder.graph, { input: null })
        const [built] = yield* db.unsafe<{ graph: any }>(`SELECT (${compiled.expression})::jsonb AS graph`)
        let builtInput = built!.graph
        while (builtInput.node_type === "THEN") builtInput = builtInput.left_node
        node.query = builtInput.query
        assert.deepStrictEqual(row!.root_node, built!.graph)
      }))

    it.effect("a workflow name that is not an identifier gets a safe, distinct function name", () =>
      Effect.gen(function*() {
        const db = yield* SqlClient.SqlClient
        const sql = yield* (yield* exporter()).exportWorkflow("Nightly Report!")
        const name = SqlExporter.startFunctionName("Nightly Report!")
        assert.match(name, /^pgd_start_nightly_report__[0-9a-f]{8}$/)
        assert.notStrictEqual(name, SqlExporter.startFunctionName("nightly report?"))
        assert.include(sql, `"pgflows"."${name}"`)
        yield* db.unsafe(sql)
        const [started] = yield* db.unsafe<{ id: string }>(`SELECT "pgflows"."${name}"() AS id`)
        assert.match(started!.id, /^[0-9a-f]{8}$/)
      }))

    it.effect("the HTTP binding is described in the header and compiled into df.http calls", () =>
      Effect.gen(function*() {
        const sql = yield* (yield* exporter(
          StepBinding.http("https://app.azurewebsites.net/pgflows", { secret: StepBinding.variable("step_secret") })
        ))
          .exportWorkflow("process_order")
        assert.include(
          sql,
          "-- Binding: http: pg_durable POSTs each step's input to https://app.azurewebsites.net/pgflows/steps/<name>"
        )
        assert.include(sql, "df.http('https://app.azurewebsites.net/pgflows/steps/charge_payment', 'POST'")
      }))

    it.effect("an unknown workflow fails with WorkflowNotFound listing the known ones", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip((yield* exporter()).exportWorkflow("process_ordr"))
        assert.instanceOf(error, PgDurableError.WorkflowNotFound)
        assert.include(error.message, "known: Nightly Report!, process_order")
      }))

    it.effect("the configured schema names the function and the push-mode calls", () =>
      Effect.gen(function*() {
        const config = yield* PgflowsConfig.make({ schema: "flows", stepQueue: "flow_steps" })
        const sql = yield* Effect.flatMap(exporter(), (e) => e.exportWorkflow("process_order")).pipe(
          Effect.provideService(PgflowsConfig.PgflowsConfig, config)
        )
        assert.include(sql, "\"flows\".\"pgd_start_process_order\"")
        assert.include(sql, "\"flows\".pgd_enqueue_step(''flow_steps''")
      }))
  })

  describe("dryRun, compose, exportAll", () => {
    it.effect("dryRun shows each step with the SQL pg_durable runs for it, and the graph", () =>
      Effect.gen(function*() {
        const dry = yield* (yield* exporter()).dryRun("process_order", { input: { orderId: "O-1", amount: 1 } })
        assert.strictEqual(dry.workflow, "process_order")
        assert.strictEqual(dry.binding, "worker")
        assert.deepStrictEqual(dry.steps.map((step) => [step.key, step.step, step.capture, step.sql.length]), [
          ["s1", "charge_payment", "receipt", 2],
          ["s2", "send_receipt", undefined, 2]
        ])
        assert.include(dry.steps[0]!.sql[0]!, "pgd_enqueue_step")
        assert.include(dry.steps[0]!.sql[1]!, "pgd_step_result(($__pgf__call_s1), 3600)")
        assert.include(dry.sql, "df.seq(")
        assert.include(dry.operators, " ~> ")
        assert.deepStrictEqual(dry.captures.map((capture) => capture.name), ["input", "receipt"])
      }))

    it.effect("compose chains registered steps, each getting the previous output", () =>
      Effect.gen(function*() {
        const db = yield* SqlClient.SqlClient
        const sql = yield* (yield* exporter()).compose("doubler", ["double", "double", "double"])
        assert.include(
          sql,
          "--   s1 double -> capture step1\n--   s2 double -> capture step2\n--   s3 double -> capture step3"
        )
        assert.include(sql, "''s2'', ''double'', ($__pgf_step1)::text::jsonb")
        yield* db.unsafe(sql)
        const [started] = yield* db.unsafe<{ id: string }>(`SELECT "pgflows"."pgd_start_doubler"('3') AS id`)
        assert.match(started!.id, /^[0-9a-f]{8}$/)
        void double
      }))

    it.effect("compose fails fast on a step name that is not registered, with a suggestion", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip((yield* exporter()).compose("typo", ["charge_payment", "send_reciept"]))
        assert.strictEqual(error.rule, "step-not-registered")
        assert.include(error.message, "step \"send_reciept\" is not registered (did you mean \"send_receipt\"?)")
        const empty = yield* Effect.flip((yield* exporter()).compose("empty", []))
        assert.strictEqual(empty.rule, "empty-sequence")
      }))

    it.effect("exportAll: one script per workflow, in name order", () =>
      Effect.gen(function*() {
        const all = yield* (yield* exporter()).exportAll
        assert.deepStrictEqual(all.map((exported) => exported.workflow), ["Nightly Report!", "process_order"])
        yield* Effect.promise(() => PgQuery.loadModule())
        for (const exported of all) {
          assert.strictEqual((PgQuery.parseSync(exported.sql) as any).stmts.length, 1)
          assert.isTrue(exported.sql.startsWith(`-- pgflows: pg_durable workflow "${exported.workflow}"`))
        }
      }))
  })
})
