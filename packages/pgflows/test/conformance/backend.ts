// What the conformance suites need from a backend: its layers, and a way to let time pass.
import type { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import * as Crypto from "node:crypto"
import { MemoryStore, MemoryWorkQueue, Pgflows, PgflowsConfig, PgStore, PgWorkQueue } from "pgflows"
import type { Plugin, Store, Workflow, WorkQueue } from "pgflows"

export interface Backend<R> {
  readonly name: "memory" | "postgres"
  /** Store + WorkQueue (and configuration) for one test; each call gets its own run queue. */
  readonly layer: (config?: PgflowsConfig.Options) => Layer.Layer<Store.Store | WorkQueue.WorkQueue, never, R>
  /** A WorkQueue alone, for the queue suite. */
  readonly queueLayer: Layer.Layer<WorkQueue.WorkQueue, never, R>
  /**
   * Lets `duration` pass for everything stored: TestClock for memory; for PostgreSQL, every stored
   * time (wake-ups, leases, visibility) is moved back by `duration`, so long waits take no time.
   */
  readonly advance: (duration: Duration.Input) => Effect.Effect<void, never, R>
  /** Waits for a fiber whose work sleeps in memory (short retries): drives TestClock for memory. */
  readonly settle: <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.Effect<A, E, R>
}

/** The test's own schema, queue and channel: tests sharing a database never see each other's runs. */
const unique = (config: PgflowsConfig.Options = {}): PgflowsConfig.Options => {
  const suffix = Crypto.randomBytes(4).toString("hex")
  return { schema: `s_${suffix}`, queue: `q_${suffix}`, notifyChannel: `c_${suffix}`, ...config }
}

const configLayer = (config?: PgflowsConfig.Options) =>
  Layer.effect(PgflowsConfig.PgflowsConfig, Effect.orDie(PgflowsConfig.make(unique(config))))

export const memory: Backend<never> = {
  name: "memory",
  layer: (config) => MemoryStore.layer.pipe(Layer.orDie, Layer.provideMerge(configLayer(config))),
  queueLayer: MemoryWorkQueue.layer,
  advance: (duration) => TestClock.adjust(duration),
  settle: (fiber) =>
    Effect.gen(function*() {
      for (let i = 0; i < 10_000 && fiber.pollUnsafe() === undefined; i++) {
        yield* TestClock.adjust("10 millis")
      }
      return yield* Fiber.join(fiber)
    })
}

export const postgres: Backend<PgClient.PgClient | SqlClient.SqlClient> = {
  name: "postgres",
  layer: (config) =>
    Layer.merge(PgStore.layer, PgWorkQueue.layer).pipe(Layer.orDie, Layer.provideMerge(configLayer(config))),
  queueLayer: PgWorkQueue.layer.pipe(Layer.orDie),
  advance: (duration) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const millis = Duration.toMillis(Duration.fromInputUnsafe(duration))
      const shift = sql`(${millis}::float8 * interval '1 millisecond')`
      yield* sql`UPDATE ${sql(`${schema}.runs`)}
        SET wake_at = wake_at - ${shift}, lease_expires_at = lease_expires_at - ${shift},
          deadline_at = deadline_at - ${shift}
        WHERE wake_at IS NOT NULL OR lease_expires_at IS NOT NULL OR deadline_at IS NOT NULL`
      yield* sql`UPDATE ${sql(`${schema}.steps`)} SET wake_at = wake_at - ${shift} WHERE wake_at IS NOT NULL`
      yield* sql`UPDATE ${sql(`${schema}.flow_starts`)} SET started_at = started_at - ${shift}`
      yield* sql`UPDATE ${sql(`${schema}.run_dedup`)} SET until_at = until_at - ${shift} WHERE until_at IS NOT NULL`
      yield* sql`UPDATE ${sql(`${schema}.queue_messages`)}
        SET vt = CASE WHEN vt < 'infinity' THEN vt - ${shift} ELSE vt END, enqueued_at = enqueued_at - ${shift}`
    }).pipe(Effect.orDie),
  settle: (fiber) => Fiber.join(fiber)
}

/** A `Pgflows` instance for the given workflows, on the store in context, alive for the scope. */
export const engine = <const W extends ReadonlyArray<Workflow.Any>>(
  workflows: W,
  plugins?: ReadonlyArray<Plugin.Plugin>
) =>
  Effect.map(
    Layer.build(
      Pgflows.layer({ workflows, plugins }) as Layer.Layer<Pgflows.Pgflows, never, Store.Store | WorkQueue.WorkQueue>
    ),
    (context) => Context.get(context, Pgflows.Pgflows)
  )

/** Counts calls, per key. */
export const counter = () => {
  const counts = new Map<string, number>()
  return {
    hit: (key: string) => Effect.sync(() => counts.set(key, (counts.get(key) ?? 0) + 1)),
    get: (key: string) => counts.get(key) ?? 0,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    counts
  }
}
