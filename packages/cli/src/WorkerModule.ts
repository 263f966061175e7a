/**
 * The contract between `pgflows worker <module>` (and `pgflows replay <module>`) and the user's
 * code: an ES module, compiled to JavaScript (or TypeScript that Node runs as it is), that exports
 *
 * - `workflows`: an array of `Workflow.make(...)` definitions, every version the worker serves;
 * - `layer` (optional): a `Layer` that provides what the workflows' steps need (a database client,
 *   an HTTP client, configuration), with no requirements of its own left;
 * - `graphs` (optional, for `pgflows export-sql`): an array of `@pgflows/pg-durable` graph
 *   workflows.
 *
 * The same names may instead be the fields of the default export (`export default { workflows,
 * layer }`). The module must import `pgflows` from the same installation as the command (a
 * dependency of the same project), so that its definitions are the ones the worker knows.
 *
 * @example
 * ```ts
 * // src/worker.ts, compiled to dist/worker.js; run with `npx pgflows worker dist/worker.js`
 * import { Layer } from "effect"
 * import { processOrder, shipOrder } from "./workflows.ts"
 * import { PaymentsLive } from "./payments.ts"
 *
 * export const workflows = [processOrder, shipOrder]
 * export const layer: Layer.Layer<Payments> = PaymentsLive
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as Workflow from "pgflows/Workflow"

/**
 * What a module gives the command.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerModule {
  /** The module's path, absolute. */
  readonly path: string
  readonly workflows: ReadonlyArray<Workflow.Any>
  readonly layer: Layer.Layer<any, any, never> | undefined
  /** The `graphs` export, unchecked (see `pgflows export-sql`). */
  readonly graphs: ReadonlyArray<unknown> | undefined
}

/**
 * The module cannot be used: missing, failing to load, or not exporting what the contract asks for.
 * `reason` says what to change.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerModuleError extends Schema.TaggedError<WorkerModuleError>()("WorkerModuleError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/**
 * Imports a module and checks what it exports. `require` says which exports must be there:
 * `workflows` (the worker, the replay check) or `graphs` (the SQL export).
 *
 * @category constructors
 * @since 0.1.0
 */
export const load = (
  file: string,
  require: "workflows" | "graphs" = "workflows"
): Effect.Effect<WorkerModule, WorkerModuleError> =>
  Effect.gen(function*() {
    const path = Path.resolve(file)
    const fail = (reason: string) => new WorkerModuleError({ path, reason })
    if (!Fs.existsSync(path)) {
      return yield* fail("there is no such file (give the path of the compiled module, such as dist/worker.js)")
    }
    const imported = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(path).href) as Promise<Record<string, unknown>>,
      catch: (cause) => fail(`the module failed to load: ${cause instanceof Error ? cause.message : String(cause)}`)
    })
    const fallback = typeof imported["default"] === "object" && imported["default"] !== null
      ? imported["default"] as Record<string, unknown>
      : {}
    const exported = (name: string) => imported[name] ?? fallback[name]
    const workflows = exported("workflows")
    const layer = exported("layer")
    const graphs = exported("graphs")
    if (workflows !== undefined) {
      if (!Array.isArray(workflows) || workflows.length === 0) {
        return yield* fail("`workflows` must be a non-empty array of Workflow.make(...) definitions")
      }
      const index = workflows.findIndex((workflow) => !Workflow.isWorkflow(workflow))
      if (index >= 0) {
        return yield* fail(
          `workflows[${index}] is not a pgflows workflow (made with Workflow.make from the same pgflows installation)`
        )
      }
    } else if (require === "workflows") {
      return yield* fail("it exports no `workflows` (export const workflows = [myWorkflow, ...])")
    }
    if (layer !== undefined && !Layer.isLayer(layer)) {
      return yield* fail("`layer` must be an Effect Layer that provides the workflows' services")
    }
    if (graphs !== undefined && !Array.isArray(graphs)) {
      return yield* fail("`graphs` must be an array of GraphWorkflow.make(...) graph workflows")
    }
    if (require === "graphs" && (graphs === undefined || graphs.length === 0)) {
      return yield* fail("it exports no `graphs` (export const graphs = [myGraphWorkflow, ...])")
    }
    return {
      path,
      workflows: (workflows ?? []) as ReadonlyArray<Workflow.Any>,
      layer: layer as Layer.Layer<any, any, never> | undefined,
      graphs: graphs as ReadonlyArray<unknown> | undefined
    }
  })
