/**
 * Pruning ended runs (docs/ARCHITECTURE.md, "Retention"): a purge walks the runs in creation order a
 * batch (one statement, one short transaction) at a time, and the background pass of a worker
 * purges, for each workflow it registers whose policy lets runs go, under a lock of that workflow
 * (`Store.exclusive`), so one worker at a time prunes a workflow, and never a worker that does not
 * know its policy. A failing pass is logged and tried again at the next interval: it never reaches
 * the worker's claims or executions.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Metrics from "../Metrics.ts"
import type { StoreError } from "../PgflowsError.ts"
import * as Retention from "../Retention.ts"
import type * as Store from "../Store.ts"

/** Runs read per batch: each batch's statement reads this many rows of an index and locks no more trees. */
export const batchSize = 1000

export interface Purged {
  readonly runs: number
  readonly rows: number
}

/**
 * Purges in batches until the walk reaches `before`. With `pause`, it waits after each batch as
 * long as the batch took, so pruning takes at most half of one connection's time.
 */
export const purge = (
  store: Store.Store["Service"],
  query: Omit<Store.PurgeQuery, "limit" | "cursor">,
  options: { readonly source: "purge" | "retention"; readonly pause: boolean; readonly limit?: number | undefined }
): Effect.Effect<Purged, StoreError> =>
  Effect.gen(function*() {
    let cursor: Store.Cursor | undefined = undefined
    let runs = 0
    let rows = 0
    const attributes = { source: options.source }
    do {
      const started = yield* Clock.currentTimeMillis
      const batch: Store.PurgeBatch = yield* store.purgeRuns({
        ...query,
        limit: options.limit ?? batchSize,
        cursor
      })
      runs += batch.runs
      rows += batch.rows
      if (batch.runs > 0) {
        yield* Metric.update(Metric.withAttributes(Metrics.runsPruned, attributes), batch.runs)
        yield* Metric.update(Metric.withAttributes(Metrics.rowsPruned, attributes), batch.rows)
      }
      cursor = batch.nextCursor
      if (options.pause && cursor !== undefined) {
        const took = (yield* Clock.currentTimeMillis) - started
        if (took > 0) yield* Effect.sleep(Duration.millis(took))
      }
    } while (cursor !== undefined)
    return { runs, rows }
  })

/** A workflow this worker registers and the policy its runs are pruned by. */
export interface Rule {
  readonly workflow: string
  readonly policy: Retention.Policy
}

/** One pass: each workflow whose lock is free, each state its policy lets go. */
export const pass = (store: Store.Store["Service"], rules: ReadonlyArray<Rule>): Effect.Effect<Purged> =>
  Effect.gen(function*() {
    let runs = 0
    let rows = 0
    for (const rule of rules) {
      const done = yield* store.exclusive(
        `retention:${rule.workflow}`,
        Effect.gen(function*() {
          let pruned = { runs: 0, rows: 0 }
          for (const status of Retention.endedStatuses) {
            const keep = Retention.keepMillis(rule.policy, status)
            if (keep === undefined) continue
            const now = yield* Clock.currentTimeMillis
            const purged = yield* purge(store, { before: now - keep, statuses: [status], workflow: rule.workflow }, {
              source: "retention",
              pause: true
            })
            pruned = { runs: pruned.runs + purged.runs, rows: pruned.rows + purged.rows }
          }
          return pruned
        })
      ).pipe(
        Effect.catchCause((cause) =>
          Effect.as(
            Effect.logWarning(`pgflows: retention of workflow "${rule.workflow}" failed; tried again later`, cause),
            Option.none<Purged>()
          )
        )
      )
      if (Option.isNone(done) || done.value.runs === 0) continue
      runs += done.value.runs
      rows += done.value.rows
      yield* Effect.logInfo(
        `pgflows: retention pruned ${done.value.runs} runs (${done.value.rows} rows) of workflow "${rule.workflow}"`
      )
    }
    return { runs, rows }
  })

/** Passes every `interval`, until interrupted. */
export const run = (
  store: Store.Store["Service"],
  rules: ReadonlyArray<Rule>,
  interval: Duration.Duration
): Effect.Effect<never> => Effect.forever(Effect.andThen(Effect.sleep(interval), pass(store, rules)))
