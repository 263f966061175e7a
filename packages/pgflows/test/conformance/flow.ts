// Named queues and flow control (docs/ARCHITECTURE.md, "Queues and flow control"), written once and
// run on every backend: limits held across engines (workers) on one store, priorities, parking that
// gives a slot back, children in their own queue, and key functions that fail only their start.
import { assert } from "@effect/vitest"
import { Deferred, Effect, Fiber, Metric, Ref, Schema } from "effect"
import { FlowQueue, Metrics, type PgflowsConfig, PgflowsError, Step, Workflow } from "pgflows"
import { type Backend, engine } from "./backend.ts"
import type { Tester } from "./engine.ts"

const Job = Schema.Struct({ tenant: Schema.String, n: Schema.Number })

/** A gate the test opens, and a log of the jobs that started behind it. */
const gated = Effect.gen(function*() {
  const gate = yield* Deferred.make<void>()
  const started = yield* Ref.make<ReadonlyArray<string>>([])
  const step = (name: string) =>
    Step.make(name, {
      input: Job,
      output: Job,
      run: (job) =>
        Ref.update(started, (all) => [...all, `${job.tenant}${job.n}`]).pipe(
          Effect.andThen(Deferred.await(gate)),
          Effect.as(job)
        )
    })
  return { gate, started, step }
})

/** Waits (driving the backend) until `count` jobs started. */
const startedAtLeast = <R>(backend: Backend<R>, started: Ref.Ref<ReadonlyArray<string>>, count: number) =>
  Effect.gen(function*() {
    const waiting = yield* Effect.forkChild(Effect.gen(function*() {
      while ((yield* Ref.get(started)).length < count) yield* Effect.sleep("10 millis")
      return yield* Ref.get(started)
    }))
    return yield* backend.settle(waiting)
  })

