// The step endpoint's protocol over real HTTP: the answers and their status codes, the recorded
// outcome per (instance id, result key) so a step never runs twice for one call, the shared secret,
// and bad requests refused with a clear 4xx and nothing written.
import { assert, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { PgflowsConfig } from "pgflows"
import { BaseUrl, callsOf, environment, events, stepSecret, unique } from "./fixtures/env.ts"

interface Answer {
  readonly status: number
  readonly body: any
  readonly text: string
  readonly contentType: string | null
}

const request = (
  path: string,
  init: { readonly body?: string; readonly headers?: Record<string, string>; readonly method?: string } = {}
) =>
  Effect.gen(function*() {
    const base = yield* BaseUrl
    return yield* Effect.promise(async (): Promise<Answer> => {
      const response = await fetch(`${base}${path}`, {
        method: init.method ?? "POST",
        headers: init.headers ?? {},
        ...(init.body === undefined ? {} : { body: init.body })
      })
      const text = await response.text()
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        body = undefined
      }
      return { status: response.status, body, text, contentType: response.headers.get("content-type") }
    })
  })

const headers = (instance: string, key = "s1:1", extra: Record<string, string> = {}) => ({
  "content-type": "application/json",
  "x-pgflows-instance-id": instance,
  "x-pgflows-result-key": key,
  "x-pgflows-step-secret": Redacted.value(stepSecret),
  ...extra
})

const call = (step: string, input: unknown, instance: string, key = "s1:1", extra: Record<string, string> = {}) =>
  request(`/steps/${step}`, { body: JSON.stringify(input), headers: headers(instance, key, extra) })

/** The step_calls rows of an instance. */
const records = (instance: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    return yield* sql.unsafe<{ result_key: string; status: string; attempts: number }>(
      `SELECT result_key, status, attempts FROM "${schema}".step_calls WHERE instance_id = $1 ORDER BY result_key`,
      [instance]
    )
  })

