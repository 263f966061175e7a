/**
 * The value of a graph (what a capture of it holds, read as JSON; `Graph.Value` is its type) from
 * pg_durable's result of the root node (`df.result`), and its check against the graph.
 *
 * pg_durable's result of a SQL node is `{ rows, row_count }`; its value is the first column of the
 * first row (text that is JSON read as JSON, other text as a string, no row as null), as `$name`
 * substitutes it. Every other result (an envelope, a break value) is the value itself. A parallel
 * whose value is read ends with the node that builds its value (`lower.ts`), a SQL node of one
 * column, so its value comes out the same way.
 */
import * as Result from "effect/Result"
import { codec, formatIssues } from "pgflows/JsonCodec"
import type * as Step from "pgflows/Step"
import type * as Model from "./model.ts"

const isRows = (raw: unknown): raw is { readonly rows: ReadonlyArray<unknown>; readonly row_count: number } =>
  typeof raw === "object" && raw !== null && !Array.isArray(raw) && Array.isArray((raw as any).rows) &&
  typeof (raw as any).row_count === "number"

/** A text value read as JSON when it is JSON, as a string otherwise. */
const cell = (value: unknown): unknown => {
  if (value === undefined || value === null) return null
  if (typeof value !== "string") return value
  try {
    return JSON.parse(value)
  } catch {
    return value
  }
}

/** The value of a node from pg_durable's result of it; fails when it cannot be told. */
export const fromResult = (raw: unknown): Result.Result<unknown, string> => {
  if (!isRows(raw)) return Result.succeed(raw)
  const row = raw.rows[0]
  if (typeof row !== "object" || row === null) return Result.succeed(null)
  const columns = Object.keys(row)
  if (columns.length > 1) {
    return Result.fail(
      `it ends with a SQL node of several columns (${columns.join(", ")}): df.result gives them in jsonb's ` +
        "order, so the first cannot be told. End the graph with a node of one column, or read the result " +
        "without a graph for pg_durable's own JSON"
    )
  }
  return Result.succeed(columns.length === 0 ? null : cell((row as Record<string, unknown>)[columns[0]!]))
}

/**
 * Why a value does not fit the graph's value, or `undefined`: a parallel's is a tuple with one
 * element per branch, a step's is an output of the step (its Schema's JSON form); a branch's or a
 * race's fits one of its arms; other values are not checked.
 */
export const check = (
  node: Model.Node,
  value: unknown,
  steps: ReadonlyMap<string, Step.Any>,
  path = "the value"
): string | undefined => {
  switch (node._tag) {
    case "Sequence":
      return node.nodes.length === 0 ? undefined : check(node.nodes[node.nodes.length - 1]!, value, steps, path)
    case "Parallel": {
      if (!Array.isArray(value) || value.length !== node.branches.length) {
        return `${path} is not a tuple of ${node.branches.length} (one element per branch): ${
          JSON.stringify(value)?.slice(0, 200)
        }`
      }
      for (let i = 0; i < node.branches.length; i++) {
        const problem = check(node.branches[i]!, value[i], steps, `${path}[${i}]`)
        if (problem !== undefined) return problem
      }
      return undefined
    }
    case "Step": {
      const step = steps.get(node.step)
      if (step === undefined) return undefined
      const decoded = codec(step.output).decode(value)
      return Result.isFailure(decoded)
        ? `${path} is not an output of step "${node.step}": ${formatIssues(decoded.failure)}`
        : undefined
    }
    case "Branch":
    case "IfRows": {
      const then = check(node.then, value, steps, path)
      return then === undefined || check(node.else, value, steps, path) === undefined ? undefined : then
    }
    case "Race": {
      const problems = node.branches.map((branch) => check(branch, value, steps, path))
      return problems.includes(undefined) ? undefined : problems[0]
    }
    default:
      return undefined
  }
}
