/**
 * The order workflow of the demo, written as in the architecture's programming model: typed steps
 * with retries and timeouts, a durable sleep, typed failures.
 *
 * - `charge_payment` fails once with `GatewayBusy` for orders whose id ends in `-FLAKY`; its retry
 *   schedule fixes that on the second attempt.
 * - `reserve_stock` declines orders over 1000 with `OutOfStock`, a typed failure that is not retried:
 *   the run fails and its message goes to the dead-letter archive.
 * - express orders sleep a few seconds before shipping ("wait for the courier"): the run parks and no
 *   worker is held meanwhile.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { PgflowsError, Step, Workflow } from "pgflows"

/**
 * @category models
 * @since 0.1.0
 */
export class OrderInput extends Schema.Class<OrderInput>("OrderInput")({
  orderId: Schema.String,
  amount: Schema.Number,
  express: Schema.Boolean
}) {}

/**
 * @category models
 * @since 0.1.0
 */
export class Receipt extends Schema.Class<Receipt>("Receipt")({
  charged: Schema.Boolean,
  confirmation: Schema.String
}) {}

/**
 * @category models
 * @since 0.1.0
 */
export class Shipment extends Schema.Class<Shipment>("Shipment")({
  orderId: Schema.String,
  confirmation: Schema.String,
  tracking: Schema.String
}) {}

/**
 * The payment gateway asked us to come back later: worth a retry.
 *
 * @category errors
 * @since 0.1.0
 */
export class GatewayBusy extends Schema.TaggedError<GatewayBusy>()("GatewayBusy", { orderId: Schema.String }) {
  override get message() {
    return `the payment gateway is busy, charge ${this.orderId} later`
  }
}

/**
 * Not enough stock: final.
 *
 * @category errors
 * @since 0.1.0
 */
export class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", {
  orderId: Schema.String,
  requested: Schema.Number
}) {
  override get message() {
    return `only 1000 in stock, ${this.orderId} asks for ${this.requested}`
  }
}

const failedOnce = new Set<string>()

/**
 * @category steps
 * @since 0.1.0
 */
export const chargePayment = Step.make("charge_payment", {
  input: OrderInput,
  output: Receipt,
  error: GatewayBusy,
  retry: Schedule.exponential("200 millis").pipe(Schedule.jittered, Schedule.upTo({ times: 3 })),
  timeout: "30 seconds",
  run: (order) =>
    Effect.suspend(() => {
      if (order.orderId.endsWith("-FLAKY") && !failedOnce.has(order.orderId)) {
        failedOnce.add(order.orderId)
        return Effect.fail(new GatewayBusy({ orderId: order.orderId }))
      }
      return Effect.succeed(new Receipt({ charged: true, confirmation: `CHG-${order.orderId}` }))
    })
})

/**
 * @category steps
 * @since 0.1.0
 */
export const reserveStock = Step.make("reserve_stock", {
  input: OrderInput,
  output: Schema.Struct({ reserved: Schema.Number }),
  error: OutOfStock,
  // Retries are for failures that may pass: this one will not.
  retry: Schedule.recurs(2).pipe(Schedule.while(({ input }) => !(input instanceof OutOfStock))),
  run: (order) =>
    order.amount > 1000
      ? Effect.fail(new OutOfStock({ orderId: order.orderId, requested: order.amount }))
      : Effect.succeed({ reserved: order.amount })
})

/**
 * @category steps
 * @since 0.1.0
 */
export const ship = Step.make("ship", {
  input: Schema.Struct({ orderId: Schema.String, confirmation: Schema.String }),
  output: Shipment,
  run: (input) => Effect.succeed(new Shipment({ ...input, tracking: `TRK-${input.orderId}` }))
})

/**
 * @category workflows
 * @since 0.1.0
 */
export const processOrder = Workflow.make("process_order", {
  input: OrderInput,
  output: Shipment,
  error: Schema.Union([GatewayBusy, OutOfStock, PgflowsError.StepTimeoutError]),
  stepDefaults: { retry: Schedule.recurs(2) },
  run: Effect.fn(function*(order) {
    const receipt = yield* chargePayment(order)
    yield* reserveStock(order)
    if (order.express) yield* Workflow.sleep("3 seconds")
    return yield* ship({ orderId: order.orderId, confirmation: receipt.confirmation })
  })
})
