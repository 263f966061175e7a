/**
 * The server's contract, as an Effect `HttpApi`: the routes, what each one takes and answers, its
 * errors with their status codes, and its middleware. `PgflowsServer` implements it; the OpenAPI
 * document (`GET /openapi.json`) and a typed client (`HttpApiClient.make(PgflowsApi.Api)`) come from
 * it.
 *
 * | route | scope | answers |
 * | --- | --- | --- |
 * | `POST /steps/:name` | step secret | 200 output, 404 `UnknownStep`, 422 `StepInputInvalid`, 500 `StepFailed`, 409 `ResultKeyConflict`, 503 `StepInProgress` |
 * | `POST /runs` | admin | 201 `{ id, workflow }`, 404 `WorkflowNotFound`, 422 `InvalidInput`, 413 `PayloadTooLarge`, 409 `RunIdConflict` |
 * | `GET /runs` | read | 200 a page of runs (`workflow`, `status`, `limit`, `cursor`) |
 * | `GET /runs/:id` | read | 200 the run with its steps, 404 `RunNotFound` |
 * | `POST /runs/:id/cancel` | admin | 200 `cancelled` or `already-terminal`, 404 |
 * | `POST /runs/:id/retry`, `/resume` | admin | 202, 404, 409 `RunNotRestartable` |
 * | `POST /runs/:id/signals/:name` | admin | 202, 404, 409 `RunEnded`, 413, 422 `UnstorableValue` |
 * | `GET /runs/:id/events/:key` | read | 200 `{ value }`, 404 `EventNotFound` or `RunNotFound` |
 * | `POST /runs/:id/fork` | admin | 200 the fork and its plan (`forkId` null with `dryRun`), 404, 422 `InvalidFork` or `UnknownVersion`, 409 `RunIdConflict` |
 * | `POST /pg-durable/instances/:id/signals/:name` | admin | 202, 404 `InstanceNotFound`, 409 `SignalNotDelivered` |
 * | `GET /views/runs` | read | 200 a page of runs with filters (`workflow`, `version`, `status`, `from`, `to`, `q`), for the dashboard |
 * | `GET /views/runs/:id` | read | 200 a run with its journal, signals, children and events, 404 |
 * | `GET /views/stats` | read | 200 counts, throughput and failures per workflow over a time range, the queue, dead letters, workers |
 * | `GET /health` | none | 200 |
 *
 * Every route also answers 400 `BadRequest` (a body that is not JSON, a bad header, path or query
 * parameter), 413 `RequestTooLarge`, 415 `UnsupportedMediaType`, and, where the database fails,
 * 503 `ServiceUnavailable`; routes with a scope answer 401 `Unauthorized` and 403 `Forbidden`.
 *
 * **Gotchas**
 *
 * - The OpenAPI document names the step secret's default header, `X-Pgflows-Step-Secret`; a server
 *   configured with another (`stepSecretHeader`) checks that one.
 *
 * @since 0.1.0
 */
import * as HttpApi from "effect/http-api/HttpApi"
import * as HttpApiEndpoint from "effect/http-api/HttpApiEndpoint"
import * as HttpApiGroup from "effect/http-api/HttpApiGroup"
import * as HttpApiMiddleware from "effect/http-api/HttpApiMiddleware"
import * as HttpApiSchema from "effect/http-api/HttpApiSchema"
import * as HttpApiSecurity from "effect/http-api/HttpApiSecurity"
import * as OpenApi from "effect/http-api/OpenApi"
import * as Schema from "effect/Schema"
import * as StoredText from "pgflows/StoredText"
import {
  BadRequest,
  EventNotFound,
  Forbidden,
  InstanceNotFound,
  InvalidFork,
  InvalidInput,
  PayloadTooLarge,
  RequestTooLarge,
  ResultKeyConflict,
  RunEnded,
  RunIdConflict,
  RunNotFound,
  RunNotRestartable,
  ServiceUnavailable,
  SignalNotDelivered,
  StepFailed,
  StepInProgress,
  StepInputInvalid,
  Unauthorized,
  UnknownStep,
  UnknownVersion,
  UnstorableValue,
  UnsupportedMediaType,
  WorkflowNotFound
} from "./ServerError.ts"

