/**
 * Reads pg_durable graph expressions back from PostgreSQL's parse tree (libpg-query): function
 * calls `df.*` (positional or named arguments), the operators `~> |=> & | ?> !> @>` exactly as
 * PostgreSQL groups them (one precedence, left associative), string literals auto-wrapped as SQL
 * nodes the way pg_durable does, casts, and bind parameters.
 */
import type { Dsl } from "./dsl.ts"
import * as Parser from "./parser.ts"

/** A failure to read the expression; the message says what was found. */
export class NotAGraph extends Error {}

export interface Statement {
  /** `df.start`, `df.explain`, or a bare expression. */
  readonly call: "start" | "explain" | "expression"
  readonly graph: Dsl
  readonly label: string | null | undefined
  readonly transactionMode: string | null | undefined
}

type Ast = Record<string, any>

const signatures: Record<string, ReadonlyArray<readonly [name: string, fallback?: unknown]>> = {
  sql: [["query"]],
  seq: [["a"], ["b"]],
  as: [["fut"], ["name"]],
  join: [["a"], ["b"]],
  join3: [["a"], ["b"], ["c"]],
  race: [["a"], ["b"]],
  if: [["condition"], ["then_branch"], ["else_branch"]],
  if_rows: [["result_name"], ["then_branch"], ["else_branch"]],
  loop: [["body"], ["condition", null]],
  break: [["value", null]],
  sleep: [["seconds"]],
  wait_for_schedule: [["cron_expr"]],
  wait_for_signal: [["name"], ["timeout_seconds", null]],
  http: [["url"], ["method", "POST"], ["body", null], ["headers", null], ["timeout_seconds", 30]],
  start: [["fut"], ["label", null], ["database", null], ["transaction_mode", "caller"]],
  explain: [["input"]]
}

const strict = new Set(["sql", "seq", "as", "join", "join3", "race", "if", "if_rows", "sleep", "wait_for_schedule"])

/** Parses one statement: `SELECT df.start(<graph>, ...)`, `SELECT df.explain(<graph>)` or `SELECT <graph>`. */
export const parseStatement = (text: string, params: ReadonlyArray<unknown> = []): Statement => {
  const parsed = Parser.parse(text)
  if (parsed._tag === "Error") throw new NotAGraph(`PostgreSQL cannot parse it: ${parsed.message}`)
  if (parsed.statements.length !== 1) {
    throw new NotAGraph(`expected one statement, found ${parsed.statements.length}`)
  }
  const select = (parsed.statements[0] as Ast).SelectStmt as Ast | undefined
  const targets = select?.targetList as ReadonlyArray<Ast> | undefined
  if (select === undefined || targets?.length !== 1 || select.fromClause !== undefined) {
    throw new NotAGraph("expected SELECT with exactly one expression and no FROM")
  }
  const expression = targets[0]!.ResTarget.val as Ast
  const reader = new Reader(params)
  const call = expression.FuncCall as Ast | undefined
  const fn = call === undefined ? undefined : functionName(call)
  if (fn === "start" || fn === "explain") {
    const args = reader.args(fn, call!)
    const graph = reader.node(args[0])
    if (fn === "explain") return { call: "explain", graph, label: undefined, transactionMode: undefined }
    return {
      call: "start",
      graph,
      label: reader.optionalText(args[1]),
      transactionMode: reader.optionalText(args[3])
    }
  }
  return { call: "expression", graph: reader.node(expression), label: undefined, transactionMode: undefined }
}

/** Parses a graph expression alone (what goes inside `df.start(...)`). */
export const parseExpression = (text: string, params: ReadonlyArray<unknown> = []): Dsl =>
  parseStatement(`SELECT ${text}`, params).graph

const functionName = (call: Ast): string | undefined => {
  const names = (call.funcname as ReadonlyArray<Ast>).map((part) => part.String?.sval as string)
  if (names.length === 2 && names[0] === "df") return names[1]
  return undefined
}

interface Partial {
  readonly partial: true
  readonly condition: Dsl
  readonly then: Dsl
}

const isDurofutJson = (text: string): boolean => {
  try {
    const value = JSON.parse(text)
    return typeof value === "object" && value !== null && !Array.isArray(value) && "node_type" in value
  } catch {
    return false
  }
}

class Reader {
  readonly params: ReadonlyArray<unknown>
  constructor(params: ReadonlyArray<unknown>) {
    this.params = params
  }

