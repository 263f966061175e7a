/**
 * `npm start`: pgflows end to end on a real PostgreSQL.
 *
 * With no `DATABASE_URL` (or `PGFLOWS_DATABASE_URL`) it starts an embedded PostgreSQL 18 in a
 * temporary directory. A worker (in this process) then runs a batch of order workflows (see
 * `Order.ts`): one meets a transient payment failure that its retry fixes, one ends failed in the
 * dead-letter archive, express ones sleep a few seconds without holding the worker. A progress line
 * follows the batch; a table shows each run.
 *
 * Then the headline, crash recovery: a worker process (`demoWorker.ts`) running a parcel's slow step
 * is killed with SIGKILL, and a second one takes the run over once the lease ends, and the table of effects shows that the step completed before the crash was not run again.
 * Everything is shut down at the end (no process and no server left behind).
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Console, Effect, Fiber, Layer, Option, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import { Pgflows, PgflowsConfig, type Run } from "pgflows"
import * as ExampleDatabase from "./ExampleDatabase.ts"
import { OrderInput, processOrder } from "./Order.ts"
import { createEffects, sendParcel } from "./Parcel.ts"

const say = (line: string) => Console.log(`[demo] ${line}`)

/** The database to use: the configured one, or an embedded server that lives as long as the scope. */
const database = ExampleDatabase.url(say)

const orders = [
  new OrderInput({ orderId: "ORD-1001", amount: 25, express: false }),
  new OrderInput({ orderId: "ORD-1002", amount: 140, express: false }),
  new OrderInput({ orderId: "ORD-1003-FLAKY", amount: 60, express: false }),
  new OrderInput({ orderId: "ORD-1004", amount: 5000, express: false }),
  new OrderInput({ orderId: "ORD-1005", amount: 80, express: true }),
  new OrderInput({ orderId: "ORD-1006", amount: 12, express: false }),
  new OrderInput({ orderId: "ORD-1007", amount: 310, express: true }),
  new OrderInput({ orderId: "ORD-1008", amount: 45, express: false })
]

const pad = (text: string, width: number) => text.length >= width ? text : text + " ".repeat(width - text.length)

const describeOutcome = (info: Run.RunInfo): string => {
  if (Option.isSome(info.output)) {
    const shipment = info.output.value as { tracking?: string }
    return `shipped, tracking ${shipment.tracking}`
  }
  if (Option.isSome(info.error)) {
    const error = info.error.value as { _tag?: string; message?: string }
    return `${error._tag}: ${error.message}`
  }
  return info.wakeAt !== undefined ? `sleeping until ${info.wakeAt.toISOString().slice(11, 19)}` : ""
}

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  const sql = yield* PgClient.PgClient
  const [row] = yield* sql<{ version: string }>`SELECT version() AS version`
  yield* say(`connected with @effect/sql-pg: ${row?.version.split(" on ")[0]}`)
  const worker = yield* Effect.forkChild(client.runWorker({ concurrency: 8 }))
  const ids = yield* client.startBatch(processOrder, orders, { ids: orders.map((order) => order.orderId) })
  yield* say(`started ${ids.length} order workflows; a worker in this process runs them`)

  const interactive = process.stdout.isTTY === true
  let last = ""
  while (true) {
    const infos = yield* Effect.forEach(ids, (id) => client.status(id))
    const counts = new Map<Run.Status, number>()
    for (const info of infos) counts.set(info.status, (counts.get(info.status) ?? 0) + 1)
    const done = infos.filter((info) => info.status === "completed" || info.status === "failed").length
    const line = `progress: ${done}/${ids.length} ended | ` +
      [...counts].map(([status, n]) => `${status} ${n}`).join(", ")
    if (line !== last) {
      if (interactive) yield* Effect.sync(() => process.stdout.write(`\r[demo] ${pad(line, 70)}`))
      else yield* say(line)
      last = line
    }
    if (done === ids.length) break
    yield* Effect.sleep("200 millis")
  }
  if (interactive) yield* Effect.sync(() => process.stdout.write("\n"))
  yield* Fiber.interrupt(worker)

  const infos = yield* Effect.forEach(ids, (id) => client.status(id))
  yield* say("")
  yield* say(`${pad("run", 16)} ${pad("status", 10)} ${pad("steps (attempts)", 56)} outcome`)
  for (const info of infos) {
    const steps = info.steps.map((step) => `${step.name.replace("pgflows.", "")}(${step.attempts})`).join(" ")
    yield* say(`${pad(info.id, 16)} ${pad(info.status, 10)} ${pad(steps, 56)} ${describeOutcome(info)}`)
  }
  const archived = yield* client.queueMetrics()
  yield* say("")
  yield* say(`dead-letter archive of queue ${archived.queue}: ${archived.archived} message(s)`)
})

