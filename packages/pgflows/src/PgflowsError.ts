/**
 * The errors pgflows reports. Those that are stored with a run (as its error, or a step's) are
 * `Schema.TaggedError`s, so they round-trip through the database and `status` gives them back typed;
 * the others describe a call that could not be carried out.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import { innermostMessage } from "./internal/causes.ts"

/**
 * One problem found while decoding or validating a value: where, and what.
 *
 * @category models
 * @since 0.1.0
 */
export const Issue = Schema.Struct({ path: Schema.String, message: Schema.String })

/**
 * @category models
 * @since 0.1.0
 */
export type Issue = typeof Issue.Type

/**
 * The error Schema of a workflow or step that declares none: any failure is stored as the JSON of
 * its fields (`_tag`, `name`, `message` and the rest) and read back as that plain data, not as an
 * instance of its class. Declare `error` to get typed errors back.
 *
 * @category schemas
 * @since 0.1.0
 */
export const AnyError = Schema.Unknown.pipe(
  Schema.decodeTo(
    Schema.Unknown,
    SchemaTransformation.transform({ decode: (json: unknown) => json, encode: (value: unknown) => toJson(value) })
  )
).annotate({ identifier: "AnyError" })

/**
 * @category schemas
 * @since 0.1.0
 */
export type AnyError = typeof AnyError

/**
 * On replay, the workflow asked for something other than what its journal holds at the same key:
 * the code changed under a running workflow, or it is not deterministic (it branches on time,
 * randomness or I/O outside steps). The run fails; nothing is executed twice. `key` is the first
 * key where replay and journal differ; `patch` is set when the run took the old branch of a patch
 * that `Workflow.deprecatePatch` removed. The message says what to do.
 *
 * @category errors
 * @since 0.1.0
 */
export class NonDeterminismError extends Schema.TaggedError<NonDeterminismError>()("NonDeterminismError", {
  key: Schema.String,
  journal: Schema.Struct({ name: Schema.String, inputHash: Schema.String }),
  replay: Schema.Struct({ name: Schema.String, inputHash: Schema.String }),
  workflow: Schema.optional(Schema.String),
  version: Schema.optional(Schema.Number),
  patch: Schema.optional(Schema.String)
}) {
  override get message() {
    const run = this.workflow === undefined
      ? "the run"
      : `the run of workflow "${this.workflow}"${
        this.version === undefined || this.version === 0 ? "" : ` version ${this.version}`
      }`
    const fork = `fork the run from a step before key ${this.key} (client.fork(runId, { fromStep })) so that ` +
      "what follows runs again on the new code"
    if (this.patch !== undefined) {
      return `non-deterministic workflow: ${run} passed patch "${this.patch}" (key ${this.key}) before the patch ` +
        `shipped and took its old branch (the journal holds "${this.journal.name}" after it), which ` +
        `Workflow.deprecatePatch("${this.patch}") removed. Choices: bring the old branch back behind ` +
        `Workflow.patched("${this.patch}") until no such run is in flight; keep the code that has it registered ` +
        `as the run's version; or ${fork}.`
    }
    const what = this.journal.name === this.replay.name
      ? `step "${this.replay.name}" with another input (hash ${this.replay.inputHash}; the journal's is ${this.journal.inputHash})`
      : `"${this.replay.name}" (input hash ${this.replay.inputHash}) where the journal holds "${this.journal.name}" ` +
        `(input hash ${this.journal.inputHash})`
    return `non-deterministic workflow: at key ${this.key}, the first that differs, the replay of ${run} asked for ` +
      `${what}. The code changed under a run that started on the old code (or it reads time, randomness or I/O ` +
      `outside steps). Choices: keep the old definition registered as its own version (Workflow.make(name, ` +
      `{ version })) so that runs started on it finish on it while new runs take the new one; guard the change with ` +
      `Workflow.patched(id) so that runs which passed this point replay the old branch; or ${fork}. ReplayCheck ` +
      `finds such runs before a deploy.`
  }
}

/**
 * A stored value no longer decodes with its Schema (the Schema changed, or the data was edited).
 * `subject` says which value: `workflow input`, `step output of <name>`, ...
 *
 * @category errors
 * @since 0.1.0
 */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  subject: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message() {
    return `${this.subject} does not decode: ${formatIssues(this.issues)}`
  }
}

