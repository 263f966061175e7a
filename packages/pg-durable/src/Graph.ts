/**
 * The graph algebra: typed constructors for what pg_durable runs inside PostgreSQL. Steps (a
 * registered `Step`, run by a `StepWorker` or an HTTP endpoint), SQL, sleeps, waits for a signal
 * or a schedule, HTTP calls, and the combinators `sequence`, `parallel` (join), `race`, `branch`,
 * `ifRows` and `loop` (with `break`).
 *
 * A node may **capture** its result under a name (`{ capture: "receipt" }`, or `Graph.as`); later
 * nodes read it with `Graph.capture(name)` (in a step's input) or `Graph.ref(name)` (in SQL and HTTP
 * text). The types follow captures: a graph records what it binds and what it needs, and
 * `Compiler.compile`, `PgDurableClient.start` and `GraphWorkflow.make` accept only a graph whose
 * needs are bound earlier (and, where the types are known, with a matching type). The compiler checks
 * the same rules again at run time, with the scoping pg_durable really has.
 *
 * **Gotchas**
 *
 * - A capture is visible to the nodes after it in the same branch; captures made inside a parallel
 *   are visible after the parallel, captures made in both arms of a branch after the branch, and
 *   captures made in a loop's body only later in the same iteration (pg_durable rebuilds a root
 *   loop's results on each iteration).
 * - What a capture holds, read as JSON with `Graph.capture`: a step's output (its encoded form); the
 *   first column of the first row of a SQL node (JSON only when that column is json, jsonb, or text
 *   holding JSON); the whole envelope of a signal (`{ signal_name, timed_out, data }`) or an HTTP call
 *   (`{ status, body, encoding, headers, ok, duration_ms }`); the taken arm of a branch; a loop's
 *   break value (write break values as JSON objects); a parallel's tuple (see `parallel`). The same
 *   value, typed `Graph.Value`, is what `PgDurableClient.result(id, graph)` gives for a whole graph.
 * - The run's input is the capture `"input"` (`Graph.input()`); no node may bind that name.
 *
 * @example
 * ```ts
 * const order = Graph.sequence(
 *   Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
 *   Graph.waitForSignal("approval", { capture: "approval", timeout: "2 days" }),
 *   Graph.branch(
 *     Graph.sql`SELECT (${Graph.ref("approval")})::jsonb->'data'->>'approved' = 'true'`,
 *     Graph.step(ship, { capture: "shipment", input: Graph.capture("receipt") }),
 *     Graph.step(refund, { input: Graph.capture("receipt") })
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import { dual } from "effect/Function"
import type { Pipeable } from "effect/Pipeable"
import { pipeArguments } from "effect/Pipeable"
import type * as Schema from "effect/Schema"
import type * as Step from "pgflows/Step"
import * as Model from "./internal/model.ts"
import * as Quote from "./internal/quote.ts"

const TypeId = "~@pgflows/pg-durable/Graph"
const ExprTypeId = "~@pgflows/pg-durable/Graph/Expr"
const FragmentTypeId = "~@pgflows/pg-durable/Graph/Fragment"

const identity = (_: never) => _
const variance = { _A: identity, _Binds: identity, _Needs: identity }
const exprVariance = { _T: identity, _Needs: identity }

/**
 * A graph node (or a whole graph). `A` is the JSON value a capture of it holds, `Binds` the captures
 * it binds (name to value type), `Needs` the captures it reads that it does not bind itself (name to
 * the type it expects).
 *
 * @category models
 * @since 0.1.0
 */
export interface Graph<out A = unknown, out Binds = {}, out Needs = {}> extends Pipeable {
  readonly [TypeId]: {
    readonly _A: (_: never) => A
    readonly _Binds: (_: never) => Binds
    readonly _Needs: (_: never) => Needs
  }
  /** The graph as data (see `GraphSpec` for its JSON form). */
  readonly node: Model.Node
  /** The steps the graph calls, by name, collected from its `Graph.step` nodes. */
  readonly steps: ReadonlyMap<string, Step.Any>
  /** Step names used by two different `Step` values (a compile error). */
  readonly conflicts: ReadonlySet<string>
  /** The Schema declared for a capture (`Graph.as(name, schema)`, a signal's `payload`). */
  readonly schemas: ReadonlyMap<string, Schema.Top>
}

