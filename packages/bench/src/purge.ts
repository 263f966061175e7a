// The purge phase of `npm run bench` (`--purge=100000`): how fast `Pgflows.purge` deletes a history
// of ended runs, and what it costs the hot path meanwhile.
//
// The history is `history.ts`'s (three journal entries a run; of every 1,000 runs 50 failed, with
// their archived messages, and 1 was cancelled), loaded, vacuumed and analyzed. Then: the batch
// throughput of `main.ts` alone (a CHECKPOINT before); a purge of the whole history alone (runs/s,
// rows/s); the history loaded again, and the same purge started together with the batch throughput,
// so both figures are taken while the other runs. The purge takes what ended before half an hour ago;
// the hot path's runs are newer, and the history's are older.
import { Clock, Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql"
import { Pgflows, PgflowsConfig } from "pgflows"
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
      const started = yield* Clock.currentTimeMillis
      const purged = yield* client.purge({ before: new Date(Date.now() - 30 * 60_000) })
      const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
      return {
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
    yield* Fiber.interrupt(worker)
    const figures = {
      historyRuns: options.runs,
      purgeAlone,
      purgeWhileHotPath: purgeTogether,
      throughputAlone: alone,
      throughputWhilePurging: whilePurging
    }
    yield* Effect.sync(() =>
      process.stderr.write(
        `\n| purge of ${
          options.runs.toLocaleString("en")
        } runs | alone | with the hot path |\n| --- | ---: | ---: |\n` +
          `| runs/s | ${purgeAlone.runsPerSecond} | ${purgeTogether.runsPerSecond} |\n` +
          `| rows/s | ${purgeAlone.rowsPerSecond} | ${purgeTogether.rowsPerSecond} |\n` +
          `| hot path (batch) wf/s | ${alone.workflowsPerSecond} | ${whilePurging.workflowsPerSecond} |\n\n`
      )
    )
    return figures
  })
