/**
 * The plans of the client's reads (docs/ARCHITECTURE.md, "Reads"), checked with EXPLAIN on a
 * history large enough that the planner would scan a table rather than walk an index that does not
 * fit the statement: each list, dead-letter, count and queue-metrics statement must use the index it
 * was written for, and never scan `runs` (or the other tables of history) whole, in its generic plan
 * (what PostgreSQL switches a prepared statement to after five executions) and in its custom plan.
 * So a later change of a statement cannot quietly bring back a scan of history. Also the estimates
 * the counts fall back to on such a history, and the migration that fills the failed and cancelled
 * runs' tables from the runs recorded before it.
 *
 * The plans are those of the statements prepared, as `@effect/sql-pg` prepares them, and executed
 * with `plan_cache_mode` forcing the generic plan, then a custom one (`QueryPlans`).
 */
import { assert, layer } from "@effect/vitest"
import { QueryPlans, TestDatabase } from "@pgflows/testing"
import { Effect, Layer } from "effect"
import { Migrator, SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { Identifier, PgMigrations, WorkQueue } from "pgflows"
import type { Run } from "pgflows"
import * as Statements from "../src/internal/pgStatements.ts"
import { engine, postgres } from "./conformance/backend.ts"
import { historyWorkflows, loadHistory } from "./fixtures/history.ts"

const suffix = Crypto.randomBytes(4).toString("hex")
const names = { schema: `plans_${suffix}`, queue: `q_${suffix}`, notifyChannel: `c_${suffix}` }
const schema = Identifier.makeUnsafe("schema", names.schema)
const statements = Statements.make(schema)
const queueReads = Statements.queueReads(schema)

/** 48,000 ended runs and 300 pending ones; 20,000 messages and 20,000 archived ones of another queue. */
const history = { runs: 48_000, pending: 300, otherMessages: 20_000 }

/**
 * The tables whose size is the history's: none of them may be scanned whole. (`queue_messages`
 * holds the messages in flight, of every queue: a scan of it reads no history.)
 */
const historyTables = ["runs", "steps", "failed_runs", "cancelled_runs", "queue_archive", "signals", "events"]

/**
 * Asserts that every plan of a statement (generic, and custom for each set of values) uses each of
 * `indexes` (or one of each list of equivalent ones) and scans no table of history whole.
 */
const expectPlans = (
  label: string,
  text: string,
  cases: ReadonlyArray<ReadonlyArray<unknown>>,
  indexes: ReadonlyArray<string | ReadonlyArray<string>>
) => QueryPlans.expect(label, text, cases, { uses: indexes, neverScanned: historyTables })

interface Executed {
  readonly scan: string
  /** Rows the scan read: those it returned and those its filter removed, over all its loops. */
  readonly read: number
}

/** The scans a plan executed (never-executed parts left out), with the rows each read. */
const executed = (node: QueryPlans.PlanNode): Array<Executed> => [
  ...((node["Actual Loops"] ?? 0) === 0 ? [] : QueryPlans.scans({ ...node, Plans: [] }).map((scan) => ({
    scan,
    read: ((node["Actual Rows"] ?? 0) + (node["Rows Removed by Filter"] ?? 0)) * (node["Actual Loops"] ?? 0)
  }))),
  ...(node.Plans ?? []).flatMap(executed)
]

/**
 * For statements whose parts run only when needed (one-time filters): asserts that the parts
 * executed on this history, in the generic plan and in a custom one, use each of `indexes` and
 * read no table of history further than `countLimit + 1` rows with a scan.
 */
const expectExecuted = (label: string, text: string, values: ReadonlyArray<unknown>, indexes: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    for (const mode of ["generic", "custom"] as const) {
      const found = executed(yield* QueryPlans.explain(text, values, mode, { analyze: true }))
      const where = `${label} (${mode}: ${found.map((f) => `${f.scan} (${f.read} rows)`).join("; ")})`
      for (const index of indexes) {
        assert.isTrue(found.some((f) => f.scan.endsWith(`using ${index}`)), `${where} uses ${index}`)
      }
      for (const { scan, read } of found) {
        const table = scan.match(/^Seq Scan on (\w+)/)?.[1]
        if (table === undefined || !historyTables.includes(table)) continue
        assert.isAtMost(read, Statements.countLimit + 1, `${where}: ${scan} reads at most the limit`)
      }
    }
  })