/**
 * Any graph.
 *
 * @category models
 * @since 0.1.0
 */
export type Any = Graph<any, any, any>

/**
 * A graph node as data (see the module `GraphSpec` for the JSON form).
 *
 * @category models
 * @since 0.1.0
 */
export type Node = Model.Node

/**
 * A JSON value.
 *
 * @category models
 * @since 0.1.0
 */
export type Json = Model.Json

/**
 * The value type of a graph's capture.
 *
 * @category type-level
 * @since 0.1.0
 */
export type Value<G> = G extends Graph<infer A, any, any> ? A : never

/**
 * The captures a graph binds.
 *
 * @category type-level
 * @since 0.1.0
 */
export type Binds<G> = G extends Graph<any, infer B, any> ? B : never

/**
 * The captures a graph reads without binding them.
 *
 * @category type-level
 * @since 0.1.0
 */
export type Needs<G> = G extends Graph<any, any, infer N> ? N : never

type Simplify<A> = { [K in keyof A]: A[K] } & {}

type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never

/**
 * The needs `N` that `Bound` does not satisfy (missing, or bound with a type the reader does not
 * accept).
 *
 * @category type-level
 * @since 0.1.0
 */
export type Unresolved<N, Bound> = Simplify<
  { [K in keyof N as K extends keyof Bound ? ([Bound[K]] extends [N[K]] ? never : K) : K]: N[K] }
>

/**
 * `unknown` when every capture `G` reads is bound (by `G` itself, or in `Available`); otherwise an
 * object type naming the missing captures, which makes the call that asked for it fail to compile.
 *
 * @category type-level
 * @since 0.1.0
 */
export type Closed<G, Available = {}> = [keyof Unresolved<Needs<G>, Available>] extends [never] ? unknown
  : { readonly "~pg-durable: captures read before a node binds them": keyof Unresolved<Needs<G>, Available> }

// ---------------------------------------------------------------------------------------------------
// Expressions (step inputs)
// ---------------------------------------------------------------------------------------------------

/**
 * A JSON value computed when the step runs, from the run's input, captures and constants.
 *
 * @category models
 * @since 0.1.0
 */
export interface Expr<out T = unknown, out Needs = {}> {
  readonly [ExprTypeId]: { readonly _T: (_: never) => T; readonly _Needs: (_: never) => Needs }
  readonly expr: Model.Expr
  /** The member at a path of keys (`->` in SQL). */
  readonly at: (...keys: ReadonlyArray<string>) => Expr<any, Needs>
}

const makeExpr = <T, N>(expr: Model.Expr): Expr<T, N> => ({
  [ExprTypeId]: exprVariance,
  expr,
  at: (...keys) => makeExpr(keys.reduce<Model.Expr>((inner, key) => ({ _tag: "Field", expr: inner, key }), expr))
})

/**
 * A capture as JSON (see the module documentation for what each kind of node holds).
 *
 * @category expressions
 * @since 0.1.0
 */
export const capture = <const Name extends string, T = any>(name: Name): Expr<T, { readonly [K in Name]: T }> =>
  makeExpr({ _tag: "Capture", capture: name })

/**
 * The run's input (the capture `"input"`), given to `PgDurableClient.start` or to the exported
 * start function.
 *
 * @category expressions
 * @since 0.1.0
 */
export const input = <T = any>(): Expr<T, { readonly input: T }> => makeExpr({ _tag: "Capture", capture: "input" })

/**
 * A constant. It is written into the compiled SQL as a JSON literal whose `$`, `{` and `}` are
 * escaped, so pg_durable never rewrites it.
 *
 * @category expressions
 * @since 0.1.0
 */
