/**
 * GraphSpec: the graph algebra as a JSON document, for workflows defined at run time (from a
 * config file, an API request, a database row). It is decoded with Schema, discriminated on `type`,
 * and has a JSON Schema (`jsonSchema`) for editors and UIs.
 *
 * Nodes: `step`, `sleep`, `wait_signal`, `wait_schedule`, `sequence`, `parallel` (`mode` `all`, the
 * default, or `race`), `branch`, `loop` and `break`. A spec holds **data, never SQL**: step inputs
 * are expressions over the run's input, captures and JSON constants (`{ "from": "capture", "capture":
 * "receipt", "path": ["id"] }`), conditions are comparisons of such expressions, and every constant
 * becomes an escaped JSON literal inside the compiled node (the node itself is a bound parameter
 * when `PgDurableClient` runs it). Steps are named, and must be registered with the compiler.
 *
 * @example
 * ```json
 * { "version": 1, "graph": { "type": "sequence", "nodes": [
 *   { "type": "step", "step": "charge_payment", "capture": "receipt" },
 *   { "type": "wait_signal", "signal": "approval", "timeout_seconds": 86400, "capture": "approval" },
 *   { "type": "branch",
 *     "if": { "type": "compare", "op": "eq",
 *             "left": { "from": "capture", "capture": "approval", "path": ["data", "approved"] },
 *             "right": { "from": "value", "value": true } },
 *     "then": { "type": "step", "step": "ship", "input": { "from": "capture", "capture": "receipt" } },
 *     "else": { "type": "step", "step": "refund", "input": { "from": "capture", "capture": "receipt" } } }
 * ] } }
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as JsonSchema from "effect/JsonSchema"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { toIssues } from "pgflows/JsonCodec"
import * as Compiler from "./Compiler.ts"
import * as Graph from "./Graph.ts"
import { exprText } from "./internal/lower.ts"
import * as Model from "./internal/model.ts"
import type { GraphCompileError } from "./PgDurableError.ts"
import { GraphSpecError } from "./PgDurableError.ts"

/**
 * An input expression.
 *
 * @category models
 * @since 0.1.0
 */
export type Input =
  | { readonly from: "input"; readonly path?: ReadonlyArray<string> }
  | { readonly from: "capture"; readonly capture: string; readonly path?: ReadonlyArray<string> }
  | { readonly from: "value"; readonly value: Model.Json }
  | { readonly from: "object"; readonly fields: { readonly [key: string]: Input } }
  | { readonly from: "array"; readonly items: ReadonlyArray<Input> }

/**
 * A condition of a branch or loop.
 *
 * @category models
 * @since 0.1.0
 */
export type Condition =
  | {
    readonly type: "compare"
    readonly op: "eq" | "ne" | "lt" | "lte" | "gt" | "gte"
    readonly left: Input
    readonly right: Input
  }
  | { readonly type: "truthy"; readonly value: Input }
  | { readonly type: "exists"; readonly value: Input }
  | { readonly type: "not"; readonly condition: Condition }
  | { readonly type: "all"; readonly conditions: ReadonlyArray<Condition> }
  | { readonly type: "any"; readonly conditions: ReadonlyArray<Condition> }

/**
 * A node of a spec.
 *
 * @category models
 * @since 0.1.0
 */
export type Node =
  | { readonly type: "step"; readonly step: string; readonly input?: Input; readonly capture?: string }
  | { readonly type: "sleep"; readonly seconds: number }
  | {
    readonly type: "wait_signal"
    readonly signal: string
    readonly timeout_seconds?: number
    readonly capture?: string
  }
  | { readonly type: "wait_schedule"; readonly cron: string }
  | { readonly type: "sequence"; readonly nodes: ReadonlyArray<Node> }
  | { readonly type: "parallel"; readonly mode?: "all" | "race"; readonly branches: ReadonlyArray<Node> }
  | {
    readonly type: "branch"
    readonly if: Condition
    readonly then: Node
    readonly else?: Node
    readonly capture?: string
  }
  | { readonly type: "loop"; readonly body: Node; readonly while?: Condition; readonly capture?: string }
  | { readonly type: "break"; readonly value?: { readonly [key: string]: Model.Json } }

/**
 * A spec document.
 *
 * @category models
 * @since 0.1.0
 */
export interface Spec {
  readonly version?: 1
  readonly name?: string
  readonly description?: string
  readonly graph: Node
}

const CaptureName = Schema.String.check(Schema.isPattern(/^[A-Za-z][A-Za-z0-9_]{0,62}$/)).annotate({
  description: "a capture name: 1 to 63 letters, digits or underscores, starting with a letter"
})
const Path = Schema.Array(Schema.String)
const Seconds = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const JsonObject = Schema.Record(Schema.String, Schema.Json)

/**
 * @category schemas
 * @since 0.1.0
 */
