// The workflows the benchmark runs: three trivial steps, so the figures measure pgflows itself.
import { Effect, Schema } from "effect"
import { FlowQueue, Step, Workflow } from "pgflows"

const Num = Schema.Struct({ n: Schema.Number })

const add = (name: string) => Step.make(name, { input: Num, output: Num, run: (i) => Effect.succeed({ n: i.n + 1 }) })

const one = add("one")
const two = add("two")
const three = add("three")

export const threeSteps = Workflow.make("bench_three_steps", {
  input: Num,
  output: Num,
  run: (input) => one(input).pipe(Effect.flatMap(two), Effect.flatMap(three))
})

/**
 * The same three steps in a named queue with a per-key limit in force: 4 runs at once per key, 32
 * keys (from the input), so the limit is counted at every claim without being what bounds the rate
 * at concurrency 64.
 */
export const keyedQueue = FlowQueue.make("bench_keyed", { keyConcurrency: 4 })

export const keyedThreeSteps = Workflow.make("bench_keyed_three_steps", {
  input: Num,
  output: Num,
  queue: keyedQueue,
  concurrencyKey: (input) => `tenant-${input.n % 32}`,
  run: (input) => one(input).pipe(Effect.flatMap(two), Effect.flatMap(three))
})

/** Blocks forever on the process named "victim" (the recovery measurement kills it). */
const hang = Step.make("hang", {
  input: Num,
  output: Num,
  run: (i) => process.env.BENCH_ROLE === "victim" ? Effect.never : Effect.succeed(i)
})

export const recoverable = Workflow.make("bench_recoverable", {
  input: Num,
  output: Num,
  run: (input) => one(input).pipe(Effect.flatMap(hang), Effect.flatMap(two))
})

export const workflows = [threeSteps, recoverable, keyedThreeSteps] as const
