/**
 * Replays recorded runs against the current code without executing anything, and says for each run
 * whether it replays cleanly or where it diverges, so that a CI can check a deploy before it
 * happens. Each run is replayed by the definition of the version it started on, through the same
 * replay engine as a worker: every durable operation the code asks for is matched with the journal
 * (name and input hash at its key) and answered with the recorded value; at the end of the journal
 * the check stops, where a worker would go on. No step runs, nothing is written.
 *
 * The histories come from the database (`ReplayCheck.stored`, the runs in flight by default) or
 * from exported documents (`ReplayCheck.histories`, see `RunHistory`).
 *
 * @example
 * ```ts
 * const recorded = yield* RunHistory.fromJson(Fs.readFileSync("test/histories/order-1.json", "utf8"))
 * const report = yield* ReplayCheck.histories([order], [recorded])
 * assert.isTrue(report.ok, ReplayCheck.format(report))
 * ```
 *
 * **Gotchas**
 *
 * Code between durable operations runs as it would in a worker, in the context of the caller: a
 * workflow body that reads a service outside its steps needs it provided. A race still undecided
 * in the journal stops the check at the race.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { EngineEnv } from "./internal/engine.ts"
import { RunExecution } from "./internal/engine.ts"
import { decodeFailure } from "./internal/failure.ts"
import * as Keys from "./internal/keys.ts"
import * as Versions from "./internal/versions.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { type EngineError, NonDeterminismError, type StoreError } from "./PgflowsError.ts"
import type { Status } from "./Run.ts"
import * as RunHistory from "./RunHistory.ts"
import * as Store from "./Store.ts"
import type * as Workflow from "./Workflow.ts"

/**
 * What every verdict says of its run.
 *
 * @category models
 * @since 0.1.0
 */
export interface Subject {
  readonly runId: string
  readonly workflow: string
  readonly version: number
  /** The run's state when it was recorded. */
  readonly status: Status
}

/**
 * The run replays cleanly. `outcome`: the code returns (`completes`), fails with its own error
 * (`fails`), or asks for more than the journal holds (`continues`, with `next`: what a worker would
 * execute next). `notReplayed` lists journal keys the replay did not reach (steps removed at the
 * end, the losing branches of a race).
 *
 * @category models
 * @since 0.1.0
 */
export interface Replays extends Subject {
  readonly _tag: "Replays"
  readonly outcome: "completes" | "fails" | "continues"
  readonly next: { readonly key: string; readonly name: string } | undefined
  readonly replayed: number
  readonly notReplayed: ReadonlyArray<string>
}

/**
 * The code asks for another operation than the journal holds at `key` (the first such key): the
 * recorded name and input hash, and the new ones. A worker would fail the run with `error`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Diverges extends Subject {
  readonly _tag: "Diverges"
  readonly key: string
  readonly recorded: { readonly name: string; readonly inputHash: string }
  readonly replay: { readonly name: string; readonly inputHash: string }
  /** Set when the run took the old branch of a patch the code deprecated. */
  readonly patch: string | undefined
  readonly error: NonDeterminismError
}

/**
 * The replay fails for another reason a worker would fail the run with: a recorded value that no
 * longer decodes with the new Schemas (`DecodeError`), a defect of the workflow body, ...
 *
 * @category models
 * @since 0.1.0
 */
export interface Fails extends Subject {
  readonly _tag: "Fails"
  readonly error: EngineError
}

/**
 * No definition of the run's version was given: a deploy of this code would leave the run waiting
 * for a worker that registers its version.
 *
 * @category models
 * @since 0.1.0
 */
export interface NoDefinition extends Subject {
  readonly _tag: "NoDefinition"
  /** The versions of the workflow that were given. */
  readonly known: ReadonlyArray<number>
}

/**
 * @category models
 * @since 0.1.0
 */
export type Verdict = Replays | Diverges | Fails | NoDefinition

/**
 * The verdicts, one per run, and whether all of them replay cleanly.
 *
 * @category models
 * @since 0.1.0
 */
export interface Report {
  readonly verdicts: ReadonlyArray<Verdict>
  readonly ok: boolean
}

