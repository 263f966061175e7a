// The workflow REST API over real HTTP, on pgflows with PostgreSQL and a worker running: start
// (idempotent by id), status with steps, list with filters and a cursor, cancel, retry, signals,
// events, a signal to a pg_durable instance; typed errors with their status codes; bearer tokens with
// read and admin scopes; the OpenAPI document, checked by an OpenAPI validator; and the typed client
// the HttpApi gives for free.
import SwaggerParser from "@apidevtools/swagger-parser"
import { assert, describe, layer } from "@effect/vitest"
import { Graph } from "@pgflows/pg-durable"
import { PgflowsApi } from "@pgflows/server"
import { Effect, Fiber, Layer, Schema } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import { HttpApiClient } from "effect/http-api"
import type { OpenAPI } from "openapi-types"
import { Pgflows, Step, Workflow } from "pgflows"
import { adminToken, BaseUrl, client, environment, readToken, unique } from "./fixtures/env.ts"
import * as Harness from "./fixtures/harness.ts"

const greet = Step.make("greet", {
  input: Schema.Struct({ name: Schema.String }),
  output: Schema.String,
  run: ({ name }) => Effect.succeed(`hello ${name}`)
})

const hello = Workflow.make("hello", {
  input: Schema.Struct({ name: Schema.String.check(Schema.isMinLength(1)) }),
  output: Schema.String,
  run: (input) => greet(input)
})

const approval = Workflow.make("approval", {
  input: Schema.String,
  output: Schema.Boolean,
  run: Effect.fn(function*(subject) {
    yield* Workflow.setEvent("stage", { waiting: subject })
    const decision = yield* Workflow.waitForSignal("decision", Schema.Struct({ ok: Schema.Boolean }))
    return decision.ok
  })
})

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}

const fragileState = { failures: 1 }
const fragileStep = Step.make("fragile_step", {
  input: Schema.String,
  output: Schema.String,
  error: Refused,
  run: (value) =>
    Effect.suspend(() =>
      fragileState.failures-- > 0 ? Effect.fail(new Refused({ reason: "not yet" })) : Effect.succeed(`ok ${value}`)
    )
})
const fragile = Workflow.make("fragile", {
  input: Schema.String,
  output: Schema.String,
  error: Refused,
  run: (key) => fragileStep(key)
})

const Worker = Layer.effectDiscard(Effect.gen(function*() {
  const engine = yield* Pgflows.Pgflows
  yield* Effect.forkScoped(engine.runWorker())
}))

const Env = Layer.provideMerge(Worker, environment({ workflows: [hello, approval, fragile] }))

interface Answer {
  readonly status: number
  readonly body: any
  readonly text: string
}

const http = (method: string, path: string, options: { readonly body?: unknown; readonly token?: string } = {}) =>
  Effect.gen(function*() {
    const base = yield* BaseUrl
    return yield* Effect.promise(async (): Promise<Answer> => {
      const headers: Record<string, string> = {}
      if (options.body !== undefined) headers["content-type"] = "application/json"
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
      const response = await fetch(`${base}${path}`, {
        method,
        headers,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
      })
      const text = await response.text()
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        body = undefined
      }
      return { status: response.status, body, text }
    })
  })

const admin = (method: string, path: string, body?: unknown) =>
  http(method, path, { token: adminToken, ...(body === undefined ? {} : { body }) })

/** Polls a run until it is in `status`. */
const until = (id: string, status: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const answer = yield* http("GET", `/runs/${encodeURIComponent(id)}`, { token: readToken })
      if (answer.body?.status === status) return answer.body
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.die(new Error(`run ${id} never became ${status}`))
  })

