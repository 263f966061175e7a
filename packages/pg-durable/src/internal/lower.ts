/**
 * Lowering: the graph (`model.ts`) to pg_durable's DSL tree (`dsl.ts`). Captures become result
 * names with a reserved prefix, steps become the SQL (and HTTP) nodes of their binding, sequences
 * become balanced `df.seq` trees, parallels `df.join`/`df.join3` trees (followed, where their value
 * is read, by the SQL node that builds it), races `df.race` trees, and cron expressions pg_durable's
 * day-of-week numbering. Run it on a validated graph only.
 */
import * as Result from "effect/Result"
import * as Cron from "./cron.ts"
import type { Dsl } from "./dsl.ts"
import { named } from "./dsl.ts"
import * as Model from "./model.ts"
import { inputCapture } from "./model.ts"
import * as Quote from "./quote.ts"

/** The prefix of every result name the compiler writes. */
export const prefix = "__pgf_"

/** The result name of a capture. */
export const resultName = (capture: string): string => `${prefix}${capture}`

export const callName = (key: string): string => `${prefix}_call_${key}`
/** The result name of the node that builds the value of parallel number `index`. */
export const parallelName = (index: number): string => `${prefix}_p${index}`
/** The result name given to branch `branch` of parallel `index`, so its value node can read it. */
export const elementName = (index: number, branch: number): string => `${prefix}_v${index}_${branch}`
/** The result name of a parallel nested directly in another whose value nothing reads. */
export const joinName = (index: number): string => `${prefix}_j${index}`
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
    /** The secret header and its value as pg_durable sends it (the secret, or `{variable}`). */
    readonly secret: readonly [header: string, value: string]
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
        {
          kind: "sql",
          query: `SELECT ${s}.pgd_http_call(${instanceIdSql}, ${Quote.literal(key)}, ${
            Quote.nodeText(node.step)
          }) AS key, (${exprSql(node.input)})::text AS body`,
          name: bodyName(key)
        },
        {
          kind: "http",
          url: `${binding.baseUrl}/steps/${encodeURIComponent(node.step)}`,
          method: "POST",
          body: `$${bodyName(key)}.body`,
          headers: JSON.stringify(Object.fromEntries([
            ["Content-Type", "application/json"],
            ["X-Pgflows-Instance-Id", instanceIdRaw],
            ["X-Pgflows-Result-Key", `$${bodyName(key)}.key`],
            binding.secret,
            ...binding.headers
          ])),
          timeout: binding.timeoutSeconds,
          name: httpName(key)
        },
        named({
          kind: "sql",
          query: `SELECT ${s}.pgd_http_output(($${httpName(key)}), ${Quote.nodeText(node.step)}, ${instanceIdSql}, ($${
            bodyName(key)
          }.key)) AS output`
        }, capture)
      ]
    calls.push({ key, step: node.step, capture: node.capture, nodes })
    return nodes
  }

  let parallels = 0

  // `observed`: whether something reads the node's value (a capture, the parallel around it,
  // PgDurableClient.result at the root). Only then does a parallel get the node that builds its value.
  const items = (node: Model.Node, observed: boolean): ReadonlyArray<Dsl> => {
    if (node._tag === "Sequence") {
      return node.nodes.flatMap((child, index) => items(child, observed && index === node.nodes.length - 1))
    }
    if (node._tag === "Step") return stepItems(node)
    if (node._tag === "Parallel") return parallelItems(node, observed)
    return [go(node, observed)]
  }

  const parallelItems = (node: Model.ParallelNode, observed: boolean): ReadonlyArray<Dsl> => {
    const index = ++parallels
    const join = (branches: ReadonlyArray<Dsl>) => tree(branches, (nodes) => ({ kind: "join", branches: nodes }), 3)
    if (!observed) {
      // A parallel directly inside this one is named, so it stays a parallel of its own when read back.
      return [join(node.branches.map((branch) => {
        const lowered = go(branch, false)
        return branch._tag === "Parallel" ? named(lowered, joinName(++parallels)) : lowered
      }))]
    }
    const elements: Array<Element> = []
    const branches = node.branches.map((branch, position) => {
      const list = [...items(branch, true)]
      const last = list[list.length - 1]!
      if (last.kind === "sleep") elements.push({ _tag: "Value", value: { slept: true, seconds: last.seconds } })
      else if (last.kind === "wait_schedule") elements.push({ _tag: "Value", value: { scheduled: true } })
      else {
        const existing = "name" in last ? last.name : undefined
        const name = existing ?? elementName(index, position)
        if (existing === undefined) list[list.length - 1] = named(last, name)
        elements.push({ _tag: "Name", name })
      }
      return balanced(list)
    })
    return [join(branches), { kind: "sql", query: valueQuery(elements), name: parallelName(index) }]
  }

  const go = (node: Model.Node, observed: boolean): Dsl => {
    const arms = observed || Model.captureOf(node) !== undefined
    switch (node._tag) {
      case "Step":
      case "Sequence":
      case "Parallel":
        return balanced(items(node, observed))
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
      case "Race":
        return tree(
          node.branches.map((branch) => go(branch, observed)),
          ([left, right]) => ({ kind: "race", left: left!, right: right! }),
          2
        )
      case "Branch":
        return named({
          kind: "if",
          condition: { kind: "sql", query: sqlText(node.condition) },
          then: go(node.then, arms),
          else: go(node.else, arms)
        }, captureName(node.capture))
      case "IfRows":
        return named({
          kind: "if_rows",
          result: resultName(node.rowsOf),
          then: go(node.then, arms),
          else: go(node.else, arms)
        }, captureName(node.capture))
      case "Loop":
        return named(
          node.while === undefined
            ? { kind: "loop", body: go(node.body, arms) }
            : { kind: "loop", body: go(node.body, arms), condition: { kind: "sql", query: sqlText(node.while) } },
          captureName(node.capture)
        )
      case "Break":
        return node.value === undefined ? { kind: "break" } : { kind: "break", value: JSON.stringify(node.value) }
    }
  }

  // The root's value is what PgDurableClient.result reads.
  const rootItems = input === undefined ? items(root, true) : [inputNode(input.value), ...items(root, true)]
  return { dsl: balanced(rootItems), calls }
}

