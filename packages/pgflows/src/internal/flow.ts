/**
 * What a start needs of a workflow's queue (`FlowQueue`): the run's concurrency key, computed from
 * its typed input by the workflow's own function. A key function that throws, or returns anything
 * but a storable string, fails that start alone (`InvalidConcurrencyKey`): nothing is written, no
 * other run is touched (docs/ARCHITECTURE.md, "Runs are isolated").
 */
import * as Result from "effect/Result"
import * as FlowQueue from "../FlowQueue.ts"
import { InvalidConcurrencyKey } from "../PgflowsError.ts"
import * as StoredText from "../StoredText.ts"

/** A workflow as the key needs it (a definition, or a child's spec). */
export interface Keyed {
  readonly name: string
  readonly queue: FlowQueue.FlowQueue
  readonly concurrencyKey: ((input: any) => unknown) | undefined
}

/** The longest concurrency key, in UTF-16 code units. */
export const maxKeyLength = 1000

/** The run's concurrency key (`undefined` without a key function), or why it has none. */
export const keyOf = (workflow: Keyed, input: unknown): Result.Result<string | undefined, InvalidConcurrencyKey> => {
  const fn = workflow.concurrencyKey
  if (fn === undefined || workflow.queue.name === FlowQueue.defaultName) return Result.succeed(undefined)
  const fail = (reason: string) => Result.fail(new InvalidConcurrencyKey({ workflow: workflow.name, reason }))
  let key: unknown
  try {
    key = fn(input)
  } catch (error) {
    return fail(`the concurrencyKey function threw: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (typeof key !== "string") {
    return fail(`the concurrencyKey function returned ${describe(key)}, not a string`)
  }
  if (key.length > maxKeyLength) return fail(`the key is ${key.length} characters long, more than ${maxKeyLength}`)
  const problem = StoredText.problem(key)
  return problem === undefined ? Result.succeed(key) : fail(`the key ${problem}`)
}

const describe = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : typeof value
