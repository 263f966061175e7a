// The `pgflows` bin as a subprocess against a real PostgreSQL: migrate (and what the read commands
// do before it), runs list / show / cancel / retry / signal / fork with their JSON and text output,
// the error paths (a bad URL, no such run, a bad command line), a worker loaded from a plain
// JavaScript module and stopped with SIGTERM, and `pgflows dev` with a data directory kept across
// restarts.
import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Pgflows, Step, Workflow } from "pgflows"
import { pgflows, start } from "./fixtures/cli.ts"

class Declined extends Schema.TaggedError<Declined>()("Declined", { reason: Schema.String }) {}

const Order = Schema.Struct({ id: Schema.String, amount: Schema.Number })
const state = { declineLarge: true }

const charge = Step.make("charge", {
  input: Order,
  output: Schema.String,
  error: Declined,
  run: (order) =>
    Effect.suspend(() =>
      state.declineLarge && order.amount > 100
        ? Effect.fail(new Declined({ reason: `${order.amount} is over the limit` }))
        : Effect.succeed(`CHG-${order.id}`)
    )
})
const ship = Step.make("ship", {
  input: Order,
  output: Schema.String,
  run: (order) => Effect.succeed(`TRK-${order.id}`)
})

const order = Workflow.make("order", {
  input: Order,
  output: Schema.String,
  error: Declined,
  run: Effect.fn(function*(input) {
    const confirmation = yield* charge(input)
    return `${confirmation} ${yield* ship(input)}`
  })
})

const approval = Workflow.make("approval", {
  input: Schema.String,
  output: Schema.Boolean,
  run: Effect.fn(function*(subject) {
    yield* Workflow.setEvent("stage", { waiting: subject })
    const decision = yield* Workflow.waitForSignal("decision", Schema.Struct({ ok: Schema.Boolean }))
    return decision.ok
  })
})

const url = Effect.gen(function*() {
  return Redacted.value((yield* TestDatabase.TestDatabase).url)
})
const cli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string | undefined>> = {}) =>
  Effect.flatMap(
    url,
    (databaseUrl) => Effect.promise(() => pgflows(args, { PGFLOWS_DATABASE_URL: databaseUrl, ...env }))
  )
const cliJson = (args: ReadonlyArray<string>) =>
  Effect.map(cli([...args, "--json"]), (ran) => {
    assert.strictEqual(ran.code, 0, `pgflows ${args.join(" ")} --json: ${ran.stderr}`)
    return JSON.parse(ran.stdout) as any
  })
const statusOf = Effect.fnUntraced(function*(id: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ status: string }>`SELECT status FROM pgflows.runs WHERE id = ${id}`
  return rows[0]?.status
})

const id = Crypto.randomBytes(3).toString("hex")
const ids = {
  ok: `ORD-OK-${id}`,
  bad: `ORD-BAD-${id}`,
  later: `ORD-LATER-${id}`,
  waiting: `APP-1-${id}`,
  toCancel: `APP-2-${id}`
}

