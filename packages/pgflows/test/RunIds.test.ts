// The ids start gives runs (src/internal/runIds.ts): version 7 UUIDs carrying their creation time,
// unique, sorting by time.
import { assert, describe, it } from "@effect/vitest"
import * as RunIds from "../src/internal/runIds.ts"

const shape = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe("run ids", () => {
  it("are version 7 UUIDs whose first 48 bits are the creation time", () => {
    for (const millis of [0, 1, Date.now(), 2 ** 48 - 1]) {
      const id = RunIds.make(millis)
      assert.match(id, shape, id)
      assert.strictEqual(Number.parseInt(id.replace("-", "").slice(0, 12), 16), millis, id)
    }
  })

  it("are unique, and sort by their time", () => {
    const now = Date.now()
    const ids = Array.from({ length: 20_000 }, (_, i) => RunIds.make(now + Math.floor(i / 100)))
    assert.strictEqual(new Set(ids).size, ids.length)
    const times = [...ids].sort().map((id) => Number.parseInt(id.replace("-", "").slice(0, 12), 16))
    assert.deepStrictEqual(times, [...times].sort((a, b) => a - b))
  })
})
