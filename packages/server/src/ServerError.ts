/**
 * The errors the server sends, each a `Schema.TaggedError` with its HTTP status, so a response body
 * says what went wrong (`_tag`, the fields of the case, and a `message` for people) and the OpenAPI
 * document and a typed client know every case. None carries a stack, a cause, or SQL: a failure of
 * the database is `ServiceUnavailable` with a generic message, and its cause goes to the log.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * One problem with a value: where (`items[0].id`, empty for the value itself) and what.
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
 * The request is malformed: a body that is not JSON, a missing or invalid header, path or query
 * parameter. Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  message: Schema.String,
  issues: Schema.Array(Issue)
}, { httpApiStatus: 400 }) {}

/**
 * No credential, or one the server does not know (a bearer token for the REST API, the shared
 * secret for the step endpoint). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String
}, { httpApiStatus: 401 }) {}

/**
 * The token is known but its scope does not allow this operation (a `read` token on an operation
 * that changes something). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String,
  required: Schema.Literals(["read", "admin"])
}, { httpApiStatus: 403 }) {}

/**
 * The body is larger than the server accepts (`maxBodyBytes`). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class RequestTooLarge extends Schema.TaggedError<RequestTooLarge>()("RequestTooLarge", {
  message: Schema.String,
  limit: Schema.Number
}, { httpApiStatus: 413 }) {}

/**
 * The body is not `application/json`. Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()("UnsupportedMediaType", {
  message: Schema.String,
  contentType: Schema.String
}, { httpApiStatus: 415 }) {}

/**
 * No route matches the method and path.
 *
 * @category errors
 * @since 0.1.0
 */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", {
  message: Schema.String,
  method: Schema.String,
  path: Schema.String
}, { httpApiStatus: 404 }) {}

/**
 * The database or another backend failed; trying again later may help. The cause is in the log,
 * never in the response.
 *
 * @category errors
 * @since 0.1.0
 */
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()("ServiceUnavailable", {
  message: Schema.String,
  retryable: Schema.Boolean
}, { httpApiStatus: 503 }) {}

// The step endpoint

/**
 * No step of that name is registered with the server: the graph's node fails (pg_durable never
 * polls for it).
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownStep extends Schema.TaggedError<UnknownStep>()("UnknownStep", {
  message: Schema.String,
  step: Schema.String
}, { httpApiStatus: 404 }) {}

/**
 * The input does not decode with the step's input Schema. Nothing was written and the step did not
 * run.
 *
 * @category errors
 * @since 0.1.0
 */
export class StepInputInvalid extends Schema.TaggedError<StepInputInvalid>()("StepInputInvalid", {
  message: Schema.String,
  step: Schema.String,
  issues: Schema.Array(Issue)
}, { httpApiStatus: 422 }) {}

/**
 * The step failed after its attempts: `error` is its typed error encoded with its error Schema (or
 * `StepTimeoutError`, `DeadlineExceeded`, `EncodeError`, or a `StepDefect` whose cause stays in
 * the server's log). The outcome is recorded: the same call gets this answer again.
 *
 * @category errors
 * @since 0.1.0
 */
export class StepFailed extends Schema.TaggedError<StepFailed>()("StepFailed", {
  message: Schema.String,
  step: Schema.String,
  attempts: Schema.Number,
  error: Schema.Unknown
}, { httpApiStatus: 500 }) {}

/**
 * The instance id and result key name a call of another step, or of the same step with another
 * input: a result key belongs to one call.
 *
 * @category errors
 * @since 0.1.0
 */
export class ResultKeyConflict extends Schema.TaggedError<ResultKeyConflict>()("ResultKeyConflict", {
  message: Schema.String,
  instanceId: Schema.String,
  resultKey: Schema.String
}, { httpApiStatus: 409 }) {}

/**
 * The same call is running in another request (or a server that stopped while running it still
 * holds it); ask again later.
 *
 * @category errors
 * @since 0.1.0
 */
export class StepInProgress extends Schema.TaggedError<StepInProgress>()("StepInProgress", {
  message: Schema.String,
  instanceId: Schema.String,
  resultKey: Schema.String
}, { httpApiStatus: 503 }) {}

