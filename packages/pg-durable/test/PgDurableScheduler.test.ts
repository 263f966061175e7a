// PgDurableScheduler without pg_durable: the graph it compiles, checked by the compiler's own
// verification (PostgreSQL's parser), and the scheduler against the stand-in of pg_durable's SQL API
// (PgDurableHarness.install) in a real PostgreSQL, where the test plays pg_durable's part: it runs the SQL
// node of the stored graph exactly as pg_durable would, and a pgflows worker completes the run.
import { assert, describe, it, layer } from "@effect/vitest"
import { Compiler, Decompiler, PgDurableClient, PgDurableHarness, PgDurableScheduler } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { BuiltinScheduler, Identifier, Pgflows, PgflowsConfig, PgflowsError, Scheduler, Workflow } from "pgflows"

const Note = Schema.Struct({ note: Schema.String })

const daily = Workflow.make("pgd_daily", {
  input: Note,
  output: Schema.String,
  run: (input) => Effect.succeed(`noted: ${input.note}`)
})

const nasty = [
  "it's",
  "back\\slash \\' \\\\",
  "$$ $tag$ $1 $__pgf_x $input",
  "{sys_instance_id} {x} }{",
  "'); DROP TABLE x; --",
  "ünïcødé ✓\nline"
]

interface Node {
  readonly kind: string
  readonly query?: string
  readonly cron?: string
  readonly body?: Node
  readonly left?: Node
  readonly right?: Node
}

