/**
 * `npm run example:push`: push mode end to end. The expense-claim graph of `ExpenseClaim.ts` is
 * compiled with each step binding and started with `PgDurableClient.start`; pg_durable runs it inside
 * PostgreSQL and calls the steps back:
 *
 * - worker binding: each call goes on the step queue, and a `StepWorker` in this process runs it;
 * - http binding: `df.http` POSTs each call to `/steps/<name>` of `PgflowsServer.layerServer`, in this
 *   process, with a shared secret.
 *
 * Where pg_durable is installed (the `pg_durable` extension, `PgDurableClient.detect`), it runs the
 * instances. Otherwise, and on the embedded PostgreSQL started when there is no `DATABASE_URL`,
 * `PgDurableHarness` plays pg_durable's side node by node: a stand-in for tests and local
 * development, not pg_durable. Released pg_durable builds send `df.http` only to Azure service
 * domains, never to 127.0.0.1, so on pg_durable the http binding runs only with
 * `PGDURABLE_STEP_BASE_URL`: a URL pg_durable may call that reaches port `PGDURABLE_STEP_PORT`
 * (default 8787) of this machine, where the step endpoint then listens.
 *
 * Two claims per binding: one paid by policy, one that waits for a reviewer's signal. Each step call
 * is printed in the graph's order (the two branches of the parallel finish in either order), then
 * the typed result, read with `PgDurableClient.result(id, expenseClaim)`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Compiler, PgDurableClient, PgDurableHarness, StepBinding, StepWorker } from "@pgflows/pg-durable"
import { Auth, PgflowsServer } from "@pgflows/server"
import { Console, Effect, Layer, Option, Redacted } from "effect"
import { HttpServer } from "effect/http"
import * as Crypto from "node:crypto"
import { Pgflows, Plugin } from "pgflows"
import * as ExampleDatabase from "./ExampleDatabase.ts"
import { expenseClaim, steps } from "./ExpenseClaim.ts"

const say = (line: string) => Console.log(`[push] ${line}`)

/** The database to use: the configured one, or an embedded server that lives as long as the scope. */
const database = ExampleDatabase.url(say)

// ---------------------------------------------------------------------------------------------------
// Progress: the step calls of each instance, seen by a plugin of the StepWorker and of the server
// ---------------------------------------------------------------------------------------------------

interface Call {
  readonly key: string
  readonly step: string
  readonly attempt: number
  readonly outcome: string
}

/** Step calls by pg_durable instance id (plugins see the instance id as `runId`). */
const calls = new Map<string, Array<Call>>()
const printed = new Map<string, number>()

const record = (runId: string, call: Call) =>
  Effect.sync(() => {
    calls.set(runId, [...(calls.get(runId) ?? []), call])
  })

const progress = Plugin.make("progress", {
  afterStep: (event) =>
    record(event.runId, {
      key: event.key,
      step: event.step,
      attempt: event.attempt,
      outcome: JSON.stringify(event.output)
    }),
  onStepError: (event) =>
    event.final
      ? record(event.runId, { key: event.key, step: event.step, attempt: event.attempt, outcome: "failed" })
      : Effect.void
})

/** `s4:1` -> 4: step keys number the graph's steps in order. */
const position = (key: string) => Number(/^s(\d+)/.exec(key)?.[1] ?? 0)

/** Prints the calls not printed yet, in the graph's order. */
const printCalls = (id: string) =>
  Effect.gen(function*() {
    const all = [...(calls.get(id) ?? [])].sort((a, b) => position(a.key) - position(b.key))
    for (const call of all.slice(printed.get(id) ?? 0)) {
      const attempt = call.attempt === 1 ? "" : ` (attempt ${call.attempt})`
      yield* say(`  ${call.key.split(":")[0]} ${call.step.padEnd(17)}${call.outcome}${attempt}`)
    }
    printed.set(id, all.length)
  })

// ---------------------------------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------------------------------

const claims = [
  { claimId: "EXP-1", text: "Acme Tools, 84.00 USD, 2 hammers" },
  { claimId: "EXP-2", text: "Northwind Catering, 1250.00 GBP, team offsite" }
]

const review = { approved: true, reviewer: "dana" }

