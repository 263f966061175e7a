/**
 * The errors of `@pgflows/pg-durable`: a graph pg_durable cannot run (`GraphCompileError`), a
 * GraphSpec document that does not decode, SQL that is not a graph we wrote, a database without
 * pg_durable, and the failures of pg_durable's own functions.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The rules a graph must follow to compile.
 *
 * @category models
 * @since 0.1.0
 */
export const Rule = Schema.Literals([
  "empty-sequence",
  "too-few-branches",
  "loop-and-parallel",
  "race-not-terminal",
  "break-outside-loop",
  "invalid-capture-name",
  "duplicate-capture",
  "unbound-capture",
  "invalid-reference",
  "sql-not-one-statement",
  "step-not-registered",
  "invalid-step-input",
  "graph-too-deep",
  "graph-too-large",
  "invalid-cron",
  "invalid-duration",
  "invalid-signal",
  "invalid-http",
  "invalid-text",
  "invalid-value",
  "missing-input",
  "invalid-binding",
  "invalid-name"
])

/**
 * @category models
 * @since 0.1.0
 */
export type Rule = typeof Rule.Type

/**
 * The graph breaks a rule: pg_durable would reject it, corrupt it, or run it wrongly. `path` says
 * where (`graph.nodes[2].then`), `reason` what is wrong and what to do instead.
 *
 * @category errors
 * @since 0.1.0
 */
export class GraphCompileError extends Schema.TaggedError<GraphCompileError>()("GraphCompileError", {
  rule: Rule,
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/**
 * A GraphSpec document does not decode; `issues` lists each problem with its JSON path.
 *
 * @category errors
 * @since 0.1.0
 */
export class GraphSpecError extends Schema.TaggedError<GraphSpecError>()("GraphSpecError", {
  issues: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String }))
}) {
  override get message() {
    return `invalid graph spec: ${
      this.issues.map((issue) => issue.path === "" ? issue.message : `${issue.message} at ${issue.path}`).join("; ")
    }`
  }
}

/**
 * SQL given to the decompiler is not a pg_durable graph expression (or not one this compiler writes,
 * when rebuilding a `Graph`).
 *
 * @category errors
 * @since 0.1.0
 */
export class DecompileError extends Schema.TaggedError<DecompileError>()("DecompileError", {
  reason: Schema.String
}) {
  override get message() {
    return `cannot read the graph: ${this.reason}`
  }
}

/**
 * pg_durable is not installed in the database the client uses.
 *
 * @category errors
 * @since 0.1.0
 */
export class PgDurableUnavailable extends Schema.TaggedError<PgDurableUnavailable>()("PgDurableUnavailable", {
  operation: Schema.String,
  database: Schema.String
}) {
  override get message() {
    return `${this.operation}: pg_durable is not installed in database "${this.database}" (no pg_durable extension ` +
      "and no df schema). Install it: add shared_preload_libraries = 'pg_durable' to postgresql.conf, restart, " +
      "then run CREATE EXTENSION pg_durable as a superuser in the database named by pg_durable.database " +
      "(default postgres), and connect the client to that database; or run the image ghcr.io/microsoft/pg_durable"
  }
}

/**
 * A call to one of pg_durable's functions failed. `retryable` is true for failures that may pass
 * later (the background worker still starting, a connection problem).
 *
 * @category errors
 * @since 0.1.0
 */
export class PgDurableError extends Schema.TaggedError<PgDurableError>()("PgDurableError", {
  operation: Schema.String,
  retryable: Schema.Boolean,
  /** What PostgreSQL (or pg_durable) said. */
  reason: Schema.String,
  cause: Schema.Defect()
}) {
  override get message() {
    return `${this.operation} failed: ${this.reason}`
  }
}

/**
 * No pg_durable instance with this id is visible to the current role.
 *
 * @category errors
 * @since 0.1.0
 */
export class InstanceNotFound extends Schema.TaggedError<InstanceNotFound>()("InstanceNotFound", {
  instanceId: Schema.String
}) {
  override get message() {
    return `no pg_durable instance "${this.instanceId}" is visible to this role (unknown id, another role's ` +
      "instance, or deleted by retention)"
  }
}

/**
 * `df.cancel` answered `Failed to cancel: ...` (an engine failure reported as text).
 *
 * @category errors
 * @since 0.1.0
 */
export class CancelFailed extends Schema.TaggedError<CancelFailed>()("CancelFailed", {
  instanceId: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `pg_durable could not cancel instance "${this.instanceId}": ${this.reason}`
  }
}

/**
 * A signal was sent again and again, but no wait took it before the deadline (the instance is not
 * waiting for a signal of this name, or it ended).
 *
 * @category errors
 * @since 0.1.0
 */
export class SignalNotDelivered extends Schema.TaggedError<SignalNotDelivered>()("SignalNotDelivered", {
  instanceId: Schema.String,
  signal: Schema.String,
  attempts: Schema.Number,
  status: Schema.String
}) {
  override get message() {
    return `signal "${this.signal}" was sent ${this.attempts} times to instance "${this.instanceId}" (status ` +
      `${this.status}) but no wait took it: check that the graph waits for this exact name`
  }
}

/**
 * The instance did not end within the time `awaitInstance` was given; it goes on.
 *
 * @category errors
 * @since 0.1.0
 */
export class AwaitTimeout extends Schema.TaggedError<AwaitTimeout>()("AwaitTimeout", {
  instanceId: Schema.String,
  seconds: Schema.Number
}) {
  override get message() {
    return `instance "${this.instanceId}" did not end within ${this.seconds} seconds`
  }
}

/**
 * `SqlExporter` knows no workflow of this name.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkflowNotFound extends Schema.TaggedError<WorkflowNotFound>()("WorkflowNotFound", {
  workflow: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  override get message() {
    return `no graph workflow is named "${this.workflow}"; known: ${
      this.known.length === 0 ? "none (pass workflows to SqlExporter.make)" : this.known.join(", ")
    }`
  }
}
