/**
 * A typed client of pg_durable, built from the application's `SqlClient`: start graphs (compiled,
 * every value a bind parameter), follow and steer instances, read their execution history.
 *
 * Every method first checks that pg_durable is there (the `pg_durable` extension, or a `df` schema
 * with `df.start`); without it, each fails with one `PgDurableUnavailable` that says how to install
 * it. `pgDurableAvailable` answers the question without failing.
 *
 * **Gotchas**
 *
 * - Call `start` as its own statement, outside a transaction that goes on: pg_durable's worker waits
 *   only 5 seconds for the starting transaction to commit, then the instance is lost (stuck
 *   `pending`). With pg_durable 0.2.5 or later, `transactionMode: "new"` starts it in a transaction
 *   of its own.
 * - pg_durable drops a signal sent before the instance waits for it; `signal` re-sends until a wait
 *   of that name completes (or the instance ends, or the deadline passes).
 * - pg_durable only answers in the database named by `pg_durable.database` (default `postgres`), and
 *   shows each role only its own instances.
 * - `awaitInstance` must not run in the transaction that started the instance (it would wait for
 *   ever).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { codec, formatIssues } from "pgflows/JsonCodec"
import type * as Step from "pgflows/Step"
import * as Compiler from "./Compiler.ts"
import * as Graph from "./Graph.ts"
import type * as GraphWorkflow from "./GraphWorkflow.ts"
import * as Model from "./internal/model.ts"
import * as Value from "./internal/value.ts"
import {
  AwaitTimeout,
  CancelFailed,
  GraphCompileError,
  InstanceNotFound,
  PgDurableError,
  PgDurableUnavailable,
  SignalNotDelivered
} from "./PgDurableError.ts"
import type * as StepBinding from "./StepBinding.ts"

/**
 * An instance's status in `df.instances`.
 *
 * @category models
 * @since 0.1.0
 */
export const InstanceStatus = Schema.Literals(["pending", "running", "completed", "failed", "cancelled"])

/**
 * @category models
 * @since 0.1.0
 */
export type InstanceStatus = typeof InstanceStatus.Type

/**
 * What `df.instance_info` tells about an instance (`status` from `df.instances`, the rest from the
 * engine).
 *
 * @category models
 * @since 0.1.0
 */
