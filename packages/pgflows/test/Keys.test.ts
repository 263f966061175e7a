// The order of journal keys (src/internal/keys.ts), which patches, forks and the replay checker read
// journals with: positions before, after, the same, or concurrent.
import { assert, describe, it } from "@effect/vitest"
import * as Keys from "../src/internal/keys.ts"

describe("journal key order", () => {
  it("orders positions of one level, of branches, of race winners and of compensations", () => {
    const cases: ReadonlyArray<readonly [string, string, Keys.Order]> = [
      ["1", "2", "before"],
      ["3", "2", "after"],
      ["2", "2", "same"],
      ["3.0/1", "3.1/1", "concurrent"],
      ["3.0/1", "3.0/2", "before"],
      ["3.0/2.1/1", "3.0/3", "before"],
      ["3", "3.0/1", "before"], // the point just before a combinator, and a branch inside it
      ["3.w", "3.1/4", "after"], // a race's winner is recorded after its branches
      ["4", "3.0/9", "after"],
      ["3.0/2", "4", "before"],
      ["c0/1", "9", "after"], // compensations run after the body
      ["c1/1", "c0/5", "after"],
      ["c0/2", "c0/3", "before"],
      ["3~fix", "3", "same"], // a patch marker is decided at the position of the operation after it
      ["2~fix", "3", "before"]
    ]
    for (const [a, b, order] of cases) assert.strictEqual(Keys.compareKeys(a, b), order, `${a} vs ${b}`)
  })

  it("keys that are not positions are left out, and sort last", () => {
    assert.strictEqual(Keys.parse("trace"), undefined)
    assert.strictEqual(Keys.parse("1.x/2"), undefined)
    assert.strictEqual(Keys.compareKeys("trace", "1"), undefined)
    assert.isTrue(Keys.isPatchMarker("3.0/2~a~b"))
    assert.isFalse(Keys.isPatchMarker("3.0/2"))
    const keys = ["trace", "10", "2", "1.1/1", "c0/1", "3~p", "1.0/2", "3", "1.0/1", "1.w"]
    assert.deepStrictEqual([...keys].sort(Keys.byExecution), [
      "1.0/1",
      "1.0/2",
      "1.1/1",
      "1.w",
      "2",
      "3~p",
      "3",
      "10",
      "c0/1",
      "trace"
    ])
  })
})
