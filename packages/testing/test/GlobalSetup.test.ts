/**
 * The global setup seen from outside: each test here runs a small vitest suite (test/fixtures) as a
 * child process and looks at what it did to PostgreSQL and to the process table.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { inject } from "vitest"
import * as Admin from "../src/internal/admin.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const vitestBin = Path.join(root, "node_modules/vitest/vitest.mjs")
const fixtureConfig = Path.join(import.meta.dirname, "fixtures/vitest.config.ts")

interface Record {
  readonly file: string
  readonly name: string
  readonly currentDatabase: string
  readonly system: string
  readonly directory: string
  readonly source: string
  readonly tablesBefore: number
  readonly markers: ReadonlyArray<string>
}

interface Run {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
  readonly records: ReadonlyArray<Record>
}

/** Runs the fixture suite; `whileRunning` may act on the child once `a` has started (for Ctrl-C). */
const runFixtures = (options: {
  readonly env: Readonly<globalThis.Record<string, string | undefined>>
  readonly whileRunning?: (child: ChildProcess.ChildProcess, out: string) => Promise<void>
}) =>
  Effect.promise(async (): Promise<Run> => {
    const out = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pgflows-fixture-"))
    const env: globalThis.Record<string, string | undefined> = { ...process.env }
    delete env.DATABASE_URL
    delete env.PGFLOWS_TEST_SERVER
    delete env.VITEST
    delete env.VITEST_POOL_ID
    delete env.VITEST_WORKER_ID
    Object.assign(env, options.env, { FIXTURE_OUT: out })
    const child = ChildProcess.spawn(process.execPath, [vitestBin, "run", "--config", fixtureConfig], {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (chunk) => output += chunk)
    child.stderr.on("data", (chunk) => output += chunk)
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on("exit", (code, signal) => resolve([code, signal]))
    )
    if (options.whileRunning !== undefined) await options.whileRunning(child, out)
    const [code, signal] = await exited
    const records = Fs.readdirSync(out)
      .filter((file) => file.endsWith(".json"))
      .sort()
      .map((file) => JSON.parse(Fs.readFileSync(Path.join(out, file), "utf8")) as Record)
    Fs.rmSync(out, { recursive: true, force: true })
    return { code, signal, output, records }
  })

/** Processes whose command line mentions `text` (a data directory), other than ourselves. */
const processesMentioning = (text: string): Array<string> =>
  Fs.readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .flatMap((pid) => {
      try {
        const cmdline = Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ")
        return cmdline.includes(text) ? [`${pid}: ${cmdline}`] : []
      } catch {
        return []
      }
    })

/** Waits up to `seconds` for the embedded server of `directory` to be gone, then reports what is left. */
const leftovers = (directory: string, seconds = 20) =>
  Effect.promise(async () => {
    const deadline = Date.now() + seconds * 1000
    while (Date.now() < deadline) {
      if (processesMentioning(directory).length === 0 && !Fs.existsSync(directory)) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return { processes: processesMentioning(directory), directoryExists: Fs.existsSync(directory) }
  })

const embeddedEnv = { PGFLOWS_TEST_DOCKER: "0" }

describe("global setup", () => {
  it.live("honours DATABASE_URL, and gives two test files two separate, empty databases", () =>
    Effect.gen(function*() {
      const server = inject("pgflows/testServer")
      const url = Redacted.make(server.url)
      const system = yield* Admin.use(url, (sql) =>
        sql<{ system: string }>`SELECT system_identifier::text AS system FROM pg_control_system()`)
      const run = yield* runFixtures({ env: { DATABASE_URL: server.url } })
      assert.strictEqual(run.code, 0, run.output)
      assert.match(run.output, /tests use DATABASE_URL/)
      assert.deepStrictEqual(
        run.records.map((r) =>
          r.file
        ),
        ["a", "b"]
      )
      for (const record of run.records) {
        assert.strictEqual(record.source, "DATABASE_URL")
        assert.strictEqual(record.system, system[0]?.system, "the child used the server DATABASE_URL names")
        assert.strictEqual(record.currentDatabase, record.name)
        assert.strictEqual(record.tablesBefore, 0, "a test database starts empty")
        assert.deepStrictEqual(record.markers, [record.file], "a file sees only its own rows")
      }
      assert.notStrictEqual(run.records[0]?.name, run.records[1]?.name)
      const remaining = yield* Admin.use(url, (sql) =>
        sql<{ datname: string }>`SELECT datname FROM pg_database
          WHERE datname IN (${run.records[0]!.name}, ${run.records[1]!.name}) OR datname LIKE 'pgflows_template%'`)
      assert.deepStrictEqual(
        remaining.map((r) => r.datname).filter((name) => name !== server.template),
        [],
        "test databases and the child's template are dropped after the run"
      )
    }), 120_000)

  it.live(
    "starts an embedded server when DATABASE_URL is unset and leaves no postgres process after the run",
    () =>
      Effect.gen(function*() {
        const run = yield* runFixtures({ env: embeddedEnv })
        assert.strictEqual(run.code, 0, run.output)
        assert.match(run.output, /tests use embedded PostgreSQL 18/)
        assert.strictEqual(run.records.length, 2)
        assert.strictEqual(run.records[0]?.source, "embedded")
        assert.strictEqual(run.records[0]?.system, run.records[1]?.system, "one server for the whole run")
        const left = yield* leftovers(run.records[0]!.directory, 5)
        assert.deepStrictEqual(left, { processes: [], directoryExists: false })
      }),
    120_000
  )

  it.live("stops the embedded server after a failing run", () =>
    Effect.gen(function*() {
      const run = yield* runFixtures({ env: { ...embeddedEnv, FIXTURE_FAIL: "1" } })
      assert.strictEqual(run.code, 1, run.output)
      assert.match(run.output, /fails on purpose/)
      const left = yield* leftovers(run.records[0]!.directory, 5)
      assert.deepStrictEqual(left, { processes: [], directoryExists: false })
    }), 120_000)

  it.live("stops the embedded server when the run is interrupted with Ctrl-C (SIGINT)", () =>
    Effect.gen(function*() {
      const run = yield* runFixtures({
        env: { ...embeddedEnv, FIXTURE_HANG: "1" },
        whileRunning: async (child, out) => {
          const deadline = Date.now() + 60_000
          while (!Fs.readdirSync(out).some((file) => file.endsWith(".started")) && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 100))
          }
          child.kill("SIGINT")
        }
      })
      assert.notStrictEqual(run.code, 0, run.output)
      assert.isAtLeast(run.records.length, 1, run.output)
      const left = yield* leftovers(run.records[0]!.directory)
      assert.deepStrictEqual(left, { processes: [], directoryExists: false })
    }), 120_000)
})
