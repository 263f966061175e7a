// A parallel's value (issue 11, item 3): its type (Graph.Value), the SQL it compiles to and the value
// decoded from what pg_durable returns agree. The rule: a parallel's value is a tuple with one
// element per branch, in order, each what a capture of that branch holds read as JSON (a step's
// output, a SQL node's first column of its first row, an envelope, ...); nested parallels stay
// nested. Graphs are compiled, read back with PostgreSQL's parser, started through the client on a
// stand-in of pg_durable's API and run node by node as pg_durable would (PgDurableHarness, steps by a
// StepWorker), whose df.result then goes through PgDurableClient.result.
import { assert, describe, layer } from "@effect/vitest"
import {
  Compiler,
  Decompiler,
  Graph,
  PgDurableClient,
  PgDurableError,
  PgDurableHarness,
  PgDurableMigrations,
  StepWorker
} from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Fiber, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { PgWorkQueue, Step } from "pgflows"
import { double } from "./fixtures/steps.ts"

const echo = Step.make("echo_value", { input: Schema.Unknown, output: Schema.Unknown, run: Effect.succeed })
const steps = [double, echo]

const Database = Layer.effectDiscard(Effect.andThen(PgDurableHarness.install, PgDurableMigrations.run)).pipe(
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)
const Client = Layer.mergeAll(
  PgDurableClient.layer({ steps }),
  StepWorker.layer({ steps }).pipe(Layer.provide(PgWorkQueue.layer))
).pipe(Layer.provideMerge(Database), Layer.orDie)

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false

/**
 * Starts the graph through the client (pg_durable's stand-in stores it) and runs it as pg_durable
 * would (`PgDurableHarness.execute`, which stores the root's result as pg_durable does).
 */
const simulateRun = (graph: Graph.Any) =>
  Effect.gen(function*() {
    const client = yield* PgDurableClient.PgDurableClient
    const worker = yield* StepWorker.StepWorker
    const compiled = yield* Compiler.compileNode(graph.node, { steps, schemas: graph.schemas }).pipe(Effect.orDie)
    yield* Decompiler.verify(compiled).pipe(Effect.orDie)
    const id = yield* client.start(graph as any).pipe(Effect.orDie)
    const fiber = yield* Effect.forkChild(worker.run)
    const simulated = yield* PgDurableHarness.execute(id).pipe(Effect.orDie, Effect.ensuring(Fiber.interrupt(fiber)))
    assert.strictEqual(simulated.status, "completed", simulated.error)
    return { id, simulated }
  })

/** `simulateRun`, then the value `PgDurableClient.result` decodes for the graph. */
const run = <G extends Graph.Any>(graph: G) =>
  Effect.gen(function*() {
    const { id, simulated } = yield* simulateRun(graph)
    const value = yield* (yield* PgDurableClient.PgDurableClient).result(id, graph)
    return { id, simulated, value }
  })

const n = (i: number) => Graph.sql(`SELECT ${i} AS n`)
const widths = [2, 3, 4, 5, 6]

/** The value a graph ending with `SELECT (capture)::jsonb AS value` read from its capture. */
const captured = (result: unknown) => (result as { rows: ReadonlyArray<{ value: unknown }> }).rows[0]!.value