/** An element of a parallel's value: the value of a named result, or a constant (a sleep's result). */
export type Element =
  | { readonly _tag: "Name"; readonly name: string }
  | { readonly _tag: "Value"; readonly value: Model.Json }

/**
 * The SQL node that builds a parallel's value, once its join is done: a JSON array with one element
 * per branch, read from the branch's named result (`$name?`, which pg_durable writes as the first
 * column of the first row, or the whole result) as JSON when it is JSON, as a JSON string otherwise,
 * null when there is no row; constants for the nodes pg_durable cannot name (sleeps, schedules).
 */
export const valueQuery = (elements: ReadonlyArray<Element>): string => {
  const columns: Array<string> = []
  const items = elements.map((element) => {
    if (element._tag === "Value") return `${Quote.literal(Quote.inertJson(element.value))}::jsonb`
    const column = `v${columns.length}`
    columns.push(`($${element.name}?)::text`)
    return `CASE WHEN pg_input_is_valid(${column}, 'jsonb') THEN ${column}::jsonb ELSE to_jsonb(${column}) END`
  })
  const select = `SELECT jsonb_build_array(${items.join(", ")}) AS value`
  // OFFSET 0 keeps the values a row of their own: pulled up, they would be constants, and PostgreSQL
  // would fold the cast of a text that is not JSON while planning, CASE or not.
  return columns.length === 0
    ? select
    : `${select} FROM (SELECT ${columns.map((column, i) => `${column} AS v${i}`).join(", ")} OFFSET 0) AS __pgf_values`
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
