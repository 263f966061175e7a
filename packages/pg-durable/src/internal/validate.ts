/**
 * Validation: every rule a graph must follow before it is lowered (see `GraphCompileError`), and the
 * table of its captures with what each holds.
 */
import * as Result from "effect/Result"
import type * as Schema from "effect/Schema"
import { codec, formatIssues } from "pgflows/JsonCodec"
import type * as Step from "pgflows/Step"
import type { Rule } from "../PgDurableError.ts"
import { GraphCompileError } from "../PgDurableError.ts"
import * as Cron from "./cron.ts"
import type * as Model from "./model.ts"
import { capturable, captureOf, exprCaptures, httpMethods, inputCapture } from "./model.ts"
import * as Parser from "./parser.ts"
import * as Quote from "./quote.ts"

/** What a capture holds, and the Schema of its JSON value when the compiler knows it. */
export interface CaptureInfo {
  readonly name: string
  readonly kind: "input" | "step" | "sql" | "signal" | "http" | "branch" | "loop"
  /** The step whose output it holds (kind `step`). */
  readonly step?: string
  /** The columns a reference may read with `Graph.ref(name, field)`; `undefined` for any. */
  readonly fields: ReadonlyArray<string> | undefined
  readonly schema: Schema.Top | undefined
}

export interface Context {
  readonly steps: ReadonlyMap<string, Step.Any>
  readonly input: boolean
  readonly inputSchema: Schema.Top | undefined
  /** Schemas declared for captures (`Graph.as(name, schema)`, a signal's payload). */
  readonly captureSchemas: ReadonlyMap<string, Schema.Top>
}

const fail = (rule: Rule, path: string, reason: string) => new GraphCompileError({ rule, path, reason })

export const captureNamePattern = /^[A-Za-z][A-Za-z0-9_]{0,62}$/
const fieldPattern = /^[A-Za-z_][A-Za-z0-9_]*$/

const signalFields = ["signal_name", "timed_out", "data"]
const httpFields = ["status", "body", "encoding", "headers", "ok", "duration_ms"]

/** Checks a graph; the captures it binds, in order, or the first rule it breaks. */
export const validate = (
  root: Model.Node,
  context: Context
): Result.Result<ReadonlyArray<CaptureInfo>, GraphCompileError> => {
  try {
    return Result.succeed(new Validator(context).run(root))
  } catch (error) {
    if (error instanceof GraphCompileError) return Result.fail(error)
    throw error
  }
}

class Validator {
  readonly context: Context
  readonly all = new Map<string, CaptureInfo>()
  readonly order: Array<CaptureInfo> = []
  constructor(context: Context) {
    this.context = context
  }

  run(root: Model.Node): ReadonlyArray<CaptureInfo> {
    let loop: string | undefined
    let parallel: string | undefined
    const allNames = new Set<string>()
    const visit = (node: Model.Node, path: string) => {
      if (node._tag === "Loop") loop ??= path
      if (node._tag === "Parallel") parallel ??= path
      const capture = captureOf(node)
      if (capture !== undefined) allNames.add(capture)
      childPaths(node).forEach(([child, suffix]) => visit(child, path + suffix))
    }
    visit(root, "graph")
    if (loop !== undefined && parallel !== undefined) {
      throw fail(
        "loop-and-parallel",
        parallel,
        `this parallel and the loop at ${loop} are in one instance, where pg_durable can deadlock (a JOIN's ` +
          "branch result is lost and the instance hangs). Run the parallel part as an instance of its own " +
          "(PgDurableClient.start), or do the loop's work in a StepWorker step"
      )
    }
    this.mentions = allNames
    const bound = new Map<string, CaptureInfo>()
    if (this.context.input) {
      const info: CaptureInfo = {
        name: inputCapture,
        kind: "input",
        fields: ["input"],
        schema: this.context.inputSchema
      }
      bound.set(inputCapture, info)
      this.order.push(info)
    }
    this.node(root, "graph", bound, { tail: true, loop: false })
    return this.order
  }

  mentions: ReadonlySet<string> = new Set()