export const value = <const T extends Json>(value: T): Expr<T, {}> => makeExpr({ _tag: "Value", value })

/**
 * A JSON object built from expressions.
 *
 * @category expressions
 * @since 0.1.0
 */
export const object = <const F extends Record<string, Expr<any, any>>>(
  fields: F
): Expr<
  { -readonly [K in keyof F]: F[K] extends Expr<infer T, any> ? T : never },
  Simplify<UnionToIntersection<{ [K in keyof F]: F[K] extends Expr<any, infer N> ? N : never }[keyof F]>>
> => makeExpr({ _tag: "Object", fields: Object.entries(fields).map(([key, item]) => [key, item.expr] as const) })

/**
 * A JSON array built from expressions.
 *
 * @category expressions
 * @since 0.1.0
 */
export const array = <const Items extends ReadonlyArray<Expr<any, any>>>(
  ...items: Items
): Expr<
  { -readonly [K in keyof Items]: Items[K] extends Expr<infer T, any> ? T : never },
  Simplify<UnionToIntersection<{ [K in keyof Items]: Items[K] extends Expr<any, infer N> ? N : never }[number]>>
> => makeExpr({ _tag: "Array", items: items.map((item) => item.expr) })

// ---------------------------------------------------------------------------------------------------
// Text (SQL statements, HTTP URLs, bodies and headers)
// ---------------------------------------------------------------------------------------------------

/**
 * A piece of a `Graph.sql` or `Graph.text` template: a reference to a capture, the instance id, or
 * (in SQL only) a literal.
 *
 * @category models
 * @since 0.1.0
 */
export interface Fragment<out Needs = {}, out Kind extends "ref" | "literal" = "ref" | "literal"> {
  readonly [FragmentTypeId]: { readonly _Needs: (_: never) => Needs; readonly _Kind: Kind }
  /** A reference, or the SQL of a literal. */
  readonly part: Model.RefPart | Model.InstanceIdPart | string
  /** Set on literals: the compiler checks where they sit before writing them into the text. */
  readonly literal?: true | undefined
}

const fragment = <N, K extends "ref" | "literal">(part: Model.RefPart | Model.InstanceIdPart | string) =>
  ({ [FragmentTypeId]: { _Needs: identity, _Kind: "ref" }, part }) as unknown as Fragment<N, K>

const literalFragment = (sql: string): Fragment<{}, "literal"> =>
  ({ ...fragment<{}, "literal">(sql), literal: true }) as Fragment<{}, "literal">

/**
 * A reference to a capture: `$name` (its first column of the first row, or the whole result for
 * signals, HTTP calls and loops), or with `field`, the column (or envelope member) of that name.
 * With `optional`, a missing row or NULL gives SQL NULL instead of failing the node.
 *
 * In SQL it is written parenthesised, as a literal: cast it (`${Graph.ref("x")}::int`); text comes
 * quoted (`'...'`), numbers bare. Write it where a value goes, never inside a string constant, a
 * dollar-quoted string, a comment or a quoted identifier: pg_durable substitutes it as text even
 * there, so its value could end the quotes and run as SQL. The compiler checks this with
 * PostgreSQL's lexer; build text with `||` instead (`'order ' || ${Graph.ref("o", "id")}`).
 *
 * @category text
 * @since 0.1.0
 */
export const ref = <const Name extends string>(
  capture: Name,
  field?: string,
  options?: { readonly optional?: boolean | undefined }
): Fragment<{ readonly [K in Name]: unknown }, "ref"> =>
  fragment({
    _tag: "Ref",
    capture,
    ...(field === undefined ? {} : { field }),
    ...(options?.optional === true ? { optional: true } : {})
  })

/**
 * All rows of a SQL capture, for a FROM clause: `SELECT count(*) FROM ${Graph.rows("batch")}`.
 *
 * @category text
 * @since 0.1.0
 */
export const rows = <const Name extends string>(capture: Name): Fragment<{ readonly [K in Name]: unknown }, "ref"> =>
  fragment({ _tag: "Ref", capture, rows: true })

