/**
 * A named workflow defined as a graph, with the Schema of its input: what `SqlExporter` exports and
 * `PgDurableClient.start` runs. The graph may read the run's input (`Graph.input()`) and must bind
 * every other capture it reads; the types check both.
 *
 * @since 0.1.0
 */
import type * as Schema from "effect/Schema"
import type * as Graph from "./Graph.ts"
import * as Quote from "./internal/quote.ts"

const TypeId = "~@pgflows/pg-durable/GraphWorkflow"

/**
 * @category models
 * @since 0.1.0
 */
export interface GraphWorkflow<
  Name extends string,
  I extends Schema.Codec<any, any, never, never>,
  G extends Graph.Any
> {
  readonly [TypeId]: typeof TypeId
  readonly name: Name
  readonly input: I
  readonly graph: G
  readonly description: string | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export type Any = GraphWorkflow<string, Schema.Codec<any, any, never, never>, Graph.Any>

/**
 * @category guards
 * @since 0.1.0
 */
export const isGraphWorkflow = (u: unknown): u is Any =>
  typeof u === "object" && u !== null && (u as Record<string, unknown>)[TypeId] === TypeId

/**
 * Defines a graph workflow. The name must be non-empty text without control characters (line breaks
 * included), line separators, NUL or lone surrogates: it is written into SQL and into the comments of
 * exported scripts. An invalid name throws.
 *
 * @example
 * ```ts
 * const processOrder = GraphWorkflow.make("process_order", {
 *   input: OrderInput,
 *   graph: Graph.sequence(
 *     Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
 *     Graph.step(sendReceipt, { input: Graph.capture("receipt") })
 *   )
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <
  const Name extends string,
  I extends Schema.Codec<any, any, never, never>,
  G extends Graph.Any
>(name: Name, options: {
  readonly input: I
  readonly graph: G & Graph.Closed<G, { readonly input: I["Encoded"] }>
  readonly description?: string | undefined
}): GraphWorkflow<Name, I, G> => {
  const problem = Quote.nameProblem(name)
  if (problem !== undefined) throw new Error(`the workflow name ${JSON.stringify(name)} ${problem}`)
  return { [TypeId]: TypeId, name, input: options.input, graph: options.graph, description: options.description }
}
