// The rendering of each node kind, pinned, in both renderings and with bind parameters; quoting,
// result names, balanced trees and cron translation.
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Decompiler, Graph, StepBinding } from "@pgflows/pg-durable"
import { Effect, Result } from "effect"
import { PgflowsConfig } from "pgflows"
import { chargePayment, compileChecked, double, sendReceipt } from "./fixtures/steps.ts"

const render = (graph: Graph.Any, options?: Compiler.Options) =>
  Effect.gen(function*() {
    const functions = yield* compileChecked(graph, options)
    const operators = yield* compileChecked(graph, { ...options, rendering: "operators" })
    return { functions: functions.expression, operators: operators.expression, compiled: functions }
  })

describe("Compiler: rendering of each node kind", () => {
  it.effect("sql", () =>
    Effect.gen(function*() {
      const { functions, operators, compiled } = yield* render(Graph.sql("SELECT 42 AS answer"))
      assert.strictEqual(functions, "df.sql('SELECT 42 AS answer')")
      assert.strictEqual(operators, "'SELECT 42 AS answer'")
      assert.strictEqual(compiled.statement, "SELECT df.start(df.sql('SELECT 42 AS answer'))")
      assert.strictEqual(compiled.parameterised.expression, "df.sql($1::text)")
      assert.deepStrictEqual(compiled.parameterised.params, ["SELECT 42 AS answer"])
    }))

  it.effect("sql with a capture and references", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.sql("SELECT 42 AS id, 'hello' AS content").pipe(Graph.as("doc")),
        Graph.sql`INSERT INTO log VALUES (${Graph.ref("doc", "id")}, ${
          Graph.ref("doc", "content", { optional: true })
        })`,
        Graph.sql`SELECT count(*) FROM ${Graph.rows("doc")}`
      )
      const { functions, operators } = yield* render(graph)
      assert.strictEqual(
        functions,
        "df.seq(df.seq(df.as(df.sql('SELECT 42 AS id, ''hello'' AS content'), '__pgf_doc'), " +
          "df.sql('INSERT INTO log VALUES (($__pgf_doc.id), ($__pgf_doc.content?))')), " +
          "df.sql('SELECT count(*) FROM $__pgf_doc.*'))"
      )
      assert.strictEqual(
        operators,
        "((('SELECT 42 AS id, ''hello'' AS content' |=> '__pgf_doc') ~> " +
          "'INSERT INTO log VALUES (($__pgf_doc.id), ($__pgf_doc.content?))') ~> " +
          "'SELECT count(*) FROM $__pgf_doc.*')"
      )
    }))

  it.effect("sleep, wait for a schedule, wait for a signal", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.sleep("1 minute"),
        Graph.waitForSchedule("30 9 * * 1-5"),
        Graph.waitForSignal("approval", { timeout: "1 hour", capture: "approval" }),
        Graph.waitForSignal("go")
      )
      const { functions, operators, compiled } = yield* render(graph)
      assert.strictEqual(
        functions,
        "df.seq(df.seq(df.sleep(60), df.wait_for_schedule('30 9 * * 2-6')), " +
          "df.seq(df.as(df.wait_for_signal('approval', 3600), '__pgf_approval'), df.wait_for_signal('go')))"
      )
      assert.strictEqual(
        operators,
        "((df.sleep(60) ~> df.wait_for_schedule('30 9 * * 2-6')) ~> " +
          "((df.wait_for_signal('approval', 3600) |=> '__pgf_approval') ~> df.wait_for_signal('go')))"
      )
      assert.strictEqual(
        compiled.parameterised.expression,
        "df.seq(df.seq(df.sleep($1::bigint), df.wait_for_schedule($2::text)), " +
          "df.seq(df.as(df.wait_for_signal($3::text, $4::int), $5::text), df.wait_for_signal($6::text)))"
      )
      assert.deepStrictEqual(compiled.parameterised.params, [
        60,
        "30 9 * * 2-6",
        "approval",
        3600,
        "__pgf_approval",
        "go"
      ])
    }))

  it.effect("http", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.sql("SELECT 7 AS id").pipe(Graph.as("order")),
        Graph.http({
          url: Graph.text`https://orders.azurewebsites.net/orders/${Graph.ref("order", "id")}`,
          method: "PUT",
          body: Graph.text`{"instance":"${Graph.instanceId}"}`,
          headers: { "Content-Type": "application/json" },
          timeout: "10 seconds",
          capture: "response"
        })
      )
      const { functions, operators } = yield* render(graph)
      assert.strictEqual(
        functions,
        "df.seq(df.as(df.sql('SELECT 7 AS id'), '__pgf_order'), " +
          "df.as(df.http('https://orders.azurewebsites.net/orders/$__pgf_order.id', 'PUT', " +
          "'{\"instance\":\"{sys_instance_id}\"}', '{\"Content-Type\":\"application/json\"}'::jsonb, 10), '__pgf_response'))"
      )
      assert.strictEqual(
        operators,
        "(('SELECT 7 AS id' |=> '__pgf_order') ~> (df.http('https://orders.azurewebsites.net/orders/$__pgf_order.id', " +
          "'PUT', '{\"instance\":\"{sys_instance_id}\"}', '{\"Content-Type\":\"application/json\"}'::jsonb, 10) " +
          "|=> '__pgf_response'))"
      )
    }))

  it.effect("parallel: join, join3 and nested joins for more branches", () =>
    Effect.gen(function*() {
      const sql = (n: number) => Graph.sql(`SELECT ${n}`)
      // Followed by another node, nothing reads the parallel's value: the join alone.
      const then = (graph: Graph.Any) => Graph.sequence(graph, sql(0))
      assert.strictEqual(
        (yield* render(then(Graph.parallel(sql(1), sql(2))))).functions,
        "df.seq(df.join(df.sql('SELECT 1'), df.sql('SELECT 2')), df.sql('SELECT 0'))"
      )
      const three = yield* render(then(Graph.parallel(sql(1), sql(2), sql(3))))
      assert.strictEqual(
        three.functions,
        "df.seq(df.join3(df.sql('SELECT 1'), df.sql('SELECT 2'), df.sql('SELECT 3')), df.sql('SELECT 0'))"
      )
      assert.strictEqual(three.operators, "(df.join3('SELECT 1', 'SELECT 2', 'SELECT 3') ~> 'SELECT 0')")
      const five = yield* render(then(Graph.parallel(sql(1), sql(2), sql(3), sql(4), sql(5))))
      assert.strictEqual(
        five.functions,
        "df.seq(df.join(df.join3(df.sql('SELECT 1'), df.sql('SELECT 2'), df.sql('SELECT 3')), df.join(df.sql('SELECT 4'), df.sql('SELECT 5'))), df.sql('SELECT 0'))"
      )
      assert.strictEqual(
        five.operators,
        "((df.join3('SELECT 1', 'SELECT 2', 'SELECT 3') & ('SELECT 4' & 'SELECT 5')) ~> 'SELECT 0')"
      )
      // A parallel directly inside another stays one (its join is named, so it reads back nested).
      assert.strictEqual(
        (yield* render(then(Graph.parallel(Graph.parallel(sql(1), sql(2)), sql(3))))).operators,
        "(((('SELECT 1' & 'SELECT 2') |=> '__pgf__j3') & 'SELECT 3') ~> 'SELECT 0')"
      )
      // At the root, PgDurableClient.result reads its value: each branch is named, and a last node
      // builds the tuple of their values.
      assert.strictEqual(
        (yield* render(Graph.parallel(sql(1), Graph.sleep("2 seconds")))).operators,
        "((('SELECT 1' |=> '__pgf__v1_0') & df.sleep(2)) ~> ('SELECT jsonb_build_array(CASE WHEN " +
          "pg_input_is_valid(v0, ''jsonb'') THEN v0::jsonb ELSE to_jsonb(v0) END, " +
          "''{\"slept\":true,\"seconds\":2}''::jsonb) AS value FROM (SELECT ($__pgf__v1_0?)::text AS v0 OFFSET 0) " +
          "AS __pgf_values' |=> '__pgf__p1'))"
      )
    }))

  it.effect("race (terminal)", () =>
    Effect.gen(function*() {
      const { functions, operators } = yield* render(
        Graph.race(Graph.waitForSignal("approve"), Graph.sleep("1 day"), Graph.waitForSignal("reject"))
      )
      assert.strictEqual(
        functions,
        "df.race(df.race(df.wait_for_signal('approve'), df.sleep(86400)), df.wait_for_signal('reject'))"
      )
      assert.strictEqual(
        operators,
        "((df.wait_for_signal('approve') | df.sleep(86400)) | df.wait_for_signal('reject'))"
      )
    }))

  it.effect("branch (SQL condition; default else) and ifRows", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.sql("SELECT id FROM t WHERE done").pipe(Graph.as("rows")),
        Graph.branch("SELECT true", Graph.sql("SELECT 'yes'")),
        Graph.ifRows("rows", Graph.sql("SELECT 1"), Graph.sleep("5 seconds")).pipe(Graph.as("picked"))
      )
      const { functions, operators } = yield* render(graph)
      assert.strictEqual(
        functions,
        "df.seq(df.seq(df.as(df.sql('SELECT id FROM t WHERE done'), '__pgf_rows'), " +
          "df.if(df.sql('SELECT true'), df.sql('SELECT ''yes'''), df.sql('SELECT NULL AS skipped'))), " +
          "df.as(df.if_rows('__pgf_rows', df.sql('SELECT 1'), df.sleep(5)), '__pgf_picked'))"
      )
      assert.strictEqual(
        operators,
        "((('SELECT id FROM t WHERE done' |=> '__pgf_rows') ~> (('SELECT true' ?> 'SELECT ''yes''') !> " +
          "'SELECT NULL AS skipped')) ~> (df.if_rows('__pgf_rows', 'SELECT 1', df.sleep(5)) |=> '__pgf_picked'))"
      )
    }))

  it.effect("loop: infinite with break, and while", () =>
    Effect.gen(function*() {
      const forever = yield* render(
        Graph.loop(Graph.sequence(
          Graph.sql("SELECT count(*) >= 3 AS done FROM t").pipe(Graph.as("check")),
          Graph.branch(
            Graph.sql`SELECT ${Graph.ref("check")}`,
            Graph.break({ status: "done" }),
            Graph.sleep("1 second")
          )
        )).pipe(Graph.as("result"))
      )
      assert.strictEqual(
        forever.functions,
        "df.as(df.loop(df.seq(df.as(df.sql('SELECT count(*) >= 3 AS done FROM t'), '__pgf_check'), " +
          "df.if(df.sql('SELECT ($__pgf_check)'), df.break('{\"status\":\"done\"}'), df.sleep(1)))), '__pgf_result')"
      )
      assert.strictEqual(
        forever.operators,
        "((@> (('SELECT count(*) >= 3 AS done FROM t' |=> '__pgf_check') ~> (('SELECT ($__pgf_check)' ?> " +
          "df.break('{\"status\":\"done\"}')) !> df.sleep(1)))) |=> '__pgf_result')"
      )
      const whileLoop = yield* render(Graph.loop(Graph.sleep("1 second"), { while: "SELECT count(*) < 4 FROM t" }))
      assert.strictEqual(whileLoop.functions, "df.loop(df.sleep(1), df.sql('SELECT count(*) < 4 FROM t'))")
      assert.strictEqual(whileLoop.operators, "df.loop(df.sleep(1), 'SELECT count(*) < 4 FROM t')")
    }))

  it.effect("step, worker binding: enqueue then read the result", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
        Graph.step(sendReceipt, { input: Graph.capture("receipt") })
      )
      const { functions, compiled } = yield* render(graph, { input: { orderId: "O-1", amount: 5 } })
      assert.strictEqual(
        functions,
        "df.seq(df.seq(df.seq(df.as(df.sql('SELECT ''{\"orderId\":\"O-1\",\"amount\":5}''::text AS input'), '__pgf_input'), " +
          "df.as(df.sql('SELECT \"pgflows\".pgd_enqueue_step(''pgflows_steps'', ''pgflows_wakeup'', ''{sys_instance_id}'', " +
          "''s1'', ''charge_payment'', ($__pgf_input)::text::jsonb) AS call'), '__pgf__call_s1')), " +
          "df.as(df.sql('SELECT \"pgflows\".pgd_step_result(($__pgf__call_s1), 3600) AS output'), '__pgf_receipt')), " +
          "df.seq(df.as(df.sql('SELECT \"pgflows\".pgd_enqueue_step(''pgflows_steps'', ''pgflows_wakeup'', " +
          "''{sys_instance_id}'', ''s2'', ''send_receipt'', ($__pgf_receipt)::text::jsonb) AS call'), '__pgf__call_s2'), " +
          "df.sql('SELECT \"pgflows\".pgd_step_result(($__pgf__call_s2), 3600) AS output')))"
      )
      assert.deepStrictEqual(compiled.steps.map((step) => [step.key, step.step, step.capture]), [
        ["s1", "charge_payment", "receipt"],
        ["s2", "send_receipt", undefined]
      ])
      assert.deepStrictEqual(compiled.captures.map((capture) => [capture.name, capture.kind]), [
        ["input", "input"],
        ["receipt", "step"]
      ])
      assert.strictEqual(compiled.captures[1]!.schema, chargePayment.output as unknown)
    }))

  it.effect("step, HTTP binding: a result key per call, df.http with the instance id, key and secret, output node", () =>
    Effect.gen(function*() {
      const graph = Graph.step(double, { capture: "d", input: Graph.value(21) })
      const { functions } = yield* render(graph, {
        binding: StepBinding.http("https://steps.azurewebsites.net/pgflows/", {
          timeout: "1 minute",
          secret: StepBinding.variable("step_secret")
        })
      })
      assert.strictEqual(
        functions,
        "df.seq(df.seq(df.as(df.sql('SELECT \"pgflows\".pgd_http_call(''{sys_instance_id}'', ''s1'', ''double'') AS key, " +
          "(''21''::jsonb)::text AS body'), '__pgf__body_s1'), " +
          "df.as(df.http('https://steps.azurewebsites.net/pgflows/steps/double', 'POST', '$__pgf__body_s1.body', " +
          "'{\"Content-Type\":\"application/json\",\"X-Pgflows-Instance-Id\":\"{sys_instance_id}\"," +
          "\"X-Pgflows-Result-Key\":\"$__pgf__body_s1.key\",\"X-Pgflows-Step-Secret\":\"{step_secret}\"}'::jsonb, 60), " +
          "'__pgf__http_s1')), df.as(df.sql('SELECT \"pgflows\".pgd_http_output(($__pgf__http_s1), ''double'', " +
          "''{sys_instance_id}'', ($__pgf__body_s1.key)) AS output'), '__pgf_d'))"
      )
    }))

  it.effect("step inputs: constants, objects, arrays and fields", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.step(chargePayment, { capture: "receipt", input: Graph.value({ orderId: "a'b $x {y}", amount: 1 }) }),
        Graph.step("send_receipt", {
          input: Graph.object({
            charged: Graph.capture("receipt").at("charged"),
            confirmation: Graph.array(Graph.value("x")).at("0")
          })
        })
      )
      const compiled = yield* compileChecked(graph)
      assert.include(
        compiled.steps[0]!.sql[0]!,
        "'{\"orderId\":\"a''''b \\u0024x \\u007by\\u007d\",\"amount\":1}''::jsonb"
      )
      assert.include(
        compiled.steps[1]!.sql[0]!,
        "jsonb_build_object(''charged'', (($__pgf_receipt)::text::jsonb -> ''charged''), ''confirmation'', " +
          "(jsonb_build_array(''\"x\"''::jsonb) -> ''0''))"
      )
    }))
})