layer(TestDatabase.layer, { excludeTestServices: true, timeout: 120_000 })("pgflows (the bin)", (it) => {
  it.effect("--help on every command; a wrong command line exits 2 and says why", () =>
    Effect.gen(function*() {
      const root = yield* Effect.promise(() => pgflows(["--help"]))
      assert.strictEqual(root.code, 0)
      for (const name of ["dev", "migrate", "worker", "runs", "replay", "export-sql", "dashboard"]) {
        assert.include(root.stdout, name)
      }
      for (const command of [["runs", "list"], ["runs", "show"], ["runs", "signal"], ["worker"], ["dev"]]) {
        const help = yield* Effect.promise(() => pgflows([...command, "--help"]))
        assert.strictEqual(help.code, 0, command.join(" "))
        assert.include(help.stdout, `pgflows ${command.join(" ")}`)
      }
      const wrong = yield* cli(["runs", "list", "--status", "bogus"])
      assert.strictEqual(wrong.code, 2)
      assert.include(wrong.stderr, "--status")
      assert.include(wrong.stderr, "see `pgflows runs list --help`")
      const unknown = yield* cli(["runs", "frobnicate"])
      assert.strictEqual(unknown.code, 2)
      assert.include(unknown.stderr, "frobnicate")
    }), { timeout: 120_000 })

  it.effect("a bad URL: exit 1, the server, the variable and a hint, nothing on stdout", () =>
    Effect.gen(function*() {
      const ran = yield* Effect.promise(() =>
        pgflows(["runs", "list"], { PGFLOWS_DATABASE_URL: "postgres://nobody:secret@127.0.0.1:1/nowhere" })
      )
      assert.strictEqual(ran.code, 1)
      assert.strictEqual(ran.stdout, "")
      assert.include(ran.stderr, "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/nowhere")
      assert.include(ran.stderr, "set by PGFLOWS_DATABASE_URL")
      assert.include(ran.stderr, "is PostgreSQL running")
      assert.notInclude(ran.stderr, "secret")
      const missing = yield* Effect.promise(() => pgflows(["runs", "list"]))
      assert.strictEqual(missing.code, 1)
      assert.include(missing.stderr, "set PGFLOWS_DATABASE_URL (or DATABASE_URL)")
      const flag = yield* Effect.promise(() => pgflows(["runs", "list", "--database-url", "mysql://x"]))
      assert.strictEqual(flag.code, 2)
      assert.include(flag.stderr, "--database-url")
    }), { timeout: 120_000 })

  it.effect(
    "before migrate: the read commands and migrate --verify fail, saying how, and create nothing",
    () =>
      Effect.gen(function*() {
        const list = yield* cli(["runs", "list"])
        assert.strictEqual(list.code, 1)
        assert.include(list.stderr, "lacks migrations")
        const verify = yield* cli(["migrate", "--verify"])
        assert.strictEqual(verify.code, 1)
        assert.include(verify.stderr, "lacks migrations")
        const sql = yield* SqlClient.SqlClient
        const [schema] = yield* sql<{ missing: boolean }>`SELECT to_regnamespace('pgflows') IS NULL AS missing`
        assert.isTrue(schema?.missing)
      }),
    { timeout: 120_000 }
  )

  it.effect("migrate applies every installed set, then --verify passes", () =>
    Effect.gen(function*() {
      const applied = yield* cli(["migrate"])
      assert.strictEqual(applied.code, 0, applied.stderr)
      assert.include(applied.stdout, "pgflows: applied 1 (queue)")
      assert.include(applied.stdout, "server: applied 1 (step_calls)")
      assert.include(applied.stderr, "migrate: applying pgflows's migrations")
      const again = yield* cli(["migrate"])
      assert.include(again.stdout, "pgflows: up to date")
      const verify = yield* cli(["migrate", "--verify"])
      assert.strictEqual(verify.code, 0)
      assert.include(verify.stdout, "has every migration")
    }), { timeout: 120_000 })

  it.layer(Pgflows.layerPg({ workflows: [order, approval] }))("runs", (it) => {
    it.effect("list: runs in each state, filters, JSON and a table, pages", () =>
      Effect.gen(function*() {
        const client = yield* Pgflows.Pgflows
        yield* client.start(order, { id: "ok", amount: 10 }, { id: ids.ok })
        yield* client.start(order, { id: "bad", amount: 500 }, { id: ids.bad })
        yield* client.start(order, { id: "later", amount: 1 }, { id: ids.later, delay: "1 hour" })
        yield* client.start(approval, "contract", { id: ids.waiting })
        yield* client.start(approval, "other", { id: ids.toCancel })
        yield* client.processOnce
        yield* client.processOnce

        const all = yield* cliJson(["runs", "list"])
        const byId = new Map<string, string>(all.runs.map((run: any) => [run.id, run.status]))
        assert.deepStrictEqual(Object.fromEntries([...Object.values(ids)].map((run) => [run, byId.get(run)])), {
          [ids.ok]: "completed",
          [ids.bad]: "failed",
          [ids.later]: "pending",
          [ids.waiting]: "suspended",
          [ids.toCancel]: "suspended"
        })
        const failed = yield* cliJson(["runs", "list", "--status", "failed"])
        assert.deepStrictEqual(failed.runs.map((run: any) => run.id), [ids.bad])
        const ofApproval = yield* cliJson(["runs", "list", "-w", "approval"])
        assert.sameMembers(ofApproval.runs.map((run: any) => run.id), [ids.waiting, ids.toCancel])

        const firstPage = yield* cliJson(["runs", "list", "--limit", "2"])
        assert.strictEqual(firstPage.runs.length, 2)
        assert.isString(firstPage.nextCursor)
        const rest = yield* cliJson(["runs", "list", "--limit", "10", "--cursor", firstPage.nextCursor])
        assert.strictEqual(rest.runs.length, 3)

        const text = yield* cli(["runs", "list", "--workflow", "order"])
        assert.strictEqual(text.code, 0)
        assert.match(text.stdout, /^ID\s+WORKFLOW\s+VERSION\s+STATUS\s+EXECUTIONS\s+CREATED\s+TOOK$/m)
        assert.match(text.stdout, new RegExp(`^${ids.bad}\\s+order\\s+0\\s+failed`, "m"))
        assert.include(text.stdout, "3 runs")
      }), { timeout: 120_000 })

    it.effect("show: a timeline for people, the journal and typed error as JSON", () =>
      Effect.gen(function*() {
        const text = yield* cli(["runs", "show", ids.ok])
        assert.strictEqual(text.code, 0, text.stderr)
        assert.include(text.stdout, `run ${ids.ok}`)
        assert.include(text.stdout, "workflow    order (version 0)")
        assert.include(text.stdout, `output      "CHG-ok TRK-ok"`)
        assert.match(text.stdout, /^KEY\s+STEP\s+STATUS\s+ATTEMPTS\s+AT\s+TOOK\s+TIMELINE/m)
        assert.match(text.stdout, /^1\s+charge\s+completed\s+1\s+\+/m)
        assert.match(text.stdout, /^2\s+ship\s+completed\s+1\s+\+.*\|\s*#+\s*\|/m)

        const failed = yield* cliJson(["runs", "show", ids.bad])
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.error._tag, "Declined")
        assert.strictEqual(failed.error.reason, "500 is over the limit")
        assert.deepStrictEqual(failed.steps.map((step: any) => [step.name, step.status]), [["charge", "failed"]])
        const failedText = yield* cli(["runs", "show", ids.bad])
        assert.include(failedText.stdout, "error       Declined")

        const waiting = yield* cliJson(["runs", "show", ids.waiting])
        assert.deepStrictEqual(waiting.steps.map((step: any) => [step.name, step.status]), [
          ["pgflows.event", "completed"],
          ["pgflows.signal", "waiting"]
        ])
        const missing = yield* cli(["runs", "show", "no-such-run"])
        assert.strictEqual(missing.code, 1)
        assert.include(missing.stderr, `no run with id "no-such-run"`)
      }), { timeout: 120_000 })

    it.effect("cancel reaches the database; cancelling again says it had ended", () =>
      Effect.gen(function*() {
        const ran = yield* cli(["runs", "cancel", ids.toCancel])
        assert.strictEqual(ran.code, 0, ran.stderr)
        assert.include(ran.stdout, `cancelled run ${ids.toCancel}`)
        assert.strictEqual(yield* statusOf(ids.toCancel), "cancelled")
        const again = yield* cliJson(["runs", "cancel", ids.toCancel])
        assert.deepStrictEqual(again, { runId: ids.toCancel, outcome: "already-terminal" })
      }), { timeout: 120_000 })

    it.effect(
      "signal: the payload reaches the waiting run; a payload that is not JSON writes nothing",
      () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const signals = () =>
            Effect.map(
              sql<{ n: number }>`SELECT count(*)::int AS n FROM pgflows.signals WHERE run_id = ${ids.waiting}`,
              (rows) => rows[0]?.n
            )
          const bad = yield* cli(["runs", "signal", ids.waiting, "decision", "{ok: yes}"])
          assert.strictEqual(bad.code, 2)
          assert.include(bad.stderr, "the payload is not JSON")
          assert.strictEqual(yield* signals(), 0)

          const sent = yield* cli(["runs", "signal", ids.waiting, "decision", `{"ok": true}`])
          assert.strictEqual(sent.code, 0, sent.stderr)
          assert.include(sent.stdout, `sent signal "decision" to run ${ids.waiting}`)
          assert.strictEqual(yield* signals(), 1)
          const client = yield* Pgflows.Pgflows
          yield* client.processOnce
          assert.strictEqual(yield* client.result(ids.waiting, { timeout: "10 seconds" }), true)

          const ended = yield* cli(["runs", "signal", ids.waiting, "decision"])
          assert.strictEqual(ended.code, 1)
          assert.include(ended.stderr, "already ended")
        }),
      { timeout: 120_000 }
    )

    it.effect(
      "retry restarts a failed run at the step that failed; retrying a completed run says why not",
      () =>
        Effect.gen(function*() {
          state.declineLarge = false
          const ran = yield* cli(["runs", "retry", ids.bad])
          assert.strictEqual(ran.code, 0, ran.stderr)
          assert.include(ran.stdout, `retrying run ${ids.bad} from the step that failed`)
          assert.strictEqual(yield* statusOf(ids.bad), "pending")
          const client = yield* Pgflows.Pgflows
          yield* client.processOnce
          assert.strictEqual(yield* client.result(ids.bad, { timeout: "10 seconds" }), "CHG-bad TRK-bad")
          const again = yield* cli(["runs", "retry", ids.ok])
          assert.strictEqual(again.code, 1)
          assert.include(again.stderr, "it is completed")
        }),
      { timeout: 120_000 }
    )

    it.effect(
      "fork: a dry run plans and writes nothing; a fork starts a run that replays the kept steps",
      () =>
        Effect.gen(function*() {
          const plan = yield* cliJson(["runs", "fork", ids.ok, "--from-step", "ship", "--dry-run"])
          assert.strictEqual(plan.dryRun, true)
          assert.deepStrictEqual(plan.kept, ["1"])
          assert.deepStrictEqual(plan.rerun.map((step: any) => step.name), ["ship"])
          const forkId = `FORK-${id}`
          assert.isUndefined(yield* statusOf(forkId))
          const forked = yield* cli(["runs", "fork", ids.ok, "--from-step", "ship", "--id", forkId])
          assert.strictEqual(forked.code, 0, forked.stderr)
          assert.include(forked.stdout, `forked run ${ids.ok} as ${forkId}`)
          assert.strictEqual(yield* statusOf(forkId), "pending")
          const wrong = yield* cli(["runs", "fork", ids.ok, "--from-step", "nowhere"])
          assert.strictEqual(wrong.code, 1)
          assert.include(wrong.stderr, `cannot fork run "${ids.ok}" from "nowhere"`)
        }),
      { timeout: 120_000 }
    )
  })

  it.effect(
    "replay: the recorded runs against a module's code; export and replay --history; export-sql",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.resolve(import.meta.dirname, "../../../.tmp/cli-replay-"))
        const definition = (first: string) =>
          `import { Effect, Schema } from "effect"
import { Step, Workflow } from "pgflows"
class Declined extends Schema.TaggedError()("Declined", { reason: Schema.String }) {}
const Order = Schema.Struct({ id: Schema.String, amount: Schema.Number })
const charge = Step.make("${first}", { input: Order, output: Schema.String, error: Declined, run: () => Effect.succeed("x") })
const ship = Step.make("ship", { input: Order, output: Schema.String, run: () => Effect.succeed("y") })
export const workflows = [Workflow.make("order", {
  input: Order,
  output: Schema.String,
  error: Declined,
  run: Effect.fn(function*(input) { return (yield* charge(input)) + (yield* ship(input)) })
})]
`
        try {
          Fs.writeFileSync(Path.join(dir, "same.mjs"), definition("charge"))
          Fs.writeFileSync(Path.join(dir, "renamed.mjs"), definition("charge_card"))
          const same = yield* cli(["replay", Path.join(dir, "same.mjs"), "--status", "completed", "-w", "order"])
          assert.strictEqual(same.code, 0, same.stdout + same.stderr)
          assert.include(same.stdout, ids.ok)
          assert.include(same.stdout, "replay on this code")
          const renamed = yield* cli(["replay", Path.join(dir, "renamed.mjs"), "--status", "completed", "-w", "order"])
          assert.strictEqual(renamed.code, 1, renamed.stdout + renamed.stderr)
          assert.include(renamed.stdout, ids.ok)
          assert.include(renamed.stdout, "do not replay")

          const history = Path.join(dir, "ok.json")
          const exported = yield* cli(["runs", "export", ids.ok, "-o", history])
          assert.strictEqual(exported.code, 0, exported.stderr)
          assert.strictEqual(JSON.parse(Fs.readFileSync(history, "utf8")).run.id, ids.ok)
          const offline = yield* Effect.promise(() =>
            pgflows(["replay", Path.join(dir, "renamed.mjs"), "--history", history, "--json"])
          )
          assert.strictEqual(offline.code, 1)
          assert.strictEqual(JSON.parse(offline.stdout).ok, false)

          Fs.writeFileSync(
            Path.join(dir, "graphs.mjs"),
            `import { Effect, Schema } from "effect"
import { Step } from "pgflows"
import { Graph, GraphWorkflow } from "@pgflows/pg-durable"
const greet = Step.make("greet", { input: Schema.String, output: Schema.String, run: (name) => Effect.succeed("hi " + name) })
export const graphs = [GraphWorkflow.make("greeting", { input: Schema.String, graph: Graph.step(greet, { input: Graph.input() }) })]
`
          )
          const sql = yield* Effect.promise(() => pgflows(["export-sql", Path.join(dir, "graphs.mjs")]))
          assert.strictEqual(sql.code, 0, sql.stderr)
          assert.include(sql.stdout, "CREATE OR REPLACE FUNCTION")
          assert.include(sql.stdout, "pgd_start_greeting")
          const none = yield* Effect.promise(() => pgflows(["export-sql", Path.join(dir, "same.mjs")]))
          assert.strictEqual(none.code, 1)
          assert.include(none.stderr, "it exports no `graphs`")
        } finally {
          Fs.rmSync(dir, { recursive: true, force: true })
        }
      }),
    { timeout: 120_000 }
  )

  it.effect(
    "worker: loads a plain JavaScript module; SIGTERM lets the run in flight finish, then exits 0",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* url
        // Inside the repository, so that the module's `pgflows` and `effect` are the workspace's.
        const dir = Fs.mkdtempSync(Path.resolve(import.meta.dirname, "../../../.tmp/cli-worker-"))
        const module = Path.join(dir, "worker.mjs")
        Fs.writeFileSync(
          module,
          `import { Effect, Schema } from "effect"
import { Step, Workflow } from "pgflows"

const slow = Step.make("slow", {
  input: Schema.Number,
  output: Schema.String,
  run: (millis) => Effect.as(Effect.sleep(millis), "slept " + millis)
})
export const workflows = [Workflow.make("nap", { input: Schema.Number, output: Schema.String, run: (n) => slow(n) })]
`
        )
        const worker = start(["worker", module, "--concurrency", "2"], {
          PGFLOWS_DATABASE_URL: databaseUrl,
          PGFLOWS_SHUTDOWN_GRACE: "15 seconds"
        })
        try {
          yield* Effect.promise(() => worker.waitFor(/worker: ready/))
          const sql = yield* SqlClient.SqlClient
          const runId = `NAP-${id}`
          yield* sql`SELECT pgflows.enqueue_workflow('nap', '2500'::jsonb, ${runId})`
          yield* Effect.promise(async () => {
            const deadline = Date.now() + 20_000
            while (Date.now() < deadline) {
              const rows = await Effect.runPromise(
                sql<{ status: string }>`SELECT status FROM pgflows.runs WHERE id = ${runId}`
              )
              if (rows[0]?.status === "running") return
              await new Promise((resolve) => setTimeout(resolve, 50))
            }
            throw new Error("the run never ran")
          })
          worker.child.kill("SIGTERM")
          const exit = yield* Effect.promise(() => worker.exited)
          assert.strictEqual(exit.code, 0, worker.stderr())
          assert.include(worker.stderr(), "worker: SIGTERM: stopping")
          assert.include(worker.stderr(), "worker: stopped")
          assert.strictEqual(yield* statusOf(runId), "completed")
        } finally {
          if (worker.child.exitCode === null) worker.child.kill("SIGKILL")
          Fs.rmSync(dir, { recursive: true, force: true })
        }
        const broken = Path.join(dir, "missing.mjs")
        const refused = yield* cli(["worker", broken])
        assert.strictEqual(refused.code, 1)
        assert.include(refused.stderr, "there is no such file")
      }),
    { timeout: 120_000 }
  )

  it.effect(
    "dev: prints the URL, keeps the data across restarts, stops on Ctrl-C leaving no server",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.resolve(import.meta.dirname, "../../../.tmp/cli-dev-"))
        Fs.chmodSync(dir, 0o755)
        const data = Path.join(dir, "data")
        const once = (check: (databaseUrl: string) => Promise<void>) =>
          Effect.promise(async () => {
            const dev = start(["dev", "--data-dir", data, "--port", "0"])
            try {
              const [, databaseUrl] = await dev.waitFor(/^PGFLOWS_DATABASE_URL=(\S+)$/m, 90_000)
              await dev.waitFor(/dev: ready/)
              await check(databaseUrl!)
              const pid = Number(Fs.readFileSync(Path.join(data, "postmaster.pid"), "utf8").split("\n")[0])
              dev.child.kill("SIGINT")
              const exit = await dev.exited
              assert.strictEqual(exit.code, 0, dev.stderr())
              assert.throws(() => process.kill(pid, 0), /ESRCH/, "the PostgreSQL server is still running")
            } finally {
              if (dev.child.exitCode === null) dev.child.kill("SIGKILL")
            }
          })
        yield* once(async (databaseUrl) => {
          const list = await pgflows(["runs", "list", "--json"], { PGFLOWS_DATABASE_URL: databaseUrl })
          assert.strictEqual(list.code, 0, list.stderr)
          assert.deepStrictEqual(JSON.parse(list.stdout).runs, [])
          // A run written the way SQL callers do, to find it again after the restart.
          const migrated = await pgflows(["migrate", "--verify"], { PGFLOWS_DATABASE_URL: databaseUrl })
          assert.strictEqual(migrated.code, 0, migrated.stderr)
          const sqlRun = await pgflows(["runs", "show", "kept"], { PGFLOWS_DATABASE_URL: databaseUrl })
          assert.strictEqual(sqlRun.code, 1)
          await Effect.runPromise(
            Effect.gen(function*() {
              const sql = yield* SqlClient.SqlClient
              yield* sql`SELECT pgflows.enqueue_workflow('nap', '1'::jsonb, 'kept')`
            }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl) })))
          )
        })
        yield* once(async (databaseUrl) => {
          const shown = await pgflows(["runs", "show", "kept", "--json"], { PGFLOWS_DATABASE_URL: databaseUrl })
          assert.strictEqual(shown.code, 0, shown.stderr)
          assert.strictEqual(JSON.parse(shown.stdout).workflow, "nap")
        })
        Fs.rmSync(dir, { recursive: true, force: true })
      }),
    { timeout: 120_000 }
  )
})
