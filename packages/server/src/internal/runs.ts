/**
 * The workflow REST API's work, on the public client of pgflows (`Pgflows`) and of pg_durable
 * (`PgDurableClient`): JSON in, decoded with the workflows' Schemas; JSON out, encoded with them;
 * pgflows' errors mapped to the server's. Every value reaches SQL through those clients, as bound
 * parameters.
 */
import type * as PgDurableClient from "@pgflows/pg-durable/PgDurableClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { codec, formatIssues } from "pgflows/JsonCodec"
import type * as Pgflows from "pgflows/Pgflows"
import * as PgflowsError from "pgflows/PgflowsError"
import type * as Run from "pgflows/Run"
import type * as Workflow from "pgflows/Workflow"
import type * as PgflowsApi from "../PgflowsApi.ts"
import {
  BadRequest,
  EventNotFound,
  InstanceNotFound,
  InvalidFork,
  InvalidInput,
  PayloadTooLarge,
  RunEnded,
  RunIdConflict,
  RunNotFound,
  RunNotRestartable,
  ServiceUnavailable,
  SignalNotDelivered,
  UnknownVersion,
  UnstorableValue,
  WorkflowNotFound
} from "../ServerError.ts"

type Client = Pgflows.Pgflows["Service"]

const iso = (date: Date | undefined): string | null => date === undefined ? null : date.toISOString()

/** The store failed: the cause to the log, a generic answer to the caller. */
const unavailable = (operation: string) => (error: PgflowsError.StoreError) =>
  Effect.andThen(
    Effect.logError(`pgflows server: ${operation} failed`, error),
    Effect.fail(
      new ServiceUnavailable({ message: `the database is not available (${operation}); try again`, retryable: true })
    )
  )

const notFound = (runId: string) => new RunNotFound({ runId, message: `no run with id "${runId}"` })

/** A value as JSON with a message, when it is an error that has one. */
const withMessage = (encoded: unknown, error: unknown): unknown => {
  const message = (error as { message?: unknown } | undefined)?.message
  return typeof encoded === "object" && encoded !== null && !Array.isArray(encoded) && typeof message === "string" &&
      !("message" in encoded)
    ? { ...encoded, message }
    : encoded
}

/** A run's error as JSON: the workflow's own (its error Schema), one of pgflows', or as stored. */
const errorJson = (workflow: Workflow.Any | undefined, error: unknown): unknown => {
  if (workflow !== undefined) {
    const own = codec(workflow.error).encode(error)
    if (Result.isSuccess(own) && own.success !== undefined) return withMessage(own.success, error)
  }
  if (PgflowsError.isEngineError(error)) {
    const engine = codec(PgflowsError.EngineError).encode(error)
    if (Result.isSuccess(engine)) return withMessage(engine.success, error)
  }
  return error ?? null
}

const outputJson = (workflow: Workflow.Any | undefined, output: unknown): unknown => {
  if (workflow === undefined) return output ?? null
  const encoded = codec(workflow.output).encode(output)
  return Result.isSuccess(encoded) ? encoded.success ?? null : output ?? null
}

export const view = (client: Client, info: Run.RunInfo): typeof PgflowsApi.RunView.Type => {
  const workflow = client.workflows.get(info.workflow)
  return {
    id: info.id,
    workflow: info.workflow,
    status: info.status,
    input: info.input ?? null,
    output: Option.match(info.output, { onNone: () => null, onSome: (output) => outputJson(workflow, output) }),
    error: Option.match(info.error, { onNone: () => null, onSome: (error) => errorJson(workflow, error) }),
    executions: info.executions,
    recoveries: info.recoveries,
    parentId: info.parentId ?? null,
    createdAt: info.createdAt.toISOString(),
    updatedAt: info.updatedAt.toISOString(),
    startedAt: iso(info.startedAt),
    completedAt: iso(info.completedAt),
    wakeAt: iso(info.wakeAt),
    waitingFor: info.waitingFor ?? null,
    steps: info.steps.map((step) => ({
      key: step.key,
      name: step.name,
      status: step.status,
      attempts: step.attempts,
      output: step.output ?? null,
      error: step.error ?? null,
      startedAt: iso(step.startedAt),
      completedAt: iso(step.completedAt),
      wakeAt: iso(step.wakeAt)
    }))
  }
}

