/**
 * `npm run example:sre`: the AI SRE incident workflow (`Incident.ts`), scripted, on a real PostgreSQL.
 *
 * With no `DATABASE_URL` (or `PGFLOWS_DATABASE_URL`) it starts an embedded PostgreSQL 18. It starts
 * the service the incidents are about (`CheckoutService.ts`, a loopback HTTP server), the incident
 * API (`IncidentApi.ts`, where alerts and approvals arrive), and worker processes (`sreWorker.ts`)
 * that run the workflow. Then three incidents, one after the other:
 *
 * - INC-1, approved: a bad deploy. The health check meets two 503s and a request that hangs
 *   (retries, a step timeout), the model proposes a rollback, an engineer approves it, the
 *   remediation is applied and recorded in `sre_remediations`. During the verification, the worker
 *   is killed with SIGKILL; a second worker takes the run over once the lease has expired and
 *   verifies the recovery: nothing that completed before the crash runs again.
 * - INC-2, approval expired: a memory leak; nobody approves within 3 seconds, the incident is
 *   escalated and the page recorded in `sre_escalations`.
 * - INC-3, failed verification: a saturated database; the approved scale-out does not help, the
 *   verification fails, and the compensation reverts the scale-out and marks its row `reverted`.
 *
 * The workers print progress lines (prefixed with their name); the last one prints, when it
 * stops, the step attempts it counted and the spans it exported. Everything is shut down at the end.
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Console, Effect, Layer, Redacted, Schema } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { Pgflows, PgflowsConfig, type Run } from "pgflows"
import * as CheckoutService from "./CheckoutService.ts"
import * as Diagnoser from "./Diagnoser.ts"
import * as ExampleDatabase from "./ExampleDatabase.ts"
import { Alert, createTables, incidentResponse } from "./Incident.ts"
import * as IncidentApi from "./IncidentApi.ts"
import * as IncidentTelemetry from "./IncidentTelemetry.ts"

const say = (line: string) => Console.log(`[sre] ${line}`)
const lease = "2 seconds"

/** The database to use: the configured one, or an embedded server that lives as long as the scope. */
const database = ExampleDatabase.url(say)

/** Relays a child's output, line by line, with its name in front. */
const relay = (
  stream: NodeJS.ReadableStream,
  prefix: string,
  write: (text: string) => void,
  onLine: (line: string) => void
) => {
  let buffered = ""
  stream.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    const lines = buffered.split("\n")
    buffered = lines.pop()!
    for (const line of lines) {
      write(`${prefix}${line}\n`)
      onLine(line)
    }
  })
}

interface Worker {
  readonly name: string
  readonly child: ChildProcess.ChildProcess
  readonly exited: Promise<void>
  /** The progress lines it printed so far. */
  readonly lines: ReadonlyArray<string>
}

