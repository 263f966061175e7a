// The scheduler in memory, with time controlled by TestClock: expressions and their errors, ticks
// across daylight-saving changes, catch-up, and three schedulers firing one run per tick.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Layer, Result } from "effect"
import { TestClock } from "effect/testing"
import { BuiltinScheduler, Scheduler, Store } from "pgflows"
import { engine } from "./conformance/backend.ts"
import { memoryBackend, report, schedulerSuite } from "./fixtures/scheduleSuite.ts"

const iso = (dates: ReadonlyArray<Date>) => dates.map((date) => date.toISOString())

const upcoming = (expression: string, after: string, count: number, timezone?: string) =>
  iso(Result.getOrThrow(Scheduler.upcoming(expression, { after: new Date(after), count, timezone })))

/** Lets the forked scheduler loops take their turn after the clock moved. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

describe("Scheduler: expressions", () => {
  it("names: letters, digits, '_', '-' and '.', starting with a letter or digit", () => {
    assert.isTrue(Result.isSuccess(Scheduler.checkName("nightly-report_v2.1")))
    for (const name of ["", "-x", "a b", "a:b", "naïve", "x".repeat(101)]) {
      const checked = Scheduler.checkName(name)
      assert.isTrue(Result.isFailure(checked), name)
    }
  })

  it("a bad field is named, with its position and what it accepts", () => {
    const cases: ReadonlyArray<readonly [string, string | undefined, number | undefined, RegExp]> = [
      ["61 * * * *", "minute", 1, /"61" is not a valid minute: Expected a value between 0 and 59/],
      ["0 2 32 * *", "day of month", 3, /"32" is not a valid day of month/],
      ["0 2 * FOO *", "month", 4, /"FOO" is not a valid month/],
      ["0 2 * * 8", "day of week", 5, /"8" is not a valid day of week: Expected a value between 0 and 7/],
      ["70 0 2 * * *", "second", 1, /"70" is not a valid second/],
      ["0 2 * * */0", "day of week", 5, /greater than 0/],
      ["* * *", undefined, undefined, /has 3 fields; write five fields \(minute hour/],
      ["", undefined, undefined, /is empty/],
      ["90 seconds", undefined, undefined, /1 to 59 seconds/]
    ]
    for (const [expression, field, position, reason] of cases) {
      const parsed = Scheduler.parseExpression(expression)
      assert.isTrue(Result.isFailure(parsed), expression)
      if (Result.isFailure(parsed)) {
        assert.strictEqual(parsed.failure.field, field, expression)
        assert.strictEqual(parsed.failure.position, position, expression)
        assert.match(parsed.failure.message, reason)
        assert.include(parsed.failure.message, JSON.stringify(expression))
      }
    }
  })

  it("macros, names, seconds and intervals", () => {
    assert.deepStrictEqual(Result.getOrThrow(Scheduler.parseExpression(" @Hourly ")), {
      _tag: "Cron",
      text: "0 * * * *",
      fields: 5
    })
    assert.deepStrictEqual(Result.getOrThrow(Scheduler.parseExpression("5 seconds")), {
      _tag: "Interval",
      text: "5 seconds",
      seconds: 5
    })
    assert.deepStrictEqual(upcoming("0 9 * * MON-FRI", "2026-01-02T10:00:00Z", 2), [
      "2026-01-05T09:00:00.000Z",
      "2026-01-06T09:00:00.000Z"
    ])
    assert.deepStrictEqual(upcoming("15 seconds", "2026-01-02T10:00:05Z", 3), [
      "2026-01-02T10:00:15.000Z",
      "2026-01-02T10:00:30.000Z",
      "2026-01-02T10:00:45.000Z"
    ])
    assert.deepStrictEqual(upcoming("0 0 1 * 0", "2026-01-01T00:00:00Z", 3), [
      "2026-01-04T00:00:00.000Z",
      "2026-01-11T00:00:00.000Z",
      "2026-01-18T00:00:00.000Z"
    ], "day of month and day of week both restricted: either matches, as in Unix cron")
    assert.strictEqual(
      Scheduler.runId("nightly", new Date("2026-03-29T01:30:00.000Z")),
      "schedule:nightly:2026-03-29T01:30:00Z"
    )
  })

  it("time zones: IANA names, UTC and offsets; others are refused with what to write", () => {
    assert.strictEqual(Result.getOrThrow(Scheduler.checkTimeZone(undefined)), "UTC")
    assert.strictEqual(Result.getOrThrow(Scheduler.checkTimeZone("Europe/Berlin")), "Europe/Berlin")
    assert.strictEqual(Result.getOrThrow(Scheduler.checkTimeZone("+02:00")), "+02:00")
    const bad = Scheduler.checkTimeZone("Europe/Atlantis")
    assert.isTrue(Result.isFailure(bad))
    if (Result.isFailure(bad)) assert.match(bad.failure.message, /"Europe\/Atlantis" is not a time zone; use an IANA/)
  })

  it("02:30 in Berlin: the day it does not exist runs at 03:30, the day it repeats runs once", () => {
    // Spring forward on 29 March 2026 (02:00 -> 03:00), fall back on 25 October (03:00 -> 02:00).
    assert.deepStrictEqual(upcoming("30 2 * * *", "2026-03-27T12:00:00Z", 4, "Europe/Berlin"), [
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-29T01:30:00.000Z", // 03:30 CEST: 02:30 does not exist that day
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
      "2026-03-31T00:30:00.000Z"
    ])
    assert.deepStrictEqual(upcoming("30 2 * * *", "2026-10-23T12:00:00Z", 4, "Europe/Berlin"), [
      "2026-10-24T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T00:30:00.000Z", // the first 02:30 (CEST); the second (CET, 01:30Z) does not run
      "2026-10-26T01:30:00.000Z", // 02:30 CET
      "2026-10-27T01:30:00.000Z"
    ])
    assert.deepStrictEqual(upcoming("30 2 * * *", "2026-03-07T12:00:00Z", 2, "America/New_York"), [
      "2026-03-08T07:30:00.000Z", // 03:30 EDT: 02:30 does not exist that day
      "2026-03-09T06:30:00.000Z"
    ])
  })
})