  bind(bound: Map<string, CaptureInfo>, path: string, info: CaptureInfo): void {
    if (!captureNamePattern.test(info.name)) {
      throw fail(
        "invalid-capture-name",
        path,
        `capture name ${JSON.stringify(info.name)} is not valid: use 1 to 63 letters, digits or underscores, ` +
          "starting with a letter"
      )
    }
    if (info.name === inputCapture) {
      throw fail("invalid-capture-name", path, `"${inputCapture}" is the run's input; name this capture differently`)
    }
    if (this.all.has(info.name)) {
      throw fail(
        "duplicate-capture",
        path,
        `capture "${info.name}" is bound twice; pg_durable keeps one value per name, so give each capture its own name`
      )
    }
    this.all.set(info.name, info)
    this.order.push(info)
    bound.set(info.name, info)
  }

  need(bound: ReadonlyMap<string, CaptureInfo>, path: string, capture: string): CaptureInfo {
    const info = bound.get(capture)
    if (info !== undefined) return info
    if (capture === inputCapture) {
      throw fail(
        "missing-input",
        path,
        "the graph reads the run's input but none is given: pass { input } to compile or start (or export " +
          "the graph through a GraphWorkflow, which takes it at run time)"
      )
    }
    const later = this.all.has(capture) || this.mentions.has(capture)
    throw fail(
      "unbound-capture",
      path,
      later
        ? `capture "${capture}" is not bound before this node on every path: pg_durable only knows results of nodes ` +
          "that ran earlier in the same branch (inside a loop, in the same iteration); move the node that binds " +
          "it before this one"
        : `no node binds capture "${capture}": add { capture: "${capture}" } to the node that produces it`
    )
  }

