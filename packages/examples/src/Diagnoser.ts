/**
 * The language model of the AI SRE example, behind Effect's provider-agnostic `LanguageModel`
 * service (`effect/ai`): the incident workflow's `diagnose` step asks it for a `Proposal` with
 * `generateObject` and never knows which model answered.
 *
 * - `local`: a deterministic diagnoser that reads the health report in the prompt and applies a few
 *   rules an on-call engineer would. No network, so the example and its tests run offline.
 * - `openAi(options)`: a small `LanguageModel` over an OpenAI-compatible Chat Completions API
 *   (`POST <baseUrl>/chat/completions` with a JSON schema response format), on Effect's
 *   `HttpClient`. There is no `@effect/ai-openai` for effect 4.1 yet (its 4.0 betas import modules
 *   that effect 4.1 moved), so this is the provider Layer.
 * - `layer`: `openAi` when `OPENAI_API_KEY` is set (`OPENAI_MODEL`, default `gpt-4o-mini`;
 *   `OPENAI_BASE_URL`, default `https://api.openai.com/v1`), else `local`.
 *
 * Each is a `Model` (`effect/ai/Model`), so `Model.ProviderName` and `Model.ModelName` say which one
 * answered.
 *
 * @since 0.1.0
 */
import * as AiError from "effect/ai/AiError"
import * as LanguageModel from "effect/ai/LanguageModel"
import * as Model from "effect/ai/Model"
import * as Prompt from "effect/ai/Prompt"
import type * as Response from "effect/ai/Response"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Action, HealthReport } from "./CheckoutService.ts"

/**
 * What the model is asked to produce: a diagnosis and one remediation from the allowed list.
 *
 * @category models
 * @since 0.1.0
 */
export class Proposal extends Schema.Class<Proposal>("Proposal")({
  summary: Schema.String,
  likelyCause: Schema.String,
  action: Action,
  confidence: Schema.Number
}) {}

/**
 * The prompt of a diagnosis: the on-call engineer's brief, and the health report as a JSON block.
 *
 * @category constructors
 * @since 0.1.0
 */
export const prompt = (alert: { readonly summary: string }, report: HealthReport): Prompt.Prompt =>
  Prompt.make([
    {
      role: "system",
      content: "You are the on-call site reliability engineer. Diagnose the incident from the health report " +
        "and propose exactly one remediation: rollback (to the previous version), restart, or scale_out. " +
        "Give a confidence between 0 and 1."
    },
    {
      role: "user",
      content: `Alert: ${alert.summary}\n\nHealth report:\n\`\`\`json\n${
        JSON.stringify(Schema.encodeSync(HealthReport)(report), null, 2)
      }\n\`\`\``
    }
  ])

/**
 * The rules of the local diagnoser, applied to a health report.
 *
 * @category constructors
 * @since 0.1.0
 */
export const diagnose = (report: HealthReport): Proposal => {
  const percent = (n: number) => `${(n * 100).toFixed(1)}%`
  if (report.errorRate >= 0.1 && report.minutesSinceDeploy <= 30) {
    return new Proposal({
      summary: `${report.service} fails ${percent(report.errorRate)} of requests since version ${report.version} ` +
        `was deployed ${report.minutesSinceDeploy} minutes ago`,
      likelyCause: `a regression in ${report.version}`,
      action: "rollback",
      confidence: 0.9
    })
  }
  if (report.memoryPercent >= 90) {
    return new Proposal({
      summary:
        `${report.service} uses ${report.memoryPercent}% of its memory and p99 latency is ${report.p99Millis} ms`,
      likelyCause: "a memory leak",
      action: "restart",
      confidence: 0.8
    })
  }
  if (report.dbPoolInUse >= report.dbPoolSize) {
    return new Proposal({
      summary: `${report.service} has every database connection in use (${report.dbPoolInUse}/${report.dbPoolSize}) ` +
        `and p99 latency is ${report.p99Millis} ms`,
      likelyCause: "not enough capacity for the load",
      action: "scale_out",
      confidence: 0.6
    })
  }
  return new Proposal({
    summary: `${report.service} looks ${report.status}; nothing stands out`,
    likelyCause: "unknown",
    action: "restart",
    confidence: 0.2
  })
}

