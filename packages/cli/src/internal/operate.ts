/**
 * The commands that operate a deployment: `migrate`, `worker`, `replay` and `export-sql`.
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Fs from "node:fs"
import * as DatabaseUrl from "pgflows/DatabaseUrl"
import * as Pgflows from "pgflows/Pgflows"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import * as PgMigrations from "pgflows/PgMigrations"
import * as ReplayCheck from "pgflows/ReplayCheck"
import * as Run from "pgflows/Run"
import * as RunHistory from "pgflows/RunHistory"
import * as WorkerModule from "../WorkerModule.ts"
import * as Database from "./database.ts"
import { fail, stopsOnSignal } from "./exit.ts"
import { databaseUrl, json, progress } from "./runs.ts"

const where = (config: PgflowsConfig.PgflowsConfig) =>
  `schema "${config.schema}" at ${config.databaseUrl === undefined ? "?" : DatabaseUrl.describe(config.databaseUrl)}`

/** Applies (or checks) every migration set installed, saying what it does as it goes. */
export const migrateAll = (verifyOnly: boolean) =>
  Effect.gen(function*() {
    const config = yield* PgflowsConfig.PgflowsConfig
    const sets = yield* Database.migrationSets
    if (verifyOnly) {
      yield* Effect.forEach(sets, PgMigrations.check, { discard: true })
      const count = sets.reduce((sum, set) => sum + set.migrations(config.schema).length, 0)
      return `${where(config)} has every migration (${count}, of ${sets.map((set) => set.name).join(", ")})`
    }
    const lines: Array<string> = []
    for (const set of sets) {
      yield* progress(`migrate: applying ${set.name}'s migrations to ${where(config)}...`)
      const applied = yield* PgMigrations.apply(set)
      lines.push(
        applied.length === 0
          ? `${set.name}: up to date`
          : `${set.name}: applied ${applied.map(([id, name]) => `${id} (${name})`).join(", ")}`
      )
    }
    return lines.join("\n")
  })

export const migrate = Command.make("migrate", {
  databaseUrl,
  verify: Flag.Boolean("verify").pipe(
    Flag.withDescription("Only check that no migration is missing (exit 1 when one is); write nothing"),
    Flag.withDefault(false)
  )
}, (input) =>
  Effect.flatMap(migrateAll(input.verify), Console.log).pipe(
    Effect.provide(Database.layerDatabase({ databaseUrl: input.databaseUrl, migrations: "off" }, 1))
  )).pipe(
    Command.withDescription(
      "Apply pgflows' migrations (and those of @pgflows/pg-durable and @pgflows/server when installed)"
    )
  )

const modulePath = Argument.String("module").pipe(
  Argument.withDescription("The compiled module that exports `workflows` (and optionally `layer`)")
)

export const worker = Command.make("worker", {
  databaseUrl,
  module: modulePath,
  concurrency: Flag.Int("concurrency").pipe(
    Flag.withAlias("c"),
    Flag.withDescription("Runs executed at once (default PGFLOWS_WORKER_CONCURRENCY, 16)"),
    Flag.filter((n) => n >= 1 && n <= 10_000, (n) => `the concurrency must be from 1 to 10000, not ${n}`),
    Flag.optional
  )
}, (input) =>
  Effect.gen(function*() {
    const loaded = yield* WorkerModule.load(input.module)
    const services = loaded.layer ?? Layer.empty
    const engine = Pgflows.layerPg({ workflows: loaded.workflows }).pipe(
      Layer.provide(services),
      Layer.provideMerge(Database.layerDatabase({ databaseUrl: input.databaseUrl }, 10))
    )
    yield* Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      const config = yield* PgflowsConfig.PgflowsConfig
      const concurrency = Option.getOrElse(input.concurrency, () => config.workerConcurrency)
      const served = loaded.workflows.map((w) => `${w.name} v${w.version}`).join(", ")
      yield* progress(
        `worker: serving ${served} from ${where(config)}, queue ${config.queue}, concurrency ${concurrency}`
      )
      yield* progress(
        `worker: ready; SIGTERM or Ctrl-C stops it gracefully (runs in flight get ${
          Duration.format(config.shutdownGrace)
        }, PGFLOWS_SHUTDOWN_GRACE, to finish; the rest are handed back), then it exits 0`
      )
      stopsOnSignal()
      const onSignal = (signal: string) => () =>
        process.stderr.write(`worker: ${signal}: stopping (no more claims; runs in flight finish or are handed back)\n`)
      process.once("SIGTERM", onSignal("SIGTERM"))
      process.once("SIGINT", onSignal("SIGINT"))
      return yield* client.runWorker({ concurrency }).pipe(
        Effect.onInterrupt(() => progress("worker: stopped"))
      )
    }).pipe(Effect.provide(engine))
  })).pipe(
    Command.withDescription("Run a worker for the workflows a module exports, until SIGTERM or Ctrl-C (then exit 0)"),
    Command.withExamples([{ command: "pgflows worker dist/worker.js --concurrency 32", description: "" }])
  )