export const InstanceInfo = Schema.Struct({
  instanceId: Schema.String,
  label: Schema.NullOr(Schema.String),
  functionName: Schema.NullOr(Schema.String),
  functionVersion: Schema.NullOr(Schema.String),
  currentExecutionId: Schema.NullOr(Schema.Number),
  status: Schema.String,
  output: Schema.NullOr(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type InstanceInfo = typeof InstanceInfo.Type

/**
 * One node of an instance (`df.instance_nodes`): structural nodes (THEN, JOIN, IF) included, so
 * there are more rows than nodes written. `inferredStatus` adds `skipped` (untaken branch, race
 * loser). A failed node's `result` holds its error message as JSON text.
 *
 * @category models
 * @since 0.1.0
 */
export const InstanceNode = Schema.Struct({
  nodeId: Schema.String,
  nodeType: Schema.String,
  query: Schema.NullOr(Schema.String),
  resultName: Schema.NullOr(Schema.String),
  leftNode: Schema.NullOr(Schema.String),
  rightNode: Schema.NullOr(Schema.String),
  status: Schema.String,
  result: Schema.NullOr(Schema.String),
  statusDetails: Schema.NullOr(Schema.String),
  inferredStatus: Schema.NullOr(Schema.String),
  inferredStatusFromAncestorId: Schema.NullOr(Schema.String),
  updatedAt: Schema.NullOr(Schema.Date)
})

/**
 * @category models
 * @since 0.1.0
 */
export type InstanceNode = typeof InstanceNode.Type

/**
 * One execution in the engine's history (`df.instance_executions`, newest first); `status` uses the
 * engine's words (`Completed`, `ContinuedAsNew`, `Running`, `Failed`).
 *
 * @category models
 * @since 0.1.0
 */
export const ExecutionRecord = Schema.Struct({
  executionId: Schema.Number,
  status: Schema.String,
  eventCount: Schema.Number,
  durationMs: Schema.NullOr(Schema.Number),
  output: Schema.NullOr(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type ExecutionRecord = typeof ExecutionRecord.Type

/**
 * Cluster-wide counters (`df.metrics`, which needs an admin grant).
 *
 * @category models
 * @since 0.1.0
 */
export const Metrics = Schema.Struct({
  totalInstances: Schema.Number,
  runningInstances: Schema.Number,
  completedInstances: Schema.Number,
  failedInstances: Schema.Number,
  totalExecutions: Schema.Number,
  totalEvents: Schema.Number
})

/**
 * @category models
 * @since 0.1.0
 */
export type Metrics = typeof Metrics.Type

/**
 * One instance in a listing (`df.list_instances`, newest first).
 *
 * @category models
 * @since 0.1.0
 */
export const InstanceSummary = Schema.Struct({
  instanceId: Schema.String,
  label: Schema.NullOr(Schema.String),
  functionName: Schema.NullOr(Schema.String),
  status: Schema.String,
  executionCount: Schema.NullOr(Schema.Number),
  output: Schema.NullOr(Schema.String),
  createdAt: Schema.NullOr(Schema.Date),
  completedAt: Schema.NullOr(Schema.Date)
})

/**
 * @category models
 * @since 0.1.0
 */
export type InstanceSummary = typeof InstanceSummary.Type

/**
 * @category models
 * @since 0.1.0
 */
export interface InstancePage {
  readonly instances: ReadonlyArray<InstanceSummary>
  /** Pass as `cursor` for the next page; `undefined` on the last page. */
  readonly nextCursor: string | undefined
}

/**
 * Whether pg_durable is installed, and what was found.
 *
 * @category models
 * @since 0.1.0
 */
export interface Detection {
  readonly available: boolean
  /** `pg_durable` is in `pg_extension`. */
  readonly extension: boolean
  /** The `df` schema exists (`to_regnamespace('df')`). */
  readonly schema: boolean
  readonly database: string
}

/**
 * @category models
 * @since 0.1.0
 */
export interface StartOptions {
  /** Free text, exposed to the graph as `{sys_label}` and used by `listInstances`. */
  readonly label?: string | undefined
  /** The run's input (JSON), when the graph reads it. */
  readonly input?: unknown
  /** pg_durable's `transaction_mode` (0.2.5 and later): `"new"` commits the start on its own. */
  readonly transactionMode?: "caller" | "new" | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface SignalOptions {
  /** How often to send again while no wait took it (default 200 milliseconds). */
  readonly every?: Duration.Input | undefined
  /** When to give up (default 30 seconds). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface ListOptions {
  readonly status?: InstanceStatus | undefined
  readonly label?: string | undefined
  /** At most this many (default 100, at most pg_durable's `list_instances_max_limit`, 1000). */
  readonly limit?: number | undefined
  readonly cursor?: string | undefined
}

type Failure = PgDurableUnavailable | PgDurableError

/**
 * @category services
 * @since 0.1.0
 */
export class PgDurableClient extends Context.Service<PgDurableClient, {
  /** Finds out whether pg_durable is installed (never fails for its absence). */
  readonly detect: Effect.Effect<Detection, PgDurableError>
  /** Starts an instance of a graph; returns its id (8 hex characters). */
  readonly start: <G extends Graph.Any>(
    graph: G & Graph.Closed<G, { readonly input: any }>,
    options?: StartOptions
  ) => Effect.Effect<string, Failure | GraphCompileError>
  /** Starts an instance of a graph workflow, its input encoded with the workflow's Schema. */
  readonly startWorkflow: <W extends GraphWorkflow.Any>(
    workflow: W,
    input: W["input"]["Type"],
    options?: Omit<StartOptions, "input">
  ) => Effect.Effect<string, Failure | GraphCompileError>
  readonly status: (instanceId: string) => Effect.Effect<InstanceStatus, Failure | InstanceNotFound>
  /**
   * The result of an instance that completed (`None` before, or when it failed or was cancelled).
   *
   * - With the graph it ran: the graph's value, typed `Graph.Value<G>` (what a capture of the whole
   *   graph would hold, read as JSON: a step's output, a parallel's tuple of its branches' values,
   *   ...), checked against the graph (tuple shapes, step outputs' Schemas).
   * - Otherwise: pg_durable's own JSON of the root node (`df.result`, keys in jsonb's order; a SQL
   *   node's is `{ rows, row_count }`), decoded with `schema` when given.
   */
  readonly result: {
    <G extends Graph.Any>(instanceId: string, graph: G): Effect.Effect<Option.Option<Graph.Value<G>>, Failure>
    <A = unknown>(instanceId: string, schema?: Schema.Codec<A, any, never, never>): Effect.Effect<
      Option.Option<A>,
      Failure
    >
  }
  /** Cancels an instance unless it already ended; returns pg_durable's answer. */
  readonly cancel: (
    instanceId: string,
    reason?: string
  ) => Effect.Effect<string, Failure | InstanceNotFound | CancelFailed>
  /** Sends a signal until a wait takes it; returns how many times it was sent. */
  readonly signal: (
    instanceId: string,
    name: string,
    payload?: unknown,
    options?: SignalOptions
  ) => Effect.Effect<number, Failure | InstanceNotFound | SignalNotDelivered>
  /** Sets a variable (`{name}` in the graphs this role starts later). */
  readonly setvar: (name: string, value: string) => Effect.Effect<void, Failure>
  readonly instanceInfo: (instanceId: string) => Effect.Effect<InstanceInfo, Failure | InstanceNotFound>
  readonly instanceNodes: (instanceId: string) => Effect.Effect<ReadonlyArray<InstanceNode>, Failure>
  readonly instanceExecutions: (
    instanceId: string,
    limit?: number
  ) => Effect.Effect<ReadonlyArray<ExecutionRecord>, Failure>
  /** `None` when pg_durable reports nothing (it returns no row on engine errors). */
  readonly metrics: Effect.Effect<Option.Option<Metrics>, Failure>
  readonly listInstances: (options?: ListOptions) => Effect.Effect<InstancePage, Failure>
  /** pg_durable's description of a graph (dry run) or of a running instance (by id). */
  readonly explain: (
    target: string | Graph.Any,
    options?: StartOptions
  ) => Effect.Effect<string, Failure | GraphCompileError>
  /** Waits until the instance ends (`df.await_instance`); its final status. */
  readonly awaitInstance: (
    instanceId: string,
    options?: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<"completed" | "failed" | "cancelled", Failure | InstanceNotFound | AwaitTimeout>
  /** `df.version()`. */
  readonly version: Effect.Effect<string, Failure>
}>()("@pgflows/pg-durable/PgDurableClient") {}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** How compiled graphs call their steps (default `StepBinding.worker()`). */
  readonly binding?: StepBinding.StepBinding | undefined
  /** The registered steps (default: those each graph was built with). */
  readonly steps?: ReadonlyArray<Step.Any> | undefined
}

const detectQuery = `SELECT
  EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_durable') AS extension,
  to_regnamespace('df') IS NOT NULL AS df_schema,
  (to_regnamespace('df') IS NOT NULL AND EXISTS (
    SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = to_regnamespace('df') AND proname = 'start'
  )) AS df_start,
  current_database() AS database`

/**
 * Whether pg_durable is installed in the `SqlClient`'s database.
 *
 * @category accessors
 * @since 0.1.0
 */
export const pgDurableAvailable: Effect.Effect<boolean, SqlError, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    Effect.map(
      sql.unsafe<{ extension: boolean; df_schema: boolean; df_start: boolean }>(detectQuery),
      (rows) => rows[0] !== undefined && (rows[0].extension || rows[0].df_start)
    )
)

/**
 * Builds the client on the `SqlClient` in context.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<PgDurableClient["Service"], never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let known = false

    const failure = (operation: string) => (cause: SqlError | unknown): PgDurableError => {
      const reason = databaseMessage(cause)
      const retryable = /not yet initialized|try again/i.test(reason) ||
        ((cause as { reason?: { isRetryable?: boolean } })?.reason?.isRetryable ?? false)
      return new PgDurableError({ operation, retryable, reason, cause })
    }

    const detect = sql.unsafe<{ extension: boolean; df_schema: boolean; df_start: boolean; database: string }>(
      detectQuery
    ).pipe(
      Effect.map((rows): Detection => {
        const row = rows[0]!
        return {
          available: row.extension || row.df_start,
          extension: row.extension,
          schema: row.df_schema,
          database: row.database
        }
      }),
      Effect.mapError(failure("detect"))
    )

    const guard = (operation: string): Effect.Effect<void, Failure> =>
      known ? Effect.void : Effect.flatMap(detect, (found) => {
        if (found.available) {
          known = true
          return Effect.void
        }
        return Effect.fail(new PgDurableUnavailable({ operation, database: found.database }))
      })

    const query = <Row extends object>(
      operation: string,
      text: string,
      params: ReadonlyArray<unknown> = []
    ): Effect.Effect<ReadonlyArray<Row>, Failure> =>
      Effect.andThen(
        guard(operation),
        sql.unsafe<Row>(text, params).pipe(Effect.mapError(failure(operation)))
      )

    const notFound = (instanceId: string) => <A, E>(effect: Effect.Effect<A, E>) =>
      Effect.mapError(
        effect,
        (error): E | InstanceNotFound =>
          error instanceof PgDurableError && /not found|access denied/i.test(error.message)
            ? new InstanceNotFound({ instanceId })
            : error
      )

    const decode =
      <S extends Schema.Codec<any, any, never, never>>(operation: string, schema: S) =>
      (rows: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<S["Type"]>, PgDurableError> =>
        Effect.mapError(
          Schema.decodeUnknownEffect(Schema.Array(schema))(rows),
          (error) => new PgDurableError({ operation, retryable: false, reason: error.message, cause: error })
        ) as Effect.Effect<ReadonlyArray<S["Type"]>, PgDurableError>

    const compile = (graph: Graph.Any, input: unknown) =>
      Compiler.compile(graph as any, {
        binding: options.binding,
        steps: options.steps ?? [...graph.steps.values()],
        input
      })

    const start = Effect.fn("PgDurableClient.start")(function*(graph: Graph.Any, startOptions?: StartOptions) {
      yield* guard("start")
      const compiled = yield* compile(graph, startOptions?.input)
      const statement = Compiler.startStatement(compiled, {
        label: startOptions?.label,
        transactionMode: startOptions?.transactionMode
      })
      const rows = yield* query<{ instance_id: string }>("start", statement.text, statement.params)
      return rows[0]!.instance_id
    })

    const startWorkflow = Effect.fn("PgDurableClient.startWorkflow")(
      function*(workflow: GraphWorkflow.Any, input: unknown, startOptions?: Omit<StartOptions, "input">) {
        const encoded = codec(workflow.input).encode(input)
        if (encoded._tag === "Failure") {
          return yield* new GraphCompileError({
            rule: "invalid-value",
            path: "input",
            reason: `the input of workflow "${workflow.name}" does not match its Schema: ${
              formatIssues(encoded.failure)
            }`
          })
        }
        return yield* start(workflow.graph, { ...startOptions, input: encoded.success })
      }
    )

    const status = Effect.fn("PgDurableClient.status")(function*(instanceId: string) {
      const rows = yield* query<{ status: string | null }>("status", "SELECT df.status($1::text) AS status", [
        instanceId
      ])
      const value = rows[0]?.status
      if (value === null || value === undefined) return yield* new InstanceNotFound({ instanceId })
      return yield* Effect.mapError(
        Schema.decodeUnknownEffect(InstanceStatus)(value),
        (error) => new PgDurableError({ operation: "status", retryable: false, reason: error.message, cause: error })
      )
    })

    const result = Effect.fn("PgDurableClient.result")(
      function*(instanceId: string, schema?: Schema.Codec<any, any, never, never> | Graph.Any) {
        const rows = yield* query<{ result: string | null }>("result", "SELECT df.result($1::text) AS result", [
          instanceId
        ])
        const text = rows[0]?.result
        if (text === null || text === undefined) return Option.none()
        const json = yield* Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: (cause) =>
            new PgDurableError({
              operation: "result",
              retryable: false,
              reason: `the result of instance ${instanceId} is not JSON: ${text.slice(0, 200)}`,
              cause
            })
        })
        if (schema === undefined) return Option.some(json)
        if (Graph.isGraph(schema)) return Option.some(yield* graphValue(instanceId, schema, json))
        const decoded = codec(schema).decode(json)
        if (decoded._tag === "Failure") {
          return yield* new PgDurableError({
            operation: "result",
            retryable: false,
            reason: `the result of instance ${instanceId} does not decode: ${formatIssues(decoded.failure)}`,
            cause: decoded.failure
          })
        }
        return Option.some(decoded.success)
      }
    )

    const graphValue = (
      instanceId: string,
      graph: Graph.Any,
      json: unknown
    ): Effect.Effect<unknown, PgDurableError> => {
      const fail = (reason: string) =>
        Effect.fail(
          new PgDurableError({
            operation: "result",
            retryable: false,
            reason: `the result of instance ${instanceId} does not fit the graph's value: ${reason}`,
            cause: undefined
          })
        )
      const value = Value.fromResult(json)
      if (Result.isFailure(value)) return fail(value.failure)
      const steps = new Map(graph.steps)
      for (const step of options.steps ?? []) steps.set(step.name, step)
      const problem = Value.check(Model.normalize(graph.node), value.success, steps)
      return problem === undefined ? Effect.succeed(value.success) : fail(problem)
    }

    const cancel = Effect.fn("PgDurableClient.cancel")(function*(instanceId: string, reason?: string) {
      const rows = yield* query<{ answer: string | null }>(
        "cancel",
        "SELECT df.cancel($1::text, $2::text) AS answer",
        [instanceId, reason ?? "Cancelled by user"]
      ).pipe(notFound(instanceId))
      const answer = rows[0]?.answer ?? ""
      if (answer.startsWith("Failed to cancel:")) {
        return yield* new CancelFailed({ instanceId, reason: answer.slice("Failed to cancel:".length).trim() })
      }
      return answer
    })

    const signal = Effect.fn("PgDurableClient.signal")(
      function*(instanceId: string, name: string, payload?: unknown, signalOptions?: SignalOptions) {
        const every = Duration.fromInputUnsafe(signalOptions?.every ?? "200 millis")
        const deadline = Duration.toMillis(Duration.fromInputUnsafe(signalOptions?.timeout ?? "30 seconds"))
        const data = JSON.stringify(payload ?? null)
        const taken = query<{ taken: number; status: string | null }>(
          "signal",
          `SELECT count(*) FILTER (WHERE node_type = 'SIGNAL' AND status = 'completed' AND
    CASE WHEN node_type = 'SIGNAL' THEN (query::jsonb)->>'signal_name' END = $2::text)::int AS taken,
  df.status($1::text) AS status
FROM df.instance_nodes($1::text)`,
          [instanceId, name]
        ).pipe(notFound(instanceId), Effect.map((rows) => rows[0] ?? { taken: 0, status: null }))
        const before = (yield* taken).taken
        const started = yield* Clock.currentTimeMillis
        for (let attempts = 1;; attempts++) {
          yield* query("signal", "SELECT df.signal($1::text, $2::text, $3::text)", [instanceId, name, data]).pipe(
            notFound(instanceId)
          )
          const now = yield* taken
          if (now.taken > before) return attempts
          const current = now.status ?? "unknown"
          if (current === "completed" || current === "failed" || current === "cancelled") {
            return yield* new SignalNotDelivered({ instanceId, signal: name, attempts, status: current })
          }
          if ((yield* Clock.currentTimeMillis) - started >= deadline) {
            return yield* new SignalNotDelivered({ instanceId, signal: name, attempts, status: current })
          }
          yield* Effect.sleep(every)
        }
      }
    )

    const setvar = Effect.fn("PgDurableClient.setvar")(function*(name: string, value: string) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        return yield* new PgDurableError({
          operation: "setvar",
          retryable: false,
          reason: `variable name ${
            JSON.stringify(name)
          } is not an identifier; pg_durable substitutes only {identifier}`,
          cause: undefined
        })
      }
      yield* query("setvar", "SELECT df.setvar($1::text, $2::text)", [name, value])
    })

    const instanceInfo = Effect.fn("PgDurableClient.instanceInfo")(function*(instanceId: string) {
      const rows = yield* query(
        "instanceInfo",
        `SELECT instance_id::text AS "instanceId", label::text AS label, function_name::text AS "functionName",
  function_version::text AS "functionVersion", current_execution_id::float8 AS "currentExecutionId",
  status::text AS status, output::text AS output
FROM df.instance_info($1::text)`,
        [instanceId]
      ).pipe(Effect.flatMap(decode("instanceInfo", InstanceInfo)))
      const row = rows[0]
      if (row === undefined) return yield* new InstanceNotFound({ instanceId })
      return row
    })

    const instanceNodes = (instanceId: string) =>
      query(
        "instanceNodes",
        `SELECT node_id::text AS "nodeId", node_type::text AS "nodeType", query::text AS query,
  result_name::text AS "resultName", left_node::text AS "leftNode", right_node::text AS "rightNode",
  status::text AS status, result::text AS result, status_details::text AS "statusDetails",
  inferred_status::text AS "inferredStatus", inferred_status_from_ancestor_id::text AS "inferredStatusFromAncestorId",
  updated_at AS "updatedAt"
FROM df.instance_nodes($1::text)`,
        [instanceId]
      ).pipe(Effect.flatMap(decode("instanceNodes", InstanceNode)), Effect.withSpan("PgDurableClient.instanceNodes"))

    const instanceExecutions = (instanceId: string, limit?: number) =>
      query(
        "instanceExecutions",
        `SELECT execution_id::float8 AS "executionId", status::text AS status, event_count::float8 AS "eventCount",
  duration_ms::float8 AS "durationMs", output::text AS output
FROM df.instance_executions($1::text, $2::int)`,
        [instanceId, limit ?? 5]
      ).pipe(
        Effect.flatMap(decode("instanceExecutions", ExecutionRecord)),
        Effect.withSpan("PgDurableClient.instanceExecutions")
      )

    const metrics = query(
      "metrics",
      `SELECT total_instances::float8 AS "totalInstances", running_instances::float8 AS "runningInstances",
  completed_instances::float8 AS "completedInstances", failed_instances::float8 AS "failedInstances",
  total_executions::float8 AS "totalExecutions", total_events::float8 AS "totalEvents"
FROM df.metrics()`
    ).pipe(
      Effect.flatMap(decode("metrics", Metrics)),
      Effect.map((rows) => Option.fromNullishOr(rows[0])),
      Effect.withSpan("PgDurableClient.metrics")
    )

    const listInstances = Effect.fn("PgDurableClient.listInstances")(function*(listOptions?: ListOptions) {
      const rows = yield* query<Record<string, unknown> & { nextCursor: string | null }>(
        "listInstances",
        `SELECT instance_id::text AS "instanceId", label::text AS label, function_name::text AS "functionName",
  status::text AS status, execution_count::float8 AS "executionCount", output::text AS output,
  created_at AS "createdAt", completed_at AS "completedAt", next_cursor::text AS "nextCursor"
FROM df.list_instances($1::text, $2::int, $3::text, $4::text)`,
        [
          listOptions?.status ?? null,
          Math.min(Math.max(1, Math.trunc(listOptions?.limit ?? 100)), 1000),
          listOptions?.label ?? null,
          listOptions?.cursor ?? null
        ]
      )
      const instances = yield* decode("listInstances", InstanceSummary)(
        rows.map(({ nextCursor: _, ...row }) => row)
      )
      return { instances, nextCursor: rows[0]?.nextCursor ?? undefined } satisfies InstancePage
    })

    const explain = Effect.fn("PgDurableClient.explain")(
      function*(target: string | Graph.Any, explainOptions?: StartOptions) {
        if (typeof target === "string") {
          const rows = yield* query<{ explain: string }>("explain", "SELECT df.explain($1::text) AS explain", [target])
          return rows[0]?.explain ?? ""
        }
        yield* guard("explain")
        const compiled = yield* compile(target, explainOptions?.input)
        const rows = yield* query<{ explain: string }>(
          "explain",
          `SELECT df.explain(${compiled.parameterised.expression}) AS explain`,
          compiled.parameterised.params
        )
        return rows[0]?.explain ?? ""
      }
    )

    const awaitInstance = Effect.fn("PgDurableClient.awaitInstance")(
      function*(instanceId: string, awaitOptions?: { readonly timeout?: Duration.Input | undefined }) {
        const seconds = Math.max(
          1,
          Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(awaitOptions?.timeout ?? "30 seconds")) / 1000)
        )
        const rows = yield* query<{ status: string }>(
          "awaitInstance",
          "SELECT df.await_instance($1::text, $2::int) AS status",
          [instanceId, seconds]
        ).pipe(
          notFound(instanceId),
          Effect.mapError((error) =>
            error instanceof PgDurableError && /timeout after/i.test(error.message)
              ? new AwaitTimeout({ instanceId, seconds })
              : error
          )
        )
        return rows[0]!.status as "completed" | "failed" | "cancelled"
      }
    )

    const version = Effect.map(
      query<{ version: string }>("version", "SELECT df.version() AS version"),
      (rows) => rows[0]?.version ?? ""
    )

    return PgDurableClient.of({
      detect,
      start: start as PgDurableClient["Service"]["start"],
      startWorkflow,
      status,
      result: result as PgDurableClient["Service"]["result"],
      cancel,
      signal,
      setvar,
      instanceInfo,
      instanceNodes,
      instanceExecutions,
      metrics,
      listInstances,
      explain,
      awaitInstance,
      version
    })
  })

/**
 * Provides the client on the application's `SqlClient`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<PgDurableClient, never, SqlClient.SqlClient> =>
  Layer.effect(PgDurableClient, make(options))

// internal

/** The innermost message of an error: PostgreSQL's own text sits in the SqlError's causes. */
const databaseMessage = (error: unknown): string => {
  let message = String(error)
  for (let current: any = error, depth = 0; current != null && depth < 8; current = current.cause, depth++) {
    if (typeof current.message === "string" && current.message !== "") message = current.message
  }
  return message
}