/** A worker process of the crash part, stopped (SIGKILL) when the scope closes if still alive. */
const spawnWorker = (name: string, url: Redacted.Redacted<string>) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess.ChildProcess>((resume) => {
      const child = ChildProcess.spawn(process.execPath, [Path.join(import.meta.dirname, "demoWorker.ts")], {
        env: {
          ...process.env,
          PGFLOWS_DATABASE_URL: Redacted.value(url),
          PGFLOWS_LEASE: "2 seconds",
          PGFLOWS_POLL_INTERVAL: "200 millis",
          WORKER_NAME: name
        },
        stdio: ["ignore", "pipe", "inherit"]
      })
      child.stdout!.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes(`${name} ready`)) resume(Effect.succeed(child))
      })
      child.on("exit", (code) => resume(Effect.die(new Error(`worker ${name} exited early (${code})`))))
    }),
    (child) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.on("exit", () => resolve())
          child.kill("SIGKILL")
        })
      )
  )

/**
 * The headline: a worker killed with SIGKILL in the middle of a step loses its run to another
 * worker, which goes on from the journal: the step completed before the crash does not run again.
 */
const crash = (url: Redacted.Redacted<string>) =>
  Effect.gen(function*() {
    const client = yield* Pgflows.Pgflows
    const sql = yield* PgClient.PgClient
    yield* createEffects
    yield* say("")
    yield* say("crash recovery: a worker process is killed in the middle of a step; a second one takes over")
    const first = yield* spawnWorker("worker-A", url)
    // A new parcel each time, so a second `npm start` on the same database shows its own crash.
    const parcelId = `PARCEL-${Crypto.randomBytes(3).toString("hex")}`
    const id = yield* client.start(sendParcel, { parcelId }, { id: parcelId })
    const ranOn = Effect.map(
      sql<{ worker: string }>`SELECT worker FROM demo_effects WHERE parcel = ${parcelId} AND step = 'ship_parcel'`,
      (rows) => rows[0]?.worker
    )
    let victim: string | undefined = undefined
    while (victim === undefined) {
      victim = yield* ranOn
      if (victim === undefined) yield* Effect.sleep("20 millis")
    }
    // The journal records an attempt once it has run for a moment: wait for it, so the crash shows.
    while (!(yield* client.status(id)).steps.some((step) => step.name === "ship_parcel" && step.status === "running")) {
      yield* Effect.sleep("20 millis")
    }
    yield* say(`${victim} is in ship_parcel: killing it with SIGKILL (no chance to clean up)`)
    yield* Effect.sync(() => first.kill("SIGKILL"))
    // Started after the kill: a worker that takes long to start on a busy machine must not leave
    // worker-A the time to finish the step first.
    const second = yield* spawnWorker("worker-B", url)
    yield* say("worker-B takes the run over once worker-A's lease (2 seconds) has expired...")
    yield* client.result(id, { timeout: "60 seconds" })
    const info = yield* client.status(id)
    yield* say(`${parcelId} ${info.status} after ${info.executions} executions (${info.recoveries} recovery)`)
    const effects = yield* sql<{ step: string; workers: string; n: number }>`
      SELECT step, string_agg(worker, ', ' ORDER BY at) AS workers, count(*)::int AS n
      FROM demo_effects WHERE parcel = ${parcelId} GROUP BY step ORDER BY min(at)`
    yield* say(`${pad("step", 16)} ${pad("attempts", 9)} ran on`)
    for (const step of info.steps) {
      const row = effects.find((effect) => effect.step === step.name)
      yield* say(`${pad(step.name, 16)} ${pad(String(step.attempts), 9)} ${row?.workers ?? ""}`)
    }
    // Said from what the journal and the effects table show, not assumed.
    const ranOnce = (step: string) => effects.find((effect) => effect.step === step)?.n === 1
    const reran = effects.find((effect) => effect.step === "ship_parcel")?.workers.endsWith("worker-B") === true
    yield* say(
      ranOnce("reserve_parcel") && reran
        ? "reserve_parcel completed before the crash and did not run again; ship_parcel ran again on worker-B"
        : `unexpected: ${JSON.stringify(effects)}`
    )
    yield* Effect.sync(() => second.kill("SIGTERM"))
  }).pipe(Effect.scoped)

const main = Effect.gen(function*() {
  const url = yield* database
  const Database = PgClient.layer({ url: url as Redacted.Redacted<string> })
  yield* program.pipe(
    Effect.provide(Pgflows.layerPg({ workflows: [processOrder] }).pipe(Layer.provideMerge(Database))),
    Effect.provide(PgflowsConfig.layer({ parkThreshold: "1 second", pollInterval: "250 millis" }))
  )
  // The crash part runs no worker here: the two worker processes do.
  yield* crash(url as Redacted.Redacted<string>).pipe(
    Effect.provide(Pgflows.layerPg({ workflows: [sendParcel] }).pipe(Layer.provideMerge(Database))),
    Effect.provide(PgflowsConfig.layerFromEnv)
  )
  yield* say("done, shutting down")
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
