/**
 * The step endpoint's work: find the step, decode the input, claim the call in `step_calls` (or read
 * the answer recorded for it), run it with `StepExecutor` under a renewed claim, record the answer.
 *
 * A claim is the row's `lease_owner` with a `lease_expires_at` renewed every third of the lease while
 * the step runs. A second request for the same call waits while the first holds a live claim (up to
 * `inProgressWait`), then gets the recorded answer; a claim whose server died expires and the next
 * request takes the call over. Executions run in the server's scope, not the request's: a caller
 * that hangs up (pg_durable's timeout) does not stop a step half-way, and its answer is recorded for
 * the next request; the server's shutdown interrupts them and releases their claims.
 */
import type * as StepExecutor from "@pgflows/pg-durable/StepExecutor"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as SqlClient from "effect/sql/SqlClient"
import * as Crypto from "node:crypto"
import * as Identifier from "pgflows/Identifier"
import { codec, formatIssues } from "pgflows/JsonCodec"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import type * as Step from "pgflows/Step"
import * as StoredText from "pgflows/StoredText"
import {
  ResultKeyConflict,
  ServiceUnavailable,
  StepFailed,
  StepInProgress,
  StepInputInvalid,
  UnknownStep
} from "../ServerError.ts"

export interface Options {
  readonly steps: ReadonlyArray<Step.Any>
  readonly executor: StepExecutor.StepExecutor
  /** All attempts of one call together (default 25 seconds). */
  readonly deadline: Duration.Duration
  /** How long a claim holds without renewal (default 30 seconds). */
  readonly lease: Duration.Duration
  /** How long a request waits for the same call running elsewhere (default: the deadline). */
  readonly inProgressWait: Duration.Duration
}

export type CallError =
  | UnknownStep
  | StepInputInvalid
  | StepFailed
  | ResultKeyConflict
  | StepInProgress
  | ServiceUnavailable

export interface StepCalls {
  readonly call: (
    name: string,
    instanceId: string,
    resultKey: string,
    input: unknown
  ) => Effect.Effect<unknown, CallError>
  readonly steps: ReadonlyMap<string, Step.Any>
}

interface Row {
  readonly step: string
  readonly input_hash: string
  readonly status: "running" | "completed" | "failed"
  readonly output: unknown
  readonly error: unknown
  readonly attempts: number
  readonly live: boolean
}

