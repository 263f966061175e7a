// The expected output of a page of docs/examples/, checked against what the example really printed,
// so the pages cannot drift from the programs.
//
// A page's expected output is the first ```text block after its "## Expected output" heading. Each
// line of it must be a whole line of the real output (trailing spaces ignored), where `…` stands for
// any text. Lines must come in the page's order among the lines of the same source: a line starting
// with a name in brackets (`[sre]`, `[worker-A]`) belongs to that source, any other to the program
// itself; the order between sources is the operating system's business (two processes write to one
// terminal), so it is not checked.
import { assert } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

/** The lines of the expected output of `docs/examples/<page>`. */
export const expectedOutput = (page: string): ReadonlyArray<string> => {
  const text = Fs.readFileSync(Path.join(root, "docs/examples", page), "utf8")
  const start = text.indexOf("\n## Expected output\n")
  assert.isAtLeast(start, 0, `docs/examples/${page} has no "## Expected output" section`)
  const block = /```text\n([\s\S]*?)```/.exec(text.slice(start))?.[1]
  assert.isDefined(block, `docs/examples/${page}: no \`\`\`text block under "## Expected output"`)
  return block!.split("\n").map((line) => line.trimEnd()).filter((line) => line !== "")
}

const sourceOf = (line: string): string => /^\[[A-Za-z][\w-]*\]/.exec(line)?.[0] ?? ""

const pattern = (line: string): RegExp =>
  new RegExp(`^${line.split("…").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*?")}$`)

/** Asserts that every expected line of `docs/examples/<page>` is in `output`, in order per source. */
export const assertTranscript = (page: string, output: string): void => {
  const actual = output.split("\n").map((line) => line.trimEnd())
  const next = new Map<string, number>()
  for (const expected of expectedOutput(page)) {
    const source = sourceOf(expected)
    const regex = pattern(expected)
    let index = next.get(source) ?? 0
    while (index < actual.length && !(sourceOf(actual[index]!) === source && regex.test(actual[index]!))) index++
    assert.isBelow(
      index,
      actual.length,
      `docs/examples/${page}: the expected line\n  ${expected}\nis not in the output (after the lines matched before it):\n${output}`
    )
    next.set(source, index + 1)
  }
}