describe("Scheduler: built-in, in memory", () => {
  schedulerSuite(memoryBackend, it)

  it.effect("a run loop fires 02:30 Berlin once a day across both daylight-saving changes", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.parse("2026-03-27T12:00:00Z"))
      const scheduler = yield* Scheduler.Scheduler
      yield* scheduler.schedule("berlin", "30 2 * * *", report, { team: "dst" }, { timezone: "Europe/Berlin" })
      const fired: Array<string> = []
      const start = Effect.forkChild(BuiltinScheduler.run({
        pollInterval: "1 day",
        onFired: (runs) => Effect.sync(() => fired.push(...runs.map((run) => run.tick.toISOString())))
      }))
      let loop = yield* start
      const walk = (until: string) =>
        Effect.gen(function*() {
          while ((yield* Clock.currentTimeMillis) < Date.parse(until)) {
            yield* TestClock.adjust("1 hour")
            yield* settle
          }
        })
      yield* walk("2026-03-31T12:00:00Z")
      // No scheduler runs from March to October.
      yield* Fiber.interrupt(loop)
      yield* TestClock.setTime(Date.parse("2026-10-23T12:00:00Z"))
      loop = yield* start
      yield* settle
      yield* walk("2026-10-27T12:00:00Z")
      yield* Fiber.interrupt(loop)
      assert.deepStrictEqual(fired, [
        "2026-03-28T01:30:00.000Z",
        "2026-03-29T01:30:00.000Z",
        "2026-03-30T00:30:00.000Z",
        "2026-03-31T00:30:00.000Z",
        // After the outage, "latest" runs the most recent tick missed.
        "2026-10-23T00:30:00.000Z",
        "2026-10-24T00:30:00.000Z",
        "2026-10-25T00:30:00.000Z",
        "2026-10-26T01:30:00.000Z",
        "2026-10-27T01:30:00.000Z"
      ])
      const store = yield* Store.Store
      const run = yield* store.getRun("schedule:berlin:2026-10-25T00:30:00Z")
      const input = yield* store.getInput("schedule:berlin:2026-10-25T00:30:00Z")
      assert.deepStrictEqual([run?.workflow, input], ["schedule_report", { _tag: "Value", value: { team: "dst" } }])
    }).pipe(Effect.provide(memoryBackend.layer())))

  it.effect("three schedulers, a tick every second: each tick starts exactly one run", () =>
    Effect.gen(function*() {
      yield* memoryBackend.begin
      const scheduler = yield* Scheduler.Scheduler
      yield* scheduler.schedule("every-second", "* * * * * *", report, { team: "fast" })
      const firedBy: Array<Array<string>> = [[], [], []]
      const loops = yield* Effect.forEach(firedBy, (mine) =>
        Effect.forkChild(BuiltinScheduler.run({
          onFired: (runs) => Effect.sync(() => mine.push(...runs.map((run) => run.runId)))
        })))
      for (let i = 0; i < 12; i++) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }
      yield* Effect.forEach(loops, Fiber.interrupt)
      const all = firedBy.flat()
      assert.strictEqual(all.length, 12, "twelve ticks")
      assert.strictEqual(new Set(all).size, all.length, "no tick was fired twice")
      const seconds = all.map((id) => Date.parse(id.slice("schedule:every-second:".length))).sort((a, b) => a - b)
      for (let i = 1; i < seconds.length; i++) assert.strictEqual(seconds[i]! - seconds[i - 1]!, 1000, "no gap")
      const client = yield* engine([report])
      let done = 0
      while ((yield* client.processOnce) > 0) done++
      assert.isAbove(done, 0)
      const page = yield* client.list({ workflow: "schedule_report", limit: 100 })
      assert.strictEqual(page.runs.length, 12)
      assert.isTrue(page.runs.every((run) => run.status === "completed"))
    }).pipe(Effect.provide(memoryBackend.layer())))

  it.effect("a schedule made in the process wakes its run loop at once", () =>
    Effect.gen(function*() {
      yield* memoryBackend.begin
      const fired: Array<string> = []
      const loop = yield* Effect.forkChild(BuiltinScheduler.run({
        pollInterval: "1 hour",
        onFired: (runs) => Effect.sync(() => fired.push(...runs.map((run) => run.schedule)))
      }))
      yield* settle
      const scheduler = yield* Scheduler.Scheduler
      yield* scheduler.schedule("soon", "*/10 * * * * *", report, { team: "x" })
      yield* settle
      yield* TestClock.adjust("10 seconds")
      yield* settle
      yield* Fiber.interrupt(loop)
      assert.deepStrictEqual(fired, ["soon"])
    }).pipe(Effect.provide(Layer.fresh(memoryBackend.layer()))))
})
