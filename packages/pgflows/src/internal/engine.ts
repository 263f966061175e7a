/**
 * The replay engine: executes one claimed run of a workflow against its journal, and ends the
 * execution with one transition (completed, failed, suspended, released) or abandons it (lease lost,
 * cancelled, store unreachable).
 *
 * Durable operations never let the workflow swallow an engine decision: suspending, failing the run
 * for an engine error (non-determinism, decode errors, values the store cannot hold, dead steps) and
 * stopping (cancelled, lease lost, a journal write that failed) are recorded on the execution as one
 * `Decision` and then interrupt the workflow's fiber; after the fiber ends, the decision wins over
 * whatever the workflow returned.
 *
 * The guarantees this module keeps are listed in docs/ARCHITECTURE.md ("Replay", "Held checkpoints",
 * "Runs are isolated"); the main ones: a completed step never runs again, nothing that follows a
 * step becomes durable before the step's checkpoint, and a failed write stops the execution before
 * its next durable operation.
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
  ChildIdConflict,
  DecodeError,
  EncodeError,
  type EngineError,
  NonDeterminismError,
  PayloadTooLarge,
  RecoveryLimitExceeded,
  StepDefect,
  StepTimeoutError,
  type StoreError,
  UnstorableValue,
  WorkflowDefect,
  WorkflowTimeout
} from "../PgflowsError.ts"
import type * as Plugin from "../Plugin.ts"
import type * as Store from "../Store.ts"
import * as StoredText from "../StoredText.ts"
import type * as Workflow from "../Workflow.ts"
import {
  type ChildOutcome,
  type ChildSpec,
  type Execution,
  type Position,
  type StepSpec,
  WorkflowContext
} from "./context.ts"
import { decodeFailure, encodeEngineFailure, encodeFailure, type ErrorEnvelope } from "./failure.ts"
import * as Flow from "./flow.ts"
import { hash, storeProblem } from "./json.ts"
import * as Keys from "./keys.ts"
import { isTraceContext, linkTo, traceKey, traceName } from "./telemetry.ts"

/**
 * Why an execution stopped without a transition of its own. `history-end`: a replay check
 * (`ReplayCheck`) reached the end of the recorded journal, where a real execution would go on.
 */
export type StopReason = "cancelled" | "lease-lost" | "shutdown" | "store-unavailable" | "history-end"

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
const patchName = "pgflows.patch"

/**
 * How an execution runs: `execute` (a claimed run: steps run, the journal is written) or `check`
 * (the replay checker: recorded entries are replayed, nothing runs or is written, and the execution
 * stops where the journal ends).
 */
export type Mode = "execute" | "check"

/**
 * How long the checkpoint of a completed step may be held back to share a commit with what follows
 * (see `RunExecution.hold`).
 */
const holdLimitMillis = 2

type Entry = Omit<Store.Checkpoint, "runId" | "token">

/** A journal entry waiting to be written, with what to say of it and what to do once it is durable. */
interface Pending {
  readonly entry: Entry
  /** What the entry records, for an error about it ("output of step "x" (key 1)"). */
  readonly subject: string
  /** Runs once the entry has committed (the `afterStep` hooks). */
  readonly durable?: Effect.Effect<void> | undefined
}

/**
 * What the execution decided, besides the workflow's own result: park the run, fail it with an
 * engine error, or stop without writing an end. When several branches decide, a stop wins over a
 * failure, a failure over a suspension, and suspensions merge (the earliest wake-up).
 */
export type Decision =
  | { readonly _tag: "Suspend"; readonly wakeInMillis: number | null }
  | { readonly _tag: "Fail"; readonly error: EngineError }
  | { readonly _tag: "Stop"; readonly reason: StopReason }

const merge = (current: Decision | undefined, next: Decision): Decision => {
  if (current === undefined || current._tag === "Suspend" && next._tag !== "Suspend") return next
  if (current._tag === "Fail" && next._tag === "Stop") return next
  if (current._tag === "Suspend" && next._tag === "Suspend") {
    if (current.wakeInMillis === null) return next
    if (next.wakeInMillis === null) return current
    return { _tag: "Suspend", wakeInMillis: Math.min(current.wakeInMillis, next.wakeInMillis) }
  }
  return current
}

export interface EngineEnv {
  readonly store: Store.Store["Service"]
  readonly config: PgflowsConfig
  /** Services the workflows need, captured when the `Pgflows` layer was built. */
  readonly services: Context.Context<never>
  /** The registered plugins, or `undefined` when there are none. */
  readonly plugins: Plugin.Runner | undefined
  /** The tracer of pgflows' spans when telemetry is on, else `undefined`. */
  readonly tracer: Tracer.Tracer | undefined
}

const storeRetries = new WeakMap<PgflowsConfig, Schedule.Schedule<unknown, StoreError>>()

/**
 * Retries store writes that may succeed later (a restarting database) for about half a lease. Built
 * once per configuration: a schedule holds no state of its own, and every write of a run uses it.
 */
