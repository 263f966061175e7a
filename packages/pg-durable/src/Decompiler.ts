/**
 * Reads pg_durable SQL back, without pg_durable: the statement is parsed by PostgreSQL's own parser
 * (`libpg-query`), its `df.*` calls and operators are rebuilt into pg_durable's graph exactly as
 * PostgreSQL groups them, and, for SQL this compiler wrote, into the `Graph` it came from (steps,
 * captures, input expressions and all).
 *
 * `verify` is the compiler's self-check: each rendering of a compiled graph (functions, operators,
 * parameterised) must parse and rebuild into the very graph that was compiled.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { Compiled } from "./Compiler.ts"
import * as Graph from "./Graph.ts"
import type { Dsl } from "./internal/dsl.ts"
import * as DslRender from "./internal/dsl.ts"
import * as Lift from "./internal/lift.ts"
import * as Model from "./internal/model.ts"
import * as Parser from "./internal/parser.ts"
import * as PgParse from "./internal/pgparse.ts"
import { DecompileError } from "./PgDurableError.ts"

/**
 * pg_durable's graph as its `df.*` constructors build it: `kind` is the constructor (`seq` for
 * `df.seq` and `~>`, `join` for `df.join`/`df.join3`/`&`, ...), `name` the result name of `df.as` or
 * `|=>`.
 *
 * @category models
 * @since 0.1.0
 */
export type DurableNode = Dsl

/**
 * @category models
 * @since 0.1.0
 */
export interface Statement {
  /** What the statement calls: `df.start`, `df.explain`, or a bare graph expression. */
  readonly call: "start" | "explain" | "expression"
  readonly durable: DurableNode
  readonly label: string | null | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Decompiled extends Statement {
  readonly graph: Graph.Graph<unknown, {}, {}>
  /** The run's input, when the graph starts with the node that binds it. */
  readonly input: { readonly value: Model.Json } | undefined
}

const wrap = <A>(f: () => A): Effect.Effect<A, DecompileError> =>
  Effect.andThen(
    Parser.load,
    Effect.try({
      try: f,
      catch: (error) =>
        new DecompileError({
          reason: error instanceof PgParse.NotAGraph
            ? error.message
            : `unexpected parse tree (${error instanceof Error ? error.message : String(error)})`
        })
    })
  )

/**
 * Parses `SELECT df.start(...)`, `SELECT df.explain(...)` or `SELECT <graph expression>` into
 * pg_durable's graph; `params` are the values of `$1`, `$2`, ...
 *
 * @category decompiling
 * @since 0.1.0
 */
export const parse = (sql: string, params?: ReadonlyArray<unknown>): Effect.Effect<Statement, DecompileError> =>
  wrap(() => {
    const statement = PgParse.parseStatement(sql, params)
    return { call: statement.call, durable: statement.graph, label: statement.label }
  })

/**
 * Parses a graph expression alone (the argument of `df.start`).
 *
 * @category decompiling
 * @since 0.1.0
 */
export const parseExpression = (
  expression: string,
  params?: ReadonlyArray<unknown>
): Effect.Effect<DurableNode, DecompileError> => wrap(() => PgParse.parseExpression(expression, params))

/**
 * Renders a pg_durable graph as SQL: nested `df.*` calls, or the fully parenthesised operator form.
 *
 * @category decompiling
 * @since 0.1.0
 */
export const render = (durable: DurableNode, rendering: "functions" | "operators"): string =>
  DslRender.render(durable, rendering)

/**
 * Parses SQL this compiler wrote and rebuilds the graph it was compiled from.
 *
 * @category decompiling
 * @since 0.1.0
 */
export const decompile = (sql: string, params?: ReadonlyArray<unknown>): Effect.Effect<Decompiled, DecompileError> =>
  wrap(() => {
    const statement = PgParse.parseStatement(sql, params)
    const lifted = Lift.lift(statement.graph)
    return {
      call: statement.call,
      durable: statement.graph,
      label: statement.label,
      graph: Graph.fromNode(lifted.graph),
      input: lifted.input
    }
  })

/**
 * Checks a compiled graph against PostgreSQL's parser: the functions and operators renderings (one
 * line and pretty) and the parameterised statement each parse into the same pg_durable graph, and that graph rebuilds
 * into the compiled graph (and input).
 *
 * @category decompiling
 * @since 0.1.0
 */
export const verify = (compiled: Compiled): Effect.Effect<void, DecompileError> =>
  Effect.andThen(Parser.load, Effect.fromResult(verifyLoaded(compiled)))

/**
 * `verify`, synchronously, once the parser is loaded (after any compile of this package).
 *
 * @category decompiling
 * @since 0.1.0
 */
export const verifyLoaded = (compiled: Compiled): Result.Result<void, DecompileError> => {
  try {
    const renderings: ReadonlyArray<readonly [string, string, ReadonlyArray<unknown>]> = [
      ["functions", DslRender.render(compiled.durable, "functions"), []],
      ["operators", DslRender.render(compiled.durable, "operators"), []],
      ["pretty operators", DslRender.pretty(compiled.durable), []],
      ["parameterised", compiled.parameterised.expression, compiled.parameterised.params]
    ]
    for (const [name, text, params] of renderings) {
      const durable = PgParse.parseExpression(text, params)
      if (!Model.equals(durable, compiled.durable)) {
        throw new PgParse.NotAGraph(`the ${name} rendering parses into another pg_durable graph`)
      }
      const lifted = Lift.lift(durable)
      if (!Model.equals(lifted.graph, compiled.graph)) {
        throw new PgParse.NotAGraph(
          `the ${name} rendering rebuilds into another graph: ${JSON.stringify(lifted.graph)} instead of ${
            JSON.stringify(compiled.graph)
          }`
        )
      }
      if (!Model.equals(lifted.input, compiled.input)) {
        throw new PgParse.NotAGraph(`the ${name} rendering rebuilds another input`)
      }
    }
    return Result.void
  } catch (error) {
    return Result.fail(
      new DecompileError({ reason: error instanceof Error ? error.message : String(error) })
    )
  }
}
