// A workflow whose one step takes a while, for the worker that is stopped in the middle of it.
import { Console, Effect, Schema } from "effect"
import { Step, Workflow } from "pgflows"

export const Job = Schema.Struct({ name: Schema.String, millis: Schema.Number })

const slowStep = Step.make("slow_step", {
  input: Job,
  output: Schema.String,
  run: (job) =>
    Console.log(`step started: ${job.name}`).pipe(
      Effect.andThen(Effect.sleep(job.millis)),
      Effect.andThen(Console.log(`step finished: ${job.name}`)),
      Effect.as(`done ${job.name}`)
    )
})

export const slowJob = Workflow.make("slow_job", { input: Job, output: Schema.String, run: slowStep })
