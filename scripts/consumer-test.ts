/**
 * The consumer test: pgflows as a user gets it. It packs the published packages, installs the
 * tarballs into a new project outside the repository, and type-checks, compiles and runs an
 * application there on plain Node against a real PostgreSQL.
 *
 * The checks, in order (a check whose prerequisite failed fails too, saying which):
 *
 * - `pack`: `npm pack` of pgflows, @pgflows/pg-durable, @pgflows/server, @pgflows/testing and @pgflows/cli (their `prepack` builds
 *   `dist/`); each tarball holds `dist/` (JavaScript, `.d.ts`, source maps), `README.md`, `LICENSE`
 *   and `package.json`, and nothing else (no `test/`, no `tsconfig.json`).
 * - `install`: a project in the temporary directory; the `package.json` snippet of
 *   `packages/testing/README.md` (`allowScripts`), then the `npm install` lines of the README's "Use
 *   it in your project" and of the testing README's "Install", with the tarballs in place of our
 *   package names and everything else from the registry (a peer dependency of ours, such as
 *   `effect`, at our peer range), then TypeScript and `@types/node`. One copy of `effect` must
 *   result.
 * - `typecheck`: `tsc` with `scripts/consumer/app/tsconfig.json` (strict,
 *   `exactOptionalPropertyTypes`, `noPropertyAccessFromIndexSignature`, `NodeNext`, no
 *   `allowImportingTsExtensions`, no `skipLibCheck`) over `scripts/consumer/app/src`, the README's
 *   quick start, and the testing README's `vitest.config.ts` and test; it also compiles them.
 * - `exports`: the barrels, deep imports (`pgflows/Step`), `@pgflows/testing/globalSetup` load on
 *   plain Node, and `internal/` modules are refused.
 * - `database`: the installed `@pgflows/testing` gives a server (`DATABASE_URL` when set, else an
 *   embedded PostgreSQL 18) and an empty database on it.
 * - `quickstart`: the README's quick start completes a run.
 * - `worker-sigterm`: a worker process (`client.runWorker()` under `NodeRuntime.runMain`) gets
 *   SIGTERM in the middle of a step; it must exit with status 0 within `shutdownGrace` plus a
 *   margin, and the run in flight must end `completed`.
 * - `server`: `@pgflows/server` serves on a free loopback port (`scripts/consumer/app/src/server.ts`):
 *   `/health`, the OpenAPI document, and a request without a token refused.
 * - `cli`: the installed `pgflows` bin (`@pgflows/cli`): `--help`, `migrate --verify` and `runs list
 *   --json` against the database, and `dashboard` on a free port, whose page and script load (the
 *   dashboard's files are in the tarball), stopped by SIGTERM with status 0.
 * - `vitest`: the testing README's test, run by vitest in the project with its global setup.
 *
 * Usage: `npm run test:consumer` (`.ci/run` runs it after `npm test`; `npm test` does not). It
 * writes `.tmp/consumer-report.json` for `scripts/test-summary.ts` and exits 1 when a check failed.
 * `PGFLOWS_CONSUMER_KEEP=1` keeps the project directory (it is kept anyway when a check fails).
 *
 * To add a check: put the program under `scripts/consumer/app/src/` (it is compiled with the rest)
 * and add an entry to `checks` below.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const appTemplate = Path.join(import.meta.dirname, "consumer/app")
const reportPath = Path.join(root, ".tmp/consumer-report.json")
const published = {
  pgflows: "pgflows",
  "@pgflows/pg-durable": "pg-durable",
  "@pgflows/server": "server",
  "@pgflows/testing": "testing",
  "@pgflows/cli": "cli"
} as const
type Published = keyof typeof published

// ---------------------------------------------------------------------------------------------
// Processes

interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
  readonly timedOut: boolean
}

class Failure extends Error {
  readonly output: string | undefined
  constructor(message: string, output?: string) {
    super(message)
    this.output = output
  }
}

/**
 * The environment of the consumer project's commands: ours without what npm and this repository
 * add (npm_* settings, NODE_OPTIONS with the `@pgflows/source` condition, node_modules/.bin of the
 * workspace, the test server of a surrounding vitest), so the project sees a plain shell.
 */