describe("Compiler: quoting, names and shape", () => {
  it.effect("literals survive whatever they contain", () =>
    Effect.gen(function*() {
      const nasty = "it's $$ a \\ test\n\"quoted\" $__x {sys_label} é 😀"
      const graph = Graph.sequence(
        Graph.sql`SELECT ${Graph.literal(nasty)} AS v`.pipe(Graph.as("v")),
        Graph.waitForSignal(nasty),
        Graph.loop(Graph.break({ text: nasty }))
      )
      const compiled = yield* compileChecked(graph)
      const decompiled = yield* Decompiler.decompile(compiled.statement)
      assert.deepStrictEqual(decompiled.graph.node, compiled.graph)
      assert.notInclude(compiled.steps.join(""), "$__x")
      assert.include(compiled.expression, "chr(36)")
    }))

  it.effect("long sequences become balanced trees", () =>
    Effect.gen(function*() {
      const nodes = Array.from({ length: 1000 }, (_, i) => Graph.sql(`SELECT ${i}`))
      const compiled = yield* compileChecked(Graph.sequence(...nodes))
      assert.strictEqual(compiled.nodes, 1999)
      assert.strictEqual(compiled.depth, 11)
    }))

  it.effect("a step's key is its position in execution order; captures get the reserved prefix", () =>
    Effect.gen(function*() {
      const compiled = yield* compileChecked(Graph.parallel(
        Graph.step(double, { capture: "a", input: Graph.value(1) }),
        Graph.step(double, { capture: "b", input: Graph.value(2) })
      ))
      assert.deepStrictEqual(compiled.steps.map((step) => step.key), ["s1", "s2"])
      assert.include(compiled.expression, "'__pgf_a'")
      assert.include(compiled.expression, "'__pgf_b'")
    }))

  it.effect("the configured schema, step queue and channel reach the step calls", () =>
    Effect.gen(function*() {
      const config = yield* PgflowsConfig.make({
        schema: "app_flows",
        stepQueue: "app_steps",
        notifyChannel: "app_wakeup"
      })
      const compiled = yield* Compiler.compile(Graph.step(double, { input: Graph.value(1) }), {
        binding: StepBinding.worker({ wait: "2 minutes" })
      }).pipe(Effect.provideService(PgflowsConfig.PgflowsConfig, config))
      assert.include(compiled.expression, "\"app_flows\".pgd_enqueue_step(''app_steps'', ''app_wakeup''")
      assert.include(compiled.expression, "\"app_flows\".pgd_step_result(($__pgf__call_s1), 120)")
    }))

  it.effect("startStatement binds the label and the transaction mode", () =>
    Effect.gen(function*() {
      const compiled = yield* compileChecked(Graph.sql("SELECT 1"))
      const plain = Compiler.startStatement(compiled, { label: "nightly" })
      assert.strictEqual(plain.text, "SELECT df.start(df.sql($1::text), $2::text) AS instance_id")
      assert.deepStrictEqual(plain.params, ["SELECT 1", "nightly"])
      const fresh = Compiler.startStatement(compiled, { transactionMode: "new" })
      assert.strictEqual(fresh.text, "SELECT df.start(df.sql($1::text), $2::text, NULL, $3::text) AS instance_id")
      assert.deepStrictEqual(fresh.params, ["SELECT 1", null, "new"])
      const parsed = yield* Decompiler.parse(fresh.text, fresh.params)
      assert.strictEqual(parsed.call, "start")
    }))
})

