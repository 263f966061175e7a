/**
 * The `pgflows` command, built on Effect's `effect/cli`: `dev`, `migrate`, `worker`, `runs ...`,
 * `replay`, `export-sql` and `dashboard`, each with `--help`.
 *
 * Configuration comes from the same environment variables as the library (`PGFLOWS_DATABASE_URL`
 * or `DATABASE_URL`, `PGFLOWS_SCHEMA`, `PGFLOWS_QUEUE`, ..., and `PGFLOWS_SERVER_TOKENS` for the
 * dashboard); `--database-url` takes the URL's place for one command.
 *
 * Output: the answer on stdout (a table or a timeline, or one JSON document with `--json`);
 * progress and errors on stderr. Exit status: 0 done (also a worker, `dev` or `dashboard` stopped
 * gracefully by SIGTERM or Ctrl-C); 1 the operation failed (the message says what to do); 2 the
 * command line is wrong (nothing was done); 130 a one-shot command interrupted by Ctrl-C.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as CliConfig from "effect/cli/CliConfig"
import * as CliError from "effect/cli/CliError"
import * as CliOutput from "effect/cli/CliOutput"
import * as Command from "effect/cli/Command"
import * as GlobalFlag from "effect/cli/GlobalFlag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Exits from "./internal/exit.ts"
import * as Operate from "./internal/operate.ts"
import * as Runs from "./internal/runs.ts"
import * as Serve from "./internal/serve.ts"

/**
 * The version the command reports (`pgflows --version`).
 *
 * @category models
 * @since 0.1.0
 */
export const version = "0.1.0"

/**
 * The command tree.
 *
 * @category commands
 * @since 0.1.0
 */
export const command = Command.make("pgflows").pipe(
  Command.withDescription(
    "Operate pgflows: a dev database, migrations, workers, runs, replay checks, SQL export and the dashboard. " +
      "Configured by PGFLOWS_DATABASE_URL (or DATABASE_URL) and the other PGFLOWS_* variables."
  ),
  Command.withSubcommands([
    Serve.dev,
    Operate.migrate,
    Operate.worker,
    Runs.command,
    Operate.replay,
    Operate.exportSql,
    Serve.dashboard
  ])
)

/**
 * Runs the command line `args` (without `node` and the script) and returns the exit status; what
 * went wrong is printed on stderr, with what to do.
 *
 * @category running
 * @since 0.1.0
 */
export const run = (args: ReadonlyArray<string>): Effect.Effect<number, never, Command.Environment> =>
  Command.runWith(command, { version })(args).pipe(
    Effect.provide(Layer.mergeAll(
      CliConfig.layer({ builtIns: [GlobalFlag.Help, GlobalFlag.Version, GlobalFlag.Completions, GlobalFlag.LogLevel] }),
      CliOutput.layerPresenter(presenter)
    )),
    Effect.as(Exits.ok),
    Effect.catchCause((cause) => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
      const error = Cause.squash(cause)
      if (CliError.isCliError(error)) return Effect.succeed(Exits.usage)
      if (error instanceof Exits.CliFailure) {
        return Effect.as(Console.error(`pgflows: ${error.message}`), error.exitCode)
      }
      return Effect.as(Console.error(`pgflows: ${describe(error)}`), Exits.failed)
    })
  )

/**
 * The exit status of a finished `run` (interrupted: 0 for a command that runs until stopped, else
 * 130), for `NodeRuntime.runMain`'s `teardown`.
 *
 * @category running
 * @since 0.1.0
 */
export const exitCode = (exit: Exit.Exit<number, unknown>): number =>
  Exit.isSuccess(exit)
    ? exit.value
    : Cause.hasInterruptsOnly(exit.cause)
    ? Exits.onInterrupt()
    : Exits.failed

// internal

/** Help on stdout; a wrong command line on stderr: what is wrong, then how to get help. */
const presenter: CliOutput.Presenter = {
  present: (event) =>
    Effect.gen(function*() {
      const formatter = yield* CliOutput.Formatter
      switch (event._tag) {
        case "Help":
          return yield* Console.log(formatter.formatHelpDoc(event.helpDoc))
        case "Version":
          return yield* Console.log(formatter.formatVersion(event.name, event.version))
        case "InvalidInvocation":
          yield* Console.error(formatter.formatErrors(event.errors))
          return yield* Console.error(
            `\nusage: ${event.helpDoc.usage}\nsee \`${event.commandPath.join(" ")} --help\``
          )
      }
    })
}

/** A failure's message: pgflows' errors say what happened and what to do. */
const describe = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const message = (error as { readonly message?: unknown }).message
    const tag = (error as { readonly _tag?: unknown })._tag
    if (typeof message === "string" && message !== "") return message
    if (typeof tag === "string") return `${tag}: ${JSON.stringify(error)}`
  }
  return String(error)
}
