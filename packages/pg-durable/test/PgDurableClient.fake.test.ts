// PgDurableClient against the stand-in of pg_durable's SQL API (PgDurableHarness.install: same
// function names, argument types, defaults and STRICTness), so every statement the client sends is
// resolved and executed by a real PostgreSQL: argument types, casts, column names, decoding, and the
// logic around the answers (cancel's returned failure text, signal resends, paging, timeouts).
//
// Nothing runs the instances here: the tests move them along by writing df.instances and df.nodes,
// and a few of the stand-in's functions are replaced by test doubles of engine behaviour no run of
// the harness produces (see `doubles`).
import { assert, layer } from "@effect/vitest"
import { Graph, GraphWorkflow, PgDurableClient, PgDurableError, PgDurableHarness } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { chargePayment, OrderInput } from "./fixtures/steps.ts"

const doubles = [
  // A wait that subscribes late: the third signal completes the SIGNAL node a test left running
  // (the first two arrive "too early" and are dropped, as pg_durable drops early signals).
  `CREATE OR REPLACE FUNCTION df.signal(instance_id text, signal_name text, signal_data text DEFAULT '{}') RETURNS text
    LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM df.instances WHERE id = instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id;
      END IF;
      INSERT INTO df.signals (instance_id, name, data) VALUES (instance_id, signal_name, signal_data);
      IF (SELECT count(*) FROM df.signals s WHERE s.instance_id = signal.instance_id AND s.name = signal_name) >= 3 THEN
        UPDATE df.nodes SET status = 'completed', result = jsonb_build_object('signal_name', signal_name,
          'timed_out', false, 'data', signal_data::jsonb)
        WHERE nodes.instance_id = signal.instance_id AND node_type = 'SIGNAL' AND status = 'running'
          AND query::jsonb->>'signal_name' = signal_name;
      END IF;
      RETURN 'OK';
    END $$`,
  // An engine failure, reported as text (the reason 'engine-failure' asks for it).
  `CREATE OR REPLACE FUNCTION df.cancel(instance_id text, reason text DEFAULT 'Cancelled by user') RETURNS text
    LANGUAGE plpgsql STRICT AS $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM df.instances WHERE id = instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id;
      END IF;
      IF reason = 'engine-failure' THEN RETURN 'Failed to cancel: engine unavailable'; END IF;
      UPDATE df.instances SET status = 'cancelled' WHERE id = instance_id AND status IN ('pending', 'running');
      RETURN 'Instance ' || instance_id || ' cancelled: ' || reason;
    END $$`,
  // An execution history with figures of its own, so the decoding of each column shows.
  `CREATE OR REPLACE FUNCTION df.instance_executions(instance_id text, limit_count int DEFAULT 5) RETURNS TABLE (
      execution_id bigint, status text, event_count bigint, duration_ms bigint, output text) LANGUAGE plpgsql AS $$
    BEGIN
      IF limit_count < 1 THEN RAISE EXCEPTION 'limit_count must be at least 1'; END IF;
      RETURN QUERY SELECT 1::bigint, 'Completed'::text, 7::bigint, 42::bigint, i.result::text
        FROM df.instances i WHERE i.id = instance_executions.instance_id LIMIT limit_count;
    END $$`
]

const Fake = Layer.effectDiscard(Effect.gen(function*() {
  yield* PgDurableHarness.install
  const sql = yield* SqlClient.SqlClient
  for (const statement of doubles) yield* sql.unsafe(statement)
})).pipe(Layer.provideMerge(TestDatabase.layer), Layer.orDie)
const Client = PgDurableClient.layer().pipe(Layer.provideMerge(Fake))

const graph = Graph.sequence(
  Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
  Graph.parallel(
    Graph.waitForSignal("approval", { timeout: "1 hour", capture: "approval" }),
    Graph.sleep("10 seconds")
  ),
  Graph.branch(
    Graph.sql`SELECT (${Graph.ref("approval")})::jsonb->'data'->>'ok' = 'true'`,
    Graph.http({ url: "https://hooks.azurewebsites.net/done", method: "POST", body: "{}", headers: { A: "b" } }),
    Graph.waitForSchedule("0 9 * * MON")
  )
)

const stored = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ root_node: any; label: string | null; transaction_mode: string }>`
      SELECT root_node, label, transaction_mode FROM df.instances WHERE id = ${id}`.pipe(
      Effect.map((rows) => rows[0]!)
    ))

