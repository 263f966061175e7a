// PgDurableClient on the real test database, which has no pg_durable: detection says so, and every
// method fails with one PgDurableUnavailable that says how to install it.
import { assert, layer } from "@effect/vitest"
import { Graph, GraphWorkflow, PgDurableClient, PgDurableError } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"

const Client = PgDurableClient.layer().pipe(Layer.provideMerge(TestDatabase.layer))

layer(Client, { excludeTestServices: true })("PgDurableClient without pg_durable", (it) => {
  it.effect("pgDurableAvailable is false; detect says what is missing", () =>
    Effect.gen(function*() {
      assert.isFalse(yield* PgDurableClient.pgDurableAvailable)
      const client = yield* PgDurableClient.PgDurableClient
      const found = yield* client.detect
      const database = yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql<{ db: string }>`SELECT current_database() AS db`)
      )
      assert.deepStrictEqual(found, { available: false, extension: false, schema: false, database: database[0]!.db })
    }))

  it.effect("every method fails with PgDurableUnavailable, naming the operation and how to install", () =>
    Effect.gen(function*() {
      const client = yield* PgDurableClient.PgDurableClient
      const workflow = GraphWorkflow.make("wf", { input: Schema.Number, graph: Graph.sql("SELECT 1") })
      const calls: ReadonlyArray<readonly [string, Effect.Effect<unknown, unknown>]> = [
        ["start", client.start(Graph.sql("SELECT 1"), { label: "x" })],
        ["start", client.startWorkflow(workflow, 1)],
        ["status", client.status("abcd1234")],
        ["result", client.result("abcd1234")],
        ["cancel", client.cancel("abcd1234")],
        ["signal", client.signal("abcd1234", "go", { ok: true })],
        ["setvar", client.setvar("region", "eu")],
        ["instanceInfo", client.instanceInfo("abcd1234")],
        ["instanceNodes", client.instanceNodes("abcd1234")],
        ["instanceExecutions", client.instanceExecutions("abcd1234")],
        ["metrics", client.metrics],
        ["listInstances", client.listInstances({ status: "running" })],
        ["explain", client.explain("abcd1234")],
        ["explain", client.explain(Graph.sql("SELECT 1"))],
        ["awaitInstance", client.awaitInstance("abcd1234")],
        ["version", client.version]
      ]
      for (const [operation, call] of calls) {
        const error = yield* Effect.flip(call)
        assert.instanceOf(error, PgDurableError.PgDurableUnavailable, operation)
        const unavailable = error as PgDurableError.PgDurableUnavailable
        assert.strictEqual(unavailable.operation, operation)
        assert.include(unavailable.message, `${operation}: pg_durable is not installed in database "`)
        assert.include(unavailable.message, "shared_preload_libraries = 'pg_durable'")
        assert.include(unavailable.message, "CREATE EXTENSION pg_durable")
      }
    }))
})
