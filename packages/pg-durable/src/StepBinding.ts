/**
 * How pg_durable calls the steps of a graph (docs/PG_DURABLE.md, "HTTP" and "Signals").
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
 * - `http`: three nodes per call. A SQL node asks `<schema>.pgd_http_call(instance, key, step)` for
 *   the call's result key (`<step key>:<iteration>`: the unread call of that step of the instance, or
 *   a new one, so each iteration of a loop gets a key of its own and a node pg_durable runs again
 *   finds the key it had) and builds the input's JSON; `df.http` POSTs the input to
 *   `<baseUrl>/steps/<name>` with `Content-Type: application/json`, `X-Pgflows-Instance-Id` (from
 *   `{sys_instance_id}`: pg_durable sends no such header itself), `X-Pgflows-Result-Key` and the
 *   shared secret (`X-Pgflows-Step-Secret` by default); then
 *   `<schema>.pgd_http_output(response, step, instance, key)` returns the body as JSON text, marks
 *   the call read, and RAISES on any non-2xx answer with the message the endpoint sent, so the
 *   pg_durable node fails instead of reading an error as output. The endpoint (`@pgflows/server`)
 *   answers 2xx with the step's encoded output, and records the outcome per (instance, result key):
 *   a repeated request gets the recorded answer and never runs a completed step again.
 *   Released pg_durable builds only reach Azure service domains (never localhost or a bare IP).
 *
 * Both bindings use SQL functions of `PgDurableMigrations`, which must be applied in the database
 * where pg_durable runs.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import type * as Redacted from "effect/Redacted"

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
  /** The shared secret the step endpoint checks, sent in `secretHeader`. */
  readonly secret: Redacted.Redacted<string> | Variable | undefined
  /** Default `X-Pgflows-Step-Secret`. */
  readonly secretHeader: string
}

/**
 * A pg_durable variable (`df.setvar`, per role, snapshotted by `df.start`), sent as `{name}`: the
 * secret then never appears in a compiled graph or an exported script.
 *
 * @category models
 * @since 0.1.0
 */
export interface Variable {
  readonly _tag: "Variable"
  readonly name: string
}

/**
 * The header that carries the shared secret unless `secretHeader` says otherwise.
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultSecretHeader = "X-Pgflows-Step-Secret"

/**
 * A secret read from a pg_durable variable: set it with `PgDurableClient.setvar(name, secret)` (as
 * the role that starts the instances) before starting them.
 *
 * @category constructors
 * @since 0.1.0
 */
export const variable = (name: string): Variable => ({ _tag: "Variable", name })

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
 * The HTTP binding, calling `<baseUrl>/steps/<name>`; `timeout` per request (default 30 seconds:
 * make it longer than the step's attempts and their backoff can take). `secret` is sent in
 * `secretHeader`: a `Redacted` value is written into the graph (and into exported scripts), a
 * `variable(name)` is read from pg_durable's variables when the instance starts.
 *
 * @category constructors
 * @since 0.1.0
 */
export const http = (baseUrl: string, options?: {
  readonly timeout?: Duration.Input | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly secret?: Redacted.Redacted<string> | Variable | undefined
  readonly secretHeader?: string | undefined
}): Http => ({
  _tag: "http",
  baseUrl: baseUrl.replace(/\/+$/, ""),
  timeoutSeconds: options?.timeout === undefined
    ? 30
    : Duration.toMillis(Duration.fromInputUnsafe(options.timeout)) / 1000,
  headers: options?.headers ?? {},
  secret: options?.secret,
  secretHeader: options?.secretHeader ?? defaultSecretHeader
})

/**
 * The default binding: `worker()`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const defaultBinding: StepBinding = worker()