layer(Env, { excludeTestServices: true, timeout: "2 minutes" })("the REST API", (it) => {
  describe("runs", () => {
    it.effect("start (201), idempotent by id; status with output and steps", () =>
      Effect.gen(function*() {
        const id = `hello-${unique()}`
        const started = yield* admin("POST", "/runs", { workflow: "hello", input: { name: "Ada" }, id })
        assert.strictEqual(started.status, 201, started.text)
        assert.deepStrictEqual(started.body, { id, workflow: "hello" })
        const again = yield* admin("POST", "/runs", { workflow: "hello", input: { name: "Ada" }, id })
        assert.deepStrictEqual([again.status, again.body], [201, { id, workflow: "hello" }])
        const run = yield* until(id, "completed")
        assert.strictEqual(run.output, "hello Ada")
        assert.deepStrictEqual(run.input, { name: "Ada" })
        assert.strictEqual(run.error, null)
        assert.deepStrictEqual(run.steps.map((step: any) => [step.name, step.status, step.attempts]), [
          ["greet", "completed", 1]
        ])
        assert.match(run.createdAt, /^\d{4}-\d{2}-\d{2}T/)
        const page = yield* http("GET", `/runs?workflow=hello&status=completed&limit=1000`, { token: readToken })
        assert.isTrue(page.body.runs.filter((summary: any) => summary.id === id).length === 1, "one run for one id")
      }))

    it.effect("start: typed errors with their status codes, nothing started", () =>
      Effect.gen(function*() {
        const unknown = yield* admin("POST", "/runs", { workflow: "nope", input: 1 })
        assert.deepStrictEqual([unknown.status, unknown.body._tag], [404, "WorkflowNotFound"])
        const invalid = yield* admin("POST", "/runs", { workflow: "hello", input: { name: "" } })
        assert.deepStrictEqual([invalid.status, invalid.body._tag], [422, "InvalidInput"])
        assert.deepStrictEqual(invalid.body.issues.map((issue: any) => issue.path), ["name"])
        const id = `conflict-${unique()}`
        assert.strictEqual((yield* admin("POST", "/runs", { workflow: "hello", input: { name: "a" }, id })).status, 201)
        const conflict = yield* admin("POST", "/runs", { workflow: "fragile", input: "x", id })
        assert.deepStrictEqual([conflict.status, conflict.body._tag], [409, "RunIdConflict"])
        const badId = yield* admin("POST", "/runs", { workflow: "hello", input: { name: "a" }, id: "a\u0000b" })
        assert.deepStrictEqual([badId.status, badId.body._tag], [400, "BadRequest"])
        const missing = yield* http("GET", `/runs/${unique()}`, { token: readToken })
        assert.deepStrictEqual([missing.status, missing.body._tag], [404, "RunNotFound"])
      }))

    it.effect("list: filters and a cursor, one page at a time", () =>
      Effect.gen(function*() {
        const ids: Array<string> = []
        for (let i = 0; i < 5; i++) {
          const answer = yield* admin("POST", "/runs", { workflow: "approval", input: `list-${i}` })
          ids.push(answer.body.id)
        }
        const seen: Array<string> = []
        let cursor: string | null = null
        do {
          const query: string = `/runs?workflow=approval&limit=2${cursor === null ? "" : `&cursor=${cursor}`}`
          const page: Answer = yield* http("GET", query, { token: readToken })
          assert.strictEqual(page.status, 200, page.text)
          assert.isAtMost(page.body.runs.length, 2)
          for (const run of page.body.runs) {
            assert.strictEqual(run.workflow, "approval")
            seen.push(run.id)
          }
          cursor = page.body.nextCursor
        } while (cursor !== null)
        for (const id of ids) assert.include(seen, id)
        assert.strictEqual(new Set(seen).size, seen.length, "no run on two pages")
        const bad = yield* http("GET", "/runs?limit=0", { token: readToken })
        assert.deepStrictEqual([bad.status, bad.body._tag], [400, "BadRequest"])
        const badStatus = yield* http("GET", "/runs?status=sleeping", { token: readToken })
        assert.strictEqual(badStatus.status, 400)
        const badCursor = yield* http("GET", "/runs?cursor=%00", { token: readToken })
        assert.strictEqual(badCursor.status, 400)
      }))

    it.effect("events and signals: the event a run published, the signal that ends its wait", () =>
      Effect.gen(function*() {
        const { body } = yield* admin("POST", "/runs", { workflow: "approval", input: "loan 7" })
        const id = body.id as string
        const event = yield* http("GET", `/runs/${id}/events/stage?timeout=10000`, { token: readToken })
        assert.deepStrictEqual([event.status, event.body], [200, {
          runId: id,
          key: "stage",
          value: { waiting: "loan 7" }
        }])
        const none = yield* http("GET", `/runs/${id}/events/other`, { token: readToken })
        assert.deepStrictEqual([none.status, none.body._tag], [404, "EventNotFound"])
        const signal = yield* admin("POST", `/runs/${id}/signals/decision`, { ok: true })
        assert.deepStrictEqual([signal.status, signal.body], [202, { runId: id, signal: "decision" }])
        const run = yield* until(id, "completed")
        assert.strictEqual(run.output, true)
        const late = yield* admin("POST", `/runs/${id}/signals/decision`, { ok: false })
        assert.deepStrictEqual([late.status, late.body._tag], [409, "RunEnded"])
        const nobody = yield* admin("POST", `/runs/${unique()}/signals/decision`, { ok: true })
        assert.deepStrictEqual([nobody.status, nobody.body._tag], [404, "RunNotFound"])
      }))

    it.effect("cancel, then cancel again; retry a failed run from its failed step", () =>
      Effect.gen(function*() {
        const { body } = yield* admin("POST", "/runs", { workflow: "approval", input: "to cancel" })
        yield* until(body.id, "suspended")
        const cancelled = yield* admin("POST", `/runs/${body.id}/cancel`)
        assert.deepStrictEqual([cancelled.status, cancelled.body], [200, { runId: body.id, outcome: "cancelled" }])
        const again = yield* admin("POST", `/runs/${body.id}/cancel`)
        assert.deepStrictEqual(again.body, { runId: body.id, outcome: "already-terminal" })
        const unknown = yield* admin("POST", `/runs/${unique()}/cancel`)
        assert.strictEqual(unknown.status, 404)

        fragileState.failures = 1
        const failed = yield* admin("POST", "/runs", { workflow: "fragile", input: "f" })
        const run = yield* until(failed.body.id, "failed")
        assert.strictEqual(run.error._tag, "Refused")
        assert.strictEqual(run.error.reason, "not yet")
        const notFailed = yield* admin("POST", `/runs/${body.id}/retry`)
        assert.deepStrictEqual([notFailed.status, notFailed.body._tag], [409, "RunNotRestartable"])
        const retried = yield* admin("POST", `/runs/${failed.body.id}/retry`)
        assert.deepStrictEqual([retried.status, retried.body], [202, { runId: failed.body.id }])
        assert.strictEqual((yield* until(failed.body.id, "completed")).output, "ok f")
        const resumed = yield* admin("POST", `/runs/${body.id}/resume`)
        assert.deepStrictEqual([resumed.status, resumed.body], [202, { runId: body.id }])
      }))

    it.effect("signal a pg_durable instance: sent again until its wait takes it", () =>
      Effect.gen(function*() {
        const durable = yield* client("http")
        const id = yield* durable.start(Graph.sequence(
          Graph.waitForSignal("go", { capture: "go", timeout: "30 seconds" }),
          Graph.sql`SELECT (${Graph.ref("go")})::jsonb->'data'->>'who' AS who`
        ))
        const running = yield* Effect.forkChild(Harness.execute(id))
        const answer = yield* admin("POST", `/pg-durable/instances/${id}/signals/go?timeout=10000`, { who: "ops" })
        assert.strictEqual(answer.status, 202, answer.text)
        assert.strictEqual(answer.body.instanceId, id)
        assert.isAtLeast(answer.body.attempts, 1)
        const outcome = yield* Fiber.join(running)
        assert.strictEqual(outcome.status, "completed", outcome.error)
        assert.deepStrictEqual(outcome.result, { rows: [{ who: "ops" }], row_count: 1 })
        const unknown = yield* admin("POST", `/pg-durable/instances/ffffffff/signals/go`, {})
        assert.deepStrictEqual([unknown.status, unknown.body._tag], [404, "InstanceNotFound"])
      }))
  })

  describe("auth", () => {
    it.effect("a request without a token is refused when auth is configured; nothing is started", () =>
      Effect.gen(function*() {
        const id = `anonymous-${unique()}`
        const anonymous = yield* http("POST", "/runs", { body: { workflow: "hello", input: { name: "x" }, id } })
        assert.strictEqual(anonymous.status, 401)
        assert.deepStrictEqual(anonymous.body._tag, "Unauthorized")
        const wrong = yield* http("POST", "/runs", {
          body: { workflow: "hello", input: { name: "x" }, id },
          token: "wrong-token-0123456789abcdef"
        })
        assert.strictEqual(wrong.status, 401)
        const reader = yield* http("POST", "/runs", {
          body: { workflow: "hello", input: { name: "x" }, id },
          token: readToken
        })
        assert.deepStrictEqual([reader.status, reader.body._tag, reader.body.required], [403, "Forbidden", "admin"])
        const missing = yield* http("GET", `/runs/${id}`, { token: readToken })
        assert.strictEqual(missing.status, 404, "none of them started the run")
        assert.strictEqual((yield* http("GET", "/runs")).status, 401)
        assert.strictEqual((yield* http("GET", "/runs", { token: readToken })).status, 200)
        assert.strictEqual((yield* http("GET", "/runs", { token: adminToken })).status, 200)
        assert.strictEqual((yield* http("GET", "/health")).status, 200)
      }))

    it.effect("bad requests to the REST API: a clear 4xx each, nothing started", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const send = (body: string, contentType: string) =>
          Effect.promise(async () => {
            const response = await fetch(`${base}/runs`, {
              method: "POST",
              headers: { authorization: `Bearer ${adminToken}`, "content-type": contentType },
              body
            })
            return { status: response.status, body: await response.json() as any }
          })
        const before = (yield* http("GET", "/runs?limit=1000", { token: readToken })).body.runs.length
        const notJson = yield* send("{\"workflow\": \"hello\",", "application/json")
        assert.deepStrictEqual([notJson.status, notJson.body._tag], [400, "BadRequest"])
        const form = yield* send("workflow=hello", "application/x-www-form-urlencoded")
        assert.deepStrictEqual([form.status, form.body._tag], [415, "UnsupportedMediaType"])
        const noWorkflow = yield* send("{\"input\": 1}", "application/json")
        assert.deepStrictEqual([noWorkflow.status, noWorkflow.body._tag], [400, "BadRequest"])
        assert.include(noWorkflow.body.message, "workflow")
        const negative = yield* send("{\"workflow\": \"hello\", \"delayMillis\": -1}", "application/json")
        assert.strictEqual(negative.status, 400)
        const wrongMethod = yield* http("DELETE", "/runs", { token: adminToken })
        assert.deepStrictEqual([wrongMethod.status, wrongMethod.body._tag], [404, "RouteNotFound"])
        const after = (yield* http("GET", "/runs?limit=1000", { token: readToken })).body.runs.length
        assert.strictEqual(after, before)
      }))

    it.effect("a body is not read before the token is checked", () =>
      Effect.gen(function*() {
        const big = yield* http("POST", "/runs", { body: { workflow: "x".repeat(3 * 1024 * 1024) } })
        assert.strictEqual(big.status, 401)
        const bigAdmin = yield* admin("POST", "/runs", { workflow: "x".repeat(3 * 1024 * 1024) })
        assert.deepStrictEqual([bigAdmin.status, bigAdmin.body._tag], [413, "RequestTooLarge"])
      }))
  })

  describe("OpenAPI", () => {
    it.effect("GET /openapi.json is a document an OpenAPI validator accepts", () =>
      Effect.gen(function*() {
        const answer = yield* http("GET", "/openapi.json")
        assert.strictEqual(answer.status, 200)
        const document = answer.body as OpenAPI.Document
        assert.strictEqual((document as any).openapi, "3.1.0")
        const validated = yield* Effect.promise(() => SwaggerParser.validate(structuredClone(document) as any))
        const paths = Object.keys(validated.paths ?? {})
        for (
          const path of [
            "/steps/{name}",
            "/runs",
            "/runs/{id}",
            "/runs/{id}/cancel",
            "/runs/{id}/retry",
            "/runs/{id}/signals/{name}",
            "/runs/{id}/events/{key}",
            "/pg-durable/instances/{id}/signals/{name}"
          ]
        ) assert.include(paths, path)
        const schemes = Object.keys((document as any).components?.securitySchemes ?? {})
        assert.includeMembers(schemes, ["bearer", "stepSecret"])
        const start = (document as any).paths["/runs"].post.responses
        assert.includeMembers(Object.keys(start), [
          "201",
          "400",
          "401",
          "403",
          "404",
          "409",
          "413",
          "415",
          "422",
          "503"
        ])
      }))

    it.effect("the typed client of the HttpApi", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const api = yield* HttpApiClient.make(PgflowsApi.Api, {
          baseUrl: base,
          transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(adminToken))
        })
        const started = yield* api.runsAdmin.start({ payload: { workflow: "hello", input: { name: "typed" } } })
        assert.strictEqual(started.workflow, "hello")
        const missing = yield* Effect.flip(api.runsRead.status({ params: { id: "no-such-run" } }))
        assert.strictEqual(missing._tag, "RunNotFound")
      }).pipe(Effect.provide(FetchHttpClient.layer)))
  })
})