/**
 * The pg_durable instance id (8 hex characters): quoted in SQL, as is in HTTP text.
 *
 * @category text
 * @since 0.1.0
 */
export const instanceId: Fragment<{}, "ref"> = fragment({ _tag: "InstanceId" })

/**
 * A SQL literal for a value, safe from pg_durable's text substitution: text is quoted (with `$`,
 * `{` and `}` written as `chr(...)`), JSON objects and arrays become `'...'::jsonb`. Like a reference,
 * it goes where a value goes, not inside quotes or comments, nor right after a name (`E${...}` would
 * read it as an `E'...'` string); the compiler checks.
 *
 * @category text
 * @since 0.1.0
 */
export const literal = (value: Json): Fragment<{}, "literal"> => {
  if (value === null) return literalFragment("NULL")
  if (typeof value === "string") return literalFragment(Quote.nodeText(value))
  if (typeof value === "number") return literalFragment(Number.isFinite(value) ? `(${value})` : "NULL")
  if (typeof value === "boolean") return literalFragment(value ? "true" : "false")
  return literalFragment(`${Quote.literal(Quote.inertJson(value))}::jsonb`)
}

/**
 * Text with references, for HTTP URLs, bodies and headers (raw: references are inserted as they
 * are, without quoting).
 *
 * @category models
 * @since 0.1.0
 */
export interface Text<out Needs = {}> {
  readonly _tag: "Text"
  readonly parts: Model.Text
  readonly "~needs"?: (_: never) => Needs
}

type FragmentNeeds<F extends ReadonlyArray<Fragment<any, any>>> = Simplify<
  UnionToIntersection<{ [K in keyof F]: F[K] extends Fragment<infer N, any> ? N : never }[number]> & {}
>

const template = (strings: ReadonlyArray<string>, fragments: ReadonlyArray<Fragment<any, any>>): Model.Text => {
  const parts: Array<string | Model.TextPart> = []
  strings.forEach((text, index) => {
    parts.push(text)
    const piece = fragments[index]
    if (piece === undefined) return
    parts.push(
      piece.literal === true && typeof piece.part === "string" ? { _tag: "Literal", sql: piece.part } : piece.part
    )
  })
  return Model.normalizeText(parts)
}

/**
 * A raw text template: `Graph.text\`https://api.example.com/orders/${Graph.ref("order", "id")}\``.
 *
 * @category text
 * @since 0.1.0
 */
export const text = <const F extends ReadonlyArray<Fragment<any, "ref">>>(
  strings: TemplateStringsArray,
  ...fragments: F
): Text<FragmentNeeds<F>> => ({ _tag: "Text", parts: template(strings, fragments) })

const toText = (value: string | Text<any>): Model.Text =>
  typeof value === "string" ? Model.normalizeText([value]) : value.parts

// ---------------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------------

/**
 * What a signal capture holds.
 *
 * @category models
 * @since 0.1.0
 */
export interface SignalEnvelope<P = unknown> {
  readonly signal_name: string
  readonly timed_out: boolean
  readonly data: P | null
}

/**
 * What an HTTP capture holds.
 *
 * @category models
 * @since 0.1.0
 */
export interface HttpEnvelope {
  readonly status: number
  readonly body: string
  readonly encoding: "text" | "base64"
  readonly headers: Record<string, string>
  readonly ok: boolean
  readonly duration_ms: number
}

/**
 * What a sleep yields.
 *
 * @category models
 * @since 0.1.0
 */
export interface SleepResult {
  readonly slept: true
  readonly seconds: number
}

// ---------------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------------

