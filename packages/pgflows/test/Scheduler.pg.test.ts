// The schedulers on PostgreSQL (the run's PostgreSQL 18, without pg_cron): the built-in scheduler's
// suite, three schedulers with their own pools firing a tick every second, and the pg_cron command's
// quoting checked against PostgreSQL itself.
import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Context, Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { BuiltinScheduler, PgCronScheduler, Pgflows, PgflowsConfig, Scheduler } from "pgflows"
import { postgres } from "./conformance/backend.ts"
import { postgresBackend, report, schedulerSuite } from "./fixtures/scheduleSuite.ts"

layer(TestDatabase.layer, { excludeTestServices: true })("Scheduler on PostgreSQL", (it) => {
  schedulerSuite(postgresBackend, it)

  it.effect(
    "three schedulers with pools of their own, a tick every second: one run per tick, none missed",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const suffix = Crypto.randomBytes(4).toString("hex")
        const config = { schema: `sched_${suffix}`, queue: `q_${suffix}`, notifyChannel: `c_${suffix}` }
        const ConfigLayer = PgflowsConfig.layer(config).pipe(Layer.orDie)
        /** A scheduler as another process would have it: its own pool, its own layer. */
        const process = (n: number) =>
          Layer.build(
            BuiltinScheduler.layer.pipe(
              Layer.orDie,
              Layer.provide(
                PgClient.layer({ url: database.url, maxConnections: 2, applicationName: `scheduler ${n}` })
              ),
              Layer.provide(ConfigLayer)
            )
          ).pipe(Effect.orDie)
        const contexts = yield* Effect.forEach([1, 2, 3], process)
        const scheduler = Context.get(contexts[0]!, Scheduler.Scheduler)
        yield* scheduler.schedule("every-second", "* * * * * *", report, { team: "three" })
        const firedBy: Array<Array<string>> = [[], [], []]
        const loops = yield* Effect.forEach(contexts, (context, index) =>
          Effect.forkChild(
            Context.get(context, BuiltinScheduler.BuiltinScheduler).run({
              onFired: (runs) => Effect.sync(() => firedBy[index]!.push(...runs.map((run) => run.runId)))
            })
          ))
        const sql = yield* SqlClient.SqlClient
        const runs = sql(`${config.schema}.runs`)
        const count = Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM ${runs} WHERE id LIKE 'schedule:every-second:%'`,
          (rows) => rows[0]!.n
        )
        while ((yield* count) < 5) yield* Effect.sleep("200 millis")
        yield* Effect.forEach(loops, Fiber.interrupt)
        const fired = firedBy.flat()
        const stored = yield* sql<{ id: string; workflow: string; input: unknown }>`
        SELECT id, workflow, input FROM ${runs} WHERE id LIKE 'schedule:every-second:%' ORDER BY id`
        assert.strictEqual(fired.length, stored.length, "every run started was reported by exactly one scheduler")
        assert.strictEqual(new Set(fired).size, fired.length, "no tick was fired twice")
        assert.deepStrictEqual([...fired].sort(), stored.map((run) => run.id))
        const ticks = stored.map((run) => Date.parse(run.id.slice("schedule:every-second:".length)))
        for (let i = 1; i < ticks.length; i++) assert.strictEqual(ticks[i]! - ticks[i - 1]!, 1000, "no tick missed")
        assert.isTrue(stored.every((run) => run.workflow === "schedule_report"))
        assert.deepStrictEqual(stored[0]!.input, { team: "three" })
        // And workers execute them.
        const client = yield* Effect.map(
          Layer.build(Pgflows.layer({ workflows: [report] }).pipe(Layer.provideMerge(postgres.layer(config)))),
          (context) => Context.get(context, Pgflows.Pgflows)
        )
        while ((yield* client.processOnce) > 0) {
          // drain
        }
        assert.strictEqual(yield* client.result(stored[0]!.id), "report for three")
      }),
    120_000
  )

  it.effect("a schedule made in another process is found by the run loop's poll", () =>
    Effect.gen(function*() {
      const scheduler = yield* Scheduler.Scheduler
      const builtin = yield* BuiltinScheduler.BuiltinScheduler
      const fired: Array<string> = []
      const loop = yield* Effect.forkChild(builtin.run({
        pollInterval: "100 millis",
        onFired: (runs) => Effect.sync(() => fired.push(...runs.map((run) => run.schedule)))
      }))
      // Written straight into the table, as another process would: no in-process wake-up.
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      yield* sql`INSERT INTO ${sql(`${schema}.schedules`)} (name, cron, workflow, input, next_tick)
        VALUES ('elsewhere', '* * * * * *', 'schedule_report', '{"team":"e"}', now())`
      while (fired.length === 0) yield* Effect.sleep("50 millis")
      yield* Fiber.interrupt(loop)
      assert.strictEqual(fired[0], "elsewhere")
      assert.strictEqual((yield* scheduler.get("elsewhere")).cron, "* * * * * *")
    }).pipe(Effect.provide(postgresBackend.layer())))

  it.effect("pg_cron's command quotes values as PostgreSQL does, whatever standard_conforming_strings is", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const nasty = [
        "it's",
        "back\\slash",
        "\\' OR 1=1 --",
        "$$; DROP TABLE x; $$",
        "$tag$ $1 %s %L */ /*",
        "E'escaped\\n'",
        "line\nbreak\ttab",
        "ünïcødé ✓ 🎉",
        "''''",
        "\\\\\\"
      ]
      for (const text of nasty) {
        const [quoted] = yield* sql<{ q: string }>`SELECT quote_literal(${text}::text) AS q`
        const ours = PgCronScheduler.command({ schema, name: "q", workflow: text, input: {} })
        assert.include(ours, `enqueue_workflow(${quoted!.q}, `, `quoted like quote_literal: ${text}`)
      }
      for (const [index, text] of nasty.entries()) {
        const input = { team: text, nested: { [text]: [text] } }
        const command = PgCronScheduler.command({ schema, name: `nasty-${index}`, workflow: text, input })
        assert.deepStrictEqual(PgCronScheduler.parseCommand(command), {
          schema,
          name: `nasty-${index}`,
          workflow: text,
          input
        })
        // What pg_cron would do: run the command as it is, here in a session with the old escaping.
        const [ran] = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql.unsafe("SET LOCAL standard_conforming_strings = off")
          yield* sql.unsafe("SET LOCAL escape_string_warning = off")
          return yield* sql.unsafe<{ enqueue_workflow: string }>(command)
        }))
        assert.match(
          ran!.enqueue_workflow,
          new RegExp(`^schedule:nasty-${index}:\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:00Z$`)
        )
        const [run] = yield* sql<{ workflow: string; input: unknown }>`
          SELECT workflow, input FROM ${sql(`${schema}.runs`)} WHERE id = ${ran!.enqueue_workflow}`
        assert.deepStrictEqual(run, { workflow: text, input })
      }
      assert.isUndefined(PgCronScheduler.parseCommand("SELECT 1"))
      assert.isUndefined(PgCronScheduler.parseCommand(
        PgCronScheduler.command({ schema, name: "x", workflow: "w", input: {} }).replace("enqueue_workflow", "drop")
      ))
      assert.strictEqual(PgCronScheduler.jobName("pgflows", "nightly"), "pgflows:pgflows:nightly")
    }).pipe(Effect.provide(postgres.layer())))

  it.effect("without pg_cron, every call says how to install it", () =>
    Effect.gen(function*() {
      assert.isFalse(yield* PgCronScheduler.pgCronAvailable)
      const found = yield* PgCronScheduler.detect
      assert.isFalse(found.available)
      assert.isUndefined(found.version)
      const scheduler = yield* Scheduler.Scheduler
      assert.strictEqual(scheduler.kind, "pg_cron")
      const error = yield* Effect.flip(scheduler.list)
      assert.instanceOf(error, Scheduler.SchedulerUnavailable)
      assert.match(error.message, /^pg_cron is not usable in database "t_scheduler_/)
      assert.match(error.message, /shared_preload_libraries = 'pg_cron'/)
      assert.match(error.message, /CREATE EXTENSION pg_cron/)
      const scheduled = yield* Effect.flip(scheduler.schedule("x", "* * * * *", report, { team: "x" }))
      assert.instanceOf(scheduled, Scheduler.SchedulerUnavailable)
    }).pipe(Effect.provide(PgCronScheduler.layer.pipe(Layer.orDie, Layer.provideMerge(postgres.layer())))))
})