  text(bound: ReadonlyMap<string, CaptureInfo>, path: string, text: Model.Text, context: "sql" | "raw"): void {
    for (let i = 0; i < text.length; i++) {
      const part = text[i]!
      if (typeof part === "string") {
        const problem = Quote.textProblem(part)
        if (problem !== undefined) throw fail("invalid-text", path, `the text ${problem}`)
        if (part.includes("$__pgf")) {
          throw fail(
            "invalid-text",
            path,
            "the text contains $__pgf, the prefix reserved for the compiler's result names; refer to captures " +
              "with Graph.ref(...) instead"
          )
        }
        const sys = /\{sys_(instance_id|label)\}/.exec(part)
        if (sys !== null) {
          throw fail(
            "invalid-text",
            path,
            `the text contains ${sys[0]}, which pg_durable replaces as raw text; use Graph.instanceId for the ` +
              "instance id (the label is free text and cannot be inserted safely)"
          )
        }
        // In SQL, `{name}` outside quoted text and comments does not parse, so any that compiles sits
        // inside one, where pg_durable would insert a variable's value as raw, unquoted text.
        const variable = context === "sql" ? /\{[A-Za-z_][A-Za-z0-9_]*\}/.exec(part) : null
        if (variable !== null) {
          throw fail(
            "invalid-text",
            path,
            `the SQL contains ${variable[0]}, which pg_durable replaces with the value of a variable of that name ` +
              "as raw text, unquoted, even inside string constants and comments: a value with a quote in it " +
              "would run as SQL. Pass values through captures (Graph.ref) instead; to write the braces " +
              `themselves, build the text: chr(123) || '${variable[0].slice(1)}' (or ARRAY['...'] for an array)`
          )
        }
        // `$name` not followed by `$` (that would be a dollar-quote tag).
        for (const match of part.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_$])/g)) {
          if (this.mentions.has(match[1]!) || match[1] === inputCapture && this.context.input) {
            throw fail(
              "invalid-reference",
              path,
              `the text writes $${match[1]} by hand; pg_durable would not replace it (captures are renamed). ` +
                `Write Graph.ref("${match[1]}") in a Graph.sql\`...\` template instead`
            )
          }
        }
        continue
      }
      if (part._tag === "InstanceId" || part._tag === "Literal") continue
      const info = this.need(bound, path, part.capture)
      if (part.field !== undefined) {
        if (!fieldPattern.test(part.field)) {
          throw fail("invalid-reference", path, `field ${JSON.stringify(part.field)} is not a column name`)
        }
        if (info.fields !== undefined && !info.fields.includes(part.field)) {
          throw fail(
            "invalid-reference",
            path,
            `capture "${info.name}" (${info.kind}) has no field "${part.field}"; it has ${info.fields.join(", ")}` +
              (info.kind === "step"
                ? `. A step's capture holds its output as JSON text: read fields with (${"$"}{Graph.ref("${info.name}")})::jsonb->>'field'`
                : "")
          )
        }
      }
      if (part.rows === true && info.kind !== "sql") {
        throw fail(
          "invalid-reference",
          path,
          `Graph.rows("${info.name}") needs the rows of a SQL node, but "${info.name}" is a ${info.kind} capture`
        )
      }
      if (context === "raw" && part.rows !== true && part.optional !== true) {
        const next = text[i + 1]
        const follows = typeof next === "string"
          ? (part.field === undefined ? /^(?:[A-Za-z0-9_]|\.[A-Za-z_*]|\?)/ : /^(?:[A-Za-z0-9_]|\?)/).exec(next)
          : null
        if (follows !== null) {
          throw fail(
            "invalid-reference",
            path,
            `the reference to "${info.name}" is followed by ${JSON.stringify(follows[0])}, which pg_durable ` +
              "would read as part of the reference; put another character between them"
          )
        }
      }
    }
  }

  /**
   * A SQL text (a node, a condition): every reference and literal where a value goes, then exactly
   * one statement. References are placed by PostgreSQL's lexer on the text with each replaced by a
   * placeholder of its own: pg_durable substitutes references textually, so one inside a string
   * constant, a dollar-quoted string, a comment or a quoted identifier would let its value end that
   * token and run as SQL.
   */
  sql(path: string, text: Model.Text, what: string): void {
    placement(path, text)
    this.statement(path, sqlOf(text), what)
  }

  statement(path: string, sql: string, what: string): void {
    const checked = sql
      .replace(/\$__pgf_[A-Za-z0-9_]*\.\*/g, "(SELECT NULL) AS __pgf_rows")
      .replace(/\$__pgf_[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?\??/g, "NULL")
    const parsed = checked.trim() === "" ? { _tag: "Ok" as const, statements: [] } : Parser.parse(checked)
    if (parsed._tag === "Error") {
      throw fail(
        "sql-not-one-statement",
        path,
        `${what} does not parse: ${parsed.message}${
          parsed.position === undefined ? "" : ` (at character ${parsed.position + 1})`
        }. A SQL node must be exactly one valid statement`
      )
    }
    if (parsed.statements.length !== 1) {
      throw fail(
        "sql-not-one-statement",
        path,
        `${what} has ${parsed.statements.length} statements; pg_durable runs each SQL node as exactly one ` +
          "statement: split it into one node per statement (in a Graph.sequence)"
      )
    }
    if (Parser.contains(parsed.statements, "ParamRef")) {
      throw fail(
        "sql-not-one-statement",
        path,
        `${what} uses $1-style parameters, which pg_durable never binds; refer to captures with Graph.ref(...) ` +
          "or write values with Graph.literal(...)"
      )
    }
  }

  node(
    node: Model.Node,
    path: string,
    bound: Map<string, CaptureInfo>,
    where: { readonly tail: boolean; readonly loop: boolean }
  ): void {
    const capture = captureOf(node)
    if (capture !== undefined && !capturable.has(node._tag)) {
      throw fail("invalid-capture-name", path, `a ${node._tag} node cannot be captured`)
    }
    switch (node._tag) {
      case "Step": {
        const problem = Quote.nameProblem(node.step)
        if (problem !== undefined) {
          throw fail(
            "invalid-name",
            path,
            `the step name ${JSON.stringify(node.step)} ${problem}; rename the step (its name is written into ` +
              "SQL, URLs and the comments of exported scripts)"
          )
        }
        const step = this.context.steps.get(node.step)
        if (step === undefined) {
          const known = [...this.context.steps.keys()].sort()
          throw fail(
            "step-not-registered",
            path,
            `step "${node.step}" is not registered${suggest(node.step, known)}; register it (pass it in steps) ` +
              `so a StepWorker can run it. Registered: ${known.length === 0 ? "none" : known.join(", ")}`
          )
        }
        this.expr(bound, path, node.input)
        if (node.input._tag === "Value") {
          const decoded = codec(step.input).decode(node.input.value)
          if (Result.isFailure(decoded)) {
            throw fail(
              "invalid-step-input",
              `${path}.input`,
              `the input does not match the input Schema of step "${node.step}": ${formatIssues(decoded.failure)}`
            )
          }
        }
        if (capture !== undefined) {
          this.bind(bound, path, {
            name: capture,
            kind: "step",
            step: node.step,
            fields: ["output"],
            schema: step.output as unknown as Schema.Top
          })
        }
        return
      }
      case "Sql": {
        this.text(bound, path, node.sql, "sql")
        this.sql(path, node.sql, "the SQL")
        if (capture !== undefined) {
          this.bind(bound, path, {
            name: capture,
            kind: "sql",
            fields: undefined,
            schema: this.context.captureSchemas.get(capture)
          })
        }
        return
      }
      case "Sleep":
        if (!Number.isSafeInteger(node.seconds) || node.seconds < 0) {
          throw fail(
            "invalid-duration",
            path,
            `sleep of ${node.seconds} seconds: pg_durable sleeps a whole number of seconds, zero or more; round it ` +
              "(a bare number is milliseconds, as everywhere in Effect: write \"5 seconds\")"
          )
        }
        return
      case "WaitForSignal": {
        if (node.signal.length === 0) throw fail("invalid-signal", path, "the signal name is empty; name the signal")
        const problem = Quote.textProblem(node.signal)
        if (problem !== undefined) throw fail("invalid-signal", path, `the signal name ${problem}`)
        if (
          node.timeoutSeconds !== undefined &&
          (!Number.isInteger(node.timeoutSeconds) || node.timeoutSeconds < 1 || node.timeoutSeconds > 2_147_483_647)
        ) {
          throw fail(
            "invalid-duration",
            path,
            `signal timeout of ${node.timeoutSeconds} seconds: use a whole number of seconds from 1 to 2147483647`
          )
        }
        if (capture !== undefined) {
          this.bind(bound, path, {
            name: capture,
            kind: "signal",
            fields: signalFields,
            schema: this.context.captureSchemas.get(capture)
          })
        }
        return
      }
      case "WaitForSchedule": {
        const cron = Cron.toPgDurable(node.cron)
        if (Result.isFailure(cron)) throw fail("invalid-cron", path, cron.failure)
        return
      }
      case "Http": {
        if (!httpMethods.includes(node.method)) {
          throw fail(
            "invalid-http",
            path,
            `method ${JSON.stringify(node.method)} is not GET, POST, PUT, DELETE or PATCH`
          )
        }
        const first = node.url[0]
        if (typeof first !== "string" || !/^https?:\/\/[^/]/.test(first)) {
          throw fail("invalid-http", path, "the URL must start with http:// or https:// and a host, written as text")
        }
        if (node.url.length > 1 && !/^https?:\/\/[^/?#]+[/?#]/.test(first)) {
          throw fail(
            "invalid-http",
            path,
            "the URL's scheme and host must be text, up to the first /, ? or # (https://api.example.net/...), " +
              "before any reference: pg_durable inserts references raw, so a value could change the host"
          )
        }
        if (!Number.isInteger(node.timeoutSeconds) || node.timeoutSeconds < 1 || node.timeoutSeconds > 2_147_483_647) {
          throw fail("invalid-http", path, `timeout of ${node.timeoutSeconds} seconds: use a whole number from 1`)
        }
        this.text(bound, `${path}.url`, node.url, "raw")
        if (node.body !== undefined) {
          this.text(bound, `${path}.body`, node.body, "raw")
          quotedInBody(`${path}.body`, node.body)
        }
        for (const [name, value] of node.headers ?? []) {
          if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
            throw fail("invalid-http", path, `header name ${JSON.stringify(name)} is not a valid HTTP header name`)
          }
          this.text(bound, `${path}.headers.${name}`, value, "raw")
        }
        if (capture !== undefined) {
          this.bind(bound, path, {
            name: capture,
            kind: "http",
            fields: httpFields,
            schema: this.context.captureSchemas.get(capture)
          })
        }
        return
      }
      case "Sequence": {
        if (node.nodes.length === 0) {
          throw fail("empty-sequence", path, "the sequence is empty; give it at least one node, or remove it")
        }
        node.nodes.forEach((child, index) =>
          this.node(child, `${path}.nodes[${index}]`, bound, {
            tail: where.tail && index === node.nodes.length - 1,
            loop: where.loop
          })
        )
        return
      }
      case "Parallel":
      case "Race": {
        const kind = node._tag === "Parallel" ? "parallel" : "race"
        if (node.branches.length < 2) {
          throw fail(
            "too-few-branches",
            path,
            `a ${kind} needs at least two branches, it has ${node.branches.length}; use the branch itself instead`
          )
        }
        if (node._tag === "Race" && !where.tail) {
          throw fail(
            "race-not-terminal",
            path,
            "a race must be the last thing the instance does: pg_durable does not cancel the losing branch, and " +
              "nodes after a race (or a loop iteration around it, or a parallel waiting for it) run beside it. " +
              "Move the race to the end of the graph, or start what follows as another instance"
          )
        }
        const results = node.branches.map((branch, index) => {
          const scope = new Map(bound)
          this.node(branch, `${path}.branches[${index}]`, scope, {
            tail: node._tag === "Race" && where.tail,
            loop: where.loop
          })
          return scope
        })
        if (node._tag === "Parallel") {
          for (const scope of results) for (const [name, info] of scope) bound.set(name, info)
        }
        return
      }
      case "Branch":
      case "IfRows": {
        if (node._tag === "Branch") {
          this.text(bound, `${path}.condition`, node.condition, "sql")
          this.sql(`${path}.condition`, node.condition, "the condition")
        } else {
          const info = this.need(bound, path, node.rowsOf)
          if (info.kind !== "sql") {
            throw fail(
              "invalid-reference",
              path,
              `ifRows("${node.rowsOf}") needs the rows of a SQL node, but "${node.rowsOf}" is a ${info.kind} capture ` +
                "(pg_durable fails with \"not a SQL result\"); branch on a SQL condition instead"
            )
          }
        }
        const thenScope = new Map(bound)
        const elseScope = new Map(bound)
        this.node(node.then, `${path}.then`, thenScope, where)
        this.node(node.else, `${path}.else`, elseScope, where)
        for (const [name, info] of thenScope) if (elseScope.has(name)) bound.set(name, info)
        if (capture !== undefined) {
          this.bind(bound, path, {
            name: capture,
            kind: "branch",
            fields: undefined,
            schema: this.context.captureSchemas.get(capture)
          })
        }
        return
      }
      case "Loop": {
        const scope = new Map(bound)
        this.node(node.body, `${path}.body`, scope, { tail: false, loop: true })
        if (node.while !== undefined) {
          this.text(scope, `${path}.while`, node.while, "sql")
          this.sql(`${path}.while`, node.while, "the loop condition")
        }
        if (capture !== undefined) {
          this.bind(bound, path, {
            name: capture,
            kind: "loop",
            fields: undefined,
            schema: this.context.captureSchemas.get(capture)
          })
        }
        return
      }
      case "Break": {
        if (!where.loop) {
          throw fail(
            "break-outside-loop",
            path,
            "break is outside any loop, which fails the instance; put it inside Graph.loop, or end the graph instead"
          )
        }
        if (node.value !== undefined) {
          if (typeof node.value !== "object" || node.value === null || Array.isArray(node.value)) {
            throw fail("invalid-value", path, "a break value must be a JSON object (or nothing)")
          }
          const problem = Quote.jsonProblem(node.value)
          if (problem !== undefined) throw fail("invalid-value", path, `the break value is not JSON: ${problem}`)
        }
        return
      }
    }
  }

  expr(bound: ReadonlyMap<string, CaptureInfo>, path: string, expr: Model.Expr): void {
    for (const capture of exprCaptures(expr)) this.need(bound, `${path}.input`, capture)
    const check = (e: Model.Expr): void => {
      switch (e._tag) {
        case "Value": {
          const problem = Quote.jsonProblem(e.value)
          if (problem !== undefined) throw fail("invalid-value", `${path}.input`, `the value is not JSON: ${problem}`)
          return
        }
        case "Field": {
          const problem = Quote.textProblem(e.key)
          if (problem !== undefined) throw fail("invalid-value", `${path}.input`, `the key ${problem}`)
          return check(e.expr)
        }
        case "Object":
          for (const [key, value] of e.fields) {
            const problem = Quote.textProblem(key)
            if (problem !== undefined) throw fail("invalid-value", `${path}.input`, `the key ${problem}`)
            check(value)
          }
          return
        case "Array":
          return e.items.forEach(check)
        case "Capture":
          return
      }
    }
    check(expr)
  }
}

