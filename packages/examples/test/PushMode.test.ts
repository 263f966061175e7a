/**
 * `npm run example:push` as a user runs it (a child process): on the embedded PostgreSQL, where
 * pg_durable is not installed and PgDurableHarness plays its side, with both bindings; then twice on
 * one database of its own (DATABASE_URL), read back afterwards. The docs page's transcript is checked
 * against the first run's output.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { PgDurableHarness } from "@pgflows/pg-durable"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { assertTranscript } from "./transcript.ts"

const pushMode = Path.resolve(import.meta.dirname, "../src/pushMode.ts")

const run = (env: Record<string, string | undefined>) =>
  Effect.promise(() =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const childEnv: Record<string, string | undefined> = { ...process.env, ...env }
      for (const [key, value] of Object.entries(env)) if (value === undefined) delete childEnv[key]
      const child = ChildProcess.spawn(process.execPath, [pushMode], {
        env: childEnv,
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (chunk) => output += chunk)
      child.stderr.on("data", (chunk) => output += chunk)
      child.on("exit", (code) => resolve({ code, output }))
    })
  )

const noDatabase = { DATABASE_URL: undefined, PGFLOWS_DATABASE_URL: undefined, PGDURABLE_STEP_BASE_URL: undefined }

/** What every run shows, whatever the database: both bindings, both claims, in the graph's order. */
const assertRun = (output: string) => {
  assert.match(output, /pg_durable is not installed in database "[^"]+": PgDurableHarness plays its side/)
  for (const binding of ["worker", "http"]) {
    // The second line that starts so opens the binding's section (the first says what it compiles to).
    const section = (output.split(`[push] ${binding} binding: `)[2] ?? "").split("\n[push] \n")[0]!
    assert.notStrictEqual(section, "", `no ${binding} section in\n${output}`)
    const ran = section.split("\n").filter((line) => /^\[push\] {3}s\d /.test(line)).map((line) => line.slice(9, 11))
    assert.deepStrictEqual(ran, ["s1", "s2", "s3", "s4", "s6", "s1", "s2", "s3", "s4", "s5"], `${binding}:\n${section}`)
    assert.match(section, /EXP-1 completed: paid 77\.28 EUR, by policy/)
    assert.match(section, /EXP-2 waits for a reviewer: signal "review" \{"approved":true,"reviewer":"dana"\} taken/)
    assert.match(section, /EXP-2 completed: paid 1462\.50 EUR, by dana/)
  }
  assert.match(output, /http binding: df\.http POSTs each call to http:\/\/127\.0\.0\.1:\d+\/steps\/<name>/)
  assert.notMatch(output, /ERROR|WARN|failed/)
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("npm run example:push", () => {
  it.live(
    "compiles the graph for both bindings and runs it through the harness on an embedded PostgreSQL",
    () =>
      Effect.gen(function*() {
        const { code, output } = yield* run(noDatabase)
        assert.strictEqual(code, 0, output)
        assertRun(output)
        assert.match(output, /worker binding: expense_claim compiles to \d+ pg_durable nodes, depth \d+/)
        const pid = Number(/\(pid (\d+)\)/.exec(output)?.[1])
        assert.isTrue(pid > 0, output)
        assert.isFalse(isAlive(pid), "the embedded postgres process is gone")
        assertTranscript("push-mode.md", output)
      }),
    90_000
  )
})

layer(TestDatabase.layer, { excludeTestServices: true, timeout: "3 minutes" })(
  "npm run example:push with DATABASE_URL",
  (
    it
  ) => {
    it.effect("runs twice on one database: the stand-in is installed once, every instance completed", () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const url = Redacted.value(database.url)
        for (const time of [1, 2]) {
          const { code, output } = yield* run({ ...noDatabase, DATABASE_URL: url })
          assert.strictEqual(code, 0, `run ${time}:\n${output}`)
          assert.match(output, /using postgresql:\/\/.*\(from the environment\)/)
          assertRun(output)
          const password = decodeURIComponent(new URL(url).password)
          if (password !== "") assert.notInclude(output, password)
        }
        const sql = yield* SqlClient.SqlClient
        assert.isTrue(yield* PgDurableHarness.isInstalled)
        const instances = yield* sql<{ label: string; status: string; n: number }>`
        SELECT label, status, count(*)::int AS n FROM df.instances GROUP BY label, status ORDER BY label`
        assert.deepStrictEqual(instances.map((row) => ({ ...row })), [
          { label: "EXP-1", status: "completed", n: 4 },
          { label: "EXP-2", status: "completed", n: 4 }
        ])
        const signals = yield* sql<{ n: number }>`SELECT count(DISTINCT instance_id)::int AS n FROM df.signals`
        assert.strictEqual(signals[0]!.n, 4, "each EXP-2 instance got its reviewer's signal")
      }))
  }
)
