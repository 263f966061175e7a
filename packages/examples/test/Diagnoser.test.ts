/**
 * The AI SRE example's language models, in memory: the local diagnoser's rules through
 * `LanguageModel.generateObject`, and the OpenAI Chat Completions Layer against a fake server on a
 * loopback port (no network): the request it sends, the proposal it decodes, the errors it maps.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted } from "effect"
import { AiError, LanguageModel, Model } from "effect/ai"
import { FetchHttpClient } from "effect/http"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { HealthReport } from "../src/CheckoutService.ts"
import * as Diagnoser from "../src/Diagnoser.ts"

const report = (overrides: Partial<HealthReport>) =>
  new HealthReport({
    service: "checkout",
    status: "degraded",
    version: "2.4.1",
    previousVersion: "2.4.0",
    minutesSinceDeploy: 240,
    errorRate: 0.002,
    p99Millis: 180,
    memoryPercent: 41,
    dbPoolInUse: 6,
    dbPoolSize: 20,
    replicas: 3,
    ...overrides
  })

const ask = (health: HealthReport) =>
  Effect.gen(function*() {
    const model = yield* LanguageModel.LanguageModel
    const response = yield* model.generateObject({
      prompt: Diagnoser.prompt({ summary: "checkout is unwell" }, health),
      schema: Diagnoser.Proposal,
      objectName: "incident_diagnosis"
    })
    return { proposal: response.value, by: `${yield* Model.ProviderName}/${yield* Model.ModelName}` }
  })

/** A fake Chat Completions endpoint: answers each request with `answer`, keeps what it received. */
const fakeServer = (answer: { readonly status: number; readonly body: unknown }) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ url: string; requests: Array<{ path: string; headers: Http.IncomingHttpHeaders; body: any }> }>(
        (resolve) => {
          const requests: Array<{ path: string; headers: Http.IncomingHttpHeaders; body: any }> = []
          const server = Http.createServer((request, response) => {
            let body = ""
            request.on("data", (chunk) => body += chunk)
            request.on("end", () => {
              requests.push({ path: request.url ?? "", headers: request.headers, body: JSON.parse(body) })
              response.writeHead(answer.status, { "content-type": "application/json" })
              response.end(JSON.stringify(answer.body))
            })
          })
          server.listen(0, "127.0.0.1", () => {
            const { port } = server.address() as AddressInfo
            resolve(Object.assign({ url: `http://127.0.0.1:${port}/v1`, requests }, { server }))
          })
        }
      )
    ),
    (fake) => Effect.promise(() => new Promise<void>((resolve) => (fake as any).server.close(() => resolve())))
  )

describe("Diagnoser.local", () => {
  it.effect("proposes what the rules say, through generateObject", () =>
    Effect.gen(function*() {
      const deploy = yield* ask(report({ minutesSinceDeploy: 7, errorRate: 0.38 }))
      assert.strictEqual(deploy.proposal.action, "rollback")
      assert.strictEqual(deploy.proposal.confidence, 0.9)
      assert.strictEqual(deploy.by, "local/sre-rules")
      assert.strictEqual((yield* ask(report({ memoryPercent: 94 }))).proposal.action, "restart")
      assert.strictEqual((yield* ask(report({ dbPoolInUse: 20 }))).proposal.action, "scale_out")
    }).pipe(Effect.provide(Diagnoser.local)))

  it.effect("a prompt without a health report is an AiError", () =>
    Effect.gen(function*() {
      const model = yield* LanguageModel.LanguageModel
      const error = yield* Effect.flip(model.generateObject({ prompt: "what is wrong?", schema: Diagnoser.Proposal }))
      assert.isTrue(AiError.isAiError(error))
      assert.match(error.message, /no JSON health report/)
    }).pipe(Effect.provide(Diagnoser.local)))
})

describe("Diagnoser.openAi", () => {
  it.effect("sends a JSON-schema chat completion request and decodes the proposal", () =>
    Effect.gen(function*() {
      const proposal = {
        summary: "errors since 2.4.1",
        likelyCause: "a regression",
        action: "rollback",
        confidence: 0.7
      }
      const fake = yield* fakeServer({
        status: 200,
        body: {
          choices: [{ message: { content: JSON.stringify(proposal) }, finish_reason: "stop" }],
          usage: { prompt_tokens: 120, completion_tokens: 30 }
        }
      })
      const Openai = Diagnoser.openAi({ apiKey: Redacted.make("sk-test"), model: "gpt-test", baseUrl: fake.url }).pipe(
        Layer.provide(FetchHttpClient.layer)
      )
      const answer = yield* ask(report({ minutesSinceDeploy: 7, errorRate: 0.38 })).pipe(Effect.provide(Openai))
      assert.deepStrictEqual({ ...answer.proposal }, proposal)
      assert.strictEqual(answer.by, "openai/gpt-test")

      assert.strictEqual(fake.requests.length, 1)
      const [request] = fake.requests
      assert.strictEqual(request!.path, "/v1/chat/completions")
      assert.strictEqual(request!.headers.authorization, "Bearer sk-test")
      assert.strictEqual(request!.body.model, "gpt-test")
      assert.deepStrictEqual(request!.body.messages.map((m: any) => m.role), ["system", "user"])
      assert.match(request!.body.messages[1].content, /"errorRate": 0\.38/)
      assert.strictEqual(request!.body.response_format.type, "json_schema")
      assert.strictEqual(request!.body.response_format.json_schema.name, "incident_diagnosis")
      assert.deepStrictEqual(
        request!.body.response_format.json_schema.schema.properties.action.enum,
        ["rollback", "restart", "scale_out"]
      )
    }).pipe(Effect.scoped))

  it.effect("a 429 is a retryable RateLimitError; Diagnoser.layer picks OpenAI when OPENAI_API_KEY is set", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer({ status: 429, body: { error: { message: "slow down" } } })
      const FromEnv = Diagnoser.layer.pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          OPENAI_API_KEY: "sk-env",
          OPENAI_BASE_URL: fake.url
        })))
      )
      const error = yield* Effect.flip(ask(report({ memoryPercent: 94 })).pipe(Effect.provide(FromEnv)))
      assert.isTrue(AiError.isAiError(error))
      assert.strictEqual((error as AiError.AiError).reason._tag, "RateLimitError")
      assert.isTrue((error as AiError.AiError).isRetryable)
      assert.strictEqual(fake.requests[0]!.headers.authorization, "Bearer sk-env")
      assert.strictEqual(fake.requests[0]!.body.model, "gpt-4o-mini")
    }).pipe(Effect.scoped))

  it.effect("Diagnoser.layer is the local diagnoser without OPENAI_API_KEY", () =>
    Effect.gen(function*() {
      const answer = yield* ask(report({ memoryPercent: 94 }))
      assert.strictEqual(answer.by, "local/sre-rules")
    }).pipe(
      Effect.provide(Diagnoser.layer.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({})))))
    ))
})
