// PgDurableScheduler against a real pg_durable (fixtures/live.ts: PGDURABLE_DATABASE_URL, or the
// published image through testcontainers when a Docker engine answers; otherwise skipped with the
// reason): a schedule of every minute starts a run that a pgflows worker completes.
import { assert, describe, layer } from "@effect/vitest"
import { PgDurableClient, PgDurableScheduler } from "@pgflows/pg-durable"
import { Effect, Fiber, Layer, Schema } from "effect"
import * as Crypto from "node:crypto"
import { Pgflows, PgflowsConfig, Scheduler, Workflow } from "pgflows"
import * as Live from "./fixtures/live.ts"

const source = await Live.source()
const skipped = source._tag === "none" ? source.reason : undefined
if (skipped !== undefined) console.info(`[pg-durable] live PgDurableScheduler tests skipped: ${skipped}`)

const suffix = Crypto.randomBytes(3).toString("hex")

const minutely = Workflow.make("pgd_minutely", {
  input: Schema.Struct({ note: Schema.String }),
  output: Schema.String,
  run: (input) => Effect.succeed(`ticked: ${input.note}`)
})

const environment = (from: Live.Source) =>
  Layer.mergeAll(PgDurableScheduler.layer, Pgflows.layerPg({ workflows: [minutely] })).pipe(
    Layer.provideMerge(PgDurableClient.layer()),
    Layer.orDie,
    Layer.provideMerge(
      PgflowsConfig.layer({
        schema: `pgflows_sched_${suffix}`,
        queue: `sched_${suffix}`,
        notifyChannel: `sched_${suffix}`,
        pollInterval: "200 millis"
      }).pipe(Layer.orDie)
    ),
    Layer.provideMerge(Live.layer(from))
  )

describe.skipIf(skipped !== undefined)(
  `PgDurableScheduler live${skipped === undefined ? "" : ` (skipped: ${skipped})`}`,
  () => {
    layer(environment(source), { excludeTestServices: true, timeout: "6 minutes" })((it) => {
      it.effect(
        "a schedule of every minute: pg_durable waits, enqueues, a worker completes the run",
        () =>
          Effect.gen(function*() {
            const scheduler = yield* Scheduler.Scheduler
            const durable = yield* PgDurableClient.PgDurableClient
            const client = yield* Pgflows.Pgflows
            const worker = yield* Effect.forkChild(client.runWorker())
            const made = yield* scheduler.schedule("live-minutely", "* * * * *", minutely, { note: "it's $live {x}" })
            let completed: string | undefined
            while (completed === undefined) {
              const page = yield* client.list({ workflow: "pgd_minutely", status: "completed" })
              completed = page.runs.find((run) => run.id.startsWith("schedule:live-minutely:"))?.id
              if (completed === undefined) yield* Effect.sleep("1 second")
            }
            assert.strictEqual(yield* client.result(completed), "ticked: it's $live {x}")
            assert.strictEqual((yield* scheduler.get("live-minutely")).status, "running")
            yield* scheduler.unschedule("live-minutely")
            assert.strictEqual(yield* durable.status(made.handle), "cancelled")
            yield* Fiber.interrupt(worker)
          }),
        300_000
      )
    })
  }
)
