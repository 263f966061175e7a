/**
 * The replay engine: executes one claimed run of a workflow against its journal, and ends the
 * execution with one transition (completed, failed, suspended, released) or abandons it (lease lost,
 * cancelled, store unreachable).
 *
 * Durable operations never let the workflow swallow an engine decision: suspending, failing the run
 * for an engine error (non-determinism, decode errors, oversized payloads, dead steps) and stopping
 * (cancelled, lease lost) are recorded on the execution and then interrupt the workflow's fiber;
 * after the fiber ends, the recorded decision wins over whatever the workflow returned.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import type { PgflowsConfig } from "../PgflowsConfig.ts"
import {
  DecodeError,
  EncodeError,
  type EngineError,
  NonDeterminismError,
  PayloadTooLarge,
  RecoveryLimitExceeded,
  StepDefect,
  StepTimeoutError,
  type StoreError,
  WorkflowDefect
} from "../PgflowsError.ts"
import type * as Store from "../Store.ts"
import type * as Workflow from "../Workflow.ts"
import { codec } from "./codec.ts"
import { type Execution, type StepSpec, WorkflowContext } from "./context.ts"
import { decodeEngineFailure, encodeEngineFailure as engineEnvelope, type ErrorEnvelope } from "./failure.ts"
import { byteSize, hash } from "./json.ts"

/** Why an execution stopped without a transition of its own. */
export type StopReason = "cancelled" | "lease-lost" | "shutdown" | "store-unavailable"

/** How long a step attempt runs before its start is recorded (so a crash shows in `attempts`). */
export const markerDelay = Duration.millis(250)

/** A step attempt under way, for the runner to record when it lasts (see `markLongAttempts`). */
export interface Attempt {
  readonly key: string
  readonly name: string
  readonly inputHash: string
  readonly attempt: number
  readonly startedAt: number
  marked: boolean
}

const sleepName = "pgflows.sleep"

export interface EngineEnv {
  readonly store: Store.Store["Service"]
  readonly config: PgflowsConfig
  /** Services the workflows need, captured when the `Pgflows` layer was built. */
  readonly services: Context.Context<never>
}

/** Retries store writes that may succeed later (a restarting database) for about half a lease. */
const storeRetry = (config: PgflowsConfig): Schedule.Schedule<unknown, StoreError> =>
  Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")]).pipe(
    Schedule.upTo({ duration: Duration.millis(Duration.toMillis(config.lease) / 2) }),
    Schedule.setInputType<StoreError>(),
    Schedule.while(({ input }) => input.retryable)
  )

/**
 * One execution of one claimed run. Implements the `Execution` interface that steps and durable
 * operations call.
 */
export class RunExecution implements Execution {
  readonly runId: string
  readonly workflow: string
  readonly token: string
  readonly msgId: number
  private readonly journal: Map<string, Store.StepRecord>
  /** Store clock minus local clock, measured at the claim. */
  private readonly offset: number
  /** Set when the run parks: milliseconds to sleep, or `null` to wait until woken. */
  suspension: number | null | undefined = undefined
  /** Set when an engine error fails the run. */
  fatal: EngineError | undefined = undefined
  /** Set when the execution must stop without writing its end. */
  stopped: StopReason | undefined = undefined
  /** Step attempts under way, by key. */
  readonly attempts = new Map<string, Attempt>()
  private readonly input: unknown
  private readonly recoveries: number

  readonly env: EngineEnv
  readonly definition: Workflow.Any

  constructor(env: EngineEnv, definition: Workflow.Any, claimed: Store.ClaimedRun, localNow: number) {
    this.env = env
    this.definition = definition
    this.runId = claimed.run.id
    this.workflow = claimed.run.workflow
    this.token = claimed.token
    this.msgId = claimed.msgId
    this.journal = new Map(claimed.journal.map((entry) => [entry.key, entry]))
    this.offset = claimed.now - localNow
    this.input = claimed.run.input
    this.recoveries = claimed.run.recoveries
  }

  private body: Fiber.Fiber<unknown, unknown> | undefined = undefined

  /** Records why the execution stops (the first reason wins). */
  stop(reason: StopReason): void {
    if (this.stopped === undefined) this.stopped = reason
  }