layer(Client, { excludeTestServices: true })("PgDurableClient on a stand-in of pg_durable", (it) => {
  it.effect("is detected through df.start (no extension row)", () =>
    Effect.gen(function*() {
      assert.isTrue(yield* PgDurableClient.pgDurableAvailable)
      const found = yield* (yield* PgDurableClient.PgDurableClient).detect
      assert.isTrue(found.available)
      assert.isFalse(found.extension)
      assert.isTrue(found.schema)
      assert.strictEqual(yield* (yield* PgDurableClient.PgDurableClient).version, PgDurableHarness.version)
    }))

  it.effect("start binds every value: pg_durable's functions receive the graph, the label and the mode", () =>
    Effect.gen(function*() {
      const client = yield* PgDurableClient.PgDurableClient
      const id = yield* client.start(graph, { label: "order 'O-1'", input: { orderId: "O-1", amount: 5 } })
      assert.match(id, /^[0-9a-f]{8}$/)
      const row = yield* stored(id)
      assert.strictEqual(row.label, "order 'O-1'")
      assert.strictEqual(row.transaction_mode, "caller")
      const root = row.root_node
      assert.strictEqual(root.node_type, "THEN")
      const json = JSON.stringify(root)
      for (const kind of ["SQL", "JOIN", "SIGNAL", "SLEEP", "IF", "HTTP", "WAIT_SCHEDULE"]) {
        assert.include(json, `"node_type":"${kind}"`)
      }
      assert.include(json, "\"result_name\":\"__pgf_receipt\"")
      assert.include(json, "\\\"cron_expr\\\": \\\"0 9 * * 2\\\"")
      const fresh = yield* client.start(Graph.sql("SELECT 1"), { transactionMode: "new" })
      assert.strictEqual((yield* stored(fresh)).transaction_mode, "new")
    }))

  it.effect("startWorkflow encodes the input with the workflow's Schema, or fails before starting", () =>
    Effect.gen(function*() {
      const client = yield* PgDurableClient.PgDurableClient
      const workflow = GraphWorkflow.make("charge", {
        input: OrderInput,
        graph: Graph.step(chargePayment, { capture: "receipt", input: Graph.input() })
      })
      const id = yield* client.startWorkflow(workflow, new OrderInput({ orderId: "W-1", amount: 3 }), { label: "wf" })
      const root = (yield* stored(id)).root_node
      assert.include(JSON.stringify(root), "{\\\"orderId\\\":\\\"W-1\\\",\\\"amount\\\":3}")
      const error = yield* Effect.flip(client.startWorkflow(workflow, { orderId: 1 } as any))
      assert.instanceOf(error, PgDurableError.GraphCompileError)
      assert.include(error.message, "the input of workflow \"charge\" does not match its Schema")
    }))

  it.effect("status, result (decoded), instance info, executions", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const client = yield* PgDurableClient.PgDurableClient
      const id = yield* client.start(Graph.sql("SELECT 42 AS answer"), { label: "answer" })
      assert.strictEqual(yield* client.status(id), "pending")
      assert.deepStrictEqual(yield* client.result(id), Option.none())
      yield* sql`UPDATE df.instances SET status = 'completed', completed_at = now(),
        result = '{"rows": [{"answer": 42}], "row_count": 1}' WHERE id = ${id}`
      const Answer = Schema.Struct({
        rows: Schema.Array(Schema.Struct({ answer: Schema.Number })),
        row_count: Schema.Number
      })
      assert.deepStrictEqual(yield* client.result(id, Answer), Option.some({ rows: [{ answer: 42 }], row_count: 1 }))
      const info = yield* client.instanceInfo(id)
      assert.deepStrictEqual(info, {
        instanceId: id,
        label: "answer",
        functionName: "durable-function",
        functionVersion: "1.0.0",
        currentExecutionId: 1,
        status: "completed",
        output: "{\"rows\": [{\"answer\": 42}], \"row_count\": 1}"
      })
      assert.deepStrictEqual(yield* client.instanceExecutions(id, 3), [{
        executionId: 1,
        status: "Completed",
        eventCount: 7,
        durationMs: 42,
        output: "{\"rows\": [{\"answer\": 42}], \"row_count\": 1}"
      }])
      assert.strictEqual(yield* client.awaitInstance(id, { timeout: "1 second" }), "completed")
      const missing = yield* Effect.flip(client.status("ffffffff"))
      assert.instanceOf(missing, PgDurableError.InstanceNotFound)
      assert.instanceOf(yield* Effect.flip(client.instanceInfo("ffffffff")), PgDurableError.InstanceNotFound)
      assert.instanceOf(yield* Effect.flip(client.awaitInstance("ffffffff")), PgDurableError.InstanceNotFound)
    }))

  it.effect("awaitInstance times out with AwaitTimeout", () =>
    Effect.gen(function*() {
      const client = yield* PgDurableClient.PgDurableClient
      const id = yield* client.start(Graph.sql("SELECT 1"))
      const error = yield* Effect.flip(client.awaitInstance(id, { timeout: "1 second" }))
      assert.instanceOf(error, PgDurableError.AwaitTimeout)
      assert.include(error.message, "did not end within 1 seconds")
    }))

  it.effect("cancel: pg_durable's answer, a returned 'Failed to cancel:' as CancelFailed, unknown ids", () =>
    Effect.gen(function*() {
      const client = yield* PgDurableClient.PgDurableClient
      const id = yield* client.start(Graph.loop(Graph.sleep("1 second")))
      assert.strictEqual(yield* client.cancel(id, "shutting down"), `Instance ${id} cancelled: shutting down`)
      assert.strictEqual(yield* client.status(id), "cancelled")
      const failed = yield* Effect.flip(client.cancel(id, "engine-failure"))
      assert.instanceOf(failed, PgDurableError.CancelFailed)
      assert.include(failed.message, "could not cancel instance")
      assert.include(failed.message, "engine unavailable")
      assert.instanceOf(yield* Effect.flip(client.cancel("ffffffff")), PgDurableError.InstanceNotFound)
    }))

  it.effect("signal is sent again until the wait takes it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const client = yield* PgDurableClient.PgDurableClient
      const id = yield* client.start(Graph.waitForSignal("approval"))
      yield* sql`UPDATE df.instances SET status = 'running' WHERE id = ${id}`
      yield* sql`INSERT INTO df.nodes (id, instance_id, node_type, query, status) VALUES
        ('n1', ${id}, 'SQL', 'SELECT 1', 'completed'),
        ('n2', ${id}, 'SIGNAL', '{"signal_name": "approval", "timeout_seconds": null}', 'running')`
      const attempts = yield* client.signal(id, "approval", { ok: true }, { every: "10 millis" })
      assert.strictEqual(attempts, 3, "the stand-in drops the first two, as pg_durable drops early signals")
      const sent = yield* sql<{ data: string }>`SELECT data FROM df.signals WHERE instance_id = ${id}`
      assert.deepStrictEqual(sent.map((row) => JSON.parse(row.data)), [{ ok: true }, { ok: true }, { ok: true }])
      const nodes = yield* client.instanceNodes(id)
      assert.deepStrictEqual(nodes.map((node) => [node.nodeId, node.nodeType, node.status]), [
        ["n1", "SQL", "completed"],
        ["n2", "SIGNAL", "completed"]
      ])
      assert.isTrue(nodes[0]!.updatedAt instanceof Date)
    }))

  it.effect("signal gives up with SignalNotDelivered when the instance ended or time is up", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const client = yield* PgDurableClient.PgDurableClient
      const ended = yield* client.start(Graph.sql("SELECT 1"))
      yield* sql`UPDATE df.instances SET status = 'completed' WHERE id = ${ended}`
      const error = yield* Effect.flip(client.signal(ended, "go"))
      assert.instanceOf(error, PgDurableError.SignalNotDelivered)
      assert.include(error.message, "(status completed)")
      const waiting = yield* client.start(Graph.waitForSignal("other"))
      const late = yield* Effect.flip(client.signal(waiting, "go", null, { every: "20 millis", timeout: "100 millis" }))
      assert.instanceOf(late, PgDurableError.SignalNotDelivered)
      assert.instanceOf(yield* Effect.flip(client.signal("ffffffff", "go")), PgDurableError.InstanceNotFound)
    }))

  it.effect("setvar, metrics, explain", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const client = yield* PgDurableClient.PgDurableClient
      yield* client.setvar("region", "eu-west")
      assert.deepStrictEqual(yield* sql`SELECT name, value FROM df.vars`, [{ name: "region", value: "eu-west" }])
      assert.include((yield* Effect.flip(client.setvar("not an identifier", "x"))).message, "not an identifier")
      const metrics = yield* client.metrics
      assert.isTrue(Option.isSome(metrics))
      assert.isAbove(Option.getOrThrow(metrics).totalInstances, 0)
      assert.strictEqual(
        yield* client.explain(Graph.sequence(Graph.sql("SELECT 1"), Graph.sleep("1 second"))),
        "graph THEN"
      )
      const id = yield* client.start(Graph.sql("SELECT 1"))
      assert.strictEqual(yield* client.explain(id), `instance ${id} pending`)
    }))

  it.effect("listInstances pages through instances with a cursor", () =>
    Effect.gen(function*() {
      const client = yield* PgDurableClient.PgDurableClient
      const label = `page-${Math.random().toString(16).slice(2)}`
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5], () => client.start(Graph.sql("SELECT 1"), { label }))
      const seen: Array<string> = []
      let cursor: string | undefined = undefined
      let pages = 0
      do {
        const page: PgDurableClient.InstancePage = yield* client.listInstances({ label, limit: 2, cursor })
        seen.push(...page.instances.map((instance) => instance.instanceId))
        assert.isTrue(
          page.instances.every((instance) => instance.label === label && instance.createdAt instanceof Date)
        )
        cursor = page.nextCursor
        pages++
      } while (cursor !== undefined)
      assert.strictEqual(pages, 3)
      assert.deepStrictEqual([...seen].sort(), [...ids].sort())
    }))
})