/**
 * The deterministic diagnoser: reads the JSON health report of the last user message and answers
 * with `diagnose`'s proposal (as JSON for `generateObject`, as its summary for `generateText`).
 *
 * @category layers
 * @since 0.1.0
 */
export const local = Model.make(
  "local",
  "sre-rules",
  Layer.effect(
    LanguageModel.LanguageModel,
    LanguageModel.make({
      generateText: (options) =>
        Effect.gen(function*() {
          const report = yield* reportIn(options.prompt)
          const proposal = diagnose(report)
          const text = options.responseFormat.type === "json"
            ? JSON.stringify(Schema.encodeSync(Proposal)(proposal))
            : proposal.summary
          return [{ type: "text", text }, finish("stop", undefined)]
        }),
      streamText: () => Stream.fail(unsupported("LocalDiagnoser", "streamText"))
    })
  )
)

/**
 * @category models
 * @since 0.1.0
 */
export interface OpenAiOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** Default `gpt-4o-mini`. */
  readonly model?: string | undefined
  /** Default `https://api.openai.com/v1`; any OpenAI-compatible endpoint works. */
  readonly baseUrl?: string | undefined
}

/**
 * A `LanguageModel` over an OpenAI-compatible Chat Completions API. Text and structured output
 * (`response_format: json_schema`); no tools, no streaming. HTTP statuses become `AiError` reasons
 * (429 is a retryable `RateLimitError`, 5xx a retryable `InternalProviderError`).
 *
 * @category layers
 * @since 0.1.0
 */
export const openAi = (options: OpenAiOptions) => {
  const model = options.model ?? "gpt-4o-mini"
  const url = `${(options.baseUrl ?? "https://api.openai.com/v1").replace(/\/+$/, "")}/chat/completions`
  return Model.make(
    "openai",
    model,
    Layer.effect(
      LanguageModel.LanguageModel,
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        return yield* LanguageModel.make({
          generateText: (provider) =>
            Effect.gen(function*() {
              if (provider.tools.length > 0) return yield* unsupported("OpenAiChat", "generateText (tools)")
              const body: Record<string, unknown> = { model, messages: messagesOf(provider.prompt) }
              if (provider.responseFormat.type === "json") {
                const schema = LanguageModel.defaultCodecTransformer(provider.responseFormat.schema as any).jsonSchema
                body.response_format = {
                  type: "json_schema",
                  json_schema: { name: provider.responseFormat.objectName, schema, strict: false }
                }
              }
              const request = HttpClientRequest.post(url).pipe(
                HttpClientRequest.bearerToken(Redacted.value(options.apiKey)),
                HttpClientRequest.bodyJsonUnsafe(body)
              )
              const response = yield* client.execute(request).pipe(
                Effect.mapError((error) =>
                  AiError.make({
                    module: "OpenAiChat",
                    method: "generateText",
                    reason: new AiError.NetworkError({
                      reason: "TransportError",
                      method: "POST",
                      url,
                      description: error.message
                    })
                  })
                )
              )
              const text = yield* Effect.orElseSucceed(response.text, () => "")
              if (response.status < 200 || response.status >= 300) {
                return yield* AiError.make({
                  module: "OpenAiChat",
                  method: "generateText",
                  reason: AiError.reasonFromHttpStatus({
                    status: response.status,
                    body: text,
                    description: `${url} answered ${response.status}: ${text.slice(0, 200)}`
                  })
                })
              }
              const completion = yield* Schema.decodeUnknownEffect(Schema.fromJsonString(Completion))(text).pipe(
                Effect.mapError((error) =>
                  AiError.make({
                    module: "OpenAiChat",
                    method: "generateText",
                    reason: AiError.InvalidResponseError.fromSchemaError(error)
                  })
                )
              )
              const choice = completion.choices[0]
              const parts: Array<Response.PartEncoded> = []
              if (choice.message.content !== null) parts.push({ type: "text", text: choice.message.content })
              parts.push(finish(finishReason(choice.finish_reason), completion.usage))
              return parts
            }),
          streamText: () => Stream.fail(unsupported("OpenAiChat", "streamText"))
        })
      })
    )
  )
}

