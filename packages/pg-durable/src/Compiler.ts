/**
 * Compiles a graph to pg_durable SQL, after checking every rule pg_durable needs (see
 * `GraphCompileError`).
 *
 * One graph, three texts:
 *
 * - `expression` in the **functions** rendering (the default): nested `df.*` calls, every SQL node
 *   wrapped in `df.sql(...)`, values as literals;
 * - `expression` in the **operators** rendering, for reading: `~> |=> & | ?> !> @>`, every operation
 *   parenthesised (PostgreSQL gives all these operators one precedence and groups them left to
 *   right, whatever pg_durable's documentation says);
 * - `parameterised`: the functions rendering with every value a bind parameter, which is what
 *   `PgDurableClient` executes.
 *
 * Captures become result names with the reserved prefix `__pgf_` (user SQL may not contain it), so
 * they cannot collide with text in SQL nodes; long sequences become balanced `df.seq` trees; cron
 * expressions get pg_durable's day-of-week numbering. Every SQL text of the result (user nodes,
 * conditions, the nodes written for steps) is parsed with PostgreSQL's parser (`libpg-query`) and
 * must be exactly one statement.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Schema from "effect/Schema"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import type * as Step from "pgflows/Step"
import type * as Graph from "./Graph.ts"
import * as Dsl from "./internal/dsl.ts"
import * as Lower from "./internal/lower.ts"
import * as Model from "./internal/model.ts"
import * as Parser from "./internal/parser.ts"
import * as Quote from "./internal/quote.ts"
import * as Validate from "./internal/validate.ts"
import { GraphCompileError } from "./PgDurableError.ts"
import * as StepBinding from "./StepBinding.ts"

/**
 * @category models
 * @since 0.1.0
 */
export type Rendering = "functions" | "operators"

/**
 * What a capture holds (see `Graph`): its kind, and the Schema of its JSON value when known (a
 * step's output Schema, a signal's payload Schema, the workflow's input Schema).
 *
 * @category models
 * @since 0.1.0
 */
export type Capture = Validate.CaptureInfo

/**
 * Limits on the pg_durable graph. pg_durable HEAD rejects graphs deeper than 256 or larger than
 * 10 000 nodes; 0.2.5 (the released version) silently corrupts graphs deeper than about 127.
 *
 * @category models
 * @since 0.1.0
 */
export interface Limits {
  readonly maxDepth: number
  readonly maxNodes: number
}

/**
 * @category models
 * @since 0.1.0
 */
export const defaultLimits: Limits = { maxDepth: 100, maxNodes: 10_000 }

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Default `"functions"`. */
  readonly rendering?: Rendering | undefined
  /** Lays the operators rendering out over several lines, indented (default false). */
  readonly pretty?: boolean | undefined
  /** Default `StepBinding.worker()`. */
  readonly binding?: StepBinding.StepBinding | undefined
  /**
   * The registered steps; every step the graph calls must be among them. Default: the steps the
   * graph was built with.
   */
  readonly steps?: ReadonlyArray<Step.Any> | undefined
  /** The run's input (JSON), when the graph reads it. */
  readonly input?: unknown
  /** The Schema of the run's input, for the capture table. */
  readonly inputSchema?: Schema.Top | undefined
  readonly limits?: Partial<Limits> | undefined
}

/**
 * The SQL of one step call, as `dryRun` shows it.
 *
 * @category models
 * @since 0.1.0
 */
