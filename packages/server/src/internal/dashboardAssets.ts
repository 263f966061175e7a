/**
 * The dashboard's static files: `index.html`, `app.js` (the Preact application, bundled) and
 * `app.css`.
 *
 * A published `@pgflows/server` carries them built in `dist/dashboard/` (`scripts/build.ts` writes
 * them with `write`). Inside the repository, where the server runs from its sources, they are
 * bundled in memory from `packages/server/dashboard/` with esbuild (a development dependency) when
 * the layer is built.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export interface Asset {
  readonly body: Uint8Array
  readonly contentType: string
}

export type Assets = ReadonlyMap<string, Asset>

export const files = ["index.html", "app.js", "app.css"] as const

const contentTypes: Record<(typeof files)[number], string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8"
}

/** Where the front-end's sources are, in the repository. */
export const sourceDirectory = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../../dashboard")

/** Where a published package keeps the built files: `dist/dashboard/`, next to `dist/Dashboard.js`. */
export const builtDirectory = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../dashboard")

/** The files of a directory that holds the three, or undefined when one is missing. */
export const fromDirectory = (directory: string): Assets | undefined => {
  const assets = new Map<string, Asset>()
  for (const file of files) {
    const path = Path.join(directory, file)
    if (!Fs.existsSync(path)) return undefined
    assets.set(file, { body: Fs.readFileSync(path), contentType: contentTypes[file] })
  }
  return assets
}

/** Bundles the front-end from its sources (esbuild, minified, with an external source map off). */
export const bundle = async (): Promise<Assets> => {
  const esbuild = await import("esbuild")
  const result = await esbuild.build({
    entryPoints: [Path.join(sourceDirectory, "main.tsx")],
    bundle: true,
    write: false,
    format: "esm",
    target: "es2022",
    minify: true,
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
    logLevel: "silent",
    outfile: "app.js"
  })
  const script = result.outputFiles.find((file) => file.path.endsWith("app.js"))
  if (script === undefined) throw new Error("esbuild wrote no app.js")
  return new Map<string, Asset>([
    ["index.html", {
      body: Fs.readFileSync(Path.join(sourceDirectory, "index.html")),
      contentType: contentTypes["index.html"]
    }],
    ["app.js", { body: script.contents, contentType: contentTypes["app.js"] }],
    ["app.css", {
      body: Fs.readFileSync(Path.join(sourceDirectory, "styles.css")),
      contentType: contentTypes["app.css"]
    }]
  ])
}

/** Writes the bundled files into a directory (the build of the published package). */
export const write = async (directory: string): Promise<void> => {
  const assets = await bundle()
  Fs.mkdirSync(directory, { recursive: true })
  for (const [file, asset] of assets) Fs.writeFileSync(Path.join(directory, file), asset.body)
}