/** Starts one claim, follows it to its end, and prints its result. */
const runClaim = (client: PgDurableClient.PgDurableClient["Service"], claim: typeof claims[number]) =>
  Effect.gen(function*() {
    const id = yield* client.start(expenseClaim, { input: claim, label: claim.claimId })
    yield* say(`${claim.claimId} "${claim.text}": started, instance ${id}`)
    // Up to the branch: wait until assess_claim has answered (or the instance ended).
    while (!(calls.get(id) ?? []).some((call) => call.step === "assess_claim")) {
      const status = yield* client.status(id)
      if (status !== "pending" && status !== "running") break
      yield* Effect.sleep("50 millis")
    }
    yield* printCalls(id)
    const assessment = (calls.get(id) ?? []).find((call) => call.step === "assess_claim")
    if (assessment !== undefined && JSON.parse(assessment.outcome).route === "review") {
      // pg_durable drops a signal sent before the wait: the client sends it again until it is taken.
      const sent = yield* client.signal(id, "review", review)
      yield* say(
        `${claim.claimId} waits for a reviewer: signal "review" ${JSON.stringify(review)} taken (sent ${sent}x)`
      )
    }
    const status = yield* client.awaitInstance(id, { timeout: "2 minutes" })
    yield* printCalls(id)
    const settlement = yield* client.result(id, expenseClaim)
    yield* Option.match(settlement, {
      onNone: () => say(`${claim.claimId} ${status}`),
      onSome: (value) => say(`${claim.claimId} ${status}: ${value.outcome} ${value.eur.toFixed(2)} EUR, by ${value.by}`)
    })
  })

const program = Effect.gen(function*() {
  const detection = yield* (yield* PgDurableClient.make()).detect
  const onPgDurable = detection.extension
  // Where pg_durable can reach the step endpoint (released builds: an Azure domain forwarding here).
  const publicUrl = process.env.PGDURABLE_STEP_BASE_URL?.trim() || undefined
  const publicPort = Number(process.env.PGDURABLE_STEP_PORT ?? "8787")
  if (onPgDurable) {
    yield* say(`pg_durable is installed in database "${detection.database}": it runs the instances`)
  } else {
    yield* say(
      `pg_durable is not installed in database "${detection.database}": PgDurableHarness plays its side, ` +
        "node by node (a stand-in for tests and local development, not pg_durable)"
    )
  }

  const stepSecret = Redacted.make(Crypto.randomBytes(24).toString("hex"))
  // The REST API of the server is not used here; it is locked with a token nobody knows.
  const auth = Auth.tokens([{ token: Redacted.make(Crypto.randomBytes(24).toString("hex")), scope: "admin" }])
  const httpRuns = !onPgDurable || publicUrl !== undefined
  const Server = PgflowsServer.layerServer({
    auth,
    steps,
    stepSecret,
    plugins: [progress],
    logRequests: false,
    ...(onPgDurable && publicUrl !== undefined
      ? { host: "0.0.0.0", port: publicPort }
      : { host: "127.0.0.1", port: 0 })
  })
  // The worker binding's steps run here, while the layer lives.
  const Worker = Layer.effectDiscard(Effect.flatMap(StepWorker.StepWorker, (worker) => Effect.forkScoped(worker.run)))
    .pipe(Layer.provide(StepWorker.layer({ steps, plugins: [progress] })))
  // pg_durable runs the instances where it is installed; elsewhere the harness does.
  const Runner = onPgDurable ? Layer.empty : PgDurableHarness.layer()

  yield* Effect.gen(function*() {
    const { address } = yield* HttpServer.HttpServer
    const baseUrl = publicUrl ?? HttpServer.formatAddress(address)
    const bindings = [
      {
        name: "worker",
        binding: StepBinding.worker({ wait: "1 minute" }),
        how: "each call goes on the step queue; the StepWorker in this process runs it"
      },
      {
        name: "http",
        binding: StepBinding.http(baseUrl, { secret: stepSecret }),
        how: `df.http POSTs each call to ${baseUrl}/steps/<name> with the shared secret; the server runs it`
      }
    ] as const
    for (const { binding, name } of bindings) {
      const compiled = yield* Compiler.compile(expenseClaim, { binding, input: claims[0] })
      yield* say(
        `${name} binding: expense_claim compiles to ${compiled.nodes} pg_durable nodes, depth ${compiled.depth}`
      )
    }
    for (const { binding, how, name } of bindings) {
      yield* say("")
      if (name === "http" && !httpRuns) {
        yield* say(
          "http binding: skipped. Released pg_durable builds call only Azure service domains, never this " +
            "machine's loopback address; set PGDURABLE_STEP_BASE_URL to a URL pg_durable may call that reaches " +
            `port ${publicPort} here (PGDURABLE_STEP_PORT)`
        )
        continue
      }
      yield* say(`${name} binding: ${how}`)
      const client = yield* PgDurableClient.make({ steps, binding })
      for (const claim of claims) yield* runClaim(client, claim)
    }
  }).pipe(
    Effect.provide(Layer.mergeAll(Server, Worker, Runner).pipe(Layer.provideMerge(Pgflows.layerPg({ workflows: [] }))))
  )
  yield* say("")
  yield* say("done, shutting down")
})

const main = Effect.gen(function*() {
  const url = yield* database
  yield* program.pipe(
    Effect.provide(PgClient.layer({ url, maxConnections: 16, applicationName: "pgflows push-mode example" }))
  )
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