/**
 * A name or id in a path, a header or a query: 1 to 1000 characters PostgreSQL can store.
 *
 * @category schemas
 * @since 0.1.0
 */
export const Text = Schema.String.check(
  Schema.isMinLength(1),
  Schema.isMaxLength(1000),
  Schema.makeFilter((text: string) => StoredText.problem(text) ?? true)
)

/**
 * A run's state.
 *
 * @category schemas
 * @since 0.1.0
 */
export const RunStatus = Schema.Literals(["pending", "running", "suspended", "completed", "failed", "cancelled"])

/**
 * @category schemas
 * @since 0.1.0
 */
export const StartRequest = Schema.Struct({
  workflow: Text,
  /** The run's input, as JSON; decoded with the workflow's input Schema. */
  input: Schema.optional(Schema.Json),
  /** The run's id: starting again with the same id returns that run and starts nothing. */
  id: Schema.optional(Text),
  /** Start no earlier than this many milliseconds from now. */
  delayMillis: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 31_536_000_000 })))
})

/**
 * @category schemas
 * @since 0.1.0
 */
export const Started = Schema.Struct({ id: Schema.String, workflow: Schema.String })

/**
 * A journal entry. Times are ISO 8601 strings; `output` and `error` are the stored JSON.
 *
 * @category schemas
 * @since 0.1.0
 */
export const StepView = Schema.Struct({
  key: Schema.String,
  name: Schema.String,
  status: Schema.String,
  attempts: Schema.Number,
  output: Schema.Unknown,
  error: Schema.Unknown,
  startedAt: Schema.NullOr(Schema.String),
  completedAt: Schema.NullOr(Schema.String),
  wakeAt: Schema.NullOr(Schema.String)
})

/**
 * A run and its journal. `output` and `error` are JSON encoded with the workflow's Schemas (when
 * this server registers the workflow; otherwise as stored), `null` until the run completed or
 * failed.
 *
 * @category schemas
 * @since 0.1.0
 */
export const RunView = Schema.Struct({
  id: Schema.String,
  workflow: Schema.String,
  status: RunStatus,
  input: Schema.Unknown,
  output: Schema.Unknown,
  error: Schema.Unknown,
  executions: Schema.Number,
  recoveries: Schema.Number,
  parentId: Schema.NullOr(Schema.String),
  createdAt: Schema.String,
  updatedAt: Schema.String,
  startedAt: Schema.NullOr(Schema.String),
  completedAt: Schema.NullOr(Schema.String),
  wakeAt: Schema.NullOr(Schema.String),
  waitingFor: Schema.NullOr(Schema.String),
  steps: Schema.Array(StepView)
})

/**
 * @category schemas
 * @since 0.1.0
 */
export const RunSummary = Schema.Struct({
  id: Schema.String,
  workflow: Schema.String,
  status: RunStatus,
  executions: Schema.Number,
  createdAt: Schema.String,
  updatedAt: Schema.String,
  completedAt: Schema.NullOr(Schema.String)
})

/**
 * One page of runs, newest first; pass `nextCursor` as `cursor` for the next one.
 *
 * @category schemas
 * @since 0.1.0
 */
export const RunPage = Schema.Struct({
  runs: Schema.Array(RunSummary),
  nextCursor: Schema.NullOr(Schema.String)
})

/**
 * @category schemas
 * @since 0.1.0
 */
export const ListQuery = Schema.Struct({
  workflow: Schema.optional(Text),
  status: Schema.optional(RunStatus),
  limit: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))),
  cursor: Schema.optional(Schema.String.check(Schema.isPattern(/^[A-Za-z0-9_-]{1,1000}$/)))
})

/**
 * A time in a query: an ISO 8601 date and time, such as `2026-05-01T12:00:00Z`.
 *
 * @category schemas
 * @since 0.1.0
 */
export const Instant = Schema.String.check(
  Schema.isPattern(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$/),
  Schema.makeFilter((text: string) => !Number.isNaN(Date.parse(text)) || "is not a valid date")
)

