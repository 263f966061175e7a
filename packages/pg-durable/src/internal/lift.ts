/**
 * Lifting: pg_durable's DSL tree (read back from SQL) to the graph it was compiled from. The
 * inverse of `lower.ts`: result names lose their prefix, step bindings (the SQL and HTTP nodes
 * `lower` writes for a step) become step nodes again, `df.seq`/`df.join`/`df.race` trees become
 * flat sequences, parallels and races (a join followed by the node that builds its value is one
 * parallel, a named join one nested in another), cron expressions go back to Unix numbering. The
 * SQL inside the nodes this compiler writes is parsed with PostgreSQL's parser too, so a step's
 * input comes back as an expression, not as text.
 */
import * as Result from "effect/Result"
import * as Cron from "./cron.ts"
import type { Dsl } from "./dsl.ts"
import type { Element } from "./lower.ts"
import { bodyName, callName, httpName, instanceIdRaw, instanceIdSql, prefix, valueQuery } from "./lower.ts"
import type * as Model from "./model.ts"
import { inputCapture } from "./model.ts"
import * as Parser from "./parser.ts"
import { NotAGraph } from "./pgparse.ts"

type Ast = Record<string, any>

export interface Lifted {
  readonly graph: Model.Node
  /** The run's input, when the graph starts with the node that binds it. */
  readonly input: { readonly value: Model.Json } | undefined
}

const captureOfName = (name: string | undefined): string | undefined => {
  if (name === undefined) return undefined
  if (!name.startsWith(prefix) || !/^[A-Za-z]/.test(name.slice(prefix.length))) {
    throw new NotAGraph(`result name ${JSON.stringify(name)} is not a capture this compiler writes`)
  }
  return name.slice(prefix.length)
}

const withCapture = <N extends Model.Node>(node: N, name: string | undefined): N => {
  const capture = captureOfName(name)
  return capture === undefined ? node : { ...node, capture }
}

