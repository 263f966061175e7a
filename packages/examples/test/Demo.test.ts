/**
 * `npm start` as a user runs it: a child process, with and without DATABASE_URL.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { assertTranscript } from "./transcript.ts"

const demo = Path.resolve(import.meta.dirname, "../src/demo.ts")

const runDemo = (env: Record<string, string | undefined>) =>
  Effect.promise(() =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const childEnv: Record<string, string | undefined> = { ...process.env, ...env }
      for (const [key, value] of Object.entries(env)) if (value === undefined) delete childEnv[key]
      const child = ChildProcess.spawn(process.execPath, [demo], { env: childEnv, stdio: ["ignore", "pipe", "pipe"] })
      let output = ""
      child.stdout.on("data", (chunk) => output += chunk)
      child.stderr.on("data", (chunk) => output += chunk)
      child.on("exit", (code) => resolve({ code, output }))
    })
  )

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The table the demo prints: run id, status, steps with attempts, outcome. */
const table = (output: string) =>
  new Map(
    output.split("\n")
      .map((line) => /^\[demo\] (ORD-\S+)\s+(\w+)\s+(.+?)\s{2,}(.*)$/.exec(line))
      .filter((match) => match !== null)
      .map((match) => [match[1]!, { status: match[2]!, steps: match[3]!, outcome: match[4]! }])
  )

const assertOrders = (output: string) => {
  const rows = table(output)
  assert.strictEqual(rows.size, 8, output)
  assert.strictEqual([...rows.values()].filter((row) => row.status === "completed").length, 7)
  assert.deepStrictEqual(rows.get("ORD-1003-FLAKY"), {
    status: "completed",
    steps: "charge_payment(2) reserve_stock(1) ship(1)",
    outcome: "shipped, tracking TRK-ORD-1003-FLAKY"
  }, "the transient failure was retried")
  assert.strictEqual(rows.get("ORD-1004")?.status, "failed")
  assert.match(rows.get("ORD-1004")!.outcome, /^OutOfStock: only 1000 in stock/)
  assert.strictEqual(rows.get("ORD-1005")?.steps, "charge_payment(1) reserve_stock(1) sleep(1) ship(1)")
  assert.match(output, /progress: 8\/8 ended \| completed 7, failed 1/)
  assert.match(output, /dead-letter archive of queue pgflows_workflows: 1 message\(s\)/)
  // The crash: worker-A killed in ship_parcel; worker-B goes on; reserve_parcel ran once.
  assert.match(output, /worker-A is in ship_parcel: killing it with SIGKILL/)
  assert.match(output, /PARCEL-[0-9a-f]+ completed after 2 executions \(1 recovery\)/)
  assert.match(output, /reserve_parcel\s+1\s+worker-A\n/)
  assert.match(output, /ship_parcel\s+2\s+worker-A, worker-B\n/)
  assert.match(output, /send_notice\s+1\s+worker-B\n/)
}

describe("npm start", () => {
  it.live("runs the order batch on an embedded PostgreSQL and leaves no server behind", () =>
    Effect.gen(function*() {
      const { code, output } = yield* runDemo({ DATABASE_URL: undefined, PGFLOWS_DATABASE_URL: undefined })
      assert.strictEqual(code, 0, output)
      assert.match(output, /connected with @effect\/sql-pg: PostgreSQL 18\.\d+/)
      assertOrders(output)
      const pid = Number(/\(pid (\d+)\)/.exec(output)?.[1])
      assert.isTrue(pid > 0, output)
      assert.isFalse(isAlive(pid), "the embedded postgres process is gone")
      assert.match(output, /embedded PostgreSQL stopped, its data directory removed/)
      assertTranscript("order-demo.md", output)
    }), 60_000)
})

layer(TestDatabase.layerDatabase)("npm start with DATABASE_URL", (it) => {
  it.effect("uses that database, and never prints its password", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const url = Redacted.value(database.url)
      const { code, output } = yield* runDemo({ DATABASE_URL: url, PGFLOWS_DATABASE_URL: undefined })
      assert.strictEqual(code, 0, output)
      assert.match(output, /using postgresql:\/\/.*\(from the environment\)/)
      assert.notMatch(output, /starting an embedded/)
      assertOrders(output)
      const password = decodeURIComponent(new URL(url).password)
      if (password !== "") assert.notInclude(output, password)
    }), { timeout: 60_000 })
})
