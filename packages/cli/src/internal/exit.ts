/**
 * Exit statuses, and the failure that carries one.
 *
 * - 0: done (also a worker, `dev` or `dashboard` stopped by SIGTERM or Ctrl-C, gracefully);
 * - 1: the operation failed (the database cannot be reached, no such run, a replay check diverges,
 *   migrations missing under `--verify`); the message says what to do;
 * - 2: the command line is wrong (an unknown command or flag, a bad value); nothing was done;
 * - 130: a one-shot command was interrupted (Ctrl-C).
 */
import * as Data from "effect/Data"

export const ok = 0
export const failed = 1
export const usage = 2
export const interrupted = 130

/** A failure with the message to print and the status to exit with. */
export class CliFailure extends Data.TaggedError("CliFailure")<{
  readonly message: string
  readonly exitCode: number
}> {}

export const fail = (message: string, exitCode: number = failed) => new CliFailure({ message, exitCode })

/**
 * What an interruption means: for a command that runs until stopped (a worker, `dev`,
 * `dashboard`), a signal is how it is meant to end, so it exits 0 once it stopped gracefully.
 */
const state = { graceful: false }

export const stopsOnSignal = (): void => {
  state.graceful = true
}

export const onInterrupt = (): number => state.graceful ? ok : interrupted