const sqlRef =
  /\(\$(__pgf_[A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?(\?)?\)|\$(__pgf_[A-Za-z0-9_]*)\.\*|'\{sys_instance_id\}'/g
const rawRef = /\$(__pgf_[A-Za-z0-9_]*)(?:(\.\*)|\.([A-Za-z_][A-Za-z0-9_]*))?(\?)?|\{sys_instance_id\}/g

const refPart = (name: string, field: string | undefined, optional: boolean, rows: boolean): Model.RefPart => ({
  _tag: "Ref",
  capture: captureOfName(name)!,
  ...(field === undefined ? {} : { field }),
  ...(optional ? { optional: true } : {}),
  ...(rows ? { rows: true } : {})
})

const scan = (
  text: string,
  pattern: RegExp,
  part: (match: RegExpExecArray) => Model.RefPart | Model.InstanceIdPart
) => {
  const out: Array<string | Model.RefPart | Model.InstanceIdPart> = []
  let last = 0
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.push(text.slice(last, match.index))
    out.push(part(match))
    last = match.index + match[0].length
  }
  if (last < text.length) out.push(text.slice(last))
  const rest = out.filter((piece): piece is string => typeof piece === "string").join("")
  if (rest.includes(`$${prefix}`)) {
    throw new NotAGraph(`a reference in ${JSON.stringify(text)} is not one this compiler writes`)
  }
  return out
}

/** A SQL text back to parts. */
export const liftSqlText = (text: string): Model.Text =>
  scan(text, sqlRef, (m) =>
    m[0] === instanceIdSql
      ? { _tag: "InstanceId" }
      : m[4] !== undefined
      ? refPart(m[4], undefined, false, true)
      : refPart(m[1]!, m[2], m[3] !== undefined, false))

/** A raw text (HTTP) back to parts. */
export const liftRawText = (text: string): Model.Text =>
  scan(text, rawRef, (m) =>
    m[0] === instanceIdRaw
      ? { _tag: "InstanceId" }
      : refPart(m[1]!, m[3], m[4] !== undefined, m[2] !== undefined))

/** Parses SQL the compiler wrote, references replaced by bind parameters `$1`, `$2`, ... */
const parseGenerated = (text: string): {
  readonly expression: Ast
  readonly refs: ReadonlyArray<string>
  readonly columns: ReadonlyArray<{ readonly name: string | undefined; readonly value: Ast }>
} => {
  const refs: Array<string> = []
  const sql = text.replace(/\$(__pgf_[A-Za-z0-9_]*)/g, (_, name: string) => {
    refs.push(name)
    return `$${refs.length}`
  })
  const parsed = Parser.parse(sql)
  if (parsed._tag === "Error" || parsed.statements.length !== 1) {
    throw new NotAGraph(`a node's SQL does not parse: ${JSON.stringify(text)}`)
  }
  const targets = (parsed.statements[0] as Ast).SelectStmt?.targetList as ReadonlyArray<Ast> | undefined
  if (targets === undefined || targets.length === 0 || targets.length > 2) {
    throw new NotAGraph(`unexpected node SQL ${JSON.stringify(text)}`)
  }
  return {
    expression: targets[0]!.ResTarget.val,
    refs,
    columns: targets.map((target) => ({
      name: target.ResTarget.name as string | undefined,
      value: target.ResTarget.val
    }))
  }
}

const constant = (ast: Ast | undefined): unknown => {
  const c = ast?.A_Const as Ast | undefined
  if (c === undefined) return undefined
  if (c.sval !== undefined) return c.sval.sval ?? ""
  if (c.ival !== undefined) return c.ival.ival ?? 0
  return undefined
}

/** A text expression the compiler wrote (`'a'` or `('a' || chr(36) || 'b')`). */
const textExpr = (ast: Ast): string => {
  const value = constant(ast)
  if (typeof value === "string") return value
  const call = ast.FuncCall as Ast | undefined
  if (call !== undefined && call.funcname.length === 1 && call.funcname[0].String.sval === "chr") {
    return String.fromCharCode(constant(call.args[0]) as number)
  }
  const expr = ast.A_Expr as Ast | undefined
  if (expr !== undefined && expr.name[0].String.sval === "||") return textExpr(expr.lexpr) + textExpr(expr.rexpr)
  throw new NotAGraph("unexpected text expression in a step's SQL")
}

const typeName = (cast: Ast): string => (cast.typeName.names as ReadonlyArray<Ast>).map((n) => n.String.sval).join(".")

const funcName = (call: Ast): string => {
  const names = (call.funcname as ReadonlyArray<Ast>).map((n) => n.String.sval as string)
  return names[names.length - 1]!
}

/** An input expression back from its SQL. */
const liftExpr = (ast: Ast, refs: ReadonlyArray<string>): Model.Expr => {
  if (ast.TypeCast !== undefined && typeName(ast.TypeCast) === "jsonb") {
    const arg = ast.TypeCast.arg as Ast
    const inner = arg.TypeCast !== undefined && typeName(arg.TypeCast) === "text" ? arg.TypeCast.arg as Ast : undefined
    if (inner?.ParamRef !== undefined) {
      return { _tag: "Capture", capture: captureOfName(refs[inner.ParamRef.number - 1])! }
    }
    const text = constant(arg)
    if (typeof text === "string") return { _tag: "Value", value: JSON.parse(text) }
  }
  if (ast.A_Expr !== undefined && ast.A_Expr.name[0].String.sval === "->") {
    return { _tag: "Field", expr: liftExpr(ast.A_Expr.lexpr, refs), key: textExpr(ast.A_Expr.rexpr) }
  }
  if (ast.FuncCall !== undefined) {
    const name = funcName(ast.FuncCall)
    const args = (ast.FuncCall.args ?? []) as ReadonlyArray<Ast>
    if (name === "jsonb_build_object") {
      const fields: Array<readonly [string, Model.Expr]> = []
      for (let i = 0; i < args.length; i += 2) fields.push([textExpr(args[i]!), liftExpr(args[i + 1]!, refs)])
      return { _tag: "Object", fields }
    }
    if (name === "jsonb_build_array") return { _tag: "Array", items: args.map((arg) => liftExpr(arg, refs)) }
  }
  throw new NotAGraph("unexpected expression in a step's input")
}

const call = (
  query: string,
  fn: string
): { readonly args: ReadonlyArray<Ast>; readonly refs: ReadonlyArray<string> } => {
  const { expression, refs } = parseGenerated(query)
  if (expression.FuncCall === undefined || funcName(expression.FuncCall) !== fn) {
    throw new NotAGraph(`expected a call of ${fn} in ${JSON.stringify(query)}`)
  }
  return { args: expression.FuncCall.args ?? [], refs }
}

const stepKey = (name: string | undefined, make: (key: string) => string): string | undefined => {
  if (name === undefined) return undefined
  const match = /^__pgf__(?:call|body|http)_(s\d+)$/.exec(name)
  return match !== null && make(match[1]!) === name ? match[1] : undefined
}

/** Result names of the compiler's parallels: a value node, a branch's element, a nested join. */
const parallelPattern = /^__pgf__p\d+$/
const elementPattern = /^__pgf__v\d+_\d+$/
const joinPattern = /^__pgf__j\d+$/

/** The last node of a branch (what its value is). */
const lastItem = (node: Dsl): Dsl => node.kind === "seq" && node.name === undefined ? lastItem(node.right) : node

/** The branch without the name the compiler gave its last node for the parallel's value. */
const withoutElementName = (node: Dsl): Dsl => {
  if (node.kind === "seq" && node.name === undefined) return { ...node, right: withoutElementName(node.right) }
  if (!("name" in node) || node.name === undefined || !elementPattern.test(node.name)) return node
  const { name: _, ...rest } = node
  return rest as Dsl
}

/** A join followed by the node that builds its value (`lower`'s `valueQuery`). */
const observedParallel = (join: Dsl, value: Dsl & { kind: "sql" }): Model.Node => {
  const elements: Array<Element> = []
  const branches = flat(join, "join").map((branch) => {
    const last = lastItem(branch)
    if (last.kind === "sleep") elements.push({ _tag: "Value", value: { slept: true, seconds: last.seconds } })
    else if (last.kind === "wait_schedule") elements.push({ _tag: "Value", value: { scheduled: true } })
    else if ("name" in last && last.name !== undefined) elements.push({ _tag: "Name", name: last.name })
    else throw new NotAGraph("a branch of a parallel has no result name for the parallel's value")
    return node(withoutElementName(branch))
  })
  if (value.query !== valueQuery(elements)) {
    throw new NotAGraph(`the value node of a parallel is not the one this compiler writes: ${value.query}`)
  }
  return { _tag: "Parallel", branches }
}

/** The items of an unnamed `df.seq` tree, in order. */
const seqItems = (node: Dsl): ReadonlyArray<Dsl> =>
  node.kind === "seq" && node.name === undefined ? [...seqItems(node.left), ...seqItems(node.right)] : [node]

const flat = (node: Dsl, kind: "join" | "race"): ReadonlyArray<Dsl> => {
  if (node.kind !== kind || node.name !== undefined) return [node]
  const parts = node.kind === "join" ? node.branches : node.kind === "race" ? [node.left, node.right] : []
  return parts.flatMap((part) => flat(part, kind))
}

const liftInput = (node: Dsl): Model.Json => {
  if (node.kind !== "sql") throw new NotAGraph("the input node is not SQL")
  const { expression } = parseGenerated(node.query)
  if (expression.TypeCast !== undefined) {
    const text = constant(expression.TypeCast.arg)
    if (typeof text === "string") return JSON.parse(text)
  }
  if (expression.FuncCall !== undefined && funcName(expression.FuncCall) === "convert_from") {
    const decode = expression.FuncCall.args[0].FuncCall as Ast
    const base64 = constant(decode.args[0]) as string
    return JSON.parse(Buffer.from(base64, "base64").toString("utf8"))
  }
  throw new NotAGraph("the input node is not one this compiler writes")
}

/** Lifts a graph read back from SQL. */
export const lift = (root: Dsl): Lifted => {
  const items = seqItems(root)
  const first = items[0]!
  if (first.kind === "sql" && first.name === `${prefix}${inputCapture}`) {
    const rest = items.slice(1)
    if (rest.length === 0) throw new NotAGraph("the graph has only its input node")
    return { graph: sequence(rest), input: { value: liftInput(first) } }
  }
  return { graph: sequence(items), input: undefined }
}

const sequence = (items: ReadonlyArray<Dsl>): Model.Node => {
  const nodes: Array<Model.Node> = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!
    const callKey = item.kind === "sql" ? stepKey(item.name, callName) : undefined
    const bodyKey = item.kind === "sql" ? stepKey(item.name, bodyName) : undefined
    const next = items[i + 1]
    if (
      item.kind === "join" && item.name === undefined && next?.kind === "sql" && next.name !== undefined &&
      parallelPattern.test(next.name)
    ) {
      nodes.push(observedParallel(item, next))
      i += 1
    } else if (callKey !== undefined) {
      nodes.push(workerStep(item as Dsl & { kind: "sql" }, items[i + 1], callKey))
      i += 1
    } else if (bodyKey !== undefined) {
      nodes.push(httpStep(item as Dsl & { kind: "sql" }, items[i + 1], items[i + 2], bodyKey))
      i += 2
    } else nodes.push(node(item))
  }
  return nodes.length === 1 ? nodes[0]! : { _tag: "Sequence", nodes }
}

