// The HTTP binding's contract with the step endpoint, on a real PostgreSQL without pg_durable: every
// call of a step gets a result key of its own, allocated by the graph's SQL (so a loop's iterations
// never share one, and a node pg_durable runs again finds the key it had), the request sends it with
// the instance id and the shared secret, and the output node fails on any non-2xx answer with the
// error the endpoint chose to send.
import { assert, describe, it, layer } from "@effect/vitest"
import { Compiler, Decompiler, Graph, PgDurableError, PgDurableMigrations, StepBinding } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { PgflowsConfig } from "pgflows"
import { double, steps } from "./fixtures/steps.ts"

const unique = () => Crypto.randomBytes(4).toString("hex")

const messages = (error: unknown): string => {
  const out: Array<string> = []
  for (let current: any = error, depth = 0; current != null && depth < 6; current = current.cause, depth++) {
    if (typeof current.message === "string") out.push(current.message)
  }
  return out.join(" / ")
}

const binding = StepBinding.http("https://steps.azurewebsites.net/pgflows", {
  secret: Redacted.make("s3cret-value")
})

/** The pg_durable nodes written for the first step call of a graph. */
const callNodes = (graph: Graph.Any, options?: Compiler.Options) =>
  Effect.gen(function*() {
    const compiled = yield* Compiler.compileNode(graph.node, { steps, binding, ...options })
    yield* Decompiler.verify(compiled)
    const [body, request, output] = flatten(compiled.durable)
    return { compiled, body: body as any, request: request as any, output: output as any }
  })

const flatten = (node: any): Array<any> =>
  node.kind === "seq" && node.name === undefined ? [...flatten(node.left), ...flatten(node.right)] : [node]

describe("the HTTP binding, compiled", () => {
  it.effect("the body node allocates the call's result key; the request sends it, the instance id and the secret", () =>
    Effect.gen(function*() {
      const { body, output, request } = yield* callNodes(Graph.step(double, { capture: "d", input: Graph.value(21) }))
      assert.strictEqual(body.name, "__pgf__body_s1")
      assert.strictEqual(
        body.query,
        "SELECT \"pgflows\".pgd_http_call('{sys_instance_id}', 's1', 'double') AS key, ('21'::jsonb)::text AS body"
      )
      assert.strictEqual(request.kind, "http")
      assert.strictEqual(request.url, "https://steps.azurewebsites.net/pgflows/steps/double")
      assert.strictEqual(request.body, "$__pgf__body_s1.body")
      assert.deepStrictEqual(JSON.parse(request.headers), {
        "Content-Type": "application/json",
        "X-Pgflows-Instance-Id": "{sys_instance_id}",
        "X-Pgflows-Result-Key": "$__pgf__body_s1.key",
        "X-Pgflows-Step-Secret": "s3cret-value"
      })
      assert.strictEqual(
        output.query,
        "SELECT \"pgflows\".pgd_http_output(($__pgf__http_s1), 'double', '{sys_instance_id}', ($__pgf__body_s1.key)) AS output"
      )
      assert.strictEqual(output.name, "__pgf_d")
    }))

  it.effect("the secret can come from a pg_durable variable, so it stays out of exported scripts", () =>
    Effect.gen(function*() {
      const { compiled, request } = yield* callNodes(Graph.step(double, { input: Graph.value(1) }), {
        binding: StepBinding.http("https://steps.azurewebsites.net", {
          secret: StepBinding.variable("pgflows_step_secret"),
          secretHeader: "X-Step-Auth"
        })
      })
      assert.strictEqual(JSON.parse(request.headers)["X-Step-Auth"], "{pgflows_step_secret}")
      assert.notInclude(compiled.expression, "s3cret")
    }))

  it.effect("secrets, variables and extra headers pg_durable would rewrite, or that replace ours, are refused", () =>
    Effect.gen(function*() {
      const graph = Graph.step(double, { input: Graph.value(1) })
      const refused = (options: Parameters<typeof StepBinding.http>[1]) =>
        Effect.flip(Compiler.compileNode(graph.node, {
          steps,
          binding: StepBinding.http("https://steps.azurewebsites.net", options)
        }))
      for (
        const options of [
          { secret: Redacted.make("has $__pgf_x in it") },
          { secret: Redacted.make("{sys_label}") },
          { secret: Redacted.make("line\nbreak") },
          { secret: Redacted.make("") },
          { secret: StepBinding.variable("sys_instance_id") },
          { secret: StepBinding.variable("not a name") },
          { secret: Redacted.make("ok"), secretHeader: "Bad Header" },
          { secret: Redacted.make("ok"), headers: { "x-pgflows-result-key": "forged" } },
          { secret: Redacted.make("ok"), headers: { "content-type": "text/plain" } }
        ]
      ) {
        const error = yield* refused(options)
        assert.instanceOf(error, PgDurableError.GraphCompileError)
        assert.strictEqual(error.rule, "invalid-binding")
        assert.notInclude(error.message, "has $__pgf_x")
      }
    }))
})

