/**
 * The checkout service of the AI SRE example as a program of its own (`CheckoutService.ts`), for
 * the Docker stack: `PORT` (default 8081), `HOST` (default `0.0.0.0`), and `CHECKOUT_FAULT` (`none`,
 * `bad_deploy`, `memory_leak` or `db_saturation`; default `bad_deploy`), the fault it starts with.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schema } from "effect"
import * as CheckoutService from "./CheckoutService.ts"

const port = Number(process.env.PORT ?? 8081)
const fault = Schema.decodeUnknownSync(CheckoutService.Fault)(process.env.CHECKOUT_FAULT ?? "bad_deploy")

const main = Effect.gen(function*() {
  const checkout = yield* CheckoutService.CheckoutService
  yield* checkout.inject(fault)
  yield* Console.log(`checkout listening on port ${port} with fault ${fault}: GET /health`)
  return yield* Effect.never
})

main.pipe(Effect.provide(CheckoutService.layer({ port, host: process.env.HOST ?? "0.0.0.0" })), NodeRuntime.runMain)