const childPaths = (node: Model.Node): ReadonlyArray<readonly [Model.Node, string]> => {
  switch (node._tag) {
    case "Sequence":
      return node.nodes.map((child, index) => [child, `.nodes[${index}]`] as const)
    case "Parallel":
    case "Race":
      return node.branches.map((child, index) => [child, `.branches[${index}]`] as const)
    case "Branch":
    case "IfRows":
      return [[node.then, ".then"], [node.else, ".else"]]
    case "Loop":
      return [[node.body, ".body"]]
    default:
      return []
  }
}

/** How a reference or a literal is written in a graph, for messages. */
const describe = (part: Model.TextPart): string => {
  switch (part._tag) {
    case "InstanceId":
      return "Graph.instanceId"
    case "Literal":
      return "Graph.literal(...)"
    case "Ref": {
      if (part.rows === true) return `Graph.rows(${JSON.stringify(part.capture)})`
      const args = [JSON.stringify(part.capture)]
      if (part.field !== undefined || part.optional === true) args.push(JSON.stringify(part.field))
      if (part.optional === true) args.push("{ optional: true }")
      return `Graph.ref(${args.join(", ")})`
    }
  }
}

/** The tokens a placeholder can end up inside, by how PostgreSQL's lexer writes them. */
const enclosing: ReadonlyArray<readonly [RegExp, string]> = [
  [/^[Ee]'/, "an escape string constant (E'...')"],
  [/^[Uu]&'/, "a Unicode string constant (U&'...')"],
  [/^[Bb]'/, "a bit string constant (B'...')"],
  [/^[Xx]'/, "a hex string constant (X'...')"],
  [/^'/, "a string constant ('...')"],
  [/^\$/, "a dollar-quoted string ($$...$$)"],
  [/^--/, "a comment (-- ...)"],
  [/^\/\*/, "a comment (/* ... */)"],
  [/^[Uu]&"/, "a Unicode quoted identifier (U&\"...\")"],
  [/^"/, "a quoted identifier (\"...\")"]
]

const advice = (part: Model.TextPart): string => {
  const written = describe(part)
  switch (part._tag) {
    case "InstanceId":
      return `Write it as a value, outside quotes and comments, and build text with ||: 'instance ' || \${${written}}`
    case "Literal":
      return `Write it where a value goes, outside quotes and comments, and build text with ||: 'prefix ' || \${${written}}`
    case "Ref":
      return part.rows === true
        ? `Write it as a FROM item of its own: SELECT count(*) FROM \${${written}}`
        : "Write the capture as a value expression, outside quotes and comments: name = " +
          `\${${written}} (pg_durable writes text as a quoted literal and numbers bare; cast it where a type ` +
          `is needed, as in \${${written}}::int or ::jsonb), and build text with ||: 'prefix ' || \${${written}}`
  }
}

/**
 * Checks, with PostgreSQL's lexer, that every reference and literal of a SQL text stands where a
 * value goes: not inside a string constant (plain, E'', N'', U&'', B'', X'', dollar-quoted), a
 * comment or a quoted identifier, and not glued to the token before it.
 */
const placement = (path: string, text: Model.Text): void => {
  const parts = text.filter((part): part is Model.TextPart => typeof part !== "string")
  if (parts.length === 0) return
  const written = text.filter((part): part is string => typeof part === "string").join("")
  let base = "pgfslot"
  for (let i = 1; written.includes(base); i++) base = `pgfslot${i}x`
  // One placeholder per occurrence (a template may use one fragment twice).
  const names: Array<readonly [Model.TextPart, string]> = []
  const lexed = text.map((part) => {
    if (typeof part === "string") return part
    const name = `${base}_${names.length}_`
    names.push([part, name])
    return `(${name})`
  }).join("")
  const tokens = Parser.scan(lexed)
  // Text the lexer cannot read does not parse either; the statement check reports it.
  if (tokens === undefined) return
  for (const [part, name] of names) {
    const token = tokens.find((candidate) => candidate.text.includes(name))
    if (token === undefined || token.text === name) continue
    const kind = enclosing.find(([pattern]) => pattern.test(token.text))?.[1] ?? `part of the token ${token.text}`
    throw fail(
      "invalid-reference",
      path,
      `the ${part._tag === "Literal" ? "literal" : "reference"} ${describe(part)} is inside ${kind}, where ` +
        "pg_durable replaces it as text: a value with a quote, $$, */ or a line break in it would end that " +
        `and run as SQL. ${advice(part)}`
    )
  }
  // A literal or the instance id (written as '...') right after a name or a quote would become part
  // of that token (E'...', U&'...', 'a''...'); so would Graph.rows (written $name.*) after a name.
  text.forEach((part, index) => {
    if (typeof part === "string") return
    const starts = part._tag === "InstanceId" || (part._tag === "Literal" && part.sql.startsWith("'"))
    const rows = part._tag === "Ref" && part.rows === true
    if (!starts && !rows) return
    const before = text[index - 1]
    const last = typeof before === "string" ? before.slice(-1) : undefined
    if (last === undefined || !(starts ? /[A-Za-z0-9_$&'\u0080-\uffff]/ : /[A-Za-z0-9_$\u0080-\uffff]/).test(last)) {
      return
    }
    throw fail(
      "invalid-reference",
      path,
      `the ${part._tag === "Literal" ? "literal" : "reference"} ${describe(part)} is part of another token: it ` +
        `is written right after ${JSON.stringify(last)}, so PostgreSQL would read both as one (E'...', U&'...' ` +
        "and 'a''b' are single tokens). Put a space or an operator between them"
    )
  })
}

/**
 * In an HTTP body, pg_durable inserts references raw, with no JSON escaping: one inside a
 * double-quoted string (JSON, an XML attribute) could end the string with a `"` of its value.
 */
const quotedInBody = (path: string, text: Model.Text): void => {
  let quotes = 0
  for (const part of text) {
    if (typeof part === "string") {
      for (const match of part.matchAll(/\\*"/g)) if ((match[0].length - 1) % 2 === 0) quotes++
      continue
    }
    if (part._tag !== "Ref" || quotes % 2 === 0) continue
    const written = describe(part)
    throw fail(
      "invalid-http",
      path,
      `the reference ${written} is inside a double-quoted string of the body, where pg_durable inserts it raw, ` +
        "with no JSON escaping: a value with a \" or a \\ in it would end the string and change the document. " +
        `Build the body in a SQL node (SELECT jsonb_build_object('name', \${${written}})::text AS body, captured ` +
        `as "body") and send it whole: body: Graph.text\`\${Graph.ref("body")}\``
    )
  }
}

/** SQL text with placeholders, for parsing only. */
const sqlOf = (text: Model.Text): string =>
  text.map((part) =>
    typeof part === "string"
      ? part
      : part._tag === "InstanceId"
      ? "'00000000'"
      : part._tag === "Literal"
      ? part.sql
      : part.rows === true
      ? "(SELECT NULL) AS __pgf_rows"
      : "(NULL)"
  ).join("")

/** ` (did you mean "x"?)` for a close registered name. */
const suggest = (name: string, known: ReadonlyArray<string>): string => {
  let best: string | undefined
  let distance = Infinity
  for (const candidate of known) {
    const d = levenshtein(name, candidate)
    if (d < distance) {
      distance = d
      best = candidate
    }
  }
  return best !== undefined && distance <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best}"?)` : ""
}

const levenshtein = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]!
}
