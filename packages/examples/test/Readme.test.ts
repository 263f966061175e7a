// The README's quick start is packages/examples/src/quickstart.ts, and it runs.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { assertTranscript } from "./transcript.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const quickstart = Path.join(root, "packages/examples/src/quickstart.ts")

/** The first `ts` code block of a README section (`## heading`). */
const readmeBlock = (heading: string): string | undefined => {
  const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
  const start = readme.indexOf(`\n## ${heading}\n`)
  if (start < 0) return undefined
  const section = readme.slice(start + 1).split(/\n## /)[0]!
  return /```ts\n([\s\S]*?)```/.exec(section)?.[1]
}

/** A file as the README shows it: without its first line (a comment that says where it is from). */
const shown = (file: string) => Fs.readFileSync(Path.join(root, file), "utf8").split("\n").slice(1).join("\n")

layer(TestDatabase.layer, { excludeTestServices: true })("README examples", (it) => {
  it.effect("the README shows quickstart.ts as it is", () =>
    Effect.sync(() => {
      const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
      const block = /## Quick start\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1]
      const source = Fs.readFileSync(quickstart, "utf8").split("\n").slice(1).join("\n")
      assert.strictEqual(block, source)
    }))

  it.effect("the README shows approval.ts as it is, and it runs", () =>
    Effect.sync(() => {
      const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
      const block = /## Durable primitives\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1]
      const file = Path.join(root, "packages/examples/src/approval.ts")
      assert.strictEqual(block, Fs.readFileSync(file, "utf8").split("\n").slice(1).join("\n"))
      const result = ChildProcess.spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 60_000 })
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      assert.match(result.stdout, /ORD-7: \{"stage":"awaiting approval","placedAt":"[^"]+"\}/)
      assert.match(result.stdout, /ORD-7: shipped with TRK-ORD-7/)
      assert.match(result.stdout, /refunded CHG-ORD-8\nORD-8: failed: Declined/)
      assertTranscript("approval.md", result.stdout)
    }), { timeout: 60_000 })

  it.effect("the README shows observability.ts as it is; it logs, counts and traces", () =>
    Effect.sync(() => {
      const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
      const block = /## Plugins, logging, metrics and tracing\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1]
      const file = Path.join(root, "packages/examples/src/observability.ts")
      assert.strictEqual(block, Fs.readFileSync(file, "utf8").split("\n").slice(1).join("\n"))
      const result = ChildProcess.spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 60_000 })
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      assert.match(result.stdout, /step reserve attempt 1 failed, will retry: Busy/)
      assert.match(result.stdout, /'pgflows\.step\.attempt': 2/)
      assert.match(result.stdout, /audit: reserve attempt 1 failed \(final: false\)/)
      assert.match(result.stdout, /result: shipped R-ORD-9/)
      assert.match(result.stdout, /metrics: reserve retried 1 time\(s\)/)
      assert.match(
        result.stdout,
        /spans: pgflows\.step reserve, pgflows\.step reserve, call carrier, pgflows\.step ship, pgflows\.workflow order/
      )
      assertTranscript("observability.md", result.stdout)
    }), { timeout: 60_000 })

  it.effect("the README shows worker.ts, deadLetters.ts, retention.ts and Reminder.test.ts as they are", () =>
    Effect.sync(() => {
      assert.strictEqual(readmeBlock("Running workers in production"), shown("packages/examples/src/worker.ts"))
      assert.strictEqual(readmeBlock("Dead letters"), shown("packages/examples/src/deadLetters.ts"))
      assert.strictEqual(readmeBlock("Retention"), shown("packages/examples/src/retention.ts"))
      assert.strictEqual(readmeBlock("Testing your workflows"), shown("packages/examples/test/Reminder.test.ts"))
    }))

  it.effect(
    "the README shows flowControl.ts as it is; its limits and priorities order the claims",
    () =>
      Effect.sync(() => {
        assert.strictEqual(readmeBlock("Queues and flow control"), shown("packages/examples/src/flowControl.ts"))
        const result = ChildProcess.spawnSync(
          process.execPath,
          [Path.join(root, "packages/examples/src/flowControl.ts")],
          { encoding: "utf8", timeout: 60_000 }
        )
        assert.strictEqual(result.status, 0, result.stdout + result.stderr)
        assert.strictEqual(
          result.stdout,
          [
            "emails: 4 due, 0 running",
            "deliver to hank@globex.test",
            "deliver to ann@acme.test",
            "pass 1: 2 emails",
            "deliver to bob@acme.test",
            "deliver to peter@initech.test",
            "pass 2: 2 emails",
            ""
          ].join("\n")
        )
      }),
    { timeout: 60_000 }
  )
  it.effect("retention.ts purges the completed runs with their journals", () =>
    Effect.sync(() => {
      const result = ChildProcess.spawnSync(process.execPath, [Path.join(root, "packages/examples/src/retention.ts")], {
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      assert.deepStrictEqual(result.stdout.trim().split("\n"), ["purged 2 runs (4 rows)", "runs left: 0"])
    }), { timeout: 60_000 })

  it.effect("deadLetters.ts lists, inspects and retries the failed runs", () =>
    Effect.sync(() => {
      const result = ChildProcess.spawnSync(
        process.execPath,
        [Path.join(root, "packages/examples/src/deadLetters.ts")],
        {
          encoding: "utf8",
          timeout: 60_000
        }
      )
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      const lines = result.stdout.trim().split("\n")
      assert.strictEqual(
        lines.filter((line) => /: CardExpired \(card 4242\), step charge failed$/.test(line)).length,
        2
      )
      assert.strictEqual(lines.filter((line) => /: CHG-ORD-[12]$/.test(line)).length, 2)
      assertTranscript("dead-letters.md", result.stdout)
    }), { timeout: 60_000 })

  it.effect(
    "worker.ts runs workflows configured by the environment and stops on SIGTERM with nothing left running",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const schema = `worker_${Date.now().toString(36)}`
        const env = {
          ...process.env,
          PGFLOWS_DATABASE_URL: Redacted.value(database.url),
          PGFLOWS_SCHEMA: schema,
          PGFLOWS_POLL_INTERVAL: "100 millis",
          PGFLOWS_SHUTDOWN_GRACE: "5 seconds"
        }
        const child = ChildProcess.spawn(process.execPath, [Path.join(root, "packages/examples/src/worker.ts")], {
          env,
          stdio: ["ignore", "pipe", "pipe"]
        })
        let output = ""
        child.stdout.on("data", (chunk) => output += chunk)
        child.stderr.on("data", (chunk) => output += chunk)
        const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
        const sql = yield* SqlClient.SqlClient
        const deadline = Date.now() + 30_000
        while (!/worker \S+ started/.test(output) && Date.now() < deadline) yield* Effect.sleep("50 millis")
        assert.match(output, /worker \S+ started/)
        const enqueue = sql(`${schema}.enqueue_workflow`)
        yield* sql`SELECT ${enqueue}('process_order', '{"orderId":"ORD-W1","amount":10,"express":false}'::jsonb, 'ORD-W1')`
        const runs = sql(`${schema}.runs`)
        let status = ""
        while (status !== "completed" && Date.now() < deadline) {
          status = (yield* sql<{ status: string }>`SELECT status FROM ${runs} WHERE id = 'ORD-W1'`)[0]?.status ?? ""
          if (status !== "completed") yield* Effect.sleep("50 millis")
        }
        assert.strictEqual(status, "completed", output)
        child.kill("SIGTERM")
        const code = yield* Effect.promise(() => exited)
        assert.strictEqual(code, 130, output)
        assert.match(output, /worker \S+ stopped, 0 runs handed back/)
        const [workers] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`${schema}.workers`)}`
        assert.strictEqual(workers!.n, 0, "the worker retired its announcement")
        assertTranscript("worker.md", output)
      }),
    { timeout: 60_000 }
  )

  it.effect(
    "the README's \"Changing workflows\" shows patching.ts and versioning.ts as they are, and they run",
    () =>
      Effect.sync(() => {
        const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
        const section = /## Changing workflows\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? ""
        const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1])
        const files = ["patching.ts", "versioning.ts"].map((name) => Path.join(root, "packages/examples/src", name))
        assert.deepStrictEqual(
          blocks,
          files.map((file) => Fs.readFileSync(file, "utf8").split("\n").slice(1).join("\n"))
        )
        const run = (file: string) => {
          const result = ChildProcess.spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 60_000 })
          assert.strictEqual(result.status, 0, result.stdout + result.stderr)
          return result.stdout
        }
        const patching = run(files[0]!)
        assert.match(
          patching,
          /^DIVERGES run notify-ORD-1 \(workflow "notify", suspended\) at key 1: recorded "charge"/m
        )
        assert.match(patching, /^patched: safe to deploy$/m)
        assert.match(patching, /^notify-ORD-1: email ORD-1\nnotify-ORD-2: sms ORD-2\nnotify-ORD-3: sms ORD-3$/m)
        assert.strictEqual(patching.match(/ran email for ORD-1/g)?.length, 1, "the email is replayed, not sent again")
        assert.notMatch(patching, /ran email for ORD-2/)
        const versioning = run(files[1]!)
        assert.match(
          versioning,
          /in flight: \[\{"workflow":"order","version":1,"runs":1\},\{"workflow":"order","version":2,"runs":1\}\]/
        )
        assert.match(versioning, /dry run: 2 runs to fork; each keeps keys 1,2 and repeats 0 completed steps/)
        assert.match(versioning, /A-1 by ferry \(v2\)\nA-2 by ferry \(v2\)\nA-3 by truck \(v1\)\nB-1 by ferry \(v2\)/)
        assert.strictEqual(versioning.match(/reserved A-1/g)?.length, 1, "the fork replays reserve and pay")
        assert.match(versioning, /in flight: \[\]$/m)
      }),
    { timeout: 60_000 }
  )

  it.effect("quickstart.ts completes a run against a real PostgreSQL", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const result = ChildProcess.spawnSync(process.execPath, [quickstart], {
        env: { ...process.env, PGFLOWS_DATABASE_URL: Redacted.value(database.url) },
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      assert.match(result.stdout, /completed: charge_payment, pgflows\.sleep/)
      assertTranscript("quickstart.md", result.stdout)
    }), { timeout: 60_000 })
})