export const Input: Schema.Codec<Input> = Schema.Union([
  Schema.Struct({ from: Schema.Literal("input"), path: Schema.optionalKey(Path) }),
  Schema.Struct({ from: Schema.Literal("capture"), capture: CaptureName, path: Schema.optionalKey(Path) }),
  Schema.Struct({ from: Schema.Literal("value"), value: Schema.Json }),
  Schema.Struct({
    from: Schema.Literal("object"),
    fields: Schema.Record(Schema.String, Schema.suspend((): Schema.Codec<Input> => Input))
  }),
  Schema.Struct({
    from: Schema.Literal("array"),
    items: Schema.Array(Schema.suspend((): Schema.Codec<Input> => Input))
  })
]).annotate({ identifier: "Input", description: "a JSON value computed when the node runs" })

/**
 * @category schemas
 * @since 0.1.0
 */
export const Condition: Schema.Codec<Condition> = Schema.Union([
  Schema.Struct({
    type: Schema.Literal("compare"),
    op: Schema.Literals(["eq", "ne", "lt", "lte", "gt", "gte"]),
    left: Input,
    right: Input
  }),
  Schema.Struct({ type: Schema.Literal("truthy"), value: Input }),
  Schema.Struct({ type: Schema.Literal("exists"), value: Input }),
  Schema.Struct({ type: Schema.Literal("not"), condition: Schema.suspend((): Schema.Codec<Condition> => Condition) }),
  Schema.Struct({
    type: Schema.Literal("all"),
    conditions: Schema.Array(Schema.suspend((): Schema.Codec<Condition> => Condition))
  }),
  Schema.Struct({
    type: Schema.Literal("any"),
    conditions: Schema.Array(Schema.suspend((): Schema.Codec<Condition> => Condition))
  })
]).annotate({ identifier: "Condition" })

const SuspendedNode = Schema.suspend((): Schema.Codec<Node> => Node)

/**
 * @category schemas
 * @since 0.1.0
 */
export const Node: Schema.Codec<Node> = Schema.Union([
  Schema.Struct({
    type: Schema.Literal("step"),
    step: Schema.NonEmptyString,
    input: Schema.optionalKey(Input),
    capture: Schema.optionalKey(CaptureName)
  }),
  Schema.Struct({ type: Schema.Literal("sleep"), seconds: Seconds }),
  Schema.Struct({
    type: Schema.Literal("wait_signal"),
    signal: Schema.NonEmptyString,
    timeout_seconds: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 2_147_483_647 }))),
    capture: Schema.optionalKey(CaptureName)
  }),
  Schema.Struct({ type: Schema.Literal("wait_schedule"), cron: Schema.String }),
  Schema.Struct({ type: Schema.Literal("sequence"), nodes: Schema.Array(SuspendedNode) }),
  Schema.Struct({
    type: Schema.Literal("parallel"),
    mode: Schema.optionalKey(Schema.Literals(["all", "race"])),
    branches: Schema.Array(SuspendedNode)
  }),
  Schema.Struct({
    type: Schema.Literal("branch"),
    if: Condition,
    then: SuspendedNode,
    else: Schema.optionalKey(SuspendedNode),
    capture: Schema.optionalKey(CaptureName)
  }),
  Schema.Struct({
    type: Schema.Literal("loop"),
    body: SuspendedNode,
    while: Schema.optionalKey(Condition),
    capture: Schema.optionalKey(CaptureName)
  }),
  Schema.Struct({ type: Schema.Literal("break"), value: Schema.optionalKey(JsonObject) })
]).annotate({ identifier: "Node", description: "a graph node, discriminated on type" })

/**
 * @category schemas
 * @since 0.1.0
 */
export const Spec: Schema.Codec<Spec> = Schema.Struct({
  version: Schema.optionalKey(Schema.Literal(1)),
  name: Schema.optionalKey(Schema.String),
  description: Schema.optionalKey(Schema.String),
  graph: Node
}).annotate({ identifier: "GraphSpec", title: "pgflows pg_durable graph spec" })

const document = Schema.toJsonSchemaDocument(Spec, { onExcessProperty: "error" })

/**
 * The JSON Schema (draft 2020-12) of a spec document, for editors and UIs (`$defs` hold the
 * recursive `Node`, `Input` and `Condition`). Decoding with `decode` stays the final authority.
 *
 * @category schemas
 * @since 0.1.0
 */
export const jsonSchema: JsonSchema.JsonSchema = {
  $schema: JsonSchema.META_SCHEMA_URI_DRAFT_2020_12,
  ...document.schema,
  $defs: document.definitions
}

/**
 * Decodes a spec document (JSON data).
 *
 * @category decoding
 * @since 0.1.0
 */