const verdictJson = (verdict: ReplayCheck.Verdict) => JSON.parse(JSON.stringify(verdict)) as unknown

export const replay = Command.make("replay", {
  databaseUrl,
  json,
  module: modulePath,
  history: Flag.String("history").pipe(
    Flag.withDescription("Check this exported history (pgflows runs export) instead of the database; repeatable"),
    Flag.atLeast(0)
  ),
  workflow: Flag.String("workflow").pipe(
    Flag.withAlias("w"),
    Flag.withDescription("Only runs of this workflow"),
    Flag.optional
  ),
  status: Flag.Literals("status", Run.statuses).pipe(
    Flag.withDescription("Runs in this state (default: those not ended)"),
    Flag.optional
  )
}, (input) =>
  Effect.gen(function*() {
    const loaded = yield* WorkerModule.load(input.module)
    const report = input.history.length > 0
      ? yield* Effect.gen(function*() {
        const histories = yield* Effect.forEach(input.history, (file) =>
          Effect.try({
            try: () => Fs.readFileSync(file, "utf8"),
            catch: (error) => fail(`cannot read ${file}: ${(error as Error).message}`)
          }).pipe(Effect.flatMap(RunHistory.fromJson)))
        return yield* ReplayCheck.histories(loaded.workflows, histories)
      })
      : yield* Effect.gen(function*() {
        if (!input.json) yield* progress("replay: reading the runs in flight...")
        return yield* ReplayCheck.stored(loaded.workflows, {
          workflow: Option.getOrUndefined(input.workflow),
          statuses: Option.isSome(input.status) ? [input.status.value] : undefined
        })
      }).pipe(Effect.provide(Database.layerClient({ databaseUrl: input.databaseUrl })))
    if (input.json) {
      yield* Console.log(JSON.stringify({ ok: report.ok, verdicts: report.verdicts.map(verdictJson) }, null, 2))
    } else {
      const text = ReplayCheck.format(report)
      yield* Console.log(text === "" ? "no run to check" : text)
      yield* Console.log(
        report.ok
          ? `replay: ${report.verdicts.length} run(s) replay on this code`
          : "replay: some runs do not replay on this code (see above)"
      )
    }
    if (!report.ok) return yield* fail("the replay check failed", 1)
  })).pipe(
    Command.withDescription(
      "Replay the runs in flight (or exported histories) against a module's workflows, executing nothing; " +
        "exit 1 when one diverges"
    )
  )

export const exportSql = Command.make("export-sql", {
  module: Argument.String("module").pipe(
    Argument.withDescription("The compiled module that exports `graphs` (pg-durable graph workflows)")
  ),
  workflow: Flag.String("workflow").pipe(
    Flag.withAlias("w"),
    Flag.withDescription("Only this graph workflow (default: every one)"),
    Flag.optional
  ),
  output: Flag.String("output").pipe(
    Flag.withAlias("o"),
    Flag.withDescription("Write one <workflow>.sql file per workflow into this directory (default: stdout)"),
    Flag.optional
  )
}, (input) =>
  Effect.gen(function*() {
    const durable = yield* Effect.promise(() => Database.optional(() => import("@pgflows/pg-durable/SqlExporter")))
    const graphs = yield* Effect.promise(() => Database.optional(() => import("@pgflows/pg-durable/GraphWorkflow")))
    if (durable === undefined || graphs === undefined) {
      return yield* fail("export-sql needs @pgflows/pg-durable: npm install @pgflows/pg-durable")
    }
    const loaded = yield* WorkerModule.load(input.module, "graphs")
    const index = loaded.graphs!.findIndex((graph) => !graphs.isGraphWorkflow(graph))
    if (index >= 0) {
      return yield* fail(`${loaded.path}: graphs[${index}] is not a graph workflow (GraphWorkflow.make)`)
    }
    const config = yield* PgflowsConfig.fromEnv
    const exporter = yield* durable.make({ workflows: loaded.graphs as ReadonlyArray<any> }).pipe(
      Effect.provideService(PgflowsConfig.PgflowsConfig, config)
    )
    const scripts = Option.isSome(input.workflow)
      ? [{ workflow: input.workflow.value, sql: yield* exporter.exportWorkflow(input.workflow.value) }]
      : yield* exporter.exportAll
    if (Option.isNone(input.output)) {
      return yield* Console.log(scripts.map((script) => script.sql).join("\n"))
    }
    const directory = input.output.value
    yield* Effect.try({
      try: () => {
        Fs.mkdirSync(directory, { recursive: true })
        for (const script of scripts) Fs.writeFileSync(`${directory}/${script.workflow}.sql`, script.sql)
      },
      catch: (error) => fail(`cannot write into ${directory}: ${(error as Error).message}`)
    })
    yield* progress(`export-sql: wrote ${scripts.map((s) => `${directory}/${s.workflow}.sql`).join(", ")}`)
  })).pipe(Command.withDescription("Export graph workflows as SQL scripts for pg_durable (SqlExporter)"))