const consumerEnv = (extra: Readonly<Record<string, string | undefined>> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || key === "NODE_OPTIONS" || key === "INIT_CWD" || key === "NODE" || key === "NODE_PATH") {
      continue
    }
    if (key === "DATABASE_URL" || key.startsWith("PGFLOWS_") || key.startsWith("VITEST")) continue
    env[key] = value
  }
  env["PATH"] = (process.env["PATH"] ?? "")
    .split(Path.delimiter)
    .filter((dir) => !dir.includes(`${Path.sep}node_modules${Path.sep}.bin`))
    .join(Path.delimiter)
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key]
    else env[key] = value
  }
  return env
}

const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: NodeJS.ProcessEnv; readonly timeoutMs: number }
): Promise<Ran> =>
  new Promise((resolve) => {
    const child = ChildProcess.spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    let timedOut = false
    child.stdout.on("data", (chunk) => output += chunk)
    child.stderr.on("data", (chunk) => output += chunk)
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, options.timeoutMs)
    child.on("error", (error) => output += `\n${String(error)}`)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, output, timedOut })
    })
  })

/** Runs a command and fails with its output unless it exits with 0. */
const succeed = async (
  what: string,
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: NodeJS.ProcessEnv; readonly timeoutMs: number }
): Promise<Ran> => {
  step(`${what}: ${[command, ...args].map(shellWord).join(" ")}`)
  const ran = await run(command, args, options)
  if (ran.timedOut) throw new Failure(`${what}: still running after ${options.timeoutMs / 1000} s, killed`, ran.output)
  if (ran.code !== 0) throw new Failure(`${what}: exited with ${ran.code ?? ran.signal}`, ran.output)
  return ran
}

/** A long-running process whose output is watched while it runs. */
interface Running {
  readonly child: ChildProcess.ChildProcess
  readonly output: () => string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly waitFor: (pattern: RegExp, timeoutMs: number, what: string) => Promise<RegExpExecArray>
}

const start = (command: string, args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv): Running => {
  const child = ChildProcess.spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout.on("data", (chunk) => output += chunk)
  child.stderr.on("data", (chunk) => output += chunk)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal }))
  )
  let done = false
  void exited.then(() => done = true)
  const waitFor = async (pattern: RegExp, timeoutMs: number, what: string) => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const match = pattern.exec(output)
      if (match !== null) return match
      if (done) throw new Failure(`${what}: the process exited (${child.exitCode ?? child.signalCode}) first`, output)
      if (Date.now() > deadline) throw new Failure(`${what}: not seen within ${timeoutMs / 1000} s`, output)
      await sleep(25)
    }
  }
  return { child, output: () => output, exited, waitFor }
}