/**
 * The values of a list statement: the first page, and a page that starts in the middle of the
 * history (`cursor`, the creation time in microseconds and the id of a run there).
 */
const listValues = (
  scope: Statements.Scope,
  status: Run.Status | null,
  cursor: { readonly micros: string; readonly id: string }
) =>
  [undefined, cursor].map((from) => ({
    workflow: scope === "workflow" || scope === "workflowVersion" ? "h_alpha" : null,
    version: scope === "version" || scope === "workflowVersion" ? 2 : null,
    status,
    upper_us: from?.micros ?? null,
    upper_id: from?.id ?? null,
    lower_us: null,
    limit: 51,
    queue: names.queue,
    max_bytes: 1_000_000
  }))

/** A run in the middle of the history, as a cursor. */
const middle = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql.unsafe<{ micros: string; id: string }>(
    `SELECT (extract(epoch FROM created_at) * 1000000)::bigint::text AS micros, id FROM ${
      Identifier.quote(schema)
    }.runs ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1`,
    [history.runs / 2]
  )
  return row!
})

/** The file's store, on a schema of its own, with the history loaded once. */
const History = Layer.effectDiscard(loadHistory(history).pipe(Effect.orDie)).pipe(
  Layer.provideMerge(postgres.layer(names)),
  Layer.provideMerge(TestDatabase.layer)
)

