// The typed algebra: what the constructors build, and what the types accept. The `@ts-expect-error`
// lines are checked by `tsc -b` (the test files are part of the project): each marks a graph the
// types must reject.
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Graph, GraphWorkflow } from "@pgflows/pg-durable"
import type { PgDurableClient } from "@pgflows/pg-durable"
import { Effect, Schema } from "effect"
import { Step } from "pgflows"
import { chargePayment, double, OrderInput, sendReceipt } from "./fixtures/steps.ts"

const toNumber = Step.make("to_number", {
  input: Schema.String,
  output: Schema.Number,
  run: (s) => Effect.succeed(s.length)
})

describe("Graph constructors", () => {
  it("build the graph as data, collecting the steps", () => {
    const graph = Graph.sequence(
      Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
      Graph.parallel(
        Graph.step(sendReceipt, { input: Graph.capture("receipt") }),
        Graph.waitForSignal("approval", { capture: "approval", timeout: "1 hour", payload: Schema.Boolean })
      ),
      Graph.branch(Graph.sql`SELECT ${Graph.ref("approval", "data")}`, Graph.sleep("1 minute"))
    )
    assert.deepStrictEqual(graph.node, {
      _tag: "Sequence",
      nodes: [
        { _tag: "Step", step: "charge_payment", input: { _tag: "Capture", capture: "input" }, capture: "receipt" },
        {
          _tag: "Parallel",
          branches: [
            { _tag: "Step", step: "send_receipt", input: { _tag: "Capture", capture: "receipt" } },
            { _tag: "WaitForSignal", signal: "approval", timeoutSeconds: 3600, capture: "approval" }
          ]
        },
        {
          _tag: "Branch",
          condition: ["SELECT ", { _tag: "Ref", capture: "approval", field: "data" }],
          then: { _tag: "Sleep", seconds: 60 },
          else: { _tag: "Sql", sql: ["SELECT NULL AS skipped"] }
        }
      ]
    })
    assert.deepStrictEqual([...graph.steps.keys()], ["charge_payment", "send_receipt"])
    assert.strictEqual(graph.schemas.get("approval"), Schema.Boolean as unknown)
  })

  it("expressions: values, objects, arrays, paths", () => {
    const expr = Graph.object({
      a: Graph.value(1),
      b: Graph.array(Graph.capture("x").at("k", "l"), Graph.input()),
      c: Graph.value({ nested: ["$x"] })
    })
    assert.deepStrictEqual(expr.expr, {
      _tag: "Object",
      fields: [
        ["a", { _tag: "Value", value: 1 }],
        ["b", {
          _tag: "Array",
          items: [
            {
              _tag: "Field",
              expr: { _tag: "Field", expr: { _tag: "Capture", capture: "x" }, key: "k" },
              key: "l"
            },
            { _tag: "Capture", capture: "input" }
          ]
        }],
        ["c", { _tag: "Value", value: { nested: ["$x"] } }]
      ]
    })
  })

  it("literals for SQL templates", () => {
    assert.strictEqual(Graph.literal("it's").part, "'it''s'")
    assert.strictEqual(Graph.literal("a$b{c}").part, "('a' || chr(36) || 'b' || chr(123) || 'c' || chr(125))")
    assert.strictEqual(Graph.literal(1.5).part, "(1.5)")
    assert.strictEqual(Graph.literal(null).part, "NULL")
    assert.strictEqual(Graph.literal({ a: "$" }).part, "'{\"a\":\"\\u0024\"}'::jsonb")
  })

  it.effect("the types follow captures: bound before read, with matching types", () =>
    Effect.gen(function*() {
      const charge = Graph.step(chargePayment, { capture: "receipt", input: Graph.input() })
      const mail = Graph.step(sendReceipt, { input: Graph.capture("receipt") })
      yield* Compiler.compile(Graph.sequence(charge, mail), { input: { orderId: "O-1", amount: 1 } })

      // @ts-expect-error "receipt" is read but never bound
      yield* Effect.flip(Compiler.compile(mail))

      // @ts-expect-error "receipt" is bound after the node that reads it
      yield* Effect.flip(Compiler.compile(Graph.sequence(mail, charge), { input: {} }))

      // Types the compiler cannot compare at run time (a mismatch then fails the step's input
      // decoding in the StepWorker) are rejected here:
      const wrongType = Graph.step(double, { input: Graph.capture("receipt") })
      // @ts-expect-error "receipt" holds a Receipt, double wants a number
      void Compiler.compile(Graph.sequence(charge, wrongType), { input: {} })

      // @ts-expect-error an object missing a field of the step's input
      Graph.step(sendReceipt, { input: Graph.object({ charged: Graph.value(true) }) })

      // A SQL capture holds what the types cannot know; a Schema declares it.
      const counted = Graph.sql("SELECT '3' AS n").pipe(Graph.as("n", Schema.String))
      yield* Compiler.compile(Graph.sequence(counted, Graph.step(toNumber, { input: Graph.capture("n") })))
      const undeclared = Graph.sql("SELECT '3' AS n").pipe(Graph.as("n"))
      // @ts-expect-error an undeclared SQL capture is `unknown`, not a string
      void Compiler.compile(Graph.sequence(undeclared, Graph.step(toNumber, { input: Graph.capture("n") })))

      // Captures of parallel branches are visible after the parallel; of one branch arm, not.
      yield* Compiler.compile(Graph.sequence(
        Graph.parallel(Graph.sql("SELECT 1").pipe(Graph.as("a")), Graph.sql("SELECT 2").pipe(Graph.as("b"))),
        Graph.sql`SELECT ${Graph.ref("a")}, ${Graph.ref("b")}`
      ))
      const oneArm = Graph.sequence(
        Graph.branch("SELECT true", Graph.sql("SELECT 1").pipe(Graph.as("a"))),
        Graph.sql`SELECT ${Graph.ref("a")}`
      )
      // @ts-expect-error "a" is bound in one arm only
      yield* Effect.flip(Compiler.compile(oneArm))
    }))

  it("GraphWorkflow and PgDurableClient.start check the input's type against the graph", () => {
    const workflow = GraphWorkflow.make("wf", {
      input: OrderInput,
      graph: Graph.step(chargePayment, { capture: "receipt", input: Graph.input() })
    })
    assert.strictEqual(workflow.name, "wf")
    GraphWorkflow.make("bad", {
      input: Schema.Number,
      // @ts-expect-error the graph reads the input as an order, the workflow's input is a number
      graph: Graph.step(chargePayment, { input: Graph.input() })
    })
    const start = (client: PgDurableClient.PgDurableClient["Service"]) => [
      client.start(Graph.sql("SELECT 1")),
      // @ts-expect-error "x" is never bound
      client.start(Graph.sql`SELECT ${Graph.ref("x")}`)
    ]
    assert.isFunction(start)
  })
})