/**
 * `POST /runs/:id/fork`: where to fork from, and optionally the fork's version and id.
 *
 * @category schemas
 * @since 0.1.0
 */
export const ForkRequest = Schema.Struct({
  /** A journal key (`"2"`, `"3.1/1"`) or the name of a step the run executed once. */
  fromStep: Text,
  /** The version the fork runs on (default: the original's); the server must register it. */
  version: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2_147_483_647 }))),
  /** The fork's id (default: a new one). */
  id: Schema.optional(Text),
  /** Say what the fork would do, and write nothing. */
  dryRun: Schema.optional(Schema.Boolean)
})

/**
 * A completed step of the original that the fork executes again.
 *
 * @category schemas
 * @since 0.1.0
 */
export const RerunStep = Schema.Struct({ key: Schema.String, name: Schema.String, transactional: Schema.Boolean })

/**
 * What a fork did (or, with `dryRun`, would do): `forkId` is absent in a dry run.
 *
 * @category schemas
 * @since 0.1.0
 */
export const ForkResult = Schema.Struct({
  runId: Schema.String,
  forkId: Schema.NullOr(Schema.String),
  dryRun: Schema.Boolean,
  workflow: Schema.String,
  version: Schema.Number,
  fromKey: Schema.String,
  kept: Schema.Array(Schema.String),
  rerun: Schema.Array(RerunStep),
  repeatedSideEffects: Schema.Array(RerunStep)
})

/**
 * `GET /views/runs`: the dashboard's list, with more filters than `GET /runs`: the version, a
 * creation time range `[from, to)`, and `q`, a run id (the run and its children).
 *
 * @category schemas
 * @since 0.1.0
 */
export const RunsViewQuery = Schema.Struct({
  workflow: Schema.optional(Text),
  version: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2_147_483_647 }))),
  status: Schema.optional(RunStatus),
  from: Schema.optional(Instant),
  to: Schema.optional(Instant),
  q: Schema.optional(Text),
  limit: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 500 }))),
  cursor: Schema.optional(Schema.String.check(Schema.isPattern(/^[A-Za-z0-9_-]{1,2000}$/)))
})

/**
 * A row of the dashboard's list: a run with its version, parent, fork origin and, when it failed,
 * its error's tag and message.
 *
 * @category schemas
 * @since 0.1.0
 */
export const RunRow = Schema.Struct({
  id: Schema.String,
  workflow: Schema.String,
  version: Schema.Number,
  status: RunStatus,
  executions: Schema.Number,
  parentId: Schema.NullOr(Schema.String),
  forkedFrom: Schema.NullOr(Schema.String),
  errorTag: Schema.NullOr(Schema.String),
  errorMessage: Schema.NullOr(Schema.String),
  createdAt: Schema.String,
  updatedAt: Schema.String,
  completedAt: Schema.NullOr(Schema.String),
  wakeAt: Schema.NullOr(Schema.String)
})

/**
 * @category schemas
 * @since 0.1.0
 */
export const RunRowPage = Schema.Struct({
  runs: Schema.Array(RunRow),
  nextCursor: Schema.NullOr(Schema.String)
})

/**
 * A run with everything the dashboard's run page shows: its journal (each entry with its attempts,
 * times, output and error), the signals sent to it, its children and its events.
 *
 * @category schemas
 * @since 0.1.0
 */
export const RunDetail = Schema.Struct({
  run: RunView,
  version: Schema.Number,
  forkedFrom: Schema.NullOr(Schema.Struct({ runId: Schema.String, key: Schema.String })),
  signals: Schema.Array(Schema.Struct({
    name: Schema.String,
    payload: Schema.Unknown,
    sentAt: Schema.String,
    consumedKey: Schema.NullOr(Schema.String),
    consumedAt: Schema.NullOr(Schema.String)
  })),
  children: Schema.Array(Schema.Struct({
    id: Schema.String,
    workflow: Schema.String,
    version: Schema.Number,
    status: RunStatus,
    createdAt: Schema.String,
    completedAt: Schema.NullOr(Schema.String)
  })),
  events: Schema.Array(Schema.Struct({ key: Schema.String, value: Schema.Unknown, updatedAt: Schema.String }))
})

