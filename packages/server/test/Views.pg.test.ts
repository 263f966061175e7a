// The routes the dashboard reads and the fork route, over real HTTP on a schema of the file's own:
// GET /views/runs with each filter and its cursor, GET /views/runs/:id with signals, children and
// events, GET /views/stats, POST /runs/:id/fork (dry run, fork, bad point, read token), bad queries,
// and the OpenAPI document naming them. The dashboard's static files and their headers too.
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Pgflows, PgflowsError, Step, Workflow } from "pgflows"
import { adminToken, BaseUrl, environment, readToken, unique } from "./fixtures/env.ts"

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}

const check = Step.make("check", {
  input: Schema.Number,
  output: Schema.Number,
  error: Refused,
  run: (n) => n < 0 ? Effect.fail(new Refused({ reason: `${n} is negative` })) : Effect.succeed(n * 2)
})
const note = Step.make("note", { input: Schema.Number, output: Schema.String, run: (n) => Effect.succeed(`n=${n}`) })
const leaf = Workflow.make("leaf", { input: Schema.Number, output: Schema.String, error: Schema.Never, run: note })
const tally = Workflow.make("tally", {
  input: Schema.Number,
  output: Schema.String,
  error: Schema.Union([Refused, PgflowsError.ChildFailed, PgflowsError.ChildCancelled]),
  run: (n) =>
    Effect.gen(function*() {
      const doubled = yield* check(n)
      yield* Workflow.setEvent("progress", { doubled })
      return yield* Workflow.child(leaf, doubled)
    })
})
const gate = Workflow.make("gate", {
  input: Schema.String,
  output: Schema.Boolean,
  run: () => Effect.map(Workflow.waitForSignal("open", Schema.Boolean), (open) => open)
})

const Worker = Layer.effectDiscard(Effect.gen(function*() {
  const engine = yield* Pgflows.Pgflows
  yield* Effect.forkScoped(engine.runWorker())
}))
const Env = Layer.provideMerge(Worker, environment({ workflows: [tally, leaf, gate], server: { dashboard: true } }))

const http = (method: string, path: string, options: { readonly body?: unknown; readonly token?: string } = {}) =>
  Effect.gen(function*() {
    const base = yield* BaseUrl
    return yield* Effect.promise(async () => {
      const headers: Record<string, string> = {}
      if (options.body !== undefined) headers["content-type"] = "application/json"
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
      const response = await fetch(`${base}${path}`, {
        method,
        headers,
        redirect: "manual",
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
      })
      const text = await response.text()
      let body: any
      try {
        body = JSON.parse(text)
      } catch {
        body = undefined
      }
      return { status: response.status, body, text, headers: response.headers }
    })
  })
const read = (path: string) => http("GET", path, { token: readToken })

const until = (id: string, status: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const answer = yield* read(`/runs/${encodeURIComponent(id)}`)
      if (answer.body?.status === status) return answer.body
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.die(new Error(`run ${id} never became ${status}`))
  })

const suffix = unique()
const ids = { ok: `tally-ok-${suffix}`, bad: `tally-bad-${suffix}`, gate: `gate-${suffix}` }