const workerStep = (enqueue: Dsl & { kind: "sql" }, result: Dsl | undefined, key: string): Model.Node => {
  const { args, refs } = call(enqueue.query, "pgd_enqueue_step")
  if (args.length !== 6 || constant(args[2]) !== "{sys_instance_id}" || constant(args[3]) !== key) {
    throw new NotAGraph(`the step call ${JSON.stringify(enqueue.query)} is not one this compiler writes`)
  }
  if (result?.kind !== "sql") throw new NotAGraph(`step call ${key} is not followed by its result node`)
  const read = call(result.query, "pgd_step_result")
  if (read.refs[0] !== callName(key)) throw new NotAGraph(`the result node of step call ${key} reads another call`)
  return withCapture({ _tag: "Step", step: textExpr(args[4]!), input: liftExpr(args[5]!, refs) }, result.name)
}

const httpStep = (body: Dsl & { kind: "sql" }, request: Dsl | undefined, output: Dsl | undefined, key: string) => {
  const { columns, refs } = parseGenerated(body.query)
  const allocation = columns[0]?.value.FuncCall as Ast | undefined
  const input = columns[1]?.value.TypeCast as Ast | undefined
  if (
    columns.length !== 2 || columns[0]!.name !== "key" || columns[1]!.name !== "body" ||
    allocation === undefined || funcName(allocation) !== "pgd_http_call" || allocation.args?.length !== 3 ||
    constant(allocation.args[0]) !== "{sys_instance_id}" || constant(allocation.args[1]) !== key ||
    input === undefined || typeName(input) !== "text"
  ) {
    throw new NotAGraph(`the body node of step call ${key} is not one this compiler writes`)
  }
  if (request?.kind !== "http" || request.name !== httpName(key)) {
    throw new NotAGraph(`the body node of step call ${key} is not followed by its request`)
  }
  const match = /\/steps\/([^/]+)$/.exec(request.url)
  if (match === null) throw new NotAGraph(`the request of step call ${key} does not go to a step endpoint`)
  if (request.body !== `$${bodyName(key)}.body`) {
    throw new NotAGraph(`the request of step call ${key} does not send its body node's input`)
  }
  if (output?.kind !== "sql") throw new NotAGraph(`the request of step call ${key} is not followed by its output node`)
  const read = call(output.query, "pgd_http_output")
  if (
    read.refs[0] !== httpName(key) || read.refs[1] !== bodyName(key) || read.args.length !== 4 ||
    constant(read.args[2]) !== "{sys_instance_id}"
  ) {
    throw new NotAGraph(`the output node of step call ${key} reads another call`)
  }
  const step = decodeURIComponent(match[1]!)
  if (textExpr(read.args[1]!) !== step || textExpr(allocation.args[2]!) !== step) {
    throw new NotAGraph(`step call ${key} names two different steps`)
  }
  return withCapture(
    { _tag: "Step", step, input: liftExpr(input.arg, refs) } as Model.StepNode,
    output.name
  )
}

