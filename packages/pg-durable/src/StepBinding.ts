/**
 * How pg_durable calls the steps of a graph (ARCHITECTURE.md section 9).
 *
 * - `worker` (the default, and the practical one): the graph calls `<schema>.pgd_enqueue_step(...)`,
 *   which writes the call to the step-results table, puts a message on the step queue
 *   (`PgflowsConfig.stepQueue`, in pgflows' built-in queue tables) and notifies
 *   `PgflowsConfig.notifyChannel`; a `StepWorker` runs the step (input decoded with its Schema, its
 *   retry schedule and timeout applied) and writes the output or the error; the next node reads it
 *   with `<schema>.pgd_step_result(call, wait)`, which waits for it and RAISES when the step failed,
 *   so the pg_durable node fails instead of reading an error as output. Each call is keyed by the
 *   instance id, the step's key in the graph and an iteration number, so loops get a fresh call per
 *   iteration and a re-run of the enqueue node (pg_durable runs activities at least once) finds the
 *   call it made.
 * - `http`: a SQL node builds the input's JSON, `df.http` POSTs it to `<baseUrl>/steps/<name>` with
 *   `Content-Type: application/json`, `X-Pgflows-Instance-Id` (the compiled SQL sets it from
 *   `{sys_instance_id}`: pg_durable sends no such header itself) and `X-Pgflows-Step-Key`, and
 *   `<schema>.pgd_http_output(response, step)` returns the body, raising on any non-2xx answer. The
 *   endpoint's contract: answer 2xx with the step's encoded output as JSON, 5xx when the step failed
 *   (pg_durable fails the node on 5xx, and completes it on 4xx, which the output node then fails).
 *   Released pg_durable builds only reach Azure service domains (never localhost).
 *
 * Both bindings use SQL functions of `PgDurableMigrations`, which must be applied in the database
 * where pg_durable runs.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"

/**
 * @category models
 * @since 0.1.0
 */
export interface Worker {
  readonly _tag: "worker"
  /** How long the result node waits for the StepWorker's result before it fails (seconds). */
  readonly waitSeconds: number
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Http {
  readonly _tag: "http"
  /** `https://host/prefix`, without a trailing slash. */
  readonly baseUrl: string
  readonly timeoutSeconds: number
  /** Extra headers sent with every step call (string values only). */
  readonly headers: Readonly<Record<string, string>>
}

/**
 * @category models
 * @since 0.1.0
 */
export type StepBinding = Worker | Http

/**
 * The worker binding. `wait` bounds how long a result node waits for its step (default one hour);
 * the wait holds one of pg_durable's user connections.
 *
 * @category constructors
 * @since 0.1.0
 */
export const worker = (options?: { readonly wait?: Duration.Input | undefined }): Worker => ({
  _tag: "worker",
  waitSeconds: options?.wait === undefined ? 3600 : Duration.toMillis(Duration.fromInputUnsafe(options.wait)) / 1000
})

/**
 * The HTTP binding, calling `<baseUrl>/steps/<name>`; `timeout` per request (default 30 seconds).
 *
 * @category constructors
 * @since 0.1.0
 */
export const http = (baseUrl: string, options?: {
  readonly timeout?: Duration.Input | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
}): Http => ({
  _tag: "http",
  baseUrl: baseUrl.replace(/\/+$/, ""),
  timeoutSeconds: options?.timeout === undefined
    ? 30
    : Duration.toMillis(Duration.fromInputUnsafe(options.timeout)) / 1000,
  headers: options?.headers ?? {}
})

/**
 * The default binding: `worker()`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const defaultBinding: StepBinding = worker()
