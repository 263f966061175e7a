// The HTTP phase of `npm run bench`: @pgflows/server on a loopback port, loaded by this process with
// a bounded number of requests from a bounded number of concurrent callers (Node's fetch, keep-alive),
// each figure requests/s and p50/p99 latency in milliseconds:
//
// - `stepCalls`: POST /steps/:name, each with a result key of its own (so each claims the call,
//   runs the step and records its answer: two writes);
// - `stepReplays`: the same calls again (answered from the recorded outcome, the step not run);
// - `starts`: POST /runs of the 3-step workflow (the run and its queue message written; no worker
//   runs them meanwhile, so this is the cost of `start` over HTTP).
import { PgflowsServer } from "@pgflows/server"
import * as Auth from "@pgflows/server/Auth"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { HttpServer } from "effect/http"
import * as Crypto from "node:crypto"
import { Step } from "pgflows"

const token = `bench-admin-${Crypto.randomBytes(12).toString("hex")}`
const secret = `bench-secret-${Crypto.randomBytes(12).toString("hex")}`

const echo = Step.make("bench_echo", {
  input: Schema.Struct({ n: Schema.Number }),
  output: Schema.Struct({ n: Schema.Number }),
  run: (input) => Effect.succeed({ n: input.n + 1 })
})

const round = (n: number, digits = 2) => Number(n.toFixed(digits))
const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

/** `total` requests from `callers` concurrent callers; every answer must have status `expected`. */
const load = (total: number, callers: number, expected: number, send: (i: number) => Promise<Response>) =>
  Effect.promise(async () => {
    const samples: Array<number> = []
    let next = 0
    let failed: string | undefined
    const caller = async () => {
      while (next < total && failed === undefined) {
        const i = next++
        const started = performance.now()
        const response = await send(i)
        const body = await response.text()
        samples.push(performance.now() - started)
        if (response.status !== expected) failed = `request ${i}: ${response.status} ${body.slice(0, 200)}`
      }
    }
    const started = performance.now()
    await Promise.all(Array.from({ length: callers }, caller))
    const seconds = (performance.now() - started) / 1000
    if (failed !== undefined) throw new Error(failed)
    samples.sort((a, b) => a - b)
    return {
      requests: total,
      callers,
      requestsPerSecond: round(total / seconds, 0),
      p50Ms: round(percentile(samples, 50)),
      p99Ms: round(percentile(samples, 99))
    }
  })

/** Serves @pgflows/server on 127.0.0.1 and measures it; needs `Pgflows` and the `SqlClient` in context. */
export const measure = (options: {
  readonly requests: number
  readonly callers: number
  readonly workflow: string
}) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      PgflowsServer.layerServer({
        auth: Auth.tokens([{ token: Redacted.make(token), scope: "admin" }]),
        steps: [echo],
        stepSecret: Redacted.make(secret),
        host: "127.0.0.1",
        port: 0,
        logRequests: false
      })
    )
    const base = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)
    const instance = Crypto.randomBytes(4).toString("hex")
    const step = (i: number) =>
      fetch(`${base}/steps/bench_echo`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-pgflows-instance-id": instance,
          "x-pgflows-result-key": `s1:${i + 1}`,
          "x-pgflows-step-secret": secret
        },
        body: JSON.stringify({ n: i })
      })
    // Warm up the connections and the code paths.
    yield* load(100, options.callers, 200, (i) => step(options.requests + i))
    const stepCalls = yield* load(options.requests, options.callers, 200, step)
    const stepReplays = yield* load(options.requests, options.callers, 200, step)
    const starts = yield* load(options.requests, options.callers, 201, (i) =>
      fetch(`${base}/runs`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ workflow: options.workflow, input: { n: i } })
      }))
    return { stepCalls, stepReplays, starts }
  }).pipe(Effect.scoped)
