// Text that reaches SQL can never become SQL: references and literals inside quoted text or
// comments, names with line terminators, hostile step names. Each case is checked against
// PostgreSQL's own lexer and parser (libpg-query), and the accepted forms are shown to keep a
// hostile value as data after pg_durable's textual substitution.
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Graph, GraphWorkflow, PgDurableError, SqlExporter, StepBinding } from "@pgflows/pg-durable"
import { Effect, Redacted, Result, Schema } from "effect"
import * as fc from "fast-check"
import * as PgQuery from "libpg-query"
import { PgflowsConfig, Step } from "pgflows"
import { double, steps } from "./fixtures/steps.ts"

const secret = Redacted.make("step-secret")

const compile = (graph: Graph.Any, options?: Compiler.Options) =>
  Compiler.compileNode(graph.node, { steps, ...options, conflicts: graph.conflicts, schemas: graph.schemas })

const rejects = (graph: Graph.Any, rule: PgDurableError.Rule, path: string, message: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(compile(graph))
    assert.instanceOf(error, PgDurableError.GraphCompileError)
    assert.strictEqual(error.rule, rule, error.message)
    assert.strictEqual(error.path, path, error.message)
    for (const part of message) assert.include(error.message, part)
  })

const signal = Graph.waitForSignal("sig", { capture: "sig" })
const withSignal = (node: Graph.Any) => Graph.sequence(signal, node)

/** pg_durable's SQL-context substitution of a text value (docs/PG_DURABLE.md, "Substitution"): quoted, `'` doubled. */
const substitute = (text: string, reference: string, value: string) =>
  text.replaceAll(reference, `'${value.replaceAll("'", "''")}'`)

const hostile = " || (SELECT string_agg(password, ',') FROM secrets) || "