export const make = (options: Options): Effect.Effect<StepCalls, never, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const config = yield* PgflowsConfig.PgflowsConfig
    const scope = yield* Effect.scope
    const s = Identifier.quote(config.schema)
    const owner = `${process.pid}:${Crypto.randomBytes(6).toString("hex")}`
    const registry = new Map<string, Step.Any>()
    for (const step of options.steps) {
      const existing = registry.get(step.name)
      if (existing !== undefined && existing !== step) {
        return yield* Effect.die(new Error(`two different steps are named "${step.name}"`))
      }
      registry.set(step.name, step)
    }
    const leaseSeconds = Duration.toMillis(options.lease) / 1000
    let claims = 0

    const unavailable = (operation: string) => (cause: unknown) =>
      Effect.andThen(
        Effect.logError(`pgflows server: ${operation} failed`, cause),
        Effect.fail(
          new ServiceUnavailable({
            message: `the database is not available (${operation}); try again`,
            retryable: true
          })
        )
      )

    const claim = (instanceId: string, resultKey: string, step: string, hash: string, token: string) =>
      sql.unsafe<{ executions: number }>(
        `INSERT INTO ${s}.step_calls (instance_id, result_key, step, input_hash, status, lease_owner, lease_expires_at)
VALUES ($1, $2, $3, $4, 'running', $5, now() + make_interval(secs => $6))
ON CONFLICT (instance_id, result_key) DO UPDATE SET
  lease_owner = excluded.lease_owner, lease_expires_at = excluded.lease_expires_at,
  executions = step_calls.executions + 1, updated_at = now()
WHERE step_calls.status = 'running' AND coalesce(step_calls.lease_expires_at, '-infinity') < now()
  AND step_calls.step = excluded.step AND step_calls.input_hash = excluded.input_hash
RETURNING executions`,
        [instanceId, resultKey, step, hash, token, leaseSeconds]
      ).pipe(Effect.map((rows) => rows.length > 0), Effect.catch(unavailable("claiming a step call")))

    const read = (instanceId: string, resultKey: string) =>
      sql.unsafe<Row>(
        `SELECT step, input_hash, status, output, error, attempts, coalesce(lease_expires_at >= now(), false) AS live
FROM ${s}.step_calls WHERE instance_id = $1 AND result_key = $2`,
        [instanceId, resultKey]
      ).pipe(Effect.map((rows) => rows[0]), Effect.catch(unavailable("reading a step call")))

    const renew = (instanceId: string, resultKey: string, token: string) =>
      sql.unsafe(
        `UPDATE ${s}.step_calls SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
WHERE instance_id = $1 AND result_key = $2 AND lease_owner = $3 AND status = 'running'`,
        [instanceId, resultKey, token, leaseSeconds]
      )

    const release = (instanceId: string, resultKey: string, token: string) =>
      sql.unsafe(
        `UPDATE ${s}.step_calls SET lease_expires_at = now(), lease_owner = NULL, updated_at = now()
WHERE instance_id = $1 AND result_key = $2 AND lease_owner = $3 AND status = 'running'`,
        [instanceId, resultKey, token]
      ).pipe(Effect.ignore)

    const record = (instanceId: string, resultKey: string, token: string, outcome: StepExecutor.Outcome) =>
      sql.unsafe(
        `UPDATE ${s}.step_calls SET status = $4, output = $5::jsonb, error = $6::jsonb, attempts = $7,
  lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), completed_at = now()
WHERE instance_id = $1 AND result_key = $2 AND lease_owner = $3 AND status = 'running'`,
        [
          instanceId,
          resultKey,
          token,
          outcome._tag === "Completed" ? "completed" : "failed",
          outcome._tag === "Completed" ? JSON.stringify(outcome.output ?? null) : null,
          outcome._tag === "Failed" ? JSON.stringify(outcome.error) : null,
          outcome.attempts
        ]
      )

    /** An outcome the database cannot hold (too large, a NUL inside) becomes a failure it can. */
    const storable = (step: Step.Any, outcome: StepExecutor.Outcome): StepExecutor.Outcome => {
      const text = JSON.stringify(outcome._tag === "Completed" ? outcome.output ?? null : outcome.error)
      const bytes = Buffer.byteLength(text, "utf8")
      if (bytes > config.maxPayloadBytes) {
        return {
          _tag: "Failed",
          attempts: outcome.attempts,
          error: {
            _tag: "PayloadTooLarge",
            step: step.name,
            bytes,
            limit: config.maxPayloadBytes,
            message: `the ${
              outcome._tag === "Completed" ? "output" : "error"
            } of step "${step.name}" has ${bytes} bytes, over the limit of ${config.maxPayloadBytes}`
          }
        }
      }
      const problem = StoredText.problem(text) ?? (text.includes("\\u0000") ? "contains a NUL character" : undefined)
      if (problem !== undefined) {
        return {
          _tag: "Failed",
          attempts: outcome.attempts,
          error: {
            _tag: "UnstorableValue",
            step: step.name,
            message: `the ${outcome._tag === "Completed" ? "output" : "error"} of step "${step.name}" ${problem}`
          }
        }
      }
      return outcome
    }

    const answer = (step: string, outcome: StepExecutor.Outcome): Effect.Effect<unknown, StepFailed> =>
      outcome._tag === "Completed"
        ? Effect.succeed(outcome.output ?? null)
        : Effect.fail(
          new StepFailed({
            step,
            attempts: outcome.attempts,
            error: outcome.error,
            message: `step "${step}" failed after ${outcome.attempts} attempt${
              outcome.attempts === 1 ? "" : "s"
            }: ${outcome.error.message}`
          })
        )

    const recorded = (row: Row): StepExecutor.Outcome =>
      row.status === "completed"
        ? { _tag: "Completed", output: row.output, attempts: row.attempts }
        : {
          _tag: "Failed",
          attempts: row.attempts,
          error: (typeof row.error === "object" && row.error !== null && "message" in row.error
            ? row.error
            : { message: JSON.stringify(row.error) }) as StepExecutor.StepErrorJson
        }

    /** Runs the call in the server's scope under a renewed claim; records and returns its outcome. */
    const execute = (step: Step.Any, input: unknown, instanceId: string, resultKey: string, token: string) =>
      Effect.gen(function*() {
        const renewal = yield* Effect.forkChild(
          Effect.forever(
            Effect.andThen(
              Effect.sleep(Duration.millis(Math.max(50, Duration.toMillis(options.lease) / 3))),
              Effect.ignore(renew(instanceId, resultKey, token))
            )
          )
        )
        const outcome = storable(
          step,
          yield* options.executor.execute(step, input, { runId: instanceId, key: resultKey }, {
            deadline: options.deadline
          })
        )
        yield* Fiber.interrupt(renewal)
        yield* record(instanceId, resultKey, token, outcome).pipe(
          Effect.retry({ times: 3 }),
          Effect.catch((cause) =>
            Effect.andThen(
              Effect.logError(`pgflows server: recording step call ${instanceId} ${resultKey} failed`, cause),
              release(instanceId, resultKey, token)
            )
          )
        )
        return outcome
      }).pipe(
        Effect.onInterrupt(() => release(instanceId, resultKey, token)),
        Effect.withSpan("pgflows.server.step", {
          attributes: {
            "pgflows.step.name": step.name,
            "pgflows.pg_durable.instance_id": instanceId,
            "pgflows.step.key": resultKey
          }
        })
      )

    const call: StepCalls["call"] = (name, instanceId, resultKey, body) =>
      Effect.gen(function*() {
        const step = registry.get(name)
        if (step === undefined) {
          return yield* new UnknownStep({
            step: name,
            message: `no step named "${name}" is registered with this server (PgflowsServer.layer({ steps }))`
          })
        }
        const decoded = codec(step.input).decode(body)
        if (Result.isFailure(decoded)) {
          return yield* new StepInputInvalid({
            step: name,
            issues: decoded.failure,
            message: `the input of step "${name}" does not match its Schema: ${formatIssues(decoded.failure)}`
          })
        }
        const hash = Crypto.createHash("sha256").update(JSON.stringify(body ?? null)).digest("hex")
        const startedAt = yield* Clock.currentTimeMillis
        const waitMillis = Duration.toMillis(options.inProgressWait)
        let pause = 20
        while (true) {
          const token = `${owner}:${++claims}`
          if (yield* claim(instanceId, resultKey, name, hash, token)) {
            const fiber = yield* Effect.forkIn(execute(step, decoded.success, instanceId, resultKey, token), scope)
            return yield* answer(name, yield* Fiber.join(fiber))
          }
          const row = yield* read(instanceId, resultKey)
          if (row === undefined) continue
          if (row.step !== name || row.input_hash !== hash) {
            return yield* new ResultKeyConflict({
              instanceId,
              resultKey,
              message: `result key "${resultKey}" of instance "${instanceId}" belongs to a call of step "${row.step}"${
                row.step === name ? " with another input" : ""
              }: a result key names one call`
            })
          }
          if (row.status !== "running") return yield* answer(name, recorded(row))
          if ((yield* Clock.currentTimeMillis) - startedAt >= waitMillis) {
            return yield* new StepInProgress({
              instanceId,
              resultKey,
              message: `step "${name}" is still running this call in another request; ask again later`
            })
          }
          // A live claim: wait for its answer. An expired one: take the call over.
          if (row.live) {
            yield* Effect.sleep(Duration.millis(pause))
            pause = Math.min(pause * 2, 500)
          }
        }
      })

    return { call, steps: registry }
  })
