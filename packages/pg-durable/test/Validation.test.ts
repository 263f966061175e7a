// Each rule of GraphCompileError: a graph that breaks it, the rule, where, and the message.
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Graph, GraphSpec, PgDurableError, StepBinding } from "@pgflows/pg-durable"
import { Effect, Schema } from "effect"
import { Step } from "pgflows"
import { chargePayment, double, sendReceipt, steps } from "./fixtures/steps.ts"

const rejects = (
  graph: Graph.Any,
  expected: { readonly rule: PgDurableError.Rule; readonly path?: string; readonly message: ReadonlyArray<string> },
  options?: Compiler.Options
) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(
      Compiler.compileNode(graph.node, {
        steps,
        ...options,
        conflicts: graph.conflicts,
        schemas: graph.schemas
      })
    )
    assert.instanceOf(error, PgDurableError.GraphCompileError)
    assert.strictEqual(error.rule, expected.rule, error.message)
    if (expected.path !== undefined) assert.strictEqual(error.path, expected.path)
    for (const part of expected.message) assert.include(error.message, part)
  })

const sql = (text: string) => Graph.sql(text)

describe("GraphCompileError rules", () => {
  it.effect("loop and parallel in one instance", () =>
    rejects(Graph.sequence(Graph.parallel(sql("SELECT 1"), sql("SELECT 2")), Graph.loop(Graph.sleep("1 second"))), {
      rule: "loop-and-parallel",
      path: "graph.nodes[0]",
      message: ["the loop at graph.nodes[1]", "can deadlock", "Run the parallel part as an instance of its own"]
    }))

  it.effect("a race that is not terminal", () =>
    Effect.gen(function*() {
      const race = Graph.race(Graph.waitForSignal("a"), Graph.waitForSignal("b"))
      yield* rejects(Graph.sequence(race, sql("SELECT 1")), {
        rule: "race-not-terminal",
        path: "graph.nodes[0]",
        message: ["a race must be the last thing the instance does", "Move the race to the end"]
      })
      yield* rejects(Graph.loop(Graph.sequence(sql("SELECT 1"), race)), { rule: "race-not-terminal", message: [] })
      yield* rejects(Graph.parallel(race, sql("SELECT 1")), { rule: "race-not-terminal", message: [] })
    }))

  it.effect("a race in tail position (after a branch, in its arms) is accepted", () =>
    Compiler.compile(
      Graph.sequence(
        sql("SELECT 1"),
        Graph.branch(
          "SELECT true",
          Graph.race(sql("SELECT 2"), sql("SELECT 3")),
          Graph.race(sql("SELECT 4"), sql("SELECT 5"))
        )
      )
    ))

  it.effect("break outside a loop", () =>
    rejects(Graph.sequence(sql("SELECT 1"), Graph.break()), {
      rule: "break-outside-loop",
      path: "graph.nodes[1]",
      message: ["break is outside any loop", "put it inside Graph.loop"]
    }))

  it.effect("an empty sequence", () =>
    rejects(Graph.sequence(), { rule: "empty-sequence", path: "graph", message: ["the sequence is empty"] }))

  it.effect("a parallel or race with fewer than two branches", () =>
    Effect.gen(function*() {
      yield* rejects(Graph.parallel(sql("SELECT 1")), {
        rule: "too-few-branches",
        message: ["a parallel needs at least two branches, it has 1"]
      })
      yield* rejects(Graph.race(sql("SELECT 1")), { rule: "too-few-branches", message: ["a race needs"] })
    }))

  it.effect("invalid capture names", () =>
    Effect.gen(function*() {
      for (const name of ["has space", "123abc", "x) UNION SELECT version()--", "", "_x"]) {
        yield* rejects(sql("SELECT 1").pipe(Graph.as(name)), {
          rule: "invalid-capture-name",
          message: [JSON.stringify(name), "starting with a letter"]
        })
      }
      yield* rejects(sql("SELECT 1").pipe(Graph.as("input")), {
        rule: "invalid-capture-name",
        message: ["\"input\" is the run's input"]
      })
      yield* rejects(Graph.sleep("1 second").pipe(Graph.as("slept")), {
        rule: "invalid-capture-name",
        message: ["a Sleep node cannot be captured"]
      })
    }))

  it.effect("duplicate capture names", () =>
    rejects(
      Graph.sequence(sql("SELECT 1").pipe(Graph.as("x")), sql("SELECT 2").pipe(Graph.as("x"))),
      { rule: "duplicate-capture", path: "graph.nodes[1]", message: ["capture \"x\" is bound twice"] }
    ))

  it.effect("unbound captures: never bound, bound later, bound in one arm only, bound in a race, inside a loop", () =>
    Effect.gen(function*() {
      yield* rejects(Graph.sql`SELECT ${Graph.ref("nope")}`, {
        rule: "unbound-capture",
        message: ["no node binds capture \"nope\"", "{ capture: \"nope\" }"]
      })
      yield* rejects(Graph.sequence(Graph.sql`SELECT ${Graph.ref("x")}`, sql("SELECT 1").pipe(Graph.as("x"))), {
        rule: "unbound-capture",
        path: "graph.nodes[0]",
        message: ["capture \"x\" is not bound before this node"]
      })
      yield* rejects(
        Graph.sequence(
          Graph.branch("SELECT true", sql("SELECT 1").pipe(Graph.as("x")), sql("SELECT 2")),
          Graph.sql`SELECT ${Graph.ref("x")}`
        ),
        { rule: "unbound-capture", message: ["not bound before this node on every path"] }
      )
      yield* rejects(
        Graph.parallel(sql("SELECT 1").pipe(Graph.as("a")), Graph.sql`SELECT ${Graph.ref("a")}`),
        { rule: "unbound-capture", path: "graph.branches[1]", message: ["capture \"a\""] }
      )
      // A root loop's results are rebuilt each iteration: a capture bound late in the body is not
      // visible at its start.
      yield* rejects(
        Graph.loop(Graph.sequence(Graph.sql`SELECT ${Graph.ref("n")}`, sql("SELECT 1").pipe(Graph.as("n")))),
        { rule: "unbound-capture", message: ["in the same iteration"] }
      )
      yield* rejects(Graph.step(double, { input: Graph.capture("missing") }), {
        rule: "unbound-capture",
        path: "graph.input",
        message: ["no node binds capture \"missing\""]
      })
    }))

  it.effect("the run's input must be given when the graph reads it", () =>
    rejects(Graph.step(chargePayment, { input: Graph.input() }), {
      rule: "missing-input",
      message: ["the graph reads the run's input but none is given", "pass { input }"]
    }))

  it.effect("references that do not fit their capture", () =>
    Effect.gen(function*() {
      const step = Graph.step(double, { capture: "d", input: Graph.value(1) })
      yield* rejects(Graph.sequence(step, Graph.sql`SELECT ${Graph.ref("d", "value")}`), {
        rule: "invalid-reference",
        message: ["capture \"d\" (step) has no field \"value\"", "::jsonb->>'field'"]
      })
      yield* rejects(Graph.sequence(step, Graph.sql`SELECT count(*) FROM ${Graph.rows("d")}`), {
        rule: "invalid-reference",
        message: ["needs the rows of a SQL node"]
      })
      yield* rejects(Graph.sequence(step, Graph.ifRows("d", sql("SELECT 1"))), {
        rule: "invalid-reference",
        message: ["ifRows(\"d\") needs the rows of a SQL node", "not a SQL result"]
      })
      yield* rejects(
        Graph.sequence(sql("SELECT 1 AS v").pipe(Graph.as("x")), sql("SELECT $x")),
        { rule: "invalid-reference", message: ["writes $x by hand", "Graph.ref(\"x\")"] }
      )
      // A dollar-quoted string whose tag is a capture's name is not a reference.
      yield* Compiler.compile(Graph.sequence(sql("SELECT 1 AS v").pipe(Graph.as("x")), sql("SELECT $x$text$x$")))
      yield* rejects(
        Graph.sequence(
          sql("SELECT 'a' AS v").pipe(Graph.as("x")),
          Graph.http({ url: Graph.text`https://a.azurewebsites.net/${Graph.ref("x")}.json` })
        ),
        { rule: "invalid-reference", message: ["followed by \".j\"", "put another character between them"] }
      )
    }))

  it.effect("a SQL node that is not exactly one statement", () =>
    Effect.gen(function*() {
      yield* rejects(sql("SELECT 1; SELECT 2"), {
        rule: "sql-not-one-statement",
        message: ["has 2 statements", "split it into one node per statement"]
      })
      yield* rejects(sql("SELEC 1"), {
        rule: "sql-not-one-statement",
        message: ["does not parse: syntax error at or near \"SELEC\"", "exactly one valid statement"]
      })
      yield* rejects(sql(""), { rule: "sql-not-one-statement", message: ["has 0 statements"] })
      yield* rejects(sql("SELECT $1"), { rule: "sql-not-one-statement", message: ["$1-style parameters"] })
      yield* rejects(Graph.branch("SELECT 1; SELECT 2", sql("SELECT 1")), {
        rule: "sql-not-one-statement",
        path: "graph.condition",
        message: ["the condition has 2 statements"]
      })
      yield* rejects(Graph.loop(Graph.sleep("1 second"), { while: "true" }), {
        rule: "sql-not-one-statement",
        path: "graph.while",
        message: ["the loop condition does not parse"]
      })
    }))

  it.effect("a step that is not registered (with a suggestion), or two steps of one name", () =>
    Effect.gen(function*() {
      yield* rejects(Graph.step("charge_paymnet", { input: Graph.value(1) }), {
        rule: "step-not-registered",
        message: ["step \"charge_paymnet\" is not registered (did you mean \"charge_payment\"?)", "Registered: "]
      })
      const impostor = Step.make("double", { input: Schema.Number, output: Schema.Number, run: Effect.succeed })
      yield* rejects(
        Graph.sequence(Graph.step(double, { input: Graph.value(1) }), Graph.step(impostor, { input: Graph.value(2) })),
        { rule: "step-not-registered", message: ["two different steps are named \"double\""] }
      )
    }))

  it.effect("a constant step input must match the step's input Schema", () =>
    // With the Step value, the types already reject it; by name, the compiler does.
    rejects(Graph.step(sendReceipt.name, { input: Graph.value({ charged: "yes" }) }), {
      rule: "invalid-step-input",
      path: "graph.input",
      message: ["does not match the input Schema of step \"send_receipt\"", "charged"]
    }))

  it.effect("a graph deeper or larger than pg_durable accepts", () =>
    Effect.gen(function*() {
      let deep: Graph.Any = sql("SELECT 0")
      for (let i = 0; i < 120; i++) deep = Graph.branch("SELECT true", deep, sql(`SELECT ${i}`))
      yield* rejects(deep, {
        rule: "graph-too-deep",
        message: ["121 levels deep, over the limit of 100", "0.2.5"]
      })
      const large = Graph.sequence(...Array.from({ length: 30 }, (_, i) => sql(`SELECT ${i}`)))
      yield* rejects(large, { rule: "graph-too-large", message: ["59 nodes, over the limit of 50"] }, {
        limits: { maxNodes: 50 }
      })
    }))

  it.effect("cron, durations, signals, HTTP, text and values", () =>
    Effect.gen(function*() {
      yield* rejects(Graph.waitForSchedule("0 9 1 * MON"), {
        rule: "invalid-cron",
        message: ["Unix cron runs when either matches, pg_durable only when both do"]
      })
      yield* rejects(Graph.sleep("1500 millis"), { rule: "invalid-duration", message: ["whole number of seconds"] })
      yield* rejects(Graph.waitForSignal(""), { rule: "invalid-signal", message: ["the signal name is empty"] })
      yield* rejects(Graph.waitForSignal("a", { timeout: "0 seconds" }), {
        rule: "invalid-duration",
        message: ["from 1 to 2147483647"]
      })
      yield* rejects(Graph.http({ url: "ftp://x" }), { rule: "invalid-http", message: ["http:// or https://"] })
      yield* rejects(Graph.sql`SELECT '{sys_label}'`, { rule: "invalid-text", message: ["Graph.instanceId"] })
      yield* rejects(sql("SELECT '$__pgf_x'"), { rule: "invalid-text", message: ["reserved for the compiler"] })
      yield* rejects(sql("SELECT 'a\u0000b'"), { rule: "invalid-text", message: ["NUL"] })
      yield* rejects(Graph.loop(Graph.break({ bad: Number.NaN })), {
        rule: "invalid-value",
        message: ["the break value is not JSON", "NaN"]
      })
      yield* rejects(Graph.step(double, { input: Graph.value(Number.POSITIVE_INFINITY) }), {
        rule: "invalid-value",
        message: ["Infinity"]
      })
    }))

  it.effect("an invalid binding", () =>
    Effect.gen(function*() {
      yield* rejects(Graph.step(double, { input: Graph.value(1) }), {
        rule: "invalid-binding",
        message: ["is not an http(s) URL"]
      }, { binding: StepBinding.http("localhost:8080") })
      yield* rejects(Graph.step(double, { input: Graph.value(1) }), {
        rule: "invalid-binding",
        message: ["must not contain $, { or }"]
      }, { binding: StepBinding.http("https://x.azurewebsites.net/{tenant}") })
    }))

  it.effect("GraphSpec documents go through the same rules", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(GraphSpec.compileGraph({
        graph: { type: "sequence", nodes: [{ type: "step", step: "unknown_step" }] }
      }, { steps, input: null }))
      assert.instanceOf(error, PgDurableError.GraphCompileError)
      assert.include(error.message, "step \"unknown_step\" is not registered")
    }))
})