layer(environment(), { excludeTestServices: true, timeout: "2 minutes" })("the step endpoint", (it) => {
  it.effect("200 with the step's encoded output; a repeated call gets the recorded answer without running it", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = unique()
      const first = yield* call("classify", { key, amount: 500 }, instance)
      assert.strictEqual(first.status, 200, first.text)
      assert.deepStrictEqual(first.body, { tier: "gold" })
      assert.include(first.contentType, "application/json")
      const again = yield* call("classify", { key, amount: 500 }, instance)
      assert.deepStrictEqual([again.status, again.body], [200, { tier: "gold" }])
      assert.strictEqual(callsOf(`classify:${key}`), 1, "a completed step never runs again")
      // Another result key (the next iteration of a loop) is another call.
      const next = yield* call("classify", { key, amount: 5 }, instance, "s1:2")
      assert.deepStrictEqual(next.body, { tier: "basic" })
      assert.strictEqual(callsOf(`classify:${key}`), 2)
      assert.deepStrictEqual((yield* records(instance)).map((row) => [row.result_key, row.status, row.attempts]), [
        ["s1:1", "completed", 1],
        ["s1:2", "completed", 1]
      ])
    }))

  it.effect("two requests for one call at once run the step once, and both get its answer", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = unique()
      const answers = yield* Effect.all([call("stock", key, instance), call("stock", key, instance)], {
        concurrency: 2
      })
      assert.deepStrictEqual(answers.map((answer) => [answer.status, answer.body]), [[200, 7], [200, 7]])
      assert.strictEqual(callsOf(`stock:${key}`), 1)
    }))

  it.effect("a call still held by a live claim is waited for; an expired claim is taken over", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const hash = (input: unknown) => Crypto.createHash("sha256").update(JSON.stringify(input)).digest("hex")
      const live = unique()
      const key = unique()
      yield* sql.unsafe(
        `INSERT INTO "${schema}".step_calls (instance_id, result_key, step, input_hash, status, lease_owner, lease_expires_at)
VALUES ($1, 's1:1', 'tick', $2, 'running', 'elsewhere', now() + interval '1 minute')`,
        [live, hash(key)]
      )
      const finish = sql.unsafe(
        `UPDATE "${schema}".step_calls SET status = 'completed', output = '41'::jsonb, attempts = 1
WHERE instance_id = $1`,
        [live]
      ).pipe(Effect.delay("300 millis"))
      const [answer] = yield* Effect.all([call("tick", key, live), finish], { concurrency: 2 })
      assert.deepStrictEqual([answer.status, answer.body], [200, 41])
      assert.strictEqual(callsOf(`tick:${key}`), 0, "the other request's answer, not a second run")

      const dead = unique()
      yield* sql.unsafe(
        `INSERT INTO "${schema}".step_calls (instance_id, result_key, step, input_hash, status, lease_owner, lease_expires_at)
VALUES ($1, 's1:1', 'tick', $2, 'running', 'crashed', now() - interval '1 second')`,
        [dead, hash(key)]
      )
      const taken = yield* call("tick", key, dead)
      assert.deepStrictEqual([taken.status, taken.body], [200, 1])
      const [row] = yield* sql.unsafe<{ executions: number; status: string }>(
        `SELECT executions, status FROM "${schema}".step_calls WHERE instance_id = $1`,
        [dead]
      )
      assert.deepStrictEqual(row, { executions: 2, status: "completed" })
    }))

  it.effect("500 for a step failure: its typed error after its attempts, without the cause; recorded", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = unique()
      const answer = yield* call("always_busy", key, instance)
      assert.strictEqual(answer.status, 500)
      assert.deepStrictEqual(answer.body, {
        _tag: "StepFailed",
        step: "always_busy",
        attempts: 4,
        error: { _tag: "Busy", attempt: 4, message: "the payment provider is busy (attempt 4)" },
        message: "step \"always_busy\" failed after 4 attempts: the payment provider is busy (attempt 4)"
      })
      assert.notInclude(answer.text, "hunter2")
      assert.notInclude(answer.text, "stack")
      const again = yield* call("always_busy", key, instance)
      assert.deepStrictEqual([again.status, again.body], [500, answer.body])
      assert.strictEqual(callsOf(`busy:${key}`), 4, "the recorded failure, no new attempts")
    }))

  it.effect("each attempt runs under the step's timeout, and the plugins' step hooks see every attempt", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = unique()
      const answer = yield* call("slow", key, instance)
      assert.strictEqual(answer.status, 500)
      assert.deepStrictEqual([answer.body.attempts, answer.body.error._tag], [2, "StepTimeoutError"])
      assert.strictEqual(callsOf(`slow:${key}`), 2)
      assert.deepStrictEqual(events.get(instance), [
        "before slow s1:1 #1",
        "error slow #1 final=false",
        "before slow s1:1 #2",
        "error slow #2 final=true"
      ])
      const ok = unique()
      assert.strictEqual((yield* call("tick", unique(), ok)).status, 200)
      assert.deepStrictEqual(events.get(ok), ["before tick s1:1 #1", "after tick #1"])
    }))

  it.effect("500 for a defect, with a generic message: the defect's text and stack stay in the log", () =>
    Effect.gen(function*() {
      const answer = yield* call("explodes", unique(), unique())
      assert.strictEqual(answer.status, 500)
      assert.strictEqual(answer.body.error._tag, "StepDefect")
      assert.include(answer.body.message, "failed unexpectedly")
      assert.notInclude(answer.text, "abc123")
      assert.notInclude(answer.text, "    at ")
    }))

  it.effect("404 for an unknown step, 422 for an input its Schema rejects: nothing written", () =>
    Effect.gen(function*() {
      const instance = unique()
      const unknown = yield* call("no_such_step", 1, instance)
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body._tag, "UnknownStep")
      assert.strictEqual(unknown.body.step, "no_such_step")
      const invalid = yield* call("classify", { key: "k", amount: "lots" }, instance)
      assert.strictEqual(invalid.status, 422)
      assert.strictEqual(invalid.body._tag, "StepInputInvalid")
      assert.deepStrictEqual(invalid.body.issues.map((issue: { path: string }) => issue.path), ["amount"])
      assert.include(invalid.body.message, "the input of step \"classify\" does not match its Schema")
      assert.deepStrictEqual(yield* records(instance), [])
    }))

  it.effect("409 when a result key already belongs to another call", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = unique()
      assert.strictEqual((yield* call("tick", key, instance)).status, 200)
      const other = yield* call("tick", `${key}-other`, instance)
      assert.strictEqual(other.status, 409)
      assert.strictEqual(other.body._tag, "ResultKeyConflict")
      const otherStep = yield* call("stock", key, instance)
      assert.strictEqual(otherStep.status, 409)
      assert.strictEqual(callsOf(`tick:${key}-other`), 0)
    }))

  it.effect("401 without the shared secret, or with a wrong one: nothing runs, nothing is written", () =>
    Effect.gen(function*() {
      const instance = unique()
      const key = unique()
      const { "x-pgflows-step-secret": _, ...withoutSecret } = headers(instance)
      const missing = yield* request("/steps/tick", { body: JSON.stringify(key), headers: withoutSecret })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual(missing.body._tag, "Unauthorized")
      const wrong = yield* call("tick", key, instance, "s1:1", { "x-pgflows-step-secret": "not-the-secret-0123456789" })
      assert.strictEqual(wrong.status, 401)
      // A bearer token of the REST API is not the step secret.
      assert.strictEqual(callsOf(`tick:${key}`), 0)
      assert.deepStrictEqual(yield* records(instance), [])
    }))

  it.effect("bad requests: each a clear 4xx, nothing written", () =>
    Effect.gen(function*() {
      const instance = unique()
      const notJson = yield* request("/steps/tick", { body: "{\"oops\": ", headers: headers(instance) })
      assert.strictEqual(notJson.status, 400, notJson.text)
      assert.deepStrictEqual([notJson.body._tag, notJson.body.message], ["BadRequest", "the body is not valid JSON"])

      const empty = yield* request("/steps/tick", { body: "", headers: headers(instance) })
      assert.strictEqual(empty.status, 400, empty.text)

      const text = yield* request("/steps/tick", {
        body: "\"k\"",
        headers: { ...headers(instance), "content-type": "text/plain" }
      })
      assert.strictEqual(text.status, 415, text.text)
      assert.deepStrictEqual([text.body._tag, text.body.contentType], ["UnsupportedMediaType", "text/plain"])

      const big = yield* request("/steps/tick", {
        body: JSON.stringify("x".repeat(2 * 1024 * 1024)),
        headers: headers(instance)
      })
      assert.strictEqual(big.status, 413, big.text)
      assert.strictEqual(big.body._tag, "RequestTooLarge")

      const { "x-pgflows-instance-id": _, ...noInstance } = headers(instance)
      const missing = yield* request("/steps/tick", { body: "\"k\"", headers: noInstance })
      assert.strictEqual(missing.status, 400, missing.text)
      assert.include(missing.body.message, "x-pgflows-instance-id")

      const route = yield* request("/nowhere", { method: "GET" })
      assert.strictEqual(route.status, 404)
      assert.deepStrictEqual([route.body._tag, route.body.path], ["RouteNotFound", "/nowhere"])
      const method = yield* request("/steps/tick", { method: "GET" })
      assert.strictEqual(method.status, 404)

      assert.deepStrictEqual(yield* records(instance), [])
    }))
})