  /** The arguments of a `df.*` call in declaration order, defaults filled in (`undefined` = NULL). */
  args(fn: string, call: Ast): ReadonlyArray<Ast | undefined | { readonly fallback: unknown }> {
    const signature = signatures[fn]
    if (signature === undefined) throw new NotAGraph(`df.${fn} is not a graph constructor`)
    const given = (call.args ?? []) as ReadonlyArray<Ast>
    const out: Array<Ast | undefined | { readonly fallback: unknown }> = signature.map(([, ...rest]) =>
      rest.length === 0 ? undefined : { fallback: rest[0] }
    )
    const seen = new Set<number>()
    given.forEach((arg, index) => {
      const namedArg = arg.NamedArgExpr as Ast | undefined
      const position = namedArg === undefined
        ? index
        : signature.findIndex(([name]) => name === namedArg.name)
      if (position < 0 || position >= signature.length) {
        throw new NotAGraph(`df.${fn} has no argument ${namedArg === undefined ? index + 1 : namedArg.name}`)
      }
      seen.add(position)
      out[position] = namedArg === undefined ? arg : namedArg.arg
    })
    signature.forEach(([name, ...rest], index) => {
      if (!seen.has(index) && rest.length === 0) throw new NotAGraph(`df.${fn} is missing its argument ${name}`)
    })
    return out
  }

  /** A scalar value: a constant, a cast constant, or a bind parameter. `null` for SQL NULL. */
  value(arg: Ast | undefined | { readonly fallback: unknown }): unknown {
    if (arg === undefined) return null
    if ("fallback" in arg) return arg.fallback
    if (arg.TypeCast !== undefined) return this.value(arg.TypeCast.arg)
    if (arg.ParamRef !== undefined) {
      const index = (arg.ParamRef.number as number) - 1
      if (index < 0 || index >= this.params.length) throw new NotAGraph(`no value for parameter $${index + 1}`)
      return this.params[index]
    }
    const constant = arg.A_Const as Ast | undefined
    if (constant === undefined) throw new NotAGraph(`expected a value, found ${Object.keys(arg)[0]}`)
    if (constant.isnull === true) return null
    if (constant.sval !== undefined) return constant.sval.sval ?? ""
    if (constant.ival !== undefined) return constant.ival.ival ?? 0
    if (constant.fval !== undefined) return Number(constant.fval.fval)
    if (constant.boolval !== undefined) return constant.boolval.boolval ?? false
    throw new NotAGraph("unsupported constant")
  }

  text(arg: Ast | undefined | { readonly fallback: unknown }, what: string): string {
    const value = this.value(arg)
    if (typeof value !== "string") {
      throw new NotAGraph(`${what} must be text, found ${value === null ? "NULL" : typeof value}`)
    }
    return value
  }

  optionalText(arg: Ast | undefined | { readonly fallback: unknown }): string | null | undefined {
    if (arg === undefined) return undefined
    const value = this.value(arg)
    return value === null ? null : String(value)
  }

  integer(arg: Ast | undefined | { readonly fallback: unknown }, what: string): number {
    const value = this.value(arg)
    const n = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value
    if (typeof n !== "number" || !Number.isInteger(n)) throw new NotAGraph(`${what} must be a whole number`)
    return n
  }

  node(ast: Ast | undefined | { readonly fallback: unknown }): Dsl {
    const result = this.nodeOrPartial(ast)
    if ("partial" in result) {
      throw new NotAGraph("a ?> without its !> (pg_durable would run the partial-if JSON as SQL)")
    }
    return result
  }

  nodeOrPartial(ast: Ast | undefined | { readonly fallback: unknown }): Dsl | Partial {
    if (ast === undefined || "fallback" in ast) {
      throw new NotAGraph("NULL where a graph node belongs makes the graph NULL")
    }
    if (ast.A_Const !== undefined || ast.ParamRef !== undefined || ast.TypeCast !== undefined) {
      const value = this.value(ast)
      if (value === null) throw new NotAGraph("NULL where a graph node belongs makes the graph NULL")
      if (typeof value !== "string") throw new NotAGraph(`a ${typeof value} where a graph node belongs`)
      if (isDurofutJson(value)) throw new NotAGraph("a literal Durofut JSON node; write the df.* calls instead")
      return { kind: "sql", query: value }
    }
    if (ast.FuncCall !== undefined) return this.call(ast.FuncCall)
    if (ast.A_Expr !== undefined) return this.operator(ast.A_Expr)
    throw new NotAGraph(`unexpected ${Object.keys(ast)[0]} where a graph node belongs`)
  }

