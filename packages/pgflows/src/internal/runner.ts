/**
 * Executes claimed runs and keeps their leases: the part of a worker shared by `processOnce` and
 * `runWorker`.
 *
 * An execution runs in a fiber of its own, detached, in the context of the worker that launched it
 * (`processOnce`, the worker loop; a run handed over by `start` runs in the context of the worker
 * that took it, never in the caller's: see `internal/slots.ts`), with the services captured when
 * the `Pgflows` layer was built on top.
 *
 * When the layer closes (the program it was provided to ends: SIGTERM under `NodeRuntime.runMain`,
 * an interrupt), the engine stops as a worker does: no more claims or hand-offs (`closing`), the
 * executions in flight get `PgflowsConfig.shutdownGrace` to finish, and the rest are stopped with
 * `shutdown`, which hands their runs back (lease released, claimable at once). A layer closes
 * before the fibers its program forked are interrupted, so this, not the worker loop, is what
 * stops the runs of a worker forked with `Effect.forkChild`.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import type * as Scope from "effect/Scope"
import type * as Store from "../Store.ts"
import type * as Workflow from "../Workflow.ts"
import { type EngineEnv, markerDelay, type Outcome, RunExecution, type StopReason } from "./engine.ts"
import type * as RunEvents from "./runEvents.ts"
import * as Versions from "./versions.ts"

export interface Inflight {
  readonly execution: RunExecution
  readonly fiber: Fiber.Fiber<Outcome>
}

/**
 * What a process learns about runs: the store's notifications, and the ends of runs executed here,
 * which carry their outcome so a waiting `result` needs no query.
 */
export interface Runner {
  readonly worker: string
  readonly inflight: ReadonlyMap<string, Inflight>
  /** Starts executing a claimed run; its fiber ends when the execution has ended. */
  readonly launch: (claimed: Store.ClaimedRun) => Effect.Effect<Fiber.Fiber<Outcome>>
  /** Stops the execution of a run held here, if any. */
  readonly interrupt: (runId: string, reason: StopReason) => Effect.Effect<void>
  /** Stops executions with `shutdown` (their runs are handed back) and waits for them to end. */
  readonly handBack: (executions: ReadonlyArray<Inflight>) => Effect.Effect<void>
  /** Notifications, and the ends of runs executed here. */
  readonly events: RunEvents.RunEvents
  /** Whether the engine is shutting down: workers claim nothing more. */
  readonly closing: () => boolean
}