describe("references inside quoted text (issue 11, item 1)", () => {
  const ref = Graph.ref("sig", "data")
  const contexts: ReadonlyArray<readonly [string, Graph.Any, string]> = [
    ["a string constant", Graph.sql`SELECT * FROM users WHERE name = '${ref}'`, "a string constant ('...')"],
    ["an escape string", Graph.sql`SELECT E'a\\n${ref}'`, "an escape string constant (E'...')"],
    ["a Unicode string", Graph.sql`SELECT U&'d${ref}'`, "a Unicode string constant (U&'...')"],
    // PostgreSQL's lexer reads N'...' as the keyword NATIONAL CHARACTER and a plain string constant.
    ["a national string", Graph.sql`SELECT N'${ref}'`, "a string constant ('...')"],
    ["a bit string", Graph.sql`SELECT B'01${ref}'`, "a bit string constant (B'...')"],
    ["a hex string", Graph.sql`SELECT X'ff${ref}'`, "a hex string constant (X'...')"],
    ["a dollar-quoted string", Graph.sql`SELECT $$${ref}$$`, "a dollar-quoted string ($$...$$)"],
    ["a tagged dollar-quoted string", Graph.sql`SELECT $q$ x ${ref} $q$`, "a dollar-quoted string ($$...$$)"],
    ["a line comment", Graph.sql`SELECT 1 -- ${ref}\n`, "a comment (-- ...)"],
    ["a block comment", Graph.sql`SELECT 1 /* ${ref} */`, "a comment (/* ... */)"],
    ["a nested block comment", Graph.sql`SELECT 1 /* a /* ${ref} */ b */`, "a comment (/* ... */)"],
    ["a quoted identifier", Graph.sql`SELECT 1 AS "a${ref}"`, "a quoted identifier (\"...\")"],
    ["a Unicode quoted identifier", Graph.sql`SELECT 1 AS U&"a${ref}"`, "a Unicode quoted identifier (U&\"...\")"]
  ]
  for (const [name, node, kind] of contexts) {
    it.effect(`inside ${name}: a GraphCompileError that says how to write it instead`, () =>
      rejects(withSignal(node), "invalid-reference", "graph.nodes[1]", [
        `the reference Graph.ref("sig", "data") is inside ${kind}`,
        "pg_durable replaces it as text",
        "Write the capture as a value expression, outside quotes and comments",
        "::int"
      ]))
  }

  it.effect("in conditions, loop conditions, Graph.rows and Graph.instanceId too", () =>
    Effect.gen(function*() {
      yield* rejects(
        withSignal(Graph.branch(Graph.sql`SELECT '${Graph.ref("sig")}' = 'x'`, Graph.sql("SELECT 1"))),
        "invalid-reference",
        "graph.nodes[1].condition",
        ["the reference Graph.ref(\"sig\") is inside a string constant"]
      )
      yield* rejects(
        Graph.loop(
          Graph.sequence(Graph.sql("SELECT 1 AS n").pipe(Graph.as("n")), Graph.sleep("1 second")),
          { while: Graph.sql`SELECT 1 /* ${Graph.ref("n")} */` }
        ),
        "invalid-reference",
        "graph.while",
        ["is inside a comment (/* ... */)"]
      )
      yield* rejects(
        Graph.sequence(
          Graph.sql("SELECT 1 AS n").pipe(Graph.as("n")),
          Graph.sql`SELECT 'count: ${Graph.rows("n")}'`
        ),
        "invalid-reference",
        "graph.nodes[1]",
        ["the reference Graph.rows(\"n\") is inside a string constant"]
      )
      yield* rejects(Graph.sql`SELECT 'instance ${Graph.instanceId}'`, "invalid-reference", "graph", [
        "the reference Graph.instanceId is inside a string constant",
        "'instance ' || ${Graph.instanceId}"
      ])
    }))

  it.effect("a fragment used twice is checked where each use stands", () =>
    Effect.gen(function*() {
      const twice = Graph.ref("sig")
      yield* rejects(withSignal(Graph.sql`SELECT ${twice}, 'a ${twice}'`), "invalid-reference", "graph.nodes[1]", [
        "is inside a string constant"
      ])
    }))

  it.effect("a reference glued to a name is rejected; Graph.rows needs a FROM item of its own", () =>
    Effect.gen(function*() {
      const rows = Graph.sql("SELECT 1 AS n").pipe(Graph.as("n"))
      yield* rejects(
        Graph.sequence(rows, Graph.sql`SELECT count(*) FROM t${Graph.rows("n")}`),
        "invalid-reference",
        "graph.nodes[1]",
        ["the reference Graph.rows(\"n\") is part of another token"]
      )
    }))

  it.effect("literals inside quoted text, or glued to a string prefix (E, U&, B, X), are rejected", () =>
    Effect.gen(function*() {
      const value = "\\'; DROP TABLE x; --"
      yield* rejects(Graph.sql`SELECT 'a${Graph.literal(value)}'`, "invalid-reference", "graph", [
        "Graph.literal(...) is inside a string constant"
      ])
      // E'\''; DROP TABLE x; --' would end the string after \' and run the rest.
      yield* rejects(Graph.sql`SELECT E${Graph.literal(value)}`, "invalid-reference", "graph", [
        "Graph.literal(...) is part of another token"
      ])
      yield* rejects(Graph.sql`SELECT 1 -- ${Graph.literal("x")}\n`, "invalid-reference", "graph", [
        "Graph.literal(...) is inside a comment"
      ])
    }))

  it.effect("variables ({name}, substituted raw by pg_durable) inside quoted text are rejected", () =>
    Effect.gen(function*() {
      yield* rejects(Graph.sql("SELECT '{region}'::text[]"), "invalid-text", "graph", [
        "{region}",
        "raw text"
      ])
      yield* rejects(Graph.sql("SELECT 1 -- {region}\n"), "invalid-text", "graph", ["{region}"])
      // JSON and array literals that are not a single identifier in braces are fine.
      yield* compile(Graph.sql("SELECT '{\"a\": 1}'::jsonb, '{a,b}'::text[], '{}'::text[]"))
    }))

  it.effect("the issue's example: written as a value, a hostile payload stays one string constant", () =>
    Effect.gen(function*() {
      const compiled = yield* compile(withSignal(Graph.sql`SELECT * FROM users WHERE name = ${ref}`))
      const text = compiled.durable.kind === "seq" && compiled.durable.right.kind === "sql"
        ? compiled.durable.right.query
        : assert.fail("expected the SQL node after the signal")
      assert.strictEqual(text, "SELECT * FROM users WHERE name = ($__pgf_sig.data)")
      yield* Effect.promise(() => PgQuery.loadModule())
      const benign = substitute(text, "$__pgf_sig.data", "alice")
      const attack = substitute(text, "$__pgf_sig.data", `'${hostile}'`)
      const parsed = PgQuery.parseSync(attack) as any
      assert.strictEqual(parsed.stmts.length, 1)
      // The same statement up to its constants: the payload is the value compared with, nothing else.
      assert.strictEqual(PgQuery.fingerprintSync(attack), PgQuery.fingerprintSync(benign))
      const where = parsed.stmts[0].stmt.SelectStmt.whereClause.A_Expr
      assert.strictEqual(where.rexpr.A_Const.sval.sval, `'${hostile}'`)
    }))

  it.effect("references in value positions still compile, in every rendering", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        signal,
        Graph.sql`SELECT ${ref}::text AS a, 'literal' || ${ref} AS b, ${Graph.instanceId} AS c -- comment`.pipe(
          Graph.as("row")
        ),
        Graph.sql`SELECT count(*) FROM ${Graph.rows("row")} WHERE a = ${Graph.literal("it's")}`
      )
      yield* compile(graph)
    }))
})

