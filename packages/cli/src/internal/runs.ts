/**
 * `pgflows runs ...`: list, show, cancel, retry, resume, signal, fork and export runs, and the bulk
 * forms (`cancel-many`, `retry-many`, `fork-many`, each with `--dry-run`), on pgflows' client.
 * Every command takes `--json` for scripts; without it, a table or a timeline for people.
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Fs from "node:fs"
import * as Pgflows from "pgflows/Pgflows"
import * as Run from "pgflows/Run"
import * as RunHistory from "pgflows/RunHistory"
import * as Database from "./database.ts"
import { fail } from "./exit.ts"
import * as Render from "./render.ts"

export const databaseUrl = Flag.String("database-url").pipe(
  Flag.withDescription("The database (default: PGFLOWS_DATABASE_URL, else DATABASE_URL)"),
  Flag.optional
)

export const json = Flag.Boolean("json").pipe(
  Flag.withDescription("Print JSON (one document on stdout) instead of text"),
  Flag.withDefault(false)
)

const runId = Argument.String("run-id").pipe(Argument.withDescription("The run's id"))

const status = Flag.Literals("status", Run.statuses).pipe(
  Flag.withAlias("s"),
  Flag.withDescription("Only runs in this state")
)

const workflow = Flag.String("workflow").pipe(Flag.withAlias("w"), Flag.withDescription("Only runs of this workflow"))

const version = Flag.Int("version").pipe(
  Flag.withDescription("Only runs that started on this version (0: a definition without one)"),
  Flag.filter((value) => value >= 0, (value) => `the version must be 0 or more, not ${value}`)
)

/** Runs `use` with the client on the command's database. */
const withClient = <A, E>(
  url: Option.Option<string>,
  use: (client: Pgflows.Pgflows["Service"]) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    return yield* use(yield* Pgflows.Pgflows)
  }).pipe(Effect.provide(Database.layerClient({ databaseUrl: url })))

const print = (asJson: boolean, value: unknown, text: () => string) =>
  Console.log(asJson ? JSON.stringify(value, null, 2) : text())

/** Progress and notes go to stderr, so stdout holds only the answer. */
export const progress = (line: string) => Console.error(line)

const list = Command.make("list", {
  databaseUrl,
  json,
  workflow: Flag.optional(workflow),
  status: Flag.optional(status),
  version: Flag.optional(version),
  limit: Flag.Int("limit").pipe(
    Flag.withAlias("n"),
    Flag.withDescription("At most this many runs (1 to 1000)"),
    Flag.filter((n) => n >= 1 && n <= 1000, (n) => `the limit must be from 1 to 1000, not ${n}`),
    Flag.withDefault(20)
  ),
  cursor: Flag.String("cursor").pipe(Flag.withDescription("The cursor a previous page printed"), Flag.optional)
}, (input) =>
  withClient(input.databaseUrl, (client) =>
    Effect.flatMap(
      client.list({
        workflow: Option.getOrUndefined(input.workflow),
        status: Option.getOrUndefined(input.status),
        version: Option.getOrUndefined(input.version),
        limit: input.limit,
        cursor: Option.getOrUndefined(input.cursor)
      }),
      (page) =>
        print(
          input.json,
          { runs: page.runs.map(Render.summaryJson), nextCursor: page.nextCursor ?? null },
          () => Render.listTable(page)
        )
    ))).pipe(
    Command.withDescription("List runs, newest first, with filters"),
    Command.withExamples([
      { command: "pgflows runs list --status failed", description: "The dead letters" },
      { command: "pgflows runs list -w process_order --json", description: "One workflow's runs, as JSON" }
    ])
  )

const show = Command.make(
  "show",
  { databaseUrl, json, runId },
  (input) =>
    withClient(
      input.databaseUrl,
      (client) =>
        Effect.flatMap(client.status(input.runId), (info) =>
          print(input.json, Render.runJson(info), () => Render.runText(info)))
    )
).pipe(
  Command.withDescription("Show a run: its state, input, output or error, and its step timeline")
)

const cancel = Command.make(
  "cancel",
  { databaseUrl, json, runId },
  (input) =>
    withClient(
      input.databaseUrl,
      (client) =>
        Effect.flatMap(client.cancel(input.runId), (outcome) =>
          print(input.json, { runId: input.runId, outcome }, () =>
            outcome === "cancelled"
              ? `cancelled run ${input.runId} (a worker running it is interrupted; its children are cancelled too)`
              : `run ${input.runId} had already ended: nothing to cancel`))
    )
).pipe(
  Command.withDescription("Cancel a run unless it already ended")
)

