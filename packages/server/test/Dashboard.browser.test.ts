// The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core),
// served by @pgflows/server against PostgreSQL with runs in every state: a page without a token
// shows only its sign-in form and the API refuses; the list and its filters (status, workflow,
// version, time range, id search); a run page with its steps, error and children; a cancel and a
// signal from the page that reach the database; a read token that may look but not act; the
// overview; a phone-sized viewport, used with the keyboard. Screenshots of the main pages go to
// .tmp/screenshots/ (git-ignored).
//
// Without Chromium (PGFLOWS_CHROMIUM, else /usr/bin/chromium) the suite is skipped with one line
// saying so; `.ci/run` installs it.
import { assert, describe, layer } from "@effect/vitest"
import { Auth, PgflowsServer } from "@pgflows/server"
import { TestDatabase } from "@pgflows/testing"
import { Context, Deferred, Effect, Layer, Redacted, Schema } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Pgflows, PgflowsConfig, PgflowsError, Step, Workflow } from "pgflows"
import { type BrowserContext, chromium, type Page } from "playwright-core"

const executable = process.env["PGFLOWS_CHROMIUM"] ?? "/usr/bin/chromium"
const available = Fs.existsSync(executable)
const screenshots = Path.resolve(import.meta.dirname, "../../../.tmp/screenshots")

const adminToken = "dashboard-admin-token-0123456789"
const readToken = "dashboard-read-token-0123456789"

class Declined extends Schema.TaggedError<Declined>()("Declined", { reason: Schema.String }) {}
const Order = Schema.Struct({ id: Schema.String, amount: Schema.Number })

const charge = Step.make("charge", {
  input: Order,
  output: Schema.String,
  error: Declined,
  run: (order) =>
    order.amount > 100
      ? Effect.fail(new Declined({ reason: `card declined: ${order.amount} EUR is over the limit` }))
      : Effect.succeed(`CHG-${order.id}`)
})
const pack = Step.make("pack", {
  input: Order,
  output: Schema.String,
  run: (order) => Effect.succeed(`BOX-${order.id}`)
})
const label = Step.make("print_label", {
  input: Order,
  output: Schema.String,
  run: (order) => Effect.succeed(`TRK-${order.id}`)
})
const shipping = Workflow.make("shipping", {
  input: Order,
  output: Schema.String,
  error: Schema.Never,
  run: (order) => label(order)
})
const order = Workflow.make("order", {
  input: Order,
  output: Schema.Struct({ charge: Schema.String, box: Schema.String, tracking: Schema.String }),
  error: Schema.Union([Declined, PgflowsError.ChildFailed, PgflowsError.ChildCancelled]),
  run: (input) =>
    Effect.gen(function*() {
      const confirmation = yield* charge(input)
      const box = yield* pack(input)
      const tracking = yield* Workflow.child(shipping, input)
      return { charge: confirmation, box, tracking }
    })
})
const approval = Workflow.make("approval", {
  input: Schema.String,
  output: Schema.Boolean,
  run: Effect.fn(function*(subject) {
    yield* Workflow.setEvent("stage", { waiting: subject })
    const decision = yield* Workflow.waitForSignal("decision", Schema.Struct({ ok: Schema.Boolean }))
    return decision.ok
  })
})
/** A step that holds until the test ends: its run stays `running`. */
const release = Effect.runSync(Deferred.make<void>())
const hold = Step.make("hold", {
  input: Schema.String,
  output: Schema.String,
  run: (s) => Effect.as(Deferred.await(release), s)
})
const report = Workflow.make("report", { input: Schema.String, output: Schema.String, run: (s) => hold(s) })

const id = Crypto.randomBytes(3).toString("hex")
const ids = {
  completed: `order-ok-${id}`,
  failed: `order-declined-${id}`,
  pending: `order-later-${id}`,
  waiting: `approval-${id}`,
  toCancel: `approval-cancel-${id}`,
  readOnly: `approval-read-${id}`,
  running: `report-${id}`
}

class Server extends Context.Service<Server, { readonly base: string }>()("test/DashboardServer") {}

