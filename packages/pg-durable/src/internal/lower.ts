/**
 * Lowering: the graph (`model.ts`) to pg_durable's DSL tree (`dsl.ts`). Captures become result
 * names with a reserved prefix, steps become the SQL (and HTTP) nodes of their binding, sequences
 * become balanced `df.seq` trees, parallels `df.join`/`df.join3` trees, races `df.race` trees, and
 * cron expressions pg_durable's day-of-week numbering. Run it on a validated graph only.
 */
import * as Result from "effect/Result"
import * as Cron from "./cron.ts"
import type { Dsl } from "./dsl.ts"
import { named } from "./dsl.ts"
import type * as Model from "./model.ts"
import { inputCapture } from "./model.ts"
import * as Quote from "./quote.ts"

/** The prefix of every result name the compiler writes. */
export const prefix = "__pgf_"

/** The result name of a capture. */
export const resultName = (capture: string): string => `${prefix}${capture}`

export const callName = (key: string): string => `${prefix}_call_${key}`
export const bodyName = (key: string): string => `${prefix}_body_${key}`
export const httpName = (key: string): string => `${prefix}_http_${key}`

/** How a graph calls its steps (see `StepBinding`). */
export type Binding =
  | {
    readonly _tag: "worker"
    /** Quoted schema of the push-mode functions. */
    readonly schema: string
    readonly queue: string
    readonly channel: string
    readonly waitSeconds: number
  }
  | {
    readonly _tag: "http"
    readonly schema: string
    readonly baseUrl: string
    readonly timeoutSeconds: number
    readonly headers: ReadonlyArray<readonly [string, string]>
  }

export const instanceIdSql = "'{sys_instance_id}'"
export const instanceIdRaw = "{sys_instance_id}"

/** A text in SQL context: references parenthesised (`($name.col)`), rows as `$name.*`. */
export const sqlText = (text: Model.Text): string =>
  text.map((part) => {
    if (typeof part === "string") return part
    if (part._tag === "InstanceId") return instanceIdSql
    if (part._tag === "Literal") return part.sql
    return part.rows === true ? `$${resultName(part.capture)}.*` : `(${rawRef(part)})`
  }).join("")

/** A text in raw context (HTTP URL, body, headers): references inserted as they are. */
export const rawText = (text: Model.Text): string =>
  text.map((part) => {
    if (typeof part === "string") return part
    if (part._tag === "InstanceId") return instanceIdRaw
    if (part._tag === "Literal") return part.sql
    return part.rows === true ? `$${resultName(part.capture)}.*` : rawRef(part)
  }).join("")

const rawRef = (part: Model.RefPart): string =>
  `$${resultName(part.capture)}${part.field === undefined ? "" : `.${part.field}`}${part.optional === true ? "?" : ""}`

/** An input expression as SQL text (of type jsonb) with references to its captures. */
export const exprText = (expr: Model.Expr): Model.Text => {
  switch (expr._tag) {
    case "Capture":
      // Through text, so numbers and booleans (inserted bare) read as JSON too.
      return [{ _tag: "Ref", capture: expr.capture }, "::text::jsonb"]
    case "Value":
      return [`${Quote.literal(Quote.inertJson(expr.value))}::jsonb`]
    case "Field":
      return ["(", ...exprText(expr.expr), ` -> ${Quote.nodeText(expr.key)})`]
    case "Object":
      return [
        "jsonb_build_object(",
        ...expr.fields.flatMap(([key, value], index) => [
          `${index === 0 ? "" : ", "}${Quote.nodeText(key)}, `,
          ...exprText(value)
        ]),
        ")"
      ]
    case "Array":
      return [
        "jsonb_build_array(",
        ...expr.items.flatMap((item, index) => [index === 0 ? "" : ", ", ...exprText(item)]),
        ")"
      ]
  }
}

/** An input expression as SQL of type jsonb. */
export const exprSql = (expr: Model.Expr): string => sqlText(exprText(expr))

/** The node that binds the run's input. */
export const inputNode = (input: Model.Json): Dsl => ({
  kind: "sql",
  query: `SELECT ${Quote.literal(Quote.inertJson(input))}::text AS input`,
  name: resultName(inputCapture)
})

/** The SQL of a step call, per binding, for `dryRun`. */
export interface StepCall {
  readonly key: string
  readonly step: string
  readonly capture: string | undefined
  readonly nodes: ReadonlyArray<Dsl>
}

export interface Lowered {
  readonly dsl: Dsl
  readonly calls: ReadonlyArray<StepCall>
}

