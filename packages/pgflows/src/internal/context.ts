/**
 * The service a running workflow sees: how its steps, sleeps and other durable operations reach the
 * replay engine. Definitions (`Step`, `Workflow`) only depend on this interface; the engine
 * (`internal/engine.ts`) implements it for each execution of a run.
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import type * as FlowQueue from "../FlowQueue.ts"
import type { Persisted } from "../JsonCodec.ts"

/** What the engine needs to know about a step to execute or replay it. */
export interface StepSpec {
  readonly name: string
  readonly input: Persisted
  readonly output: Persisted
  readonly error: Persisted
  readonly retry: Schedule.Schedule<unknown, any> | undefined
  readonly timeout: Duration.Duration | undefined
  readonly run: (input: any) => Effect.Effect<unknown, unknown, any>
}

/** What the engine needs to know about a child workflow. */
export interface ChildSpec {
  readonly name: string
  readonly version: number
  readonly input: Persisted
  readonly output: Persisted
  readonly error: Persisted
  readonly timeout: Duration.Duration | undefined
  /** The child's queue, and its concurrency key there (see `FlowQueue`). */
  readonly queue: FlowQueue.FlowQueue
  readonly concurrencyKey: ((input: any) => unknown) | undefined
}

/** How a child ended, as recorded in its parent's journal. */
export type ChildOutcome =
  | { readonly status: "completed"; readonly output: unknown }
  | { readonly status: "failed"; readonly error: unknown }
  | { readonly status: "cancelled" }

/** One execution of one run, shared by every branch of the workflow. */
export interface Execution {
  readonly runId: string
  readonly workflow: string
  /** Runs or replays a step at `key`. */
  readonly step: (spec: StepSpec, input: unknown, key: string) => Effect.Effect<unknown, unknown, any>
  /** Runs or replays a step whose effect commits in the same transaction as its journal entry. */
  readonly transaction: (spec: StepSpec, input: unknown, key: string) => Effect.Effect<unknown, unknown, any>
  /** A durable sleep at `key`. */
  readonly sleep: (duration: Duration.Duration, key: string) => Effect.Effect<void>
  /** A value computed once and replayed (time, random ids, race winners). */
  readonly record: <A, E, R>(
    name: string,
    key: string,
    schema: Persisted,
    compute: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /** Waits for a signal: its payload (still encoded), or `undefined` when the timeout passed. */
  readonly waitForSignal: (
    signal: string,
    timeout: Duration.Duration | undefined,
    key: string
  ) => Effect.Effect<{ readonly payload: unknown } | undefined>
  readonly setEvent: (event: string, value: unknown, key: string) => Effect.Effect<void>
  /** Starts a child run (idempotently); returns its id. */
  readonly startChild: (spec: ChildSpec, input: unknown, id: string | undefined, key: string) => Effect.Effect<string>
  /** Waits for a child run to end. */
  readonly awaitChild: (spec: ChildSpec, childId: string, key: string) => Effect.Effect<ChildOutcome>
  /**
   * Whether the run takes the new branch of patch `id` at `position` (without moving it); with
   * `deprecated`, the old branch is gone and a run that took it fails.
   */
  readonly patched: (id: string, position: Position, deprecated: boolean) => Effect.Effect<boolean>
  /** Registers an undo, run in reverse order if the workflow fails. */
  readonly compensate: (undo: Effect.Effect<unknown, unknown, any>) => Effect.Effect<void>
}

/**
 * The position of the running code in the workflow: a key prefix (empty for the body, a branch path
 * inside concurrent combinators) and a counter of the durable operations made at that level.
 */
export interface Position {
  readonly prefix: string
  counter: number
}

export class WorkflowContext extends Context.Service<WorkflowContext, {
  readonly execution: Execution
  readonly position: Position
}>()("pgflows/WorkflowContext") {}

/** The next key at the current position: `1`, `2`, ... or `3.0/1`, `3.0/2` inside branch 0 of key 3. */
export const nextKey = (position: Position): string => `${position.prefix}${++position.counter}`
