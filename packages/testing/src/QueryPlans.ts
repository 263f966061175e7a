/**
 * The plans PostgreSQL makes for a statement, read with `EXPLAIN`: which tables it scans and with
 * which indexes, in the generic plan a prepared statement switches to after five executions and in
 * the custom plan for given values. Tests use it to check, on a table large enough that the planner
 * would rather scan it, that a statement uses the index it was written for, so that a later change
 * of the statement cannot quietly bring back a scan of a table that grows with history.
 *
 * The statement is prepared, then explained as executed with `plan_cache_mode` forcing each plan,
 * in a transaction of its own (on one connection, since `PREPARE` is the session's).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as SqlClient from "effect/sql/SqlClient"

/**
 * A node of `EXPLAIN (FORMAT JSON)`'s plan, with the fields read here (and, after `ANALYZE`, what
 * it did).
 *
 * @category models
 * @since 0.1.0
 */
export interface PlanNode {
  readonly "Node Type": string
  readonly "Relation Name"?: string
  readonly "Index Name"?: string
  readonly "Actual Rows"?: number
  readonly "Actual Loops"?: number
  readonly "Rows Removed by Filter"?: number
  readonly Plans?: ReadonlyArray<PlanNode>
}

/**
 * Which plan: the generic one, or the custom one for the values given.
 *
 * @category models
 * @since 0.1.0
 */
export type Mode = "generic" | "custom"

/**
 * A plan's scans that did not hold what `expect` asked: the statement's label and plans say which.
 *
 * @category errors
 * @since 0.1.0
 */
export class PlanMismatch extends Data.TaggedError("PlanMismatch")<{
  readonly message: string
}> {}

/**
 * Every scan of a plan, as `Node Type [on relation] [using index]`.
 *
 * @category plans
 * @since 0.1.0
 */
export const scans = (node: PlanNode): Array<string> => [
  ...(node["Relation Name"] === undefined && node["Index Name"] === undefined
    ? []
    : [
      [
        node["Node Type"],
        ...(node["Relation Name"] === undefined ? [] : [`on ${node["Relation Name"]}`]),
        ...(node["Index Name"] === undefined ? [] : [`using ${node["Index Name"]}`])
      ].join(" ")
    ]),
  ...(node.Plans ?? []).flatMap(scans)
]

/**
 * A value as an SQL literal of no type yet, which `EXECUTE` coerces to its parameter's type (a
 * bound parameter of `EXECUTE` would need one): NULL, a quoted number or text, an array literal.
 *
 * @category plans
 * @since 0.1.0
 */
export const literal = (value: unknown): string =>
  value === null || value === undefined
    ? "NULL"
    : Array.isArray(value)
    ? literal(
      `{${value.map((item) => `"${String(item).replaceAll("\\", "\\\\").replaceAll("\"", "\\\"")}"`).join(",")}}`
    )
    : `'${String(value).replaceAll("'", "''")}'`

let prepared = 0

/**
 * The plan of `text` (with `$n` parameters) executed with `values`, as PostgreSQL makes it in
 * `mode`; with `analyze`, executed, so its nodes say what they read.
 *
 * @category plans
 * @since 0.1.0
 */
export const explain = (
  text: string,
  values: ReadonlyArray<unknown>,
  mode: Mode,
  options: { readonly analyze?: boolean | undefined } = {}
): Effect.Effect<PlanNode, unknown, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const name = `pgflows_plan_${++prepared}`
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql.unsafe(
        `SET LOCAL plan_cache_mode = ${mode === "generic" ? "force_generic_plan" : "force_custom_plan"}`
      )
      yield* sql.unsafe(`PREPARE ${name} AS ${text}`)
      const args = values.length === 0 ? "" : `(${values.map(literal).join(", ")})`
      const rows = yield* sql.unsafe<{ "QUERY PLAN": ReadonlyArray<{ Plan: PlanNode }> }>(
        `EXPLAIN (${options.analyze === true ? "ANALYZE, " : ""}FORMAT JSON) EXECUTE ${name}${args}`
      )
      yield* sql.unsafe(`DEALLOCATE ${name}`)
      return rows[0]!["QUERY PLAN"][0]!.Plan
    }))
  })

/**
 * The scans of a statement's plans: its generic plan (made for the first set of values' types),
 * and its custom plan for each set of values, by `generic`, `custom #1`, `custom #2`...
 *
 * @category plans
 * @since 0.1.0
 */
export const plans = (
  text: string,
  cases: ReadonlyArray<ReadonlyArray<unknown>>
): Effect.Effect<Record<string, Array<string>>, unknown, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const found: Record<string, Array<string>> = { generic: scans(yield* explain(text, cases[0] ?? [], "generic")) }
    for (const [index, values] of cases.entries()) {
      found[`custom #${index + 1}`] = scans(yield* explain(text, values, "custom"))
    }
    return found
  })

/**
 * Checks every plan of a statement (generic, and custom for each set of values): each uses each of
 * `uses` (an index name, or a list of equivalent ones), and none scans a table of `neverScanned`
 * whole (a `Seq Scan`). Fails with `PlanMismatch` naming the statement, the plan and its scans.
 *
 * @category plans
 * @since 0.1.0
 */
export const expect = (
  label: string,
  text: string,
  cases: ReadonlyArray<ReadonlyArray<unknown>>,
  options: {
    readonly uses: ReadonlyArray<string | ReadonlyArray<string>>
    readonly neverScanned: ReadonlyArray<string>
  }
): Effect.Effect<void, PlanMismatch | unknown, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    for (const [kind, scanned] of Object.entries(yield* plans(text, cases))) {
      const where = `${label} (${kind} plan: ${scanned.join("; ")})`
      for (const index of options.uses) {
        const any = typeof index === "string" ? [index] : index
        if (!scanned.some((scan) => any.some((name) => scan.endsWith(`using ${name}`)))) {
          return yield* Effect.fail(new PlanMismatch({ message: `${where} does not use ${any.join(" or ")}` }))
        }
      }
      for (const scan of scanned) {
        const table = scan.match(/^Seq Scan on (\w+)/)?.[1]
        if (table !== undefined && options.neverScanned.includes(table)) {
          return yield* Effect.fail(new PlanMismatch({ message: `${where} scans ${table} whole` }))
        }
      }
    }
  })
