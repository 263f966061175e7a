/**
 * The push-mode example's workflow: an expense claim as a `@pgflows/pg-durable` graph, which
 * pg_durable (or, without it, `PgDurableHarness`) runs inside PostgreSQL, calling back into typed
 * pgflows steps.
 *
 * 1. `extract_claim` reads the vendor, the amount and the currency from the claim's text;
 * 2. `check_vendor` and `convert_currency` run in parallel;
 * 3. `assess_claim` takes both results and routes the claim: `auto` for an approved vendor and at
 *    most 500 EUR, else `review`;
 * 4. a branch on that route: `review` waits for the signal `review` (a person's decision, at most a
 *    day), `auto` goes on at once; both end with `settle_claim`, whose output is the graph's value.
 *
 * The steps are ordinary `Step`s: the graph does not say how pg_durable reaches them; the binding
 * it is compiled with does (`StepBinding.worker()` or `StepBinding.http(url, { secret })`).
 *
 * @since 0.1.0
 */
import { Graph } from "@pgflows/pg-durable"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Step } from "pgflows"

/**
 * A claim as it arrives: an id and a line of text such as `"Acme Tools, 84.00 USD, 2 hammers"`.
 *
 * @category models
 * @since 0.1.0
 */
export const Claim = Schema.Struct({ claimId: Schema.String, text: Schema.String })

/**
 * @category models
 * @since 0.1.0
 */
export const Extracted = Schema.Struct({
  claimId: Schema.String,
  vendor: Schema.String,
  amount: Schema.Number,
  currency: Schema.String
})

/**
 * @category models
 * @since 0.1.0
 */
export const VendorCheck = Schema.Struct({ vendor: Schema.String, approved: Schema.Boolean })

/**
 * @category models
 * @since 0.1.0
 */
export const Converted = Schema.Struct({ eur: Schema.Number, rate: Schema.Number })

/**
 * @category models
 * @since 0.1.0
 */
export const Assessment = Schema.Struct({
  claimId: Schema.String,
  eur: Schema.Number,
  route: Schema.Literals(["auto", "review"]),
  reason: Schema.String
})

/**
 * A reviewer's decision, the payload of the signal `review`.
 *
 * @category models
 * @since 0.1.0
 */
export const Review = Schema.Struct({ approved: Schema.Boolean, reviewer: Schema.String })

/**
 * The graph's value.
 *
 * @category models
 * @since 0.1.0
 */
export const Settlement = Schema.Struct({
  claimId: Schema.String,
  outcome: Schema.Literals(["paid", "rejected"]),
  eur: Schema.Number,
  by: Schema.String
})

/**
 * The claim's text does not say vendor, amount and currency.
 *
 * @category errors
 * @since 0.1.0
 */
export class Unreadable extends Schema.TaggedError<Unreadable>()("Unreadable", { claimId: Schema.String }) {
  override get message() {
    return `claim ${this.claimId}: expected "<vendor>, <amount> <currency>, ..."`
  }
}

/**
 * @category steps
 * @since 0.1.0
 */
export const extractClaim = Step.make("extract_claim", {
  input: Claim,
  output: Extracted,
  error: Unreadable,
  run: ({ claimId, text }) => {
    const match = /^\s*([^,]+?)\s*,\s*(\d+(?:\.\d+)?)\s+([A-Z]{3})\b/.exec(text)
    return match === null
      ? Effect.fail(new Unreadable({ claimId }))
      : Effect.succeed({ claimId, vendor: match[1]!, amount: Number(match[2]), currency: match[3]! })
  }
})

const approvedVendors = new Set(["Acme Tools", "Northwind Catering"])

/**
 * @category steps
 * @since 0.1.0
 */
export const checkVendor = Step.make("check_vendor", {
  input: Extracted,
  output: VendorCheck,
  run: ({ vendor }) => Effect.succeed({ vendor, approved: approvedVendors.has(vendor) })
})

const ratesToEur: Readonly<Record<string, number>> = { EUR: 1, USD: 0.92, GBP: 1.17 }

/**
 * @category steps
 * @since 0.1.0
 */
export const convertCurrency = Step.make("convert_currency", {
  input: Extracted,
  output: Converted,
  run: ({ amount, currency }) =>
    Effect.sync(() => {
      const rate = ratesToEur[currency] ?? Number.NaN
      return { eur: Math.round(amount * rate * 100) / 100, rate }
    })
})

/**
 * @category steps
 * @since 0.1.0
 */
export const assessClaim = Step.make("assess_claim", {
  input: Schema.Tuple([Extracted, VendorCheck, Converted]),
  output: Assessment,
  run: ([claim, vendor, money]) =>
    Effect.succeed(
      !vendor.approved
        ? {
          claimId: claim.claimId,
          eur: money.eur,
          route: "review" as const,
          reason: `${vendor.vendor} is not approved`
        }
        : money.eur > 500
        ? {
          claimId: claim.claimId,
          eur: money.eur,
          route: "review" as const,
          reason: `${money.eur.toFixed(2)} EUR is over 500`
        }
        : { claimId: claim.claimId, eur: money.eur, route: "auto" as const, reason: "approved vendor, at most 500 EUR" }
    )
})

/**
 * @category steps
 * @since 0.1.0
 */
export const settleClaim = Step.make("settle_claim", {
  input: Schema.Struct({ assessment: Assessment, review: Schema.NullOr(Review) }),
  output: Settlement,
  run: ({ assessment, review }) =>
    Effect.succeed(
      assessment.route === "auto"
        ? { claimId: assessment.claimId, outcome: "paid" as const, eur: assessment.eur, by: "policy" }
        : review === null
        ? { claimId: assessment.claimId, outcome: "rejected" as const, eur: assessment.eur, by: "nobody in time" }
        : {
          claimId: assessment.claimId,
          outcome: review.approved ? "paid" as const : "rejected" as const,
          eur: assessment.eur,
          by: review.reviewer
        }
    )
})

/**
 * Every step the graph calls: what a `StepWorker` (worker binding) and the step endpoint (http
 * binding) register.
 *
 * @category steps
 * @since 0.1.0
 */
export const steps = [extractClaim, checkVendor, convertCurrency, assessClaim, settleClaim] as const

/**
 * The graph. Its input is a `Claim`; its value (`PgDurableClient.result(id, expenseClaim)`) is the
 * `Settlement`'s JSON.
 *
 * @category graphs
 * @since 0.1.0
 */
export const expenseClaim = Graph.sequence(
  Graph.step(extractClaim, { capture: "claim", input: Graph.input() }),
  Graph.parallel(
    Graph.step(checkVendor, { capture: "vendor", input: Graph.capture("claim") }),
    Graph.step(convertCurrency, { capture: "money", input: Graph.capture("claim") })
  ),
  Graph.step(assessClaim, {
    capture: "assessment",
    input: Graph.array(Graph.capture("claim"), Graph.capture("vendor"), Graph.capture("money"))
  }),
  Graph.branch(
    Graph.sql`SELECT (${Graph.ref("assessment")})::text::jsonb->>'route' = 'review'`,
    Graph.sequence(
      Graph.waitForSignal("review", { capture: "review", timeout: "1 day", payload: Review }),
      Graph.step(settleClaim, {
        // The signal's payload, or null when the wait timed out.
        input: Graph.object({ assessment: Graph.capture("assessment"), review: Graph.capture("review").at("data") })
      })
    ),
    Graph.step(settleClaim, {
      input: Graph.object({ assessment: Graph.capture("assessment"), review: Graph.value(null) })
    })
  )
)
