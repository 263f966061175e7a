/**
 * `npm start` as a user runs it: a child process, with and without DATABASE_URL.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { inject } from "vitest"

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

describe("npm start", () => {
  it.live(
    "starts an embedded PostgreSQL, prints its version, and leaves no server behind",
    () =>
      Effect.gen(function*() {
        const { code, output } = yield* runDemo({ DATABASE_URL: undefined, PGFLOWS_DATABASE_URL: undefined })
        assert.strictEqual(code, 0, output)
        assert.match(output, /server version: PostgreSQL 18\.\d+/)
        const pid = Number(/\(pid (\d+)\)/.exec(output)?.[1])
        assert.isTrue(pid > 0, output)
        assert.isFalse(isAlive(pid), "the embedded postgres process is gone")
        assert.match(output, /embedded PostgreSQL stopped, its data directory removed/)
      }),
    60_000
  )

  it.live("uses DATABASE_URL when it is set, and never prints its password", () =>
    Effect.gen(function*() {
      const server = inject("pgflows/testServer")
      const { code, output } = yield* runDemo({ DATABASE_URL: server.url, PGFLOWS_DATABASE_URL: undefined })
      assert.strictEqual(code, 0, output)
      assert.match(output, /using postgresql:\/\/.*\(from the environment\)/)
      assert.match(output, /server version: PostgreSQL \d+/)
      assert.notMatch(output, /starting an embedded/)
      const password = decodeURIComponent(new URL(server.url).password)
      if (password !== "") assert.notInclude(output, password)
    }), 60_000)
})