/**
 * `GET /views/stats`: the time range (default: the last hour) and how many buckets to cut it into
 * (default 30).
 *
 * @category schemas
 * @since 0.1.0
 */
export const StatsQuery = Schema.Struct({
  from: Schema.optional(Instant),
  to: Schema.optional(Instant),
  buckets: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 200 })))
})

/**
 * One bucket of a workflow's throughput: runs created in it, and runs (of those created in the
 * range) that ended in it, by outcome.
 *
 * @category schemas
 * @since 0.1.0
 */
export const Bucket = Schema.Struct({
  start: Schema.String,
  started: Schema.Number,
  completed: Schema.Number,
  failed: Schema.Number,
  cancelled: Schema.Number
})

/**
 * Per workflow, its runs by state and the throughput and failures of the runs created in `[from,
 * to)`; the run queue's depth; the latest dead letters (failed runs); the workers that announced
 * themselves.
 *
 * @category schemas
 * @since 0.1.0
 */
export const Stats = Schema.Struct({
  from: Schema.String,
  to: Schema.String,
  bucketSeconds: Schema.Number,
  /**
   * From when the buckets are whole: `from`, unless the range holds more runs than the server reads
   * for them (the newest 100,000), then the creation time of the oldest run read.
   */
  throughputFrom: Schema.String,
  workflows: Schema.Array(Schema.Struct({
    workflow: Schema.String,
    versions: Schema.Array(Schema.Number),
    /** Every run by state (the client's `counts`): the states with runs. */
    counts: Schema.Record(Schema.String, Schema.Number),
    /** The states whose count is estimated from the planner's statistics (beyond 1,000 ended runs). */
    estimated: Schema.Array(Schema.String),
    buckets: Schema.Array(Bucket)
  })),
  queue: Schema.Struct({
    name: Schema.String,
    depth: Schema.Number,
    visible: Schema.Number,
    oldestAgeSeconds: Schema.NullOr(Schema.Number),
    archived: Schema.Number,
    /** Whether `archived` was counted (else estimated, beyond 1,000). */
    archivedExact: Schema.Boolean
  }),
  deadLetters: Schema.Array(Schema.Struct({
    id: Schema.String,
    workflow: Schema.String,
    version: Schema.Number,
    errorTag: Schema.NullOr(Schema.String),
    errorMessage: Schema.NullOr(Schema.String),
    completedAt: Schema.NullOr(Schema.String)
  })),
  workers: Schema.Array(Schema.Struct({
    id: Schema.String,
    workflows: Schema.Array(Schema.String),
    startedAt: Schema.String,
    heartbeatAt: Schema.String,
    alive: Schema.Boolean
  }))
})

/**
 * How long to wait for something to appear, in milliseconds (at most 30 seconds).
 *
 * @category schemas
 * @since 0.1.0
 */
export const WaitQuery = Schema.Struct({
  timeout: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 30_000 })))
})

/**
 * The headers the compiled graph sends with a step call (pg_durable sends none by itself).
 *
 * @category schemas
 * @since 0.1.0
 */
export const StepCallHeaders = Schema.Struct({
  "x-pgflows-instance-id": Text,
  "x-pgflows-result-key": Text
})

// Middleware

/**
 * Bounds the request body (`maxBodyBytes`) and turns what the HTTP layer refuses (a body that is not
 * JSON, a bad parameter, a body too large, another content type) into the server's typed errors.
 *
 * @category middleware
 * @since 0.1.0
 */
export class RequestGuard extends HttpApiMiddleware.Service<RequestGuard>()("@pgflows/server/RequestGuard", {
  error: [BadRequest, RequestTooLarge, UnsupportedMediaType]
}) {}

/**
 * A bearer token of scope `read` or `admin`.
 *
 * @category middleware
 * @since 0.1.0
 */
export class ReadAccess extends HttpApiMiddleware.Service<ReadAccess>()("@pgflows/server/ReadAccess", {
  security: { bearer: HttpApiSecurity.bearer },
  error: [Unauthorized, Forbidden]
}) {}