describe("PgDurableScheduler: the graph", () => {
  it.effect("a loop of df.wait_for_schedule and the enqueue call, verified by the compiler", () =>
    Effect.gen(function*() {
      const graph = PgDurableScheduler.graph({
        schema: Identifier.makeUnsafe("schema", "pgflows"),
        name: "weekday-report",
        cron: "0 9 * * MON-FRI",
        workflow: "report",
        input: { note: "x" }
      })
      const compiled = yield* Compiler.compile(graph)
      yield* Decompiler.verify(compiled)
      const root = compiled.durable as Node
      assert.strictEqual(root.kind, "loop")
      assert.strictEqual(root.body?.kind, "seq")
      assert.deepStrictEqual(root.body?.left, { kind: "wait_schedule", cron: "0 9 * * 2-6" }, "Sunday = 1 numbering")
      assert.strictEqual(
        root.body?.right?.query,
        // Braces are written as chr(123) and chr(125): pg_durable rewrites {name} anywhere in a node's text.
        `SELECT "pgflows".enqueue_workflow('report', (chr(123) || '"note":"x"' || chr(125))::jsonb, ` +
          `'schedule:weekday-report:' || ` +
          `to_char(date_trunc('minute', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS run_id`
      )
      assert.match(compiled.expression, /^df\.loop\(df\.seq\(df\.wait_for_schedule\('0 9 \* \* 2-6'\), df\.sql\(/)
    }))

  it.effect("names and inputs with quotes, backslashes, $ and braces stay literals pg_durable cannot rewrite", () =>
    Effect.gen(function*() {
      for (const text of nasty) {
        const compiled = yield* Compiler.compile(PgDurableScheduler.graph({
          schema: Identifier.makeUnsafe("schema", "pgflows"),
          name: "nasty",
          cron: "*/5 * * * *",
          workflow: text,
          input: { note: text, [text]: [text] }
        }))
        yield* Decompiler.verify(compiled)
        const query = (compiled.durable as Node).body!.right!.query!
        assert.notMatch(query, /[${}]/, `no $, { or } for pg_durable to substitute: ${query}`)
      }
    }))
})

const suffix = Crypto.randomBytes(4).toString("hex")
const Config = PgflowsConfig.layer({
  schema: `pgd_sched_${suffix}`,
  queue: `q_${suffix}`,
  notifyChannel: `c_${suffix}`
})

/** The engine, the built-in scheduler and a PgDurableClient, on a database with the stand-in. */
const Environment = Pgflows.layerPg({ workflows: [daily] }).pipe(
  Layer.provideMerge(PgDurableClient.layer()),
  Layer.provideMerge(BuiltinScheduler.layer),
  Layer.orDie,
  Layer.provideMerge(Config.pipe(Layer.orDie)),
  Layer.provideMerge(
    Layer.effectDiscard(PgDurableHarness.install).pipe(Layer.provideMerge(TestDatabase.layer), Layer.orDie)
  )
)

const instance = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<
        { label: string; status: string; root_node: any }
      >`SELECT label, status, root_node FROM df.instances WHERE id = ${id}`,
      (rows) => rows[0]!
    ))

/** The SQL node's query in the stored graph: LOOP(THEN(WAIT_SCHEDULE, SQL)). */
const enqueueQuery = (root: any): { cron: string; query: string } => {
  assert.strictEqual(root.node_type, "LOOP")
  const then = root.left_node
  assert.strictEqual(then.node_type, "THEN")
  return { cron: JSON.parse(then.left_node.query).cron_expr, query: then.right_node.query }
}

layer(Environment, { excludeTestServices: true })("PgDurableScheduler on a stand-in of pg_durable", (it) => {
  it.effect("schedule starts an instance; its SQL node, run as pg_durable would, starts the run a worker completes", () =>
    Effect.gen(function*() {
      const scheduler = yield* PgDurableScheduler.layer.pipe(Layer.build, Effect.map(Context.get(Scheduler.Scheduler)))
      assert.strictEqual(scheduler.kind, "pg_durable")
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const sql = yield* SqlClient.SqlClient
      const client = yield* Pgflows.Pgflows
      for (const [index, text] of nasty.entries()) {
        const name = `nasty-${index}`
        const made = yield* scheduler.schedule(name, "@hourly", daily, { note: text })
        assert.deepStrictEqual(
          [made.scheduler, made.cron, made.timezone, made.catchUp, made.input, made.paused],
          ["pg_durable", "0 * * * *", "UTC", "skip", { note: text }, false]
        )
        assert.match(made.handle, /^[0-9a-f]{8}$/)
        const stored = yield* instance(made.handle)
        assert.strictEqual(stored.label, PgDurableScheduler.label(schema, name))
        const { cron, query } = enqueueQuery(stored.root_node)
        assert.strictEqual(cron, "0 * * * *")
        // pg_durable's part: the tick came, it runs the node's SQL (nothing in it to substitute).
        const [ran] = yield* sql.unsafe<{ run_id: string }>(query)
        assert.match(ran!.run_id, new RegExp(`^schedule:${name}:\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:00Z$`))
        yield* client.processOnce
        assert.strictEqual(yield* client.result(ran!.run_id), `noted: ${text}`)
      }
      assert.deepStrictEqual((yield* scheduler.list).map((s) => s.name), nasty.map((_, index) => `nasty-${index}`))
      for (const index of nasty.keys()) yield* scheduler.unschedule(`nasty-${index}`)
      assert.deepStrictEqual(yield* scheduler.list, [])
    }))

  it.effect("pause cancels the instance, resume starts another, unschedule cancels it and forgets the schedule", () =>
    Effect.gen(function*() {
      const scheduler = yield* PgDurableScheduler.layer.pipe(Layer.build, Effect.map(Context.get(Scheduler.Scheduler)))
      const sql = yield* SqlClient.SqlClient
      const made = yield* scheduler.schedule("lifecycle", "0 9 * * MON-FRI", daily, { note: "life" })
      assert.strictEqual(made.status, "pending")
      assert.isUndefined(made.nextTick, "no next tick while pg_durable has not started the instance")
      yield* sql`UPDATE df.instances SET status = 'running' WHERE id = ${made.handle}`
      const running = yield* scheduler.get("lifecycle")
      assert.strictEqual(running.status, "running")
      assert.strictEqual(running.nextTick?.getUTCHours(), 9)
      assert.include([1, 2, 3, 4, 5], running.nextTick?.getUTCDay())

      const paused = yield* scheduler.pause("lifecycle")
      assert.isTrue(paused.paused)
      assert.strictEqual((yield* instance(made.handle)).status, "cancelled")
      const again = yield* scheduler.schedule("lifecycle", "30 9 * * *", daily, { note: "still paused" }, {
        replace: true
      })
      assert.isTrue(again.paused, "replacing keeps the schedule paused")
      assert.strictEqual(again.handle, made.handle, "no instance started while paused")

      const resumed = yield* scheduler.resume("lifecycle")
      assert.isFalse(resumed.paused)
      assert.notStrictEqual(resumed.handle, made.handle)
      const { cron, query } = enqueueQuery((yield* instance(resumed.handle)).root_node)
      assert.strictEqual(cron, "30 9 * * *")
      assert.include(query, "still paused")

      // An instance that ended (pg_durable's loop cap) is started again by resume.
      yield* sql`UPDATE df.instances SET status = 'failed' WHERE id = ${resumed.handle}`
      assert.strictEqual((yield* scheduler.get("lifecycle")).status, "failed")
      const repaired = yield* scheduler.resume("lifecycle")
      assert.notStrictEqual(repaired.handle, resumed.handle)

      const id = yield* scheduler.trigger("lifecycle")
      const client = yield* Pgflows.Pgflows
      yield* client.processOnce
      assert.strictEqual(yield* client.result(id), "noted: still paused")

      yield* scheduler.unschedule("lifecycle")
      assert.strictEqual((yield* instance(repaired.handle)).status, "cancelled")
      assert.instanceOf(yield* Effect.flip(scheduler.get("lifecycle")), Scheduler.ScheduleNotFound)
    }))

  it.effect("what pg_durable cannot run is refused before anything starts", () =>
    Effect.gen(function*() {
      const scheduler = yield* PgDurableScheduler.layer.pipe(Layer.build, Effect.map(Context.get(Scheduler.Scheduler)))
      const fail = (name: string, cron: string, options?: Scheduler.ScheduleOptions, input: unknown = { note: "n" }) =>
        Effect.flip(scheduler.schedule(name, cron, daily, input as typeof Note.Type, options))
      const seconds = yield* fail("fast", "*/5 * * * * *")
      assert.instanceOf(seconds, Scheduler.InvalidCron)
      assert.match(seconds.message, /five fields, a minute at the finest/)
      assert.instanceOf(yield* fail("fast", "10 seconds"), Scheduler.InvalidCron)
      const both = yield* fail("both", "0 9 1 * MON")
      assert.instanceOf(both, Scheduler.InvalidCron)
      assert.match(both.message, /restricts both the day of month and the day of week/)
      const field = yield* fail("field", "0 9 * * MON-FUN")
      assert.instanceOf(field, Scheduler.InvalidCron)
      assert.strictEqual(field.position, 5)
      const zone = yield* fail("zoned", "0 9 * * *", { timezone: "America/New_York" })
      assert.instanceOf(zone, Scheduler.InvalidTimeZone)
      assert.match(zone.message, /pg_durable, which reads cron in UTC/)
      assert.instanceOf(yield* fail("all", "0 9 * * *", { catchUp: "all" }), Scheduler.UnsupportedScheduleOption)
      assert.instanceOf(yield* fail("bad name!", "0 9 * * *"), Scheduler.InvalidScheduleName)
      assert.instanceOf(yield* fail("input", "0 9 * * *", {}, { note: 1 }), PgflowsError.InvalidInput)

      // A name belongs to one scheduler: the built-in one's cannot be replaced from here.
      const builtin = yield* Scheduler.Scheduler
      assert.strictEqual(builtin.kind, "builtin")
      yield* builtin.schedule("shared-name", "0 9 * * *", daily, { note: "b" })
      const taken = yield* fail("shared-name", "0 9 * * *", { replace: true })
      assert.instanceOf(taken, Scheduler.ScheduleAlreadyExists)
      assert.match(taken.message, /\(builtin\)/)
      const sql = yield* SqlClient.SqlClient
      assert.deepStrictEqual(yield* sql`SELECT id FROM df.instances WHERE label LIKE '%shared-name'`, [])
      assert.deepStrictEqual(yield* scheduler.list, [])
    }))
})

const Bare = PgDurableScheduler.layer.pipe(
  Layer.provideMerge(PgDurableClient.layer()),
  Layer.orDie,
  Layer.provideMerge(Config.pipe(Layer.orDie)),
  Layer.provideMerge(TestDatabase.layer.pipe(Layer.orDie))
)

layer(Bare, { excludeTestServices: true })("PgDurableScheduler without pg_durable", (it) => {
  it.effect("schedule says how to install it, and nothing is stored", () =>
    Effect.gen(function*() {
      const scheduler = yield* Scheduler.Scheduler
      assert.isFalse(yield* PgDurableClient.pgDurableAvailable)
      const error = yield* Effect.flip(scheduler.schedule("nowhere", "0 9 * * *", daily, { note: "x" }))
      assert.instanceOf(error, Scheduler.SchedulerUnavailable)
      assert.match(error.message, /^pg_durable is not usable in database "t_pgdurablescheduler_/)
      assert.match(error.message, /CREATE EXTENSION pg_durable/)
      assert.deepStrictEqual(yield* scheduler.list, [])
    }))
})