/** pgflows with a worker, and the server with the dashboard on a free port. */
const Live = Layer.effect(
  Server,
  Effect.gen(function*() {
    const context = yield* Layer.build(
      PgflowsServer.layerServer({
        auth: Auth.tokens([
          { token: Redacted.make(adminToken), scope: "admin" },
          { token: Redacted.make(readToken), scope: "read" }
        ]),
        dashboard: true,
        port: 0,
        logRequests: false
      })
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") return yield* Effect.die(new Error("no TCP address"))
    return Server.of({ base: `http://127.0.0.1:${address.port}` })
  })
).pipe(
  Layer.provideMerge(
    Layer.effectDiscard(Effect.gen(function*() {
      const client = yield* Pgflows.Pgflows
      yield* Effect.forkScoped(client.runWorker({ concurrency: 8 }))
    }))
  ),
  Layer.provideMerge(Pgflows.layerPg({ workflows: [order, shipping, approval, report] })),
  Layer.provide(PgflowsConfig.layer({ shutdownGrace: "0 millis", pollInterval: "200 millis" }))
)

/** Chromium with the flags this machine's closed network needs, and a fresh profile. */
class Browser extends Context.Service<Browser, BrowserContext>()("test/Browser") {}
const BrowserLive = Layer.effect(
  Browser,
  Effect.acquireRelease(
    Effect.promise(async () => {
      const profile = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pgflows-chromium-"))
      const context = await chromium.launchPersistentContext(profile, {
        executablePath: executable,
        viewport: { width: 1280, height: 800 },
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync"
        ]
      })
      return Object.assign(context, { profile })
    }),
    (context) =>
      Effect.promise(async () => {
        await context.close()
        Fs.rmSync(context.profile, { recursive: true, force: true })
      })
  )
)

const statusOf = Effect.fnUntraced(function*(runId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ status: string }>`SELECT status FROM pgflows.runs WHERE id = ${runId}`
  return rows[0]?.status
})

/** Waits until the runs reach the states the test needs (the worker runs them meanwhile). */
const settle = Effect.fnUntraced(function*(wanted: Readonly<Record<string, string>>) {
  for (let attempt = 0; attempt < 200; attempt++) {
    let all = true
    for (const [runId, status] of Object.entries(wanted)) if ((yield* statusOf(runId)) !== status) all = false
    if (all) return
    yield* Effect.sleep("100 millis")
  }
  return yield* Effect.die(new Error(`runs did not reach ${JSON.stringify(wanted)}`))
})

/** A new page (optionally phone-sized) that fails the test on a script error. */
const withPage = <A>(use: (page: Page) => Promise<A>, viewport?: { width: number; height: number }) =>
  Effect.gen(function*() {
    const browser = yield* Browser
    return yield* Effect.promise(async () => {
      const page = await browser.newPage()
      const errors: Array<string> = []
      page.on("pageerror", (error) => errors.push(error.message))
      page.on("dialog", (dialog) => void dialog.accept())
      if (viewport !== undefined) await page.setViewportSize(viewport)
      try {
        const result = await use(page)
        assert.deepStrictEqual(errors, [], "the page threw")
        return result
      } finally {
        await page.close()
      }
    })
  })

const shot = (page: Page, name: string) => {
  Fs.mkdirSync(screenshots, { recursive: true })
  return page.screenshot({ path: Path.join(screenshots, `${name}.png`), fullPage: name !== "runs" })
}

const signIn = async (page: Page, base: string, token: string) => {
  await page.goto(`${base}/dashboard/`)
  await page.getByLabel("API token").fill(token)
  await page.getByRole("button", { name: "Sign in" }).click()
  await page.locator("table.runs").waitFor()
}

const rowStatuses = (page: Page) =>
  page.locator("table.runs tbody tr").evaluateAll((rows) =>
    Object.fromEntries(rows.map((row) => [row.getAttribute("data-run"), row.getAttribute("data-status")]))
  )

const skipped = available
  ? undefined
  : `no Chromium at ${executable} (apt-get install chromium, or set PGFLOWS_CHROMIUM)`
if (skipped !== undefined) console.info(`[pgflows] dashboard browser tests skipped: ${skipped}`)