export const start = (client: Client, request: typeof PgflowsApi.StartRequest.Type) =>
  Effect.gen(function*() {
    const workflow = client.workflows.get(request.workflow)
    if (workflow === undefined) {
      return yield* new WorkflowNotFound({
        workflow: request.workflow,
        message: `no workflow named "${request.workflow}" is registered with this server's Pgflows layer`
      })
    }
    const decoded = codec(workflow.input).decode(request.input)
    if (Result.isFailure(decoded)) {
      return yield* new InvalidInput({
        workflow: workflow.name,
        issues: decoded.failure,
        message: `invalid input for workflow "${workflow.name}": ${formatIssues(decoded.failure)}`
      })
    }
    const id = yield* client.start(workflow, decoded.success, {
      id: request.id,
      delay: request.delayMillis === undefined ? undefined : Duration.millis(request.delayMillis)
    }).pipe(
      Effect.catchTags({
        InvalidInput: (error) =>
          Effect.fail(
            new InvalidInput({ workflow: error.workflow, issues: error.issues, message: error.message })
          ),
        // The workflow's concurrency key refused this input: an invalid input of this request.
        InvalidConcurrencyKey: (error) =>
          Effect.fail(
            new InvalidInput({
              workflow: error.workflow,
              issues: [{ path: "", message: error.message }],
              message: error.message
            })
          ),
        PayloadTooLarge: (error) =>
          Effect.fail(new PayloadTooLarge({ bytes: error.bytes, limit: error.limit, message: error.message })),
        RunIdConflict: (error) =>
          Effect.fail(
            new RunIdConflict({
              runId: error.runId,
              workflow: error.workflow,
              existingWorkflow: error.existingWorkflow,
              message: error.message
            })
          ),
        // Without a version in the request the client takes the newest it registers: no unknown one.
        UnknownVersion: (error) =>
          Effect.fail(new WorkflowNotFound({ workflow: error.workflow, message: error.message })),
        StoreError: unavailable("starting a run")
      })
    )
    return { id, workflow: workflow.name }
  })

export const status = (client: Client, id: string) =>
  client.status(id).pipe(
    Effect.map((info) => view(client, info)),
    Effect.catchTags({
      RunNotFound: () => Effect.fail(notFound(id)),
      StoreError: unavailable("reading a run")
    })
  )

export const list = (client: Client, query: typeof PgflowsApi.ListQuery.Type) =>
  client.list(query).pipe(
    Effect.map((page) => ({
      runs: page.runs.map((run) => ({
        id: run.id,
        workflow: run.workflow,
        status: run.status,
        executions: run.executions,
        createdAt: run.createdAt.toISOString(),
        updatedAt: run.updatedAt.toISOString(),
        completedAt: iso(run.completedAt)
      })),
      nextCursor: page.nextCursor ?? null
    })),
    Effect.catchTags({
      // A cursor that is not one the server handed out.
      InvalidFilter: (error) => Effect.fail(new BadRequest({ message: error.message, issues: [] })),
      StoreError: unavailable("listing runs")
    })
  )

export const cancel = (client: Client, id: string) =>
  client.cancel(id).pipe(
    Effect.map((outcome) => ({ runId: id, outcome })),
    Effect.catchTags({
      RunNotFound: () => Effect.fail(notFound(id)),
      StoreError: unavailable("cancelling a run")
    })
  )

export const restart = (client: Client, id: string, operation: "retry" | "resume") =>
  client[operation](id).pipe(
    Effect.as({ runId: id }),
    Effect.catchTags({
      RunNotFound: () => Effect.fail(notFound(id)),
      RunNotRestartable: (error) =>
        Effect.fail(new RunNotRestartable({ runId: id, status: error.status, message: error.message })),
      StoreError: unavailable(`${operation === "retry" ? "retrying" : "resuming"} a run`)
    })
  )

