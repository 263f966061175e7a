/**
 * Runs the steps that pg_durable graphs call through the worker binding (`StepBinding.worker`).
 *
 * It reads step calls from the step queue (`PgflowsConfig.stepQueue`, on the `WorkQueue` service),
 * runs the registered `Step` (input decoded with its Schema, its retry `Schedule` and per-attempt
 * `timeout` applied, output encoded with its Schema) and writes the output or the error to
 * `<schema>.step_results`, where the graph's result node (`pgd_step_result`) reads it and fails the
 * pg_durable node when the step failed. `run` works until interrupted, woken by NOTIFY on
 * `PgflowsConfig.notifyChannel` (payload `step:<queue>`) and polling every
 * `PgflowsConfig.pollInterval` as a fallback. Plugins' step hooks (`Plugin`) see each attempt.
 *
 * **Gotchas**
 *
 * - A call is executed at least once: if the worker dies mid-step, the message becomes visible
 *   again after the visibility timeout and the step runs again. Make steps idempotent.
 * - A call whose step no worker registers stays queued; after `PgflowsConfig.maxDeliveries`
 *   deliveries it is failed, so the graph's node fails instead of waiting for ever.
 * - The error stored for a typed failure is the error encoded with the step's error Schema, plus its
 *   `message`; `pgd_step_result` raises with that message.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import type * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Identifier from "pgflows/Identifier"
import { codec, formatIssues } from "pgflows/JsonCodec"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import { type MigrationsMissing, StoreError } from "pgflows/PgflowsError"
import type * as Plugin from "pgflows/Plugin"
import type * as Step from "pgflows/Step"
import * as WorkQueue from "pgflows/WorkQueue"
import * as PgDurableMigrations from "./PgDurableMigrations.ts"
import * as StepExecutor from "./StepExecutor.ts"

/**
 * What happened to one step call.
 *
 * @category models
 * @since 0.1.0
 */
export type Outcome = "completed" | "failed" | "skipped" | "deferred"

/**
 * @category services
 * @since 0.1.0
 */
export class StepWorker extends Context.Service<StepWorker, {
  /** Reads up to `concurrency` due step calls and runs them; returns how many it handled. */
  readonly processOnce: Effect.Effect<number, StoreError>
  /** Works until interrupted (NOTIFY, polling as a fallback). */
  readonly run: Effect.Effect<never>
  /** The steps this worker runs, by name. */
  readonly steps: ReadonlyMap<string, Step.Any>
}>()("@pgflows/pg-durable/StepWorker") {}

/**
 * The services the steps need.
 *
 * @category type-level
 * @since 0.1.0
 */
export type Requirements<S> = S extends Step.Step<any, any, any, any, infer R, any> ? R : never

/**
 * @category models
 * @since 0.1.0
 */
export interface Options<S extends ReadonlyArray<Step.Any>> {
  readonly steps: S
  /** Step calls run at once (default `PgflowsConfig.workerConcurrency`). */
  readonly concurrency?: number | undefined
  /**
   * Plugins whose step hooks (`beforeStep`, `afterStep`, `onStepError`, `aroundStep`) see each
   * attempt, as in `Pgflows.layer`; then those added with `Plugin.layer`. Their events carry the
   * pg_durable instance id as `runId`, `"pg_durable"` as `workflow`, and `<step key>:<iteration>` as
   * `key`; `attempt` counts the attempts of this delivery.
   */
  readonly plugins?: ReadonlyArray<Plugin.Plugin> | undefined
  /** How long a plugin's hook may run before it is abandoned and logged (default 5 seconds). */
  readonly pluginTimeout?: Duration.Input | undefined
}