layer(History, { excludeTestServices: true, timeout: 60_000 })("plans of the reads on a history", (it) => {
  it.effect("every list walks the index it was written for, in its generic and its custom plan", () =>
    Effect.gen(function*() {
      const list = statements.reads.list
      const walks: Record<Statements.Scope, string> = {
        all: "runs_created",
        workflow: "runs_workflow_version_created",
        workflowVersion: "runs_workflow_version_created",
        version: "runs_workflow_version_created"
      }
      const cursor = yield* middle
      for (const scope of Statements.scopes) {
        // The failed runs' two indexes that lead with (workflow, version) serve alike.
        const side = (table: string) =>
          scope === "all"
            ? [`${table}_created`]
            : table === "failed_runs"
            ? [`${table}_workflow_created`, `${table}_workflow_failed`]
            : [`${table}_workflow_created`]
        const cases: ReadonlyArray<
          readonly [Statements.ListSource, Run.Status | null, ReadonlyArray<string | ReadonlyArray<string>>]
        > = [
          ["runs", null, [walks[scope]]],
          ["completed", "completed", [walks[scope]]],
          ["live", "running", ["runs_pkey"]],
          ["live", "pending", ["runs_pkey"]],
          ["failed", "failed", [side("failed_runs"), "runs_pkey"]],
          ["cancelled", "cancelled", [side("cancelled_runs"), "runs_pkey"]]
        ]
        for (const [source, status, indexes] of cases) {
          const statement = list[source][scope]
          yield* expectPlans(
            `list ${source} ${scope}`,
            statement.text,
            listValues(scope, status, cursor).map((values) => Statements.bind(statement, values)),
            indexes
          )
        }
        const letters = statements.reads.deadLetters[scope]
        yield* expectPlans(
          `deadLetters ${scope}`,
          letters.text,
          listValues(scope, null, cursor).map((values) => Statements.bind(letters, values)),
          [scope === "all" ? "failed_runs_failed" : side("failed_runs"), "runs_pkey"]
        )
      }
    }))

  it.effect("the counts read the queue's runs by key, and count no table of history further than their limit", () =>
    Effect.gen(function*() {
      const counts = statements.reads.counts
      // The runs, the failed runs and the cancelled runs are far more than the limit: estimated,
      // except those of h_delta that failed or were cancelled, counted.
      yield* expectExecuted("counts", counts.all.text, [names.queue], [
        "runs_pkey",
        "runs_workflow_version_created"
      ])
      for (const workflow of ["h_beta", "h_delta", "h_none"]) {
        yield* expectExecuted(`counts ${workflow}`, counts.workflow.text, [names.queue, workflow], [])
      }
    }))

  it.effect("the queue's metrics read its own messages and count its archive by index", () =>
    Effect.gen(function*() {
      // Estimated: the archive of the run queue (more than the limit); counted: an empty one.
      yield* expectExecuted("queue metrics", queueReads.metrics, [names.queue], [])
      yield* expectExecuted("queue metrics, empty archive", queueReads.metrics, [`${names.queue}_none`], [
        "queue_archive_queue"
      ])
      yield* expectPlans(
        "archived",
        queueReads.archived,
        [[names.queue, 100], [`${names.queue}_none`, 100]],
        ["queue_archive_queue"]
      )
      yield* expectPlans("runs in flight", statements.inFlight, [[names.queue]], [])
    }))

  it.effect("a purge batch walks the index of its source, and finds every row it deletes by key", () =>
    Effect.gen(function*() {
      const purge = Statements.makePurge(schema)
      const cursor = yield* middle
      const walks: Record<Statements.PurgeSource, Record<Statements.PurgeScope, string>> = {
        runs: { all: "runs_created", workflow: "runs_workflow_version_created" },
        failed: { all: "failed_runs_created", workflow: "failed_runs_workflow_created" },
        cancelled: { all: "cancelled_runs_created", workflow: "cancelled_runs_workflow_created" }
      }
      const statuses: Record<Statements.PurgeSource, ReadonlyArray<string>> = {
        runs: ["completed", "failed", "cancelled"],
        failed: ["failed"],
        cancelled: ["cancelled"]
      }
      for (const source of ["runs", "failed", "cancelled"] as const) {
        for (const scope of ["all", "workflow"] as const) {
          const statement = purge[source][scope]
          const values = [undefined, cursor].map((from) =>
            Statements.bind(statement, {
              workflow: scope === "workflow" ? "h_alpha" : null,
              statuses: statuses[source],
              after_us: from?.micros ?? null,
              after_id: from?.id ?? null,
              before_us: String(BigInt(Date.now()) * 1000n),
              // A batch far smaller than what it walks, as at a million runs (a batch of 1,000 among
              // about as many rows, as here, may rightly read them all and sort them).
              limit: 100
            })
          )
          yield* expectPlans(`purge ${source} ${scope}`, statement.text, values, [
            walks[source][scope],
            "runs_pkey",
            "runs_parent",
            "steps_pkey",
            "signals_run",
            "events_pkey",
            "failed_runs_pkey",
            "cancelled_runs_pkey",
            "queue_archive_run"
          ])
        }
      }
    }))

  it.effect("status and journal reads of an old run go by key", () =>
    Effect.gen(function*() {
      const { id } = yield* middle
      yield* expectPlans("getRun", statements.getRun, [[id, 1000]], ["runs_pkey"])
      yield* expectPlans("getInput", statements.getInput, [[id, 1000]], ["runs_pkey"])
      yield* expectPlans("journal", statements.journal, [[[id], 1000]], ["steps_pkey"])
    }))

  it.effect("the hot path's writes find their runs by key, in the scalar form of one run and the array form", () =>
    Effect.gen(function*() {
      const { id } = yield* middle
      const other = "r-missing"
      // A checkpoint's columns: run, token, key, name, input hash, status, output, error, attempts, wake.
      const checkpoint = [id, "token", "1", "s", "hash", "completed", "{\"n\":1}", null, 1, null]
      const checkpoints = [
        [id, other],
        ["token", "token"],
        ["1", "1"],
        ["s", "s"],
        ["hash", "hash"],
        ["completed", "completed"],
        ["{}", "{}"],
        ["{}", "{}"],
        [1, 1],
        [0, 0]
      ]
      // A transition's columns: run, token, kind, output, error, wake, message, observed events; channel.
      const transition = [id, "token", "complete", "{}", null, null, 1, 0, names.notifyChannel]
      const transitions = [
        [id, other],
        ["token", "token"],
        ["complete", "fail"],
        ["{}", "{}"],
        ["{}", "{}"],
        [0, 0],
        [1, 2],
        [0, 0],
        names.notifyChannel
      ]
      yield* expectPlans("checkpoint", statements.checkpoint, [checkpoint], ["runs_pkey"])
      yield* expectPlans("checkpoints", statements.checkpoints, [checkpoints], ["runs_pkey"])
      yield* expectPlans("transition", statements.transition, [transition], ["runs_pkey"])
      yield* expectPlans("transitions", statements.transitions, [transitions], ["runs_pkey"])
      yield* expectPlans("commitOne", statements.commitOne, [[...checkpoint, ...transition]], ["runs_pkey"])
      yield* expectPlans("commit", statements.commit, [[...checkpoints, ...transitions]], ["runs_pkey"])
      // A run's columns: id, workflow, input, delay, parent, owner, lease; queue, channel; deadline,
      // timeout, trace, version, concurrency key, priority.
      const run = ["new-run", "alpha", "{}", 0, null, "owner", 1000, names.queue, names.notifyChannel, null, null]
      yield* expectPlans("createRun", statements.createRun, [[...run, null, 1, null, null]], ["runs_pkey"])
      yield* expectPlans("createRuns", statements.createRuns, [[
        ["new-1", "new-2"],
        ["alpha", "alpha"],
        ["{}", "{}"],
        [0, 0],
        ["p", "p"],
        ["owner", "owner"],
        [1000, 1000],
        names.queue,
        names.notifyChannel,
        [0, 0],
        [0, 0],
        ["{}", "{}"],
        [1, 1],
        ["k", "k"],
        [0, 0]
      ]], ["runs_pkey"])
    }))

  it.effect("on this history the large counts are estimates, labelled, and close; the small ones exact", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s = Identifier.quote(schema)
      const truth = yield* sql.unsafe<{ workflow: string; status: Run.Status; runs: number }>(
        `SELECT workflow, status, count(*)::int AS runs FROM ${s}.runs GROUP BY 1, 2`
      )
      const actual = (workflow: string, status: Run.Status) =>
        truth.find((row) => row.workflow === workflow && row.status === status)?.runs ?? 0
      const close = (count: Run.Count, expected: number, label: string) => {
        assert.isFalse(count.exact, `${label}: estimated`)
        assert.isAtMost(Math.abs(count.count - expected), expected * 0.05, `${label}: ${count.count} for ${expected}`)
      }
      const client = yield* engine([])
      const counts = yield* client.counts()
      assert.deepStrictEqual(counts.workflows.map((row) => row.workflow), [...historyWorkflows].sort())
      for (const row of counts.workflows) {
        assert.deepStrictEqual(row.pending, { count: actual(row.workflow, "pending"), exact: true }, "counted")
        for (const status of ["completed", "failed", "cancelled"] as const) {
          close(row[status], actual(row.workflow, status), `${row.workflow} ${status}`)
        }
      }
      close(
        counts.total.completed,
        truth.filter((row) => row.status === "completed").reduce((n, row) => n + row.runs, 0),
        "total"
      )
      const alpha = yield* client.counts({ workflow: "h_alpha" })
      assert.deepStrictEqual(alpha.workflows, counts.workflows.filter((row) => row.workflow === "h_alpha"))
      // Of h_delta, few runs failed or were cancelled: counted, though the tables are large.
      const [delta] = (yield* client.counts({ workflow: "h_delta" })).workflows
      assert.deepStrictEqual(delta?.failed, { count: actual("h_delta", "failed"), exact: true })
      assert.deepStrictEqual(delta?.cancelled, { count: actual("h_delta", "cancelled"), exact: true })
      close(delta!.completed, actual("h_delta", "completed"), "h_delta completed")

      // The run queue's archive (a message per failed run) is estimated, so is one of 25,000 messages;
      // an empty one is counted.
      const failed = truth.filter((row) => row.status === "failed").reduce((n, row) => n + row.runs, 0)
      const ours = yield* client.queueMetrics()
      close({ count: ours.archived, exact: ours.archivedExact }, failed, "the run queue's archive")
      const queue = `${names.queue}_archive`
      yield* sql.unsafe(
        `INSERT INTO ${s}.queue_archive (msg_id, queue, read_ct, enqueued_at, vt, message)
         SELECT nextval('${names.schema}.queue_msg_id_seq'), $1, 1, now(), now(), '{}'::jsonb
         FROM generate_series(1, 25000)`,
        [queue]
      )
      yield* sql.unsafe(`ANALYZE ${s}.queue_archive`)
      const queues = yield* WorkQueue.WorkQueue
      const big = yield* queues.metrics(queue)
      close({ count: big.archived, exact: big.archivedExact }, 25_000, "an archive of 25,000")
      const empty = yield* queues.metrics(`${names.queue}_empty`)
      assert.deepStrictEqual([empty.archived, empty.archivedExact], [0, true])
    }))

  it.effect("migration 9 lists the failed and cancelled runs recorded before it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tag = Crypto.randomBytes(4).toString("hex")
      const old = { schema: `before_${tag}`, queue: `q_${tag}`, notifyChannel: `c_${tag}` }
      const oldSchema = Identifier.makeUnsafe("schema", old.schema)
      const s = Identifier.quote(oldSchema)
      yield* sql.unsafe(`CREATE SCHEMA ${s}`)
      yield* Migrator.make({})({
        loader: Effect.succeed(
          PgMigrations.migrations(oldSchema).filter(([id]) => id <= 8).sort((a, b) => a[0] - b[0]).map((
            [id, name, texts]
          ) =>
            [id, name, Effect.succeed(Effect.forEach(texts, (text) => sql.unsafe(text), { discard: true }))] as const
          )
        ),
        table: `${old.schema}.migrations`
      })
      yield* sql.unsafe(
        `INSERT INTO ${s}.runs (id, workflow, status, input, error, completed_at, created_at) VALUES
          ('f1', 'legacy', 'failed', '{}', '{"source":"pgflows","error":{"_tag":"Old"}}', now() - interval '1 minute',
            now() - interval '2 minutes'),
          ('c1', 'legacy', 'cancelled', '{}', NULL, now(), now() - interval '1 minute'),
          ('d1', 'legacy', 'completed', '{}', NULL, now(), now())`
      )
      yield* Effect.gen(function*() {
        const client = yield* engine([])
        const ids = (page: Run.Page) => page.runs.map((run) => run.id)
        assert.deepStrictEqual(ids(yield* client.list({ status: "failed" })), ["f1"])
        assert.deepStrictEqual(ids(yield* client.list({ status: "cancelled" })), ["c1"])
        assert.deepStrictEqual((yield* client.deadLetters()).deadLetters.map((letter) => letter.id), ["f1"])
        const [legacy] = (yield* client.counts()).workflows
        assert.deepStrictEqual([legacy?.failed, legacy?.cancelled, legacy?.completed], [
          { count: 1, exact: true },
          { count: 1, exact: true },
          { count: 1, exact: true }
        ])
      }).pipe(Effect.provide(Layer.fresh(postgres.layer(old))))
    }))
})