describe("property: an accepted SQL node keeps its statement whatever a capture holds", () => {
  // Select lists of items: references where a value goes, quoted text and comments with or without a
  // reference inside. The compiler must accept exactly the lists whose references all stand where a
  // value goes, and then no value substituted the way pg_durable does can change the statement.
  const quotes: ReadonlyArray<readonly [string, string]> = [
    ["'", "'"],
    ["E'", "'"],
    ["U&'", "'"],
    ["B'", "'"],
    ["X'", "'"],
    ["$$", "$$"],
    ["$t$", "$t$"],
    ["\"", "\""]
  ]
  const comments: ReadonlyArray<readonly [string, string]> = [["/* ", " */"], ["-- ", "\n"]]
  type Item =
    | { readonly kind: "value" }
    | { readonly kind: "quoted"; readonly quote: number; readonly ref: boolean }
    | { readonly kind: "comment"; readonly comment: number; readonly ref: boolean }
  const item: fc.Arbitrary<Item> = fc.oneof(
    fc.constant<Item>({ kind: "value" }),
    fc.record({ kind: fc.constant("quoted" as const), quote: fc.nat(quotes.length - 1), ref: fc.boolean() }),
    fc.record({ kind: fc.constant("comment" as const), comment: fc.nat(comments.length - 1), ref: fc.boolean() })
  )
  const values = [
    "alice",
    "' OR 1=1 --",
    "x'); DROP TABLE t; --",
    "$$; DROP TABLE t; $$",
    "*/ DROP TABLE t; /*",
    "a\nDROP TABLE t",
    "\\' || pg_sleep(1) || '",
    "\" DROP"
  ]

  it.effect("600 random select lists", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() => PgQuery.loadModule())
      yield* compile(Graph.sql("SELECT 1"))
      const ref = Graph.ref("sig", "data").part
      fc.assert(
        fc.property(fc.array(item, { minLength: 1, maxLength: 5 }), (items) => {
          const parts: Array<string | typeof ref> = ["SELECT "]
          items.forEach((entry, index) => {
            const comma = index === 0 ? "" : ", "
            if (entry.kind === "value") parts.push(comma, ref)
            else if (entry.kind === "quoted") {
              const [open, close] = quotes[entry.quote]!
              const content = open.startsWith("B") ? "01" : open.startsWith("X") ? "ff" : "a b"
              parts.push(comma, `${open}${content}`, ...(entry.ref ? [ref] : []), `${content}${close}`)
            } else {
              const [open, close] = comments[entry.comment]!
              parts.push(comma, "1 ", open, ...(entry.ref ? [ref] : []), close)
            }
          })
          const node = { _tag: "Sequence", nodes: [signal.node, { _tag: "Sql", sql: parts }] } as Graph.Node
          const compiled = Compiler.compileSync(node, PgflowsConfig.defaults, { steps })
          const hidden = items.some((entry) => entry.kind !== "value" && entry.ref)
          if (hidden) {
            assert.isTrue(Result.isFailure(compiled), JSON.stringify(parts))
            assert.strictEqual(Result.isFailure(compiled) ? compiled.failure.rule : "", "invalid-reference")
            return
          }
          if (Result.isFailure(compiled)) throw new Error(`${compiled.failure.message}: ${JSON.stringify(parts)}`)
          const durable = compiled.success.durable
          const text = durable.kind === "seq" && durable.right.kind === "sql" ? durable.right.query : ""
          const fingerprints = new Set(values.map((value) => {
            const substituted = substitute(text, "$__pgf_sig.data", value)
            assert.strictEqual((PgQuery.parseSync(substituted) as any).stmts.length, 1, substituted)
            return PgQuery.fingerprintSync(substituted)
          }))
          assert.strictEqual(fingerprints.size, 1, text)
        }),
        { numRuns: 600 }
      )
    }))
})