/**
 * A value does not fit its Schema, so it cannot be stored: a step returned an output its output
 * Schema rejects, or a workflow its output.
 *
 * @category errors
 * @since 0.1.0
 */
export class EncodeError extends Schema.TaggedError<EncodeError>()("EncodeError", {
  subject: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message() {
    return `${this.subject} does not match its Schema: ${formatIssues(this.issues)}`
  }
}

/**
 * A value's JSON is larger than `PgflowsConfig.maxPayloadBytes`.
 *
 * @category errors
 * @since 0.1.0
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  subject: Schema.String,
  bytes: Schema.Number,
  limit: Schema.Number
}) {
  override get message() {
    return `${this.subject} is ${this.bytes} bytes of JSON, over the limit of ${this.limit} (PGFLOWS_MAX_PAYLOAD_BYTES)`
  }
}

/**
 * A step attempt ran longer than the step's `timeout`. It counts as a failed attempt for the retry
 * schedule.
 *
 * @category errors
 * @since 0.1.0
 */
export class StepTimeoutError extends Schema.TaggedError<StepTimeoutError>()("StepTimeoutError", {
  step: Schema.String,
  timeoutMillis: Schema.Number
}) {
  override get message() {
    return `step "${this.step}" timed out after ${this.timeoutMillis} ms`
  }
}

/**
 * A step died (a defect: a thrown exception or `Effect.die`). Defects are not retried: turn
 * expected failures into typed errors (`Effect.tryPromise`) so the step's schedule sees them.
 *
 * @category errors
 * @since 0.1.0
 */
export class StepDefect extends Schema.TaggedError<StepDefect>()("StepDefect", {
  step: Schema.String,
  key: Schema.String,
  defect: Schema.String
}) {
  override get message() {
    return `step "${this.step}" (key ${this.key}) died: ${this.defect}`
  }
}

/**
 * The workflow body died (a defect) or was interrupted by its own code.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkflowDefect extends Schema.TaggedError<WorkflowDefect>()("WorkflowDefect", {
  defect: Schema.String
}) {
  override get message() {
    return `the workflow died: ${this.defect}`
  }
}

/**
 * The run was claimed after a lost lease (a crashed or stuck worker) more times than
 * `PgflowsConfig.maxRecoveries`: it is failed instead of crashing workers forever.
 *
 * @category errors
 * @since 0.1.0
 */
export class RecoveryLimitExceeded extends Schema.TaggedError<RecoveryLimitExceeded>()("RecoveryLimitExceeded", {
  recoveries: Schema.Number,
  limit: Schema.Number
}) {
  override get message() {
    return `the run was recovered ${this.recoveries} times after lost leases (limit ${this.limit}); ` +
      "a step probably crashes or blocks its worker"
  }
}

/**
 * No worker knew the run's workflow after many deliveries of its message. Workers no longer fail such
 * runs (they leave them for a worker that registers the workflow); this error remains so that runs
 * failed that way by earlier versions still decode.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownWorkflow extends Schema.TaggedError<UnknownWorkflow>()("UnknownWorkflow", {
  workflow: Schema.String,
  deliveries: Schema.Number
}) {
  override get message() {
    return `no worker registers workflow "${this.workflow}" (message delivered ${this.deliveries} times); ` +
      "deploy a worker that has it in Pgflows.layer({ workflows })"
  }
}

/**
 * The run passed the deadline its workflow's `timeout` set (a child inherits what is left of its
 * parent's). Returned by `result` as it is.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkflowTimeout extends Schema.TaggedError<WorkflowTimeout>()("WorkflowTimeout", {
  workflow: Schema.String,
  deadline: Schema.String
}) {
  override get message() {
    return `workflow "${this.workflow}" passed its deadline (${this.deadline})`
  }
}

/**
 * A signal's payload does not decode with the Schema its wait gave. The signal is consumed; the
 * workflow gets this typed error (and, on replay, the same one).
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidSignal extends Schema.TaggedError<InvalidSignal>()("InvalidSignal", {
  signal: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message() {
    return `signal "${this.signal}" has a payload that does not decode: ${formatIssues(this.issues)}`
  }
}

/**
 * A child workflow failed with an error that is not its own typed error (see `error`).
 *
 * @category errors
 * @since 0.1.0
 */
export class ChildFailed extends Schema.TaggedError<ChildFailed>()("ChildFailed", {
  runId: Schema.String,
  workflow: Schema.String,
  error: Schema.Unknown
}) {
  override get message() {
    const inner = this.error as { message?: unknown } | undefined
    return `child run "${this.runId}" of workflow "${this.workflow}" failed: ${
      typeof inner?.message === "string" ? inner.message : JSON.stringify(this.error)
    }`
  }
}

/**
 * A child workflow was cancelled.
 *
 * @category errors
 * @since 0.1.0
 */
export class ChildCancelled extends Schema.TaggedError<ChildCancelled>()("ChildCancelled", {
  runId: Schema.String,
  workflow: Schema.String
}) {
  override get message() {
    return `child run "${this.runId}" of workflow "${this.workflow}" was cancelled`
  }
}

/**
 * A child workflow was started with an id that already belongs to a run of another workflow.
 *
 * @category errors
 * @since 0.1.0
 */
export class ChildIdConflict extends Schema.TaggedError<ChildIdConflict>()("ChildIdConflict", {
  childId: Schema.String,
  workflow: Schema.String,
  existingWorkflow: Schema.String
}) {
  override get message() {
    return `child id "${this.childId}" for workflow "${this.workflow}" already belongs to a run of workflow ` +
      `"${this.existingWorkflow}"; give the child another id`
  }
}

/**
 * A value or a name that PostgreSQL cannot store: a NUL character (jsonb and text refuse it), a lone
 * UTF-16 surrogate (not Unicode text), or a value the database rejected when it was written.
 * Nothing of it was written; only the run (or the call) it belongs to fails.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnstorableValue extends Schema.TaggedError<UnstorableValue>()("UnstorableValue", {
  subject: Schema.String,
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.subject} cannot be stored${this.path === "" ? "" : ` (at ${this.path})`}: ${this.reason}`
  }
}

/**
 * The concurrency key function of a workflow (`Workflow.make(name, { concurrencyKey })`) threw, or
 * returned something other than a storable string, for the input of a start. Only that start fails,
 * and nothing is written; for a child workflow, the parent run fails with it.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidConcurrencyKey extends Schema.TaggedError<InvalidConcurrencyKey>()("InvalidConcurrencyKey", {
  workflow: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid concurrency key for workflow "${this.workflow}": ${this.reason}`
  }
}

/**
 * The errors pgflows itself stores as a run's or a step's error.
 *
 * @category models
 * @since 0.1.0
 */
export const EngineError = Schema.Union([
  NonDeterminismError,
  DecodeError,
  EncodeError,
  PayloadTooLarge,
  StepTimeoutError,
  StepDefect,
  WorkflowDefect,
  RecoveryLimitExceeded,
  UnknownWorkflow,
  WorkflowTimeout,
  InvalidSignal,
  ChildFailed,
  ChildCancelled,
  ChildIdConflict,
  UnstorableValue,
  InvalidConcurrencyKey
])

/**
 * Whether a value is one of pgflows' own errors.
 *
 * @category guards
 * @since 0.1.0
 */
export const isEngineError = (u: unknown): u is EngineError =>
  u instanceof NonDeterminismError || u instanceof DecodeError || u instanceof EncodeError ||
  u instanceof PayloadTooLarge || u instanceof StepTimeoutError || u instanceof StepDefect ||
  u instanceof WorkflowDefect || u instanceof RecoveryLimitExceeded || u instanceof UnknownWorkflow ||
  u instanceof WorkflowTimeout || u instanceof InvalidSignal || u instanceof ChildFailed ||
  u instanceof ChildCancelled || u instanceof ChildIdConflict || u instanceof UnstorableValue ||
  u instanceof InvalidConcurrencyKey

/**
 * @category models
 * @since 0.1.0
 */
export type EngineError = typeof EngineError.Type

/**
 * `retry` or `resume` was asked of a run in the wrong state (retry: failed runs; resume: cancelled).
 *
 * @category errors
 * @since 0.1.0
 */
export class RunNotRestartable extends Schema.TaggedError<RunNotRestartable>()("RunNotRestartable", {
  runId: Schema.String,
  operation: Schema.Literals(["retry", "resume"]),
  status: Schema.String
}) {
  override get message() {
    return `cannot ${this.operation} run "${this.runId}": it is ${this.status} ` +
      `(${this.operation === "retry" ? "only failed runs can be retried" : "only cancelled runs can be resumed"})`
  }
}

/**
 * `signal` was sent to a run that already ended.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunEnded extends Schema.TaggedError<RunEnded>()("RunEnded", { runId: Schema.String }) {
  override get message() {
    return `run "${this.runId}" already ended`
  }
}

/**
 * `start` was given an input its workflow's input Schema rejects. Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  workflow: Schema.String,
  issues: Schema.Array(Issue)
}) {
  override get message() {
    return `invalid input for workflow "${this.workflow}": ${formatIssues(this.issues)}`
  }
}

/**
 * `start` was given an id that belongs to a run of another workflow.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunIdConflict extends Schema.TaggedError<RunIdConflict>()("RunIdConflict", {
  runId: Schema.String,
  workflow: Schema.String,
  existingWorkflow: Schema.String
}) {
  override get message() {
    return `run id "${this.runId}" already belongs to a run of workflow "${this.existingWorkflow}", ` +
      `not "${this.workflow}"`
  }
}

/**
 * The workflow is not registered with this `Pgflows` layer.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkflowNotRegistered extends Schema.TaggedError<WorkflowNotRegistered>()("WorkflowNotRegistered", {
  workflow: Schema.String
}) {
  override get message() {
    return `workflow "${this.workflow}" is not registered: add it to Pgflows.layer({ workflows })`
  }
}

/**
 * `start`, `fork` or a filter named a version of a workflow that no definition known to this client
 * has (`known` lists the versions it knows). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownVersion extends Schema.TaggedError<UnknownVersion>()("UnknownVersion", {
  workflow: Schema.String,
  version: Schema.Number,
  known: Schema.Array(Schema.Number)
}) {
  override get message() {
    const known = this.known.length === 0 ? "none" : this.known.join(", ")
    return `workflow "${this.workflow}" has no definition of version ${this.version} here (versions known: ${known}); ` +
      "register one with Pgflows.layer({ workflows })"
  }
}

/**
 * `fork` was given a point that is not in the run's journal (or a step name that occurs more than
 * once, or a version that is not an integer). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidFork extends Schema.TaggedError<InvalidFork>()("InvalidFork", {
  runId: Schema.String,
  fromStep: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `cannot fork run "${this.runId}" from "${this.fromStep}": ${this.reason}`
  }
}

/**
 * A filter of a bulk operation (or of the replay checker) that cannot be used as given: a limit out
 * of range, a time range that ends before it starts, a status the operation cannot act on.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidFilter extends Schema.TaggedError<InvalidFilter>()("InvalidFilter", {
  operation: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.operation}: invalid filter: ${this.reason}`
  }
}

/**
 * A bulk operation's filter matched no run it could act on. Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class NoRunsMatched extends Schema.TaggedError<NoRunsMatched>()("NoRunsMatched", {
  operation: Schema.String,
  filter: Schema.String
}) {
  override get message() {
    return `${this.operation}: no run matches ${this.filter}`
  }
}

/**
 * A run history document (`RunHistory`) that does not decode: not JSON, or not the shape pgflows
 * exports.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidHistory extends Schema.TaggedError<InvalidHistory>()("InvalidHistory", {
  issues: Schema.Array(Issue)
}) {
  override get message() {
    return `not a pgflows run history: ${formatIssues(this.issues)}`
  }
}

/**
 * There is no run with this id.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", { runId: Schema.String }) {
  override get message() {
    return `no run with id "${this.runId}"`
  }
}

/**
 * The run ended failed with an error that is not the workflow's own typed error (see `error`, an
 * `EngineError`, or the raw JSON when it does not decode).
 *
 * @category errors
 * @since 0.1.0
 */
export class RunFailed extends Schema.TaggedError<RunFailed>()("RunFailed", {
  runId: Schema.String,
  workflow: Schema.String,
  error: Schema.Unknown
}) {
  override get message() {
    const inner = this.error as { message?: unknown } | undefined
    return `run "${this.runId}" of workflow "${this.workflow}" failed: ${
      typeof inner?.message === "string" ? inner.message : JSON.stringify(this.error)
    }`
  }
}

/**
 * The run was cancelled.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunCancelled extends Schema.TaggedError<RunCancelled>()("RunCancelled", { runId: Schema.String }) {
  override get message() {
    return `run "${this.runId}" was cancelled`
  }
}

/**
 * `result` stopped waiting after its `timeout`; the run goes on.
 *
 * @category errors
 * @since 0.1.0
 */
export class WaitTimeout extends Schema.TaggedError<WaitTimeout>()("WaitTimeout", { runId: Schema.String }) {
  override get message() {
    return `run "${this.runId}" did not end in time`
  }
}

/**
 * No database URL was configured where one is needed.
 *
 * @category errors
 * @since 0.1.0
 */
export class DatabaseUrlMissing extends Schema.TaggedError<DatabaseUrlMissing>()("DatabaseUrlMissing", {}) {
  override get message() {
    return "no database URL: set PGFLOWS_DATABASE_URL (or DATABASE_URL) to " +
      "postgres://user:password@host:5432/database, or pass PgflowsConfig.layer({ databaseUrl })"
  }
}

/**
 * PostgreSQL could not be reached, or refused the connection. `reason` is the driver's, first;
 * `target` is the server without the password (`postgresql://user@host:port/database`), `source`
 * what set it (a variable, an option in code, or the application's own `PgClient`), and `hint` what
 * to check.
 *
 * @category errors
 * @since 0.1.0
 */
export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()("DatabaseUnavailable", {
  reason: Schema.String,
  target: Schema.String,
  source: Schema.String,
  hint: Schema.String,
  cause: Schema.Defect()
}) {
  override get message() {
    return `${this.reason}: cannot connect to PostgreSQL at ${this.target} (set by ${this.source}); ${this.hint}`
  }
}

/**
 * The database schema lacks migrations that this version of pgflows needs, and the layers were told
 * not to apply them (`PGFLOWS_MIGRATIONS=verify`).
 *
 * @category errors
 * @since 0.1.0
 */
export class MigrationsMissing extends Schema.TaggedError<MigrationsMissing>()("MigrationsMissing", {
  schema: Schema.String,
  missing: Schema.Array(Schema.String)
}) {
  override get message() {
    return `schema "${this.schema}" lacks migrations ${this.missing.join(", ")}; apply them with a role allowed to ` +
      `create tables: \`npx pgflows-migrate\` (with PGFLOWS_DATABASE_URL and PGFLOWS_SCHEMA set), or ` +
      `PgMigrations.run in your deploy step, or start once with PGFLOWS_MIGRATIONS=auto`
  }
}

/**
 * The database (or another backend) failed. `retryable` tells whether trying again may help.
 *
 * @category errors
 * @since 0.1.0
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  operation: Schema.String,
  retryable: Schema.Boolean,
  /** PostgreSQL's SQLSTATE code, when the database answered with an error. */
  sqlState: Schema.optional(Schema.String),
  cause: Schema.Defect()
}) {
  /**
   * Whether the database refused the values written (SQLSTATE class 22, data exception; 23,
   * integrity constraint; 54, program limit such as a row too large): writing the same values again
   * cannot succeed, so only the run that wrote them fails.
   */
  get rejected(): boolean {
    const state = this.sqlState
    return state !== undefined && (state.startsWith("22") || state.startsWith("23") || state.startsWith("54"))
  }

  override get message() {
    return `${this.operation} failed: ${innermostMessage(this.cause) ?? String(this.cause)}`
  }
}

// internal

const toJson = (value: unknown): unknown => {
  if (typeof value !== "object" || value === null) return JSON.parse(JSON.stringify(value ?? null))
  const fields: Record<string, unknown> = { ...value }
  if (value instanceof globalThis.Error) {
    fields.name = value.name
    fields.message = value.message
  }
  try {
    return JSON.parse(JSON.stringify(fields))
  } catch {
    return { name: fields.name, message: String(fields.message ?? value) }
  }
}

const formatIssues = (issues: ReadonlyArray<Issue>): string =>
  issues.map((issue) => issue.path === "" ? issue.message : `${issue.message} at ${issue.path}`).join("; ")
