// Golden facts of docs/PG_DURABLE.md: the operator precedence of "Operators" (PostgreSQL
// gives every user operator one precedence and groups left) and the DSL expressions of pg_durable's own tests, parsed by
// PostgreSQL's own parser into pg_durable's graph; and the graphs this compiler writes for them.
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Decompiler, Graph } from "@pgflows/pg-durable"
import type { PgDurableError } from "@pgflows/pg-durable"
import { Effect } from "effect"

type D = Decompiler.DurableNode

const q = (query: string): D => ({ kind: "sql", query })
const seq = (left: D, right: D): D => ({ kind: "seq", left, right })
const join = (...branches: ReadonlyArray<D>): D => ({ kind: "join", branches })
const race = (left: D, right: D): D => ({ kind: "race", left, right })
const iff = (condition: D, then: D, orElse: D): D => ({ kind: "if", condition, then, else: orElse })
const loop = (body: D, condition?: D): D =>
  condition === undefined ? { kind: "loop", body } : { kind: "loop", body, condition }
const as = (node: D, name: string): D => ({ ...node, name } as D)
const brk = (value?: string): D => value === undefined ? { kind: "break" } : { kind: "break", value }

/** Parses into the expected graph; rendered again in both forms, it parses into the same graph. */
const parses = (sql: string, expected: D) =>
  Effect.gen(function*() {
    const statement = yield* Decompiler.parse(sql)
    assert.deepStrictEqual(statement.durable, expected, sql)
    for (const rendering of ["functions", "operators"] as const) {
      const again = yield* Decompiler.parseExpression(Decompiler.render(statement.durable, rendering))
      assert.deepStrictEqual(again, expected, `${rendering}: ${Decompiler.render(statement.durable, rendering)}`)
    }
  })

const rejects = (sql: string, message: string) =>
  Effect.gen(function*() {
    const error: PgDurableError.DecompileError = yield* Effect.flip(Decompiler.parse(sql))
    assert.include(error.message, message, sql)
  })

describe("operator precedence (docs/PG_DURABLE.md, Operators): one precedence, left associative", () => {
  const table: ReadonlyArray<readonly [string, D]> = [
    ["SELECT 'a' ~> 'b' ~> 'c'", seq(seq(q("a"), q("b")), q("c"))],
    ["SELECT 'a' & 'b' ~> 'c'", seq(join(q("a"), q("b")), q("c"))],
    ["SELECT 'a' ~> 'b' & 'c'", join(seq(q("a"), q("b")), q("c"))],
    ["SELECT 'a' ~> 'b' |=> 'x'", as(seq(q("a"), q("b")), "x")],
    ["SELECT 'a' |=> 'x' ~> 'b'", seq(as(q("a"), "x"), q("b"))],
    ["SELECT 'a' & 'b' |=> 'x'", as(join(q("a"), q("b")), "x")],
    ["SELECT 'a' | 'b' & 'c'", join(race(q("a"), q("b")), q("c"))],
    ["SELECT 'c' ?> 't' !> 'e'", iff(q("c"), q("t"), q("e"))],
    ["SELECT 'p' ~> 'c' ?> 't' !> 'e'", iff(seq(q("p"), q("c")), q("t"), q("e"))],
    ["SELECT 'c' ?> 't' !> 'e' ~> 'n'", seq(iff(q("c"), q("t"), q("e")), q("n"))],
    ["SELECT @> 'a' ~> 'b'", seq(loop(q("a")), q("b"))],
    ["SELECT @> ('a' ~> 'b')", loop(seq(q("a"), q("b")))]
  ]
  for (const [sql, expected] of table) it.effect(sql, () => parses(sql, expected))

  it.effect("concatenation applies to the graph's JSON: not a graph", () =>
    rejects("SELECT 'y' ~> 'S ' || '1'", "operator || is not a pg_durable operator"))
  it.effect("!> without ?> is an error", () =>
    rejects("SELECT 'a' !> 'b'", "the left side of !> must be a ?> expression"))
  it.effect("a dangling ?> is an error", () => rejects("SELECT 'a' ?> 'b'", "a ?> without its !>"))
  it.effect("NULL in a STRICT composer makes the graph NULL", () =>
    rejects("SELECT df.seq('SELECT 1', NULL)", "df.seq is STRICT"))
  it.effect("Durofut JSON literals are refused", () =>
    rejects(`SELECT df.start('{"node_type":"NOT_A_NODE"}')`, "literal Durofut JSON"))
})