  call(call: Ast): Dsl {
    const fn = functionName(call)
    if (fn === undefined || fn === "start" || fn === "explain") {
      throw new NotAGraph(
        `${(call.funcname as ReadonlyArray<Ast>).map((p) => p.String?.sval).join(".")} is not a df.* graph constructor`
      )
    }
    const args = this.args(fn, call)
    if (strict.has(fn) && args.some((arg) => arg !== undefined && !("fallback" in arg) && isNull(arg))) {
      throw new NotAGraph(`df.${fn} is STRICT: a NULL argument makes the whole graph NULL`)
    }
    switch (fn) {
      case "sql":
        return { kind: "sql", query: this.text(args[0], "df.sql's query") }
      case "seq":
        return { kind: "seq", left: this.node(args[0]), right: this.node(args[1]) }
      case "as":
        return this.name(this.node(args[0]), this.text(args[1], "df.as's name"))
      case "join":
        return { kind: "join", branches: [this.node(args[0]), this.node(args[1])] }
      case "join3":
        return { kind: "join", branches: [this.node(args[0]), this.node(args[1]), this.node(args[2])] }
      case "race":
        return { kind: "race", left: this.node(args[0]), right: this.node(args[1]) }
      case "if":
        return { kind: "if", condition: this.node(args[0]), then: this.node(args[1]), else: this.node(args[2]) }
      case "if_rows":
        return {
          kind: "if_rows",
          result: this.text(args[0], "df.if_rows's result name"),
          then: this.node(args[1]),
          else: this.node(args[2])
        }
      case "loop": {
        const body = this.node(args[0])
        const condition = args[1] === undefined || ("fallback" in args[1]) || isNull(args[1])
          ? undefined
          : this.node(args[1])
        return condition === undefined ? { kind: "loop", body } : { kind: "loop", body, condition }
      }
      case "break": {
        const value = this.value(args[0])
        return value === null ? { kind: "break" } : { kind: "break", value: String(value) }
      }
      case "sleep":
        return { kind: "sleep", seconds: this.integer(args[0], "df.sleep's seconds") }
      case "wait_for_schedule":
        return { kind: "wait_schedule", cron: this.text(args[0], "df.wait_for_schedule's expression") }
      case "wait_for_signal": {
        const signal = this.text(args[0], "df.wait_for_signal's name")
        const timeout = this.value(args[1])
        return timeout === null
          ? { kind: "signal", signal }
          : { kind: "signal", signal, timeout: this.integer(args[1], "df.wait_for_signal's timeout") }
      }
      case "http": {
        const body = this.value(args[2])
        const headers = this.value(args[3])
        return {
          kind: "http",
          url: this.text(args[0], "df.http's url"),
          method: String(this.value(args[1])).toUpperCase(),
          ...(body === null ? {} : { body: String(body) }),
          ...(headers === null ? {} : { headers: typeof headers === "string" ? headers : JSON.stringify(headers) }),
          timeout: this.integer(args[4], "df.http's timeout")
        }
      }
    }
    throw new NotAGraph(`df.${fn} is not supported`)
  }

  name(node: Dsl, name: string): Dsl {
    if (node.kind === "break" || node.kind === "sleep" || node.kind === "wait_schedule") {
      // pg_durable ignores names on these nodes.
      return node
    }
    return { ...node, name }
  }

  operator(expr: Ast): Dsl | Partial {
    if (expr.kind !== "AEXPR_OP") throw new NotAGraph(`unexpected ${expr.kind} expression`)
    const names = (expr.name as ReadonlyArray<Ast>).map((part) => part.String?.sval as string)
    const op = names[names.length - 1]!
    if (names.length > 1 && !(names.length === 2 && names[0] === "pg_catalog")) {
      throw new NotAGraph(`operator ${names.join(".")} is not a pg_durable operator`)
    }
    if (op === "@>") {
      if (expr.lexpr !== undefined) throw new NotAGraph("@> with a left operand is jsonb containment, not a loop")
      return { kind: "loop", body: this.node(expr.rexpr) }
    }
    if (expr.lexpr === undefined) throw new NotAGraph(`prefix ${op} is not a pg_durable operator`)
    switch (op) {
      case "~>":
        return { kind: "seq", left: this.node(expr.lexpr), right: this.node(expr.rexpr) }
      case "|=>":
        return this.name(this.node(expr.lexpr), this.text(expr.rexpr, "the name after |=>"))
      case "&":
        return { kind: "join", branches: [this.node(expr.lexpr), this.node(expr.rexpr)] }
      case "|":
        return { kind: "race", left: this.node(expr.lexpr), right: this.node(expr.rexpr) }
      case "?>":
        return { partial: true, condition: this.node(expr.lexpr), then: this.node(expr.rexpr) }
      case "!>": {
        const left = this.nodeOrPartial(expr.lexpr)
        if (!("partial" in left)) throw new NotAGraph("the left side of !> must be a ?> expression")
        return { kind: "if", condition: left.condition, then: left.then, else: this.node(expr.rexpr) }
      }
    }
    throw new NotAGraph(`operator ${op} is not a pg_durable operator (it would apply to the graph's JSON text)`)
  }
}

const isNull = (arg: Ast): boolean =>
  arg.A_Const?.isnull === true || (arg.TypeCast !== undefined && isNull(arg.TypeCast.arg))
