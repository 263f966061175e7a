// The README of @pgflows/pg-durable walks through the push-mode example: each code block marked
// `<!-- from <file> -->` is an excerpt of that file as it is (indented as in the file, or less), and
// each line of the output it shows is a line of the example's docs page, whose expected output
// PushMode.test.ts checks against a real run.
import { assert, it } from "@effect/vitest"
import type { Graph } from "@pgflows/pg-durable"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { expenseClaim, Settlement } from "../src/ExpenseClaim.ts"
import { expectedOutput } from "./transcript.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const readme = Fs.readFileSync(Path.join(root, "packages/pg-durable/README.md"), "utf8")
const section = readme.slice(readme.indexOf("\n## Push mode end to end\n")).split(/\n## (?!Push mode)/)[0]!

const indent = (block: string, width: number) =>
  block.split("\n").map((line) => line === "" ? line : " ".repeat(width) + line).join("\n")

it("the README's push-mode walkthrough shows the example's code as it is", () => {
  const excerpts = [...section.matchAll(/<!-- from (\S+) -->\s*(?:<!-- dprint-ignore -->\s*)?```ts\n([\s\S]*?)\n```/g)]
  assert.isAtLeast(excerpts.length, 5, "the walkthrough's code blocks")
  for (const [, file, block] of excerpts) {
    const source = Fs.readFileSync(Path.join(root, file!), "utf8")
    assert.isTrue(
      [0, 2, 4, 6, 8].some((width) => source.includes(indent(block!, width))),
      `this block of packages/pg-durable/README.md is not an excerpt of ${file}:\n${block}`
    )
  }
})

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false

it("as the README says, the graph's value is settle_claim's output (its JSON form)", () => {
  const typed: Equal<Graph.Value<typeof expenseClaim>, typeof Settlement.Encoded> = true
  assert.isTrue(typed)
})

it("the output the README shows is output of the example", () => {
  const shown = /<!-- output of packages\/examples\/src\/pushMode\.ts -->\s*```text\n([\s\S]*?)```/.exec(section)?.[1]
  assert.isDefined(shown)
  const page = expectedOutput("push-mode.md")
  let from = 0
  for (const line of shown!.split("\n").map((line) => line.trimEnd()).filter((line) => line !== "")) {
    const at = page.indexOf(line, from)
    assert.isAtLeast(at, 0, `the README's output line\n  ${line}\nis not on docs/examples/push-mode.md (in order)`)
    from = at + 1
  }
})