/**
 * A bearer token of scope `admin`.
 *
 * @category middleware
 * @since 0.1.0
 */
export class AdminAccess extends HttpApiMiddleware.Service<AdminAccess>()("@pgflows/server/AdminAccess", {
  security: { bearer: HttpApiSecurity.bearer },
  error: [Unauthorized, Forbidden]
}) {}

/**
 * The shared secret the compiled graph sends with each step call.
 *
 * @category middleware
 * @since 0.1.0
 */
export class StepSecret extends HttpApiMiddleware.Service<StepSecret>()("@pgflows/server/StepSecret", {
  security: { stepSecret: HttpApiSecurity.apiKey({ key: "X-Pgflows-Step-Secret", in: "header" }) },
  error: Unauthorized
}) {}

// Groups

/**
 * `POST /steps/:name`: pg_durable's `df.http` calls a step.
 *
 * @category groups
 * @since 0.1.0
 */
export class StepsGroup extends HttpApiGroup.make("steps")
  .add(
    HttpApiEndpoint.post("call", "/steps/:name", {
      params: { name: Text },
      headers: StepCallHeaders,
      payload: Schema.Json,
      success: Schema.Unknown,
      error: [UnknownStep, StepInputInvalid, StepFailed, ResultKeyConflict, StepInProgress, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({
      summary: "Run a step for pg_durable",
      description: "Called by compiled graphs (StepBinding.http). Idempotent per (instance id, result key): a " +
        "repeated call gets the recorded answer and never runs a completed step again. Any answer but 2xx fails " +
        "the graph's node."
    }))
  )
  .middleware(RequestGuard)
  .middleware(StepSecret)
  .annotateMerge(OpenApi.annotations({ title: "steps", description: "The push-mode step endpoint" }))
{}

/**
 * The read side of the workflow REST API.
 *
 * @category groups
 * @since 0.1.0
 */
export class RunsReadGroup extends HttpApiGroup.make("runsRead")
  .add(
    HttpApiEndpoint.get("list", "/runs", {
      query: ListQuery,
      success: RunPage,
      error: ServiceUnavailable
    }).annotateMerge(OpenApi.annotations({ summary: "List runs, newest first" })),
    HttpApiEndpoint.get("status", "/runs/:id", {
      params: { id: Text },
      success: RunView,
      error: [RunNotFound, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "A run's status, output or error, and steps" })),
    HttpApiEndpoint.get("event", "/runs/:id/events/:key", {
      params: { id: Text, key: Text },
      query: WaitQuery,
      success: Schema.Struct({ runId: Schema.String, key: Schema.String, value: Schema.Unknown }),
      error: [EventNotFound, RunNotFound, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "The latest value a run published under a key" }))
  )
  .middleware(RequestGuard)
  .middleware(ReadAccess)
  .annotateMerge(OpenApi.annotations({ title: "runs (read)", description: "Runs and their journals" }))
{}

/**
 * The side of the workflow REST API that changes something.
 *
 * @category groups
 * @since 0.1.0
 */
export class RunsAdminGroup extends HttpApiGroup.make("runsAdmin")
  .add(
    HttpApiEndpoint.post("start", "/runs", {
      payload: StartRequest,
      success: Started.pipe(HttpApiSchema.status(201)),
      error: [WorkflowNotFound, InvalidInput, PayloadTooLarge, RunIdConflict, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "Start a run (idempotent by id)" })),
    HttpApiEndpoint.post("cancel", "/runs/:id/cancel", {
      params: { id: Text },
      success: Schema.Struct({ runId: Schema.String, outcome: Schema.Literals(["cancelled", "already-terminal"]) }),
      error: [RunNotFound, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "Cancel a run unless it already ended" })),
    HttpApiEndpoint.post("retry", "/runs/:id/retry", {
      params: { id: Text },
      success: Schema.Struct({ runId: Schema.String }).pipe(HttpApiSchema.status(202)),
      error: [RunNotFound, RunNotRestartable, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "Restart a failed run from the step that failed" })),
    HttpApiEndpoint.post("resume", "/runs/:id/resume", {
      params: { id: Text },
      success: Schema.Struct({ runId: Schema.String }).pipe(HttpApiSchema.status(202)),
      error: [RunNotFound, RunNotRestartable, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "Resume a cancelled run from its journal" })),
    HttpApiEndpoint.post("signal", "/runs/:id/signals/:name", {
      params: { id: Text, name: Text },
      payload: Schema.Json,
      success: Schema.Struct({ runId: Schema.String, signal: Schema.String }).pipe(HttpApiSchema.status(202)),
      error: [RunNotFound, RunEnded, PayloadTooLarge, UnstorableValue, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "Send a signal to a run (Workflow.waitForSignal)" })),
    HttpApiEndpoint.post("fork", "/runs/:id/fork", {
      params: { id: Text },
      payload: ForkRequest,
      success: ForkResult,
      error: [RunNotFound, InvalidFork, UnknownVersion, RunIdConflict, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({
      summary: "Fork a run from a step (or say what the fork would do, with dryRun)",
      description: "A new run of the same workflow whose journal is the original's up to fromStep: what was " +
        "recorded before that point is replayed, the rest executes again; forkId is null in a dry run."
    })),
    HttpApiEndpoint.post("signalInstance", "/pg-durable/instances/:id/signals/:name", {
      params: { id: Text, name: Text },
      query: WaitQuery,
      payload: Schema.Json,
      success: Schema.Struct({ instanceId: Schema.String, signal: Schema.String, attempts: Schema.Number }).pipe(
        HttpApiSchema.status(202)
      ),
      error: [InstanceNotFound, SignalNotDelivered, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({
      summary: "Send a signal to a pg_durable instance",
      description: "pg_durable drops a signal sent before its wait: the server sends it again until a wait takes it " +
        "or `timeout` milliseconds pass (default 30 000)."
    }))
  )
  .middleware(RequestGuard)
  .middleware(AdminAccess)
  .annotateMerge(OpenApi.annotations({ title: "runs (admin)", description: "Start and steer runs" }))
{}

/**
 * What the dashboard reads: runs with more filters, a run with everything about it, and statistics.
 *
 * @category groups
 * @since 0.1.0
 */
export class ViewsGroup extends HttpApiGroup.make("views")
  .add(
    HttpApiEndpoint.get("runs", "/views/runs", {
      query: RunsViewQuery,
      success: RunRowPage,
      error: [BadRequest, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "Runs with filters (version, time range, id search)" })),
    HttpApiEndpoint.get("run", "/views/runs/:id", {
      params: { id: Text },
      success: RunDetail,
      error: [RunNotFound, ServiceUnavailable]
    }).annotateMerge(OpenApi.annotations({ summary: "A run with its journal, signals, children and events" })),
    HttpApiEndpoint.get("stats", "/views/stats", {
      query: StatsQuery,
      success: Stats,
      error: ServiceUnavailable
    }).annotateMerge(OpenApi.annotations({
      summary: "Throughput and failures per workflow, queue depth, dead letters and workers"
    }))
  )
  .middleware(RequestGuard)
  .middleware(ReadAccess)
  .annotateMerge(OpenApi.annotations({ title: "views", description: "What the dashboard reads" }))
{}

/**
 * `GET /health`, without authentication.
 *
 * @category groups
 * @since 0.1.0
 */
export class SystemGroup extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("health", "/health", {
      success: Schema.Struct({ status: Schema.Literal("ok") })
    })
  )
  .middleware(RequestGuard)
{}

/**
 * The whole API.
 *
 * @category api
 * @since 0.1.0
 */
export class Api extends HttpApi.make("pgflows")
  .add(StepsGroup)
  .add(RunsReadGroup)
  .add(RunsAdminGroup)
  .add(ViewsGroup)
  .add(SystemGroup)
  .annotateMerge(OpenApi.annotations({
    title: "pgflows",
    version: "0.1.0",
    description: "The pgflows workflow REST API and the push-mode step endpoint for pg_durable"
  }))
{}
