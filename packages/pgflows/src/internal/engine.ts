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
import * as Semaphore from "effect/Semaphore"
import * as Tracer from "effect/Tracer"
import { codec, type Persisted } from "../JsonCodec.ts"
import type { PgflowsConfig } from "../PgflowsConfig.ts"
import {
  DecodeError,
  EncodeError,
  type EngineError,
  isEngineError,
  NonDeterminismError,
  PayloadTooLarge,
  RecoveryLimitExceeded,
  StepDefect,
  StepTimeoutError,
  StoreError as StoreErrorClass,
  WorkflowDefect,
  WorkflowTimeout
} from "../PgflowsError.ts"
import type * as Plugin from "../Plugin.ts"
import type * as Store from "../Store.ts"
import type * as Workflow from "../Workflow.ts"
import { type ChildOutcome, type ChildSpec, type Execution, type StepSpec, WorkflowContext } from "./context.ts"
import { decodeEngineFailure, encodeEngineFailure as engineEnvelope, type ErrorEnvelope } from "./failure.ts"
import { byteSize, hash } from "./json.ts"
import type { Plugins } from "./plugins.ts"
import { isTraceContext, linkTo, traceKey, traceName } from "./telemetry.ts"

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

/**
 * How long the checkpoint of a completed step may be held back to share a commit with what follows
 * (see `RunExecution.hold`).
 */
const holdLimit = Duration.millis(2)

type Entry = Omit<Store.Checkpoint, "runId" | "token">

export interface EngineEnv {
  readonly store: Store.Store["Service"]
  readonly config: PgflowsConfig
  /** Services the workflows need, captured when the `Pgflows` layer was built. */
  readonly services: Context.Context<never>
  /** The registered plugins, or `undefined` when there are none. */
  readonly plugins: Plugins | undefined
  /** The tracer of pgflows' spans when telemetry is on, else `undefined`. */
  readonly tracer: Tracer.Tracer | undefined
}