/** SIGTERM, then SIGKILL after `graceMs`. */
const stop = async (running: Running, graceMs: number): Promise<void> => {
  if (running.child.exitCode !== null || running.child.signalCode !== null) return
  running.child.kill("SIGTERM")
  const timer = setTimeout(() => running.child.kill("SIGKILL"), graceMs)
  await running.exited
  clearTimeout(timer)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const shellWord = (word: string) => /^[\w@%+=:,./~^-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`
const step = (line: string) => console.log(`consumer:     ${line}`)
const tail = (text: string, lines = 60) =>
  text.trimEnd().split("\n").slice(-lines).map((line) => `      | ${line}`).join("\n")

// ---------------------------------------------------------------------------------------------
// The READMEs

interface Block {
  readonly lang: string
  readonly body: string
}

const section = (markdown: string, heading: string): string => {
  const start = markdown.indexOf(`\n## ${heading}\n`)
  if (start < 0) throw new Failure(`no section "## ${heading}"`)
  const next = markdown.indexOf("\n## ", start + 1)
  return markdown.slice(start, next < 0 ? undefined : next)
}

const blocks = (markdown: string): Array<Block> =>
  [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((match) => ({
    lang: match[1] ?? "",
    body: match[2] ?? ""
  }))

const installLines = (markdown: string, heading: string): Array<Array<string>> =>
  blocks(section(markdown, heading))
    .filter((block) => block.lang === "sh")
    .flatMap((block) => block.body.split("\n"))
    .map((line) => line.trim())
    .filter((line) => line.startsWith("npm install "))
    .map((line) => line.split(/\s+/))

/** The ```ts blocks whose first line names their file (`// test/orders.test.ts`). */
const namedFiles = (markdown: string): Array<{ readonly path: string; readonly body: string }> =>
  blocks(markdown).flatMap((block) => {
    const name = /^\/\/ ([\w./-]+\.ts)\n/.exec(block.body)?.[1]
    return block.lang === "ts" && name !== undefined ? [{ path: name, body: block.body }] : []
  })

// ---------------------------------------------------------------------------------------------
// The checks

const id = Crypto.randomBytes(3).toString("hex")
const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pgflows-consumer-"))
// mkdtemp makes it 0700; run as root, the embedded server runs as the `postgres` user, which must
// reach the binaries under the project's node_modules.
Fs.chmodSync(work, 0o755)
const tarballDir = Path.join(work, "tarballs")
const project = Path.join(work, "app")
const tarballs = new Map<Published, string>()
const userDatabaseUrl = process.env["DATABASE_URL"]?.trim() || undefined
const rootPackage = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")) as {
  readonly devDependencies: Readonly<Record<string, string>>
}
let database: { readonly url: string; readonly process?: Running } | undefined
const node = process.execPath
const npm = "npm"
const grace = { text: "6 seconds", ms: 6_000 }
const stepMillis = 3_000
const exitMargin = 4_000

interface Check {
  readonly name: string
  readonly needs: ReadonlyArray<string>
  readonly run: () => Promise<string>
}

const checks: ReadonlyArray<Check> = [
  {
    name: "pack",
    needs: [],
    run: async () => {
      Fs.mkdirSync(tarballDir, { recursive: true })
      const workspaces = Object.values(published).flatMap((dir) => ["--workspace", `packages/${dir}`])
      try {
        await succeed("npm pack", npm, ["pack", ...workspaces, "--pack-destination", tarballDir], {
          cwd: root,
          env: process.env,
          timeoutMs: 180_000
        })
      } finally {
        // The builds leave dist/ behind (a package's build builds what it depends on, after their own
        // pack): the workspace runs its sources, and a stale dist/ would shadow them for other tools.
        for (const dir of Object.values(published)) {
          Fs.rmSync(Path.join(root, "packages", dir, "dist"), { recursive: true, force: true })
        }
      }
      const sizes: Array<string> = []
      for (const file of Fs.readdirSync(tarballDir).filter((file) => file.endsWith(".tgz"))) {
        const listing = await succeed("list", "tar", ["-tzf", Path.join(tarballDir, file)], {
          cwd: work,
          env: process.env,
          timeoutMs: 30_000
        })
        const entries = listing.output.trim().split("\n").map((entry) => entry.replace(/^package\//, ""))
        const stray = entries.filter((entry) =>
          !entry.startsWith("dist/") && !["package.json", "README.md", "LICENSE"].includes(entry)
        )
        if (stray.length > 0) throw new Failure(`${file} holds files outside dist/: ${stray.join(", ")}`)
        for (
          const wanted of [
            "package.json",
            "README.md",
            "LICENSE",
            "dist/index.js",
            "dist/index.d.ts",
            "dist/index.js.map"
          ]
        ) {
          if (!entries.includes(wanted)) throw new Failure(`${file} has no ${wanted}`)
        }
        const manifest = await packedManifest(Path.join(tarballDir, file))
        if (manifest.private === true) throw new Failure(`${file}: ${manifest.name} is private`)
        if (manifest.peerDependencies?.["effect"] === undefined) {
          throw new Failure(`${file}: effect is no peer dependency`)
        }
        tarballs.set(manifest.name, Path.join(tarballDir, file))
        sizes.push(
          `${file} (${entries.length} files, ${Math.round(Fs.statSync(Path.join(tarballDir, file)).size / 1024)} kB)`
        )
      }
      for (const name of Object.keys(published) as Array<Published>) {
        if (!tarballs.has(name)) throw new Failure(`npm pack made no tarball of ${name}`)
      }
      return sizes.join(", ")
    }
  },
  {
    name: "install",
    needs: ["pack"],
    run: async () => {
      Fs.cpSync(appTemplate, project, { recursive: true })
      const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
      const testingReadme = Fs.readFileSync(Path.join(root, "packages/testing/README.md"), "utf8")
      const quickstart = /## Quick start\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1]
      if (quickstart === undefined) throw new Failure("README.md has no quick start block")
      Fs.writeFileSync(Path.join(project, "src/quickstart.ts"), quickstart)
      const files = namedFiles(testingReadme)
      for (const wanted of ["vitest.config.ts", "test/"]) {
        if (!files.some((file) => file.path.startsWith(wanted))) {
          throw new Failure(`packages/testing/README.md shows no ${wanted} block (a \`// ${wanted}...\` first line)`)
        }
      }
      for (const file of files) {
        Fs.mkdirSync(Path.dirname(Path.join(project, file.path)), { recursive: true })
        Fs.writeFileSync(Path.join(project, file.path), file.body)
      }
      const snippet = blocks(section(testingReadme, "Install")).find((block) => block.lang === "json")
      if (snippet === undefined) throw new Failure("packages/testing/README.md shows no package.json snippet")
      Fs.writeFileSync(
        Path.join(project, "package.json"),
        JSON.stringify(
          { name: `pgflows-consumer-${id}`, private: true, type: "module", ...JSON.parse(snippet.body) },
          null,
          2
        ) + "\n"
      )
      const lines = [...installLines(readme, "Use it in your project"), ...installLines(testingReadme, "Install")]
      if (lines.length < 2) throw new Failure("the READMEs show fewer than two `npm install` lines")
      lines.push([
        "npm",
        "install",
        "--save-dev",
        `typescript@${rootPackage.devDependencies["typescript"]}`,
        `@types/node@${rootPackage.devDependencies["@types/node"]}`
      ])
      // Our packages from the tarballs; a bare name that is a peer dependency of ours at our range.
      const peers = new Map<string, string>()
      for (const tarball of tarballs.values()) {
        const manifest = await packedManifest(tarball)
        for (const [name, range] of Object.entries(manifest.peerDependencies ?? {})) {
          if (!(name in published)) peers.set(name, range)
        }
      }
      for (const line of lines) {
        const args = line.slice(1).map((word) => {
          const range = peers.get(word)
          return tarballs.get(word as Published) ?? (range === undefined ? word : `${word}@${range}`)
        })
        await succeed("npm install", npm, [...args, "--no-audit", "--no-fund"], {
          cwd: project,
          env: consumerEnv(),
          timeoutMs: 300_000
        })
      }
      const copies = findPackages(Path.join(project, "node_modules"), "effect")
      if (copies.length !== 1) {
        throw new Failure(`${copies.length} copies of effect are installed: ${copies.join(", ")}`)
      }
      const version = (name: string) =>
        (JSON.parse(Fs.readFileSync(Path.join(project, "node_modules", name, "package.json"), "utf8")) as {
          readonly version: string
        }).version
      return `${lines.length} npm install commands; effect ${version("effect")}, @effect/sql-pg ${
        version("@effect/sql-pg")
      }, @opentelemetry/api ${version("@opentelemetry/api")}`
    }
  },
  {
    name: "typecheck",
    needs: ["install"],
    run: async () => {
      const ran = await run(node, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"], {
        cwd: project,
        env: consumerEnv(),
        timeoutMs: 180_000
      })
      if (ran.code !== 0) {
        const errors = ran.output.split("\n").filter((line) => /error TS\d+/.test(line))
        throw new Failure(`tsc reports ${errors.length} error(s)`, ran.output)
      }
      return `tsc -p tsconfig.json: no errors; ${
        Fs.readdirSync(Path.join(project, "build"), { recursive: true }).filter((file) => String(file).endsWith(".js"))
          .length
      } files compiled`
    }
  },
  {
    name: "exports",
    needs: ["typecheck"],
    run: async () => {
      const ran = await succeed("exports", node, ["build/src/exports.js"], {
        cwd: project,
        env: consumerEnv(),
        timeoutMs: 60_000
      })
      if (!ran.output.includes("exports: ok")) throw new Failure("build/src/exports.js did not say ok", ran.output)
      return "barrels, deep imports and globalSetup load; internal/ refused"
    }
  },
  {
    name: "database",
    needs: ["typecheck"],
    run: async () => {
      const helper = start(node, ["build/src/database.js"], project, consumerEnv({ DATABASE_URL: userDatabaseUrl }))
      const match = await helper.waitFor(/^\{"url":.*\}$/m, 120_000, "the database line").catch(async (error) => {
        await stop(helper, 10_000)
        throw error
      })
      const line = JSON.parse(match[0]) as { readonly url: string; readonly description: string }
      database = { url: line.url, process: helper }
      return line.description
    }
  },
  {
    name: "quickstart",
    needs: ["database"],
    run: async () => {
      const ran = await succeed("quick start", node, ["build/src/quickstart.js"], {
        cwd: project,
        env: consumerEnv({ DATABASE_URL: database!.url }),
        timeoutMs: 90_000
      })
      const line = /completed: charge_payment, pgflows\.sleep/.exec(ran.output)
      if (line === null) {
        throw new Failure("the quick start did not log `completed: charge_payment, pgflows.sleep`", ran.output)
      }
      return line[0]
    }
  },
  {
    name: "worker-sigterm",
    needs: ["database"],
    run: async () => {
      const env = consumerEnv({ DATABASE_URL: database!.url, SHUTDOWN_GRACE_MS: String(grace.ms) })
      const worker = start(node, ["build/src/worker.js"], project, env)
      let runId: string
      try {
        await worker.waitFor(/worker ready/, 60_000, "`worker ready`")
        const started = await succeed("start a run", node, [
          "build/src/client.js",
          "start",
          `sigterm-${id}`,
          String(stepMillis)
        ], {
          cwd: project,
          env: consumerEnv({ DATABASE_URL: database!.url }),
          timeoutMs: 60_000
        })
        const match = /started run (\S+)/.exec(started.output)
        if (match === null) throw new Failure("client.js start printed no run id", started.output)
        runId = match[1]!
        await worker.waitFor(/step started: /, 60_000, "`step started` in the worker")
      } catch (error) {
        await stop(worker, 5_000)
        throw error
      }
      step(`run ${runId} is in its step (${stepMillis} ms); SIGTERM, shutdownGrace ${grace.text}`)
      const sent = performance.now()
      worker.child.kill("SIGTERM")
      const limit = grace.ms + exitMargin
      const killer = setTimeout(() => worker.child.kill("SIGKILL"), limit + 10_000)
      const exit = await worker.exited
      clearTimeout(killer)
      const elapsed = performance.now() - sent
      const status = await succeed("status", node, ["build/src/client.js", "status", runId], {
        cwd: project,
        env: consumerEnv({ DATABASE_URL: database!.url }),
        timeoutMs: 60_000
      })
      const state = /\{"status":.*\}/.exec(status.output)?.[0]
      const problems: Array<string> = []
      if (exit.code !== 0) problems.push(`the worker exited with ${exit.code ?? exit.signal}, not 0`)
      if (elapsed > limit) {
        problems.push(
          `it took ${(elapsed / 1000).toFixed(1)} s to exit, more than shutdownGrace + ${exitMargin / 1000} s`
        )
      }
      const parsed = state === undefined ? undefined : JSON.parse(state) as { readonly status: string }
      if (parsed?.status !== "completed") {
        problems.push(
          `the run in flight ended ${parsed?.status ?? "(no status)"}, not completed: the worker did not let it ` +
            `finish within shutdownGrace`
        )
      }
      const summary = `exit ${exit.code ?? exit.signal} after ${(elapsed / 1000).toFixed(1)} s, run ${
        parsed?.status ?? "?"
      }`
      if (problems.length > 0) {
        throw new Failure(`${problems.join("; ")} (${summary})`, `${worker.output()}\n--- status\n${status.output}`)
      }
      return summary
    }
  },
  {
    name: "server",
    needs: ["database"],
    run: async () => {
      const ran = await succeed("server", node, ["build/src/server.js"], {
        cwd: project,
        env: consumerEnv({ DATABASE_URL: database!.url }),
        timeoutMs: 90_000
      })
      const line = /server: ok .*/.exec(ran.output)
      if (line === null) throw new Failure("build/src/server.js did not say `server: ok`", ran.output)
      return line[0]
    }
  },
  {
    name: "cli",
    needs: ["database"],
    run: async () => {
      const pgflows = Path.join(project, "node_modules/.bin/pgflows")
      const env = consumerEnv({ DATABASE_URL: database!.url })
      const help = await succeed("pgflows --help", pgflows, ["--help"], { cwd: project, env, timeoutMs: 60_000 })
      for (const command of ["dev", "migrate", "worker", "runs", "replay", "export-sql", "dashboard"]) {
        if (!help.output.includes(command)) throw new Failure(`pgflows --help does not list ${command}`, help.output)
      }
      await succeed("pgflows migrate", pgflows, ["migrate"], { cwd: project, env, timeoutMs: 60_000 })
      await succeed("pgflows migrate --verify", pgflows, ["migrate", "--verify"], {
        cwd: project,
        env,
        timeoutMs: 60_000
      })
      const listed = await run(pgflows, ["runs", "list", "--json"], { cwd: project, env, timeoutMs: 60_000 })
      if (listed.code !== 0) throw new Failure(`pgflows runs list --json exited with ${listed.code}`, listed.output)
      const json = /^\{[\s\S]*\}\s*$/m.exec(listed.output)?.[0]
      const runs = json === undefined
        ? undefined
        : (JSON.parse(json) as { readonly runs?: ReadonlyArray<unknown> }).runs
      if (!Array.isArray(runs)) throw new Failure("pgflows runs list --json printed no { runs }", listed.output)
      const dashboard = start(pgflows, ["dashboard", "--port", "0"], project, env)
      let served: string
      try {
        const [, base] = await dashboard.waitFor(
          /dashboard: (http:\/\/\S+?)\/dashboard\//,
          60_000,
          "the dashboard's link"
        )
        const page = await fetch(`${base}/dashboard/`)
        const script = await fetch(`${base}/dashboard/app.js`)
        const refused = await fetch(`${base}/views/runs`)
        if (page.status !== 200 || !(await page.text()).includes("/dashboard/app.js")) {
          throw new Failure(`GET /dashboard/ answered ${page.status} without the page`, dashboard.output())
        }
        if (script.status !== 200 || (await script.text()).length < 10_000) {
          throw new Failure(
            `GET /dashboard/app.js answered ${script.status}, or a script too small`,
            dashboard.output()
          )
        }
        if (refused.status !== 401) throw new Failure(`GET /views/runs without a token answered ${refused.status}`)
        served = base!
      } finally {
        dashboard.child.kill("SIGTERM")
      }
      const exit = await dashboard.exited
      if (exit.code !== 0) {
        throw new Failure(
          `pgflows dashboard exited with ${exit.code ?? exit.signal} after SIGTERM, not 0`,
          dashboard.output()
        )
      }
      return `--help, migrate, runs list --json (${runs.length} runs), dashboard at ${served} (page, script, 401), exit 0 on SIGTERM`
    }
  },
  {
    name: "vitest",
    needs: ["typecheck"],
    run: async () => {
      const report = Path.join(project, "vitest-report.json")
      const ran = await run(
        node,
        [
          "node_modules/vitest/vitest.mjs",
          "run",
          "--reporter=default",
          "--reporter=json",
          `--outputFile.json=${report}`
        ],
        { cwd: project, env: consumerEnv({ DATABASE_URL: userDatabaseUrl, CI: "true" }), timeoutMs: 240_000 }
      )
      if (ran.timedOut) throw new Failure("vitest still running after 240 s, killed", ran.output)
      if (!Fs.existsSync(report)) {
        throw new Failure(`vitest exited with ${ran.code ?? ran.signal} and wrote no report`, ran.output)
      }
      const result = JSON.parse(Fs.readFileSync(report, "utf8")) as {
        readonly numPassedTests: number
        readonly numFailedTests: number
        readonly numTotalTests: number
      }
      if (ran.code !== 0 || result.numFailedTests > 0 || result.numPassedTests === 0) {
        throw new Failure(
          `vitest exited with ${
            ran.code ?? ran.signal
          }: ${result.numPassedTests} passed, ${result.numFailedTests} failed`,
          ran.output
        )
      }
      const server = /\[pgflows\] tests use (.+?): PostgreSQL/.exec(ran.output)?.[1]
      return `${result.numPassedTests} of ${result.numTotalTests} tests passed${
        server === undefined ? "" : ` on ${server}`
      }`
    }
  }
]

interface Manifest {
  readonly name: Published
  readonly private?: boolean
  readonly peerDependencies?: Readonly<Record<string, string>>
}

/** The package.json inside a tarball. */
const packedManifest = async (tarball: string): Promise<Manifest> =>
  JSON.parse(
    (await run("tar", ["-xzOf", tarball, "package/package.json"], { cwd: work, env: process.env, timeoutMs: 30_000 }))
      .output
  ) as Manifest

/** Directories named `name` under `node_modules` that hold a package.json, at any depth. */
const findPackages = (dir: string, name: string): Array<string> => {
  const found: Array<string> = []
  const visit = (modules: string) => {
    if (!Fs.existsSync(modules)) return
    for (const entry of Fs.readdirSync(modules)) {
      if (entry.startsWith("@")) {
        for (const scoped of Fs.readdirSync(Path.join(modules, entry))) {
          inspect(Path.join(modules, entry, scoped), `${entry}/${scoped}`)
        }
      } else if (!entry.startsWith(".")) inspect(Path.join(modules, entry), entry)
    }
  }
  const inspect = (path: string, packageName: string) => {
    if (packageName === name && Fs.existsSync(Path.join(path, "package.json"))) found.push(path)
    visit(Path.join(path, "node_modules"))
  }
  visit(dir)
  return found
}

// ---------------------------------------------------------------------------------------------
// Main

interface Result {
  readonly name: string
  readonly ok: boolean
  readonly seconds: number
  readonly detail: string
}

const results: Array<Result> = []
const began = performance.now()
console.log(
  `consumer: node ${process.version}; project in ${project}; database: ${
    userDatabaseUrl === undefined ? "embedded PostgreSQL (no DATABASE_URL)" : "DATABASE_URL"
  }`
)
try {
  for (const [index, check] of checks.entries()) {
    const label = `[${index + 1}/${checks.length}] ${check.name}`
    const missing = check.needs.filter((need) => !results.some((result) => result.name === need && result.ok))
    if (missing.length > 0) {
      const detail = `not run: ${missing.join(", ")} failed`
      console.log(`consumer: ${label} FAILED: ${detail}`)
      results.push({ name: check.name, ok: false, seconds: 0, detail })
      continue
    }
    console.log(`consumer: ${label} ...`)
    const started = performance.now()
    try {
      const detail = await check.run()
      const seconds = (performance.now() - started) / 1000
      console.log(`consumer: ${label} ok (${seconds.toFixed(1)} s): ${detail}`)
      results.push({ name: check.name, ok: true, seconds, detail })
    } catch (error) {
      const seconds = (performance.now() - started) / 1000
      const detail = error instanceof Error ? error.message : String(error)
      console.log(`consumer: ${label} FAILED (${seconds.toFixed(1)} s): ${detail}`)
      if (error instanceof Failure && error.output !== undefined && error.output.trim() !== "") {
        console.log(`consumer:     output (last lines):\n${tail(error.output)}`)
      }
      results.push({ name: check.name, ok: false, seconds, detail })
    }
  }
} finally {
  if (database?.process !== undefined) {
    await stop(database.process, 30_000)
    const exit = await database.process.exited
    step(`database helper stopped (${exit.code ?? exit.signal}): it drops its database and stops a server it started`)
  }
}

const failed = results.filter((result) => !result.ok)
Fs.mkdirSync(Path.dirname(reportPath), { recursive: true })
Fs.writeFileSync(reportPath, JSON.stringify({ project, checks: results }, null, 2) + "\n")
const total = ((performance.now() - began) / 1000).toFixed(1)
if (failed.length === 0 && process.env["PGFLOWS_CONSUMER_KEEP"] !== "1") {
  Fs.rmSync(work, { recursive: true, force: true })
} else {
  console.log(`consumer: the project is kept in ${project}`)
}
console.log(
  `consumer: ${results.length - failed.length} of ${results.length} checks passed in ${total} s` +
    (failed.length === 0 ? "" : `; failed: ${failed.map((result) => result.name).join(", ")}`)
)
process.exit(failed.length === 0 ? 0 : 1)
