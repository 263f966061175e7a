// The README's example: the graph it shows compiles to the SQL it shows.
import { assert, it } from "@effect/vitest"
import { Compiler, Decompiler, Graph } from "@pgflows/pg-durable"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { chargePayment, sendReceipt } from "./fixtures/steps.ts"

it.effect("README: a graph in TypeScript and the SQL it compiles to", () =>
  Effect.gen(function*() {
    const readme = Fs.readFileSync(Path.join(import.meta.dirname, "..", "README.md"), "utf8")
    const shown = /<!-- compiled: operators -->\s*```sql\n([\s\S]*?)\n```/.exec(readme)?.[1]
    assert.isDefined(shown)
    const order = Graph.sequence(
      Graph.step(chargePayment, { capture: "receipt", input: Graph.input() }),
      Graph.waitForSignal("approval", { capture: "approval", timeout: "1 day" }),
      Graph.branch(
        Graph.sql`SELECT (${Graph.ref("approval")})::jsonb->'data'->>'approved' = 'true'`,
        Graph.step(sendReceipt, { input: Graph.capture("receipt") }),
        Graph.sql("SELECT 'declined' AS outcome")
      )
    )
    const compiled = yield* Compiler.compile(order, {
      rendering: "operators",
      pretty: true,
      input: { orderId: "ORD-1", amount: 99 }
    })
    assert.strictEqual(compiled.expression, shown)
    yield* Decompiler.verify(compiled)
    const decompiled = yield* Decompiler.decompile(`SELECT df.start(${shown})`)
    assert.deepStrictEqual(decompiled.graph.node, compiled.graph)
    assert.deepStrictEqual(decompiled.input, { value: { orderId: "ORD-1", amount: 99 } })
  }))
