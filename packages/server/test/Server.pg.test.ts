// The server as a Layer in an application's own HTTP server (its routes beside the application's,
// under a prefix), its settings checked when built, and the settings read from the environment.
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Auth, ServerConfig } from "@pgflows/server"
import { PgflowsServer } from "@pgflows/server"
import { ConfigProvider, Duration, Effect, Layer, Redacted, Result } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import * as Http from "node:http"
import { Pgflows } from "pgflows"
import { config, database, steps } from "./fixtures/env.ts"

// An application's own routes, and pgflows' under /pgflows, in one router; no step secret configured.
const AppRoutes = HttpRouter.add("GET", "/hello", HttpServerResponse.text("hello from the app"))
const App = HttpRouter.serve(
  Layer.mergeAll(AppRoutes, PgflowsServer.layer({ auth: Auth.none, steps, prefix: "/pgflows" })),
  { disableLogger: true, disableListenLog: true }
).pipe(
  Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 })),
  Layer.provide(Layer.orDie(Pgflows.layerPg({ workflows: [] }))),
  Layer.orDie,
  Layer.provideMerge(config()),
  Layer.provideMerge(database)
)

const get = (path: string, init: RequestInit = {}) =>
  Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const base = HttpServer.formatAddress(server.address)
    return yield* Effect.promise(async () => {
      const response = await fetch(`${base}${path}`, init)
      const text = await response.text()
      let body: any
      try {
        body = JSON.parse(text)
      } catch {
        body = text
      }
      return { status: response.status, body }
    })
  })

layer(App, { excludeTestServices: true, timeout: "1 minute" })("mounted in an application's server", (it) => {
  it.effect("its routes sit beside the application's, under the prefix", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* get("/hello"), { status: 200, body: "hello from the app" })
      assert.deepStrictEqual(yield* get("/pgflows/health"), { status: 200, body: { status: "ok" } })
      const document = yield* get("/pgflows/openapi.json")
      assert.strictEqual(document.status, 200)
      assert.include(Object.keys(document.body.paths), "/pgflows/runs")
      assert.include(Object.keys(document.body.paths), "/pgflows/steps/{name}")
      assert.strictEqual((yield* get("/runs")).status, 404, "nothing outside the prefix")
    }))

  it.effect("Auth.none: the REST API answers without a token", () =>
    Effect.gen(function*() {
      const page = yield* get("/pgflows/runs")
      assert.deepStrictEqual(page, { status: 200, body: { runs: [], nextCursor: null } })
    }))

  it.effect("without a configured secret, the step endpoint refuses every call", () =>
    Effect.gen(function*() {
      const answer = yield* get("/pgflows/steps/tick", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-pgflows-instance-id": "i",
          "x-pgflows-result-key": "s1:1",
          "x-pgflows-step-secret": "anything-at-all-0123456789"
        },
        body: "\"k\""
      })
      assert.strictEqual(answer.status, 401)
      assert.include(answer.body.message, "no secret configured")
    }))

  const built = (options: Partial<PgflowsServer.Options<[]>>) =>
    Layer.build(PgflowsServer.layer({ auth: Auth.none, ...options })).pipe(
      Effect.scoped,
      Effect.provide(HttpRouter.layer),
      Effect.provide(Layer.orDie(Pgflows.layerMemory({ workflows: [] }))),
      Effect.flip
    )

  it.effect("bad settings fail the layer with ServerConfigError, never quoting a secret", () =>
    Effect.gen(function*() {
      for (
        const [options, setting] of [
          [{ auth: Auth.tokens([{ token: Redacted.make("short-token"), scope: "admin" }]) }, "auth"],
          [{ auth: Auth.tokens([]) }, "auth"],
          [{ stepSecret: Redacted.make("tiny") }, "stepSecret"],
          [{ stepSecretHeader: "Bad Header" }, "stepSecretHeader"],
          [{ maxBodyBytes: 10 }, "maxBodyBytes"],
          [{ prefix: "/a b" as `/${string}` }, "prefix"],
          [{ stepDeadline: Duration.zero }, "stepDeadline"]
        ] as const
      ) {
        const error = yield* built(options as Partial<PgflowsServer.Options<[]>>)
        assert.instanceOf(error, ServerConfig.ServerConfigError)
        assert.strictEqual((error as ServerConfig.ServerConfigError).setting, setting)
        assert.notInclude(error.message, "short-token")
        assert.notInclude(error.message, "tiny")
      }
    }))
})

