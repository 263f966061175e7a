// PgDurableHarness, the public stand-in for pg_durable: installing and removing its df schema (and
// leaving any other df schema alone), the worker that picks up pending instances as pg_durable's
// background worker does, df.await_instance waiting for the end, and cancellation of a run in
// flight. Steps, bindings and the node types are covered by the server's push-mode tests, which run
// every scenario through the harness with both bindings.
import { assert, layer } from "@effect/vitest"
import { Graph, PgDurableClient, PgDurableError, PgDurableHarness } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Fiber, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"

const Database = TestDatabase.layer.pipe(Layer.orDie)

layer(Database, { excludeTestServices: true, timeout: "1 minute" })("PgDurableHarness", (it) => {
  it.effect("install is idempotent, refuses a df schema of another, and uninstall removes it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      assert.isFalse(yield* PgDurableHarness.isInstalled)
      assert.isFalse(yield* PgDurableClient.pgDurableAvailable)
      yield* PgDurableHarness.install
      yield* PgDurableHarness.install
      assert.isTrue(yield* PgDurableHarness.isInstalled)
      const client = yield* PgDurableClient.make()
      const found = yield* client.detect
      assert.deepStrictEqual([found.available, found.extension, found.schema], [true, false, true])
      assert.strictEqual(yield* client.version, PgDurableHarness.version)
      yield* PgDurableHarness.uninstall
      assert.isFalse(yield* PgDurableHarness.isInstalled)
      yield* PgDurableHarness.uninstall

      yield* sql`CREATE SCHEMA df`
      yield* sql`CREATE FUNCTION df.start(fut text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$`
      const refused = yield* Effect.flip(PgDurableHarness.install)
      assert.instanceOf(refused, PgDurableHarness.SchemaConflict)
      assert.include(refused.message, "already has a df schema that is not PgDurableHarness's")
      assert.instanceOf(yield* Effect.flip(PgDurableHarness.uninstall), PgDurableHarness.SchemaConflict)
      assert.strictEqual(
        (yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'df'::regnamespace`)[0]!
          .n,
        1,
        "the other df schema is untouched"
      )
      yield* sql`DROP SCHEMA df CASCADE`
    }))

  it.effect("the worker runs pending instances; awaitInstance waits for them; the result is typed", () =>
    Effect.gen(function*() {
      yield* PgDurableHarness.install
      const client = yield* PgDurableClient.make()
      const graph = Graph.sequence(
        Graph.sql("SELECT 20 AS n").pipe(Graph.as("n")),
        Graph.parallel(Graph.sql("SELECT 1 AS a"), Graph.sql("SELECT 'two' AS b"))
      )
      const worker = yield* Effect.forkChild(PgDurableHarness.worker({ pollInterval: "20 millis" }))
      const ids = yield* Effect.forEach([1, 2, 3], () => client.start(graph))
      for (const id of ids) {
        const status = yield* client.awaitInstance(id, { timeout: "20 seconds" })
        assert.strictEqual(status, "completed", JSON.stringify(yield* client.instanceNodes(id)))
        assert.deepStrictEqual(yield* client.result(id, graph), Option.some([1, "two"] as [unknown, unknown]))
      }
      const nodes = yield* client.instanceNodes(ids[0]!)
      assert.isTrue(nodes.length >= 3 && nodes.every((node) => node.status === "completed"))
      const [history] = yield* client.instanceExecutions(ids[0]!)
      assert.strictEqual(history!.status, "Completed")
      assert.strictEqual(history!.eventCount, nodes.length)
      yield* Fiber.interrupt(worker)
      const timedOut = yield* Effect.flip(client.awaitInstance(yield* client.start(graph), { timeout: "1 second" }))
      assert.instanceOf(timedOut, PgDurableError.AwaitTimeout, "nothing runs it without a worker")
    }))

  it.effect("SQL results: column types read back as pg_durable reads them, others fail the node", () =>
    Effect.gen(function*() {
      yield* PgDurableHarness.install
      const client = yield* PgDurableClient.make()
      const run = (statement: string) => Effect.flatMap(client.start(Graph.sql(statement)), PgDurableHarness.execute)
      const read = yield* run(
        `SELECT 1.50::numeric AS n, 7::int8 AS big, 'x'::varchar AS v, '{"a":[1,{"b":null}]}'::jsonb AS j,
          '[1,2]'::json AS k, '2024-02-29'::date AS d, '2024-02-29 10:11:12.5'::timestamp AS ts, NULL::text AS nothing`
      )
      assert.strictEqual(read.status, "completed", read.error)
      assert.deepStrictEqual(read.result, {
        rows: [{
          n: "1.50",
          big: 7,
          v: "x",
          j: { a: [1, { b: null }] },
          k: [1, 2],
          d: "2024-02-29",
          ts: "2024-02-29T10:11:12.500",
          nothing: null
        }],
        row_count: 1
      })
      for (const unsupported of ["ARRAY[1, 2]", "'\\x00'::bytea", "interval '1 day'"]) {
        const refused = yield* run(`SELECT ${unsupported} AS c`)
        assert.strictEqual(refused.status, "failed", unsupported)
        assert.strictEqual(refused.error, "Unsupported column type for column 'c'")
      }
    }))

  it.effect("a signal wait takes a signal sent after it began; a cancel stops the run in flight", () =>
    Effect.gen(function*() {
      yield* PgDurableHarness.install
      const client = yield* PgDurableClient.make()
      const waiting = yield* client.start(Graph.sequence(
        Graph.waitForSignal("go", { capture: "go", timeout: "30 seconds" }),
        Graph.sql`SELECT (${Graph.ref("go")})::jsonb->'data'->>'who' AS who`
      ))
      const running = yield* Effect.forkChild(PgDurableHarness.execute(waiting))
      assert.isAtLeast(yield* client.signal(waiting, "go", { who: "ops" }, { every: "50 millis" }), 1)
      const outcome = yield* Fiber.join(running)
      assert.strictEqual(outcome.status, "completed", outcome.error)
      assert.deepStrictEqual(outcome.result, { rows: [{ who: "ops" }], row_count: 1 })

      const stuck = yield* client.start(Graph.waitForSignal("never", { timeout: "1 hour" }))
      const fiber = yield* Effect.forkChild(PgDurableHarness.execute(stuck))
      yield* Effect.sleep("200 millis")
      yield* client.cancel(stuck, "not needed")
      const cancelled = yield* Fiber.join(fiber)
      assert.strictEqual(cancelled.status, "cancelled")
      assert.strictEqual(yield* client.status(stuck), "cancelled")
      assert.strictEqual((yield* PgDurableHarness.execute(stuck)).status, "cancelled", "a cancelled one is not run")
      assert.instanceOf(
        yield* Effect.flip(PgDurableHarness.execute("ffffffff")),
        PgDurableError.InstanceNotFound
      )
    }))
})
