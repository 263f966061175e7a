// The workflows the benchmark runs: three trivial steps, so the figures measure pgflows itself.
import { Effect, Schema } from "effect"
import { Step, Workflow } from "pgflows"

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

export const workflows = [threeSteps, recoverable] as const