describe("HTTP text (issue 11, item 1: every place text reaches a node)", () => {
  it.effect("the URL's host must be written as text, not built from a capture", () =>
    rejects(
      withSignal(Graph.http({ url: Graph.text`https://api${Graph.ref("sig", "data")}/orders` })),
      "invalid-http",
      "graph.nodes[1]",
      ["the URL's scheme and host must be text", "https://api.example.net/"]
    ))

  it.effect("a reference inside a double-quoted string of a body is rejected (inserted raw, unescaped)", () =>
    Effect.gen(function*() {
      yield* rejects(
        withSignal(Graph.http({
          url: "https://hooks.azurewebsites.net/x",
          body: Graph.text`{"name":"${Graph.ref("sig", "data")}"}`
        })),
        "invalid-http",
        "graph.nodes[1].body",
        ["inside a double-quoted string", "jsonb_build_object"]
      )
      // A whole-body reference (the body built in SQL) is the way to send values.
      yield* compile(Graph.sequence(
        Graph.sql("SELECT jsonb_build_object('name', 'x')::text AS body").pipe(Graph.as("body")),
        Graph.http({ url: "https://hooks.azurewebsites.net/x", body: Graph.text`${Graph.ref("body")}` })
      ))
    }))
})

describe("step names (issue 11, item 4)", () => {
  const named = (name: string) =>
    Step.make(name, { input: Schema.Number, output: Schema.Number, run: (n: number) => Effect.succeed(n) })
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ["a lone UTF-16 surrogate", "double\uD800", "a lone UTF-16 surrogate"],
    ["a lone low surrogate", "\uDC00double", "a lone UTF-16 surrogate"],
    ["NUL", "dou\u0000ble", "a NUL character"],
    ["a carriage return", "evil\rDROP TABLE x; --", "a control character (U+000D)"],
    ["a line feed", "evil\nname", "a control character (U+000A)"],
    ["DEL", "evil\u007f", "a control character (U+007F)"],
    ["a C1 control", "evil\u0085", "a control character (U+0085)"],
    ["a line separator", "evil\u2028", "a line or paragraph separator (U+2028)"]
  ]
  // A Step cannot even be defined with such a name (pgflows checks names where they are defined); a
  // step named by a string (GraphSpec, text from outside) is checked by the compiler.
  for (const [what, name, problem] of cases) {
    it.effect(`a step name with ${what} is refused by Step.make, and a GraphCompileError that says why`, () =>
      Effect.gen(function*() {
        assert.throws(() => named(name), `contains ${problem}`)
        const error = yield* Effect.flip(compile(Graph.step(name, { input: Graph.value(1) })))
        assert.instanceOf(error, PgDurableError.GraphCompileError)
        assert.strictEqual(error.rule, "invalid-name", error.message)
        assert.strictEqual(error.path, "graph")
        assert.include(error.message, `the step name ${JSON.stringify(name)} contains ${problem}`)
        assert.include(error.message, "rename the step")
      }))
  }

  it.effect("also for a step named by a string (GraphSpec), before the lookup", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(compile(Graph.step("bad\uD800", { input: Graph.value(1) })))
      assert.strictEqual(error.rule, "invalid-name")
      assert.include(error.message, "a lone UTF-16 surrogate")
    }))
})

