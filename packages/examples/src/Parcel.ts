/**
 * The workflow of the demo's crash: three steps that each record, in the table `demo_effects`, that
 * they ran and on which worker, so the demo can show that a step completed before a worker was
 * killed is never run again. `ship_parcel` takes a while (`PARCEL_SHIP_MILLIS`, 1500 ms by default):
 * long enough to kill its worker in the middle of it.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SqlClient from "effect/sql/SqlClient"
import { Step, Workflow } from "pgflows"

/**
 * @category models
 * @since 0.1.0
 */
export const Parcel = Schema.Struct({ parcelId: Schema.String })

/**
 * The table the steps write to.
 *
 * @category setup
 * @since 0.1.0
 */
export const createEffects = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE TABLE IF NOT EXISTS demo_effects (parcel text, step text, worker text, at timestamptz DEFAULT now())`
)

const worker = process.env.WORKER_NAME ?? "demo"

const recorded = (name: string, pause: () => number) =>
  Step.make(name, {
    input: Parcel,
    output: Parcel,
    run: (parcel) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO demo_effects (parcel, step, worker) VALUES (${parcel.parcelId}, ${name}, ${worker})`
        yield* Effect.sleep(pause())
        return parcel
      }).pipe(Effect.orDie)
  })

const reserve = recorded("reserve_parcel", () => 0)
const ship = recorded("ship_parcel", () => Number(process.env.PARCEL_SHIP_MILLIS ?? 1500))
const notify = recorded("send_notice", () => 0)

/**
 * @category workflows
 * @since 0.1.0
 */
export const sendParcel = Workflow.make("send_parcel", {
  input: Parcel,
  output: Parcel,
  run: (parcel) => reserve(parcel).pipe(Effect.flatMap(ship), Effect.flatMap(notify))
})