/**
 * `openAi` when `OPENAI_API_KEY` is set (with `OPENAI_MODEL` and `OPENAI_BASE_URL`), on the fetch
 * `HttpClient`; `local` otherwise.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = Layer.unwrap(
  Effect.gen(function*() {
    const apiKey = yield* Config.option(Config.Redacted("OPENAI_API_KEY"))
    if (Option.isNone(apiKey) || Redacted.value(apiKey.value).trim() === "") return local
    const model = yield* Config.option(Config.String("OPENAI_MODEL"))
    const baseUrl = yield* Config.option(Config.String("OPENAI_BASE_URL"))
    return openAi({
      apiKey: apiKey.value,
      model: Option.getOrUndefined(Option.filter(model, (m) => m !== "")),
      baseUrl: Option.getOrUndefined(Option.filter(baseUrl, (u) => u !== ""))
    }).pipe(Layer.provide(FetchHttpClient.layer))
  }).pipe(Effect.orDie)
)

// internal

const Completion = Schema.Struct({
  choices: Schema.NonEmptyArray(Schema.Struct({
    message: Schema.Struct({ content: Schema.NullOr(Schema.String) }),
    finish_reason: Schema.optional(Schema.NullOr(Schema.String))
  })),
  usage: Schema.optional(Schema.Struct({ prompt_tokens: Schema.Number, completion_tokens: Schema.Number }))
})

const finishReason = (reason: string | null | undefined): Response.FinishPartEncoded["reason"] => {
  switch (reason) {
    case "stop":
      return "stop"
    case "length":
      return "length"
    case "content_filter":
      return "content-filter"
    case "tool_calls":
      return "tool-calls"
    default:
      return "unknown"
  }
}

const finish = (
  reason: Response.FinishPartEncoded["reason"],
  usage: { readonly prompt_tokens: number; readonly completion_tokens: number } | undefined
): Response.FinishPartEncoded => ({
  type: "finish",
  reason,
  usage: {
    inputTokens: usage === undefined ? {} : { total: usage.prompt_tokens },
    outputTokens: usage === undefined ? {} : { total: usage.completion_tokens }
  }
})

const unsupported = (module: string, method: string) =>
  AiError.make({
    module,
    method,
    reason: new AiError.InvalidRequestError({ description: `${method} is not supported by this model` })
  })

/** The text of a message's content, whatever its role. */
const textOf = (message: Prompt.Message): string =>
  typeof message.content === "string"
    ? message.content
    : message.content.flatMap((part) => part.type === "text" ? [part.text] : []).join("")

const messagesOf = (prompt: Prompt.Prompt) =>
  prompt.content
    .filter((message) => message.role !== "tool")
    .map((message) => ({ role: message.role, content: textOf(message) }))

const reportIn = (prompt: Prompt.Prompt): Effect.Effect<HealthReport, AiError.AiError> => {
  const user = [...prompt.content].reverse().find((message) => message.role === "user")
  const json = user === undefined ? undefined : /```json\n([\s\S]*?)\n```/.exec(textOf(user))?.[1]
  const failure = (description: string) =>
    AiError.make({
      module: "LocalDiagnoser",
      method: "generateText",
      reason: new AiError.InvalidRequestError({ description })
    })
  if (json === undefined) return Effect.fail(failure("the prompt has no JSON health report"))
  return Schema.decodeUnknownEffect(Schema.fromJsonString(HealthReport))(json).pipe(
    Effect.mapError((error) => failure(`the health report does not decode: ${error.message}`))
  )
}
