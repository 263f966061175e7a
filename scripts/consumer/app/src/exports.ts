// What an application may import, and what it may not: the barrels, one module per path
// (`pgflows/Step`), the vitest global setup by its package path, and no `internal/` module.
import { Compiler, Graph } from "@pgflows/pg-durable"
import * as GraphSpec from "@pgflows/pg-durable/GraphSpec"
import { Auth, PgflowsServer } from "@pgflows/server"
import * as PgflowsApi from "@pgflows/server/PgflowsApi"
import { DatabaseServer, TestDatabase } from "@pgflows/testing"
import { Console, Effect } from "effect"
import { Pgflows, Workflow } from "pgflows"
import * as PgStore from "pgflows/PgStore"
import * as Step from "pgflows/Step"

const sealed = [
  "pgflows/internal/engine",
  "@pgflows/pg-durable/internal/model",
  "@pgflows/server/internal/stepCalls",
  "@pgflows/testing/internal/admin"
]

const main = Effect.gen(function*() {
  const modules = {
    Pgflows,
    Workflow,
    PgStore,
    Step,
    GraphSpec,
    DatabaseServer,
    TestDatabase,
    Auth,
    PgflowsServer,
    PgflowsApi
  }
  for (const [name, module] of Object.entries(modules)) {
    if (Object.keys(module).length === 0) return yield* Effect.die(new Error(`${name} exports nothing`))
  }
  const setup: { readonly default?: unknown } = yield* Effect.promise(() => import("@pgflows/testing/globalSetup"))
  if (typeof setup.default !== "function") return yield* Effect.die(new Error("globalSetup has no default export"))
  for (const specifier of sealed) {
    const outcome = yield* Effect.promise(() =>
      import(specifier).then(() => "importable", (error: { readonly code?: string }) => error.code ?? String(error))
    )
    if (outcome !== "ERR_PACKAGE_PATH_NOT_EXPORTED") {
      return yield* Effect.die(new Error(`${specifier}: expected ERR_PACKAGE_PATH_NOT_EXPORTED, got ${outcome}`))
    }
  }
  const compiled = yield* Compiler.compile(Graph.sql("SELECT 1 AS one"))
  yield* Console.log(`compiled: ${compiled.expression}`)
  yield* Console.log("exports: ok")
})

Effect.runPromise(main).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