/**
 * Which stored runs `stored` checks: of the given workflows (or one of them, or one version), in
 * these states (default: the runs that have not ended, which a deploy affects), at most `limit` per
 * workflow (default 1000).
 *
 * @category models
 * @since 0.1.0
 */
export interface StoredOptions {
  readonly workflow?: string | undefined
  readonly version?: number | undefined
  readonly statuses?: ReadonlyArray<Status> | undefined
  readonly limit?: number | undefined
}

/**
 * Replays one recorded run against the definitions.
 *
 * @category checking
 * @since 0.1.0
 */
export const history = (
  workflows: ReadonlyArray<Workflow.Any>,
  recorded: RunHistory.History
): Effect.Effect<Verdict> =>
  Effect.gen(function*() {
    const { run } = recorded
    const subject: Subject = { runId: run.id, workflow: run.workflow, version: run.version, status: run.status }
    const definition = workflows.find((w) => w.name === run.workflow && w.version === run.version)
    if (definition === undefined) {
      const known = [...new Set(workflows.filter((w) => w.name === run.workflow).map((w) => w.version))]
      return { _tag: "NoDefinition", ...subject, known: known.sort((a, b) => a - b) } satisfies NoDefinition
    }
    const env: EngineEnv = {
      store: refusingStore,
      config: yield* PgflowsConfig.PgflowsConfig,
      services: yield* Effect.context<never>(),
      plugins: undefined,
      tracer: undefined
    }
    const now = Date.parse(run.createdAt)
    const claimed: Store.ClaimedRun = {
      run: {
        id: run.id,
        workflow: run.workflow,
        version: run.version,
        status: "running",
        output: null,
        error: null,
        executions: 1,
        recoveries: 0,
        events: 0,
        deadlineAt: null,
        trace: null,
        leaseOwner: "pgflows-replay-check",
        leaseExpiresAt: null,
        wakeAt: null,
        parentId: run.parentId,
        forkedFrom: run.forkedFrom,
        msgId: null,
        createdAt: now,
        updatedAt: now,
        startedAt: now,
        completedAt: null
      },
      input: { _tag: "Value", value: run.input },
      token: "pgflows-replay-check",
      msgId: 0,
      journal: recorded.journal.map((entry): Store.StepRecord => ({
        runId: run.id,
        key: entry.key,
        name: entry.name,
        inputHash: entry.inputHash,
        status: entry.status,
        output: entry.output,
        error: entry.error,
        attempts: entry.attempts,
        wakeAt: time(entry.wakeAt),
        startedAt: time(entry.startedAt),
        completedAt: time(entry.completedAt),
        transactional: entry.transactional
      })),
      now
    }
    const execution = new RunExecution(env, definition, claimed, now, "check")
    const outcome = yield* execution.run
    const decision = execution.decision
    if (decision?._tag === "Fail") {
      const error = decision.error
      if (error instanceof NonDeterminismError) {
        return {
          _tag: "Diverges",
          ...subject,
          key: error.key,
          recorded: error.journal,
          replay: error.replay,
          patch: error.patch,
          error
        } satisfies Diverges
      }
      return { _tag: "Fails", ...subject, error } satisfies Fails
    }
    if (outcome._tag === "Ended" && outcome.kind === "fail") {
      // The workflow's own error is a clean replay (the recorded run may have failed with it); one
      // of pgflows' (a defect of the body) is not.
      const failure = decodeFailure(outcome.error, "workflow", definition.error)
      if (failure._tag === "Engine") return { _tag: "Fails", ...subject, error: failure.error } satisfies Fails
    }
    const positional = recorded.journal.filter((entry) =>
      Keys.parse(entry.key) !== undefined && !Keys.isPatchMarker(entry.key)
    )
    return {
      _tag: "Replays",
      ...subject,
      outcome: outcome._tag === "Stopped" ? "continues" : outcome.kind === "complete" ? "completes" : "fails",
      next: outcome._tag === "Stopped" ? execution.next : undefined,
      replayed: positional.filter((entry) => execution.visited.has(entry.key)).length,
      notReplayed: positional.filter((entry) => !execution.visited.has(entry.key)).map((entry) => entry.key)
    } satisfies Replays
  }).pipe(Effect.withSpan("ReplayCheck.history"))