describe("settings", () => {
  const fromEnv = (env: Record<string, string>) =>
    ServerConfig.fromEnv.pipe(
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))
    )

  it.effect("fromEnv: tokens with scopes and names, the step secret, defaults", () =>
    Effect.gen(function*() {
      const settings = yield* fromEnv({
        PGFLOWS_SERVER_TOKENS: "ops=admin:admin-token-0123456789, read:reader-token-0123456789",
        PGFLOWS_STEP_SECRET: "step-secret-0123456789",
        PGFLOWS_SERVER_PORT: "9090"
      })
      assert.strictEqual(settings.auth._tag, "Tokens")
      const tokens = settings.auth._tag === "Tokens" ? settings.auth.tokens : []
      assert.deepStrictEqual(tokens.map((token) => [token.name, token.scope]), [["ops", "admin"], ["token 2", "read"]])
      assert.strictEqual(Redacted.value(tokens[1]!.token), "reader-token-0123456789")
      assert.strictEqual(Redacted.value(settings.stepSecret!), "step-secret-0123456789")
      assert.deepStrictEqual([settings.host, settings.port, settings.maxBodyBytes], ["127.0.0.1", 9090, 1048576])
      assert.strictEqual(settings.stepSecretHeader, "X-Pgflows-Step-Secret")
      assert.strictEqual(Duration.toMillis(settings.stepDeadline), 25_000)
      const open = yield* fromEnv({ PGFLOWS_SERVER_AUTH: "none" })
      assert.strictEqual(open.auth._tag, "None")
      assert.isUndefined(open.stepSecret)
    }))

  it.effect("fromEnv: what is wrong, naming the variable and never the token", () =>
    Effect.gen(function*() {
      for (
        const [env, setting] of [
          [{}, "PGFLOWS_SERVER_TOKENS"],
          [{ PGFLOWS_SERVER_TOKENS: "admin:tiny1" }, "PGFLOWS_SERVER_TOKENS"],
          [{ PGFLOWS_SERVER_TOKENS: "root:admin-token-0123456789" }, "PGFLOWS_SERVER_TOKENS"],
          [
            { PGFLOWS_SERVER_AUTH: "none", PGFLOWS_SERVER_TOKENS: "admin:admin-token-0123456789" },
            "PGFLOWS_SERVER_AUTH"
          ],
          [{ PGFLOWS_SERVER_AUTH: "maybe" }, "PGFLOWS_SERVER_AUTH"],
          [{ PGFLOWS_SERVER_AUTH: "none", PGFLOWS_STEP_SECRET: "tiny2" }, "PGFLOWS_STEP_SECRET"],
          [{ PGFLOWS_SERVER_AUTH: "none", PGFLOWS_SERVER_PORT: "http" }, "PGFLOWS_SERVER_PORT"],
          [{ PGFLOWS_SERVER_AUTH: "none", PGFLOWS_STEP_DEADLINE: "soon" }, "PGFLOWS_STEP_DEADLINE"]
        ] as const
      ) {
        const error = yield* Effect.flip(fromEnv(env))
        assert.strictEqual(error.setting, setting, error.message)
        assert.notInclude(error.message, "admin-token-0123456789")
        assert.notInclude(error.message, "tiny")
      }
    }))

  it("tokens are compared in constant time, over every configured token", () => {
    const auth = Auth.tokens([
      { token: Redacted.make("reader-token-0123456789"), scope: "read" },
      { token: Redacted.make("admin-token-0123456789"), scope: "admin" }
    ])
    assert.isTrue(Result.isSuccess(Auth.authorize(auth, "admin-token-0123456789", "admin")))
    assert.isTrue(Result.isSuccess(Auth.authorize(auth, "reader-token-0123456789", "read")))
    const forbidden = Auth.authorize(auth, "reader-token-0123456789", "admin")
    assert.isTrue(Result.isFailure(forbidden) && forbidden.failure._tag === "Forbidden")
    const unknown = Auth.authorize(auth, "admin-token-012345678", "read")
    assert.isTrue(Result.isFailure(unknown) && unknown.failure._tag === "Unauthorized")
    assert.isTrue(Result.isFailure(Auth.authorize(auth, "", "read")))
    assert.isTrue(Result.isSuccess(Auth.authorize(Auth.none, "", "admin")))
  })
})