const GraphProto = {
  [TypeId]: variance,
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const make = <A, B, N>(node: Model.Node, from: ReadonlyArray<Any> = [], extra?: {
  readonly step?: Step.Any
  readonly schema?: readonly [string, Schema.Top]
}): Graph<A, B, N> => {
  const steps = new Map<string, Step.Any>()
  const conflicts = new Set<string>()
  const schemas = new Map<string, Schema.Top>()
  const addStep = (step: Step.Any) => {
    const existing = steps.get(step.name)
    if (existing !== undefined && existing !== step) conflicts.add(step.name)
    else steps.set(step.name, step)
  }
  for (const child of from) {
    child.steps.forEach(addStep)
    child.conflicts.forEach((name) => conflicts.add(name))
    child.schemas.forEach((schema, name) => schemas.set(name, schema))
  }
  if (extra?.step !== undefined) addStep(extra.step)
  if (extra?.schema !== undefined) schemas.set(extra.schema[0], extra.schema[1])
  const graph = Object.create(GraphProto)
  graph.node = node
  graph.steps = steps
  graph.conflicts = conflicts
  graph.schemas = schemas
  return graph
}

/**
 * An untyped graph from its data (a `GraphSpec`, a decompiled graph); steps are looked up by name
 * when it is compiled.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromNode = (node: Model.Node): Graph<unknown, {}, {}> => make(node)

/**
 * @category guards
 * @since 0.1.0
 */
export const isGraph = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

const withCapture = <N extends Model.Node>(node: N, capture: string | undefined): N =>
  capture === undefined ? node : { ...node, capture }

/**
 * Calls a registered step. The binding (`StepBinding.worker` or `StepBinding.http`) decides how
 * pg_durable reaches it; either way a failed step fails the node (and the instance), and the
 * capture holds the step's encoded output.
 *
 * A step can also be named by a string (as a `GraphSpec` does); it is then looked up in the steps
 * given to the compiler.
 *
 * @category constructors
 * @since 0.1.0
 */
export const step: {
  <S extends Step.Any, N = {}, const C extends string = never>(
    step: S,
    options: { readonly input: Expr<S["input"]["Encoded"], N>; readonly capture?: C | undefined }
  ): Graph<S["output"]["Encoded"], { readonly [K in C]: S["output"]["Encoded"] }, N>
  <N = {}, const C extends string = never>(
    step: string,
    options: { readonly input: Expr<any, N>; readonly capture?: C | undefined }
  ): Graph<unknown, { readonly [K in C]: unknown }, N>
} = (target: Step.Any | string, options: { readonly input: Expr<any, any>; readonly capture?: string | undefined }) =>
  make(
    withCapture<Model.StepNode>(
      { _tag: "Step", step: typeof target === "string" ? target : target.name, input: options.input.expr },
      options.capture
    ),
    [],
    typeof target === "string" ? undefined : { step: target }
  ) as any

/**
 * A SQL node: exactly one statement, written as a string or as a template with references
 * (`Graph.sql\`SELECT ${Graph.ref("doc", "id")}::int + 1 AS next\``). Its capture holds the first
 * column of the first row; `Graph.ref(name, column)` reads another column.
 *
 * @category constructors
 * @since 0.1.0
 */
export const sql: {
  <const F extends ReadonlyArray<Fragment<any, any>>>(
    strings: TemplateStringsArray,
    ...fragments: F
  ): Graph<unknown, {}, FragmentNeeds<F>>
  (statement: string): Graph<unknown, {}, {}>
} = (first: TemplateStringsArray | string, ...fragments: ReadonlyArray<Fragment<any, any>>) =>
  make({
    _tag: "Sql",
    sql: typeof first === "string" ? Model.normalizeText([first]) : template(first, fragments)
  }) as any

/**
 * Sleeps (durably, in pg_durable): a whole number of seconds.
 *
 * @category constructors
 * @since 0.1.0
 */
export const sleep = (duration: Duration.Input): Graph<SleepResult, {}, {}> =>
  make({ _tag: "Sleep", seconds: seconds(duration) })

const seconds = (duration: Duration.Input): number => {
  const decoded = Duration.fromInput(duration)
  return decoded._tag === "Some" ? Duration.toMillis(decoded.value) / 1000 : Number.NaN
}

/**
 * Waits for a signal of this name (sent with `PgDurableClient.signal`), at most `timeout` (whole
 * seconds) when given; the capture holds `{ signal_name, timed_out, data }`.
 *
 * **Gotchas**
 *
 * pg_durable drops signals sent before the wait is registered; `PgDurableClient.signal` re-sends
 * until a wait takes it. Use a distinct name for each wait, so a re-sent signal cannot reach a later
 * wait of the same name.
 *
 * @category constructors
 * @since 0.1.0
 */
export const waitForSignal = <const C extends string = never, P extends Schema.Top = Schema.Top>(
  signal: string,
  options?: {
    readonly timeout?: Duration.Input | undefined
    readonly capture?: C | undefined
    /** The payload's Schema, kept with the capture's description. */
    readonly payload?: P | undefined
  }
): Graph<
  SignalEnvelope<Schema.Top extends P ? unknown : P["Encoded"]>,
  { readonly [K in C]: SignalEnvelope<Schema.Top extends P ? unknown : P["Encoded"]> },
  {}
> =>
  make(
    withCapture<Model.WaitForSignalNode>(
      options?.timeout === undefined
        ? { _tag: "WaitForSignal", signal }
        : { _tag: "WaitForSignal", signal, timeoutSeconds: seconds(options.timeout) },
      options?.capture
    ),
    [],
    options?.capture !== undefined && options.payload !== undefined
      ? { schema: [options.capture, options.payload] }
      : undefined
  )

/**
 * Waits until the next time a cron expression matches (UTC). Write the usual Unix form (day of week
 * 0-7, Sunday = 0 or 7, or names); the compiler translates it to pg_durable's numbering (Sunday = 1)
 * and rejects what pg_durable would read differently.
 *
 * @category constructors
 * @since 0.1.0
 */
export const waitForSchedule = (cron: string): Graph<{ readonly scheduled: true }, {}, {}> =>
  make({ _tag: "WaitForSchedule", cron })

/**
 * An HTTP request made by pg_durable (`df.http`). Released pg_durable builds allow only Azure
 * service domains, never localhost or bare IPs; a 5xx answer fails the node, any other completes it
 * with the envelope. The URL, body and header values are raw templates (`Graph.text`): pg_durable
 * inserts references as they are, with no escaping. So the URL's scheme and host must be text (up to
 * the first `/`, `?` or `#`), and a reference may not sit inside a double-quoted string of the body
 * (a `"` in its value would end it); build a JSON body in a SQL node (`jsonb_build_object(...)::text`,
 * captured) and send that capture as the whole body.
 *
 * @category constructors
 * @since 0.1.0
 */
export const http = <N1 = {}, N2 = {}, const C extends string = never>(options: {
  readonly url: string | Text<N1>
  readonly method?: Model.HttpMethod | undefined
  readonly body?: string | Text<N2> | undefined
  readonly headers?: Readonly<Record<string, string | Text<any>>> | undefined
  readonly timeout?: Duration.Input | undefined
  readonly capture?: C | undefined
}): Graph<HttpEnvelope, { readonly [K in C]: HttpEnvelope }, Simplify<N1 & N2>> =>
  make(withCapture<Model.HttpNode>({
    _tag: "Http",
    url: toText(options.url),
    method: options.method ?? "POST",
    ...(options.body === undefined ? {} : { body: toText(options.body) }),
    ...(options.headers === undefined ? {} : {
      headers: Object.entries(options.headers).map(([name, value]) => [name, toText(value)] as const)
    }),
    timeoutSeconds: options.timeout === undefined ? 30 : seconds(options.timeout)
  }, options.capture))

type SequenceResult<Gs extends ReadonlyArray<Any>, B, N> = Gs extends
  readonly [infer H extends Any, ...infer T extends ReadonlyArray<Any>]
  ? SequenceResult<T, B & Binds<H>, N & Unresolved<Needs<H>, B>>
  : Graph<never, Simplify<B>, Simplify<N>>

type Last<Gs extends ReadonlyArray<Any>> = Gs extends readonly [...Array<Any>, infer L] ? Value<L> : unknown

/**
 * Runs the nodes one after the other; its result is the last node's. Compiled as a balanced tree of
 * `df.seq` (pg_durable 0.2.5 corrupts graphs nested deeper than about 127).
 *
 * @category combinators
 * @since 0.1.0
 */
export const sequence = <const Gs extends ReadonlyArray<Any>>(
  ...nodes: Gs
): Graph<Last<Gs>, Binds<SequenceResult<Gs, {}, {}>>, Needs<SequenceResult<Gs, {}, {}>>> =>
  make({ _tag: "Sequence", nodes: nodes.map((graph) => graph.node) }, nodes)

type AllBinds<Gs extends ReadonlyArray<Any>> = Simplify<
  UnionToIntersection<{ [K in keyof Gs]: Binds<Gs[K]> }[number]> & {}
>
type AllNeeds<Gs extends ReadonlyArray<Any>> = Simplify<
  UnionToIntersection<{ [K in keyof Gs]: Needs<Gs[K]> }[number]> & {}
>

/**
 * Runs the branches at the same time and waits for all (`df.join`, `df.join3`, nested for more);
 * the captures of every branch are visible after it. Branches do not see each other's captures.
 *
 * Its value (what a capture of a branch or loop whose arm it is holds, and what
 * `PgDurableClient.result` gives when the graph ends with it) is a tuple with one element per branch,
 * in order: what a capture of that branch would hold, read as JSON (a step's output, a SQL node's
 * first column of its first row, with text that is not JSON as a string and no row as null, a
 * sleep's `{ slept, seconds }`, a nested parallel's own tuple: nesting is kept). pg_durable's own
 * result of a join is a nested array of raw results (`{ rows, row_count }` for SQL), so where the
 * value is read the compiler names each branch and ends the parallel with a SQL node that builds the
 * tuple; where nothing reads it, the join stands alone.
 *
 * **Gotchas**
 *
 * A parallel and a loop in one instance can deadlock pg_durable; the compiler rejects that.
 *
 * @category combinators
 * @since 0.1.0
 */
export const parallel = <const Gs extends ReadonlyArray<Any>>(
  ...branches: Gs
): Graph<{ -readonly [K in keyof Gs]: Value<Gs[K]> }, AllBinds<Gs>, AllNeeds<Gs>> =>
  make({ _tag: "Parallel", branches: branches.map((graph) => graph.node) }, branches)

/**
 * Runs the branches at the same time; the first to finish wins. It must be the last thing the graph
 * does (pg_durable does not cancel the losers), and its branches' captures are not visible after it.
 *
 * @category combinators
 * @since 0.1.0
 */
export const race = <const Gs extends ReadonlyArray<Any>>(
  ...branches: Gs
): Graph<Value<Gs[number]>, {}, AllNeeds<Gs>> =>
  make({ _tag: "Race", branches: branches.map((graph) => graph.node) }, branches)

type BothBinds<B1, B2> = Simplify<{ [K in keyof B1 & keyof B2]: B1[K] | B2[K] }>

/**
 * Runs `then` when the SQL condition's first column of the first row is true (pg_durable's
 * truthiness: zero rows, false, 0, '', 'no', 'f' and NULL are false), `orElse` otherwise (nothing when
 * omitted). Write the condition as a full statement: `SELECT ...`.
 *
 * @category combinators
 * @since 0.1.0
 */
export const branch = <NC = {}, A1 = unknown, B1 = {}, N1 = {}, A2 = null, B2 = {}, N2 = {}>(
  condition: string | Graph<unknown, {}, NC> | Text<NC>,
  then: Graph<A1, B1, N1>,
  orElse?: Graph<A2, B2, N2>
): Graph<A1 | A2, BothBinds<B1, B2>, Simplify<NC & N1 & N2>> =>
  make({
    _tag: "Branch",
    condition: typeof condition === "string"
      ? Model.normalizeText([condition])
      : isGraph(condition)
      ? conditionText(condition)
      : condition.parts,
    then: then.node,
    else: orElse?.node ?? Model.noop
  }, orElse === undefined ? [then] : [then, orElse])

const conditionText = (graph: Any): Model.Text =>
  graph.node._tag === "Sql" && graph.node.capture === undefined
    ? graph.node.sql
    // Not SQL: the compiler reports it (a condition must be a SQL statement).
    : ["-- a branch condition must be an uncaptured Graph.sql node"]

/**
 * Runs `then` when the SQL capture has at least one row (`df.if_rows`, no query), `orElse`
 * otherwise.
 *
 * @category combinators
 * @since 0.1.0
 */
export const ifRows = <const Name extends string, A1 = unknown, B1 = {}, N1 = {}, A2 = null, B2 = {}, N2 = {}>(
  capture: Name,
  then: Graph<A1, B1, N1>,
  orElse?: Graph<A2, B2, N2>
): Graph<A1 | A2, BothBinds<B1, B2>, Simplify<{ readonly [K in Name]: unknown } & N1 & N2>> =>
  make(
    { _tag: "IfRows", rowsOf: capture, then: then.node, else: orElse?.node ?? Model.noop },
    orElse === undefined ? [then] : [then, orElse]
  )

/**
 * Repeats the body: forever (until a `Graph.break` or a cancel), or with `while`, as long as the SQL
 * condition is true after each iteration (do-while: the body runs at least once). pg_durable runs
 * at most one iteration per second and 100 000 iterations per loop.
 *
 * @category combinators
 * @since 0.1.0
 */
export const loop = <A, B, N, NW = {}>(
  body: Graph<A, B, N>,
  options?: { readonly while?: string | Graph<unknown, {}, NW> | Text<NW> | undefined }
): Graph<unknown, {}, Simplify<N & Unresolved<NW, B>>> => {
  const condition = options?.while
  return make(
    condition === undefined
      ? { _tag: "Loop", body: body.node }
      : {
        _tag: "Loop",
        body: body.node,
        while: typeof condition === "string"
          ? Model.normalizeText([condition])
          : isGraph(condition)
          ? conditionText(condition)
          : condition.parts
      },
    [body]
  )
}

const break_ = (value?: { readonly [key: string]: Json } | undefined): Graph<never, {}, {}> =>
  make(value === undefined ? { _tag: "Break" } : { _tag: "Break", value })

export {
  /**
   * Leaves the nearest loop; the loop's result (and capture) is `value`, a JSON object, written as a
   * literal (pg_durable never substitutes captures in it).
   *
   * @category constructors
   * @since 0.1.0
   */
  break_ as break
}

/**
 * Captures a node's result under `name` (steps, SQL, signals, HTTP, branches and loops). With
 * `schema`, the capture's JSON value is declared to have that Schema's encoded type (for the type
 * checks of later nodes, and the compiler's capture table): useful for SQL nodes, whose values the
 * types cannot know.
 *
 * @category combinators
 * @since 0.1.0
 */
export const as: {
  <const Name extends string, S extends Schema.Top = never>(
    name: Name,
    schema?: S
  ): <A, B, N>(self: Graph<A, B, N>) => Graph<
    [S] extends [never] ? A : S["Encoded"],
    Simplify<B & { readonly [K in Name]: [S] extends [never] ? A : S["Encoded"] }>,
    N
  >
  <A, B, N, const Name extends string, S extends Schema.Top = never>(
    self: Graph<A, B, N>,
    name: Name,
    schema?: S
  ): Graph<
    [S] extends [never] ? A : S["Encoded"],
    Simplify<B & { readonly [K in Name]: [S] extends [never] ? A : S["Encoded"] }>,
    N
  >
} = dual((args) => isGraph(args[0]), (self: Any, name: string, schema?: Schema.Top): Any => {
  const node = { ...self.node, capture: name } as Model.Node
  const previous = "capture" in self.node && self.node.capture !== undefined
    ? self.schemas.get(self.node.capture)
    : undefined
  const declared = schema ?? previous
  return make(node, [self], declared === undefined ? undefined : { schema: [name, declared] })
})