const restart = (operation: "retry" | "resume") =>
  Command.make(
    operation,
    { databaseUrl, json, runId },
    (input) =>
      withClient(input.databaseUrl, (client) =>
        Effect.flatMap(client[operation](input.runId), () =>
          print(input.json, { runId: input.runId, operation }, () =>
            operation === "retry"
              ? `retrying run ${input.runId} from the step that failed (a worker takes it next)`
              : `resuming run ${input.runId} from its journal (a worker takes it next)`)))
  ).pipe(
    Command.withDescription(
      operation === "retry"
        ? "Restart a failed run from the step that failed; nothing before it runs again"
        : "Resume a cancelled run (and the children cancelled with it) from its journal"
    )
  )

/** A signal's payload: JSON given on the command line, `-` to read it from stdin, or null. */
const payloadOf = (text: Option.Option<string>) =>
  Effect.suspend(() => {
    const raw = Option.isNone(text) ? "null" : text.value === "-" ? Fs.readFileSync(0, "utf8") : text.value
    try {
      return Effect.succeed(JSON.parse(raw) as unknown)
    } catch (error) {
      return Effect.fail(
        fail(
          `the payload is not JSON (${(error as Error).message}); quote it for the shell, e.g. '{"approved": true}'`,
          2
        )
      )
    }
  })

const signal = Command.make("signal", {
  databaseUrl,
  json,
  runId,
  name: Argument.String("name").pipe(Argument.withDescription("The signal's name (Workflow.waitForSignal)")),
  payload: Argument.String("payload").pipe(
    Argument.withDescription("The payload as JSON (default null; - reads it from stdin)"),
    Argument.optional
  )
}, (input) =>
  Effect.gen(function*() {
    const payload = yield* payloadOf(input.payload)
    yield* withClient(input.databaseUrl, (client) =>
      Effect.flatMap(client.signal(input.runId, input.name, payload), () =>
        print(input.json, { runId: input.runId, signal: input.name }, () =>
          `sent signal "${input.name}" to run ${input.runId} (buffered until a wait takes it)`)))
  })).pipe(
    Command.withDescription("Send a signal to a run that has not ended"),
    Command.withExamples([
      { command: "pgflows runs signal ORD-7 approval '{\"approved\": true, \"by\": \"ana\"}'", description: "" }
    ])
  )

const fromStep = Flag.String("from-step").pipe(
  Flag.withDescription("Where the fork restarts: a journal key (2, 3.1/1) or a step the run executed once")
)
const toVersion = Flag.Int("to-version").pipe(
  Flag.withDescription("The version the fork runs on (default: the original's)"),
  Flag.optional
)
const dryRun = Flag.Boolean("dry-run").pipe(
  Flag.withDescription("Say what would be done, and write nothing"),
  Flag.withDefault(false)
)

const planText = (plan: Run.ForkPlan) =>
  [
    `  keeps     ${plan.kept.length === 0 ? "nothing" : plan.kept.join(", ")} (replayed, not executed again)`,
    `  restarts  at key ${plan.fromKey}, on version ${plan.version}`,
    `  reruns    ${
      plan.rerun.length === 0 ? "no completed step" : plan.rerun.map((s) => `${s.name} (${s.key})`).join(", ")
    }`,
    ...(plan.repeatedSideEffects.length === 0 ? [] : [
      `  repeats   side effects of ${plan.repeatedSideEffects.map((s) => s.name).join(", ")} ` +
      "(not transaction steps: make them idempotent)"
    ])
  ].join("\n")

const fork = Command.make("fork", {
  databaseUrl,
  json,
  runId,
  fromStep,
  toVersion,
  id: Flag.String("id").pipe(Flag.withDescription("The fork's id (default: a new one)"), Flag.optional),
  dryRun
}, (input) =>
  withClient(input.databaseUrl, (client) =>
    Effect.gen(function*() {
      const options = { fromStep: input.fromStep, version: Option.getOrUndefined(input.toVersion) }
      if (input.dryRun) {
        const plan = yield* client.planFork(input.runId, options)
        return yield* print(
          input.json,
          { dryRun: true, ...plan },
          () => `dry run: forking run ${input.runId} would\n${planText(plan)}`
        )
      }
      const forked = yield* client.fork(input.runId, { ...options, id: Option.getOrUndefined(input.id) })
      yield* print(
        input.json,
        { dryRun: false, ...forked },
        () => `forked run ${input.runId} as ${forked.id}\n${planText(forked)}`
      )
    }))).pipe(
    Command.withDescription("Start a new run that reuses a run's journal up to a step (repair after an incident)"),
    Command.withExamples([
      { command: "pgflows runs fork A-1 --from-step ship --to-version 2 --dry-run", description: "Plan first" }
    ])
  )

