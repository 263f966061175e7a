/**
 * pg_durable's graph as the DSL functions build it (one variant per `df.*` constructor), and its
 * renderings as SQL: nested `df.*` calls with literals, the same with bind parameters, and the
 * fully parenthesised operator form.
 */
import * as Quote from "./quote.ts"

export type Dsl =
  | { readonly kind: "sql"; readonly query: string; readonly name?: string }
  | { readonly kind: "seq"; readonly left: Dsl; readonly right: Dsl; readonly name?: string }
  | { readonly kind: "join"; readonly branches: ReadonlyArray<Dsl>; readonly name?: string }
  | { readonly kind: "race"; readonly left: Dsl; readonly right: Dsl; readonly name?: string }
  | { readonly kind: "if"; readonly condition: Dsl; readonly then: Dsl; readonly else: Dsl; readonly name?: string }
  | {
    readonly kind: "if_rows"
    readonly result: string
    readonly then: Dsl
    readonly else: Dsl
    readonly name?: string
  }
  | { readonly kind: "loop"; readonly body: Dsl; readonly condition?: Dsl; readonly name?: string }
  | { readonly kind: "break"; readonly value?: string }
  | { readonly kind: "sleep"; readonly seconds: number }
  | { readonly kind: "wait_schedule"; readonly cron: string }
  | { readonly kind: "signal"; readonly signal: string; readonly timeout?: number; readonly name?: string }
  | {
    readonly kind: "http"
    readonly url: string
    readonly method: string
    readonly body?: string
    readonly headers?: string
    readonly timeout: number
    readonly name?: string
  }

export type Rendering = "functions" | "operators"

/** Names the node (`df.as`). */
export const named = (node: Dsl, name: string | undefined): Dsl =>
  name === undefined || node.kind === "break" || node.kind === "sleep" || node.kind === "wait_schedule"
    ? node
    : { ...node, name }

/** The children of a node (conditions included), for depth and size. */
export const dslChildren = (node: Dsl): ReadonlyArray<Dsl> => {
  switch (node.kind) {
    case "seq":
    case "race":
      return [node.left, node.right]
    case "join":
      return node.branches
    case "if":
      return [node.condition, node.then, node.else]
    case "if_rows":
      return [node.then, node.else]
    case "loop":
      return node.condition === undefined ? [node.body] : [node.body, node.condition]
    default:
      return []
  }
}

export const depth = (node: Dsl): number => 1 + Math.max(0, ...dslChildren(node).map(depth))

export const size = (node: Dsl): number => 1 + dslChildren(node).reduce((total, child) => total + size(child), 0)

/** Every leaf SQL text of the graph (SQL nodes, conditions). */
export const sqlTexts = (node: Dsl): ReadonlyArray<string> =>
  node.kind === "sql" ? [node.query] : dslChildren(node).flatMap(sqlTexts)

/** Where the values of a rendering go: inline literals, or bind parameters. */
interface Sink {
  readonly text: (value: string) => string
  readonly bigint: (value: number) => string
  readonly int: (value: number) => string
  readonly jsonb: (value: string) => string
  readonly nullText: () => string
}

const literals: Sink = {
  text: Quote.literal,
  bigint: (value) => `${value}`,
  int: (value) => `${value}`,
  jsonb: (value) => `${Quote.literal(value)}::jsonb`,
  nullText: () => "NULL"
}

const parameters = (params: Array<unknown>): Sink => {
  const push = (value: unknown, type: string) => {
    params.push(value)
    return `$${params.length}::${type}`
  }
  return {
    text: (value) => push(value, "text"),
    bigint: (value) => push(value, "bigint"),
    int: (value) => push(value, "int"),
    jsonb: (value) => push(value, "jsonb"),
    nullText: () => push(null, "text")
  }
}

