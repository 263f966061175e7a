// @pgflows/server as an application serves it: on a free loopback port, with bearer tokens; prints
// `server: ok ...` when /health answers, the OpenAPI document lists the routes, and a request
// without a token is refused.
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Auth, PgflowsServer } from "@pgflows/server"
import { Config, Console, Effect, Layer, Redacted } from "effect"
import { HttpServer } from "effect/http"
import { Pgflows } from "pgflows"

const Server = PgflowsServer.layerServer({
  auth: Auth.tokens([{ token: Redacted.make("consumer-admin-token-0123456789"), scope: "admin" }]),
  port: 0,
  logRequests: false
}).pipe(
  Layer.provideMerge(Pgflows.layerPg({ workflows: [] })),
  Layer.provideMerge(PgClient.layerConfig({ url: Config.Redacted("DATABASE_URL") }))
)

const main = Effect.gen(function*() {
  const { address } = yield* HttpServer.HttpServer
  const base = HttpServer.formatAddress(address)
  const get = (path: string) =>
    Effect.promise(async () => {
      const response = await fetch(`${base}${path}`)
      return { status: response.status, body: await response.json() as Record<string, unknown> }
    })
  const health = yield* get("/health")
  const document = yield* get("/openapi.json")
  const anonymous = yield* get("/runs")
  const paths = Object.keys((document.body["paths"] ?? {}) as Record<string, unknown>)
  if (health.status !== 200 || !paths.includes("/steps/{name}") || anonymous.status !== 401) {
    return yield* Effect.die(
      new Error(`unexpected answers: ${JSON.stringify({ health, paths, anonymous: anonymous.status })}`)
    )
  }
  yield* Console.log(`server: ok (/health 200, ${paths.length} paths in /openapi.json, no token 401)`)
})

main.pipe(Effect.provide(Server), NodeRuntime.runMain)
