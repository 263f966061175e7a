// The client's reads (docs/ARCHITECTURE.md, "Reads"), written once and run on every backend: `list`
// with every combination of workflow, version, status, time range and cursor; the dead letters;
// the counts; the archive in the queue's metrics; and the filters they refuse.
import { assert } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { type Pgflows, type PgflowsConfig, PgflowsError, Run, Step, Workflow } from "pgflows"
import { type Backend, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Num = Schema.Struct({ n: Schema.Number })

class Declined extends Schema.TaggedError<Declined>()("Declined", { n: Schema.Number }) {}

/** Completes with an even input, fails with `Declined` with an odd one. */
const decide = Step.make("decide", {
  input: Num,
  output: Num,
  error: Declined,
  run: (i) => i.n % 2 === 0 ? Effect.succeed(i) : Effect.fail(new Declined({ n: i.n }))
})

const readsA = (version: number) =>
  Workflow.make("reads_a", { version, input: Num, output: Num, error: Declined, run: decide })
const readsA1 = readsA(1)
const readsA2 = readsA(2)

/** Waits for a signal: suspended once it has run. */
const readsB = Workflow.make("reads_b", {
  input: Num,
  output: Num,
  run: (input) => Effect.as(Workflow.waitForSignal("go", Schema.Boolean), input)
})

interface Known {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: Run.Status
  readonly createdAt: number
  readonly completedAt: number | undefined
}

/** Newest first, as every list is ordered: by creation time, then id. */
const newestFirst = (a: { createdAt: number; id: string }, b: { createdAt: number; id: string }) =>
  b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

export const readsSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  /** A pause between writes, so that runs have distinct creation and failure times on every backend. */
  const tick = Effect.andThen(
    backend.advance("10 millis"),
    Effect.sleep("10 millis").pipe(Effect.when(Effect.succeed(backend.name === "postgres")))
  )

  /**
   * Runs of two workflows in every state: `reads_a` versions 1 and 2 completed, failed (one at a
   * time, so their failure times differ) and pending; `reads_b` suspended, cancelled and pending.
   */
  const history = Effect.gen(function*() {
    const client = yield* engine([readsA1, readsA2, readsB])
    const ids: Record<string, string> = {}
    const start = (name: string, workflow: Workflow.Any, n: number, options?: Pgflows.StartOptions) =>
      Effect.andThen(
        Effect.map(client.start(workflow, { n }, options), (id) => {
          ids[name] = id
        }),
        tick
      )
    yield* start("a1", readsA1, 0, { version: 1 })
    yield* start("a2", readsA1, 1, { version: 1 })
    yield* client.processOnce
    yield* tick
    yield* start("b1", readsB, 0)
    yield* client.processOnce
    yield* start("a3", readsA2, 2)
    yield* start("a4", readsA2, 3)
    yield* client.processOnce
    yield* tick
    yield* start("b2", readsB, 1)
    yield* client.cancel(ids.b2!)
    yield* tick
    yield* start("a5", readsA1, 5, { version: 1 })
    yield* client.processOnce
    yield* tick
    yield* start("b3", readsB, 2, { delay: "1 hour" })
    yield* start("a6", readsA2, 4, { delay: "1 hour" })
    const known = yield* Effect.forEach(
      Object.entries(ids),
      ([name, id]) =>
        Effect.map(client.status(id), (info) =>
          [
            name,
            {
              id,
              workflow: info.workflow,
              version: info.version,
              status: info.status,
              createdAt: info.createdAt.getTime(),
              completedAt: info.completedAt?.getTime()
            } satisfies Known
          ] as const)
    )
    return { client, runs: Object.fromEntries(known) as Record<string, Known> }
  })

  /** Every page of a list, `limit` at a time, checking the pages' sizes and cursors. */
  const pages = (client: Pgflows.Pgflows["Service"], options: Pgflows.ListOptions, limit: number) =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      let cursor: string | undefined = undefined
      for (let page = 0; page < 20; page++) {
        const result: Run.Page = yield* client.list({ ...options, limit, cursor })
        assert.isAtMost(result.runs.length, limit)
        seen.push(...result.runs.map((run) => run.id))
        cursor = result.nextCursor
        if (cursor === undefined) return seen
        assert.strictEqual(result.runs.length, limit, "a page with a next one is full")
      }
      return assert.fail("more than 20 pages")
    })

  it.effect("list answers every combination of workflow, version, status, time range and cursor", () =>
    within(Effect.gen(function*() {
      const { client, runs } = yield* history
      assert.deepStrictEqual(
        Object.fromEntries(Object.entries(runs).map(([name, run]) => [name, run.status])),
        {
          a1: "completed",
          a2: "failed",
          b1: "suspended",
          a3: "completed",
          a4: "failed",
          b2: "cancelled",
          a5: "failed",
          b3: "pending",
          a6: "pending"
        },
        "the history has runs in every state"
      )
      const all = Object.values(runs).sort(newestFirst)
      const times = all.map((run) => run.createdAt).sort((a, b) => a - b)
      const ranges = [undefined, { createdAfter: new Date(times[2]!), createdBefore: new Date(times[7]!) }]
      for (const workflow of [undefined, "reads_a", "reads_b", "reads_none"]) {
        for (const version of [undefined, 0, 1, 2]) {
          for (const status of [undefined, ...Run.statuses]) {
            for (const range of ranges) {
              const expected = all.filter((run) =>
                (workflow === undefined || run.workflow === workflow) &&
                (version === undefined || run.version === version) &&
                (status === undefined || run.status === status) &&
                (range === undefined ||
                  (run.createdAt >= range.createdAfter.getTime() && run.createdAt < range.createdBefore.getTime()))
              ).map((run) => run.id)
              const options = { workflow, version, status, ...range }
              assert.deepStrictEqual(yield* pages(client, options, 2), expected, JSON.stringify(options))
            }
          }
        }
      }
      const [newest] = (yield* client.list({ limit: 1 })).runs
      assert.deepStrictEqual(newest, {
        id: runs.a6!.id,
        workflow: "reads_a",
        version: 2,
        status: "pending",
        executions: 0,
        createdAt: new Date(runs.a6!.createdAt),
        updatedAt: newest!.updatedAt,
        completedAt: undefined
      })
    })))

  it.effect("a filter that cannot be read fails with InvalidFilter: a version, a date, a cursor", () =>
    within(Effect.gen(function*() {
      const client = yield* engine([readsB])
      const refused = [
        yield* Effect.flip(client.list({ cursor: "not-a-cursor" })),
        yield* Effect.flip(client.list({ createdAfter: new Date(Number.NaN) })),
        yield* Effect.flip(client.list({ version: -1 })),
        yield* Effect.flip(client.deadLetters({ version: 1.5 })),
        yield* Effect.flip(client.deadLetters({ failedBefore: new Date("never") })),
        yield* Effect.flip(client.deadLetters({ cursor: "%%%" }))
      ]
      for (const error of refused) assert.instanceOf(error, PgflowsError.InvalidFilter)
      assert.deepStrictEqual(
        refused.map((error) => (error as PgflowsError.InvalidFilter).reason),
        [
          "the cursor is not a nextCursor of this list",
          "createdAfter must be a valid date",
          "the version must be an integer from 0 to 2147483647",
          "the version must be an integer from 0 to 2147483647",
          "failedBefore must be a valid date",
          "the cursor is not a nextCursor of this list"
        ]
      )
    })))

  it.effect("dead letters: the failed runs with their errors, newest failure first; a retry takes a run out", () =>
    within(Effect.gen(function*() {
      const { client, runs } = yield* history
      const ids = (page: Run.DeadLetterPage) => page.deadLetters.map((letter) => letter.id)
      const all = yield* client.deadLetters()
      assert.deepStrictEqual(ids(all), [runs.a5!.id, runs.a4!.id, runs.a2!.id])
      const [latest] = all.deadLetters
      assert.instanceOf(latest!.error, Declined, "decoded with the workflow's error Schema")
      assert.deepStrictEqual(latest, {
        id: runs.a5!.id,
        workflow: "reads_a",
        version: 1,
        executions: 1,
        error: new Declined({ n: 5 }),
        createdAt: new Date(runs.a5!.createdAt),
        failedAt: new Date(runs.a5!.completedAt!)
      })
      assert.deepStrictEqual(ids(yield* client.deadLetters({ workflow: "reads_a", version: 2 })), [runs.a4!.id])
      assert.deepStrictEqual(ids(yield* client.deadLetters({ version: 1 })), [runs.a5!.id, runs.a2!.id])
      assert.deepStrictEqual(ids(yield* client.deadLetters({ workflow: "reads_b" })), [])
      assert.deepStrictEqual(
        ids(yield* client.deadLetters({ failedAfter: new Date(runs.a4!.completedAt!) })),
        [runs.a5!.id, runs.a4!.id]
      )
      assert.deepStrictEqual(
        ids(yield* client.deadLetters({ failedBefore: new Date(runs.a5!.completedAt!) })),
        [runs.a4!.id, runs.a2!.id]
      )
      const paged: Array<string> = []
      let cursor: string | undefined = undefined
      do {
        const page: Run.DeadLetterPage = yield* client.deadLetters({ limit: 1, cursor })
        paged.push(...ids(page))
        cursor = page.nextCursor
      } while (cursor !== undefined)
      assert.deepStrictEqual(paged, ids(all))

      // Retried, a run is no dead letter (nor failed) until it fails again, now the newest failure.
      yield* client.retry(runs.a2!.id)
      assert.deepStrictEqual(ids(yield* client.deadLetters()), [runs.a5!.id, runs.a4!.id])
      assert.deepStrictEqual(
        (yield* client.list({ status: "failed" })).runs.map((run) => run.id),
        [runs.a5!.id, runs.a4!.id]
      )
      yield* tick
      yield* client.processOnce
      assert.deepStrictEqual(ids(yield* client.deadLetters()), [runs.a2!.id, runs.a5!.id, runs.a4!.id])
      // Resumed, a cancelled run is no longer listed as cancelled.
      yield* client.resume(runs.b2!.id)
      assert.deepStrictEqual((yield* client.list({ status: "cancelled" })).runs, [])
      assert.include((yield* client.list({ status: "pending" })).runs.map((run) => run.id), runs.b2!.id)
    })))

  it.effect("counts: each workflow's runs in each state, counted exactly on a small history", () =>
    within(Effect.gen(function*() {
      const { client } = yield* history
      const exact = (count: number): Run.Count => ({ count, exact: true })
      const none = exact(0)
      const counts = yield* client.counts()
      assert.deepStrictEqual(counts, {
        workflows: [
          {
            workflow: "reads_a",
            pending: exact(1),
            running: none,
            suspended: none,
            completed: exact(2),
            failed: exact(3),
            cancelled: none
          },
          {
            workflow: "reads_b",
            pending: exact(1),
            running: none,
            suspended: exact(1),
            completed: none,
            failed: none,
            cancelled: exact(1)
          }
        ],
        total: {
          pending: exact(2),
          running: none,
          suspended: exact(1),
          completed: exact(2),
          failed: exact(3),
          cancelled: exact(1)
        }
      })
      assert.deepStrictEqual((yield* client.counts({ workflow: "reads_b" })).workflows, [counts.workflows[1]!])
      assert.deepStrictEqual((yield* client.counts({ workflow: "reads_none" })).workflows, [])
      const metrics = yield* client.queueMetrics()
      assert.strictEqual(metrics.archived, 3, "each failure archived its message")
      assert.isTrue(metrics.archivedExact)
    })))
}
