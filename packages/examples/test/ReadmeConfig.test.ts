// The README's configuration table, row by row, against the code: each variable's default is the
// default it shows, setting it changes the setting it names, and no setting is left out.
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { PgflowsConfig } from "pgflows"

const readme = Fs.readFileSync(Path.resolve(import.meta.dirname, "../../../README.md"), "utf8")
const section = readme.slice(readme.indexOf("\n## Configuration\n")).split(/\n## /)[1]!
const rows = section.split("\n")
  .filter((line) => line.startsWith("| `PGFLOWS_") || line.startsWith("| `DATABASE_URL"))
  .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim()))
  .map(([variables, fallback]) => ({
    variables: [...variables!.matchAll(/`([A-Z_]+)`/g)].map((match) => match[1]!),
    fallback: fallback!.replaceAll("`", "")
  }))

const fromEnv = (env: Record<string, string>) =>
  PgflowsConfig.fromEnv.pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })))

/** `PGFLOWS_WORKER_CONCURRENCY` names `workerConcurrency`; both URL variables name `databaseUrl`. */
const fieldOf = (variable: string) =>
  variable.replace(/^PGFLOWS_/, "").toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())

/** A default as the README writes it: `30 seconds`, `1 minute`, `16`, `false`, `none`. */
const shown = (value: unknown): string => {
  if (value === undefined) return "none"
  // A retention policy that keeps every state forever.
  if (typeof value === "object" && value !== null && !Duration.isDuration(value)) {
    if (Object.values(value).every((state) => state === undefined)) return "none"
  }
  if (Duration.isDuration(value)) {
    const millis = Duration.toMillis(value)
    for (const [unit, size] of [["minute", 60_000], ["second", 1000]] as const) {
      if (millis % size === 0 && millis >= size) return `${millis / size} ${unit}${millis === size ? "" : "s"}`
    }
    return `${millis} millis`
  }
  return String(value)
}

/** A value other than the default, and how to read it back. */
const sample = (field: string, fallback: unknown): readonly [string, (value: unknown) => unknown, unknown] => {
  if (field === "databaseUrl") return ["postgres://app:pw@db.example:6543/orders", (v: any) => v?.host, "db.example"]
  if (Duration.isDuration(fallback)) return ["1234 millis", (v: any) => Duration.toMillis(v), 1234]
  if (typeof fallback === "boolean") return [String(!fallback), (v) => v, !fallback]
  if (typeof fallback === "number") return [String(fallback + 7), (v) => v, fallback + 7]
  if (field === "migrations") return ["verify", (v) => v, "verify"]
  if (field === "retention") return ["2 days", (v: any) => Duration.toMillis(v.failed), 172_800_000]
  return ["readme_sample", (v) => v, "readme_sample"]
}

describe("the README's configuration table", () => {
  it("lists every setting, once", () => {
    const documented = rows.map((row) => fieldOf(row.variables[0]!))
    assert.deepStrictEqual([...documented].sort(), Object.keys(PgflowsConfig.defaults).sort())
  })

  for (const row of rows) {
    for (const variable of row.variables) {
      const field = variable === "DATABASE_URL" ? "databaseUrl" : fieldOf(variable)
      it.effect(`${variable}: default ${row.fallback}, and it sets ${field}`, () =>
        Effect.gen(function*() {
          const fallback = (PgflowsConfig.defaults as unknown as Record<string, unknown>)[field]
          assert.strictEqual(shown(fallback), row.fallback)
          const empty = (yield* fromEnv({})) as unknown as Record<string, unknown>
          assert.strictEqual(shown(empty[field]), row.fallback)
          const [text, read, expected] = sample(field, fallback)
          const config = (yield* fromEnv({ [variable]: text })) as unknown as Record<string, unknown>
          assert.deepStrictEqual(read(config[field]), expected)
        }))
    }
  }
})