describe("Compiler: cron translation (pg_durable: day of week 1-7, Sunday = 1)", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["0 9 * * 1-5", "0 9 * * 2-6"],
    ["0 9 * * MON-FRI", "0 9 * * 2-6"],
    ["0 2 * * 0", "0 2 * * 1"],
    ["0 2 * * 7", "0 2 * * 1"],
    ["0 2 * * SUN,SAT", "0 2 * * 1,7"],
    ["0 2 * * 5-7", "0 2 * * 1,6,7"],
    ["*/15 * * * *", "*/15 * * * *"],
    ["0 0 1 JAN *", "0 0 1 1 *"],
    ["0 12 * * */2", "0 12 * * 1,3,5,7"],
    ["0 12 * * 1-5/2", "0 12 * * 2,4,6"],
    ["@daily", "0 0 * * *"],
    ["@weekly", "0 0 * * 1"],
    ["5 4 * * *", "5 4 * * *"]
  ]
  for (const [unix, pg] of cases) {
    it(`${unix} -> ${pg}`, () => {
      assert.deepStrictEqual(Compiler.translateCron(unix), Result.succeed(pg))
    })
  }

  const rejected: ReadonlyArray<readonly [string, string]> = [
    ["0 9 1 * 1", "restricts both the day of month and the day of week"],
    ["0 9 * * 1#2", "Quartz extension"],
    ["0 9 L * *", "Quartz extension"],
    ["0 0 9 * * 1", "has 6 fields"],
    ["0 24 * * *", "out of range 0-23"],
    ["@reboot", "not a known macro"],
    ["0 9 * * 5-2", "ends before it starts"]
  ]
  for (const [cron, message] of rejected) {
    it(`rejects ${cron}`, () => {
      const translated = Compiler.translateCron(cron)
      assert.isTrue(Result.isFailure(translated))
      assert.include(Result.isFailure(translated) ? translated.failure : "", message)
    })
  }
})
