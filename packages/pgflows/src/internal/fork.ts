/**
 * The plan of a fork (`Pgflows.fork`): where in the original's journal it restarts, which entries it
 * keeps (those before that point, in the order of `keys.ts`), and which completed steps execute
 * again. Pure: the client reads the journal, the store copies the kept entries.
 */
import type { ForkPlan, RerunStep } from "../Run.ts"
import type * as Store from "../Store.ts"
import * as Keys from "./keys.ts"

/** Resolves `fromStep` (a key, or the name of a step the run executed once) to a journal key. */
export const resolve = (
  journal: ReadonlyArray<Store.StepRecord>,
  fromStep: string
): { readonly _tag: "Key"; readonly key: string } | { readonly _tag: "Invalid"; readonly reason: string } => {
  const positional = journal.filter((entry) => Keys.parse(entry.key) !== undefined && !Keys.isPatchMarker(entry.key))
  if (positional.some((entry) => entry.key === fromStep)) return { _tag: "Key", key: fromStep }
  const named = positional.filter((entry) => entry.name === fromStep).sort((a, b) => Keys.byExecution(a.key, b.key))
  if (named.length === 1) return { _tag: "Key", key: named[0]!.key }
  if (named.length > 1) {
    return {
      _tag: "Invalid",
      reason: `step "${fromStep}" ran at keys ${named.map((entry) => entry.key).join(", ")}; give the key`
    }
  }
  const steps = positional
    .filter((entry) => !entry.name.startsWith("pgflows."))
    .sort((a, b) => Keys.byExecution(a.key, b.key))
    .map((entry) => `${entry.name} (key ${entry.key})`)
  return {
    _tag: "Invalid",
    reason: `the run's journal has no key or step of that name` +
      (steps.length === 0 ? " (it recorded no step)" : ` (its steps: ${steps.join(", ")})`)
  }
}

/** The plan of a fork of `run` at `fromKey` onto `version`. */
export const plan = (
  run: Store.RunRecord,
  journal: ReadonlyArray<Store.StepRecord>,
  fromKey: string,
  version: number
): ForkPlan => {
  const kept: Array<string> = []
  const rerun: Array<RerunStep> = []
  for (const entry of [...journal].sort((a, b) => Keys.byExecution(a.key, b.key))) {
    const order = Keys.compareKeys(entry.key, fromKey)
    if (order === undefined) continue
    if (order === "before") {
      kept.push(entry.key)
    } else if (!Keys.isPatchMarker(entry.key) && entry.status === "completed" && !entry.name.startsWith("pgflows.")) {
      rerun.push({ key: entry.key, name: entry.name, transactional: entry.transactional === true })
    }
  }
  return {
    runId: run.id,
    workflow: run.workflow,
    version,
    fromKey,
    kept,
    rerun,
    repeatedSideEffects: rerun.filter((step) => !step.transactional)
  }
}
