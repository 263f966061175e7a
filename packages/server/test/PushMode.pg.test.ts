// Push mode end to end without pg_durable: graphs compiled for each binding are started with the
// exact SQL the compiler emits (PgDurableClient on the stand-in df schema), and fixtures/harness.ts
// plays pg_durable's side node by node against the test database; the HTTP binding's df.http nodes
// are real requests to the running server's step endpoint, the worker binding's steps are run by a
// StepWorker. Every scenario runs with both bindings.
import { assert, describe, layer } from "@effect/vitest"
import { Graph, type PgDurableClient } from "@pgflows/pg-durable"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { PgflowsConfig } from "pgflows"
import {
  alwaysBusy,
  basicPath,
  calls,
  callsOf,
  classify,
  client,
  credit,
  decide,
  environment,
  explodes,
  ghost,
  goldPath,
  parse,
  price,
  receipt,
  stepSecret,
  stock,
  tick,
  unique
} from "./fixtures/env.ts"
import * as Harness from "./fixtures/harness.ts"

/** Starts the graph with the binding's client, and plays pg_durable until the instance ends. */
const runGraph = (
  binding: "worker" | "http" | "http-variable",
  graph: Graph.Any,
  options?: PgDurableClient.StartOptions
) =>
  Effect.gen(function*() {
    const durable = yield* client(binding)
    const id = yield* durable.start(graph as any, options)
    const outcome = yield* Harness.execute(id)
    return { id, outcome, durable }
  })

/** A step's value in a SQL node's result: the output node returns the output's JSON text. */
const output = (result: unknown): unknown => {
  const rows = (result as { rows?: ReadonlyArray<{ output?: string }> }).rows
  return rows?.[0]?.output === undefined ? undefined : JSON.parse(rows[0].output)
}