/** A worker process (`sreWorker.ts`), killed with SIGKILL when the scope closes if still alive. */
const spawnWorker = (name: string, url: Redacted.Redacted<string>) =>
  Effect.acquireRelease(
    Effect.callback<Worker>((resume) => {
      const child = ChildProcess.spawn(process.execPath, [Path.join(import.meta.dirname, "sreWorker.ts")], {
        env: {
          ...process.env,
          PGFLOWS_DATABASE_URL: Redacted.value(url),
          PGFLOWS_LEASE: lease,
          PGFLOWS_POLL_INTERVAL: "200 millis",
          WORKER_NAME: name
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
      const lines: Array<string> = []
      let ready = false
      relay(child.stdout!, `[${name}] `, (text) => process.stdout.write(text), (line) => {
        lines.push(line)
        if (!ready && line === `${name} ready`) {
          ready = true
          resume(Effect.succeed({ name, child, exited, lines }))
        }
      })
      relay(child.stderr!, `[${name}] `, (text) => process.stderr.write(text), () => {})
      child.on("exit", (code, signal) => {
        if (!ready) resume(Effect.die(new Error(`${name} exited before it was ready (${code ?? signal})`)))
      })
    }),
    (worker) => stop(worker, "SIGKILL")
  )

const stop = (worker: Worker, signal: NodeJS.Signals) =>
  Effect.promise(() => {
    if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill(signal)
    return worker.exited
  })

/** Polls `check` every 50 ms until it returns a value, for at most 30 seconds. */
const until = <A, E, R>(what: string, check: Effect.Effect<A | undefined, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 600; i++) {
      const value = yield* check
      if (value !== undefined) return value
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting for ${what}`))
  })

const pad = (text: string, width: number) => text.length >= width ? text : text + " ".repeat(width - text.length)

const program = (url: Redacted.Redacted<string>) =>
  Effect.gen(function*() {
    const client = yield* Pgflows.Pgflows
    const sql = yield* PgClient.PgClient
    const checkout = yield* CheckoutService.CheckoutService
    const api = yield* IncidentApi.IncidentApi
    const http = yield* HttpClient.HttpClient
    yield* createTables

    /** A request to the incident API: its status and JSON body. */
    const call = (method: "GET" | "POST", path: string, body?: unknown) =>
      Effect.gen(function*() {
        const request = method === "GET"
          ? HttpClientRequest.get(`${api.url}${path}`)
          : HttpClientRequest.post(`${api.url}${path}`).pipe(HttpClientRequest.bodyJsonUnsafe(body))
        const response = yield* http.execute(request)
        return { status: response.status, body: (yield* response.json) as any }
      }).pipe(Effect.orDie)

    const alert = (incident: {
      readonly id: string
      readonly summary: string
      readonly fault: CheckoutService.Fault
      readonly glitches?: ReadonlyArray<CheckoutService.Glitch>
      readonly approvalSeconds: number
    }) =>
      Effect.gen(function*() {
        yield* say("")
        yield* say(`${incident.id}: ${incident.summary}`)
        yield* checkout.inject(incident.fault, incident.glitches)
        const body = Schema.encodeSync(Alert)(
          new Alert({
            incidentId: incident.id,
            service: "checkout",
            serviceUrl: checkout.url,
            summary: incident.summary,
            approvalSeconds: incident.approvalSeconds
          })
        )
        const response = yield* call("POST", "/alerts", body)
        yield* say(`monitoring: POST /alerts ${incident.id} -> ${response.status} ${JSON.stringify(response.body)}`)
        const diagnosis = yield* until(
          `the diagnosis of ${incident.id}`,
          Effect.map(call("GET", `/incidents/${incident.id}`), (r) => r.body.diagnosis ?? undefined)
        )
        yield* say(
          `${incident.id} proposal from ${diagnosis.model}: ${diagnosis.action} (confidence ${diagnosis.confidence}); ` +
            `approval window ${incident.approvalSeconds} seconds`
        )
        return diagnosis
      })

    const approve = (id: string, by: string) =>
      Effect.gen(function*() {
        const response = yield* call("POST", `/incidents/${id}/approval`, { approved: true, by })
        yield* say(`${by} approves: POST /incidents/${id}/approval -> ${response.status}`)
      })

    /** Waits for the worker's line of the run's end: its progress lines are then all in. */
    const ended = (worker: Worker, id: string) =>
      until(
        `${worker.name}'s end of ${id}`,
        Effect.sync(() =>
          worker.lines.some((line) => new RegExp(`^${id} incident_response (completed|failed)`).test(line))
            ? true
            : undefined
        )
      )

    const outcome = (id: string) =>
      client.result(id as Run.RunId<typeof incidentResponse>, { timeout: "60 seconds" }).pipe(
        Effect.map((resolution) => `${resolution.outcome}: ${resolution.detail}`),
        Effect.catch((error) => Effect.succeed(`failed with ${IncidentTelemetry.describeError(error)}`))
      )

    /** The run's journal, with the workers whose progress lines show an attempt of each step. */
    const journal = (
      id: string,
      workers: ReadonlyArray<Worker>,
      killed?: { readonly worker: string; readonly step: string }
    ) =>
      Effect.gen(function*() {
        const info = yield* client.status(id)
        const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`
        yield* say(
          `${id} ${info.status} after ${plural(info.executions, "execution")} (${
            plural(info.recoveries, "recovery").replace(/ys$/, "ies")
          }); its journal:`
        )
        yield* say(`  ${pad("step", 20)} ${pad("status", 10)} ${pad("attempts", 9)} ran on`)
        for (const step of info.steps) {
          const ranOn = workers.filter((worker) => worker.lines.some((line) => line.startsWith(`${id} ${step.name} `)))
            .map((worker) => worker.name)
          if (killed?.step === step.name) ranOn.unshift(`${killed.worker} (killed)`)
          yield* say(
            `  ${pad(step.name, 20)} ${pad(step.status, 10)} ${pad(String(step.attempts), 9)} ${
              ranOn.length === 0 ? "(not a step: recorded by the engine)" : ranOn.join(", ")
            }`.trimEnd()
          )
        }
      })

    yield* say(`checkout service (the one that breaks) on ${checkout.url}`)
    yield* say(`incident API (alerts, approvals) on ${api.url}`)
    yield* say(`diagnoses come from ${
      process.env.OPENAI_API_KEY
        ? "OpenAI (OPENAI_API_KEY is set)"
        : "the local diagnoser (set OPENAI_API_KEY for OpenAI)"
    }`)
    const workerA = yield* spawnWorker("worker-A", url)
    yield* say(`worker-A is up (lease ${lease}); worker-B will come later`)

    // INC-1: approved, with a crash in the middle of the verification.
    yield* alert({
      id: "INC-1",
      summary: "checkout's error rate is up since deploy 2.4.1",
      fault: "bad_deploy",
      glitches: ["unavailable", "unavailable", "hang"],
      approvalSeconds: 30
    })
    yield* approve("INC-1", "ana")
    // The journal records a step attempt once it has run for a moment: kill worker-A in the middle of it.
    yield* until(
      "worker-A in verify_recovery",
      Effect.map(client.status("INC-1"), (info) =>
        info.steps.find((step) => step.name === "verify_recovery" && step.status === "running"))
    )
    yield* say(
      "the journal shows verify_recovery running on worker-A: killing worker-A with SIGKILL (no chance to clean up)"
    )
    yield* stop(workerA, "SIGKILL")
    const workerB = yield* spawnWorker("worker-B", url)
    yield* say(`worker-B is up; it takes INC-1 over once worker-A's lease (${lease}) has expired...`)
    yield* say(`INC-1 ${yield* outcome("INC-1")}`)
    yield* ended(workerB, "INC-1")
    yield* journal("INC-1", [workerA, workerB], { worker: "worker-A", step: "verify_recovery" })
    const received = yield* checkout.received
    const [rows] = yield* sql<
      { n: number }
    >`SELECT count(*)::int AS n FROM sre_remediations WHERE incident_id = 'INC-1'`
    const rerun = [
      ...new Set(workerB.lines.flatMap((line) =>
        /^INC-1 (\w+) (done|attempt)/.exec(line)?.[1] ?? []
      ))
    ]
    yield* say(
      `worker-B ran only ${rerun.join(", ")} for INC-1: the steps completed before the crash came from the journal`
    )
    yield* say(
      `INC-1 was remediated once: ${rows!.n} row in sre_remediations, ${
        received.filter((r) => r.incidentId === "INC-1" && r.request === "remediate").length
      } remediate request received by checkout`
    )

    // INC-2: nobody approves in time.
    yield* alert({
      id: "INC-2",
      summary: "checkout's p99 latency is over 1.5 s",
      fault: "memory_leak",
      approvalSeconds: 3
    })
    yield* say("nobody answers within 3 seconds...")
    yield* say(`INC-2 ${yield* outcome("INC-2")}`)

    // INC-3: approved, but the service does not recover: the compensation runs.
    yield* alert({
      id: "INC-3",
      summary: "checkout times out on every other request",
      fault: "db_saturation",
      approvalSeconds: 30
    })
    yield* approve("INC-3", "ana")
    yield* say(`INC-3 ${yield* outcome("INC-3")}`)
    yield* ended(workerB, "INC-3")
    yield* journal("INC-3", [workerB])

    yield* say("")
    yield* say("the application's tables:")
    const remediations = yield* sql<{ incident_id: string; action: string; approved_by: string; status: string }>`
      SELECT incident_id, action, approved_by, status FROM sre_remediations ORDER BY incident_id`
    for (const row of remediations) {
      yield* say(
        `  sre_remediations  ${row.incident_id}  ${pad(row.action, 10)} approved by ${row.approved_by}  ${row.status}`
      )
    }
    const escalations = yield* sql<{ incident_id: string; reason: string }>`
      SELECT incident_id, reason FROM sre_escalations ORDER BY incident_id`
    for (const row of escalations) yield* say(`  sre_escalations   ${row.incident_id}  ${row.reason}`)
    yield* say("what checkout received:")
    for (const r of yield* checkout.received) {
      yield* say(
        `  ${r.request} ${r.incidentId}${r.action === undefined ? "" : ` ${r.action}`}${
          r.applied ? "" : " (repeat, ignored)"
        }`
      )
    }
    yield* say("")
    yield* say("stopping worker-B (SIGTERM)")
    yield* stop(workerB, "SIGTERM")
  }).pipe(Effect.scoped)

const main = Effect.gen(function*() {
  const url = (yield* database) as Redacted.Redacted<string>
  const Database = PgClient.layer({ url })
  // This process runs no worker: it is where alerts and approvals arrive. The workers run the steps.
  const Engine = Pgflows.layerPg({ workflows: [incidentResponse] }).pipe(
    Layer.provideMerge(Database),
    Layer.provide([Diagnoser.local, FetchHttpClient.layer]),
    Layer.provide(PgflowsConfig.layerFromEnv)
  )
  const Services = Layer.mergeAll(IncidentApi.layer(), CheckoutService.layer(), FetchHttpClient.layer).pipe(
    Layer.provideMerge(Engine)
  )
  yield* program(url).pipe(Effect.provide(Services))
  yield* say("done, shutting down")
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