/**
 * Replays recorded runs (exported documents, see `RunHistory`) against the definitions.
 *
 * @category checking
 * @since 0.1.0
 */
export const histories = (
  workflows: ReadonlyArray<Workflow.Any>,
  recorded: ReadonlyArray<RunHistory.History>
): Effect.Effect<Report> => Effect.map(Effect.forEach(recorded, (one) => history(workflows, one)), report)

/**
 * Replays the runs of the store in context (by default those that have not ended) against the
 * definitions: the check of a deploy against the database it will run on.
 *
 * @category checking
 * @since 0.1.0
 */
export const stored = (
  workflows: ReadonlyArray<Workflow.Any>,
  options: StoredOptions = {}
): Effect.Effect<Report, StoreError, Store.Store> =>
  Effect.gen(function*() {
    const store = yield* Store.Store
    const names = options.workflow === undefined
      ? [...new Set(workflows.map((w) => w.name))]
      : [options.workflow]
    const verdicts: Array<Verdict> = []
    for (const workflow of names) {
      const found = yield* store.findRuns({
        workflow,
        version: options.version,
        statuses: options.statuses ?? ["pending", "running", "suspended"],
        limit: options.limit ?? 1000
      })
      for (const runId of found.ids) {
        const recorded = yield* Effect.result(RunHistory.read(runId))
        if (recorded._tag === "Failure") {
          // A run deleted meanwhile has nothing to check; one with a value too large to read fails.
          if (recorded.failure._tag === "StoreError") return yield* recorded.failure
          if (recorded.failure._tag === "PayloadTooLarge") {
            const run = yield* store.getRun(runId)
            if (run === undefined) continue
            verdicts.push({
              _tag: "Fails",
              runId,
              workflow: run.workflow,
              version: run.version,
              status: run.status,
              error: recorded.failure
            })
          }
          continue
        }
        verdicts.push(yield* history(workflows, recorded.success))
      }
    }
    return report(verdicts)
  }).pipe(Effect.withSpan("ReplayCheck.stored"))

/**
 * The report as text, one line per run, for a CI log.
 *
 * @category formatting
 * @since 0.1.0
 */
export const format = (result: Report): string =>
  result.verdicts.map((verdict) => {
    const run = `run ${verdict.runId} (${Versions.label(verdict.workflow, verdict.version)}, ${verdict.status})`
    switch (verdict._tag) {
      case "Replays":
        return `ok      ${run}: replays ${verdict.replayed} entries, then ${
          verdict.outcome === "continues"
            ? `executes ${verdict.next?.name ?? "?"} at key ${verdict.next?.key ?? "?"}`
            : verdict.outcome === "completes"
            ? "completes"
            : "fails with its own error"
        }${verdict.notReplayed.length === 0 ? "" : `; not replayed: ${verdict.notReplayed.join(", ")}`}`
      case "Diverges":
        return `DIVERGES ${run} at key ${verdict.key}: recorded "${verdict.recorded.name}" (input hash ` +
          `${verdict.recorded.inputHash}), the code asks for "${verdict.replay.name}" (input hash ` +
          `${verdict.replay.inputHash})${verdict.patch === undefined ? "" : ` (deprecated patch "${verdict.patch}")`}`
      case "Fails":
        return `FAILS   ${run}: ${verdict.error.message}`
      case "NoDefinition":
        return `MISSING ${run}: no definition of that version (given: ${
          verdict.known.length === 0 ? "none" : verdict.known.join(", ")
        })`
    }
  }).join("\n")

// internal

const report = (verdicts: ReadonlyArray<Verdict>): Report => ({
  verdicts,
  ok: verdicts.every((verdict) => verdict._tag === "Replays")
})

const time = (iso: string | null): number | null => iso === null ? null : Date.parse(iso)

/** The check writes nothing: a store that the engine never reaches in `check` mode, and dies if it did. */
const refusingStore: Store.Store["Service"] = new Proxy({} as Store.Store["Service"], {
  get: (_, operation) => {
    const refuse = Effect.die(new Error(`ReplayCheck: the replay tried ${String(operation)}; it must write nothing`))
    return operation === "nextWakeup" || operation === "subscribe" || operation === "inFlight"
      ? refuse
      : () => refuse
  }
})