const storeRetry = (config: PgflowsConfig): Schedule.Schedule<unknown, StoreError> => {
  const known = storeRetries.get(config)
  if (known !== undefined) return known
  const schedule = Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")]).pipe(
    Schedule.upTo({ duration: Duration.millis(Duration.toMillis(config.lease) / 2) }),
    Schedule.setInputType<StoreError>(),
    Schedule.while(({ input }) => input.retryable)
  )
  storeRetries.set(config, schedule)
  return schedule
}

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
  /** What the execution decided besides the workflow's result (see `Decision`). */
  decision: Decision | undefined = undefined
  /** Step attempts under way, by key. */
  readonly attempts = new Map<string, Attempt>()
  private readonly input: Store.StoredValue
  private readonly recoveries: number
  /** The run's `events` when it was claimed (see `Store.Transition` `suspend`). */
  private readonly events: number
  /** The store-clock time past which the run fails with `WorkflowTimeout`. */
  readonly deadlineAt: number | null
  /** Checkpoints of completed steps held back (see `hold`). */
  private held: Array<Pending> = []
  /** Flushes of held checkpoints under way. */
  private flushing = 0
  /** Counts the times the held checkpoints were taken to be written (see `hold`). */
  private heldGeneration = 0
  /** The `heldGeneration` whose held checkpoints a timer will write if still held (see `hold`). */
  private timerFor = -1
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
  /** The fiber of the workflow's body (or of a compensation) while one runs. */
  private body: Fiber.Fiber<unknown, unknown> | undefined = undefined

  /** The version of the workflow the run started on. */
  readonly version: number
  readonly mode: Mode
  /** In `check` mode: the keys of the journal that the replay reached. */
  readonly visited = new Set<string>()
  /** In `check` mode: the first operation past the end of the journal, if the replay got there. */
  next: { readonly key: string; readonly name: string } | undefined = undefined

  constructor(
    env: EngineEnv,
    definition: Workflow.Any,
    claimed: Store.ClaimedRun,
    localNow: number,
    mode: Mode = "execute"
  ) {
    this.env = env
    this.definition = definition
    this.mode = mode
    this.runId = claimed.run.id
    this.workflow = claimed.run.workflow
    this.version = claimed.run.version
    this.token = claimed.token
    this.msgId = claimed.msgId
    this.journal = new Map(claimed.journal.map((entry) => [entry.key, entry]))
    this.offset = claimed.now - localNow
    this.input = claimed.input
    this.recoveries = claimed.run.recoveries
    this.events = claimed.run.events
    // A replay check replays what was recorded, whenever it was: deadlines do not apply.
    this.deadlineAt = mode === "check" ? null : claimed.run.deadlineAt
    this.resumed = claimed.run.executions > 1 || claimed.journal.length > 0
    this.caller = claimed.run.trace
  }

  /** Records a decision (see `Decision` for which one wins). */
  private decide(next: Decision): void {
    this.decision = merge(this.decision, next)
  }

  /** Whether the execution must write nothing more of the workflow's progress. */
  private get ending(): boolean {
    return this.decision !== undefined && this.decision._tag !== "Suspend"
  }

  /**
   * Stops the execution from outside the workflow's fibers (cancelled, lease lost, shutdown, a
   * write that failed in the background): records why, and interrupts the workflow's body.
   */
  interrupt(reason: StopReason): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.decide({ _tag: "Stop", reason })
      return this.body === undefined ? Effect.void : Fiber.interrupt(this.body)
    })
  }

  /** Interrupts the workflow's body after a decision made outside its fibers (see `hold`). */
  private readonly abort: Effect.Effect<void> = Effect.suspend(() =>
    this.body === undefined ? Effect.void : Fiber.interrupt(this.body)
  )

  private readonly now = Effect.map(Clock.currentTimeMillis, (local) => local + this.offset)

  /** Ends the calling fiber of the workflow: the decision recorded before it is what counts. */
  private halt<A = never>(): Effect.Effect<A> {
    return Effect.interrupt as Effect.Effect<A>
  }

  private failRun<A = never>(error: EngineError): Effect.Effect<A> {
    return Effect.suspend(() => {
      this.decide({ _tag: "Fail", error })
      return this.halt<A>()
    })
  }

  private park<A = never>(wakeInMillis: number | null): Effect.Effect<A> {
    return Effect.suspend(() => {
      this.decide({ _tag: "Suspend", wakeInMillis })
      return this.halt<A>()
    })
  }

  /** Halts a workflow fiber that reaches a durable operation after the execution decided to end. */
  private readonly guard: Effect.Effect<void> = Effect.suspend(() => this.ending ? this.halt() : Effect.void)

  /**
   * Records the attempts that have run for longer than `markerDelay` (once each), so that an attempt
   * cut short by a crash still counts in `attempts`. The runner calls this periodically: steps that
   * end sooner cost nothing.
   */
  markLongAttempts(now: number): Effect.Effect<void> {
    if (this.ending) return Effect.void
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

  /**
   * Writes journal entries together (their writes share a commit when the store groups them). On a
   * failure it records the decision that follows and returns `false`: a lost lease stops the
   * execution; a value the store rejected fails the run with `UnstorableValue`; a store that stays
   * unreachable stops the execution, so that another worker takes the run over once its lease ends.
   * Then it runs what waits for the entries to be durable.
   */
  private commit(pending: ReadonlyArray<Pending>): Effect.Effect<boolean> {
    const one = (item: Pending) =>
      this.env.store.checkpoint({ ...item.entry, runId: this.runId, token: this.token }).pipe(
        Effect.retry(storeRetry(this.env.config)),
        Effect.matchEffect({
          onSuccess: (result) => {
            if (result === "ok") return Effect.succeed(true)
            this.decide({ _tag: "Stop", reason: "lease-lost" })
            return Effect.succeed(false)
          },
          onFailure: (error) => Effect.as(this.writeFailed(error, item.subject), false)
        })
      )
    // Together, so that concurrent branches' checkpoints share a commit (group commit).
    const written = pending.length === 1
      ? one(pending[0]!)
      : Effect.map(Effect.forEach(pending, one, { concurrency: "unbounded" }), (results) => results.every(Boolean))
    return Effect.flatMap(written, (ok) =>
      ok && pending.some((item) => item.durable !== undefined)
        ? Effect.as(Effect.forEach(pending, (item) => item.durable ?? Effect.void, { discard: true }), true)
        : Effect.succeed(ok))
  }

  /** The decision after a write the store refused (see `commit`). */
  private writeFailed(error: StoreError, subject: string): Effect.Effect<void> {
    if (error.rejected) {
      this.decide({
        _tag: "Fail",
        error: new UnstorableValue({ subject, path: "", reason: `PostgreSQL rejected it: ${error.message}` })
      })
      return Effect.void
    }
    this.decide({ _tag: "Stop", reason: "store-unavailable" })
    return Effect.logWarning(`pgflows: cannot write the journal of run ${this.runId}: ${error.message}`)
  }

  /** Writes a journal entry now (after the held ones); halts the calling fiber when that fails. */
  private write(entry: Entry): Effect.Effect<void> {
    return Effect.flatMap(
      this.flushHeld,
      (flushed) =>
        flushed
          ? Effect.flatMap(
            this.commit([{ entry, subject: `journal entry "${entry.name}" (key ${entry.key})` }]),
            (ok) => ok ? Effect.void : this.halt()
          )
          : this.halt()
    )
  }

  /** Writes the journal entry of a durable operation that is not a step (one attempt, no error). */
  private note(
    key: string,
    name: string,
    inputHash: string,
    status: "waiting" | "completed",
    output: unknown,
    wakeInMillis?: number
  ): Effect.Effect<void> {
    return this.write({
      key,
      name,
      inputHash,
      status,
      output,
      error: null,
      attempts: 1,
      ...(wakeInMillis === undefined ? {} : { wakeInMillis })
    })
  }

  /**
   * Holds back the checkpoint of a completed step instead of committing it at once: it is written
   * before the next durable operation starts (a step attempt, a sleep, a signal wait, ...), or with
   * the end of the execution in the same commit (a workflow's last step and its completion cost one
   * commit, not two), or after `holdLimitMillis` when neither comes (concurrent branches). Nothing that
   * follows the step becomes durable before its checkpoint, so a crash before the write has the
   * effect a crash before the commit always had: the step runs again. `durable` (the `afterStep`
   * hooks) runs once the checkpoint has committed, never before.
   */
  private hold(pending: Pending): Effect.Effect<void> {
    return Effect.withFiber((fiber) => {
      this.held.push(pending)
      const generation = this.heldGeneration
      if (this.timerFor === generation) return Effect.void
      this.timerFor = generation
      // A plain timer, and a fiber only when it must write: most held checkpoints are taken by what
      // follows them first. The timer belongs to the checkpoints held now: once they are taken, it
      // writes nothing (checkpoints held later have a timer of their own), so a timer started by one
      // step never splits a later step's checkpoint from the end it would have committed with.
      setTimeout(() => {
        if (this.heldGeneration !== generation || this.held.length === 0) return
        // In the background: a failure (already decided by `commit`) must stop the workflow's fibers.
        Effect.runForkWith(fiber.context)(Effect.flatMap(this.flushHeld, (ok) => ok ? Effect.void : this.abort))
      }, holdLimitMillis)
      return Effect.void
    })
  }

  /** Takes the held checkpoints, to be written now (or dropped); their timer then writes nothing. */
  private takeHeld(): Array<Pending> {
    this.heldGeneration++
    return this.held.splice(0)
  }

  /** Writes the held checkpoints (and waits for those being written); `false` when that failed. */
  private readonly flushHeld: Effect.Effect<boolean> = Effect.suspend(() => {
    if (this.ending) return Effect.succeed(false)
    if (this.held.length === 0 && this.flushing === 0) return Effect.succeed(true)
    return this.writes.withPermit(Effect.suspend(() => {
      if (this.ending) return Effect.succeed(false)
      if (this.held.length === 0) return Effect.succeed(true)
      const pending = this.takeHeld()
      this.flushing++
      return this.commit(pending).pipe(Effect.ensuring(Effect.sync(() => this.flushing--)))
    }))
  })

  /** In a workflow fiber: writes the held checkpoints, or halts when that failed. */
  private readonly flush: Effect.Effect<void> = Effect.flatMap(this.flushHeld, (ok) => ok ? Effect.void : this.halt())

  /**
   * The journal operation at `key` (a step, a sleep, a signal wait, ...): on replay, checks that the
   * journal holds the same operation there (else `NonDeterminismError`) and lets `replay` answer
   * from the entry; otherwise (or when `replay` declines) writes the held checkpoints first, then
   * runs `execute`, which receives the entry of an operation that was under way.
   */
  private operation<A, E, R>(
    key: string,
    name: string,
    inputHash: string,
    options: {
      readonly replay?: ((entry: Store.StepRecord) => Effect.Effect<A, E, R> | undefined) | undefined
      readonly execute: (entry: Store.StepRecord | undefined) => Effect.Effect<A, E, R>
      /**
       * `execute` only holds entries back (see `hold`): the held ones need not be written first,
       * they are written together before the next operation.
       */
      readonly holdsOnly?: boolean | undefined
    }
  ): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      const entry = this.journal.get(key)
      if (entry !== undefined) {
        if (this.mode === "check") this.visited.add(key)
        if (entry.name !== name || entry.inputHash !== inputHash) {
          return this.failRun(
            new NonDeterminismError({
              key,
              journal: { name: entry.name, inputHash: entry.inputHash },
              replay: { name, inputHash },
              workflow: this.workflow,
              version: this.version
            })
          )
        }
        if (entry.tooLarge !== undefined) {
          return this.failRun(
            new PayloadTooLarge({
              subject: `stored value of ${name} (key ${key})`,
              bytes: entry.tooLarge,
              limit: this.env.config.maxPayloadBytes
            })
          )
        }
        const replayed = options.replay?.(entry)
        if (replayed !== undefined) return replayed
      }
      // A replay check stops where the recorded journal ends: nothing is executed or written.
      if (this.mode === "check") {
        this.next ??= { key, name }
        this.decide({ _tag: "Stop", reason: "history-end" })
        return this.halt()
      }
      const execute = options.execute(entry)
      return this.guard.pipe(Effect.andThen(options.holdsOnly === true ? execute : Effect.andThen(this.flush, execute)))
    })
  }

  /**
   * Whether the run passed `position` in an earlier execution: its journal (as claimed) holds an
   * operation at that position or after it (patch markers count at their position), other than
   * the marker `except`.
   */
  private passed(position: string, except: string): boolean {
    const at = Keys.parse(position)!
    for (const key of this.journal.keys()) {
      if (key === except) continue
      const other = Keys.parse(key)
      if (other === undefined) continue
      const order = Keys.compare(other, at)
      if (order === "after" || order === "same") return true
    }
    return false
  }

  readonly patched = (id: string, position: Position, deprecated: boolean): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      const at = `${position.prefix}${position.counter + 1}`
      const key = Keys.patchMarker(at, id)
      const inputHash = hash({ patch: id })
      if (!this.journal.has(key) && this.passed(at, key)) {
        if (this.mode === "check") this.visited.add(key)
        if (!deprecated) return Effect.succeed(false)
        // The run took the old branch, which is gone: say so here, not at a divergence further on.
        const after = [...this.journal.values()]
          .filter((entry) => {
            const order = Keys.compareKeys(entry.key, at)
            return entry.key !== key && (order === "after" || order === "same")
          })
          .sort((a, b) => Keys.byExecution(a.key, b.key))[0]!
        return this.failRun(
          new NonDeterminismError({
            key: at,
            journal: { name: after.name, inputHash: after.inputHash },
            replay: { name: patchName, inputHash },
            workflow: this.workflow,
            version: this.version,
            patch: id
          })
        )
      }
      return this.operation(key, patchName, inputHash, {
        replay: () => Effect.succeed(true),
        // The marker is held like a step's checkpoint: nothing after it is durable before it is.
        holdsOnly: true,
        execute: () =>
          Effect.as(
            this.hold({
              entry: { key, name: patchName, inputHash, status: "completed", output: null, error: null, attempts: 1 },
              subject: `marker of patch "${id}" (key ${key})`
            }),
            true
          )
      })
    })

  /**
   * Encodes a value for storage, failing the run when it does not fit its Schema, the size limit, or
   * what PostgreSQL can hold.
   */
  private encode(schema: Persisted, value: unknown, subject: string): Effect.Effect<unknown> {
    const encoded = codec(schema).encode(value)
    if (Result.isFailure(encoded)) return this.failRun(new EncodeError({ subject, issues: encoded.failure }))
    return this.storable(encoded.success, subject)
  }

  /** Fails the run when an encoded value is over the size limit or holds text PostgreSQL refuses. */
  private storable(encoded: unknown, subject: string): Effect.Effect<unknown> {
    const limit = this.env.config.maxPayloadBytes
    const problem = storeProblem(encoded, limit)
    if (problem === undefined) return Effect.succeed(encoded)
    return this.failRun(
      problem._tag === "TooLarge"
        ? new PayloadTooLarge({ subject, bytes: problem.bytes, limit })
        : new UnstorableValue({ subject, path: problem.path, reason: problem.reason })
    )
  }

  /** Fails the run when a name given at run time (a signal, an event, a child id) cannot be stored. */
  private storableName(text: string, subject: string): Effect.Effect<void> {
    const reason = StoredText.problem(text)
    return reason === undefined ? Effect.void : this.failRun(new UnstorableValue({ subject, path: "", reason }))
  }

  /** A stored step failure, as the step's typed error (or the run's failure for engine errors). */
  private replayFailure(spec: StepSpec, key: string, stored: unknown): Effect.Effect<never, unknown> {
    const failure = decodeFailure(stored, "step", spec.error)
    switch (failure._tag) {
      case "Own":
        return Effect.fail(failure.error)
      case "Engine":
        return failure.error instanceof StepTimeoutError ? Effect.fail(failure.error) : this.failRun(failure.error)
      case "Raw":
        return this.failRun(
          new DecodeError({
            subject: `error of step "${spec.name}" (key ${key})`,
            issues: [{ path: "", message: `the stored error does not decode: ${failure.reason}` }]
          })
        )
    }
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
    const subject = `output of step "${spec.name}" (key ${key})`
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
          attempts: attempt,
          transactional: true
        }),
        Effect.flatMap(effect, (value) => this.encode(spec.output, value, subject))
      ).pipe(
        Effect.catchIf(
          (error): error is StoreError => (error as { _tag?: unknown })?._tag === "StoreError",
          (error) => Effect.andThen(this.writeFailed(error, subject), this.halt())
        )
      )
      if (result === "lease-lost") {
        this.decide({ _tag: "Stop", reason: "lease-lost" })
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
    const subject = `input of step "${spec.name}" (key ${key})`
    return Effect.flatMap(this.encode(spec.input, input, subject), (encoded) => {
      const inputHash = hash(encoded)
      return this.operation(key, spec.name, inputHash, {
        replay: (entry) => {
          if (entry.status === "completed") {
            const decoded = codec(spec.output).decode(entry.output)
            return Result.isSuccess(decoded)
              ? Effect.succeed(decoded.success)
              : this.failRun(
                new DecodeError({ subject: `output of step "${spec.name}" (key ${key})`, issues: decoded.failure })
              )
          }
          if (entry.status === "failed") return this.replayFailure(spec, key, entry.error)
          return undefined
        },
        // An attempt was running when the last worker stopped, or a retry was parked: go on from it.
        execute: (entry) =>
          Effect.gen({ self: this }, function*() {
            if (entry === undefined) {
              return yield* this.execute(spec, input, key, inputHash, 0, 0, undefined, transactional)
            }
            const failures = entry.status === "retrying" ? entry.attempts : entry.attempts - 1
            const lastError = entry.status !== "retrying" ? undefined : yield* Effect.exit(
              this.replayFailure(spec, key, entry.error)
            ).pipe(
              Effect.map((exit) => Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined),
              Effect.map((option) => option?._tag === "Some" ? option.value : undefined)
            )
            return yield* this.execute(spec, input, key, inputHash, entry.attempts, failures, lastError, transactional)
          })
      })
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
      const schedule = spec.retry ?? this.definition.stepDefaults.retry
      const decide = schedule === undefined ? undefined : yield* Schedule.toStep(schedule)
      if (decide !== undefined) {
        for (let i = 0; i < failures; i++) yield* Effect.exit(decide(yield* this.now, lastError))
      }
      // `run` is called for each attempt; one that throws is a defect of that attempt.
      const attemptEffect = Effect.suspend(() => spec.run(input))
      const timed = spec.timeout === undefined ? attemptEffect : Effect.timeoutOrElse(attemptEffect, {
        duration: spec.timeout,
        orElse: () =>
          Effect.fail(new StepTimeoutError({ step: spec.name, timeoutMillis: Duration.toMillis(spec.timeout!) }))
      })
      const { plugins, tracer } = this.env
      const subject = `output of step "${spec.name}" (key ${key})`
      for (let attempt = attemptsSoFar + 1;; attempt++) {
        yield* this.guard
        const startedAt = yield* Clock.currentTimeMillis
        this.attempts.set(key, { key, name: spec.name, inputHash, attempt, startedAt, marked: false })
        let attemptRun = transactional ? this.commitAttempt(spec, key, inputHash, attempt, timed) : timed
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
          const afterStep = observe === undefined
            ? undefined
            : Effect.flatMap(observe, (ended) => plugins!.fire("afterStep", { ...ended, output: exit.value }))
          if (transactional) {
            if (afterStep !== undefined) yield* afterStep
          } else {
            const output = yield* this.encode(spec.output, exit.value, subject)
            yield* this.hold({
              entry: { key, name: spec.name, inputHash, status: "completed", output, error: null, attempts: attempt },
              subject,
              durable: afterStep
            })
          }
          return exit.value
        }
        const failure = Cause.findErrorOption(exit.cause)
        if (failure._tag === "None") {
          if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
          const defect = new StepDefect({ step: spec.name, key, defect: Cause.pretty(exit.cause) })
          if (observe !== undefined) {
            yield* plugins!.fire("onStepError", { ...(yield* observe), error: defect, final: true })
          }
          yield* this.write({
            key,
            name: spec.name,
            inputHash,
            status: "failed",
            output: null,
            error: encodeEngineFailure(defect),
            attempts: attempt
          })
          return yield* this.failRun(defect)
        }
        const error = failure.value
        const stored = error instanceof StepTimeoutError
          ? encodeEngineFailure(error)
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

  readonly sleep = (duration: Duration.Duration, key: string): Effect.Effect<void> => {
    const millis = Duration.toMillis(duration)
    const inputHash = hash({ millis })
    const threshold = Duration.toMillis(this.env.config.parkThreshold)
    const mark = (status: "waiting" | "completed", wakeInMillis?: number) =>
      this.note(key, sleepName, inputHash, status, null, wakeInMillis)
    return this.operation(key, sleepName, inputHash, {
      replay: (entry) => entry.status === "completed" ? Effect.void : undefined,
      execute: (entry) =>
        Effect.gen({ self: this }, function*() {
          if (entry !== undefined) {
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
    })
  }

  readonly record = <A, E, R>(
    name: string,
    key: string,
    schema: Persisted,
    compute: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> =>
    this.operation(key, name, hash({ record: name }), {
      replay: (entry) => {
        const decoded = codec(schema).decode(entry.output)
        return Result.isSuccess(decoded)
          ? Effect.succeed(decoded.success as A)
          : this.failRun(new DecodeError({ subject: `${name} (key ${key})`, issues: decoded.failure }))
      },
      execute: () =>
        Effect.gen({ self: this }, function*() {
          const value = yield* compute
          const output = yield* this.encode(schema, value, `${name} (key ${key})`)
          yield* this.note(key, name, hash({ record: name }), "completed", output)
          return value
        })
    })

  readonly waitForSignal = (
    signal: string,
    timeout: Duration.Duration | undefined,
    key: string
  ): Effect.Effect<{ readonly payload: unknown } | undefined> => {
    const name = "pgflows.signal"
    const timeoutMillis = timeout === undefined ? null : Duration.toMillis(timeout)
    const inputHash = hash({ signal, timeoutMillis })
    return Effect.andThen(
      this.storableName(signal, `name of signal "${signal}" (key ${key})`),
      this.operation(key, name, inputHash, {
        replay: (entry) => {
          if (entry.status !== "completed") return undefined
          const output = entry.output as { signal?: unknown; timedOut?: boolean } | null
          return Effect.succeed(output?.timedOut === true ? undefined : { payload: output?.signal ?? null })
        },
        execute: (entry) =>
          Effect.gen({ self: this }, function*() {
            const taken = yield* this.env.store.takeSignal({
              runId: this.runId,
              token: this.token,
              key,
              name,
              inputHash,
              signal
            }).pipe(
              Effect.retry(storeRetry(this.env.config)),
              Effect.catch((error) => Effect.as(this.writeFailed(error, `signal "${signal}" (key ${key})`), undefined))
            )
            if (taken === undefined) return yield* this.halt()
            if (taken._tag === "LeaseLost") {
              this.decide({ _tag: "Stop", reason: "lease-lost" })
              return yield* this.halt()
            }
            if (taken._tag === "Taken") return { payload: taken.payload }
            const now = yield* this.now
            const deadline = entry?.wakeAt ?? (timeoutMillis === null ? null : now + timeoutMillis)
            if (deadline !== null && deadline <= now) {
              yield* this.note(key, name, inputHash, "completed", { timedOut: true })
              return undefined
            }
            if (entry === undefined) {
              yield* this.note(key, name, inputHash, "waiting", null, timeoutMillis ?? undefined)
            }
            return yield* this.park(deadline === null ? null : deadline - now)
          })
      })
    )
  }

  readonly setEvent = (event: string, value: unknown, key: string): Effect.Effect<void> => {
    const name = "pgflows.event"
    const subject = `event "${event}" (key ${key})`
    const encoded = JSON.parse(JSON.stringify(value ?? null)) as unknown
    const inputHash = hash({ event, value: encoded })
    return this.operation(key, name, inputHash, {
      replay: () => Effect.void,
      execute: () =>
        Effect.gen({ self: this }, function*() {
          yield* this.storableName(event, `name of ${subject}`)
          yield* this.storable(encoded, subject)
          const result = yield* this.env.store.setEvent({
            runId: this.runId,
            token: this.token,
            key,
            name,
            inputHash,
            event,
            value: encoded
          }).pipe(
            Effect.retry(storeRetry(this.env.config)),
            Effect.catch((error) => Effect.as(this.writeFailed(error, subject), undefined))
          )
          if (result === "ok") return
          if (result === "lease-lost") this.decide({ _tag: "Stop", reason: "lease-lost" })
          return yield* this.halt()
        })
    })
  }

  readonly startChild = (spec: ChildSpec, input: unknown, id: string | undefined, key: string): Effect.Effect<string> =>
    Effect.gen({ self: this }, function*() {
      const name = "pgflows.child"
      const subject = `input of child workflow "${spec.name}" (key ${key})`
      const encodedInput = yield* this.encode(spec.input, input, subject)
      // A child started earlier keeps the id it was started with: a fork replays its original's child.
      const recorded = this.journal.get(key)
      const started = recorded?.name === "pgflows.child"
        ? (recorded.output as { child?: unknown } | null)?.child
        : undefined
      const childId = id ?? (typeof started === "string" ? started : `${this.runId}:${key}`)
      yield* this.storableName(childId, `id of child workflow "${spec.name}" (key ${key})`)
      const inputHash = hash({ workflow: spec.name, input: encodedInput, id: childId })
      return yield* this.operation(key, name, inputHash, {
        replay: () => Effect.succeed(childId),
        execute: () =>
          Effect.gen({ self: this }, function*() {
            // The child's key, from its typed input; a key function that fails fails this run alone.
            const concurrencyKey = Flow.keyOf(spec, input)
            if (Result.isFailure(concurrencyKey)) return yield* this.failRun(concurrencyKey.failure)
            const created = yield* this.env.store.createRuns([{
              id: childId,
              workflow: spec.name,
              version: spec.version,
              input: encodedInput,
              parentId: this.runId,
              ...(concurrencyKey.success === undefined ? {} : { concurrencyKey: concurrencyKey.success }),
              ...(this.deadlineAt === null ? {} : { deadlineAt: this.deadlineAt }),
              ...(spec.timeout === undefined ? {} : { timeoutMillis: Duration.toMillis(spec.timeout) })
            }]).pipe(
              Effect.retry(storeRetry(this.env.config)),
              // Like a step's write: an outage hands the run over, a refused value fails it.
              Effect.catch((error) => Effect.as(this.writeFailed(error, subject), undefined))
            )
            if (created === undefined) return yield* this.halt()
            const existing = created[0]
            if (existing !== undefined && !existing.created && existing.workflow !== spec.name) {
              return yield* this.failRun(
                new ChildIdConflict({ childId, workflow: spec.name, existingWorkflow: existing.workflow })
              )
            }
            yield* this.note(key, name, inputHash, "completed", { child: childId })
            return childId
          })
      })
    })

  readonly awaitChild = (_spec: ChildSpec, childId: string, key: string): Effect.Effect<ChildOutcome> => {
    const name = "pgflows.await"
    const inputHash = hash({ child: childId })
    return this.operation(key, name, inputHash, {
      replay: (entry) => entry.status === "completed" ? Effect.succeed(entry.output as ChildOutcome) : undefined,
      execute: (entry) =>
        Effect.gen({ self: this }, function*() {
          const child = yield* this.env.store.getRun(childId).pipe(
            Effect.retry(storeRetry(this.env.config)),
            Effect.catch((error) => Effect.as(this.writeFailed(error, `state of child run "${childId}"`), null))
          )
          if (child === null) return yield* this.halt()
          if (child?.outcomeTooLarge !== undefined) {
            return yield* this.failRun(
              new PayloadTooLarge({
                subject: `outcome of child run "${childId}"`,
                bytes: child.outcomeTooLarge,
                limit: this.env.config.maxPayloadBytes
              })
            )
          }
          if (
            child !== undefined &&
            (child.status === "completed" || child.status === "failed" || child.status === "cancelled")
          ) {
            const outcome: ChildOutcome = child.status === "completed"
              ? { status: "completed", output: child.output }
              : child.status === "failed"
              ? { status: "failed", error: child.error }
              : { status: "cancelled" }
            yield* this.note(key, name, inputHash, "completed", outcome)
            return outcome
          }
          if (entry === undefined) {
            yield* this.note(key, name, inputHash, "waiting", { child: childId })
          }
          // The child's end wakes its parent (its `events` move), so this run can wait without a
          // deadline. A fork waits for its original's child, whose end wakes the original, not the
          // fork: the fork looks again after a poll interval.
          const woken = child === undefined || child.parentId === this.runId
          return yield* this.park(woken ? null : Duration.toMillis(this.env.config.pollInterval))
        })
    })
  }

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
    if (this.mode === "execute" && this.recoveries > this.env.config.maxRecoveries) {
      return yield* this.endFailed(
        new RecoveryLimitExceeded({ recoveries: this.recoveries, limit: this.env.config.maxRecoveries })
      )
    }
    if (this.deadlineAt !== null && this.deadlineAt <= (yield* this.now)) {
      return yield* this.endFailed(this.timeoutError())
    }
    const subject = `input of workflow "${this.workflow}"`
    if (this.input._tag === "TooLarge") {
      return yield* this.endFailed(
        new PayloadTooLarge({ subject, bytes: this.input.bytes, limit: this.env.config.maxPayloadBytes })
      )
    }
    const decoded = codec(this.definition.input).decode(this.input.value)
    if (Result.isFailure(decoded)) return yield* this.endFailed(new DecodeError({ subject, issues: decoded.failure }))
    this.decodedInput = decoded.success
    // The workflow's own services were checked by the types of `Pgflows.layer` and captured there.
    let body = Effect.suspend(() => this.definition.run(decoded.success)) as Effect.Effect<
      unknown,
      unknown,
      WorkflowContext
    >
    const plugins = this.env.plugins
    if (plugins !== undefined) {
      const event = this.workflowEvent()
      yield* plugins.fire("beforeWorkflow", event)
      body = plugins.aroundWorkflow(event, body)
    }
    const exit = yield* this.runBody(body, { prefix: "", counter: 0 })
    if (this.decision !== undefined) return yield* this.decided(this.decision)
    if (Exit.isSuccess(exit)) {
      const output = yield* Effect.exit(
        this.encode(this.definition.output, exit.value, `output of workflow "${this.workflow}"`)
      )
      if (Exit.isFailure(output)) return yield* this.decided(this.decision!)
      this.outputValue = exit.value
      return yield* this.end({ kind: "complete", output: output.value })
    }
    const error = this.failureEnvelope(exit.cause)
    const failure = Cause.findErrorOption(exit.cause)
    this.failure = failure._tag === "Some" ? failure.value : new WorkflowDefect({ defect: Cause.pretty(exit.cause) })
    if (this.compensations.length === 0) return yield* this.end({ kind: "fail", error })
    // A saga: undo what completed, in reverse order, each undo durable like any other step.
    const undone = yield* this.runCompensations()
    if (this.decision !== undefined) return yield* this.decided(this.decision)
    return yield* this.end({ kind: "fail", error: { ...error, compensation: undone } })
  })

  /** Ends the execution as its decision says. */
  private decided(decision: Decision): Effect.Effect<Outcome> {
    switch (decision._tag) {
      case "Stop":
        return this.stopOutcome(decision.reason)
      case "Fail":
        return this.endFailed(decision.error)
      case "Suspend":
        return this.suspend(decision.wakeInMillis)
    }
  }

  /** Ends the run failed with one of pgflows' errors. */
  private endFailed(error: EngineError): Effect.Effect<Outcome> {
    this.failure = error
    return this.end({ kind: "fail", error: encodeEngineFailure(error) })
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
      if (this.ending) yield* Fiber.interrupt(this.body)
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
        if (this.decision !== undefined) break
        if (Exit.isSuccess(exit)) undone++
        else failed.push(Cause.pretty(exit.cause))
      }
      return { undone, failed }
    })
  }

  /** The stored form of the workflow's failure: its own typed error, or one of pgflows'. */
  private failureEnvelope(cause: Cause.Cause<unknown>): ErrorEnvelope {
    const failure = Cause.findErrorOption(cause)
    if (failure._tag === "None") return encodeEngineFailure(new WorkflowDefect({ defect: Cause.pretty(cause) }))
    return encodeFailure("workflow", this.definition.error, failure.value, `error of workflow "${this.workflow}"`)
  }

  private timeoutError(): WorkflowTimeout {
    return new WorkflowTimeout({ workflow: this.workflow, deadline: new Date(this.deadlineAt ?? 0).toISOString() })
  }

  private stopOutcome(reason: StopReason): Effect.Effect<Outcome> {
    if (reason === "shutdown") return this.end({ kind: "release" })
    // Cancelled, lease lost or store gone: this execution writes nothing more.
    this.takeHeld()
    return Effect.succeed<Outcome>({ _tag: "Stopped", reason })
  }

  /** Parks the run until its wake-up, or its deadline if sooner. */
  private suspend(wakeInMillis: number | null): Effect.Effect<Outcome> {
    return Effect.flatMap(this.now, (now) => {
      const untilDeadline = this.deadlineAt === null ? null : Math.max(0, this.deadlineAt - now)
      const wake = wakeInMillis === null
        ? untilDeadline
        : untilDeadline === null
        ? wakeInMillis
        : Math.min(wakeInMillis, untilDeadline)
      return this.end({ kind: "suspend", wakeInMillis: wake, observedEvents: this.events })
    })
  }

  private end(transition: TransitionKind): Effect.Effect<Outcome> {
    // A replay check writes nothing: the end is only reported.
    if (this.mode === "check") {
      this.takeHeld()
      return Effect.succeed(
        transition.kind === "complete"
          ? { _tag: "Ended", kind: "complete", output: transition.output }
          : transition.kind === "fail"
          ? { _tag: "Ended", kind: "fail", error: transition.error }
          : { _tag: "Ended", kind: transition.kind }
      )
    }
    // The held checkpoints commit with the transition; a flush under way commits first.
    const write = this.writes.withPermit(Effect.suspend(() => {
      const held = this.takeHeld()
      return this.env.store.transition({
        ...transition,
        runId: this.runId,
        token: this.token,
        msgId: this.msgId,
        ...(held.length === 0
          ? {}
          : { checkpoints: held.map(({ entry }) => ({ ...entry, runId: this.runId, token: this.token })) })
      }).pipe(
        Effect.retry(storeRetry(this.env.config)),
        Effect.tap((result) =>
          result === "ok" ? Effect.forEach(held, (item) => item.durable ?? Effect.void, { discard: true }) : Effect.void
        ),
        Effect.mapError((error) => ({ error, held }))
      )
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
      Effect.catch(({ error, held }) => {
        // The database refused a value of this end (the output, the error, or a held checkpoint):
        // fail the run without them; its held steps are not recorded, so a retry runs them again.
        if (error.rejected && transition.kind !== "fail") {
          const subject = transition.kind === "complete"
            ? `output of workflow "${this.workflow}"${held.length === 0 ? "" : ` or the checkpoints written with it`}`
            : `the checkpoints of run ${this.runId}`
          return this.endFailed(
            new UnstorableValue({ subject, path: "", reason: `PostgreSQL rejected it: ${error.message}` })
          )
        }
        return Effect.as(
          Effect.logWarning(`pgflows: cannot end run ${this.runId} (${transition.kind}): ${error.message}`),
          { _tag: "Stopped", reason: "store-unavailable" } as Outcome
        )
      })
    )
  }
}

type TransitionKind =
  | { readonly kind: "complete"; readonly output: unknown }
  | { readonly kind: "fail"; readonly error: unknown }
  | { readonly kind: "suspend"; readonly wakeInMillis: number | null; readonly observedEvents: number }
  | { readonly kind: "release" }

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
