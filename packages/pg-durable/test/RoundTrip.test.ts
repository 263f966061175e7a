// Property: every random valid graph compiles, and each rendering (functions, operators, bind
// parameters) parses with PostgreSQL's parser back into the same graph, for both step bindings.
import { assert, describe, it } from "@effect/vitest"
import { Compiler, Decompiler, Graph, StepBinding } from "@pgflows/pg-durable"
import { Effect, Redacted, Result } from "effect"
import * as fc from "fast-check"
import { PgflowsConfig } from "pgflows"
import { graph, randomSteps } from "./fixtures/arbitrary.ts"

const bindings: ReadonlyArray<StepBinding.StepBinding> = [
  StepBinding.worker(),
  StepBinding.http("https://steps.azurewebsites.net/api", {
    headers: { Authorization: "Bearer t" },
    secret: Redacted.make("step-secret")
  })
]

describe("round trip over random graphs", () => {
  it.effect(
    "compile, parse and rebuild: 2000 graphs, both bindings, three renderings each",
    () =>
      Effect.gen(function*() {
        // Loads the parser; the property itself runs synchronously.
        yield* Compiler.compile(Graph.sql("SELECT 1"))
        let stepCalls = 0
        let maxNodes = 0
        fc.assert(
          fc.property(graph, fc.nat(1), ({ input, node }, which) => {
            const compiled = Compiler.compileSync(node, PgflowsConfig.defaults, {
              steps: randomSteps,
              binding: bindings[which]!,
              ...(input === undefined ? {} : { input })
            })
            if (Result.isFailure(compiled)) {
              throw new Error(
                `a generated graph does not compile: ${compiled.failure.message}\n${JSON.stringify(node)}`
              )
            }
            stepCalls += compiled.success.steps.length
            maxNodes = Math.max(maxNodes, compiled.success.nodes)
            const verified = Decompiler.verifyLoaded(compiled.success)
            if (Result.isFailure(verified)) {
              throw new Error(`round trip failed: ${verified.failure.message}\n${compiled.success.expression}`)
            }
          }),
          { numRuns: 2000 }
        )
        // The generator reaches steps and big graphs (a sanity check of the property itself).
        assert.isAbove(stepCalls, 500)
        assert.isAbove(maxNodes, 30)
      }),
    120_000
  )
})
