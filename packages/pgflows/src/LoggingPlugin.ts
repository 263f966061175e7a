/**
 * A plugin that logs each workflow execution and step attempt through Effect's `Logger`: one
 * structured line per event, annotated with `pgflows.run.id`, `pgflows.workflow`, and for steps
 * `pgflows.step`, `pgflows.step.key` and `pgflows.step.attempt`, with `pgflows.duration_ms` on ends.
 * Replayed steps log nothing (see `Plugin`).
 *
 * @example
 * ```ts
 * const Live = Pgflows.layerPg({ workflows: [order], plugins: [LoggingPlugin.plugin] })
 * // timestamp=... level=INFO message="step charge completed" pgflows.run.id=order-1 pgflows.step=charge ...
 * ```
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as LogLevel from "effect/LogLevel"
import * as Plugin from "./Plugin.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** The level of the lines of executions and attempts that went well (default `"Info"`). */
  readonly level?: LogLevel.Severity | undefined
  /** Log steps as well as workflows (default `true`). */
  readonly steps?: boolean | undefined
}

/**
 * @category constructors
 * @since 0.1.0
 */
export const make = (options?: Options): Plugin.Plugin => {
  const level = options?.level ?? "Info"
  const steps = options?.steps ?? true
  const runAnnotations = (event: { readonly runId: string; readonly workflow: string }) => ({
    "pgflows.run.id": event.runId,
    "pgflows.workflow": event.workflow
  })
  const stepAnnotations = (event: Plugin.StepEvent) => ({
    ...runAnnotations(event),
    "pgflows.step": event.step,
    "pgflows.step.key": event.key,
    "pgflows.step.attempt": event.attempt
  })
  return Plugin.make("pgflows/logging", {
    beforeWorkflow: (event) =>
      Effect.logWithLevel(level)(`workflow ${event.workflow} ${event.resumed ? "resumed" : "started"}`).pipe(
        Effect.annotateLogs(runAnnotations(event))
      ),
    afterWorkflow: (event) =>
      Effect.logWithLevel(level)(`workflow ${event.workflow} completed`).pipe(
        Effect.annotateLogs({ ...runAnnotations(event), "pgflows.duration_ms": event.durationMillis })
      ),
    onWorkflowError: (event) =>
      Effect.logError(`workflow ${event.workflow} failed: ${describe(event.error)}`).pipe(
        Effect.annotateLogs({ ...runAnnotations(event), "pgflows.duration_ms": event.durationMillis })
      ),
    onWorkflowCancelled: (event) =>
      Effect.logWarning(`workflow ${event.workflow} cancelled`).pipe(
        Effect.annotateLogs({ ...runAnnotations(event), "pgflows.duration_ms": event.durationMillis })
      ),
    ...(steps
      ? {
        beforeStep: (event: Plugin.StepEvent) =>
          Effect.logDebug(`step ${event.step} attempt ${event.attempt} started`).pipe(
            Effect.annotateLogs(stepAnnotations(event))
          ),
        afterStep: (event: Plugin.StepEndEvent) =>
          Effect.logWithLevel(level)(`step ${event.step} completed`).pipe(
            Effect.annotateLogs({ ...stepAnnotations(event), "pgflows.duration_ms": event.durationMillis })
          ),
        onStepError: (event: Plugin.StepErrorEvent) =>
          (event.final ? Effect.logError : Effect.logWarning)(
            `step ${event.step} attempt ${event.attempt} failed${event.final ? "" : ", will retry"}: ${
              describe(event.error)
            }`
          ).pipe(Effect.annotateLogs({ ...stepAnnotations(event), "pgflows.duration_ms": event.durationMillis }))
      }
      : {})
  })
}

/**
 * The logging plugin with its defaults.
 *
 * @category constructors
 * @since 0.1.0
 */
export const plugin: Plugin.Plugin = make()

// internal

const describe = (error: unknown): string => {
  if (Cause.isCause(error)) return Cause.pretty(error)
  if (error instanceof Error) {
    if (error.message !== "") return `${error.name}: ${error.message}`
    const fields = Object.fromEntries(Object.entries(error).filter(([key]) => key !== "_tag"))
    return Object.keys(fields).length === 0 ? error.name : `${error.name} ${JSON.stringify(fields)}`
  }
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}
