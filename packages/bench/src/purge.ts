// The purge phase of `npm run bench` (`--purge=100000`): how fast `Pgflows.purge` deletes a history
// of ended runs, and what it costs the hot path meanwhile.
//
// The history is `history.ts`'s (three journal entries a run; of every 1,000 runs 50 failed, with
// their archived messages, and 1 was cancelled), loaded, vacuumed and analyzed. Then: the batch
// throughput of `main.ts` alone (a CHECKPOINT before); a purge of the whole history alone (runs/s,
// rows/s); the history loaded again, and the same purge started together with the batch throughput,
// so both figures are taken while the other runs; then the history again, pruned in the background by
// a worker whose definition of `bench_orders` keeps its runs 30 minutes, while the batch path runs. The purge takes what ended before half an hour ago;
// the hot path's runs are newer, and the history's are older. The purge's WAL per run counts all the
// database wrote meanwhile (with the hot path's, when they run together).
import { Clock, Context, Duration, Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Pgflows, PgflowsConfig, Workflow } from "pgflows"
import { type HotPathFigures, load } from "./history.ts"

const progress = (line: string) => Effect.sync(() => process.stderr.write(`[bench] ${line}\n`))
const round = (n: number, digits = 2) => Number(n.toFixed(digits))

export interface Options<E, R> {
  readonly runs: number
  readonly throughput: Effect.Effect<HotPathFigures, E, R>
}

export const measure = <E, R>(options: Options<E, R>) =>
  Effect.gen(function*() {
    const client = yield* Pgflows.Pgflows
    const sql = yield* SqlClient.SqlClient
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    const loadAll = Effect.gen(function*() {
      const [anchor] = yield* sql<{ at: Date }>`SELECT now() - interval '1 hour' AS at`
      yield* progress(`purge: loading ${options.runs} ended runs`)
      for (let from = 0; from < options.runs; from += 50_000) {
        yield* load(from, Math.min(options.runs, from + 50_000), options.runs, anchor!.at)
      }
      for (const table of ["runs", "steps", "queue_archive", "failed_runs", "cancelled_runs"]) {
        yield* sql.unsafe(`VACUUM (ANALYZE) "${schema}".${table}`)
      }
      yield* sql.unsafe("CHECKPOINT")
    })
    const purge = Effect.gen(function*() {
      const [lsn] = yield* sql<{ at: string }>`SELECT pg_current_wal_lsn()::text AS at`
      const started = yield* Clock.currentTimeMillis
      const purged = yield* client.purge({ before: new Date(Date.now() - 30 * 60_000) })
      const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
      const [wal] = yield* sql<{ bytes: string }>`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ${
        lsn!.at
      })::text AS bytes`
      return {
        walBytesPerRun: round(Number(wal!.bytes) / Math.max(purged.runs, 1), 0),
        runs: purged.runs,
        rows: purged.rows,
        seconds: round(seconds),
        runsPerSecond: round(purged.runs / seconds, 0),
        rowsPerSecond: round(purged.rows / seconds, 0)
      }
    })
    const worker = yield* Effect.forkChild(client.runWorker())
    yield* loadAll
    yield* progress("purge: batch throughput, no purge running")
    const alone = yield* options.throughput
    yield* sql.unsafe("CHECKPOINT")
    yield* progress("purge: the whole history, nothing else running")
    const purgeAlone = yield* purge
    yield* loadAll
    yield* progress("purge: the whole history and the batch throughput together")
    const purging = yield* Effect.forkChild(purge)
    const whilePurging = yield* options.throughput
    const purgeTogether = yield* Fiber.join(purging)
    // The background pruning of a worker that registers `bench_orders` (a fifth of the history) with
    // a retention policy, paced as it is (at most half of one connection), while the batch path runs.
    yield* loadAll
    yield* progress("purge: background retention of bench_orders and the batch throughput together")
    const config = yield* PgflowsConfig.PgflowsConfig
    const orders = Workflow.make("bench_orders", {
      input: Schema.Struct({ n: Schema.Number }),
      output: Schema.Struct({ n: Schema.Number }),
      retention: "30 minutes",
      run: (input) => Effect.succeed(input)
    })
    const { backgroundFigures, whilePruning } = yield* Effect.scoped(Effect.gen(function*() {
      const pruner = Context.get(
        yield* Layer.build(
          Layer.fresh(Pgflows.layerPg({ workflows: [orders] })).pipe(
            Layer.provide(
              Layer.succeed(PgflowsConfig.PgflowsConfig, { ...config, retentionInterval: Duration.seconds(1) })
            )
          )
        ),
        Pgflows.Pgflows
      )
      const countOrders = Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`${schema}.runs`)} WHERE workflow = 'bench_orders'`,
        (rows) => rows[0]!.n
      )
      const ordersBefore = yield* countOrders
      const pruneStarted = yield* Clock.currentTimeMillis
      const background = yield* Effect.forkChild(pruner.runWorker({ concurrency: 1 }))
      const whilePruning = yield* options.throughput
      while ((yield* countOrders) > 0) yield* Effect.sleep("200 millis")
      const pruneSeconds = ((yield* Clock.currentTimeMillis) - pruneStarted) / 1000
      yield* Fiber.interrupt(background)
      return {
        whilePruning,
        backgroundFigures: {
          runs: ordersBefore,
          seconds: round(pruneSeconds),
          runsPerSecond: round(ordersBefore / pruneSeconds, 0)
        }
      }
      // Scoped here: the pruner's LISTEN connection must be released before the pool closes.
    }))
    yield* Fiber.interrupt(worker)
    const figures = {
      historyRuns: options.runs,
      purgeAlone,
      purgeWhileHotPath: purgeTogether,
      backgroundRetention: backgroundFigures,
      throughputAlone: alone,
      throughputWhilePurging: whilePurging,
      throughputWhileBackgroundRetention: whilePruning
    }
    yield* Effect.sync(() =>
      process.stderr.write(
        `\n| purge of ${
          options.runs.toLocaleString("en")
        } runs | alone | with the hot path |\n| --- | ---: | ---: |\n` +
          `| runs/s | ${purgeAlone.runsPerSecond} | ${purgeTogether.runsPerSecond} |\n` +
          `| rows/s | ${purgeAlone.rowsPerSecond} | ${purgeTogether.rowsPerSecond} |\n` +
          `| hot path (batch) wf/s | ${alone.workflowsPerSecond} | ${whilePurging.workflowsPerSecond} |\n` +
          `| background retention of bench_orders, runs/s | | ${backgroundFigures.runsPerSecond} |\n` +
          `| hot path (batch) wf/s meanwhile | | ${whilePruning.workflowsPerSecond} |\n\n`
      )
    )
    return figures
  })