describe("pg_durable's golden expressions (from its own tests)", () => {
  const golden: ReadonlyArray<readonly [string, string, D]> = [
    ["G1", "SELECT df.start('SELECT 42 as answer', 'test-simple-auto')", q("SELECT 42 as answer")],
    ["G2", "SELECT df.start(df.sql('SELECT 42 as answer'), 'test-simple-func')", q("SELECT 42 as answer")],
    [
      "G3",
      "SELECT df.sql('SELECT 1 as col1, ''a'' as col2 UNION ALL SELECT 2, ''b''')",
      q("SELECT 1 as col1, 'a' as col2 UNION ALL SELECT 2, 'b'")
    ],
    [
      "G4",
      "SELECT 'INSERT 1' ~> 'INSERT 2' ~> 'INSERT 3'",
      seq(seq(q("INSERT 1"), q("INSERT 2")), q("INSERT 3"))
    ],
    [
      "G5",
      "SELECT df.seq(df.seq('INSERT 1','INSERT 2'),'INSERT 3')",
      seq(seq(q("INSERT 1"), q("INSERT 2")), q("INSERT 3"))
    ],
    ["G6", "SELECT df.join('A','B')", join(q("A"), q("B"))],
    ["G6'", "SELECT 'A' & 'B'", join(q("A"), q("B"))],
    ["G7", "SELECT df.if('SELECT true', 'then', 'else')", iff(q("SELECT true"), q("then"), q("else"))],
    ["G7'", "SELECT 'SELECT true' ?> 'then' !> 'else'", iff(q("SELECT true"), q("then"), q("else"))],
    [
      "G9",
      "SELECT 'SELECT 100 as num' |=> 'x' ~> 'INSERT INTO test_vars_log (val, variant) VALUES ($x::text, ''op'')'",
      seq(as(q("SELECT 100 as num"), "x"), q("INSERT INTO test_vars_log (val, variant) VALUES ($x::text, 'op')"))
    ],
    [
      "G10",
      "SELECT df.seq(df.as('SELECT 200 as num', 'y'), 'INSERT INTO t VALUES ($y::text, ''fn'')')",
      seq(as(q("SELECT 200 as num"), "y"), q("INSERT INTO t VALUES ($y::text, 'fn')"))
    ],
    ["G11", "SELECT 'SELECT 1' ~> 'SELECT 2'", seq(q("SELECT 1"), q("SELECT 2"))],
    ["G12", "SELECT df.sleep(60)", { kind: "sleep", seconds: 60 }],
    ["G13", "SELECT df.wait_for_signal('approval', 3600)", { kind: "signal", signal: "approval", timeout: 3600 }],
    ["G14", `SELECT df.break('{"status": "done"}')`, brk(`{"status": "done"}`)],
    [
      "G15",
      `SELECT df.loop(df.break('{"status": "done"}')) |=> 'loop_result'`,
      as(loop(brk(`{"status": "done"}`)), "loop_result")
    ],
    [
      "G16",
      `SELECT df.loop('INSERT' ~> ('SELECT COUNT(*) >= 3 FROM t' ?> df.break('{"reason": "x"}') !> df.sleep(1)))`,
      loop(
        seq(q("INSERT"), iff(q("SELECT COUNT(*) >= 3 FROM t"), brk(`{"reason": "x"}`), { kind: "sleep", seconds: 1 }))
      )
    ],
    [
      "G17",
      "SELECT df.loop('INSERT' ~> df.sleep(1), 'SELECT COUNT(*) < 4 FROM t')",
      loop(seq(q("INSERT"), { kind: "sleep", seconds: 1 }), q("SELECT COUNT(*) < 4 FROM t"))
    ],
    [
      "G18",
      "SELECT df.loop('SELECT ''body''', 'SELECT 1' ~> df.break('condition-done'))",
      loop(q("SELECT 'body'"), seq(q("SELECT 1"), brk("condition-done")))
    ],
    [
      "G19",
      "SELECT df.loop('INSERT' ~> (df.if('SELECT COUNT(*) >= 1 FROM t', df.break('nested-done'), 'SELECT ''keep-going''') & 'SELECT ''other_branch'''))",
      loop(seq(
        q("INSERT"),
        join(
          iff(q("SELECT COUNT(*) >= 1 FROM t"), brk("nested-done"), q("SELECT 'keep-going'")),
          q("SELECT 'other_branch'")
        )
      ))
    ],
    ["G20", "SELECT df.start(df.break('top-level-oops'))", brk("top-level-oops")],
    ["G21", "SELECT 'SELECT 1 AS a' & 'SELECT 2 AS b'", join(q("SELECT 1 AS a"), q("SELECT 2 AS b"))],
    [
      "G22",
      "SELECT (('SELECT 100 AS amount' |=> 'left_val') & ('SELECT 200 AS amount' |=> 'right_val')) ~> $$INSERT INTO t VALUES ($left_val::int, $right_val::int)$$",
      seq(
        join(as(q("SELECT 100 AS amount"), "left_val"), as(q("SELECT 200 AS amount"), "right_val")),
        q("INSERT INTO t VALUES ($left_val::int, $right_val::int)")
      )
    ],
    [
      "G23",
      "SELECT df.if('SELECT true','SELECT 41 AS chosen','SELECT 99 AS chosen') |=> 'decision' ~> $$INSERT INTO t VALUES ($decision.chosen)$$",
      seq(
        as(iff(q("SELECT true"), q("SELECT 41 AS chosen"), q("SELECT 99 AS chosen")), "decision"),
        q("INSERT INTO t VALUES ($decision.chosen)")
      )
    ],
    [
      "G24",
      "SELECT $$SELECT 42 AS id, 'hello' AS content$$ |=> 'doc' ~> $$INSERT INTO t VALUES ($doc.id, $doc.content)$$",
      seq(as(q("SELECT 42 AS id, 'hello' AS content"), "doc"), q("INSERT INTO t VALUES ($doc.id, $doc.content)"))
    ],
    [
      "G27",
      "SELECT $$SELECT id, val FROM (VALUES (1,'a'),(2,'b'),(3,'c')) AS t(id,val)$$ |=> 'batch' ~> $$INSERT INTO t SELECT count(*) FROM $batch.*$$",
      seq(
        as(q("SELECT id, val FROM (VALUES (1,'a'),(2,'b'),(3,'c')) AS t(id,val)"), "batch"),
        q("INSERT INTO t SELECT count(*) FROM $batch.*")
      )
    ],
    [
      "G31",
      "SELECT df.wait_for_signal('never_arrives', 2) |=> 'sig' ~> 'INSERT INTO t VALUES (''timeout_result'', $sig::jsonb)'",
      seq(
        as({ kind: "signal", signal: "never_arrives", timeout: 2 }, "sig"),
        q("INSERT INTO t VALUES ('timeout_result', $sig::jsonb)")
      )
    ],
    [
      "G37",
      "SELECT df.http('https://httpbingo.org/get','GET') |=> 'resp' ~> 'SELECT $resp.status AS status, $resp.ok AS ok'",
      seq(
        as({ kind: "http", url: "https://httpbingo.org/get", method: "GET", timeout: 30 }, "resp"),
        q("SELECT $resp.status AS status, $resp.ok AS ok")
      )
    ],
    ["G41", "SELECT df.loop('INSERT' ~> df.sleep(0))", loop(seq(q("INSERT"), { kind: "sleep", seconds: 0 }))],
    ["join3", "SELECT df.join3('a', 'b', 'c')", join(q("a"), q("b"), q("c"))],
    ["if_rows", "SELECT df.if_rows('r', 'a', 'b')", { kind: "if_rows", result: "r", then: q("a"), else: q("b") }],
    ["named args", "SELECT df.http(url => 'https://x.azurewebsites.net', method => 'get', timeout_seconds => 5)", {
      kind: "http",
      url: "https://x.azurewebsites.net",
      method: "GET",
      timeout: 5
    }],
    ["names on sleep are ignored", "SELECT df.sleep(5) |=> 'x'", { kind: "sleep", seconds: 5 }]
  ]
  for (const [name, sql, expected] of golden) it.effect(`${name}: ${sql}`, () => parses(sql, expected))

  it.effect("G28: invalid result names are refused by the compiler", () =>
    Effect.gen(function*() {
      for (const name of ["has space", "123abc", "x) UNION SELECT version()--"]) {
        const error = yield* Effect.flip(Compiler.compile(Graph.sql("SELECT 1").pipe(Graph.as(name))))
        assert.strictEqual(error.rule, "invalid-capture-name")
      }
    }))
})