export const flowSuite = <R>(backend: Backend<R>, it: Tester<R>) => {
  const within = <A, E, Rx>(body: Effect.Effect<A, E, Rx>, config: PgflowsConfig.Options = {}) =>
    body.pipe(Effect.provide(backend.layer(config)))

  /** Lets executions that are not blocked make progress (memory: TestClock; PostgreSQL: real time). */
  const pause = backend.name === "memory" ? Effect.yieldNow : Effect.sleep("50 millis")
  const drive = <A, E>(fiber: Fiber.Fiber<A, E>) => backend.settle(fiber)

  it.effect("a queue's global limit holds across workers: the second worker claims nothing while it is full", () =>
    within(Effect.gen(function*() {
      const { gate, started, step } = yield* gated
      const queue = FlowQueue.make("limited_global", { concurrency: 2 })
      const job = Workflow.make("global_job", { input: Job, output: Job, queue, run: step("work") })
      const first = yield* engine([job])
      const second = yield* engine([job])
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5], (n) => first.start(job, { tenant: "t", n }))
      const processing = yield* Effect.forkChild(first.processOnce)
      assert.deepStrictEqual(yield* startedAtLeast(backend, started, 2), ["t1", "t2"])
      assert.strictEqual(yield* second.processOnce, 0, "the queue is full: no other worker may claim")
      const state = yield* first.queueMetrics()
      assert.deepStrictEqual(state.queues, [{
        queue: "limited_global",
        due: 3,
        running: 2,
        runningByKey: [],
        throttled: 3
      }])
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* drive(processing), 2)
      // Slots given back by the ends: the next claims take the rest, two at a time.
      assert.strictEqual(yield* second.processOnce, 2)
      assert.strictEqual(yield* second.processOnce, 1)
      for (const id of ids) assert.strictEqual((yield* first.status(id)).status, "completed")
    })))

  it.effect("a per-key limit holds for each key, computed from the typed input; other keys go ahead", () =>
    within(Effect.gen(function*() {
      const { gate, started, step } = yield* gated
      const queue = FlowQueue.make("limited_key", { keyConcurrency: 1 })
      const job = Workflow.make("keyed_job", {
        input: Job,
        output: Job,
        queue,
        concurrencyKey: (input) => input.tenant,
        run: step("work")
      })
      const worker = yield* engine([job])
      const other = yield* engine([job])
      for (const [tenant, n] of [["a", 1], ["a", 2], ["b", 1], ["a", 3], ["b", 2], ["c", 1]] as const) {
        yield* worker.start(job, { tenant, n })
      }
      const processing = yield* Effect.forkChild(worker.processOnce)
      assert.deepStrictEqual([...(yield* startedAtLeast(backend, started, 3))].sort(), ["a1", "b1", "c1"])
      assert.strictEqual(yield* other.processOnce, 0, "every key is at its limit")
      const [state] = (yield* worker.queueMetrics()).queues
      assert.deepStrictEqual(state?.runningByKey, [
        { key: "a", running: 1 },
        { key: "b", running: 1 },
        { key: "c", running: 1 }
      ])
      assert.strictEqual(state?.due, 3)
      assert.strictEqual(state?.throttled, 3, "a2, a3 and b2 wait for their key")
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* drive(processing), 3)
      assert.strictEqual(yield* other.processOnce, 2, "a2 and b2, one per key")
      assert.strictEqual(yield* other.processOnce, 1, "a3")
      const all = yield* Ref.get(started)
      assert.deepStrictEqual([...all.slice(3, 5)].sort(), ["a2", "b2"])
      assert.deepStrictEqual(all.slice(5), ["a3"])
    })))

  it.effect("priorities order a queue's backlog: higher first, in start order within a priority", () =>
    within(
      Effect.gen(function*() {
        const order = yield* Ref.make<ReadonlyArray<string>>([])
        const record = Step.make("record", {
          input: Job,
          output: Job,
          run: (job) => Effect.as(Ref.update(order, (all) => [...all, `${job.tenant}${job.n}`]), job)
        })
        const queue = FlowQueue.make("prioritized")
        const job = Workflow.make("prioritized_job", { input: Job, output: Job, queue, run: record })
        const client = yield* engine([job])
        const backlog: ReadonlyArray<readonly [string, number, number]> = [
          ["low", 1, 0],
          ["high", 1, 10],
          ["mid", 1, 5],
          ["low", 2, 0],
          ["high", 2, 10],
          ["neg", 1, -3],
          ["mid", 2, 5]
        ]
        for (const [tenant, n, priority] of backlog) {
          yield* client.start(job, { tenant, n }, { priority })
          yield* pause
        }
        while ((yield* client.processOnce) > 0) {
          // One at a time (workerConcurrency 1), so the order of claims is the order of execution.
        }
        assert.deepStrictEqual(yield* Ref.get(order), ["high1", "high2", "mid1", "mid2", "low1", "low2", "neg1"])
        const batch = yield* client.startBatch(job, [{ tenant: "batch", n: 1 }], { priority: 7 })
        assert.strictEqual(batch.length, 1)
        const invalid = yield* Effect.flip(client.start(job, { tenant: "x", n: 1 }, { priority: 1.5 }))
        assert.instanceOf(invalid, PgflowsError.InvalidInput)
        assert.match(invalid.message, /priority 1\.5 must be an integer/)
      }),
      { workerConcurrency: 1 }
    ))

  it.effect("a parked run gives its slot back, and takes one again when it resumes", () =>
    within(
      Effect.gen(function*() {
        const { gate, started, step } = yield* gated
        const queue = FlowQueue.make("parking", { concurrency: 1 })
        const sleeper = Workflow.make("parking_sleeper", {
          input: Job,
          output: Job,
          queue,
          run: (job) => Effect.andThen(Workflow.sleep("1 hour"), step("after_sleep")(job))
        })
        const blocker = Workflow.make("parking_blocker", { input: Job, output: Job, queue, run: step("block") })
        const worker = yield* engine([sleeper, blocker])
        const other = yield* engine([sleeper, blocker])
        const sleeping = yield* worker.start(sleeper, { tenant: "s", n: 1 })
        yield* pause
        const blocking = yield* worker.start(blocker, { tenant: "b", n: 1 })
        assert.strictEqual(yield* worker.processOnce, 1, "the sleeper alone (limit 1), which parks")
        assert.strictEqual((yield* worker.status(sleeping)).status, "suspended")
        const holding = yield* Effect.forkChild(worker.processOnce)
        assert.deepStrictEqual(yield* startedAtLeast(backend, started, 1), ["b1"], "the parked run's slot was free")
        yield* backend.advance("2 hours")
        assert.strictEqual(yield* other.processOnce, 0, "the woken sleeper waits for the slot the blocker holds")
        const [parked] = (yield* worker.queueMetrics()).queues
        assert.deepStrictEqual([parked?.due, parked?.running, parked?.throttled], [1, 1, 1])
        assert.strictEqual((yield* worker.status(sleeping)).status, "suspended")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* drive(holding), 1)
        assert.strictEqual(yield* other.processOnce, 1, "the sleeper resumes in the freed slot")
        assert.strictEqual((yield* worker.status(sleeping)).status, "completed")
        assert.strictEqual((yield* worker.status(blocking)).status, "completed")
      }),
      { lease: "3 hours" }
    )) // the blocker's lease outlives the two hours that pass

  it.effect("a child workflow goes to its own queue, under that queue's limits", () =>
    within(Effect.gen(function*() {
      const { gate, started, step } = yield* gated
      const children = FlowQueue.make("children", { concurrency: 1 })
      const parents = FlowQueue.make("parents", { concurrency: 5 })
      const child = Workflow.make("queued_child", { input: Job, output: Job, queue: children, run: step("child") })
      const parent = Workflow.make("queued_parent", {
        input: Job,
        output: Job,
        queue: parents,
        run: (job) => Effect.flatMap(Workflow.startChild(child, job), (handle) => handle.result)
      })
      const worker = yield* engine([parent, child])
      const ids = yield* Effect.forEach([1, 2], (n) => worker.start(parent, { tenant: "p", n }))
      const processing = yield* Effect.forkChild(
        Effect.forever(Effect.andThen(worker.processOnce, pause)).pipe(Effect.interruptible)
      )
      assert.strictEqual((yield* startedAtLeast(backend, started, 1)).length, 1)
      // Until both children exist (the second parent may still be starting its own).
      const settled = yield* Effect.forkChild(Effect.gen(function*() {
        while (true) {
          const metrics = yield* worker.queueMetrics()
          if (metrics.queues.find((state) => state.queue === "children")?.due === 1) return metrics
          yield* Effect.sleep("10 millis")
        }
      }))
      const metrics = yield* drive(settled)
      const byName = new Map(metrics.queues.map((state) => [state.queue, state]))
      assert.strictEqual(byName.get("children")?.running, 1, "one child at a time")
      assert.strictEqual(byName.get("children")?.due, 1, "the other child waits for the slot")
      assert.strictEqual(byName.get("parents")?.running, 0, "the parents wait parked, holding no slot")
      assert.strictEqual((yield* Ref.get(started)).length, 1, "the second child has not started")
      yield* Deferred.succeed(gate, undefined)
      for (const id of ids) {
        const waiting = yield* Effect.forkChild(worker.result(id, { timeout: "30 seconds" }))
        assert.deepStrictEqual(yield* drive(waiting), { tenant: "p", n: Number(id === ids[0] ? 1 : 2) })
      }
      yield* Fiber.interrupt(processing)
    })))

  it.effect("a running worker sets the queue gauges: due, running, running per key, throttled", () =>
    within(
      Effect.gen(function*() {
        const { gate, started, step } = yield* gated
        const queue = FlowQueue.make("gauged", { concurrency: 1 })
        const job = Workflow.make("gauged_job", {
          input: Job,
          output: Job,
          queue,
          concurrencyKey: (input) => input.tenant,
          run: step("work")
        })
        const client = yield* engine([job])
        for (const tenant of ["a", "a", "b"]) {
          yield* client.start(job, { tenant, n: 1 })
          yield* pause
        }
        const worker = yield* Effect.forkChild(client.runWorker())
        assert.deepStrictEqual(yield* startedAtLeast(backend, started, 1), ["a1"])
        for (let i = 0; i < 3; i++) {
          yield* backend.advance("1 second")
          yield* backend.settle(yield* Effect.forkChild(Effect.sleep("500 millis")))
        }
        const gauge = (metric: Metric.Gauge<number>, attributes: Record<string, string>) =>
          Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => state.value)
        assert.strictEqual(yield* gauge(Metrics.queueDue, { queue: "gauged" }), 2)
        assert.strictEqual(yield* gauge(Metrics.queueRunning, { queue: "gauged" }), 1)
        assert.strictEqual(yield* gauge(Metrics.queueThrottled, { queue: "gauged" }), 2)
        assert.strictEqual(yield* gauge(Metrics.queueRunningByKey, { queue: "gauged", key: "a" }), 1)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.interrupt(worker)
      }),
      { pollInterval: "100 millis", lease: "1 hour" }
    ))

  it.effect("a key function that throws or returns a non-string fails only that start, writing nothing", () =>
    within(Effect.gen(function*() {
      const queue = FlowQueue.make("bad_keys", { keyConcurrency: 1 })
      const job = Workflow.make("bad_key_job", {
        input: Job,
        output: Job,
        queue,
        concurrencyKey: (input) => {
          if (input.tenant === "boom") throw new Error("no tenant")
          return (input.tenant === "number" ? input.n : input.tenant) as string
        },
        run: Effect.succeed
      })
      const client = yield* engine([job])
      const thrown = yield* Effect.flip(client.start(job, { tenant: "boom", n: 1 }, { id: "bad-1" }))
      assert.instanceOf(thrown, PgflowsError.InvalidConcurrencyKey)
      assert.match(thrown.message, /concurrencyKey function threw: no tenant/)
      const wrong = yield* Effect.flip(client.start(job, { tenant: "number", n: 7 }, { id: "bad-2" }))
      assert.instanceOf(wrong, PgflowsError.InvalidConcurrencyKey)
      assert.match(wrong.message, /returned number, not a string/)
      const long = yield* Effect.flip(client.start(job, { tenant: "x".repeat(1001), n: 1 }, { id: "bad-3" }))
      assert.instanceOf(long, PgflowsError.InvalidConcurrencyKey)
      assert.match(long.message, /1001 characters long/)
      for (const id of ["bad-1", "bad-2", "bad-3"]) {
        assert.instanceOf(yield* Effect.flip(client.status(id)), PgflowsError.RunNotFound)
      }
      const good = yield* client.start(job, { tenant: "fine", n: 2 })
      assert.strictEqual(yield* client.processOnce, 1)
      assert.deepStrictEqual(yield* client.result(good), { tenant: "fine", n: 2 })
    })))

  it.effect("a rate limit holds: at most N starts per period, for the queue or per key", () =>
    within(Effect.gen(function*() {
      const queue = FlowQueue.make("rated", { rateLimit: { limit: 2, period: "1 minute" } })
      const perKey = FlowQueue.make("rated_per_key", { rateLimit: { limit: 2, period: "1 minute", perKey: true } })
      const job = Workflow.make("rated_job", { input: Job, output: Job, queue, run: Effect.succeed })
      const keyed = Workflow.make("rated_keyed_job", {
        input: Job,
        output: Job,
        queue: perKey,
        concurrencyKey: (input) => input.tenant,
        run: Effect.succeed
      })
      const client = yield* engine([job])
      const other = yield* engine([job])
      for (const n of [1, 2, 3, 4, 5]) yield* client.start(job, { tenant: "t", n })
      assert.strictEqual(yield* client.processOnce, 2)
      assert.strictEqual(yield* other.processOnce, 0, "two starts this minute, on any worker")
      const [state] = (yield* client.queueMetrics()).queues
      assert.deepStrictEqual([state?.due, state?.throttled], [3, 3])
      yield* backend.advance("30 seconds")
      assert.strictEqual(yield* other.processOnce, 0, "still within the minute")
      yield* backend.advance("31 seconds")
      assert.strictEqual(yield* other.processOnce, 2)
      assert.strictEqual(yield* client.processOnce, 0)
      yield* backend.advance("61 seconds")
      assert.strictEqual(yield* client.processOnce, 1)

      const keyedClient = yield* engine([keyed])
      for (const [tenant, n] of [["a", 1], ["a", 2], ["a", 3], ["b", 1], ["b", 2], ["b", 3]] as const) {
        yield* keyedClient.start(keyed, { tenant, n })
      }
      assert.strictEqual(yield* keyedClient.processOnce, 4, "two per key")
      assert.strictEqual(yield* keyedClient.processOnce, 0)
      yield* backend.advance("61 seconds")
      assert.strictEqual(yield* keyedClient.processOnce, 2, "a3 and b3")
    })))

  it.effect("deduplication: while the keyed run is pending a start returns it; once it runs, a new run starts", () =>
    within(Effect.gen(function*() {
      const job = Workflow.make("dedup_job", { input: Job, output: Job, run: Effect.succeed })
      const client = yield* engine([job])
      const dedup = { deduplication: { key: "nightly" } }
      const first = yield* client.start(job, { tenant: "t", n: 1 }, dedup)
      // Concurrent starts with the key: the database serializes them, none creates a second run.
      const again = yield* Effect.all(
        Array.from({ length: 8 }, (_, n) => client.start(job, { tenant: "t", n: n + 2 }, dedup)),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(new Set(again), new Set([first]))
      const other = yield* client.start(job, { tenant: "t", n: 9 }, { deduplication: { key: "weekly" } })
      assert.notStrictEqual(other, first)
      assert.strictEqual((yield* client.list({ workflow: "dedup_job" })).runs.length, 2)
      assert.strictEqual(yield* client.processOnce, 2)
      assert.deepStrictEqual(yield* client.result(first), { tenant: "t", n: 1 }, "the first input, kept")
      const next = yield* client.start(job, { tenant: "t", n: 10 }, dedup)
      assert.notStrictEqual(next, first, "the keyed run ended: a new one starts")
      assert.strictEqual(yield* client.start(job, { tenant: "t", n: 11 }, dedup), next)
      const invalid = yield* Effect.flip(
        client.start(job, { tenant: "t", n: 1 }, { deduplication: { key: "a\u0000" } })
      )
      assert.instanceOf(invalid, PgflowsError.InvalidInput)
    })))

  it.effect("deduplication while running, by choice: a running keyed run is returned only with whileRunning", () =>
    within(Effect.gen(function*() {
      const { gate, started, step } = yield* gated
      const job = Workflow.make("dedup_running", { input: Job, output: Job, run: step("work") })
      const client = yield* engine([job])
      const running = yield* client.start(job, { tenant: "r", n: 1 }, { deduplication: { key: "k" } })
      const processing = yield* Effect.forkChild(client.processOnce)
      assert.deepStrictEqual(yield* startedAtLeast(backend, started, 1), ["r1"])
      const same = yield* client.start(job, { tenant: "r", n: 2 }, {
        deduplication: { key: "k", whileRunning: true }
      })
      assert.strictEqual(same, running)
      const fresh = yield* client.start(job, { tenant: "r", n: 3 }, { deduplication: { key: "k" } })
      assert.notStrictEqual(fresh, running, "pending only: the running run does not count")
      assert.strictEqual(yield* client.start(job, { tenant: "r", n: 4 }, { deduplication: { key: "k" } }), fresh)
      yield* Deferred.succeed(gate, undefined)
      yield* drive(processing)
    })))

  it.effect("debounce: the latest input wins, the start waits for a quiet period, no longer than the maximum", () =>
    within(Effect.gen(function*() {
      const job = Workflow.make("debounced", { input: Job, output: Job, run: Effect.succeed })
      const client = yield* engine([job])
      const debounce = { debounce: { key: "search", period: "10 seconds", maxDelay: "25 seconds" } } as const
      const id = yield* client.start(job, { tenant: "d", n: 1 }, debounce)
      assert.strictEqual(yield* client.processOnce, 0, "quiet for 10 seconds first")
      yield* backend.advance("5 seconds")
      assert.strictEqual(yield* client.start(job, { tenant: "d", n: 2 }, debounce), id)
      yield* backend.advance("7 seconds")
      assert.strictEqual(yield* client.processOnce, 0, "7 seconds since the last start")
      assert.strictEqual(yield* client.start(job, { tenant: "d", n: 3 }, debounce), id)
      yield* backend.advance("8 seconds")
      assert.strictEqual(yield* client.start(job, { tenant: "d", n: 4 }, debounce), id)
      yield* backend.advance("4 seconds")
      assert.strictEqual(yield* client.processOnce, 0, "24 seconds after the first start")
      yield* backend.advance("2 seconds")
      assert.strictEqual(yield* client.processOnce, 1, "the maximum delay, 25 seconds, has passed")
      assert.deepStrictEqual(yield* client.result(id), { tenant: "d", n: 4 }, "the latest input")
      const next = yield* client.start(job, { tenant: "d", n: 5 }, debounce)
      assert.notStrictEqual(next, id, "the debounced run executed: the key starts a new one")
      const both = yield* Effect.flip(
        client.start(job, { tenant: "d", n: 6 }, { ...debounce, deduplication: { key: "search" } })
      )
      assert.instanceOf(both, PgflowsError.InvalidInput)
    })))

  it.effect("the default queue is unchanged: no limits, and a key needs a named queue", () =>
    Effect.sync(() => {
      assert.throws(
        () =>
          Workflow.make("keyed_default", {
            input: Job,
            output: Job,
            concurrencyKey: (input) => input.tenant,
            run: Effect.succeed
          }),
        /a key needs a named queue/
      )
      assert.throws(() => FlowQueue.make("default"), /default queue's name/)
      assert.throws(() => FlowQueue.make("q", { concurrency: 0 }), /integer from 1/)
      const plain = Workflow.make("plain", { input: Job, output: Job, run: Effect.succeed })
      assert.strictEqual(plain.queue, FlowQueue.defaultQueue)
    }))
}
