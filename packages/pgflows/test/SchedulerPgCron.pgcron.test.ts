// PgCronScheduler against a real pg_cron: a PostgreSQL 15 server of its own (Debian's binaries, and
// the pg_cron that scripts/pg-cron.sh installs from .ci/run: 1.6 built from source, else Debian's
// postgresql-15-cron, 1.4), started with pg_cron preloaded, running its jobs through background
// workers. Skipped, with one line saying why, when either is missing.
import { PgClient } from "@effect/sql-pg"
import { assert, describe, layer } from "@effect/vitest"
import { EmbeddedServer } from "@pgflows/testing"
import { Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { PgCronScheduler, Pgflows, PgflowsConfig, Scheduler, Workflow } from "pgflows"

const bin = process.env.PGFLOWS_PGCRON_BIN ?? "/usr/lib/postgresql/15/bin"

/** Why the live tests cannot run here, or `undefined` when they can. */
const unavailable = (): string | undefined => {
  if (!Fs.existsSync(Path.join(bin, "postgres"))) return `no PostgreSQL binaries in ${bin} (PGFLOWS_PGCRON_BIN)`
  const pkglibdir = ChildProcess.spawnSync(Path.join(bin, "pg_config"), ["--pkglibdir"], { encoding: "utf8" })
  const lib = pkglibdir.status === 0 ? pkglibdir.stdout.trim() : Path.join(bin, "..", "lib")
  if (!Fs.existsSync(Path.join(lib, "pg_cron.so"))) {
    return `pg_cron is not installed for the PostgreSQL in ${bin} (no ${lib}/pg_cron.so; ` +
      "run scripts/pg-cron.sh, or apt-get install postgresql-15-cron)"
  }
  return undefined
}

const skipped = unavailable()
if (skipped !== undefined) console.info(`[pgflows] pg_cron live tests skipped: ${skipped}`)

/** PostgreSQL 15 with pg_cron loaded, its jobs run by background workers in database `postgres`. */
const Server = Layer.unwrap(Effect.gen(function*() {
  const server = yield* EmbeddedServer.start({
    binDirectory: bin,
    durability: "fast",
    settings: {
      shared_preload_libraries: "pg_cron",
      "cron.database_name": "postgres",
      "cron.use_background_workers": "on",
      max_worker_processes: 32
    }
  })
  return PgClient.layer({ url: server.url, maxConnections: 6, applicationName: "pgflows pg_cron live" })
})).pipe(
  Layer.tap((context) =>
    Effect.provide(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE EXTENSION IF NOT EXISTS pg_cron`), context)
  ),
  Layer.orDie
)

const Tick = Schema.Struct({ note: Schema.String })

const tick = Workflow.make("cron_tick", {
  input: Tick,
  output: Schema.String,
  run: (input) => Effect.succeed(`ticked: ${input.note}`)
})

const Live = Layer.mergeAll(Pgflows.layerPg({ workflows: [tick] }), PgCronScheduler.layer).pipe(
  Layer.orDie,
  Layer.provideMerge(PgflowsConfig.layer({ pollInterval: "200 millis" }).pipe(Layer.orDie)),
  Layer.provideMerge(Server)
)

describe.skipIf(skipped !== undefined)(`pg_cron live${skipped === undefined ? "" : ` (skipped: ${skipped})`}`, () => {
  layer(Live, { excludeTestServices: true, timeout: "2 minutes" })((it) => {
    it.effect("pg_cron is detected, with its version", () =>
      Effect.gen(function*() {
        const found = yield* PgCronScheduler.detect
        console.info(`[pgflows] pg_cron ${found.version} (seconds schedules: ${found.seconds ? "yes" : "no"})`)
        assert.isTrue(found.available)
        assert.isTrue(found.preloaded)
        assert.strictEqual(found.cronDatabase, "postgres")
        assert.isTrue(yield* PgCronScheduler.pgCronAvailable)
        // shared_preload_libraries and pg_cron's settings are superuser-only: a role that may not read
        // them still gets an answer (not an error).
        const sql = yield* SqlClient.SqlClient
        yield* sql`DO $$ BEGIN CREATE ROLE pgflows_cron_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$`
        const asReader = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`SET LOCAL ROLE pgflows_cron_reader`
          return yield* PgCronScheduler.detect
        }))
        assert.deepStrictEqual(
          [asReader.available, asReader.version, asReader.seconds, asReader.preloaded, asReader.timezone],
          [true, found.version, found.seconds, false, "UTC"]
        )
      }))

    it.effect("schedule, list, pause, resume, replace, trigger and unschedule are pg_cron jobs", () =>
      Effect.gen(function*() {
        const scheduler = yield* Scheduler.Scheduler
        const sql = yield* SqlClient.SqlClient
        const note = "it's a \\ back'slash $$ and $tag$ {x} -- \"quoted\""
        const made = yield* scheduler.schedule("api-check", "@hourly", tick, { note })
        assert.deepStrictEqual(
          [made.scheduler, made.cron, made.workflow, made.input, made.paused, made.catchUp, made.timezone],
          ["pg_cron", "@hourly", "cron_tick", { note }, false, "skip", "UTC"]
        )
        const [job] = yield* sql<{ jobname: string; schedule: string; active: boolean; command: string }>`
          SELECT jobname::text AS jobname, schedule, active, command FROM cron.job WHERE jobid = ${made.handle}::bigint`
        assert.strictEqual(job!.jobname, "pgflows:pgflows:api-check")
        assert.strictEqual(job!.schedule, "@hourly")
        assert.deepStrictEqual(PgCronScheduler.parseCommand(job!.command)?.input, { note })

        const taken = yield* Effect.flip(scheduler.schedule("api-check", "0 3 * * *", tick, { note: "x" }))
        assert.instanceOf(taken, Scheduler.ScheduleAlreadyExists)
        assert.isTrue((yield* scheduler.pause("api-check")).paused)
        const replaced = yield* scheduler.schedule("api-check", "0 3 * * *", tick, { note: "later" }, { replace: true })
        assert.deepStrictEqual([replaced.cron, replaced.input, replaced.paused], ["0 3 * * *", { note: "later" }, true])
        assert.isFalse((yield* scheduler.resume("api-check")).paused)
        assert.deepStrictEqual((yield* scheduler.list).map((s) => s.name), ["api-check"])

        const id = yield* scheduler.trigger("api-check")
        assert.match(id, /^schedule:api-check:manual:/)
        const client = yield* Pgflows.Pgflows
        yield* client.processOnce
        assert.strictEqual(yield* client.result(id, { timeout: "30 seconds" }), "ticked: later")

        yield* scheduler.unschedule("api-check")
        assert.deepStrictEqual(yield* scheduler.list, [])
        assert.instanceOf(yield* Effect.flip(scheduler.get("api-check")), Scheduler.ScheduleNotFound)
        assert.deepStrictEqual(yield* sql`SELECT jobid FROM cron.job WHERE jobid = ${made.handle}::bigint`, [])
      }))

    it.effect("what pg_cron cannot do is refused with what to do instead", () =>
      Effect.gen(function*() {
        const scheduler = yield* Scheduler.Scheduler
        const found = yield* PgCronScheduler.detect
        const zone = yield* Effect.flip(
          scheduler.schedule("zoned", "30 2 * * *", tick, { note: "z" }, { timezone: "Europe/Berlin" })
        )
        assert.instanceOf(zone, Scheduler.InvalidTimeZone)
        assert.match(zone.message, /pg_cron, which reads schedules in UTC/)
        const catchUp = yield* Effect.flip(
          scheduler.schedule("caught", "* * * * *", tick, { note: "c" }, { catchUp: "all" })
        )
        assert.instanceOf(catchUp, Scheduler.UnsupportedScheduleOption)
        const sixFields = yield* Effect.flip(scheduler.schedule("odd", "7 * * * * *", tick, { note: "s" }))
        assert.instanceOf(sixFields, Scheduler.InvalidCron)
        assert.strictEqual(sixFields.field, "second")
        if (found.seconds) {
          // pg_cron 1.5 and later run "N seconds", which a seconds field can only mean as "*/N" with N
          // dividing a minute.
          const uneven = yield* Effect.flip(scheduler.schedule("uneven", "*/7 * * * * *", tick, { note: "s" }))
          assert.instanceOf(uneven, Scheduler.InvalidCron)
          assert.strictEqual(uneven.field, "second")
        } else {
          const seconds = yield* Effect.flip(scheduler.schedule("fast", "5 seconds", tick, { note: "s" }))
          assert.instanceOf(seconds, Scheduler.InvalidCron)
          assert.match(seconds.message, /pg_cron 1\.4[^ ]* has no schedules of seconds \(they came in pg_cron 1\.5\)/)
        }
        assert.deepStrictEqual(yield* scheduler.list, [])
      }))

    it.effect(
      "a scheduled job fires: pg_cron enqueues the run and a worker completes it",
      () =>
        Effect.gen(function*() {
          const scheduler = yield* Scheduler.Scheduler
          const client = yield* Pgflows.Pgflows
          const found = yield* PgCronScheduler.detect
          // pg_cron 1.4 runs jobs once a minute at most; 1.5 and later every few seconds.
          const every = found.seconds ? "2 seconds" : "* * * * *"
          const worker = yield* Effect.forkChild(client.runWorker())
          const made = yield* scheduler.schedule("live-tick", every, tick, { note: "from pg_cron" })
          assert.strictEqual(made.cron, every)
          let completed: string | undefined
          while (completed === undefined) {
            const page = yield* client.list({ workflow: "cron_tick", status: "completed" })
            completed = page.runs.find((run) => run.id.startsWith("schedule:live-tick:"))?.id
            if (completed === undefined) yield* Effect.sleep("500 millis")
          }
          yield* Fiber.interrupt(worker)
          assert.match(completed, /^schedule:live-tick:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
          assert.strictEqual(yield* client.result(completed), "ticked: from pg_cron")
          // pg_cron records the job's run as succeeded (once the command's transaction is done).
          const sql = yield* SqlClient.SqlClient
          const { handle } = yield* scheduler.get("live-tick")
          const succeeded = sql<{ n: number }>`SELECT count(*)::int AS n FROM cron.job_run_details
          WHERE jobid = ${handle}::bigint AND status = 'succeeded'`
          let runs = 0
          for (let i = 0; i < 100 && runs === 0; i++) {
            runs = (yield* succeeded)[0]!.n
            if (runs === 0) yield* Effect.sleep("100 millis")
          }
          assert.isAbove(runs, 0)
          assert.isDefined((yield* scheduler.get("live-tick")).lastTick, "list shows the job's last run")
          yield* scheduler.unschedule("live-tick")
        }),
      150_000
    )
  })
})