const node = (dsl: Dsl): Model.Node => {
  switch (dsl.kind) {
    case "seq":
      if (dsl.name !== undefined) throw new NotAGraph("a named sequence is not something this compiler writes")
      return sequence(seqItems(dsl))
    case "sql":
      if (dsl.name !== undefined && stepKey(dsl.name, callName) !== undefined) {
        throw new NotAGraph("a step call without its result node")
      }
      if (dsl.name !== undefined && parallelPattern.test(dsl.name)) {
        throw new NotAGraph("the value node of a parallel without its join")
      }
      return withCapture({ _tag: "Sql", sql: liftSqlText(dsl.query) } as Model.SqlNode, dsl.name)
    case "join":
      if (dsl.name !== undefined && !joinPattern.test(dsl.name)) {
        throw new NotAGraph("a named parallel is not something this compiler writes")
      }
      // A named join is a parallel nested in another (kept apart from the join tree around it).
      return { _tag: "Parallel", branches: dsl.branches.flatMap((part) => flat(part, "join")).map(node) }
    case "race":
      if (dsl.name !== undefined) throw new NotAGraph("a named race is not something this compiler writes")
      return { _tag: "Race", branches: flat(dsl, "race").map(node) }
    case "if":
      if (dsl.condition.kind !== "sql" || dsl.condition.name !== undefined) {
        throw new NotAGraph("a branch condition must be an unnamed SQL node")
      }
      return withCapture({
        _tag: "Branch",
        condition: liftSqlText(dsl.condition.query),
        then: node(dsl.then),
        else: node(dsl.else)
      } as Model.BranchNode, dsl.name)
    case "if_rows":
      return withCapture({
        _tag: "IfRows",
        rowsOf: captureOfName(dsl.result)!,
        then: node(dsl.then),
        else: node(dsl.else)
      } as Model.IfRowsNode, dsl.name)
    case "loop": {
      if (dsl.condition !== undefined && (dsl.condition.kind !== "sql" || dsl.condition.name !== undefined)) {
        throw new NotAGraph("a loop condition must be an unnamed SQL node")
      }
      const body = node(dsl.body)
      const loop: Model.LoopNode = dsl.condition === undefined
        ? { _tag: "Loop", body }
        : { _tag: "Loop", body, while: liftSqlText((dsl.condition as Dsl & { kind: "sql" }).query) }
      return withCapture(loop, dsl.name)
    }
    case "break":
      return dsl.value === undefined ? { _tag: "Break" } : { _tag: "Break", value: JSON.parse(dsl.value) }
    case "sleep":
      return { _tag: "Sleep", seconds: dsl.seconds }
    case "wait_schedule": {
      const cron = Cron.fromPgDurable(dsl.cron)
      if (Result.isFailure(cron)) throw new NotAGraph(`cron expression ${JSON.stringify(dsl.cron)}: ${cron.failure}`)
      return { _tag: "WaitForSchedule", cron: cron.success }
    }
    case "signal":
      return withCapture(
        (dsl.timeout === undefined
          ? { _tag: "WaitForSignal", signal: dsl.signal }
          : { _tag: "WaitForSignal", signal: dsl.signal, timeoutSeconds: dsl.timeout }) as Model.WaitForSignalNode,
        dsl.name
      )
    case "http": {
      const headers = dsl.headers === undefined
        ? undefined
        : Object.entries(JSON.parse(dsl.headers) as Record<string, string>).map(([name, value]) =>
          [name, liftRawText(value)] as const
        )
      return withCapture({
        _tag: "Http",
        url: liftRawText(dsl.url),
        method: dsl.method as Model.HttpMethod,
        ...(dsl.body === undefined ? {} : { body: liftRawText(dsl.body) }),
        ...(headers === undefined ? {} : { headers }),
        timeoutSeconds: dsl.timeout
      } as Model.HttpNode, dsl.name)
    }
  }
}
