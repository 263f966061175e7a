// The README's example is test/fixtures/standalone.ts, and it runs against a real PostgreSQL,
// printing what the README says it prints.
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const readme = Fs.readFileSync(Path.join(import.meta.dirname, "..", "README.md"), "utf8")
const example = Path.join(import.meta.dirname, "fixtures", "standalone.ts")

layer(TestDatabase.layerDatabase)("README", (it) => {
  it.effect("shows standalone.ts as it is", () =>
    Effect.sync(() => {
      const block = /## A server of its own\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1]
      const source = Fs.readFileSync(example, "utf8").split("\n").slice(1).join("\n")
      assert.strictEqual(block, source)
    }))

  it.effect("standalone.ts serves the API, and prints what the README shows", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const printed = /It prints:\n\n```\n([\s\S]*?)```/.exec(readme)?.[1]
      const result = ChildProcess.spawnSync(process.execPath, [example], {
        env: { ...process.env, DATABASE_URL: Redacted.value(database.url) },
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(result.status, 0, result.stdout + result.stderr)
      assert.strictEqual(result.stdout, printed)
    }), { timeout: 60_000 })
})
