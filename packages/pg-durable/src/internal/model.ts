/**
 * The graph as plain data: what the typed `Graph` constructors build, what `GraphSpec` decodes to,
 * what the compiler validates and lowers, and what the decompiler rebuilds from a parse tree. Every
 * value here is JSON-like (no functions, no classes), so two graphs compare with a deep equality.
 */

import * as Result from "effect/Result"
import * as Cron from "./cron.ts"

/** A JSON value. */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

/** A JSON object. */
export type JsonObject = { readonly [key: string]: Json }

/**
 * A reference to a capture inside SQL or HTTP text: `$name`, `$name.field`, `$name?`,
 * `$name.field?` or `$name.*` (all rows, in a FROM clause) once compiled.
 */
export interface RefPart {
  readonly _tag: "Ref"
  readonly capture: string
  readonly field?: string
  readonly optional?: boolean
  readonly rows?: boolean
}

/** `{sys_instance_id}`: pg_durable's id of the running instance. */
export interface InstanceIdPart {
  readonly _tag: "InstanceId"
}

/**
 * A SQL literal written by `Graph.literal`: kept apart from the text around it until the compiler
 * has checked where it sits (never inside quoted text or a comment), then folded into the text.
 */
export interface LiteralPart {
  readonly _tag: "Literal"
  readonly sql: string
}

/** A part of a text that is not written by hand. */
export type TextPart = RefPart | InstanceIdPart | LiteralPart

/** Text with references: SQL (a statement) or raw text (an HTTP URL, body or header). */
export type Text = ReadonlyArray<string | TextPart>

/** A JSON value computed in SQL from captures and constants: the input of a step. */
export type Expr =
  | { readonly _tag: "Capture"; readonly capture: string }
  | { readonly _tag: "Value"; readonly value: Json }
  | { readonly _tag: "Field"; readonly expr: Expr; readonly key: string }
  | { readonly _tag: "Object"; readonly fields: ReadonlyArray<readonly [string, Expr]> }
  | { readonly _tag: "Array"; readonly items: ReadonlyArray<Expr> }

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE" | "PATCH"

export const httpMethods: ReadonlyArray<HttpMethod> = ["GET", "POST", "PUT", "DELETE", "PATCH"]

export interface StepNode {
  readonly _tag: "Step"
  readonly step: string
  readonly input: Expr
  readonly capture?: string
}

export interface SqlNode {
  readonly _tag: "Sql"
  readonly sql: Text
  readonly capture?: string
}

export interface SleepNode {
  readonly _tag: "Sleep"
  readonly seconds: number
}

export interface WaitForSignalNode {
  readonly _tag: "WaitForSignal"
  readonly signal: string
  readonly timeoutSeconds?: number
  readonly capture?: string
}

export interface WaitForScheduleNode {
  readonly _tag: "WaitForSchedule"
  readonly cron: string
}

export interface HttpNode {
  readonly _tag: "Http"
  readonly url: Text
  readonly method: HttpMethod
  readonly body?: Text
  readonly headers?: ReadonlyArray<readonly [string, Text]>
  readonly timeoutSeconds: number
  readonly capture?: string
}

export interface SequenceNode {
  readonly _tag: "Sequence"
  readonly nodes: ReadonlyArray<Node>
}

export interface ParallelNode {
  readonly _tag: "Parallel"
  readonly branches: ReadonlyArray<Node>
}

export interface RaceNode {
  readonly _tag: "Race"
  readonly branches: ReadonlyArray<Node>
}

export interface BranchNode {
  readonly _tag: "Branch"
  readonly condition: Text
  readonly then: Node
  readonly else: Node
  readonly capture?: string
}

export interface IfRowsNode {
  readonly _tag: "IfRows"
  readonly rowsOf: string
  readonly then: Node
  readonly else: Node
  readonly capture?: string
}

export interface LoopNode {
  readonly _tag: "Loop"
  readonly body: Node
  readonly while?: Text
  readonly capture?: string
}

export interface BreakNode {
  readonly _tag: "Break"
  readonly value?: JsonObject
}

export type Node =
  | StepNode
  | SqlNode
  | SleepNode
  | WaitForSignalNode
  | WaitForScheduleNode
  | HttpNode
  | SequenceNode
  | ParallelNode
  | RaceNode
  | BranchNode
  | IfRowsNode
  | LoopNode
  | BreakNode

/** The capture that holds the run's input (bound by the compiler, never by a node). */
export const inputCapture = "input"

/** The `else` of a branch written without one. */
export const noop: SqlNode = { _tag: "Sql", sql: ["SELECT NULL AS skipped"] }

