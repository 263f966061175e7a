/**
 * A run's history as a JSON document: the run (workflow, version, input, state) and its whole
 * journal, with the names and input hashes of its operations and the values they recorded. Export
 * it with `client.exportHistory(runId)` (or `RunHistory.read`), keep it next to the code (a file
 * under `test/`), and let `ReplayCheck.histories` replay it against the code of a deploy in CI.
 *
 * @example
 * ```ts
 * const history = yield* client.exportHistory(runId)
 * Fs.writeFileSync("test/histories/order-1.json", RunHistory.toJson(history))
 * // later, in a test:
 * const recorded = yield* RunHistory.fromJson(Fs.readFileSync("test/histories/order-1.json", "utf8"))
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Keys from "./internal/keys.ts"
import { codec } from "./JsonCodec.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import { InvalidHistory, PayloadTooLarge, RunNotFound, type StoreError } from "./PgflowsError.ts"
import { statuses } from "./Run.ts"
import * as Store from "./Store.ts"

/**
 * The name and version of the document format.
 *
 * @category models
 * @since 0.1.0
 */
export const format = "pgflows.run-history/1"

/**
 * A journal entry of the history.
 *
 * @category schemas
 * @since 0.1.0
 */
export const Entry = Schema.Struct({
  key: Schema.String,
  name: Schema.String,
  inputHash: Schema.String,
  status: Schema.Literals(["running", "retrying", "waiting", "completed", "failed"]),
  attempts: Schema.Number,
  output: Schema.Unknown,
  error: Schema.Unknown,
  transactional: Schema.Boolean,
  startedAt: Schema.NullOr(Schema.String),
  completedAt: Schema.NullOr(Schema.String),
  wakeAt: Schema.NullOr(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type Entry = typeof Entry.Type

/**
 * The document.
 *
 * @category schemas
 * @since 0.1.0
 */
export const History = Schema.Struct({
  format: Schema.Literal(format),
  run: Schema.Struct({
    id: Schema.String,
    workflow: Schema.String,
    version: Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
    status: Schema.Literals(statuses),
    input: Schema.Unknown,
    parentId: Schema.NullOr(Schema.String),
    forkedFrom: Schema.NullOr(Schema.Struct({ runId: Schema.String, key: Schema.String })),
    createdAt: Schema.String,
    completedAt: Schema.NullOr(Schema.String)
  }),
  journal: Schema.Array(Entry)
})

/**
 * @category models
 * @since 0.1.0
 */
export type History = typeof History.Type

/**
 * Reads a run's history from the store in context. A stored value larger than the store can read
 * back fails with `PayloadTooLarge`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const read = Effect.fn("RunHistory.read")(function*(runId: string) {
  const store = yield* Store.Store
  const config = yield* PgflowsConfig.PgflowsConfig
  const [run, input, steps] = yield* Effect.all([store.getRun(runId), store.getInput(runId), store.getSteps(runId)], {
    concurrency: "unbounded"
  })
  if (run === undefined || input === undefined) return yield* new RunNotFound({ runId })
  const tooLarge = (subject: string, bytes: number) =>
    new PayloadTooLarge({ subject, bytes, limit: config.maxPayloadBytes })
  if (input._tag === "TooLarge") return yield* tooLarge(`input of run "${runId}"`, input.bytes)
  const journal: Array<Entry> = []
  for (const step of [...steps].sort((a, b) => Keys.byExecution(a.key, b.key))) {
    if (step.tooLarge !== undefined) {
      return yield* tooLarge(`stored value of ${step.name} (key ${step.key}) of run "${runId}"`, step.tooLarge)
    }
    journal.push({
      key: step.key,
      name: step.name,
      inputHash: step.inputHash,
      status: step.status,
      attempts: step.attempts,
      output: step.output,
      error: step.error,
      transactional: step.transactional === true,
      startedAt: iso(step.startedAt),
      completedAt: iso(step.completedAt),
      wakeAt: iso(step.wakeAt)
    })
  }
  return {
    format,
    run: {
      id: run.id,
      workflow: run.workflow,
      version: run.version,
      status: run.status,
      input: input.value,
      parentId: run.parentId,
      forkedFrom: run.forkedFrom,
      createdAt: new Date(run.createdAt).toISOString(),
      completedAt: iso(run.completedAt)
    },
    journal
  } satisfies History
}) as (runId: string) => Effect.Effect<History, RunNotFound | PayloadTooLarge | StoreError, Store.Store>

/**
 * The document as JSON text (indented, one key per line, so that a diff of two is readable).
 *
 * @category encoding
 * @since 0.1.0
 */
export const toJson = (history: History): string => `${JSON.stringify(history, null, 2)}\n`

/**
 * Reads a document from JSON text: `InvalidHistory` when it is not JSON or not a history.
 *
 * @category encoding
 * @since 0.1.0
 */
export const fromJson = (text: string): Effect.Effect<History, InvalidHistory> =>
  Effect.suspend(() => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (error) {
      return Effect.fail(
        new InvalidHistory({ issues: [{ path: "", message: `not JSON: ${(error as Error).message}` }] })
      )
    }
    return decode(json)
  })

/**
 * Checks a parsed JSON value: `InvalidHistory` when it is not a history.
 *
 * @category encoding
 * @since 0.1.0
 */
export const decode = (json: unknown): Effect.Effect<History, InvalidHistory> =>
  Effect.suspend(() => {
    const decoded = codec(History).decode(json)
    return Result.isSuccess(decoded)
      ? Effect.succeed(decoded.success)
      : Effect.fail(new InvalidHistory({ issues: decoded.failure }))
  })

// internal

const iso = (millis: number | null): string | null => millis === null ? null : new Date(millis).toISOString()