/** Lowers a validated, normalised graph; `input` prepends the node that binds the run's input. */
export const lower = (
  root: Model.Node,
  binding: Binding,
  input: { readonly value: Model.Json } | undefined
): Lowered => {
  const calls: Array<StepCall> = []
  let counter = 0

  const stepItems = (node: Model.StepNode): ReadonlyArray<Dsl> => {
    const key = `s${++counter}`
    const capture = node.capture === undefined ? undefined : resultName(node.capture)
    const s = binding.schema
    const nodes: ReadonlyArray<Dsl> = binding._tag === "worker"
      ? [
        {
          kind: "sql",
          query: `SELECT ${s}.pgd_enqueue_step(${Quote.literal(binding.queue)}, ${
            Quote.literal(binding.channel)
          }, ${instanceIdSql}, ${Quote.literal(key)}, ${Quote.nodeText(node.step)}, ${exprSql(node.input)}) AS call`,
          name: callName(key)
        },
        named({
          kind: "sql",
          query: `SELECT ${s}.pgd_step_result(($${callName(key)}), ${binding.waitSeconds}) AS output`
        }, capture)
      ]
      : [
        { kind: "sql", query: `SELECT (${exprSql(node.input)})::text AS body`, name: bodyName(key) },
        {
          kind: "http",
          url: `${binding.baseUrl}/steps/${encodeURIComponent(node.step)}`,
          method: "POST",
          body: `$${bodyName(key)}`,
          headers: JSON.stringify(Object.fromEntries([
            ["Content-Type", "application/json"],
            ["X-Pgflows-Instance-Id", instanceIdRaw],
            ["X-Pgflows-Step-Key", key],
            ...binding.headers
          ])),
          timeout: binding.timeoutSeconds,
          name: httpName(key)
        },
        named({
          kind: "sql",
          query: `SELECT ${s}.pgd_http_output(($${httpName(key)}), ${Quote.nodeText(node.step)}) AS output`
        }, capture)
      ]
    calls.push({ key, step: node.step, capture: node.capture, nodes })
    return nodes
  }

  const items = (node: Model.Node): ReadonlyArray<Dsl> => {
    if (node._tag === "Sequence") return node.nodes.flatMap(items)
    if (node._tag === "Step") return stepItems(node)
    return [go(node)]
  }

  const go = (node: Model.Node): Dsl => {
    switch (node._tag) {
      case "Step":
      case "Sequence":
        return balanced(items(node))
      case "Sql":
        return named({ kind: "sql", query: sqlText(node.sql) }, captureName(node.capture))
      case "Sleep":
        return { kind: "sleep", seconds: node.seconds }
      case "WaitForSignal":
        return named(
          node.timeoutSeconds === undefined
            ? { kind: "signal", signal: node.signal }
            : { kind: "signal", signal: node.signal, timeout: node.timeoutSeconds },
          captureName(node.capture)
        )
      case "WaitForSchedule":
        return { kind: "wait_schedule", cron: Result.getOrThrow(Cron.toPgDurable(node.cron)) }
      case "Http": {
        const headers = node.headers === undefined
          ? undefined
          : JSON.stringify(Object.fromEntries(node.headers.map(([name, value]) => [name, rawText(value)])))
        return named({
          kind: "http",
          url: rawText(node.url),
          method: node.method,
          ...(node.body === undefined ? {} : { body: rawText(node.body) }),
          ...(headers === undefined ? {} : { headers }),
          timeout: node.timeoutSeconds
        }, captureName(node.capture))
      }
      case "Parallel":
        return tree(node.branches.map(go), (branches) => ({ kind: "join", branches }), 3)
      case "Race":
        return tree(node.branches.map(go), ([left, right]) => ({ kind: "race", left: left!, right: right! }), 2)
      case "Branch":
        return named({
          kind: "if",
          condition: { kind: "sql", query: sqlText(node.condition) },
          then: go(node.then),
          else: go(node.else)
        }, captureName(node.capture))
      case "IfRows":
        return named({
          kind: "if_rows",
          result: resultName(node.rowsOf),
          then: go(node.then),
          else: go(node.else)
        }, captureName(node.capture))
      case "Loop":
        return named(
          node.while === undefined
            ? { kind: "loop", body: go(node.body) }
            : { kind: "loop", body: go(node.body), condition: { kind: "sql", query: sqlText(node.while) } },
          captureName(node.capture)
        )
      case "Break":
        return node.value === undefined ? { kind: "break" } : { kind: "break", value: JSON.stringify(node.value) }
    }
  }

  const rootItems = input === undefined ? items(root) : [inputNode(input.value), ...items(root)]
  return { dsl: balanced(rootItems), calls }
}

const captureName = (capture: string | undefined): string | undefined =>
  capture === undefined ? undefined : resultName(capture)

/** A balanced `df.seq` tree of the items, in order (THEN is associative and yields its right side). */
export const balanced = (items: ReadonlyArray<Dsl>): Dsl => {
  if (items.length === 1) return items[0]!
  const half = Math.ceil(items.length / 2)
  return { kind: "seq", left: balanced(items.slice(0, half)), right: balanced(items.slice(half)) }
}

/** A balanced tree of an n-ary combinator built from nodes of at most `arity` children. */
const tree = (nodes: ReadonlyArray<Dsl>, make: (nodes: ReadonlyArray<Dsl>) => Dsl, arity: 2 | 3): Dsl => {
  if (nodes.length === 1) return nodes[0]!
  if (nodes.length <= arity) return make(nodes)
  const half = Math.ceil(nodes.length / 2)
  return make([tree(nodes.slice(0, half), make, arity), tree(nodes.slice(half), make, arity)])
}