/**
 * Builds the worker on the application's `SqlClient` and a `WorkQueue` (use `PgWorkQueue.layer`),
 * after applying `PgDurableMigrations`. NOTIFY wake-ups need a `PgClient` in context; without one
 * the worker polls.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <const S extends ReadonlyArray<Step.Any>>(
  options: Options<S>
): Layer.Layer<
  StepWorker,
  Migrator.MigrationError | MigrationsMissing | SqlError | PgflowsConfig.PgflowsConfigError,
  WorkQueue.WorkQueue | SqlClient.SqlClient | Requirements<S[number]>
> => Layer.effect(StepWorker, make(options)).pipe(Layer.provide(PgflowsConfig.layerDefault))

/**
 * The worker, built in the current context (see `layer`).
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <const S extends ReadonlyArray<Step.Any>>(
  options: Options<S>
): Effect.Effect<
  StepWorker["Service"],
  Migrator.MigrationError | MigrationsMissing | SqlError,
  WorkQueue.WorkQueue | SqlClient.SqlClient | Requirements<S[number]>
> =>
  Effect.gen(function*() {
    yield* PgDurableMigrations.prepare
    const sql = yield* SqlClient.SqlClient
    const queues = yield* WorkQueue.WorkQueue
    const config = yield* PgflowsConfig.PgflowsConfig
    const pg = yield* Effect.serviceOption(PgClient.PgClient)
    const registry = new Map<string, Step.Any>()
    for (const step of options.steps) {
      const existing = registry.get(step.name)
      if (existing !== undefined && existing !== step) {
        return yield* Effect.die(new Error(`two different steps are named "${step.name}"`))
      }
      registry.set(step.name, step)
    }
    const s = Identifier.quote(config.schema)
    const queue = config.stepQueue
    const concurrency = options.concurrency ?? config.workerConcurrency
    const visibility = config.visibilityTimeout
    const storeError = (operation: string) => (cause: unknown) =>
      cause instanceof StoreError ? cause : new StoreError({
        operation,
        retryable: (cause as { reason?: { isRetryable?: boolean } } | undefined)?.reason?.isRetryable ?? false,
        cause
      })

    const claim = (call: string) =>
      sql.unsafe<
        { step: string; input: unknown; attempts: number; instance_id: string; step_key: string; iteration: number }
      >(
        `UPDATE ${s}.step_results SET status = 'running', attempts = attempts + 1, updated_at = now()
WHERE call_id = $1 AND status IN ('pending', 'running')
RETURNING step, input, attempts, instance_id, step_key, iteration`,
        [call]
      ).pipe(Effect.map((rows) => rows[0]), Effect.mapError(storeError("StepWorker.claim")))

    const finish = (call: string, outcome: { readonly output: unknown } | { readonly error: unknown }) =>
      ("output" in outcome
        ? sql.unsafe(
          `UPDATE ${s}.step_results SET status = 'completed', output = $2::jsonb, error = NULL,
  updated_at = now(), completed_at = now() WHERE call_id = $1 AND status IN ('pending', 'running')`,
          [call, JSON.stringify(outcome.output ?? null)]
        )
        : sql.unsafe(
          `UPDATE ${s}.step_results SET status = 'failed', error = $2::jsonb,
  updated_at = now(), completed_at = now() WHERE call_id = $1 AND status IN ('pending', 'running')`,
          [call, JSON.stringify(outcome.error)]
        )).pipe(Effect.asVoid, Effect.mapError(storeError("StepWorker.finish")))

    const executor = yield* StepExecutor.make({ plugins: options.plugins, pluginTimeout: options.pluginTimeout })

    const execute = (step: Step.Any, input: unknown, where: StepExecutor.Where) =>
      Effect.suspend((): Effect.Effect<{ readonly output: unknown } | { readonly error: unknown }> => {
        const decoded = codec(step.input).decode(input)
        if (Result.isFailure(decoded)) {
          return Effect.succeed({
            error: {
              _tag: "DecodeError",
              message: `the input of step "${step.name}" does not decode: ${formatIssues(decoded.failure)}`
            }
          })
        }
        return Effect.map(
          executor.execute(step, decoded.success, where),
          (outcome) => outcome._tag === "Completed" ? { output: outcome.output } : { error: outcome.error }
        )
      })

    const handle = (message: WorkQueue.Message): Effect.Effect<Outcome, StoreError> =>
      Effect.gen(function*() {
        const payload = message.message as { readonly call?: unknown; readonly step?: unknown } | null
        const call = typeof payload?.call === "string" ? payload.call : undefined
        if (call === undefined) {
          yield* queues.archive(queue, message.msgId)
          return "skipped" as const
        }
        const step = typeof payload?.step === "string" ? registry.get(payload.step) : undefined
        if (step === undefined) {
          if (message.readCount < config.maxDeliveries) {
            // Another worker may know this step: hand the message back soon.
            yield* queues.setVisibility(queue, message.msgId, config.pollInterval)
            return "deferred" as const
          }
          yield* finish(call, {
            error: {
              _tag: "UnknownStep",
              message:
                `no StepWorker registers step "${String(payload?.step)}" (delivered ${message.readCount} times); ` +
                "deploy a worker that has it in StepWorker.layer({ steps })"
            }
          })
          yield* queues.delete(queue, message.msgId)
          return "failed" as const
        }
        if (message.readCount > config.maxDeliveries) {
          yield* finish(call, {
            error: {
              _tag: "TooManyDeliveries",
              message: `step "${step.name}" was delivered ${message.readCount} times without finishing ` +
                "(the worker running it probably crashed each time)"
            }
          })
          yield* queues.delete(queue, message.msgId)
          return "failed" as const
        }
        const claimed = yield* claim(call)
        if (claimed === undefined) {
          // Already finished (a duplicate delivery) or unknown.
          yield* queues.delete(queue, message.msgId)
          return "skipped" as const
        }
        // Keep the message invisible while the step runs (retries may take long).
        const keepAlive = yield* Effect.forkChild(
          Effect.forever(
            Effect.andThen(
              Effect.sleep(Duration.millis(Math.max(50, Duration.toMillis(visibility) / 2))),
              Effect.ignore(queues.setVisibility(queue, message.msgId, visibility))
            )
          )
        )
        const outcome = yield* execute(step, claimed.input, {
          runId: claimed.instance_id,
          key: `${claimed.step_key}:${claimed.iteration}`
        }).pipe(Effect.ensuring(Fiber.interrupt(keepAlive)))
        yield* finish(call, outcome)
        yield* queues.delete(queue, message.msgId)
        return "output" in outcome ? "completed" as const : "failed" as const
      }).pipe(
        Effect.withSpan("pgflows.step_worker.call", {
          attributes: { "pgflows.queue": queue, "pgflows.msg_id": message.msgId }
        })
      )

    const processOnce = Effect.gen(function*() {
      const messages = yield* queues.read(queue, { visibilityTimeout: visibility, limit: concurrency })
      yield* Effect.forEach(messages, handle, { concurrency: "unbounded", discard: true })
      return messages.length
    }).pipe(Effect.withSpan("StepWorker.processOnce"))

    const wakeups = yield* Queue.sliding<void>(1)
    const listen = (listening: Deferred.Deferred<void>) =>
      Option.match(pg, {
        onNone: () => Deferred.succeed(listening, undefined),
        onSome: (client) =>
          Effect.scoped(Effect.gen(function*() {
            const notifications = yield* client.listen(config.notifyChannel)
            yield* Deferred.succeed(listening, undefined)
            while (true) {
              const notification = yield* Queue.take(notifications)
              if (notification.payload === `step:${queue}`) yield* Queue.offer(wakeups, undefined)
            }
          })).pipe(
            Effect.tapError((error) =>
              Effect.logWarning(`pgflows StepWorker: notifications interrupted: ${error.message}`)
            ),
            Effect.retry(Schedule.min([Schedule.exponential("200 millis"), Schedule.spaced("5 seconds")])),
            Effect.ignore
          )
      })

    const run = Effect.gen(function*() {
      // Listen before the first read, so no call enqueued meanwhile waits for the poll.
      const listening = yield* Deferred.make<void>()
      yield* Effect.forkScoped(listen(listening))
      yield* Deferred.await(listening).pipe(Effect.timeoutOption("5 seconds"))
      while (true) {
        const handled = yield* processOnce.pipe(
          Effect.catch((error) =>
            Effect.as(Effect.logWarning(`pgflows StepWorker: reading the step queue failed: ${error.message}`), 0)
          )
        )
        if (handled < concurrency) {
          yield* Queue.take(wakeups).pipe(Effect.timeoutOption(config.pollInterval))
        }
      }
    }).pipe(Effect.scoped, Effect.withSpan("StepWorker.run")) as Effect.Effect<never>

    return StepWorker.of({ processOnce, run, steps: registry })
  })