layer(Client, { excludeTestServices: true })("a parallel's value", (it) => {
  describe("widths", () => {
    for (const width of widths) {
      const branches = Array.from({ length: width }, (_, i) => n(i + 1))
      const expected = branches.map((_, i) => i + 1)

      it.effect(`${width} branches: PgDurableClient.result gives a flat ${width}-tuple`, () =>
        Effect.gen(function*() {
          const { value } = yield* run(Graph.parallel(...branches))
          assert.deepStrictEqual(value, Option.some(expected))
        }))

      it.effect(`${width} branches: a capture of a branch whose arm is the parallel holds the same tuple`, () =>
        Effect.gen(function*() {
          const graph = Graph.sequence(
            Graph.branch("SELECT true", Graph.parallel(...branches), n(0)).pipe(Graph.as("p")),
            Graph.sql`SELECT (${Graph.ref("p")})::jsonb AS value`
          )
          const { simulated } = yield* simulateRun(graph)
          assert.deepStrictEqual(captured(simulated.result), expected)
        }))
    }

    it.effect("one branch is not a parallel (too-few-branches)", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Compiler.compile(Graph.parallel(n(1))))
        assert.strictEqual(error.rule, "too-few-branches")
      }))
  })

  describe("nestings", () => {
    const cases: ReadonlyArray<readonly [string, Graph.Any, unknown]> = [
      ["[[a, b], c]", Graph.parallel(Graph.parallel(n(1), n(2)), n(3)), [[1, 2], 3]],
      ["[a, [b, c]]", Graph.parallel(n(1), Graph.parallel(n(2), n(3))), [1, [2, 3]]],
      [
        "[a, [b, [c, d]], e]",
        Graph.parallel(n(1), Graph.parallel(n(2), Graph.parallel(n(3), n(4))), n(5)),
        [1, [2, [3, 4]], 5]
      ],
      [
        "[[a, b], [c, d]]",
        Graph.parallel(Graph.parallel(n(1), n(2)), Graph.parallel(n(3), n(4))),
        [[1, 2], [3, 4]]
      ],
      [
        "a sequence ending in a parallel: [[b, c], d]",
        Graph.parallel(Graph.sequence(n(1), Graph.parallel(n(2), n(3))), n(4)),
        [[2, 3], 4]
      ],
      [
        "a branch whose arm is a parallel: [[a, b], c]",
        Graph.parallel(Graph.branch("SELECT true", Graph.parallel(n(1), n(2)), n(9)), n(3)),
        [[1, 2], 3]
      ],
      [
        "six branches of parallels of three",
        Graph.parallel(
          ...Array.from({ length: 6 }, (_, i) => Graph.parallel(n(3 * i + 1), n(3 * i + 2), n(3 * i + 3)))
        ),
        Array.from({ length: 6 }, (_, i) => [3 * i + 1, 3 * i + 2, 3 * i + 3])
      ]
    ]
    for (const [name, parallel, expected] of cases) {
      it.effect(`${name}: through a capture and through PgDurableClient.result`, () =>
        Effect.gen(function*() {
          const graph = Graph.sequence(
            Graph.branch("SELECT true", parallel, n(0)).pipe(Graph.as("p")),
            Graph.sql`SELECT (${Graph.ref("p")})::jsonb AS value`
          )
          assert.deepStrictEqual(captured((yield* simulateRun(graph)).simulated.result), expected)
          assert.deepStrictEqual((yield* run(parallel)).value, Option.some(expected))
        }))
    }

    it.effect("the types follow the same nesting", () =>
      Effect.sync(() => {
        const graph = Graph.parallel(
          Graph.parallel(Graph.step(double, { input: Graph.value(1) }), Graph.sleep("0 seconds")),
          Graph.step(double, { input: Graph.value(2) })
        )
        const nested: Equal<Graph.Value<typeof graph>, [[number, Graph.SleepResult], number]> = true
        assert.isTrue(nested)
      }))
  })

  describe("each element is what a capture of its branch holds", () => {
    const graph = Graph.parallel(
      Graph.step(double, { input: Graph.value(21) }),
      Graph.sql("SELECT 'text' AS t, 2 AS other"),
      Graph.sql("SELECT '{\"a\": [1, 2]}'::jsonb AS j"),
      Graph.sql("SELECT 1 AS n WHERE false"),
      Graph.sleep("0 seconds"),
      Graph.branch("SELECT false", n(1))
    )
    const expected: Graph.Value<typeof graph> = [42, "text", { a: [1, 2] }, null, { slept: true, seconds: 0 }, null]

    it.effect("through PgDurableClient.result, typed as Graph.Value", () =>
      Effect.gen(function*() {
        const { simulated } = yield* simulateRun(graph)
        // pg_durable's own answer is the node that builds the tuple: one row, one column.
        assert.deepStrictEqual<unknown>(simulated.result, { rows: [{ value: expected }], row_count: 1 })
        const { value } = yield* run(graph)
        const typed: Equal<
          Graph.Value<typeof graph>,
          [number, unknown, unknown, unknown, Graph.SleepResult, unknown]
        > = true
        assert.isTrue(typed)
        assert.deepStrictEqual(value, Option.some(expected))
      }))

    it.effect("through a capture, in SQL and in a step's input", () =>
      Effect.gen(function*() {
        const { simulated } = yield* simulateRun(Graph.sequence(
          Graph.branch("SELECT true", graph).pipe(Graph.as("p")),
          Graph.step(echo, { capture: "echoed", input: Graph.capture("p") }),
          Graph.sql`SELECT (${Graph.ref("p")})::jsonb AS value, (${Graph.ref("echoed")})::jsonb AS echoed`
        ))
        const row = (simulated.result as { rows: ReadonlyArray<Record<string, unknown>> }).rows[0]!
        assert.deepStrictEqual(row, { value: expected, echoed: expected })
      }))
  })

  describe("PgDurableClient.result with a graph", () => {
    it.effect("a graph ending with a step gives the step's output", () =>
      Effect.gen(function*() {
        const { value } = yield* run(Graph.step(double, { input: Graph.value(4) }))
        assert.deepStrictEqual(value, Option.some(8))
      }))

    it.effect("a value that does not fit the graph fails with PgDurableError", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const client = yield* PgDurableClient.PgDurableClient
        const graph = Graph.parallel(Graph.step(double, { input: Graph.value(1) }), n(2))
        const id = yield* client.start(graph)
        yield* sql`UPDATE df.instances SET status = 'completed',
          result = '{"rows": [{"value": ["two", 2, 3]}], "row_count": 1}' WHERE id = ${id}`
        const error = yield* Effect.flip(client.result(id, graph))
        assert.instanceOf(error, PgDurableError.PgDurableError)
        assert.include(error.message, "does not fit the graph's value")
        assert.include(error.message, "a tuple of 2")
      }))

    it.effect("a graph ending with a SQL node of several columns: the first cannot be told, so it fails", () =>
      Effect.gen(function*() {
        const { id } = yield* simulateRun(Graph.sql("SELECT 1 AS b, 2 AS a"))
        const client = yield* PgDurableClient.PgDurableClient
        const error = yield* Effect.flip(client.result(id, Graph.sql("SELECT 1 AS b, 2 AS a")))
        assert.include(error.message, "several columns")
        // Without a graph, the result is pg_durable's own JSON.
        assert.deepStrictEqual(yield* client.result(id), Option.some({ rows: [{ a: 2, b: 1 }], row_count: 1 }))
      }))
  })

  it.effect("a loop whose body is a parallel cannot be compiled (pg_durable can deadlock)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Compiler.compile(Graph.loop(Graph.parallel(n(1), n(2))).pipe(Graph.as("l"))))
      assert.strictEqual(error.rule, "loop-and-parallel")
    }))
})
