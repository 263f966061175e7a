// GraphSpec: JSON documents decoded with Schema, their JSON Schema, and their compilation (data is
// never SQL: values become escaped JSON literals, the whole graph binds as parameters).
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Decompiler, GraphSpec, PgDurableError } from "@pgflows/pg-durable"
import { Effect, Result } from "effect"
import * as fc from "fast-check"
import { PgflowsConfig } from "pgflows"
import { echo } from "./fixtures/arbitrary.ts"
import { chargePayment, sendReceipt, steps } from "./fixtures/steps.ts"

const order = {
  version: 1,
  name: "process_order",
  graph: {
    type: "sequence",
    nodes: [
      { type: "step", step: "charge_payment", capture: "receipt" },
      { type: "wait_signal", signal: "approval", timeout_seconds: 86400, capture: "approval" },
      {
        type: "branch",
        if: {
          type: "compare",
          op: "eq",
          left: { from: "capture", capture: "approval", path: ["data", "approved"] },
          right: { from: "value", value: true }
        },
        then: { type: "step", step: "send_receipt", input: { from: "capture", capture: "receipt" } },
        else: { type: "sleep", seconds: 60 }
      },
      { type: "wait_schedule", cron: "0 9 * * MON-FRI" }
    ]
  }
}

describe("GraphSpec", () => {
  it.effect("decodes a document and compiles it like the same graph written in TypeScript", () =>
    Effect.gen(function*() {
      const spec = yield* GraphSpec.decode(order)
      assert.strictEqual(spec.name, "process_order")
      const compiled = yield* GraphSpec.compileGraph(order, { steps, input: { orderId: "O-1", amount: 10 } })
      yield* Decompiler.verify(compiled)
      assert.deepStrictEqual(compiled.steps.map((step) => step.step), ["charge_payment", "send_receipt"])
      assert.include(
        compiled.expression,
        "df.if(df.sql('SELECT coalesce((((($__pgf_approval)::text::jsonb -> ''data'') -> ''approved'')) = (''true''::jsonb), false) AS condition')"
      )
      assert.include(compiled.expression, "df.wait_for_schedule('0 9 * * 2-6')")
      assert.deepStrictEqual(compiled.captures.map((capture) => capture.name), ["input", "receipt", "approval"])
      assert.strictEqual(compiled.captures[1]!.schema, chargePayment.output as unknown)
      assert.notStrictEqual(compiled.captures[1]!.schema, sendReceipt.output as unknown)
    }))

  it.effect("every node type, parallel modes, conditions and inputs", () =>
    Effect.gen(function*() {
      const compiled = yield* GraphSpec.compileGraph({
        graph: {
          type: "sequence",
          nodes: [
            {
              type: "parallel",
              branches: [
                { type: "step", step: "echo", capture: "a", input: { from: "value", value: { n: 1 } } },
                {
                  type: "step",
                  step: "echo",
                  capture: "b",
                  input: {
                    from: "object",
                    fields: {
                      list: { from: "array", items: [{ from: "input", path: ["x"] }, { from: "value", value: "$a" }] }
                    }
                  }
                }
              ]
            },
            {
              type: "branch",
              if: {
                type: "all",
                conditions: [
                  { type: "truthy", value: { from: "capture", capture: "a", path: ["n"] } },
                  { type: "not", condition: { type: "exists", value: { from: "capture", capture: "b" } } },
                  {
                    type: "any",
                    conditions: [{
                      type: "compare",
                      op: "gte",
                      left: { from: "capture", capture: "a", path: ["n"] },
                      right: { from: "value", value: 1 }
                    }]
                  }
                ]
              },
              then: {
                type: "parallel",
                mode: "race",
                branches: [{ type: "wait_signal", signal: "stop" }, { type: "sleep", seconds: 5 }]
              }
            }
          ]
        }
      }, { steps: [echo], input: { x: 1 } })
      yield* Decompiler.verify(compiled)
      assert.include(compiled.expression, "df.race(df.wait_for_signal('stop'), df.sleep(5))")
      // The constant "$a" is data: escaped, never a reference.
      assert.include(compiled.expression, "''\"\\u0024a\"''::jsonb")
    }))

  it.effect("loops with while conditions and break values", () =>
    Effect.gen(function*() {
      const compiled = yield* GraphSpec.compileGraph({
        graph: {
          type: "loop",
          capture: "done",
          body: {
            type: "sequence",
            nodes: [
              { type: "step", step: "echo", capture: "tick", input: { from: "value", value: 1 } },
              {
                type: "branch",
                if: {
                  type: "compare",
                  op: "eq",
                  left: { from: "capture", capture: "tick" },
                  right: { from: "value", value: 1 }
                },
                then: { type: "break", value: { reason: "tick" } }
              }
            ]
          },
          while: { type: "truthy", value: { from: "capture", capture: "tick" } }
        }
      }, { steps: [echo] })
      yield* Decompiler.verify(compiled)
      assert.include(compiled.expression, "df.break('{\"reason\":\"tick\"}')")
    }))

  it.effect("invalid documents fail with every issue and its path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(GraphSpec.decode({
        graph: {
          type: "sequence",
          nodes: [
            { type: "step" },
            { type: "sleep", seconds: -1 },
            { type: "wait_signal", signal: "x", capture: "9bad" },
            { type: "teleport" },
            { type: "sql", sql: "DROP TABLE users" }
          ]
        }
      }))
      assert.instanceOf(error, PgDurableError.GraphSpecError)
      assert.include(error.message, "graph.nodes[0]")
      assert.include(error.message, "graph.nodes[1]")
      assert.include(error.message, "graph.nodes[4]")
      const extra = yield* Effect.flip(GraphSpec.decode({ graph: { type: "sleep", seconds: 1, sql: "x" } }))
      assert.include(extra.message, "sql")
    }))

  it("has a JSON Schema with the recursive definitions", () => {
    const schema = GraphSpec.jsonSchema as Record<string, any>
    assert.strictEqual(schema.$schema, "https://json-schema.org/draft/2020-12/schema")
    assert.strictEqual(schema.$ref, "#/$defs/GraphSpec")
    assert.includeMembers(Object.keys(schema.$defs), ["GraphSpec", "Node", "Input", "Condition"])
    const types = (schema.$defs.Node.anyOf ?? schema.$defs.Node.oneOf).map((member: any) =>
      member.properties.type.enum[0]
    )
    assert.deepStrictEqual(types, [
      "step",
      "sleep",
      "wait_signal",
      "wait_schedule",
      "sequence",
      "parallel",
      "branch",
      "loop",
      "break"
    ])
    assert.isFalse(schema.$defs.Node.anyOf[0].additionalProperties)
  })

  it.effect("property: spec constants of any content compile and round-trip", () =>
    Effect.gen(function*() {
      yield* GraphSpec.compileGraph({ graph: { type: "sleep", seconds: 1 } })
      fc.assert(
        fc.property(fc.jsonValue({ noUnicodeString: false }), fc.string({ unit: "binary" }), (value, signal) => {
          fc.pre(!JSON.stringify(value).includes("\\u0000") && signal.length > 0 && !signal.includes("\u0000"))
          const spec = GraphSpec.toGraph({
            type: "sequence",
            nodes: [
              { type: "step", step: "echo", capture: "v", input: { from: "value", value: value as any } },
              { type: "wait_signal", signal },
              {
                type: "branch",
                if: {
                  type: "compare",
                  op: "ne",
                  left: { from: "capture", capture: "v" },
                  right: { from: "value", value: value as any }
                },
                then: { type: "break", value: { value: value as any } } as any,
                else: { type: "sleep", seconds: 0 }
              }
            ]
          })
          const loop = { _tag: "Loop" as const, body: spec.node }
          const compiled = Compiler.compileSync(loop, PgflowsConfig.defaults, { steps: [echo] })
          if (Result.isFailure(compiled)) throw compiled.failure
          const verified = Decompiler.verifyLoaded(compiled.success)
          if (Result.isFailure(verified)) throw verified.failure
        }),
        { numRuns: 300 }
      )
    }))
})