export const make = (options: {
  readonly env: EngineEnv
  /** The definitions this process executes, by workflow key (`internal/versions.ts`). */
  readonly registry: ReadonlyMap<string, Workflow.Any>
  readonly worker: string
  readonly events: RunEvents.RunEvents
}): Effect.Effect<Runner, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { env, registry, events } = options
    const scope = yield* Effect.scope
    const inflight = new Map<string, Inflight>()
    // Open while runs are in flight: the periodic fibers below sleep on it otherwise, so an idle
    // process (and a TestClock moved by days) wakes them for nothing.
    const busy = Latch.makeUnsafe(false)

    const launch = (claimed: Store.ClaimedRun) =>
      Effect.gen(function*() {
        // A worker claims only the workflow versions it registers (`Store.ClaimRequest`).
        const definition = registry.get(Versions.key(claimed.run.workflow, claimed.run.version))!
        const execution = new RunExecution(env, definition, claimed, yield* Clock.currentTimeMillis)
        const fiber = yield* execution.run.pipe(
          Effect.tap((outcome) =>
            outcome._tag === "Ended" && (outcome.kind === "complete" || outcome.kind === "fail")
              ? Effect.sync(() =>
                events.publish({
                  _tag: "Ended",
                  runId: claimed.run.id,
                  workflow: claimed.run.workflow,
                  version: claimed.run.version,
                  status: outcome.kind === "complete" ? "completed" : "failed",
                  output: outcome.kind === "complete" ? outcome.output : null,
                  error: outcome.kind === "fail" ? outcome.error : null
                })
              )
              : Effect.void
          ),
          Effect.ensuring(Effect.sync(() => {
            if (inflight.get(claimed.run.id)?.execution === execution) inflight.delete(claimed.run.id)
            if (inflight.size === 0) busy.closeUnsafe()
          })),
          // Detached: the layer's finalizer below decides how executions end, not the order of a scope.
          Effect.forkDetach({ startImmediately: true })
        )
        if (fiber.pollUnsafe() === undefined) {
          inflight.set(claimed.run.id, { execution, fiber })
          busy.openUnsafe()
        }
        return fiber
      })

    const interrupt = (runId: string, reason: StopReason) =>
      Effect.suspend(() => {
        const running = inflight.get(runId)
        return running === undefined ? Effect.void : running.execution.interrupt(reason)
      })

    const handBack = (executions: ReadonlyArray<Inflight>) =>
      Effect.andThen(
        Effect.forEach(executions, ({ execution }) => execution.interrupt("shutdown"), {
          concurrency: "unbounded",
          discard: true
        }),
        Fiber.awaitAll(executions.map(({ fiber }) => fiber))
      )

    // Heartbeat: renew the leases of runs in flight; stop those whose lease was lost or that were
    // cancelled (the store no longer lists their token).
    const every = Duration.millis(Math.max(50, Duration.toMillis(env.config.lease) / 3))
    let heartbeatFailures = 0
    yield* Effect.forkIn(
      Effect.forever(
        Effect.gen(function*() {
          yield* busy.await
          yield* Effect.sleep(every)
          if (inflight.size === 0) return
          const held = [...inflight.values()]
          const alive = yield* env.store.heartbeat(
            held.map(({ execution }) => ({ runId: execution.runId, token: execution.token, msgId: execution.msgId })),
            Duration.toMillis(env.config.lease)
          ).pipe(
            Effect.catch((error) =>
              Effect.as(
                heartbeatFailures++ === 0
                  ? Effect.logWarning(`pgflows: cannot renew leases (${error.message}); retrying`)
                  : Effect.void,
                undefined
              )
            )
          )
          if (alive === undefined) return
          if (heartbeatFailures > 0) {
            heartbeatFailures = 0
            yield* Effect.logInfo("pgflows: leases renewed again")
          }
          yield* Effect.forEach(
            held.filter(({ execution }) => !alive.has(execution.token) && inflight.get(execution.runId) !== undefined),
            ({ execution }) => Effect.forkIn(execution.interrupt("lease-lost"), scope),
            { discard: true }
          )
        })
      ),
      scope
    )

    // Records step attempts that last, for every run in flight (see `RunExecution.markLongAttempts`).
    yield* Effect.forkIn(
      Effect.forever(
        Effect.gen(function*() {
          yield* busy.await
          yield* Effect.sleep(Duration.millis(Duration.toMillis(markerDelay) / 2))
          if (inflight.size === 0) return
          const now = yield* Clock.currentTimeMillis
          yield* Effect.forEach(inflight.values(), ({ execution }) => execution.markLongAttempts(now), {
            concurrency: "unbounded",
            discard: true
          })
        })
      ),
      scope
    )

    // Added after the periodic fibers, so it runs before they are interrupted (finalizers run in
    // reverse order, and the leases are renewed during the grace).
    let closing = false
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        const running = [...inflight.values()]
        if (running.length === 0) return
        yield* Effect.logInfo(`pgflows: engine ${options.worker} closing, ${running.length} runs in flight`)
        yield* Effect.timeoutOption(Fiber.awaitAll(running.map(({ fiber }) => fiber)), env.config.shutdownGrace)
        const remaining = [...inflight.values()]
        yield* handBack(remaining)
        yield* Effect.logInfo(`pgflows: engine ${options.worker} closed, ${remaining.length} runs handed back`)
      })
    )

    return { worker: options.worker, inflight, launch, interrupt, handBack, events, closing: () => closing }
  })