layer(environment(), { excludeTestServices: true, timeout: "2 minutes" })("push mode, both bindings", (it) => {
  for (const binding of ["worker", "http"] as const) {
    describe(`${binding} binding`, () => {
      it.effect("a three-step pipeline threads each output into the next step", () =>
        Effect.gen(function*() {
          const key = unique()
          const graph = Graph.sequence(
            Graph.step(parse, { capture: "parsed", input: Graph.value({ key, text: "A7x3" }) }),
            Graph.step(price, { capture: "priced", input: Graph.capture("parsed") }),
            Graph.step(receipt, { input: Graph.capture("priced") })
          )
          const { durable, id, outcome } = yield* runGraph(binding, graph)
          assert.strictEqual(outcome.status, "completed", outcome.error)
          assert.strictEqual(output(outcome.result), "A7: 30 EUR")
          assert.deepStrictEqual([callsOf(`parse:${key}`), callsOf(`price:${key}`), callsOf(`receipt:${key}`)], [
            1,
            1,
            1
          ])
          assert.strictEqual(yield* durable.status(id), "completed")
          if (binding === "http") {
            assert.strictEqual(outcome.requests.length, 3)
            for (const request of outcome.requests) {
              assert.strictEqual(request.headers["X-Pgflows-Instance-Id"], id)
              assert.match(request.headers["X-Pgflows-Result-Key"]!, /^s[123]:1$/)
            }
          }
        }))

      it.effect("a parallel fan-in: both branches' outputs reach the step after the join", () =>
        Effect.gen(function*() {
          const key = unique()
          const graph = Graph.sequence(
            Graph.parallel(
              Graph.step(stock, { capture: "units", input: Graph.value(key) }),
              Graph.step(credit, { capture: "credit", input: Graph.value(key) })
            ),
            Graph.step(decide, { input: Graph.array(Graph.capture("units"), Graph.capture("credit")) })
          )
          const { outcome } = yield* runGraph(binding, graph)
          assert.strictEqual(outcome.status, "completed", outcome.error)
          assert.strictEqual(output(outcome.result), "ship 7")
          assert.deepStrictEqual([callsOf(`stock:${key}`), callsOf(`credit:${key}`)], [1, 1])
        }))

      it.effect("a branch on a step's output takes the arm it names", () =>
        Effect.gen(function*() {
          for (const [amount, expected] of [[250, "gold service"], [20, "basic service"]] as const) {
            const key = unique()
            const graph = Graph.sequence(
              Graph.step(classify, { capture: "cls", input: Graph.value({ key, amount }) }),
              Graph.branch(
                Graph.sql`SELECT (${Graph.ref("cls")})::text::jsonb->>'tier' = 'gold'`,
                Graph.step(goldPath, { input: Graph.value(key) }),
                Graph.step(basicPath, { input: Graph.value(key) })
              )
            )
            const { outcome } = yield* runGraph(binding, graph)
            assert.strictEqual(outcome.status, "completed", outcome.error)
            assert.strictEqual(output(outcome.result), expected)
            assert.deepStrictEqual(
              [callsOf(`gold:${key}`), callsOf(`basic:${key}`)],
              expected === "gold service" ? [1, 0] : [0, 1]
            )
          }
        }))

      it.effect("a failing step fails the graph with its error, after 4 attempts with growing delays", () =>
        Effect.gen(function*() {
          const key = unique()
          const graph = Graph.sequence(
            Graph.step(alwaysBusy, { capture: "paid", input: Graph.value(key) }),
            Graph.sql("SELECT 'never reached' AS after")
          )
          const { durable, id, outcome } = yield* runGraph(binding, graph)
          assert.strictEqual(outcome.status, "failed")
          assert.include(outcome.error, "the payment provider is busy (attempt 4)")
          assert.isFalse(outcome.executed.some((text) => text.includes("never reached")))
          assert.strictEqual(yield* durable.status(id), "failed")
          const times = calls.get(`busy:${key}`)!
          assert.strictEqual(times.length, 4, "1 attempt and 3 retries, then no more")
          const gaps = times.slice(1).map((time, i) => time - times[i]!)
          assert.isTrue(gaps.every((gap) => gap >= 15), `backoff between attempts: ${gaps.join(", ")} ms`)
          assert.isTrue(gaps[2]! > gaps[0]!, `the delays grow: ${gaps.join(", ")} ms`)
          // The failed node holds the message, as pg_durable stores it, and no secret of the cause.
          const nodes = yield* durable.instanceNodes(id)
          const failed = nodes.filter((node) => node.status === "failed").map((node) => node.result ?? "")
          assert.isTrue(failed.some((text) => text.includes("attempt 4")), failed.join(" | "))
          if (binding === "http") assert.isFalse(failed.some((text) => text.includes("hunter2")), failed.join(" | "))
          // Run again (as pg_durable would after a crash): the recorded outcome, no new attempt.
          if (binding === "http") {
            const again = yield* Harness.execute(id)
            assert.strictEqual(again.status, "failed")
            assert.strictEqual(calls.get(`busy:${key}`)!.length, 4)
          }
        }))

      it.effect("a step that dies fails the graph; the defect's text stays out of the HTTP answer", () =>
        Effect.gen(function*() {
          const key = unique()
          const { outcome } = yield* runGraph(binding, Graph.step(explodes, { input: Graph.value(key) }))
          assert.strictEqual(outcome.status, "failed")
          assert.strictEqual(callsOf(`explodes:${key}`), 1, "defects are not retried")
          if (binding === "http") {
            assert.include(outcome.error, "failed unexpectedly")
            assert.notInclude(outcome.error, "abc123")
          } else {
            assert.include(outcome.error, "died")
          }
        }))

      it.effect("an unknown step fails the graph instead of leaving it waiting", () =>
        Effect.gen(function*() {
          const started = Date.now()
          const { outcome } = yield* runGraph(binding, Graph.step(ghost, { input: Graph.value("x") }))
          assert.strictEqual(outcome.status, "failed")
          assert.include(outcome.error, "ghost_step")
          assert.include(outcome.error, binding === "http" ? "(HTTP 404)" : "no StepWorker registers")
          assert.isBelow(Date.now() - started, 15_000)
        }))

      it.effect("a loop: every iteration calls its step anew and reads its own result", () =>
        Effect.gen(function*() {
          const key = unique()
          const graph = Graph.loop(Graph.sequence(
            Graph.step(tick, { capture: "n", input: Graph.value(key) }),
            Graph.branch(
              Graph.sql`SELECT (${Graph.ref("n")})::text::int >= 3`,
              Graph.break({ stopped: "at three" }),
              Graph.sql("SELECT 'again' AS next")
            )
          ))
          const { id, outcome } = yield* runGraph(binding, graph)
          assert.strictEqual(outcome.status, "completed", outcome.error)
          assert.deepStrictEqual(outcome.result, { stopped: "at three" })
          assert.strictEqual(callsOf(`tick:${key}`), 3)
          if (binding === "http") {
            assert.deepStrictEqual(outcome.requests.map((request) => request.headers["X-Pgflows-Result-Key"]), [
              "s1:1",
              "s1:2",
              "s1:3"
            ])
          } else {
            const sql = yield* SqlClient.SqlClient
            const { schema } = yield* PgflowsConfig.PgflowsConfig
            const rows = yield* sql.unsafe<{ iteration: number }>(
              `SELECT iteration FROM "${schema}".step_results WHERE instance_id = $1 AND step = 'tick' ORDER BY iteration`,
              [id]
            )
            assert.deepStrictEqual(rows.map((row) => row.iteration), [1, 2, 3])
          }
        }))
    })
  }

  it.effect("http binding: the secret from a pg_durable variable, set before the start", () =>
    Effect.gen(function*() {
      const durable = yield* client("http-variable")
      const key = unique()
      const graph = Graph.step(tick, { input: Graph.value(key) })
      // Without the variable, pg_durable sends "{step_secret}" as it is: refused, the graph fails.
      const refused = yield* Harness.execute(yield* durable.start(graph))
      assert.strictEqual(refused.status, "failed")
      assert.include(refused.error, "(HTTP 401)")
      assert.strictEqual(callsOf(`tick:${key}`), 0)
      yield* durable.setvar("step_secret", Redacted.value(stepSecret))
      const accepted = yield* Harness.execute(yield* durable.start(graph))
      assert.strictEqual(accepted.status, "completed", accepted.error)
      assert.strictEqual(callsOf(`tick:${key}`), 1)
      yield* SqlClient.SqlClient.pipe(Effect.flatMap((sql) => sql`DELETE FROM df.vars WHERE name = 'step_secret'`))
    }))
})