const Config = Layer.effect(
  PgflowsConfig.PgflowsConfig,
  Effect.orDie(PgflowsConfig.make({ schema: `h_${unique()}` }))
)

layer(
  Layer.provideMerge(Layer.effectDiscard(Effect.orDie(PgDurableMigrations.run)), Config).pipe(
    Layer.provideMerge(TestDatabase.layer)
  )
)("the HTTP binding's SQL functions", (it) => {
  const schema = Effect.map(PgflowsConfig.PgflowsConfig, (config) => `"${config.schema}"`)

  const call = (instance: string, key: string, step = "double") =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s = yield* schema
      const [row] = yield* sql.unsafe<{ key: string }>(`SELECT ${s}.pgd_http_call($1, $2, $3) AS key`, [
        instance,
        key,
        step
      ])
      return row!.key
    })

  const output = (response: unknown, instance: string, key: string, step = "double") =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s = yield* schema
      const [row] = yield* sql.unsafe<{ output: string }>(
        `SELECT ${s}.pgd_http_output($1::jsonb, $2, $3, $4) AS output`,
        [JSON.stringify(response), step, instance, key]
      )
      return row!.output
    })

  const ok = (body: string) => ({ status: 200, ok: true, encoding: "text", body, headers: {}, duration_ms: 1 })

  it.effect("a call keeps its key until its output is read; the next call (a loop's next iteration) gets a new one", () =>
    Effect.gen(function*() {
      const instance = unique()
      const first = yield* call(instance, "s1")
      assert.strictEqual(first, "s1:1")
      // pg_durable may run the body node again (activities are at least once): same key.
      assert.strictEqual(yield* call(instance, "s1"), "s1:1")
      assert.strictEqual(yield* output(ok("42"), instance, first), "42")
      const second = yield* call(instance, "s1")
      assert.strictEqual(second, "s1:2")
      assert.strictEqual(yield* call(instance, "s2"), "s2:1")
      assert.strictEqual(yield* call(unique(), "s1"), "s1:1")
      // Reading an output again (a re-run of the output node) changes nothing.
      assert.strictEqual(yield* output(ok("42"), instance, first), "42")
      assert.strictEqual(yield* call(instance, "s1"), "s1:2")
    }))

  it.effect("any non-2xx answer fails the node with the message the endpoint sent, never read as output", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = yield* call(instance, "s1")
      const failed = {
        status: 500,
        ok: false,
        encoding: "text",
        body: JSON.stringify({
          _tag: "StepFailed",
          step: "double",
          attempts: 3,
          message: "step \"double\" failed: Busy"
        }),
        headers: {},
        duration_ms: 5
      }
      const error = messages(yield* Effect.flip(output(failed, instance, key)))
      assert.include(error, "step \"double\" failed (HTTP 500): step \"double\" failed: Busy")
      for (const status of [404, 401, 422, 302]) {
        const text = messages(
          yield* Effect.flip(output({ ...failed, status, body: "{\"message\":\"nope\"}" }, instance, key))
        )
        assert.include(text, `(HTTP ${status}): nope`)
      }
      // The call was not read: the graph failed, and a retry of the node would ask the same key.
      assert.strictEqual(yield* call(instance, "s1"), key)
      assert.include(messages(yield* Effect.flip(output(ok("<html>"), instance, key))), "a body that is not JSON")
      assert.include(messages(yield* Effect.flip(output(ok("1"), instance, "s9:1"))), "unknown call s9:1")
    }))
})