describe.skipIf(skipped !== undefined)(`dashboard${skipped === undefined ? "" : ` (skipped: ${skipped})`}`, () => {
  layer(Layer.mergeAll(Live, BrowserLive).pipe(Layer.provideMerge(TestDatabase.layer)), {
    excludeTestServices: true,
    timeout: 120_000
  })("dashboard in a browser", (it) => {
    it.effect("runs in every state, for the pages to show", () =>
      Effect.gen(function*() {
        const client = yield* Pgflows.Pgflows
        yield* client.start(order, { id: "A-1", amount: 40 }, { id: ids.completed })
        yield* client.start(order, { id: "A-2", amount: 900 }, { id: ids.failed })
        yield* client.start(order, { id: "A-3", amount: 10 }, { id: ids.pending, delay: "2 hours" })
        yield* client.start(approval, "contract", { id: ids.waiting })
        yield* client.start(approval, "refund", { id: ids.toCancel })
        yield* client.start(approval, "audit", { id: ids.readOnly })
        yield* client.start(report, "nightly", { id: ids.running })
        yield* settle({
          [ids.completed]: "completed",
          [ids.failed]: "failed",
          [ids.pending]: "pending",
          [ids.waiting]: "suspended",
          [ids.toCancel]: "suspended",
          [ids.readOnly]: "suspended",
          [ids.running]: "running"
        })
      }), { timeout: 120_000 })

    it.effect("without a token only the sign-in form shows, and the API refuses", () =>
      Effect.gen(function*() {
        const { base } = yield* Server
        yield* withPage(async (page) => {
          await page.goto(`${base}/dashboard/`)
          await page.getByRole("button", { name: "Sign in" }).waitFor()
          assert.strictEqual(await page.locator("table.runs").count(), 0)
          assert.notInclude(await page.content(), ids.completed)
          const refused = await page.evaluate(async () => {
            const response = await fetch("/views/runs")
            return { status: response.status, body: await response.json() as { _tag: string } }
          })
          assert.strictEqual(refused.status, 401)
          assert.strictEqual(refused.body._tag, "Unauthorized")
          await page.getByLabel("API token").fill("not-a-token-anyone-knows")
          await page.getByRole("button", { name: "Sign in" }).click()
          await page.getByText("That token is not accepted.").waitFor()
          assert.strictEqual(await page.locator("table.runs").count(), 0)
          await shot(page, "signin")
        })
      }), { timeout: 120_000 })

    it.effect(
      "the list shows every state; filters by status, workflow, version, time range and id",
      () =>
        Effect.gen(function*() {
          const { base } = yield* Server
          yield* withPage(async (page) => {
            await signIn(page, base, adminToken)
            const statuses = await rowStatuses(page)
            for (
              const [runId, status] of Object.entries({
                [ids.completed]: "completed",
                [ids.failed]: "failed",
                [ids.pending]: "pending",
                [ids.waiting]: "suspended",
                [ids.running]: "running"
              })
            ) assert.strictEqual(statuses[runId], status, runId)
            assert.include(await page.locator(`tr[data-run="${ids.failed}"]`).innerText(), "Declined")
            await shot(page, "runs")

            await page.getByLabel("Status").selectOption("failed")
            await page.getByRole("button", { name: "Apply" }).click()
            await page.waitForFunction("location.hash.includes('status=failed')")
            await page.locator(`tr[data-run="${ids.completed}"]`).waitFor({ state: "detached" })
            // The page may show no rows while the filtered list loads.
            await page.locator(`tr[data-run="${ids.failed}"]`).waitFor()
            assert.deepStrictEqual(Object.values(await rowStatuses(page)), ["failed"])

            await page.goto(`${base}/dashboard/#/?workflow=approval`)
            await page.locator(`tr[data-run="${ids.waiting}"]`).waitFor()
            assert.sameMembers(Object.keys(await rowStatuses(page)), [ids.waiting, ids.toCancel, ids.readOnly])

            await page.goto(`${base}/dashboard/#/?q=${encodeURIComponent(ids.failed)}`)
            await page.locator(`tr[data-run="${ids.failed}"]`).waitFor()
            assert.deepStrictEqual(Object.keys(await rowStatuses(page)), [ids.failed])

            await page.goto(`${base}/dashboard/#/?version=1`)
            await page.getByText("No run matches these filters.").waitFor()
            await page.goto(`${base}/dashboard/#/?range=custom&from=2001-01-01T00:00&to=2001-01-02T00:00`)
            await page.getByText("No run matches these filters.").waitFor()
            await page.goto(`${base}/dashboard/#/?range=1h&workflow=order`)
            await page.locator(`tr[data-run="${ids.completed}"]`).waitFor()
            assert.strictEqual(Object.keys(await rowStatuses(page)).length, 3)
          })
        }),
      { timeout: 120_000 }
    )

    it.effect("a token in the link's fragment signs in and leaves the address", () =>
      Effect.gen(function*() {
        const { base } = yield* Server
        yield* withPage(async (page) => {
          await page.goto(`${base}/dashboard/#token=${adminToken}`)
          await page.locator("table.runs").waitFor()
          assert.notInclude(page.url(), adminToken)
        })
      }), { timeout: 120_000 })

    it.effect("a run page shows its steps, its typed error, its child", () =>
      Effect.gen(function*() {
        const { base } = yield* Server
        yield* withPage(async (page) => {
          await signIn(page, base, adminToken)
          await page.locator(`tr[data-run="${ids.failed}"] a`).click()
          await page.locator(".timeline").waitFor()
          assert.strictEqual(await page.locator(`.timeline li[data-step="charge"] [data-status]`).innerText(), "failed")
          assert.include(await page.locator(".failure").innerText(), "Declined")
          assert.include(await page.locator(".failure").innerText(), "card declined: 900 EUR is over the limit")

          await page.goto(`${base}/dashboard/#/runs/${ids.completed}`)
          await page.locator(`.timeline li[data-step="pack"]`).waitFor()
          const steps = await page.locator(".timeline li").evaluateAll((items) =>
            items.map((item) => [item.getAttribute("data-step"), item.querySelector("[data-status]")?.textContent])
          )
          assert.deepStrictEqual(steps, [["charge", "completed"], ["pack", "completed"], [
            "pgflows.child",
            "completed"
          ], ["pgflows.await", "completed"]])
          assert.include(await page.locator("table[aria-label=Children]").innerText(), `${ids.completed}:`)
          assert.include(await page.locator(".panels").innerText(), "TRK-A-1")
          await shot(page, "run")

          await page.goto(`${base}/dashboard/#/runs/${ids.waiting}`)
          await page.locator(`.timeline li[data-step="pgflows.signal"]`).waitFor()
          assert.include(await page.locator("table[aria-label=Events]").innerText(), "stage")
        })
      }), { timeout: 120_000 })

    it.effect("a cancel from the page reaches the database; a signal from the page too", () =>
      Effect.gen(function*() {
        const { base } = yield* Server
        yield* withPage(async (page) => {
          await signIn(page, base, adminToken)
          await page.goto(`${base}/dashboard/#/runs/${ids.toCancel}`)
          await page.getByRole("button", { name: "Cancel" }).click()
          await page.getByText("cancel: cancelled").waitFor()
          await page.locator("h1 [data-status=cancelled]").waitFor()

          await page.goto(`${base}/dashboard/#/runs/${ids.waiting}`)
          await page.getByRole("button", { name: "Signal…" }).click()
          await page.getByLabel("Signal name").fill("decision")
          await page.getByLabel("Payload (JSON)").fill(`{"ok": true}`)
          await page.getByRole("button", { name: "Send" }).click()
          await page.getByText(`signal "decision" sent`).waitFor()
        })
        assert.strictEqual(yield* statusOf(ids.toCancel), "cancelled")
        yield* settle({ [ids.waiting]: "completed" })
      }), { timeout: 120_000 })

    it.effect("a read token may look but not act: the API refuses and the page says why", () =>
      Effect.gen(function*() {
        const { base } = yield* Server
        yield* withPage(async (page) => {
          await signIn(page, base, readToken)
          await page.goto(`${base}/dashboard/#/runs/${ids.readOnly}`)
          await page.getByRole("button", { name: "Cancel" }).click()
          await page.getByText("needs a token of scope admin").waitFor()
        })
        assert.strictEqual(yield* statusOf(ids.readOnly), "suspended")
      }), { timeout: 120_000 })

    it.effect(
      "the overview: throughput and failures per workflow, queue depth, dead letters, workers",
      () =>
        Effect.gen(function*() {
          const { base } = yield* Server
          yield* withPage(async (page) => {
            await signIn(page, base, adminToken)
            await page.getByRole("link", { name: "Overview" }).click()
            await page.locator("article[data-workflow=order] svg").waitFor()
            const depth = Number(await page.locator("[data-metric=queue-depth] .big").innerText())
            assert.isAtLeast(depth, 1)
            assert.include(await page.locator("article[data-workflow=order] figcaption").innerText(), "1 failed")
            assert.include(await page.locator("table[aria-label='Latest failed runs']").innerText(), ids.failed)
            assert.include(await page.locator("table[aria-label=Workers]").innerText(), "alive")
            await shot(page, "overview")
          })
        }),
      { timeout: 120_000 }
    )

    it.effect(
      "on a phone: no sideways scrolling, rows as cards, reached and opened with the keyboard",
      () =>
        Effect.gen(function*() {
          const { base } = yield* Server
          yield* withPage(async (page) => {
            await signIn(page, base, adminToken)
            const width = await page.evaluate<number>("document.documentElement.scrollWidth")
            assert.isAtMost(width, 390)
            assert.strictEqual(
              await page.locator("table.runs thead").evaluate((head) =>
                (globalThis as any).getComputedStyle(head).position
              ),
              "absolute"
            )
            await shot(page, "phone-runs")
            // The keyboard alone: tab to the first run's link, open it, tab to its actions.
            await page.locator("body").focus()
            let focused = ""
            for (let press = 0; press < 40 && !focused.startsWith("#/runs/"); press++) {
              await page.keyboard.press("Tab")
              focused = await page.evaluate<string>("document.activeElement?.getAttribute('href') ?? ''")
            }
            assert.match(focused, /^#\/runs\//)
            await page.keyboard.press("Enter")
            await page.locator(".timeline").waitFor()
            assert.isAtMost(await page.evaluate<number>("document.documentElement.scrollWidth"), 390)
            await shot(page, "phone-run")
          }, { width: 390, height: 844 })
        }),
      { timeout: 120_000 }
    )

    it.effect("the running run is released, so the worker stops cleanly", () =>
      Effect.gen(function*() {
        yield* Deferred.succeed(release, undefined)
        yield* settle({ [ids.running]: "completed" })
      }), { timeout: 120_000 })
  })
})