describe("names in exported scripts (issue 11, item 2)", () => {
  const names = [
    "evil\rDROP TABLE x; --",
    "evil\nDROP TABLE x; --",
    "evil\r\nDROP TABLE x; --",
    "evil\u2028DROP TABLE x; --",
    "evil\u0085DROP TABLE x; --",
    "evil\u000bDROP TABLE x; --",
    "evil\u0000DROP TABLE x; --",
    "evil */ DROP TABLE x; /*",
    "evil $$ DROP TABLE x; $$",
    "evil' DROP TABLE x; --",
    "evil\" DROP TABLE x; --"
  ]
  const graph = Graph.step(double, { capture: "d", input: Graph.input() })
  /** Holds a control character (C0, DEL, C1) or a line or paragraph separator. */
  const unsafe = (text: string) =>
    [...text].some((char) => {
      const code = char.charCodeAt(0)
      return code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029
    })

  /** What PostgreSQL reads in a script: the kind of each statement, and the function it creates. */
  const statements = (sql: string) => {
    const parsed = PgQuery.parseSync(sql) as any
    return (parsed.stmts ?? []).map((entry: any) => {
      const kind = Object.keys(entry.stmt)[0]!
      const fn = entry.stmt.CreateFunctionStmt?.funcname?.map((part: any) => part.String.sval).join(".")
      return fn === undefined ? kind : `${kind} ${fn}`
    })
  }

  it("GraphWorkflow.make rejects a name with a control character or a lone surrogate", () => {
    for (const name of [...names.filter(unsafe), "a\uD800"]) {
      assert.throws(() => GraphWorkflow.make(name, { input: Schema.Number, graph }), /workflow name [\s\S]* contains/)
    }
  })

  it.effect("compose rejects such a workflow name with a GraphCompileError", () =>
    Effect.gen(function*() {
      const exporter = yield* SqlExporter.make({ steps: [double] })
      for (const name of names.slice(0, 7)) {
        const error = yield* Effect.flip(exporter.compose(name, ["double"]))
        assert.strictEqual(error.rule, "invalid-name", error.message)
        assert.include(error.message, "the workflow name")
      }
    }))

  it.effect("a hostile workflow name (however it got there) cannot add a statement to the script", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() => PgQuery.loadModule())
      const template = GraphWorkflow.make("template", { input: Schema.Number, graph })
      for (const name of names) {
        // Built by hand, past GraphWorkflow.make's check: the exporter escapes on its own.
        const workflow = { ...template, name }
        const exporter = yield* SqlExporter.make({ workflows: [workflow], steps: [double] })
        const sql = yield* exporter.exportWorkflow(name)
        assert.deepStrictEqual(
          statements(sql),
          [`CreateFunctionStmt pgflows.${SqlExporter.startFunctionName(name)}`],
          JSON.stringify(name)
        )
        assert.strictEqual((PgQuery.parsePlPgSQLSync(sql) as any).plpgsql_funcs.length, 1)
        const header = sql.slice(0, sql.indexOf("CREATE OR REPLACE FUNCTION"))
        assert.isFalse(unsafe(header.replaceAll("\n", "")), JSON.stringify(name))
        for (const line of header.split("\n").filter((line) => line !== "")) assert.match(line, /^--/)
        const [exported] = yield* exporter.exportAll
        assert.deepStrictEqual(statements(exported!.sql), statements(sql))
      }
    }))

  it.effect("a hostile step name is rejected where the graph is compiled, so no script is written", () =>
    Effect.gen(function*() {
      for (const name of names.slice(0, 7)) {
        // pgflows refuses such a Step where it is defined; a step named by a string reaches the compiler.
        assert.throws(() => Step.make(name, { input: Schema.Number, output: Schema.Number, run: Effect.succeed }))
        const workflow = GraphWorkflow.make("hostile_step", {
          input: Schema.Number,
          graph: Graph.step(name, { input: Graph.input() })
        })
        const exporter = yield* SqlExporter.make({ workflows: [workflow], steps: [double] })
        const error = yield* Effect.flip(exporter.exportWorkflow("hostile_step"))
        assert.strictEqual(error._tag, "GraphCompileError")
        assert.strictEqual((error as PgDurableError.GraphCompileError).rule, "invalid-name", error.message)
      }
    }))

  it.effect("the HTTP binding's base URL and header values (written into the script) hold no control character", () =>
    Effect.gen(function*() {
      for (
        const binding of [
          StepBinding.http("https://steps.azurewebsites.net/a\u0007b", { secret }),
          StepBinding.http("https://steps.azurewebsites.net", {
            headers: { Authorization: "Bearer t\r\nX-Admin: 1" },
            secret
          })
        ]
      ) {
        const error = yield* Effect.flip(compile(Graph.step(double, { input: Graph.value(1) }), { binding }))
        assert.strictEqual(error.rule, "invalid-binding", error.message)
        assert.include(error.message, "control characters")
      }
    }))
})
