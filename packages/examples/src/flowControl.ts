// The README's "Queues and flow control", runnable: `node packages/examples/src/flowControl.ts` (memory backend)
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schema } from "effect"
import { FlowQueue, Pgflows, Step, Workflow } from "pgflows"

const Email = Schema.Struct({ tenant: Schema.String, to: Schema.String })

// At most 2 emails are sent at once across all workers, and 1 at once per tenant.
const emails = FlowQueue.make("emails", { concurrency: 2, keyConcurrency: 1 })

const deliver = Step.make("deliver", {
  input: Email,
  output: Schema.String,
  run: (email) => Effect.as(Console.log(`deliver to ${email.to}`), email.to)
})

const sendEmail = Workflow.make("send_email", {
  input: Email,
  output: Schema.String,
  queue: emails,
  // The key comes from the run's typed input; a key function that throws fails only that start.
  concurrencyKey: (email) => email.tenant,
  run: deliver
})

const program = Effect.gen(function*() {
  const client = yield* Pgflows.Pgflows
  yield* client.start(sendEmail, { tenant: "acme", to: "ann@acme.test" })
  yield* client.start(sendEmail, { tenant: "acme", to: "bob@acme.test" })
  yield* client.start(sendEmail, { tenant: "initech", to: "peter@initech.test" })
  yield* client.start(sendEmail, { tenant: "globex", to: "hank@globex.test" }, { priority: 10 })
  const [queue] = (yield* client.queueMetrics()).queues
  yield* Console.log(`${queue?.queue}: ${queue?.due} due, ${queue?.running} running`)
  // Each pass claims what the limits leave room for: the urgent email first, one per tenant, two at once.
  for (let pass = 1;; pass++) {
    const claimed = yield* client.processOnce
    if (claimed === 0) break
    yield* Console.log(`pass ${pass}: ${claimed} emails`)
  }
})

program.pipe(Effect.provide(Pgflows.layerMemory({ workflows: [sendEmail] })), NodeRuntime.runMain)