export const decode = (json: unknown): Effect.Effect<Spec, GraphSpecError> => {
  const decoded = Schema.decodeUnknownResult(Spec, { errors: "all", onExcessProperty: "error" })(json)
  return Result.isSuccess(decoded)
    ? Effect.succeed(decoded.success)
    : Effect.fail(new GraphSpecError({ issues: toIssues(decoded.failure) }))
}

/**
 * The graph a spec describes.
 *
 * @category conversions
 * @since 0.1.0
 */
export const toGraph = (spec: Spec | Node): Graph.Graph<unknown, {}, {}> =>
  Graph.fromNode(toNode("graph" in spec ? spec.graph : spec))

/**
 * Decodes a spec and compiles its graph (steps looked up by name in `options.steps`).
 *
 * @category compiling
 * @since 0.1.0
 */
export const compileGraph = (
  spec: unknown,
  options?: Compiler.Options
): Effect.Effect<Compiler.Compiled, GraphSpecError | GraphCompileError> =>
  Effect.flatMap(decode(spec), (decoded) => Compiler.compileNode(toNode(decoded.graph), options))

// internal

const toExpr = (input: Input): Model.Expr => {
  const at = (expr: Model.Expr, path: ReadonlyArray<string> | undefined): Model.Expr =>
    (path ?? []).reduce<Model.Expr>((inner, key) => ({ _tag: "Field", expr: inner, key }), expr)
  switch (input.from) {
    case "input":
      return at({ _tag: "Capture", capture: "input" }, input.path)
    case "capture":
      return at({ _tag: "Capture", capture: input.capture }, input.path)
    case "value":
      return { _tag: "Value", value: input.value }
    case "object":
      return {
        _tag: "Object",
        fields: Object.entries(input.fields).map(([key, value]) => [key, toExpr(value)] as const)
      }
    case "array":
      return { _tag: "Array", items: input.items.map(toExpr) }
  }
}

const operators = { eq: "=", ne: "<>", lt: "<", lte: "<=", gt: ">", gte: ">=" } as const

const conditionText = (condition: Condition): Model.Text => {
  switch (condition.type) {
    case "compare":
      return [
        "(",
        ...exprText(toExpr(condition.left)),
        `) ${operators[condition.op]} (`,
        ...exprText(toExpr(condition.right)),
        ")"
      ]
    case "truthy":
      return [
        "(",
        ...exprText(toExpr(condition.value)),
        ") NOT IN ('null'::jsonb, 'false'::jsonb, '0'::jsonb, '\"\"'::jsonb, '[]'::jsonb, '{}'::jsonb)"
      ]
    case "exists":
      return ["(", ...exprText(toExpr(condition.value)), ") <> 'null'::jsonb"]
    case "not":
      return ["NOT coalesce(", ...conditionText(condition.condition), ", false)"]
    case "all":
    case "any":
      if (condition.conditions.length === 0) return [condition.type === "all" ? "true" : "false"]
      return condition.conditions.flatMap((inner, index) => [
        index === 0 ? "(coalesce(" : condition.type === "all" ? ", false) AND coalesce(" : ", false) OR coalesce(",
        ...conditionText(inner)
      ]).concat([", false))"])
  }
}

const condition = (c: Condition): Model.Text => ["SELECT coalesce(", ...conditionText(c), ", false) AS condition"]

const withCapture = <N extends Model.Node>(node: N, capture: string | undefined): N =>
  capture === undefined ? node : { ...node, capture }

const toNode = (node: Node): Model.Node => {
  switch (node.type) {
    case "step":
      return withCapture<Model.StepNode>(
        { _tag: "Step", step: node.step, input: toExpr(node.input ?? { from: "input" }) },
        node.capture
      )
    case "sleep":
      return { _tag: "Sleep", seconds: node.seconds }
    case "wait_signal":
      return withCapture<Model.WaitForSignalNode>(
        node.timeout_seconds === undefined
          ? { _tag: "WaitForSignal", signal: node.signal }
          : { _tag: "WaitForSignal", signal: node.signal, timeoutSeconds: node.timeout_seconds },
        node.capture
      )
    case "wait_schedule":
      return { _tag: "WaitForSchedule", cron: node.cron }
    case "sequence":
      return { _tag: "Sequence", nodes: node.nodes.map(toNode) }
    case "parallel":
      return { _tag: node.mode === "race" ? "Race" : "Parallel", branches: node.branches.map(toNode) }
    case "branch":
      return withCapture<Model.BranchNode>({
        _tag: "Branch",
        condition: condition(node.if),
        then: toNode(node.then),
        else: node.else === undefined ? Model.noop : toNode(node.else)
      }, node.capture)
    case "loop":
      return withCapture<Model.LoopNode>(
        node.while === undefined
          ? { _tag: "Loop", body: toNode(node.body) }
          : { _tag: "Loop", body: toNode(node.body), while: condition(node.while) },
        node.capture
      )
    case "break":
      return node.value === undefined ? { _tag: "Break" } : { _tag: "Break", value: node.value }
  }
}