/** Node kinds whose result may be captured. */
export const capturable: ReadonlySet<Node["_tag"]> = new Set([
  "Step",
  "Sql",
  "WaitForSignal",
  "Http",
  "Branch",
  "IfRows",
  "Loop"
])

export const captureOf = (node: Node): string | undefined => "capture" in node ? node.capture : undefined

/** The direct children of a node, in execution order. */
export const children = (node: Node): ReadonlyArray<Node> => {
  switch (node._tag) {
    case "Sequence":
      return node.nodes
    case "Parallel":
    case "Race":
      return node.branches
    case "Branch":
    case "IfRows":
      return [node.then, node.else]
    case "Loop":
      return [node.body]
    default:
      return []
  }
}

/** Every node of the graph, pre-order. */
export const walk = (node: Node, visit: (node: Node) => void): void => {
  visit(node)
  for (const child of children(node)) walk(child, visit)
}

/** Merges adjacent strings and drops empty ones; with `fold`, literals become text too. */
export const normalizeText = (text: Text, fold = false): Text => {
  const out: Array<string | TextPart> = []
  for (const item of text) {
    const part = fold && typeof item !== "string" && item._tag === "Literal" ? item.sql : item
    if (typeof part === "string") {
      if (part === "") continue
      const last = out[out.length - 1]
      if (typeof last === "string") out[out.length - 1] = last + part
      else out.push(part)
    } else out.push(part)
  }
  return out
}

/** The references a text makes to captures. */
export const textRefs = (text: Text): ReadonlyArray<RefPart> =>
  text.filter((part): part is RefPart => typeof part !== "string" && part._tag === "Ref")

/** The captures an expression reads. */
export const exprCaptures = (expr: Expr): ReadonlyArray<string> => {
  switch (expr._tag) {
    case "Capture":
      return [expr.capture]
    case "Value":
      return []
    case "Field":
      return exprCaptures(expr.expr)
    case "Object":
      return expr.fields.flatMap(([, value]) => exprCaptures(value))
    case "Array":
      return expr.items.flatMap(exprCaptures)
  }
}

/**
 * The canonical form of a graph: nested sequences flattened (a sequence of one node is that node), a
 * race directly inside another merged into it (parallels stay nested: their values do), texts
 * normalised (and,
 * with `fold`, the default, literals written into their text). Two graphs that compile to the same
 * pg_durable graph have the same canonical form; the compiler checks and lowers the form that keeps
 * literals apart.
 */
export const normalize = (node: Node, fold = true): Node => {
  const normalize_ = (child: Node) => normalize(child, fold)
  const text = (t: Text) => normalizeText(t, fold)
  switch (node._tag) {
    case "Sequence": {
      const nodes = node.nodes.map(normalize_).flatMap((child) => child._tag === "Sequence" ? child.nodes : [child])
      return nodes.length === 1 ? nodes[0]! : { _tag: "Sequence", nodes }
    }
    case "Parallel":
      // Kept nested: a parallel's value has one element per branch, a nested parallel's a tuple.
      return { _tag: "Parallel", branches: node.branches.map(normalize_) }
    case "Race": {
      const branches = node.branches.map(normalize_).flatMap((child) =>
        child._tag === "Race" ? child.branches : [child]
      )
      return { _tag: "Race", branches }
    }
    case "Branch":
      return {
        ...node,
        condition: text(node.condition),
        then: normalize_(node.then),
        else: normalize_(node.else)
      }
    case "IfRows":
      return { ...node, then: normalize_(node.then), else: normalize_(node.else) }
    case "Loop": {
      const { while: condition, ...rest } = node
      return condition === undefined
        ? { ...rest, body: normalize_(node.body) }
        : { ...rest, body: normalize_(node.body), while: text(condition) }
    }
    case "Sql":
      return { ...node, sql: text(node.sql) }
    case "WaitForSchedule": {
      const cron = Cron.canonical(node.cron)
      return Result.isSuccess(cron) ? { ...node, cron: cron.success } : node
    }
    case "Http": {
      const { body, headers, ...rest } = node
      return {
        ...rest,
        url: text(node.url),
        ...(body === undefined ? {} : { body: text(body) }),
        ...(headers === undefined ? {} : {
          headers: headers.map(([name, value]) => [name, text(value)] as const)
        })
      }
    }
    default:
      return node
  }
}

/** Deep equality of JSON-like data, whatever the order of object keys. */
export const equals = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const other = b as ReadonlyArray<unknown>
    return a.length === other.length && a.every((item, index) => equals(item, other[index]))
  }
  const keysA = Object.keys(a).filter((key) => (a as any)[key] !== undefined)
  const keysB = Object.keys(b).filter((key) => (b as any)[key] !== undefined)
  return keysA.length === keysB.length && keysA.every((key) => equals((a as any)[key], (b as any)[key]))
}