// The REST API

/**
 * There is no run with this id.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", {
  message: Schema.String,
  runId: Schema.String
}, { httpApiStatus: 404 }) {}

/**
 * No workflow of that name is registered with this server's `Pgflows` layer.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkflowNotFound extends Schema.TaggedError<WorkflowNotFound>()("WorkflowNotFound", {
  message: Schema.String,
  workflow: Schema.String
}, { httpApiStatus: 404 }) {}

/**
 * The run has published no event under this key (within the wait asked for).
 *
 * @category errors
 * @since 0.1.0
 */
export class EventNotFound extends Schema.TaggedError<EventNotFound>()("EventNotFound", {
  message: Schema.String,
  runId: Schema.String,
  key: Schema.String
}, { httpApiStatus: 404 }) {}

/**
 * The input does not decode with the workflow's input Schema, or cannot be stored. Nothing was
 * written.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  message: Schema.String,
  workflow: Schema.String,
  issues: Schema.Array(Issue)
}, { httpApiStatus: 422 }) {}

/**
 * A value (an input, a signal's payload) is larger than pgflows stores
 * (`PGFLOWS_MAX_PAYLOAD_BYTES`). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  message: Schema.String,
  bytes: Schema.Number,
  limit: Schema.Number
}, { httpApiStatus: 413 }) {}

/**
 * A value cannot be stored (a NUL character, a lone surrogate). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnstorableValue extends Schema.TaggedError<UnstorableValue>()("UnstorableValue", {
  message: Schema.String,
  path: Schema.String
}, { httpApiStatus: 422 }) {}

/**
 * The run id already belongs to a run of another workflow.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunIdConflict extends Schema.TaggedError<RunIdConflict>()("RunIdConflict", {
  message: Schema.String,
  runId: Schema.String,
  workflow: Schema.String,
  existingWorkflow: Schema.String
}, { httpApiStatus: 409 }) {}

/**
 * `retry` of a run that did not fail, `resume` of one that was not cancelled.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunNotRestartable extends Schema.TaggedError<RunNotRestartable>()("RunNotRestartable", {
  message: Schema.String,
  runId: Schema.String,
  status: Schema.String
}, { httpApiStatus: 409 }) {}

/**
 * A signal to a run that already ended.
 *
 * @category errors
 * @since 0.1.0
 */
export class RunEnded extends Schema.TaggedError<RunEnded>()("RunEnded", {
  message: Schema.String,
  runId: Schema.String
}, { httpApiStatus: 409 }) {}

/**
 * No pg_durable instance with this id is visible to the server's database role.
 *
 * @category errors
 * @since 0.1.0
 */
export class InstanceNotFound extends Schema.TaggedError<InstanceNotFound>()("InstanceNotFound", {
  message: Schema.String,
  instanceId: Schema.String
}, { httpApiStatus: 404 }) {}

/**
 * A signal to a pg_durable instance that no wait took before the deadline (pg_durable drops
 * signals sent before the wait; the server sent it again until then).
 *
 * @category errors
 * @since 0.1.0
 */
export class SignalNotDelivered extends Schema.TaggedError<SignalNotDelivered>()("SignalNotDelivered", {
  message: Schema.String,
  instanceId: Schema.String,
  signal: Schema.String,
  attempts: Schema.Number
}, { httpApiStatus: 409 }) {}

// Forks

/**
 * A fork was asked from a point that is not in the run's journal (or a step name that occurs more
 * than once there). Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidFork extends Schema.TaggedError<InvalidFork>()("InvalidFork", {
  message: Schema.String,
  runId: Schema.String,
  fromStep: Schema.String,
  reason: Schema.String
}, { httpApiStatus: 422 }) {}

/**
 * A fork asked for a version of the workflow that this server registers no definition of.
 * Nothing was written.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownVersion extends Schema.TaggedError<UnknownVersion>()("UnknownVersion", {
  message: Schema.String,
  workflow: Schema.String,
  version: Schema.Number,
  known: Schema.Array(Schema.Number)
}, { httpApiStatus: 422 }) {}
