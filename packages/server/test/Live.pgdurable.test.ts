// Push mode against a real pg_durable, both bindings (where pg_durable comes from: see
// ../../pg-durable/test/fixtures/live.ts; skipped with the reason when there is none).
//
// - worker: pg_durable's SQL nodes enqueue the calls, a StepWorker in this process runs them;
// - http: pg_durable's df.http calls this process's step endpoint. Released pg_durable builds send
//   df.http only to Azure service domains, never to localhost or a bare IP, so this needs
//   PGDURABLE_STEP_BASE_URL: a URL pg_durable can reach that forwards to PGDURABLE_STEP_PORT (default
//   8787) on this machine (a tunnel behind an Azure domain, or a pg_durable built with
//   `http-allow-all`); without it the HTTP tests are skipped, with that reason.
import { assert, describe, layer } from "@effect/vitest"
import { Graph, PgDurableClient, PgDurableMigrations, StepBinding, StepWorker } from "@pgflows/pg-durable"
import { Auth, PgflowsServer } from "@pgflows/server"
import { Effect, Layer, Option } from "effect"
import * as Crypto from "node:crypto"
import { Pgflows, PgflowsConfig, PgWorkQueue } from "pgflows"
import * as Live from "../../pg-durable/test/fixtures/live.ts"
import { alwaysBusy, callsOf, parse, price, receipt, steps, stepSecret, tick, unique } from "./fixtures/env.ts"

const source = await Live.source()
const skipped = source._tag === "none" ? source.reason : undefined
const baseUrl = process.env.PGDURABLE_STEP_BASE_URL?.trim() || undefined
const port = Number(process.env.PGDURABLE_STEP_PORT ?? "8787")
const httpSkipped = skipped ?? (baseUrl === undefined
  ? "PGDURABLE_STEP_BASE_URL is not set: released pg_durable builds send df.http only to Azure domains, never to " +
    "localhost, so the HTTP binding needs a URL pg_durable can reach that forwards to this machine"
  : undefined)
if (skipped !== undefined) console.info(`[server] live pg_durable tests skipped: ${skipped}`)
else if (httpSkipped !== undefined) console.info(`[server] live pg_durable HTTP-binding tests skipped: ${httpSkipped}`)

const suffix = Crypto.randomBytes(3).toString("hex")
const Config = Layer.effect(
  PgflowsConfig.PgflowsConfig,
  Effect.orDie(PgflowsConfig.make({
    schema: `pgflows_srv_live_${suffix}`,
    queue: `srv_live_runs_${suffix}`,
    stepQueue: `srv_live_steps_${suffix}`,
    notifyChannel: `srv_live_${suffix}`,
    pollInterval: "200 millis"
  }))
)

const environment = (from: Live.Source) => {
  const Worker = Layer.effectDiscard(Effect.gen(function*() {
    const worker = yield* StepWorker.StepWorker
    yield* Effect.forkScoped(worker.run)
  })).pipe(Layer.provide(StepWorker.layer({ steps })), Layer.provide(Layer.orDie(PgWorkQueue.layer)))
  // Served only for the HTTP binding; built for its side effect (listening), nothing provided.
  const Server = httpSkipped !== undefined ? Layer.empty : Layer.effectDiscard(Effect.void).pipe(
    Layer.provide(PgflowsServer.layerServer({
      auth: Auth.none,
      steps,
      stepSecret,
      host: "0.0.0.0",
      port,
      logRequests: false
    }))
  )
  return Layer.mergeAll(Worker, Server).pipe(
    Layer.provide(Layer.orDie(Pgflows.layerPg({ workflows: [] }))),
    Layer.orDie,
    Layer.provideMerge(Layer.effectDiscard(Effect.orDie(PgDurableMigrations.run))),
    Layer.provideMerge(Config),
    Layer.provideMerge(Live.layer(from))
  )
}

const client = (binding: "worker" | "http") =>
  PgDurableClient.make({
    steps,
    binding: binding === "worker"
      ? StepBinding.worker({ wait: "1 minute" })
      : StepBinding.http(baseUrl!, { secret: stepSecret, timeout: "40 seconds" })
  })

describe.skipIf(skipped !== undefined)(
  `push mode on a live pg_durable${skipped === undefined ? "" : ` (skipped: ${skipped})`}`,
  () => {
    layer(environment(source), { excludeTestServices: true, timeout: "6 minutes" })((it) => {
      for (const binding of ["worker", "http"] as const) {
        const reason = binding === "http" ? httpSkipped : undefined
        describe.skipIf(reason !== undefined)(
          `${binding} binding${reason === undefined ? "" : ` (skipped: ${reason})`}`,
          () => {
            it.effect("a three-step pipeline threads the outputs", () =>
              Effect.gen(function*() {
                const durable = yield* client(binding)
                const key = unique()
                const id = yield* durable.start(Graph.sequence(
                  Graph.step(parse, { capture: "parsed", input: Graph.value({ key, text: "L1x4" }) }),
                  Graph.step(price, { capture: "priced", input: Graph.capture("parsed") }),
                  Graph.step(receipt, { input: Graph.capture("priced") })
                ))
                assert.strictEqual(yield* durable.awaitInstance(id, { timeout: "90 seconds" }), "completed")
                const result = Option.getOrUndefined(yield* durable.result(id)) as {
                  rows: ReadonlyArray<{ output: string }>
                }
                assert.strictEqual(JSON.parse(result.rows[0]!.output), "L1: 40 EUR")
              }), 120_000)

            it.effect("a failing step fails the instance after its bounded attempts", () =>
              Effect.gen(function*() {
                const durable = yield* client(binding)
                const key = unique()
                const id = yield* durable.start(Graph.step(alwaysBusy, { input: Graph.value(key) }))
                assert.strictEqual(yield* durable.awaitInstance(id, { timeout: "90 seconds" }), "failed")
                assert.strictEqual(callsOf(`busy:${key}`), 4)
                const nodes = yield* durable.instanceNodes(id)
                assert.isTrue(
                  nodes.some((node) => node.status === "failed" && (node.result ?? "").includes("attempt 4"))
                )
              }), 120_000)

            it.effect("a loop calls its step anew in every iteration", () =>
              Effect.gen(function*() {
                const durable = yield* client(binding)
                const key = unique()
                const id = yield* durable.start(Graph.loop(Graph.sequence(
                  Graph.step(tick, { capture: "n", input: Graph.value(key) }),
                  Graph.branch(
                    Graph.sql`SELECT (${Graph.ref("n")})::text::int >= 3`,
                    Graph.break({ stopped: true }),
                    Graph.sql("SELECT 'again' AS next")
                  )
                )))
                assert.strictEqual(yield* durable.awaitInstance(id, { timeout: "90 seconds" }), "completed")
                assert.strictEqual(callsOf(`tick:${key}`), 3)
              }), 120_000)
          }
        )
      }
    })
  }
)
