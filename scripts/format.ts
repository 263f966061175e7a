/**
 * Formats the repository with dprint's WebAssembly plugins, run in-process by `@dprint/formatter`,
 * with the settings of `dprint.json`. The plugins are npm packages (`@dprint/typescript`,
 * `@dprint/json`, `@dprint/markdown`): nothing is downloaded at run time and no native binary is
 * needed.
 *
 * Usage: `node scripts/format.ts` rewrites files; `node scripts/format.ts --check` lists the files
 * that are not formatted and exits 1.
 */
import { createContext } from "@dprint/formatter"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const check = process.argv.includes("--check")

interface DprintJson {
  readonly lineWidth?: number
  readonly indentWidth?: number
  readonly excludes?: ReadonlyArray<string>
  readonly plugins?: ReadonlyArray<string>
  readonly [plugin: string]: unknown
}

const config = JSON.parse(Fs.readFileSync(Path.join(root, "dprint.json"), "utf8")) as DprintJson
const context = createContext({
  ...(config.lineWidth === undefined ? {} : { lineWidth: config.lineWidth }),
  ...(config.indentWidth === undefined ? {} : { indentWidth: config.indentWidth })
})
for (const plugin of config.plugins ?? []) {
  const key = /@dprint\/([a-z]+)\//.exec(plugin)?.[1] ?? ""
  context.addPlugin(Fs.readFileSync(Path.join(root, plugin)), (config[key] ?? {}) as Record<string, unknown>)
}
const diagnostics = context.getConfigDiagnostics()
if (diagnostics.length > 0) {
  for (const diagnostic of diagnostics) {
    console.error(`format: dprint.json: ${diagnostic.propertyName}: ${diagnostic.message}`)
  }
  process.exit(1)
}

const skipped = new Set([".git", "node_modules", ".tools", ".tmp", "dist", "coverage"])
const extensions = new Set([".ts", ".tsx", ".json", ".md"])
const excludedFiles = new Set(["package-lock.json"])

const walk = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = Path.join(dir, entry.name)
    if (entry.isDirectory()) return skipped.has(entry.name) ? [] : walk(path)
    return entry.isFile() && extensions.has(Path.extname(entry.name)) && !excludedFiles.has(entry.name) ? [path] : []
  })

const unformatted: Array<string> = []
let failed = false
for (const file of walk(root)) {
  const text = Fs.readFileSync(file, "utf8")
  let formatted: string
  try {
    formatted = context.formatText({ filePath: file, fileText: text })
  } catch (error) {
    console.error(`format: ${Path.relative(root, file)}: ${error instanceof Error ? error.message : String(error)}`)
    failed = true
    continue
  }
  if (formatted === text) continue
  if (check) unformatted.push(Path.relative(root, file))
  else Fs.writeFileSync(file, formatted)
}
if (unformatted.length > 0) {
  console.error(`format: not formatted (run \`npm run format\`):\n  ${unformatted.join("\n  ")}`)
}
process.exit(failed || unformatted.length > 0 ? 1 : 0)