  /** Stops the execution from outside (cancelled, lease lost, shutdown): interrupts the workflow body. */
  interrupt(reason: StopReason): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.stop(reason)
      return this.body === undefined ? Effect.void : Fiber.interrupt(this.body)
    })
  }

  private readonly now = Effect.map(Clock.currentTimeMillis, (local) => local + this.offset)

  private halt<A = never>(): Effect.Effect<A> {
    return Effect.interrupt as Effect.Effect<A>
  }

  private failRun<A = never>(error: EngineError): Effect.Effect<A> {
    if (this.fatal === undefined) this.fatal = error
    return this.halt()
  }

  private park<A = never>(wakeInMillis: number | null): Effect.Effect<A> {
    if (this.suspension === undefined) this.suspension = wakeInMillis
    else if (wakeInMillis !== null) {
      this.suspension = this.suspension === null ? wakeInMillis : Math.min(this.suspension, wakeInMillis)
    }
    return this.halt()
  }

  /**
   * Records the attempts that have run for longer than `markerDelay` (once each), so that an attempt
   * cut short by a crash still counts in `attempts`. The runner calls this periodically: steps that
   * end sooner cost nothing.
   */
  markLongAttempts(now: number): Effect.Effect<void> {
    const due = [...this.attempts.values()].filter((a) =>
      !a.marked && now - a.startedAt >= Duration.toMillis(markerDelay)
    )
    for (const attempt of due) attempt.marked = true
    return Effect.forEach(due, (a) =>
      this.env.store.checkpoint({
        runId: this.runId,
        token: this.token,
        key: a.key,
        name: a.name,
        inputHash: a.inputHash,
        status: "running",
        output: null,
        error: null,
        attempts: a.attempt
      }), { concurrency: "unbounded", discard: true }).pipe(Effect.ignore)
  }

  /** Writes a journal entry; on a lost lease or a store that stays down, stops the execution. */
  write(entry: Omit<Store.Checkpoint, "runId" | "token">): Effect.Effect<void> {
    return this.env.store.checkpoint({ ...entry, runId: this.runId, token: this.token }).pipe(
      Effect.retry(storeRetry(this.env.config)),
      Effect.matchEffect({
        onFailure: (error) =>
          Effect.andThen(
            Effect.logWarning(`pgflows: cannot write the journal of run ${this.runId}: ${error.message}`),
            Effect.suspend(() => {
              this.stop("store-unavailable")
              return this.halt()
            })
          ),
        onSuccess: (result) => {
          if (result === "ok") return Effect.void
          this.stop("lease-lost")
          return this.halt()
        }
      })
    )
  }

  /** Encodes a value for storage, failing the run when it does not fit its Schema or the size limit. */
  private encode(schema: StepSpec["output"], value: unknown, subject: string): Effect.Effect<unknown> {
    const encoded = codec(schema).encode(value)
    if (Result.isFailure(encoded)) return this.failRun(new EncodeError({ subject, issues: encoded.failure }))
    const bytes = byteSize(encoded.success)
    if (bytes > this.env.config.maxPayloadBytes) {
      return this.failRun(new PayloadTooLarge({ subject, bytes, limit: this.env.config.maxPayloadBytes }))
    }
    return Effect.succeed(encoded.success)
  }

  private checkReplay(key: string, entry: Store.StepRecord, name: string, inputHash: string): Effect.Effect<void> {
    if (entry.name === name && entry.inputHash === inputHash) return Effect.void
    return this.failRun(
      new NonDeterminismError({
        key,
        journal: { name: entry.name, inputHash: entry.inputHash },
        replay: { name, inputHash }
      })
    )
  }

  /** A stored step failure, as the step's typed error (or the run's failure for engine errors). */
  private replayFailure(spec: StepSpec, key: string, stored: unknown): Effect.Effect<never, unknown> {
    const envelope = stored as ErrorEnvelope | null
    if (envelope?.source === "step") {
      const decoded = codec(spec.error).decode(envelope.error)
      return Result.isSuccess(decoded)
        ? Effect.fail(decoded.success)
        : this.failRun(
          new DecodeError({ subject: `error of step "${spec.name}" (key ${key})`, issues: decoded.failure })
        )
    }
    const engine = decodeEngineFailure(envelope?.error)
    if (engine instanceof StepTimeoutError) return Effect.fail(engine)
    if (engine instanceof StepDefect) return this.failRun(engine)
    return this.failRun(
      new DecodeError({
        subject: `error of step "${spec.name}" (key ${key})`,
        issues: [{ path: "", message: `unrecognised stored error ${JSON.stringify(stored)}` }]
      })
    )
  }

  readonly step = (spec: StepSpec, input: unknown, key: string): Effect.Effect<unknown, unknown, any> =>
    Effect.gen({ self: this }, function*() {
      const encodedInput = yield* this.encode(spec.input, input, `input of step "${spec.name}" (key ${key})`)
      const inputHash = hash(encodedInput)
      const entry = this.journal.get(key)
      let attempts = 0
      let failures = 0
      let lastError: unknown = undefined
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, spec.name, inputHash)
        if (entry.status === "completed") {
          const decoded = codec(spec.output).decode(entry.output)
          if (Result.isSuccess(decoded)) return decoded.success
          return yield* this.failRun(
            new DecodeError({ subject: `output of step "${spec.name}" (key ${key})`, issues: decoded.failure })
          )
        }
        if (entry.status === "failed") return yield* this.replayFailure(spec, key, entry.error)
        // An attempt was running when the last worker stopped, or a retry was parked.
        attempts = entry.attempts
        failures = entry.status === "retrying" ? entry.attempts : entry.attempts - 1
        if (entry.status === "retrying") {
          lastError = yield* Effect.exit(this.replayFailure(spec, key, entry.error)).pipe(
            Effect.map((exit) => Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined),
            Effect.map((option) => option?._tag === "Some" ? option.value : undefined)
          )
        }
      }
      return yield* this.execute(spec, input, key, inputHash, attempts, failures, lastError)
    })

  private execute(
    spec: StepSpec,
    input: unknown,
    key: string,
    inputHash: string,
    attemptsSoFar: number,
    failures: number,
    lastError: unknown
  ): Effect.Effect<unknown, unknown, any> {
    return Effect.gen({ self: this }, function*() {
      const schedule = spec.retry ?? this.definition.stepDefaults.retry
      const decide = schedule === undefined ? undefined : yield* Schedule.toStep(schedule)
      if (decide !== undefined) {
        for (let i = 0; i < failures; i++) yield* Effect.exit(decide(yield* this.now, lastError))
      }
      const attemptEffect = spec.timeout === undefined ? spec.run(input) : Effect.timeoutOrElse(spec.run(input), {
        duration: spec.timeout,
        orElse: () =>
          Effect.fail(new StepTimeoutError({ step: spec.name, timeoutMillis: Duration.toMillis(spec.timeout!) }))
      })
      for (let attempt = attemptsSoFar + 1;; attempt++) {
        const marker = yield* Effect.forkChild(
          Effect.andThen(
            Effect.sleep(markerDelay),
            this.write({
              key,
              name: spec.name,
              inputHash,
              status: "running",
              output: null,
              error: null,
              attempts: attempt
            })
          )
        )
        const exit = yield* Effect.exit(attemptEffect)
        yield* Fiber.interrupt(marker)
        if (Exit.isSuccess(exit)) {
          const output = yield* this.encode(spec.output, exit.value, `output of step "${spec.name}" (key ${key})`)
          yield* this.write({
            key,
            name: spec.name,
            inputHash,
            status: "completed",
            output,
            error: null,
            attempts: attempt
          })
          return exit.value
        }
        const failure = Cause.findErrorOption(exit.cause)
        if (failure._tag === "None") {
          if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
          const defect = new StepDefect({ step: spec.name, key, defect: Cause.pretty(exit.cause) })
          yield* this.write({
            key,
            name: spec.name,
            inputHash,
            status: "failed",
            output: null,
            error: engineEnvelope(defect),
            attempts: attempt
          })
          return yield* this.failRun(defect)
        }
        const error = failure.value
        const stored = error instanceof StepTimeoutError
          ? engineEnvelope(error)
          : {
            source: "step" as const,
            error: yield* this.encode(spec.error, error, `error of step "${spec.name}" (key ${key})`)
          }
        const decision = decide === undefined ? undefined : yield* Effect.exit(decide(yield* this.now, error))
        if (decision === undefined || Exit.isFailure(decision)) {
          yield* this.write({
            key,
            name: spec.name,
            inputHash,
            status: "failed",
            output: null,
            error: stored,
            attempts: attempt
          })
          return yield* Effect.fail(error)
        }
        const delay = Duration.toMillis(decision.value[1])
        if (delay > Duration.toMillis(this.env.config.parkThreshold)) {
          yield* this.write({
            key,
            name: spec.name,
            inputHash,
            status: "retrying",
            output: null,
            error: stored,
            attempts: attempt,
            wakeInMillis: delay
          })
          return yield* this.park(delay)
        }
        if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
      }
    })
  }

  readonly sleep = (duration: Duration.Duration, key: string): Effect.Effect<void> =>
    Effect.gen({ self: this }, function*() {
      const millis = Duration.toMillis(duration)
      const inputHash = hash({ millis })
      const entry = this.journal.get(key)
      const threshold = Duration.toMillis(this.env.config.parkThreshold)
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, sleepName, inputHash)
        if (entry.status === "completed") return
        const remaining = (entry.wakeAt ?? 0) - (yield* this.now)
        if (remaining > threshold) return yield* this.park(remaining)
        if (remaining > 0) yield* Effect.sleep(Duration.millis(remaining))
        yield* this.write({
          key,
          name: sleepName,
          inputHash,
          status: "completed",
          output: null,
          error: null,
          attempts: 1
        })
        return
      }
      if (millis > threshold) {
        yield* this.write({
          key,
          name: sleepName,
          inputHash,
          status: "waiting",
          output: null,
          error: null,
          attempts: 1,
          wakeInMillis: millis
        })
        return yield* this.park(millis)
      }
      if (millis > 0) yield* Effect.sleep(duration)
      yield* this.write({
        key,
        name: sleepName,
        inputHash,
        status: "completed",
        output: null,
        error: null,
        attempts: 1
      })
    })

  /**
   * Runs the workflow body to its end and writes the transition that matches. Returns how the
   * execution ended.
   */
  readonly run: Effect.Effect<Outcome> = Effect.gen({ self: this }, function*() {
    if (this.recoveries > this.env.config.maxRecoveries) {
      return yield* this.end({
        kind: "fail",
        error: engineEnvelope(
          new RecoveryLimitExceeded({ recoveries: this.recoveries, limit: this.env.config.maxRecoveries })
        )
      })
    }
    const decoded = codec(this.definition.input).decode(this.input)
    if (Result.isFailure(decoded)) {
      return yield* this.end({
        kind: "fail",
        error: engineEnvelope(
          new DecodeError({ subject: `input of workflow "${this.workflow}"`, issues: decoded.failure })
        )
      })
    }
    // The workflow's own services were checked by the types of `Pgflows.layer` and captured there.
    const body = this.definition.run(decoded.success) as Effect.Effect<unknown, unknown, WorkflowContext>
    this.body = yield* body.pipe(
      Effect.provideService(WorkflowContext, { execution: this, position: { prefix: "", counter: 0 } }),
      Effect.provideContext(this.env.services),
      Effect.forkChild({ startImmediately: true })
    )
    if (this.stopped !== undefined) yield* Fiber.interrupt(this.body)
    const exit = yield* Fiber.await(this.body)
    if (this.stopped !== undefined) {
      return this.stopped === "shutdown"
        ? yield* this.end({ kind: "release" })
        : { _tag: "Stopped", reason: this.stopped }
    }
    if (this.fatal !== undefined) return yield* this.end({ kind: "fail", error: engineEnvelope(this.fatal) })
    if (this.suspension !== undefined) return yield* this.end({ kind: "suspend", wakeInMillis: this.suspension })
    if (Exit.isSuccess(exit)) {
      const output = yield* Effect.exit(
        this.encode(this.definition.output, exit.value, `output of workflow "${this.workflow}"`)
      )
      if (Exit.isSuccess(output)) return yield* this.end({ kind: "complete", output: output.value })
      return yield* this.end({ kind: "fail", error: engineEnvelope(this.fatal!) })
    }
    const failure = Cause.findErrorOption(exit.cause)
    if (failure._tag === "Some") {
      const encoded = codec(this.definition.error).encode(failure.value)
      const error: ErrorEnvelope = Result.isSuccess(encoded)
        ? { source: "workflow", error: encoded.success }
        : engineEnvelope(new EncodeError({ subject: `error of workflow "${this.workflow}"`, issues: encoded.failure }))
      return yield* this.end({ kind: "fail", error })
    }
    return yield* this.end({
      kind: "fail",
      error: engineEnvelope(new WorkflowDefect({ defect: Cause.pretty(exit.cause) }))
    })
  })

  private end(
    transition:
      | { readonly kind: "complete"; readonly output: unknown }
      | { readonly kind: "fail"; readonly error: unknown }
      | { readonly kind: "suspend"; readonly wakeInMillis: number | null }
      | { readonly kind: "release" }
  ): Effect.Effect<Outcome> {
    return this.env.store.transition({ ...transition, runId: this.runId, token: this.token, msgId: this.msgId }).pipe(
      Effect.retry(storeRetry(this.env.config)),
      Effect.map((result): Outcome => {
        if (result !== "ok") return { _tag: "Stopped", reason: "lease-lost" }
        switch (transition.kind) {
          case "complete":
            return { _tag: "Ended", kind: "complete", output: transition.output }
          case "fail":
            return { _tag: "Ended", kind: "fail", error: transition.error }
          default:
            return { _tag: "Ended", kind: transition.kind }
        }
      }),
      Effect.catch((error) =>
        Effect.as(
          Effect.logWarning(`pgflows: cannot end run ${this.runId} (${transition.kind}): ${error.message}`),
          { _tag: "Stopped", reason: "store-unavailable" } as Outcome
        )
      )
    )
  }
}

/** How an execution ended. */
export type Outcome =
  | { readonly _tag: "Ended"; readonly kind: "complete"; readonly output: unknown }
  | { readonly _tag: "Ended"; readonly kind: "fail"; readonly error: unknown }
  | { readonly _tag: "Ended"; readonly kind: "suspend" | "release" }
  | { readonly _tag: "Stopped"; readonly reason: StopReason }
