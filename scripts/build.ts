/**
 * Compiles the packages that users install (`@pgflows/testing`, `pgflows`, `@pgflows/pg-durable`,
 * `@pgflows/server`, `@pgflows/cli`) into their `dist/`: ESM JavaScript, `.d.ts` files and source maps (with the TypeScript inlined,
 * since `src/` is not published), by `tsc -p packages/<name>/tsconfig.build.json`.
 *
 * The workspace itself never needs `dist/`: it runs and type-checks the sources through the
 * `@pgflows/source` export condition. `npm pack` (and so `npm publish`) builds through each
 * package's `prepack` script; `.ci/run`'s consumer test packs every package.
 *
 * A package's build resolves the other packages through their `types` condition (the build
 * configurations clear `customConditions`), so the packages it depends on are built first.
 * `tsc` rewrites the sources' relative `.ts` imports to `.js` in the JavaScript it emits, but keeps
 * them in the `.d.ts` files, which an application's `tsc` would then reject (it has no
 * `allowImportingTsExtensions`): this script rewrites those to `.js` too.
 *
 * The server's build also bundles its web dashboard (`packages/server/dashboard/`, Preact, with
 * esbuild) into `dist/dashboard/`.
 *
 * Usage: `node scripts/build.ts` builds all five; `node scripts/build.ts pg-durable` builds
 * pg-durable and what it depends on.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"

const root = Path.resolve(import.meta.dirname, "..")

/** The published packages, each after the packages whose declarations it imports. */
const order = ["testing", "pgflows", "pg-durable", "server", "cli"] as const
type Name = typeof order[number]
const needs: Record<Name, ReadonlyArray<Name>> = {
  testing: [],
  pgflows: [],
  "pg-durable": ["pgflows"],
  server: ["pgflows", "pg-durable"],
  cli: ["testing", "pgflows", "pg-durable", "server"]
}

const isName = (name: string): name is Name => (order as ReadonlyArray<string>).includes(name)

const requested = process.argv.slice(2)
for (const name of requested) {
  if (!isName(name)) {
    console.error(`build: unknown package ${JSON.stringify(name)}; the published packages are ${order.join(", ")}`)
    process.exit(2)
  }
}
const wanted = new Set<Name>()
const want = (name: Name): void => {
  for (const dependency of needs[name]) want(dependency)
  wanted.add(name)
}
for (const name of requested.length === 0 ? order : requested.filter(isName)) want(name)

const tsc = Path.join(root, "node_modules/typescript/bin/tsc")

/** `"./Step.ts"` to `"./Step.js"` in `from`, `import "..."` and `import("...")` of a declaration file. */
export const rewriteDeclaration = (text: string): string =>
  text.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.{1,2}\/[^"'\n]*?)\.ts\2/g, "$1$2$3.js$2")

const declarations = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".d.ts"))
    .map((file) => Path.join(dir, file))
for (const name of order.filter((name) => wanted.has(name))) {
  const dir = Path.join(root, "packages", name)
  const dist = Path.join(dir, "dist")
  const started = performance.now()
  Fs.rmSync(dist, { recursive: true, force: true })
  const result = ChildProcess.spawnSync(process.execPath, [tsc, "-p", Path.join(dir, "tsconfig.build.json")], {
    cwd: root,
    stdio: "inherit"
  })
  if (result.status !== 0) {
    console.error(`build: tsc failed for packages/${name} (status ${result.status ?? result.signal})`)
    process.exit(1)
  }
  if (!Fs.existsSync(Path.join(dist, "index.js")) || !Fs.existsSync(Path.join(dist, "index.d.ts"))) {
    console.error(`build: packages/${name}/dist has no index.js and index.d.ts after tsc`)
    process.exit(1)
  }
  for (const file of declarations(dist)) {
    const text = Fs.readFileSync(file, "utf8")
    const rewritten = rewriteDeclaration(text)
    if (rewritten !== text) Fs.writeFileSync(file, rewritten)
    const left = /["']\.{1,2}\/[^"'\n]*\.ts["']/.exec(rewritten)
    if (left !== null) {
      console.error(`build: ${Path.relative(root, file)} still imports ${left[0]}`)
      process.exit(1)
    }
  }
  // The server's dashboard: the Preact application bundled by esbuild, served from dist/dashboard/.
  if (name === "server") {
    const assets = pathToFileURL(Path.join(dir, "src/internal/dashboardAssets.ts")).href
    const { write } = (await import(assets)) as { readonly write: (directory: string) => Promise<void> }
    await write(Path.join(dist, "dashboard"))
  }
  const files = Fs.readdirSync(dist, { recursive: true }).length
  console.log(`build: packages/${name}/dist (${files} files) in ${Math.round(performance.now() - started)} ms`)
}