export const signal = (client: Client, id: string, name: string, payload: unknown) =>
  client.signal(id, name, payload).pipe(
    Effect.as({ runId: id, signal: name }),
    Effect.catchTags({
      RunNotFound: () => Effect.fail(notFound(id)),
      RunEnded: (error) => Effect.fail(new RunEnded({ runId: id, message: error.message })),
      PayloadTooLarge: (error) =>
        Effect.fail(new PayloadTooLarge({ bytes: error.bytes, limit: error.limit, message: error.message })),
      UnstorableValue: (error) => Effect.fail(new UnstorableValue({ path: error.path, message: error.message })),
      StoreError: unavailable("sending a signal")
    })
  )

export const event = (client: Client, id: string, key: string, timeoutMillis: number | undefined) =>
  client.getEvent(id, key, { timeout: Duration.millis(timeoutMillis ?? 0) }).pipe(
    Effect.catchTags({
      RunNotFound: () => Effect.fail(notFound(id)),
      StoreError: unavailable("reading an event")
    }),
    Effect.flatMap(Option.match({
      onNone: () =>
        Effect.fail(
          new EventNotFound({ runId: id, key, message: `run "${id}" has published no event under "${key}"` })
        ),
      onSome: (value) => Effect.succeed({ runId: id, key, value: value ?? null })
    }))
  )

export const signalInstance = (
  client: Option.Option<PgDurableClient.PgDurableClient["Service"]>,
  id: string,
  name: string,
  payload: unknown,
  timeoutMillis: number | undefined
) =>
  Effect.gen(function*() {
    if (Option.isNone(client)) {
      return yield* new ServiceUnavailable({
        message: "this server has no pg_durable client (provide PgDurableClient.layer to PgflowsServer.layer)",
        retryable: false
      })
    }
    const attempts = yield* client.value.signal(id, name, payload, {
      timeout: Duration.millis(timeoutMillis ?? 30_000)
    }).pipe(
      Effect.catchTags({
        InstanceNotFound: () =>
          Effect.fail(
            new InstanceNotFound({ instanceId: id, message: `no pg_durable instance "${id}" is visible to the server` })
          ),
        SignalNotDelivered: (error) =>
          Effect.fail(
            new SignalNotDelivered({ instanceId: id, signal: name, attempts: error.attempts, message: error.message })
          ),
        PgDurableUnavailable: (error) =>
          Effect.andThen(
            Effect.logWarning(`pgflows server: ${error.message}`),
            Effect.fail(
              new ServiceUnavailable({
                message: "pg_durable is not installed in the server's database",
                retryable: false
              })
            )
          ),
        PgDurableError: (error) =>
          Effect.andThen(
            Effect.logError("pgflows server: signalling a pg_durable instance failed", error),
            Effect.fail(
              new ServiceUnavailable({
                message: "pg_durable did not take the signal; try again",
                retryable: error.retryable
              })
            )
          )
      })
    )
    return { instanceId: id, signal: name, attempts }
  })

export const fork = (client: Client, id: string, request: typeof PgflowsApi.ForkRequest.Type) =>
  Effect.gen(function*() {
    const options = { fromStep: request.fromStep, version: request.version }
    const done = request.dryRun === true
      ? yield* Effect.map(client.planFork(id, options), (plan) => ({ ...plan, forkId: null }))
      : yield* Effect.map(
        client.fork(id, { ...options, id: request.id }),
        (forked) => ({ ...forked, forkId: forked.id })
      )
    return {
      runId: id,
      forkId: done.forkId,
      dryRun: request.dryRun === true,
      workflow: done.workflow,
      version: done.version,
      fromKey: done.fromKey,
      kept: done.kept,
      rerun: done.rerun,
      repeatedSideEffects: done.repeatedSideEffects
    }
  }).pipe(
    Effect.catchTags({
      RunNotFound: () => Effect.fail(notFound(id)),
      InvalidFork: (error) =>
        Effect.fail(
          new InvalidFork({ runId: id, fromStep: error.fromStep, reason: error.reason, message: error.message })
        ),
      UnknownVersion: (error) =>
        Effect.fail(
          new UnknownVersion({
            workflow: error.workflow,
            version: error.version,
            known: error.known,
            message: error.message
          })
        ),
      RunIdConflict: (error) =>
        Effect.fail(
          new RunIdConflict({
            runId: error.runId,
            workflow: error.workflow,
            existingWorkflow: error.existingWorkflow,
            message: error.message
          })
        ),
      StoreError: unavailable("forking a run")
    })
  )