const exportHistory = Command.make("export", {
  databaseUrl,
  runId,
  output: Flag.String("output").pipe(
    Flag.withAlias("o"),
    Flag.withDescription("Write the document to this file (default: stdout)"),
    Flag.optional
  )
}, (input) =>
  withClient(input.databaseUrl, (client) =>
    Effect.gen(function*() {
      const history = yield* client.exportHistory(input.runId)
      const text = RunHistory.toJson(history)
      if (Option.isNone(input.output)) return yield* Effect.sync(() => process.stdout.write(text))
      yield* Effect.try({
        try: () => Fs.writeFileSync(input.output.pipe(Option.getOrThrow), text),
        catch: (error) => fail(`cannot write ${Option.getOrThrow(input.output)}: ${(error as Error).message}`)
      })
      yield* progress(
        `wrote the history of run ${input.runId} (${history.journal.length} journal entries) to ${
          Option.getOrThrow(input.output)
        }`
      )
    }))).pipe(
    Command.withDescription("Export a run and its journal as a JSON document (for `pgflows replay --history`)")
  )

// Bulk operations

const bulkFilter = {
  workflow: workflow.pipe(Flag.withDescription("The workflow whose runs to act on (required)")),
  version: Flag.optional(version),
  status: Flag.optional(status),
  createdAfter: Flag.Date("created-after").pipe(
    Flag.withDescription("Only runs created at or after this time"),
    Flag.optional
  ),
  createdBefore: Flag.Date("created-before").pipe(
    Flag.withDescription("Only runs created before this time"),
    Flag.optional
  ),
  limit: Flag.Int("limit").pipe(
    Flag.withAlias("n"),
    Flag.withDescription("At most this many runs, oldest first (default 100, at most 10000)"),
    Flag.optional
  )
}

type BulkInput = {
  readonly workflow: string
  readonly version: Option.Option<number>
  readonly status: Option.Option<Run.Status>
  readonly createdAfter: Option.Option<Date>
  readonly createdBefore: Option.Option<Date>
  readonly limit: Option.Option<number>
}

const toFilter = (input: BulkInput): Pgflows.BulkFilter => ({
  workflow: input.workflow,
  version: Option.getOrUndefined(input.version),
  status: Option.getOrUndefined(input.status),
  createdAfter: Option.getOrUndefined(input.createdAfter),
  createdBefore: Option.getOrUndefined(input.createdBefore),
  limit: Option.getOrUndefined(input.limit)
})

const bulkText = (result: Run.BulkResult) => {
  const verb = result.operation === "cancel" ? "cancel" : result.operation === "retry" ? "retry" : "fork"
  const head = result.dryRun
    ? `dry run: ${result.matched} run${
      result.matched === 1 ? "" : "s"
    } match; ${verb} would act on ${result.selected.length}`
    : `${verb}: ${result.matched} matched, ${result.selected.length} selected, ${result.done.length} done, ${result.skipped.length} skipped`
  const skipped = result.skipped.map((skip) => `  skipped ${skip.runId}: ${skip.reason}`)
  const selected = result.dryRun ? result.selected.map((id) => `  ${id}`) : []
  return [head, ...selected, ...skipped].join("\n")
}

const bulk = (operation: "cancel" | "retry") =>
  Command.make(
    `${operation}-many`,
    { databaseUrl, json, dryRun, ...bulkFilter },
    (input) =>
      withClient(input.databaseUrl, (client) =>
        Effect.gen(function*() {
          if (!input.json) yield* progress(`${operation}-many: selecting runs of ${input.workflow}...`)
          const act = operation === "cancel" ? client.cancelMany : client.retryMany
          const result = yield* act(toFilter(input), { dryRun: input.dryRun })
          yield* print(input.json, result, () => bulkText(result))
        }))
  ).pipe(
    Command.withDescription(
      operation === "cancel"
        ? "Cancel the runs a filter selects that have not ended (--dry-run to count and list first)"
        : "Retry the failed runs a filter selects (--dry-run to count and list first)"
    )
  )

const forkMany = Command.make("fork-many", {
  databaseUrl,
  json,
  dryRun,
  fromStep,
  toVersion,
  ...bulkFilter
}, (input) =>
  withClient(input.databaseUrl, (client) =>
    Effect.gen(function*() {
      if (!input.json) yield* progress(`fork-many: selecting runs of ${input.workflow}...`)
      const result = yield* client.forkMany(toFilter(input), {
        fromStep: input.fromStep,
        version: Option.getOrUndefined(input.toVersion),
        dryRun: input.dryRun
      })
      yield* print(input.json, result, () =>
        [
          bulkText(result),
          ...result.forks.map((fork) =>
            "id" in fork ? `  ${fork.runId} -> ${fork.id}` : `  ${fork.runId}:\n${planText(fork)}`
          )
        ].join("\n"))
    }))).pipe(
    Command.withDescription("Fork every run a filter selects from the same step (--dry-run to plan first)")
  )

export const command = Command.make("runs").pipe(
  Command.withDescription("Inspect and steer runs: list, show, cancel, retry, resume, signal, fork, export"),
  Command.withSubcommands([
    list,
    show,
    cancel,
    restart("retry"),
    restart("resume"),
    signal,
    fork,
    exportHistory,
    bulk("cancel"),
    bulk("retry"),
    forkMany
  ])
)