describe("golden graphs written by this compiler", () => {
  it.effect("G15/G16 as a graph: a loop that breaks with an object, captured", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.loop(Graph.sequence(
          Graph.sql("INSERT INTO ticks DEFAULT VALUES"),
          Graph.branch("SELECT COUNT(*) >= 3 FROM ticks", Graph.break({ reason: "three" }), Graph.sleep("1 second"))
        )).pipe(Graph.as("loop_result")),
        Graph.sql`SELECT ${Graph.ref("loop_result")}::jsonb->>'reason' AS reason`
      )
      const compiled = yield* Compiler.compile(graph, { rendering: "operators" })
      assert.strictEqual(
        compiled.expression,
        "(((@> ('INSERT INTO ticks DEFAULT VALUES' ~> (('SELECT COUNT(*) >= 3 FROM ticks' ?> " +
          "df.break('{\"reason\":\"three\"}')) !> df.sleep(1)))) |=> '__pgf_loop_result') ~> " +
          "'SELECT ($__pgf_loop_result)::jsonb->>''reason'' AS reason')"
      )
      // What PostgreSQL reads is what pg_durable's own tests write (G16), plus the capture.
      const statement = yield* Decompiler.parse(compiled.statement)
      assert.deepStrictEqual(
        statement.durable,
        seq(
          as(
            loop(seq(
              q("INSERT INTO ticks DEFAULT VALUES"),
              iff(q("SELECT COUNT(*) >= 3 FROM ticks"), brk("{\"reason\":\"three\"}"), { kind: "sleep", seconds: 1 })
            )),
            "__pgf_loop_result"
          ),
          q("SELECT ($__pgf_loop_result)::jsonb->>'reason' AS reason")
        )
      )
    }))

  it.effect("G22 as a graph: captures of parallel branches are visible after the join", () =>
    Effect.gen(function*() {
      const graph = Graph.sequence(
        Graph.parallel(
          Graph.sql("SELECT 100 AS amount").pipe(Graph.as("left_val")),
          Graph.sql("SELECT 200 AS amount").pipe(Graph.as("right_val"))
        ),
        Graph.sql`INSERT INTO t VALUES (${Graph.ref("left_val")}::int, ${Graph.ref("right_val")}::int)`
      )
      const compiled = yield* Compiler.compile(graph, { rendering: "operators" })
      assert.strictEqual(
        compiled.expression,
        "((('SELECT 100 AS amount' |=> '__pgf_left_val') & ('SELECT 200 AS amount' |=> '__pgf_right_val')) ~> " +
          "'INSERT INTO t VALUES (($__pgf_left_val)::int, ($__pgf_right_val)::int)')"
      )
      yield* Decompiler.verify(compiled)
    }))
})
