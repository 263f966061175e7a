// The plans of what the dashboard reads (internal/viewStatements.ts), checked with EXPLAIN on a
// history large enough that the planner would scan a table rather than walk an index that does not
// fit the statement: each must use the index it was written for and scan no table of history whole,
// in its generic plan and in custom ones (QueryPlans). The dashboard's list, counts and dead letters
// are the client's reads, whose plans pgflows' own Plans.pg.test.ts checks.
import { assert, layer } from "@effect/vitest"
import { QueryPlans, TestDatabase } from "@pgflows/testing"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { Identifier, PgflowsConfig, PgMigrations } from "pgflows"
import { throughputLimit } from "../src/internal/views.ts"
import * as ViewStatements from "../src/internal/viewStatements.ts"

const suffix = Crypto.randomBytes(4).toString("hex")
const schema = Identifier.makeUnsafe("schema", `view_plans_${suffix}`)
const statements = ViewStatements.make(schema)
const s = Identifier.quote(schema)

/** Tables that grow with history: none may be scanned whole. */
const neverScanned = ["runs", "steps", "signals", "events", "failed_runs", "cancelled_runs", "queue_archive"]

/**
 * 48,000 ended runs of three workflows over two versions, each tenth with five children of its own,
 * and a consumed signal and an event for each hundredth run; then ANALYZE, as autovacuum would.
 */
const loadHistory = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
INSERT INTO ${s}.runs (id, workflow, version, status, input, output, executions, parent_id, created_at,
  updated_at, started_at, completed_at)
SELECT 'r' || i, (ARRAY['alpha', 'beta', 'gamma'])[i % 3 + 1], i % 2 + 1,
  CASE WHEN i % 10 = 1 THEN 'failed' WHEN i % 10 = 2 THEN 'cancelled' ELSE 'completed' END,
  jsonb_build_object('n', i), jsonb_build_object('n', i + 1), 1,
  CASE WHEN i % 10 BETWEEN 3 AND 7 THEN 'r' || (i - i % 10) END,
  now() - interval '2 days' + i * interval '1 second', now() - interval '2 days' + i * interval '1 second',
  now() - interval '2 days' + i * interval '1 second', now() - interval '2 days' + i * interval '1.1 second'
FROM generate_series(0, 47999) AS i`)
  yield* sql.unsafe(`
INSERT INTO ${s}.signals (run_id, name, payload, consumed_key, consumed_at)
SELECT 'r' || i, 'go', 'true'::jsonb, '1', now() FROM generate_series(0, 47999, 100) AS i`)
  yield* sql.unsafe(`
INSERT INTO ${s}.events (run_id, key, value)
SELECT 'r' || i, 'progress', jsonb_build_object('n', i) FROM generate_series(0, 47999, 100) AS i`)
  yield* sql.unsafe(`ANALYZE ${s}.runs, ${s}.signals, ${s}.events`)
})

const Env = Layer.effectDiscard(Effect.andThen(PgMigrations.run, loadHistory).pipe(Effect.orDie)).pipe(
  Layer.provideMerge(PgflowsConfig.layer({ schema, queue: `q_${suffix}`, notifyChannel: `c_${suffix}` })),
  Layer.provideMerge(TestDatabase.layer)
)

layer(Env, { excludeTestServices: true, timeout: "2 minutes" })("the dashboard's reads on a long history", (it) => {
  it.effect("each statement uses its index and scans no table of history whole", () =>
    Effect.gen(function*() {
      const expect = (
        label: string,
        text: string,
        cases: ReadonlyArray<ReadonlyArray<unknown>>,
        uses: ReadonlyArray<string>
      ) => QueryPlans.expect(label, text, cases, { uses, neverScanned })
      const from = new Date(Date.now() - 2 * 86_400_000 + 3_600_000).toISOString()
      const to = new Date(Date.now() - 2 * 86_400_000 + 7_200_000).toISOString()
      yield* expect("byId", statements.byId, [[["r10", "r20", "r999"]]], ["runs_pkey"])
      yield* expect("search", statements.search, [
        ["r10", null, null, null, null, null, null, null, 51],
        ["r10", "alpha", 1, "completed", from, to, to, "r9", 51]
      ], ["runs_pkey", "runs_parent"])
      yield* expect("children", statements.children, [["r10"]], ["runs_parent"])
      yield* expect("signals", statements.signals, [["r100"]], ["signals_run"])
      yield* expect("events", statements.events, [["r100"]], ["events_pkey"])
      // A range over all of history is read up to the limit: here a limit below the history's 48,000
      // runs, as `throughputLimit` (100,000) is below a long history's size. With a limit above the
      // whole table, scanning it is no more than reading what the range holds.
      yield* expect("throughput", statements.throughput, [
        [from, to, 120, throughputLimit],
        [new Date(0).toISOString(), new Date().toISOString(), 86_400, 10_000]
      ], ["runs_created"])
      yield* expect("versions", statements.versions, [[]], ["runs_workflow_version_created"])
      yield* expect("workers", statements.workers, [["q"]], [])
    }))

  it.effect("the versions and the throughput read what they return", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const versions = yield* sql.unsafe<{ workflow: string; version: number }>(statements.versions)
      assert.deepStrictEqual(versions.map((row) => `${row.workflow} v${row.version}`), [
        "alpha v1",
        "alpha v2",
        "beta v1",
        "beta v2",
        "gamma v1",
        "gamma v2"
      ])
      const plan = yield* QueryPlans.explain(statements.versions, [], "custom", { analyze: true })
      const read = (node: QueryPlans.PlanNode): number =>
        (node["Relation Name"] === undefined ? 0 : (node["Actual Rows"] ?? 0) * (node["Actual Loops"] ?? 0)) +
        (node.Plans ?? []).reduce((total, child) => total + read(child), 0)
      assert.isBelow(read(plan), 100, "a descent per workflow and version, not a walk of the runs")

      // A range holding more runs than the limit reads the newest `limit` of them.
      const rows = yield* sql.unsafe<{ n: number }>(statements.throughput, [
        new Date(0).toISOString(),
        new Date().toISOString(),
        86_400,
        1000
      ])
      assert.strictEqual(rows.reduce((total, row) => total + row.n, 0), 1000)
    }))
})