/** Retries store writes that may succeed later (a restarting database) for about half a lease. */
const storeRetry = (config: PgflowsConfig): Schedule.Schedule<unknown, StoreErrorClass> =>
  Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")]).pipe(
    Schedule.upTo({ duration: Duration.millis(Duration.toMillis(config.lease) / 2) }),
    Schedule.setInputType<StoreErrorClass>(),
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
  /** The run's `events` when it was claimed (see `Store.Transition` `suspend`). */
  private readonly events: number
  /** The store-clock time past which the run fails with `WorkflowTimeout`. */
  readonly deadlineAt: number | null
  /** Checkpoints of completed steps held back (see `hold`). */
  private held: Array<Entry> = []
  /** Flushes of held checkpoints under way. */
  private flushing = 0
  private flushTimer = false
  /** Orders the writing of held checkpoints before what follows them. */
  private readonly writes = Semaphore.makeUnsafe(1)
  /** Undos registered by `Workflow.withCompensation`, in the order their steps completed. */
  private readonly compensations: Array<Effect.Effect<unknown, unknown, any>> = []

  readonly env: EngineEnv
  readonly definition: Workflow.Any
  /** The span context of the code that started the run (telemetry). */
  private readonly caller: Store.TraceContext | null
  /** Whether an earlier execution of the run happened (for plugins and spans). */
  private readonly resumed: boolean
  /** The run's input, decoded (for plugins). */
  private decodedInput: unknown = undefined
  /** The workflow's output when it completed (for plugins). */
  private outputValue: unknown = undefined
  /** The typed error the run failed with (for plugins and spans). */
  private failure: unknown = undefined

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
    this.events = claimed.run.events
    this.deadlineAt = claimed.run.deadlineAt
    this.resumed = claimed.run.executions > 1 || claimed.journal.length > 0
    this.caller = claimed.run.trace
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

  /**
   * Holds back the checkpoint of a completed step instead of committing it at once: it is written
   * before the next durable operation starts (a step attempt, a sleep, a signal wait, ...), or with
   * the end of the execution in the same commit (a workflow's last step and its completion cost one
   * commit, not two), or after `holdLimit` when neither comes (concurrent branches). Nothing that
   * follows the step becomes durable before its checkpoint, so a crash before the write has the
   * effect a crash before the commit always had: the step runs again.
   */
  private hold(entry: Entry): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.held.push(entry)
      if (this.flushTimer) return Effect.void
      this.flushTimer = true
      return Effect.asVoid(Effect.forkDetach(Effect.andThen(
        Effect.sleep(holdLimit),
        Effect.suspend(() => {
          this.flushTimer = false
          return this.flush
        })
      )))
    })
  }

  /** Writes the held checkpoints, and waits for those being written. */
  private readonly flush: Effect.Effect<void> = Effect.suspend(() => {
    if (this.held.length === 0 && this.flushing === 0) return Effect.void
    return this.writes.withPermit(Effect.suspend(() => {
      if (this.held.length === 0) return Effect.void
      const entries = this.held.splice(0)
      this.flushing++
      // Together, so that concurrent branches' checkpoints share a commit (group commit).
      return Effect.forEach(entries, (entry) => this.write(entry), { concurrency: "unbounded", discard: true }).pipe(
        Effect.ensuring(Effect.sync(() => this.flushing--))
      )
    }))
  })

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
    this.runStep(spec, input, key, false)

  readonly transaction = (spec: StepSpec, input: unknown, key: string): Effect.Effect<unknown, unknown, any> =>
    this.runStep(spec, input, key, true)

  /**
   * One attempt of a transaction step: the step's effect and its completed journal entry commit in
   * one database transaction. Its value comes back decoded from what was stored.
   */
  private commitAttempt(
    spec: StepSpec,
    key: string,
    inputHash: string,
    attempt: number,
    effect: Effect.Effect<unknown, unknown, any>
  ): Effect.Effect<unknown, unknown, any> {
    return Effect.gen({ self: this }, function*() {
      const result = yield* this.env.store.checkpointWith(
        (output: unknown): Store.Checkpoint => ({
          runId: this.runId,
          token: this.token,
          key,
          name: spec.name,
          inputHash,
          status: "completed",
          output,
          error: null,
          attempts: attempt
        }),
        Effect.flatMap(effect, (value) => this.encode(spec.output, value, `output of step "${spec.name}" (key ${key})`))
      ).pipe(
        Effect.catchIf(
          (error): error is StoreErrorClass => error instanceof StoreErrorClass,
          (error) =>
            Effect.andThen(
              Effect.logWarning(`pgflows: cannot commit transaction step of run ${this.runId}: ${error.message}`),
              Effect.suspend(() => {
                this.stop("store-unavailable")
                return this.halt()
              })
            )
        )
      )
      if (result === "lease-lost") {
        this.stop("lease-lost")
        return yield* this.halt()
      }
      const decoded = codec(spec.output).decode(result)
      return Result.isSuccess(decoded) ? decoded.success : result
    })
  }

  private runStep(
    spec: StepSpec,
    input: unknown,
    key: string,
    transactional: boolean
  ): Effect.Effect<unknown, unknown, any> {
    return Effect.gen({ self: this }, function*() {
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
      return yield* this.execute(spec, input, key, inputHash, attempts, failures, lastError, transactional)
    })
  }

  private execute(
    spec: StepSpec,
    input: unknown,
    key: string,
    inputHash: string,
    attemptsSoFar: number,
    failures: number,
    lastError: unknown,
    transactional: boolean
  ): Effect.Effect<unknown, unknown, any> {
    return Effect.gen({ self: this }, function*() {
      yield* this.flush
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
      const { plugins, tracer } = this.env
      for (let attempt = attemptsSoFar + 1;; attempt++) {
        const startedAt = yield* Clock.currentTimeMillis
        this.attempts.set(key, { key, name: spec.name, inputHash, attempt, startedAt, marked: false })
        let attemptRun = transactional
          ? this.commitAttempt(spec, key, inputHash, attempt, attemptEffect)
          : attemptEffect
        const event: Plugin.StepEvent | undefined = plugins === undefined && tracer === undefined
          ? undefined
          : { runId: this.runId, workflow: this.workflow, step: spec.name, key, attempt, input }
        if (plugins !== undefined) {
          yield* plugins.fire("beforeStep", event!)
          attemptRun = plugins.aroundStep(event!, attemptRun)
        }
        if (tracer !== undefined) attemptRun = this.stepSpan(event!, attemptRun)
        const exit = yield* Effect.exit(attemptRun)
        this.attempts.delete(key)
        const observe = plugins === undefined ? undefined : Effect.map(Clock.currentTimeMillis, (now) => ({
          ...event!,
          durationMillis: now - startedAt
        }))
        if (Exit.isSuccess(exit)) {
          if (!transactional) {
            const output = yield* this.encode(spec.output, exit.value, `output of step "${spec.name}" (key ${key})`)
            yield* this.hold({
              key,
              name: spec.name,
              inputHash,
              status: "completed",
              output,
              error: null,
              attempts: attempt
            })
          }
          if (observe !== undefined) yield* plugins!.fire("afterStep", { ...(yield* observe), output: exit.value })
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
          if (observe !== undefined) {
            yield* plugins!.fire("onStepError", { ...(yield* observe), error: defect, final: true })
          }
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
        const final = decision === undefined || Exit.isFailure(decision)
        if (observe !== undefined) yield* plugins!.fire("onStepError", { ...(yield* observe), error, final })
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
      yield* this.flush
      const threshold = Duration.toMillis(this.env.config.parkThreshold)
      const mark = (status: "waiting" | "completed", wakeInMillis?: number) =>
        this.write({
          key,
          name: sleepName,
          inputHash,
          status,
          output: null,
          error: null,
          attempts: 1,
          ...(wakeInMillis === undefined ? {} : { wakeInMillis })
        })
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, sleepName, inputHash)
        if (entry.status === "completed") return
        const remaining = (entry.wakeAt ?? 0) - (yield* this.now)
        if (remaining > threshold) return yield* this.park(remaining)
        if (remaining > 0) yield* Effect.sleep(Duration.millis(remaining))
        return yield* mark("completed")
      }
      if (millis > threshold) {
        yield* mark("waiting", millis)
        return yield* this.park(millis)
      }
      if (millis > 0) yield* Effect.sleep(duration)
      yield* mark("completed")
    })

  readonly record = <A, E, R>(
    name: string,
    key: string,
    schema: Persisted,
    compute: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> =>
    Effect.gen({ self: this }, function*() {
      const inputHash = hash({ record: name })
      const entry = this.journal.get(key)
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, name, inputHash)
        const decoded = codec(schema).decode(entry.output)
        if (Result.isSuccess(decoded)) return decoded.success as A
        return yield* this.failRun(new DecodeError({ subject: `${name} (key ${key})`, issues: decoded.failure }))
      }
      yield* this.flush
      const value = yield* compute
      const output = yield* this.encode(schema, value, `${name} (key ${key})`)
      yield* this.write({ key, name, inputHash, status: "completed", output, error: null, attempts: 1 })
      return value
    })

  readonly waitForSignal = (
    signal: string,
    timeout: Duration.Duration | undefined,
    key: string
  ): Effect.Effect<{ readonly payload: unknown } | undefined> =>
    Effect.gen({ self: this }, function*() {
      const name = "pgflows.signal"
      const timeoutMillis = timeout === undefined ? null : Duration.toMillis(timeout)
      const inputHash = hash({ signal, timeoutMillis })
      const entry = this.journal.get(key)
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, name, inputHash)
        if (entry.status === "completed") {
          const output = entry.output as { signal?: unknown; timedOut?: boolean } | null
          return output?.timedOut === true ? undefined : { payload: output?.signal ?? null }
        }
      }
      yield* this.flush
      const taken = yield* this.env.store.takeSignal({
        runId: this.runId,
        token: this.token,
        key,
        name,
        inputHash,
        signal
      })
        .pipe(
          Effect.retry(storeRetry(this.env.config)),
          Effect.orElseSucceed((): Store.TakeResult => ({ _tag: "LeaseLost" }))
        )
      if (taken._tag === "LeaseLost") {
        this.stop("lease-lost")
        return yield* this.halt()
      }
      if (taken._tag === "Taken") return { payload: taken.payload }
      const now = yield* this.now
      const deadline = entry?.wakeAt ?? (timeoutMillis === null ? null : now + timeoutMillis)
      if (deadline !== null && deadline <= now) {
        yield* this.write({
          key,
          name,
          inputHash,
          status: "completed",
          output: { timedOut: true },
          error: null,
          attempts: 1
        })
        return undefined
      }
      if (entry === undefined) {
        yield* this.write({
          key,
          name,
          inputHash,
          status: "waiting",
          output: null,
          error: null,
          attempts: 1,
          ...(timeoutMillis === null ? {} : { wakeInMillis: timeoutMillis })
        })
      }
      return yield* this.park(deadline === null ? null : deadline - now)
    })

  readonly setEvent = (event: string, value: unknown, key: string): Effect.Effect<void> =>
    Effect.gen({ self: this }, function*() {
      const name = "pgflows.event"
      const encoded = JSON.parse(JSON.stringify(value ?? null)) as unknown
      const inputHash = hash({ event, value: encoded })
      const entry = this.journal.get(key)
      if (entry !== undefined) return yield* this.checkReplay(key, entry, name, inputHash)
      const bytes = byteSize(encoded)
      if (bytes > this.env.config.maxPayloadBytes) {
        return yield* this.failRun(
          new PayloadTooLarge({
            subject: `event "${event}" (key ${key})`,
            bytes,
            limit: this.env.config.maxPayloadBytes
          })
        )
      }
      yield* this.flush
      const result = yield* this.env.store.setEvent({
        runId: this.runId,
        token: this.token,
        key,
        name,
        inputHash,
        event,
        value: encoded
      }).pipe(Effect.retry(storeRetry(this.env.config)), Effect.orElseSucceed((): Store.WriteResult => "lease-lost"))
      if (result !== "ok") {
        this.stop("lease-lost")
        return yield* this.halt()
      }
    })

  readonly startChild = (spec: ChildSpec, input: unknown, id: string | undefined, key: string): Effect.Effect<string> =>
    Effect.gen({ self: this }, function*() {
      const name = "pgflows.child"
      const encodedInput = yield* this.encode(spec.input, input, `input of child workflow "${spec.name}" (key ${key})`)
      const childId = id ?? `${this.runId}:${key}`
      const inputHash = hash({ workflow: spec.name, input: encodedInput, id: childId })
      const entry = this.journal.get(key)
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, name, inputHash)
        return childId
      }
      yield* this.flush
      const created = yield* this.env.store.createRuns([{
        id: childId,
        workflow: spec.name,
        input: encodedInput,
        parentId: this.runId,
        ...(this.deadlineAt === null ? {} : { deadlineAt: this.deadlineAt }),
        ...(spec.timeout === undefined ? {} : { timeoutMillis: Duration.toMillis(spec.timeout) })
      }]).pipe(Effect.retry(storeRetry(this.env.config)), Effect.orDie)
      const existing = created[0]
      if (existing !== undefined && !existing.created && existing.workflow !== spec.name) {
        return yield* Effect.die(
          new Error(`child id "${childId}" already belongs to a run of workflow "${existing.workflow}"`)
        )
      }
      yield* this.write({
        key,
        name,
        inputHash,
        status: "completed",
        output: { child: childId },
        error: null,
        attempts: 1
      })
      return childId
    })

  readonly awaitChild = (_spec: ChildSpec, childId: string, key: string): Effect.Effect<ChildOutcome> =>
    Effect.gen({ self: this }, function*() {
      const name = "pgflows.await"
      const inputHash = hash({ child: childId })
      const entry = this.journal.get(key)
      if (entry !== undefined) {
        yield* this.checkReplay(key, entry, name, inputHash)
        if (entry.status === "completed") return entry.output as ChildOutcome
      }
      yield* this.flush
      const child = yield* this.env.store.getRun(childId).pipe(Effect.retry(storeRetry(this.env.config)), Effect.orDie)
      if (
        child !== undefined &&
        (child.status === "completed" || child.status === "failed" || child.status === "cancelled")
      ) {
        const outcome: ChildOutcome = child.status === "completed"
          ? { status: "completed", output: child.output }
          : child.status === "failed"
          ? { status: "failed", error: child.error }
          : { status: "cancelled" }
        yield* this.write({ key, name, inputHash, status: "completed", output: outcome, error: null, attempts: 1 })
        return outcome
      }
      if (entry === undefined) {
        yield* this.write({
          key,
          name,
          inputHash,
          status: "waiting",
          output: { child: childId },
          error: null,
          attempts: 1
        })
      }
      // The child's end wakes this run (its `events` move), so it can wait without a deadline.
      return yield* this.park(null)
    })

  readonly compensate = (undo: Effect.Effect<unknown, unknown, any>): Effect.Effect<void> =>
    Effect.sync(() => {
      this.compensations.push(undo)
    })

  /**
   * Runs the workflow body to its end and writes the transition that matches. Returns how the
   * execution ended. Plugins and spans, when there are any, observe it.
   */
  readonly run: Effect.Effect<Outcome> = Effect.suspend(() =>
    this.env.plugins === undefined && this.env.tracer === undefined ? this.execution : this.observed()
  )

  private readonly execution: Effect.Effect<Outcome> = Effect.gen({ self: this }, function*() {
    if (this.recoveries > this.env.config.maxRecoveries) {
      return yield* this.endFailed(
        new RecoveryLimitExceeded({ recoveries: this.recoveries, limit: this.env.config.maxRecoveries })
      )
    }
    if (this.deadlineAt !== null && this.deadlineAt <= (yield* this.now)) {
      return yield* this.endFailed(this.timeoutError())
    }
    const decoded = codec(this.definition.input).decode(this.input)
    if (Result.isFailure(decoded)) {
      return yield* this.endFailed(
        new DecodeError({ subject: `input of workflow "${this.workflow}"`, issues: decoded.failure })
      )
    }
    this.decodedInput = decoded.success
    // The workflow's own services were checked by the types of `Pgflows.layer` and captured there.
    let body = this.definition.run(decoded.success) as Effect.Effect<unknown, unknown, WorkflowContext>
    const plugins = this.env.plugins
    if (plugins !== undefined) {
      const event = this.workflowEvent()
      yield* plugins.fire("beforeWorkflow", event)
      body = plugins.aroundWorkflow(event, body)
    }
    const exit = yield* this.runBody(body, { prefix: "", counter: 0 })
    if (this.stopped !== undefined) return yield* this.stopOutcome()
    if (this.fatal !== undefined) return yield* this.endFailed(this.fatal)
    if (this.suspension !== undefined) return yield* this.suspend()
    if (Exit.isSuccess(exit)) {
      const output = yield* Effect.exit(
        this.encode(this.definition.output, exit.value, `output of workflow "${this.workflow}"`)
      )
      if (Exit.isFailure(output)) return yield* this.endFailed(this.fatal!)
      this.outputValue = exit.value
      return yield* this.end({ kind: "complete", output: output.value })
    }
    const error = this.failureEnvelope(exit.cause)
    const failure = Cause.findErrorOption(exit.cause)
    this.failure = failure._tag === "Some" ? failure.value : new WorkflowDefect({ defect: Cause.pretty(exit.cause) })
    if (this.compensations.length === 0) return yield* this.end({ kind: "fail", error })
    // A saga: undo what completed, in reverse order, each undo durable like any other step.
    const undone = yield* this.runCompensations()
    if (this.stopped !== undefined) return yield* this.stopOutcome()
    if (this.fatal !== undefined) return yield* this.endFailed(this.fatal)
    if (this.suspension !== undefined) return yield* this.suspend()
    return yield* this.end({ kind: "fail", error: { ...error, compensation: undone } })
  })

  /** Ends the run failed with one of pgflows' errors. */
  private endFailed(error: EngineError): Effect.Effect<Outcome> {
    this.failure = error
    return this.end({ kind: "fail", error: engineEnvelope(error) })
  }

  private workflowEvent(): Plugin.WorkflowEvent {
    return { runId: this.runId, workflow: this.workflow, input: this.decodedInput, resumed: this.resumed }
  }

  /** The execution with its span (telemetry on) and the plugins' end-of-run hooks. */
  private observed(): Effect.Effect<Outcome> {
    return Effect.gen({ self: this }, function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const outcome = yield* (this.env.tracer === undefined ? this.execution : this.workflowSpan(this.env.tracer))
      const plugins = this.env.plugins
      if (plugins === undefined) return outcome
      const durationMillis = (yield* Clock.currentTimeMillis) - startedAt
      const event = this.workflowEvent()
      if (outcome._tag === "Ended" && outcome.kind === "complete") {
        yield* plugins.fire("afterWorkflow", { ...event, output: this.outputValue, durationMillis })
      } else if (outcome._tag === "Ended" && outcome.kind === "fail") {
        yield* plugins.fire("onWorkflowError", { ...event, error: this.failure, durationMillis })
      } else if (outcome._tag === "Stopped" && outcome.reason === "cancelled") {
        yield* plugins.fire("onWorkflowCancelled", { ...event, durationMillis })
      }
      return outcome
    })
  }

  /**
   * The execution in a span `pgflows.workflow <name>`. The first execution of a run is a child of
   * the span that started the run (when there was one) and stores its own span context in the
   * journal; later ones are roots of their own traces that link to it.
   */
  private workflowSpan(tracer: Tracer.Tracer): Effect.Effect<Outcome> {
    const stored = this.journal.get(traceKey)?.output
    const first = isTraceContext(stored) ? stored : undefined
    const caller = first === undefined && this.caller !== null
      ? Tracer.externalSpan({ traceId: this.caller.traceId, spanId: this.caller.spanId })
      : undefined
    let outcome: Outcome | undefined = undefined
    return Effect.gen({ self: this }, function*() {
      if (first === undefined) {
        const span = yield* Effect.currentSpan
        yield* this.env.store.checkpoint({
          runId: this.runId,
          token: this.token,
          key: traceKey,
          name: traceName,
          inputHash: "",
          status: "completed",
          output: { traceId: span.traceId, spanId: span.spanId },
          error: null,
          attempts: 1
        }).pipe(Effect.ignore)
      }
      outcome = yield* this.execution
      yield* Effect.annotateCurrentSpan("pgflows.outcome", outcomeLabel(outcome))
      // A failed run fails its span with the typed error, so the exporter records it.
      if (outcome._tag === "Ended" && outcome.kind === "fail") return yield* Effect.fail(this.failure)
      return outcome
    }).pipe(
      Effect.withSpan(`pgflows.workflow ${this.workflow}`, {
        ...(caller === undefined ? { root: true } : { parent: caller }),
        links: first === undefined ? [] : [linkTo(first)],
        attributes: {
          "pgflows.workflow.name": this.workflow,
          "pgflows.run.id": this.runId,
          "pgflows.resumed": this.resumed
        }
      }),
      Effect.provideService(Tracer.Tracer, tracer),
      Effect.catchCause((cause) => outcome === undefined ? Effect.failCause(cause) : Effect.succeed(outcome)),
      Effect.orDie
    )
  }

  /** A step attempt in a span `pgflows.step <name>`, a child of the execution's. */
  private stepSpan<A, E, R>(event: Plugin.StepEvent, attempt: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return attempt.pipe(
      Effect.onExit((exit) =>
        Effect.annotateCurrentSpan(
          "pgflows.outcome",
          Exit.isSuccess(exit) ? "completed" : Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "failed"
        )
      ),
      Effect.withSpan(`pgflows.step ${event.step}`, {
        attributes: {
          "pgflows.workflow.name": event.workflow,
          "pgflows.run.id": event.runId,
          "pgflows.step.name": event.step,
          "pgflows.step.key": event.key,
          "pgflows.step.attempt": event.attempt
        }
      })
    )
  }

  /** Runs `body` in its own fiber (so it can be interrupted from outside), bounded by the deadline. */
  private runBody(
    body: Effect.Effect<unknown, unknown, WorkflowContext>,
    position: { readonly prefix: string; counter: number }
  ): Effect.Effect<Exit.Exit<unknown, unknown>> {
    return Effect.gen({ self: this }, function*() {
      const bounded = this.deadlineAt === null ? body : Effect.flatMap(this.now, (now) =>
        Effect.timeoutOrElse(body, {
          duration: Duration.millis(Math.max(0, this.deadlineAt! - now)),
          orElse: () => this.failRun(this.timeoutError())
        }))
      this.body = yield* bounded.pipe(
        Effect.provideService(WorkflowContext, { execution: this, position }),
        Effect.provideContext(this.env.services),
        Effect.forkChild({ startImmediately: true })
      )
      if (this.stopped !== undefined) yield* Fiber.interrupt(this.body)
      return yield* Fiber.await(this.body)
    })
  }

  private runCompensations(): Effect.Effect<{ readonly undone: number; readonly failed: ReadonlyArray<string> }> {
    return Effect.gen({ self: this }, function*() {
      const failed: Array<string> = []
      let undone = 0
      const undos = [...this.compensations].reverse()
      for (const [index, undo] of undos.entries()) {
        const exit = yield* this.runBody(undo as Effect.Effect<unknown, unknown, WorkflowContext>, {
          prefix: `c${index}/`,
          counter: 0
        })
        if (this.stopped !== undefined || this.fatal !== undefined || this.suspension !== undefined) break
        if (Exit.isSuccess(exit)) undone++
        else failed.push(Cause.pretty(exit.cause))
      }
      return { undone, failed }
    })
  }

  /** The stored form of the workflow's failure: its own typed error, or one of pgflows'. */
  private failureEnvelope(cause: Cause.Cause<unknown>): ErrorEnvelope {
    const failure = Cause.findErrorOption(cause)
    if (failure._tag === "None") return engineEnvelope(new WorkflowDefect({ defect: Cause.pretty(cause) }))
    const encoded = codec(this.definition.error).encode(failure.value)
    if (Result.isSuccess(encoded)) return { source: "workflow", error: encoded.success }
    if (isEngineError(failure.value)) return engineEnvelope(failure.value)
    return engineEnvelope(new EncodeError({ subject: `error of workflow "${this.workflow}"`, issues: encoded.failure }))
  }

  private timeoutError(): WorkflowTimeout {
    return new WorkflowTimeout({ workflow: this.workflow, deadline: new Date(this.deadlineAt ?? 0).toISOString() })
  }

  private stopOutcome(): Effect.Effect<Outcome> {
    if (this.stopped === "shutdown") return this.end({ kind: "release" })
    // Cancelled, lease lost or store gone: this execution writes nothing more.
    this.held.length = 0
    return Effect.succeed<Outcome>({ _tag: "Stopped", reason: this.stopped! })
  }

  /** Parks the run until its wake-up, or its deadline if sooner. */
  private suspend(): Effect.Effect<Outcome> {
    return Effect.flatMap(this.now, (now) => {
      const untilDeadline = this.deadlineAt === null ? null : Math.max(0, this.deadlineAt - now)
      const wake = this.suspension === null || this.suspension === undefined
        ? untilDeadline
        : untilDeadline === null
        ? this.suspension
        : Math.min(this.suspension, untilDeadline)
      return this.end({ kind: "suspend", wakeInMillis: wake, observedEvents: this.events })
    })
  }

  private end(
    transition:
      | { readonly kind: "complete"; readonly output: unknown }
      | { readonly kind: "fail"; readonly error: unknown }
      | { readonly kind: "suspend"; readonly wakeInMillis: number | null; readonly observedEvents: number }
      | { readonly kind: "release" }
  ): Effect.Effect<Outcome> {
    // The held checkpoints commit with the transition; a flush under way commits first.
    const write = this.writes.withPermit(Effect.suspend(() => {
      const checkpoints = this.held.splice(0).map((entry) => ({ ...entry, runId: this.runId, token: this.token }))
      return this.env.store.transition({
        ...transition,
        runId: this.runId,
        token: this.token,
        msgId: this.msgId,
        ...(checkpoints.length === 0 ? {} : { checkpoints })
      }).pipe(Effect.retry(storeRetry(this.env.config)))
    }))
    return write.pipe(
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

const outcomeLabel = (outcome: Outcome): string =>
  outcome._tag === "Stopped"
    ? outcome.reason
    : outcome.kind === "complete"
    ? "completed"
    : outcome.kind === "fail"
    ? "failed"
    : outcome.kind === "suspend"
    ? "suspended"
    : "released"

/** How an execution ended. */
export type Outcome =
  | { readonly _tag: "Ended"; readonly kind: "complete"; readonly output: unknown }
  | { readonly _tag: "Ended"; readonly kind: "fail"; readonly error: unknown }
  | { readonly _tag: "Ended"; readonly kind: "suspend" | "release" }
  | { readonly _tag: "Stopped"; readonly reason: StopReason }
