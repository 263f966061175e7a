/**
 * Exports graph workflows as SQL scripts for a database with pg_durable: moving definitions from dev
 * to prod without deploying code, starting them from SQL or pg_cron, or reading what will run.
 *
 * Each script is one runnable unit: a header comment (workflow, binding, steps, prerequisites, how to
 * start it) and `CREATE OR REPLACE FUNCTION <schema>.pgd_start_<workflow>(p_input jsonb, p_label
 * text) RETURNS text`, which builds the graph with the run's input and calls `df.start`, returning
 * the instance id. The input travels base64-encoded inside the node that binds it, so no value can
 * reach SQL text. Start an instance with `SELECT <schema>.pgd_start_<workflow>('{...}'::jsonb)` as its
 * own statement (pg_durable's worker waits only 5 seconds for the starting transaction to commit).
 *
 * Bindings: `StepBinding.worker()` (default; a `StepWorker` runs the steps) or
 * `StepBinding.http(baseUrl, { secret })` (pg_durable POSTs to `<baseUrl>/steps/<name>`; a `Redacted`
 * secret is written into the script, a `StepBinding.variable` secret is not). Both need
 * `PgDurableMigrations` applied in the pg_durable database.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import type * as Step from "pgflows/Step"
import * as Compiler from "./Compiler.ts"
import * as Graph from "./Graph.ts"
import type * as GraphWorkflow from "./GraphWorkflow.ts"
import * as Dsl from "./internal/dsl.ts"
import { prefix } from "./internal/lower.ts"
import * as Model from "./internal/model.ts"
import * as Parser from "./internal/parser.ts"
import * as Quote from "./internal/quote.ts"
import { GraphCompileError, WorkflowNotFound } from "./PgDurableError.ts"
import * as StepBinding from "./StepBinding.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  readonly workflows?: ReadonlyArray<GraphWorkflow.Any> | undefined
  /** The registered steps. Default: the steps the workflows' graphs were built with. */
  readonly steps?: ReadonlyArray<Step.Any> | undefined
  /** Default `StepBinding.worker()`. */
  readonly binding?: StepBinding.StepBinding | undefined
}

/**
 * What `dryRun` shows: each step call with the SQL pg_durable will run for it, and the whole graph
 * in both renderings.
 *
 * @category models
 * @since 0.1.0
 */