export interface StepSql {
  /** The step's key in the graph (`s1`, `s2`, ... in execution order). */
  readonly key: string
  readonly step: string
  readonly capture: string | undefined
  /** The pg_durable nodes written for the call, in the functions rendering. */
  readonly sql: ReadonlyArray<string>
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Compiled {
  readonly rendering: Rendering
  /** The graph expression, values inline. */
  readonly expression: string
  /** `SELECT df.start(<expression>)`. */
  readonly statement: string
  /** The functions rendering with bind parameters. */
  readonly parameterised: { readonly expression: string; readonly params: ReadonlyArray<unknown> }
  readonly captures: ReadonlyArray<Capture>
  readonly steps: ReadonlyArray<StepSql>
  /** Nesting depth and node count of the pg_durable graph. */
  readonly depth: number
  readonly nodes: number
  /** The graph that was compiled, in canonical form (what the decompiler gives back). */
  readonly graph: Model.Node
  /** The run's input, when the graph reads it. */
  readonly input: { readonly value: Model.Json } | undefined
  /** The pg_durable graph (for the decompiler's checks). */
  readonly durable: Dsl.Dsl
}

/**
 * Compiles a graph whose captures are all bound (the run's input counts as bound when given).
 *
 * @category compiling
 * @since 0.1.0
 */
export const compile = <G extends Graph.Any>(
  graph: G & Graph.Closed<G, { readonly input: any }>,
  options?: Options
): Effect.Effect<Compiled, GraphCompileError> =>
  compileNode(graph.node, {
    ...options,
    steps: options?.steps ?? [...graph.steps.values()],
    conflicts: graph.conflicts,
    schemas: graph.schemas
  })

/**
 * Compiles an untyped graph (from a `GraphSpec`, or `Graph.fromNode`). Steps are looked up by name in
 * `options.steps`.
 *
 * @category compiling
 * @since 0.1.0
 */
export const compileNode = (
  node: Model.Node,
  options?: Options & {
    readonly conflicts?: ReadonlySet<string> | undefined
    readonly schemas?: ReadonlyMap<string, Schema.Top> | undefined
  }
): Effect.Effect<Compiled, GraphCompileError> =>
  Effect.gen(function*() {
    yield* Parser.load
    const config = yield* PgflowsConfig.PgflowsConfig
    return yield* Effect.fromResult(compileSync(node, config, options ?? {}))
  })

/**
 * `SELECT df.start(...)` for a compiled graph with bind parameters: the graph's, then the label and,
 * with `transactionMode`, pg_durable's `transaction_mode` (0.2.5 and later).
 *
 * @category compiling
 * @since 0.1.0
 */
export const startStatement = (compiled: Compiled, options?: {
  readonly label?: string | undefined
  readonly transactionMode?: "caller" | "new" | undefined
}): { readonly text: string; readonly params: ReadonlyArray<unknown> } => {
  const params = [...compiled.parameterised.params, options?.label ?? null]
  const label = `$${params.length}::text`
  if (options?.transactionMode === undefined) {
    return { text: `SELECT df.start(${compiled.parameterised.expression}, ${label}) AS instance_id`, params }
  }
  params.push(options.transactionMode)
  return {
    text:
      `SELECT df.start(${compiled.parameterised.expression}, ${label}, NULL, $${params.length}::text) AS instance_id`,
    params
  }
}

/**
 * Translates a Unix cron expression (day of week 0-7, Sunday = 0 or 7) to pg_durable's (1-7, Sunday
 * = 1); fails with the reason when pg_durable would read it differently.
 *
 * @category compiling
 * @since 0.1.0
 */
export { toPgDurable as translateCron } from "./internal/cron.ts"

/**
 * The compiler itself, synchronously, with the configuration given: for callers that already loaded
 * the parser (any Effect of this package loads it) and hold a `PgflowsConfig`, such as property
 * tests and the exporter.
 *
 * @category compiling
 * @since 0.1.0
 */
export const compileSync = (
  graphNode: Model.Node,
  config: PgflowsConfig.PgflowsConfig,
  options: Options & {
    readonly conflicts?: ReadonlySet<string> | undefined
    readonly schemas?: ReadonlyMap<string, Schema.Top> | undefined
  }
): Result.Result<Compiled, GraphCompileError> => {
  const rendering = options.rendering ?? "functions"
  const limits = { ...defaultLimits, ...options.limits }
  for (const name of options.conflicts ?? []) {
    return Result.fail(
      new GraphCompileError({
        rule: "step-not-registered",
        path: "graph",
        reason: `two different steps are named "${name}"; a StepWorker could run only one of them: rename one`
      })
    )
  }
  const binding = resolveBinding(options.binding ?? StepBinding.defaultBinding, config)
  if (Result.isFailure(binding)) return Result.fail(binding.failure)
  const node = Model.normalize(graphNode, false)
  const steps = new Map<string, Step.Any>()
  for (const step of options.steps ?? []) steps.set(step.name, step)
  const usesInput = readsInput(node)
  if (options.input !== undefined) {
    const problem = Quote.jsonProblem(options.input)
    if (problem !== undefined) {
      return Result.fail(
        new GraphCompileError({ rule: "invalid-value", path: "input", reason: `the input is not JSON: ${problem}` })
      )
    }
  }
  const captures = Validate.validate(node, {
    steps,
    input: options.input !== undefined,
    inputSchema: options.inputSchema,
    captureSchemas: options.schemas ?? new Map()
  })
  if (Result.isFailure(captures)) return Result.fail(captures.failure)
  const input = usesInput && options.input !== undefined ? { value: options.input as Model.Json } : undefined
  const lowered = Lower.lower(node, binding.success, input)
  const depth = Dsl.depth(lowered.dsl)
  const size = Dsl.size(lowered.dsl)
  if (depth > limits.maxDepth) {
    return Result.fail(
      new GraphCompileError({
        rule: "graph-too-deep",
        path: "graph",
        reason:
          `the pg_durable graph is ${depth} levels deep, over the limit of ${limits.maxDepth} (pg_durable 0.2.5 ` +
          "corrupts graphs deeper than about 127): flatten nested branches and loops, or split the work into " +
          "instances of their own"
      })
    )
  }
  if (size > limits.maxNodes) {
    return Result.fail(
      new GraphCompileError({
        rule: "graph-too-large",
        path: "graph",
        reason: `the pg_durable graph has ${size} nodes, over the limit of ${limits.maxNodes}: split the work into ` +
          "several instances"
      })
    )
  }
  for (const text of Dsl.sqlTexts(lowered.dsl)) {
    const checked = text
      .replace(/\$__pgf_[A-Za-z0-9_]*\.\*/g, "(SELECT NULL) AS __pgf_rows")
      .replace(/\$__pgf_[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?\??/g, "NULL")
    const parsed = Parser.parse(checked)
    if (parsed._tag === "Error" || parsed.statements.length !== 1) {
      return Result.fail(
        new GraphCompileError({
          rule: "sql-not-one-statement",
          path: "graph",
          reason: `a compiled SQL node is not one statement (${
            parsed._tag === "Error" ? parsed.message : `${parsed.statements.length} statements`
          }): ${text}`
        })
      )
    }
  }
  const expression = rendering === "operators" && options.pretty === true
    ? Dsl.pretty(lowered.dsl)
    : Dsl.render(lowered.dsl, rendering)
  const parameterised = Dsl.renderParameterised(lowered.dsl)
  return Result.succeed({
    rendering,
    expression,
    statement: `SELECT df.start(${expression})`,
    parameterised: { expression: parameterised.text, params: parameterised.params },
    captures: captures.success,
    steps: lowered.calls.map((call) => ({
      key: call.key,
      step: call.step,
      capture: call.capture,
      sql: call.nodes.map((dsl) => Dsl.render(dsl, "functions"))
    })),
    depth,
    nodes: size,
    graph: Model.normalize(node),
    input,
    durable: lowered.dsl
  })
}

// internal

const resolveBinding = (
  binding: StepBinding.StepBinding,
  config: PgflowsConfig.PgflowsConfig
): Result.Result<Lower.Binding, GraphCompileError> => {
  const fail = (reason: string) =>
    Result.fail(new GraphCompileError({ rule: "invalid-binding", path: "binding", reason }))
  const schema = `"${config.schema}"`
  if (binding._tag === "worker") {
    if (!Number.isInteger(binding.waitSeconds) || binding.waitSeconds < 1 || binding.waitSeconds > 2_147_483_647) {
      return fail(`the worker binding waits ${binding.waitSeconds} seconds; use a whole number of seconds from 1`)
    }
    return Result.succeed({
      _tag: "worker",
      schema,
      queue: config.stepQueue,
      channel: config.notifyChannel,
      waitSeconds: binding.waitSeconds
    })
  }
  if (!/^https?:\/\/[^/\s]+(\/[^\s]*)?$/.test(binding.baseUrl)) {
    return fail(`base URL ${JSON.stringify(binding.baseUrl)} is not an http(s) URL with a host`)
  }
  if (
    /[${}]/.test(binding.baseUrl) || Quote.controlCharacter(binding.baseUrl) !== undefined ||
    Quote.textProblem(binding.baseUrl) !== undefined
  ) {
    return fail("the base URL must not contain $, { or } (pg_durable rewrites them in URLs) or control characters")
  }
  if (!Number.isInteger(binding.timeoutSeconds) || binding.timeoutSeconds < 1) {
    return fail(`the HTTP binding's timeout of ${binding.timeoutSeconds} seconds must be a whole number from 1`)
  }
  const headerProblem = (value: string) =>
    /[${}]/.test(value) || Quote.controlCharacter(value) !== undefined || Quote.textProblem(value) !== undefined
  const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
  const reserved = new Set(["content-type", "x-pgflows-instance-id", "x-pgflows-result-key"])
  if (!headerName.test(binding.secretHeader) || reserved.has(binding.secretHeader.toLowerCase())) {
    return fail(`the secret header ${JSON.stringify(binding.secretHeader)} is not a valid header name of its own`)
  }
  reserved.add(binding.secretHeader.toLowerCase())
  for (const [name, value] of Object.entries(binding.headers)) {
    if (!headerName.test(name) || headerProblem(value)) {
      return fail(
        `header ${JSON.stringify(name)} must be a valid header name with a value without $, {, } or control characters`
      )
    }
    if (reserved.has(name.toLowerCase())) {
      return fail(`header ${JSON.stringify(name)} is one the binding sends itself; it cannot be replaced`)
    }
  }
  const secret = binding.secret
  if (secret === undefined) {
    return fail(
      "the HTTP binding has no secret: the step endpoint (@pgflows/server) refuses calls without it; pass " +
        "StepBinding.http(baseUrl, { secret: Redacted.make(...) }) or { secret: StepBinding.variable(name) }"
    )
  }
  let secretValue: string
  if (Redacted.isRedacted(secret)) {
    secretValue = Redacted.value(secret)
    if (secretValue === "" || headerProblem(secretValue) || /[^\x21-\x7e]/.test(secretValue)) {
      return fail(
        "the secret must be printable ASCII without spaces, $, { or } (pg_durable rewrites $name and {name} in headers)"
      )
    }
  } else {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(secret.name) || secret.name.startsWith("sys_")) {
      return fail(
        `the secret's variable ${JSON.stringify(secret.name)} must be an identifier that does not start with sys_`
      )
    }
    secretValue = `{${secret.name}}`
  }
  return Result.succeed({
    _tag: "http",
    schema,
    baseUrl: binding.baseUrl,
    timeoutSeconds: binding.timeoutSeconds,
    headers: Object.entries(binding.headers),
    secret: [binding.secretHeader, secretValue]
  })
}

const readsInput = (node: Model.Node): boolean => {
  let found = false
  Model.walk(node, (child) => {
    if (found) return
    const texts: Array<Model.Text> = []
    switch (child._tag) {
      case "Step":
        if (Model.exprCaptures(child.input).includes(Model.inputCapture)) found = true
        return
      case "Sql":
        texts.push(child.sql)
        break
      case "Branch":
        texts.push(child.condition)
        break
      case "Loop":
        if (child.while !== undefined) texts.push(child.while)
        break
      case "Http":
        texts.push(
          child.url,
          ...(child.body === undefined ? [] : [child.body]),
          ...(child.headers ?? []).map(([, v]) => v)
        )
        break
      case "IfRows":
        if (child.rowsOf === Model.inputCapture) found = true
        return
    }
    if (texts.some((text) => Model.textRefs(text).some((ref) => ref.capture === Model.inputCapture))) found = true
  })
  return found
}
