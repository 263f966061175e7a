import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { DatabaseServer } from "../src/index.ts"

const failure = (options: DatabaseServer.Options) => Effect.scoped(Effect.flip(DatabaseServer.acquire(options)))

describe("DatabaseServer", () => {
  it.live("uses DATABASE_URL and nothing else when it is set, and says so when that server is down", () =>
    Effect.gen(function*() {
      const error = yield* failure({
        env: { DATABASE_URL: "postgres://someone:s3cret-pass@127.0.0.1:1/nowhere" },
        embedded: { parentDirectory: "/nonexistent" }
      })
      assert.strictEqual(error._tag, "NoDatabaseServer")
      assert.deepStrictEqual(error.attempts.map((a) => a.source), ["DATABASE_URL"])
      assert.match(error.message, /DATABASE_URL: set, but the server could not be reached/)
      assert.match(error.message, /fix: start that server, correct DATABASE_URL, or unset it/)
      assert.notInclude(error.message, "s3cret-pass", "the password is never printed")
    }))

  it.live("names every source it tried and how to fix each when none works", () =>
    Effect.gen(function*() {
      const previous = process.env.DOCKER_HOST
      process.env.DOCKER_HOST = "tcp://127.0.0.1:1"
      const error = yield* failure({ env: {}, embedded: { parentDirectory: "/nonexistent/pgflows" } }).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (previous === undefined) delete process.env.DOCKER_HOST
          else process.env.DOCKER_HOST = previous
        }))
      )
      assert.deepStrictEqual(error.attempts.map((a) => a.source), ["DATABASE_URL", "testcontainers", "embedded"])
      assert.match(error.message, /^No PostgreSQL server is available\. Tried, in order:/)
      assert.match(error.message, /1\. DATABASE_URL: not set\n {5}fix: set DATABASE_URL=postgres:/)
      assert.match(error.message, /2\. testcontainers: no Docker engine answered\n {5}fix: start a Docker engine/)
      assert.match(error.message, /3\. embedded: cannot create a data directory in \/nonexistent\/pgflows/)
    }), 60_000)

  it.live("starts an embedded PostgreSQL 18 when there is no DATABASE_URL and no Docker", () =>
    Effect.gen(function*() {
      const server = yield* Effect.scoped(
        Effect.map(DatabaseServer.acquire({ env: {}, docker: false }), (server) => server)
      )
      assert.strictEqual(server.source, "embedded")
      assert.match(server.version, /^PostgreSQL 18\./)
      assert.match(server.description, /^embedded PostgreSQL 18\.\d+ on 127\.0\.0\.1:\d+/)
      assert.notInclude(server.description, Redacted.value(server.url).split(":")[2]!.split("@")[0]!)
    }), 60_000)
})
