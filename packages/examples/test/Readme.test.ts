// The README's quick start is packages/examples/src/quickstart.ts, and it runs.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const quickstart = Path.join(root, "packages/examples/src/quickstart.ts")

layer(TestDatabase.layerDatabase)("README quick start", (it) => {
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
    }), { timeout: 60_000 })

  it.effect("quickstart.ts completes a run against a real PostgreSQL", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const result = ChildProcess.spawnSync(process.execPath, [quickstart], {
        env: { ...process.env, DATABASE_URL: Redacted.value(database.url) },
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      assert.match(result.stdout, /completed: charge_payment, pgflows\.sleep/)
    }), { timeout: 60_000 })
})