layer(Env, { excludeTestServices: true, timeout: "2 minutes" })("the dashboard's routes", (it) => {
  it.effect("runs to look at", () =>
    Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      yield* client.start(tally, 21, { id: ids.ok })
      yield* client.start(tally, -1, { id: ids.bad })
      yield* client.start(gate, "g", { id: ids.gate })
      yield* until(ids.ok, "completed")
      yield* until(ids.bad, "failed")
      yield* until(ids.gate, "suspended")
      yield* client.signal(ids.gate, "early", "a signal no wait takes")
    }))

  it.effect("GET /views/runs: each filter, the failed run's error, a cursor over pages", () =>
    Effect.gen(function*() {
      const all = yield* read("/views/runs?limit=500")
      assert.strictEqual(all.status, 200, all.text)
      const byId = new Map<string, any>(all.body.runs.map((run: any) => [run.id, run]))
      assert.strictEqual(byId.get(ids.bad).errorTag, "Refused")
      assert.include(byId.get(ids.bad).errorMessage, "-1 is negative")
      assert.strictEqual(byId.get(`${ids.ok}:3`).parentId, ids.ok)
      const ofStatus = yield* read("/views/runs?status=failed")
      assert.deepStrictEqual(ofStatus.body.runs.map((run: any) => run.id), [ids.bad])
      const ofWorkflow = yield* read("/views/runs?workflow=gate")
      assert.deepStrictEqual(ofWorkflow.body.runs.map((run: any) => run.id), [ids.gate])
      // A search is a run id: the run and its children (by the primary key and the index of children).
      const searched = yield* read(`/views/runs?q=${encodeURIComponent(ids.ok)}`)
      assert.deepStrictEqual(searched.body.runs.map((run: any) => run.id).sort(), [ids.ok, `${ids.ok}:3`].sort())
      const child = yield* read(`/views/runs?q=${encodeURIComponent(ids.ok)}&status=completed&limit=1`)
      assert.strictEqual(child.body.runs.length, 1)
      const rest = yield* read(
        `/views/runs?q=${encodeURIComponent(ids.ok)}&status=completed&limit=1&cursor=${child.body.nextCursor}`
      )
      assert.deepStrictEqual(
        [...child.body.runs, ...rest.body.runs].map((run: any) => run.id).sort(),
        [ids.ok, `${ids.ok}:3`].sort()
      )
      assert.strictEqual(rest.body.nextCursor, null)
      assert.strictEqual((yield* read(`/views/runs?q=${encodeURIComponent(`ok-${suffix}`)}`)).body.runs.length, 0)
      // A cursor of the list is not one of a search.
      const listCursor = (yield* read("/views/runs?limit=1")).body.nextCursor
      const foreign = yield* read(`/views/runs?q=${encodeURIComponent(ids.ok)}&cursor=${listCursor}`)
      assert.deepStrictEqual([foreign.status, foreign.body._tag], [400, "BadRequest"])
      const badCursor = yield* read("/views/runs?cursor=bm90LWEtY3Vyc29y")
      assert.deepStrictEqual([badCursor.status, badCursor.body._tag], [400, "BadRequest"])
      assert.strictEqual((yield* read("/views/runs?version=3")).body.runs.length, 0)
      const past = yield* read("/views/runs?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z")
      assert.strictEqual(past.body.runs.length, 0)
      const recent = yield* read(`/views/runs?from=${new Date(Date.now() - 3_600_000).toISOString()}`)
      assert.strictEqual(recent.body.runs.length, 4)

      const seen: Array<string> = []
      let cursor: string | null = null
      for (let page = 0; page < 10; page++) {
        const answer: any = yield* read(`/views/runs?limit=1${cursor === null ? "" : `&cursor=${cursor}`}`)
        seen.push(...answer.body.runs.map((run: any) => run.id))
        cursor = answer.body.nextCursor
        if (cursor === null) break
      }
      assert.deepStrictEqual(seen, all.body.runs.map((run: any) => run.id))

      const bad = yield* read("/views/runs?from=yesterday")
      assert.deepStrictEqual([bad.status, bad.body._tag], [400, "BadRequest"])
      assert.strictEqual((yield* http("GET", "/views/runs")).status, 401)
    }))

  it.effect("GET /views/runs/:id: the journal, signals, children and events", () =>
    Effect.gen(function*() {
      const ok = yield* read(`/views/runs/${ids.ok}`)
      assert.strictEqual(ok.status, 200, ok.text)
      assert.strictEqual(ok.body.run.status, "completed")
      assert.strictEqual(ok.body.version, 0)
      assert.deepStrictEqual(ok.body.run.steps.map((step: any) => step.name), [
        "check",
        "pgflows.event",
        "pgflows.child",
        "pgflows.await"
      ])
      assert.deepStrictEqual(ok.body.children.map((child: any) => [child.id, child.workflow, child.status]), [
        [`${ids.ok}:3`, "leaf", "completed"]
      ])
      assert.deepStrictEqual(ok.body.events.map((event: any) => [event.key, event.value]), [["progress", {
        doubled: 42
      }]])
      const gate = yield* read(`/views/runs/${ids.gate}`)
      assert.deepStrictEqual(
        gate.body.signals.map((signal: any) => [signal.name, signal.payload, signal.consumedKey]),
        [
          ["early", "a signal no wait takes", null]
        ]
      )
      const missing = yield* read("/views/runs/nope")
      assert.deepStrictEqual([missing.status, missing.body._tag], [404, "RunNotFound"])
    }))

  it.effect("GET /views/stats: counts and buckets per workflow, the queue, dead letters, workers", () =>
    Effect.gen(function*() {
      const stats = yield* read("/views/stats?buckets=12")
      assert.strictEqual(stats.status, 200, stats.text)
      const tallyStats = stats.body.workflows.find((w: any) => w.workflow === "tally")
      assert.deepStrictEqual(tallyStats.counts, { completed: 1, failed: 1 })
      assert.deepStrictEqual(tallyStats.estimated, [])
      assert.strictEqual(stats.body.throughputFrom, stats.body.from)
      assert.isTrue(stats.body.queue.archivedExact)
      assert.strictEqual(tallyStats.buckets.length, 12)
      const sum = (key: string) => tallyStats.buckets.reduce((total: number, b: any) => total + b[key], 0)
      assert.deepStrictEqual([sum("started"), sum("completed"), sum("failed")], [2, 1, 1])
      assert.deepStrictEqual(stats.body.workflows.find((w: any) => w.workflow === "gate").counts, { suspended: 1 })
      assert.deepStrictEqual(stats.body.deadLetters.map((run: any) => [run.id, run.errorTag]), [[ids.bad, "Refused"]])
      assert.isAtLeast(stats.body.queue.depth, 1)
      assert.isTrue(stats.body.workers.some((worker: any) => worker.alive && worker.workflows.includes("tally")))
    }))

  it.effect("POST /runs/:id/fork: a dry run writes nothing; a fork runs; a bad point is 422; read scope is 403", () =>
    Effect.gen(function*() {
      const plan = yield* http("POST", `/runs/${ids.ok}/fork`, {
        token: adminToken,
        body: { fromStep: "pgflows.child", dryRun: true }
      })
      assert.strictEqual(plan.status, 200, plan.text)
      assert.deepStrictEqual([plan.body.forkId, plan.body.dryRun, plan.body.kept], [null, true, ["1", "2"]])
      const forkId = `fork-${suffix}`
      const forked = yield* http("POST", `/runs/${ids.bad}/fork`, {
        token: adminToken,
        body: { fromStep: "check", id: forkId }
      })
      assert.strictEqual(forked.status, 200, forked.text)
      assert.strictEqual(forked.body.forkId, forkId)
      yield* until(forkId, "failed")
      const wrong = yield* http("POST", `/runs/${ids.ok}/fork`, { token: adminToken, body: { fromStep: "nowhere" } })
      assert.deepStrictEqual([wrong.status, wrong.body._tag], [422, "InvalidFork"])
      const version = yield* http("POST", `/runs/${ids.ok}/fork`, {
        token: adminToken,
        body: { fromStep: "check", version: 9 }
      })
      assert.deepStrictEqual([version.status, version.body._tag], [422, "UnknownVersion"])
      const reader = yield* http("POST", `/runs/${ids.ok}/fork`, { token: readToken, body: { fromStep: "check" } })
      assert.deepStrictEqual([reader.status, reader.body._tag], [403, "Forbidden"])
    }))

  it.effect("the dashboard's files: served with a strict policy, / redirected; the OpenAPI document names the routes", () =>
    Effect.gen(function*() {
      const root = yield* http("GET", "/")
      assert.deepStrictEqual([root.status, root.headers.get("location")], [302, "/dashboard/"])
      const page = yield* http("GET", "/dashboard/")
      assert.strictEqual(page.status, 200)
      assert.include(page.text, `<script type="module" src="/dashboard/app.js"></script>`)
      assert.include(page.headers.get("content-security-policy") ?? "", "script-src 'self'")
      assert.strictEqual(page.headers.get("x-frame-options"), "DENY")
      const script = yield* http("GET", "/dashboard/app.js")
      assert.strictEqual(script.status, 200)
      assert.include(script.headers.get("content-type") ?? "", "text/javascript")
      assert.isAbove(script.text.length, 10_000)
      const openapi = yield* http("GET", "/openapi.json")
      for (const path of ["/views/runs", "/views/runs/{id}", "/views/stats", "/runs/{id}/fork"]) {
        assert.property(openapi.body.paths, path)
      }
    }))
})