export interface DryRun {
  readonly workflow: string
  readonly binding: StepBinding.StepBinding["_tag"]
  readonly steps: ReadonlyArray<Compiler.StepSql>
  readonly captures: ReadonlyArray<Compiler.Capture>
  /** The graph, functions rendering. */
  readonly sql: string
  /** The graph, operators rendering. */
  readonly operators: string
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Exported {
  readonly workflow: string
  /** The name of the start function the script creates, schema-qualified and quoted. */
  readonly startFunction: string
  readonly sql: string
}

/**
 * @category services
 * @since 0.1.0
 */
export class SqlExporter extends Context.Service<SqlExporter, {
  /** The script of a graph workflow. */
  readonly exportWorkflow: (name: string) => Effect.Effect<string, WorkflowNotFound | GraphCompileError>
  /** The steps and SQL of a workflow, without a script; the run's input defaults to `null`. */
  readonly dryRun: (
    name: string,
    options?: { readonly input?: unknown }
  ) => Effect.Effect<DryRun, WorkflowNotFound | GraphCompileError>
  /**
   * The script of a workflow that runs registered steps one after the other, each getting the
   * previous step's output (the first, the run's input). Every name must be registered.
   */
  readonly compose: (name: string, steps: ReadonlyArray<string>) => Effect.Effect<string, GraphCompileError>
  /** One script per workflow. */
  readonly exportAll: Effect.Effect<ReadonlyArray<Exported>, GraphCompileError>
  /** The workflows it knows. */
  readonly workflows: ReadonlyArray<string>
}>()("@pgflows/pg-durable/SqlExporter") {}

/**
 * Builds an exporter with the configured schema, step queue and channel (`PgflowsConfig`).
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<SqlExporter["Service"]> =>
  Effect.gen(function*() {
    const config = yield* PgflowsConfig.PgflowsConfig
    const workflows = new Map<string, GraphWorkflow.Any>()
    for (const workflow of options.workflows ?? []) workflows.set(workflow.name, workflow)
    const steps = options.steps ?? [...workflows.values()].flatMap((workflow) => [...workflow.graph.steps.values()])
    const binding = options.binding ?? StepBinding.defaultBinding

    const lookup = (name: string) => {
      const workflow = workflows.get(name)
      return workflow === undefined
        ? Effect.fail(new WorkflowNotFound({ workflow: name, known: [...workflows.keys()].sort() }))
        : Effect.succeed(workflow)
    }

    const script = (name: string, graph: Graph.Any, inputSchema: GraphWorkflow.Any["input"] | undefined) =>
      Effect.gen(function*() {
        yield* Parser.load
        // The input node is compiled with a marker value, then replaced by the one built at run time.
        const compiled = yield* Effect.fromResult(Compiler.compileSync(graph.node, config, {
          binding,
          steps,
          input: null,
          inputSchema,
          conflicts: graph.conflicts,
          schemas: graph.schemas
        }))
        return render(name, compiled, config, binding)
      })

    const exportWorkflow = Effect.fn("SqlExporter.exportWorkflow")(function*(name: string) {
      const workflow = yield* lookup(name)
      return (yield* script(workflow.name, workflow.graph, workflow.input)).sql
    })

    const dryRun = Effect.fn("SqlExporter.dryRun")(
      function*(name: string, dryRunOptions?: { readonly input?: unknown }) {
        const workflow = yield* lookup(name)
        const compiled = yield* Compiler.compileNode(workflow.graph.node, {
          binding,
          steps,
          input: dryRunOptions?.input ?? null,
          inputSchema: workflow.input,
          conflicts: workflow.graph.conflicts,
          schemas: workflow.graph.schemas
        })
        return {
          workflow: workflow.name,
          binding: binding._tag,
          steps: compiled.steps,
          captures: compiled.captures,
          sql: compiled.expression,
          operators: Dsl.render(compiled.durable, "operators")
        } satisfies DryRun
      }
    )

    const compose = Effect.fn("SqlExporter.compose")(function*(name: string, stepNames: ReadonlyArray<string>) {
      const problem = Quote.nameProblem(name)
      if (problem !== undefined) {
        return yield* new GraphCompileError({
          rule: "invalid-name",
          path: "workflow",
          reason: `the workflow name ${JSON.stringify(name)} ${problem}; name it differently (the name is written ` +
            "into the script's comments)"
        })
      }
      const node: Model.Node = {
        _tag: "Sequence",
        nodes: stepNames.map((step, index): Model.Node => ({
          _tag: "Step",
          step,
          input: { _tag: "Capture", capture: index === 0 ? Model.inputCapture : `step${index}` },
          capture: `step${index + 1}`
        }))
      }
      const first = steps.find((step) => step.name === stepNames[0])
      return (yield* script(name, Graph.fromNode(node), first?.input as GraphWorkflow.Any["input"] | undefined)).sql
    })

    const exportAll = Effect.forEach(
      [...workflows.values()].sort((a, b) => a.name.localeCompare(b.name)),
      (workflow) =>
        Effect.map(script(workflow.name, workflow.graph, workflow.input), (exported) => ({
          workflow: workflow.name,
          startFunction: exported.startFunction,
          sql: exported.sql
        }))
    ).pipe(Effect.withSpan("SqlExporter.exportAll"))

    return SqlExporter.of({
      exportWorkflow,
      dryRun,
      compose,
      exportAll,
      workflows: [...workflows.keys()].sort()
    })
  })

/**
 * Provides `SqlExporter`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<SqlExporter, PgflowsConfig.PgflowsConfigError> =>
  Layer.effect(SqlExporter, make(options)).pipe(Layer.provide(PgflowsConfig.layerDefault))

/**
 * The name of the start function of a workflow (unquoted): `pgd_start_<name>` when the name is a
 * plain identifier, else a cleaned name with a short hash, so two names never share a function.
 *
 * @category utils
 * @since 0.1.0
 */
export const startFunctionName = (workflow: string): string => {
  if (/^[a-z_][a-z0-9_]{0,52}$/.test(workflow)) return `pgd_start_${workflow}`
  const clean = workflow.toLowerCase().replace(/[^a-z0-9_]+/g, "_").slice(0, 40)
  let hash = 0x811c9dc5
  for (const char of workflow) hash = Math.imul(hash ^ char.codePointAt(0)!, 0x01000193) >>> 0
  return `pgd_start_${clean}_${hash.toString(16).padStart(8, "0")}`
}

// internal

const inputNodeSql = "df.as(df.sql('SELECT convert_from(decode(' || quote_literal(translate(encode(convert_to(" +
  "coalesce(p_input, 'null'::jsonb)::text, 'UTF8'), 'base64'), E'\\n', '')) || ', ''base64''), ''UTF8'') AS input'), " +
  `'${prefix}${Model.inputCapture}')`

/** Lines of a `--` comment; whatever else the text holds is escaped, so nothing can end a line early. */
const comment = (lines: ReadonlyArray<string>): string =>
  lines.map((line) => `-- ${Quote.commentText(line)}`.trimEnd()).join("\n")

const render = (
  name: string,
  compiled: Compiler.Compiled,
  config: PgflowsConfig.PgflowsConfig,
  binding: StepBinding.StepBinding
): Exported => {
  const schema = `"${config.schema}"`
  const fn = `${schema}."${startFunctionName(name)}"`
  const inputNode = compiled.input === undefined ? undefined : findInputNode(compiled.durable)
  const expression = Dsl.render(compiled.durable, "functions", (node) => node === inputNode ? "input_node" : undefined)
  const bindingText = binding._tag === "worker"
    ? `worker: steps go to queue ${config.stepQueue} (schema ${config.schema}, channel ${config.notifyChannel}); ` +
      "run a StepWorker for them"
    : `http: pg_durable POSTs each step's input to ${binding.baseUrl}/steps/<name> (2xx with the output as JSON; ` +
      `any other answer fails the node), with the shared secret in ${binding.secretHeader}${
        binding.secret !== undefined && !Redacted.isRedacted(binding.secret)
          ? ` from pg_durable variable ${binding.secret.name} (df.setvar before starting)`
          : " (written into this script: keep it private, or use StepBinding.variable)"
      }`
  const header = comment([
    `pgflows: pg_durable workflow "${name}"`,
    "Generated by @pgflows/pg-durable (SqlExporter); do not edit, export again.",
    `Binding: ${bindingText}.`,
    "Steps:",
    ...(compiled.steps.length === 0
      ? ["  (none)"]
      : compiled.steps.map((step) =>
        `  ${step.key} ${step.step}${step.capture === undefined ? "" : ` -> capture ${step.capture}`}`
      )),
    `Graph: depth ${compiled.depth}, ${compiled.nodes} pg_durable nodes.`,
    "Requires, in the database named by pg_durable.database: CREATE EXTENSION pg_durable, and pgflows'",
    `push-mode functions (PgDurableMigrations) in schema ${config.schema}.`,
    "Start an instance (as its own statement, so it commits at once):",
    `  SELECT ${fn}('<input as JSON>'::jsonb, 'optional label');`
  ])
  const body = inputNode === undefined
    ? `BEGIN\n  RETURN df.start(${expression}, p_label);\nEND\n`
    : `DECLARE\n  input_node text := ${inputNodeSql};\nBEGIN\n  RETURN df.start(${expression}, p_label);\nEND\n`
  const tag = Quote.dollarTag(body)
  const sql = `${header}
CREATE OR REPLACE FUNCTION ${fn}(p_input jsonb DEFAULT 'null'::jsonb, p_label text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
AS ${tag}
${body}${tag};
`
  return { workflow: name, startFunction: fn, sql }
}

const findInputNode = (root: Dsl.Dsl): Dsl.Dsl | undefined => {
  let node: Dsl.Dsl = root
  while (node.kind === "seq" && node.name === undefined) node = node.left
  return node.kind === "sql" && node.name === `${prefix}${Model.inputCapture}` ? node : undefined
}