const functions = (node: Dsl, sink: Sink, override?: (node: Dsl) => string | undefined): string => {
  const replaced = override?.(node)
  if (replaced !== undefined) return replaced
  const functions_ = (child: Dsl, s: Sink) => functions(child, s, override)
  const inner = (): string => {
    switch (node.kind) {
      case "sql":
        return `df.sql(${sink.text(node.query)})`
      case "seq":
        return `df.seq(${functions_(node.left, sink)}, ${functions_(node.right, sink)})`
      case "join":
        return node.branches.length === 3
          ? `df.join3(${node.branches.map((branch) => functions_(branch, sink)).join(", ")})`
          : `df.join(${node.branches.map((branch) => functions_(branch, sink)).join(", ")})`
      case "race":
        return `df.race(${functions_(node.left, sink)}, ${functions_(node.right, sink)})`
      case "if":
        return `df.if(${functions_(node.condition, sink)}, ${functions_(node.then, sink)}, ${
          functions_(node.else, sink)
        })`
      case "if_rows":
        return `df.if_rows(${sink.text(node.result)}, ${functions_(node.then, sink)}, ${functions_(node.else, sink)})`
      case "loop":
        return node.condition === undefined
          ? `df.loop(${functions_(node.body, sink)})`
          : `df.loop(${functions_(node.body, sink)}, ${functions_(node.condition, sink)})`
      case "break":
        return node.value === undefined ? "df.break()" : `df.break(${sink.text(node.value)})`
      case "sleep":
        return `df.sleep(${sink.bigint(node.seconds)})`
      case "wait_schedule":
        return `df.wait_for_schedule(${sink.text(node.cron)})`
      case "signal":
        return node.timeout === undefined
          ? `df.wait_for_signal(${sink.text(node.signal)})`
          : `df.wait_for_signal(${sink.text(node.signal)}, ${sink.int(node.timeout)})`
      case "http":
        return `df.http(${sink.text(node.url)}, ${sink.text(node.method)}, ${
          node.body === undefined ? sink.nullText() : sink.text(node.body)
        }, ${node.headers === undefined ? "NULL" : sink.jsonb(node.headers)}, ${sink.int(node.timeout)})`
    }
  }
  const name = "name" in node ? node.name : undefined
  return name === undefined ? inner() : `df.as(${inner()}, ${sink.text(name)})`
}

const unnamed = (node: Dsl): Dsl => {
  if (!("name" in node) || node.name === undefined) return node
  const { name: _, ...rest } = node
  return rest as Dsl
}

const operators = (node: Dsl): string => {
  const inner = (): string => {
    switch (node.kind) {
      case "sql":
        return Quote.literal(node.query)
      case "seq":
        return `(${operators(node.left)} ~> ${operators(node.right)})`
      case "join":
        return node.branches.length === 3
          ? `df.join3(${node.branches.map(operators).join(", ")})`
          : `(${operators(node.branches[0]!)} & ${operators(node.branches[1]!)})`
      case "race":
        return `(${operators(node.left)} | ${operators(node.right)})`
      case "if":
        return `((${operators(node.condition)} ?> ${operators(node.then)}) !> ${operators(node.else)})`
      case "if_rows":
        return `df.if_rows(${Quote.literal(node.result)}, ${operators(node.then)}, ${operators(node.else)})`
      case "loop":
        return node.condition === undefined
          ? `(@> ${operators(node.body)})`
          : `df.loop(${operators(node.body)}, ${operators(node.condition)})`
      default:
        return functions(unnamed(node), literals)
    }
  }
  const name = "name" in node ? node.name : undefined
  return name === undefined ? inner() : `(${inner()} |=> ${Quote.literal(name)})`
}

/** The operators rendering over several lines, indented (PostgreSQL ignores the layout). */
export const pretty = (node: Dsl, depth = 0): string => {
  const pad = "  ".repeat(depth + 1)
  const close = "  ".repeat(depth)
  const next = (child: Dsl) => pretty(child, depth + 1)
  const inner = (): string => {
    switch (node.kind) {
      case "sql":
        return Quote.literal(node.query)
      case "seq":
        return `(\n${pad}${next(node.left)}\n${pad}~> ${next(node.right)}\n${close})`
      case "join":
        return node.branches.length === 3
          ? `df.join3(\n${node.branches.map((branch) => `${pad}${next(branch)}`).join(",\n")}\n${close})`
          : `(\n${pad}${next(node.branches[0]!)}\n${pad}& ${next(node.branches[1]!)}\n${close})`
      case "race":
        return `(\n${pad}${next(node.left)}\n${pad}| ${next(node.right)}\n${close})`
      case "if":
        return `(\n${pad}(${next(node.condition)}\n${pad} ?> ${next(node.then)})\n${pad}!> ${
          next(node.else)
        }\n${close})`
      case "if_rows":
        return `df.if_rows(${Quote.literal(node.result)},\n${pad}${next(node.then)},\n${pad}${
          next(node.else)
        }\n${close})`
      case "loop":
        return node.condition === undefined
          ? `(@> ${next(node.body)})`
          : `df.loop(\n${pad}${next(node.body)},\n${pad}${next(node.condition)}\n${close})`
      default:
        return functions(unnamed(node), literals)
    }
  }
  const name = "name" in node ? node.name : undefined
  return name === undefined ? inner() : `(${inner()} |=> ${Quote.literal(name)})`
}

/**
 * The graph as a SQL expression with its values inline; `override` may give the text of some nodes
 * (the functions rendering only).
 */
export const render = (node: Dsl, rendering: Rendering, override?: (node: Dsl) => string | undefined): string =>
  rendering === "functions" ? functions(node, literals, override) : operators(node)

/** The graph as a SQL expression in the function form, every value a bind parameter. */
export const renderParameterised = (
  node: Dsl,
  params: Array<unknown> = []
): { readonly text: string; readonly params: Array<unknown> } => {
  const text = functions(node, parameters(params))
  return { text, params }
}
