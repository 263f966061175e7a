/**
 * Workflow versions as the run queue and the `workers` table know them: one text per (workflow,
 * version), the key. Version 0 (a definition without a version, and every run recorded before
 * versions existed) is the workflow's name alone, so messages and worker announcements written
 * before versions keep their meaning; version n > 0 is the name, U+001F and n. A workflow name never
 * holds a control character (`StoredText.nameProblem`), so a key has one reading.
 *
 * A worker reads only messages whose key it registers: an old worker never even sees a run of a
 * version it lacks (docs/ARCHITECTURE.md, "A worker fails only what it could have run").
 */

/** The separator of a key's name and version. */
export const separator = "\u001f"

/** The largest version (PostgreSQL `integer`). */
export const maxVersion = 2_147_483_647

export const key = (workflow: string, version: number): string =>
  version === 0 ? workflow : `${workflow}${separator}${version}`

export const parse = (text: string): { readonly workflow: string; readonly version: number } => {
  const at = text.lastIndexOf(separator)
  if (at === -1) return { workflow: text, version: 0 }
  const version = Number(text.slice(at + 1))
  return Number.isSafeInteger(version) ? { workflow: text.slice(0, at), version } : { workflow: text, version: 0 }
}

/** Why a value cannot be a version, or `undefined` when it can. */
export const problem = (version: unknown): string | undefined =>
  typeof version === "number" && Number.isSafeInteger(version) && version >= 0 && version <= maxVersion
    ? undefined
    : `must be an integer from 0 to ${maxVersion}`

/** How a version reads in messages: nothing for version 0. */
export const label = (workflow: string, version: number): string =>
  version === 0 ? `workflow "${workflow}"` : `workflow "${workflow}" version ${version}`
