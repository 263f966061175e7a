#!/usr/bin/env node
/**
 * The `pgflows` executable: `Cli.run` on the process's arguments, under `NodeRuntime.runMain`
 * (SIGTERM and Ctrl-C interrupt the command, which closes what it opened), exiting with
 * `Cli.exitCode`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Effect from "effect/Effect"
import * as Cli from "../Cli.ts"

NodeRuntime.runMain(Cli.run(process.argv.slice(2)).pipe(Effect.provide(NodeServices.layer)), {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(Cli.exitCode(exit as never))
})
