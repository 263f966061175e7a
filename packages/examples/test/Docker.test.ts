/**
 * docker/, checked without a Docker engine (there is none where these tests run): every compose file
 * parses and refers only to files, stages, services and volumes that exist; every Dockerfile pins its
 * base images and copies only what its build context has (and its .dockerignore lets through); the
 * application image copies every module its programs import and declares every package they import,
 * at the versions the workspace pins; and each program the image runs is one a test runs: the worker
 * by `npm run example:sre` (Sre.test.ts), the incident API and the checkout service here.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Yaml from "yaml"

const root = Path.resolve(import.meta.dirname, "../../..")
const docker = Path.join(root, "docker")
const rel = (file: string) => Path.relative(root, file)

// --- Dockerfiles -------------------------------------------------------------------------------

interface Instruction {
  readonly keyword: string
  readonly args: string
}

/** The instructions of a Dockerfile: comments dropped, continuation lines joined. */
const instructions = (file: string): ReadonlyArray<Instruction> => {
  const logical: Array<string> = []
  let current = ""
  for (const line of Fs.readFileSync(file, "utf8").split("\n")) {
    if (current === "" && /^\s*#/.test(line)) continue
    if (/^\s*#/.test(line)) continue // a comment inside a continued instruction
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " "
      continue
    }
    current += line
    if (current.trim() !== "") logical.push(current.trim())
    current = ""
  }
  return logical.map((line) => {
    const [keyword, ...rest] = line.split(/\s+/)
    return { keyword: keyword!.toUpperCase(), args: rest.join(" ") }
  })
}

/** The ARG defaults declared before the first FROM (what FROM lines may use). */
const globalArgs = (steps: ReadonlyArray<Instruction>) => {
  const args = new Map<string, string | undefined>()
  for (const step of steps) {
    if (step.keyword === "FROM") break
    if (step.keyword !== "ARG") continue
    const [name, value] = step.args.split("=", 2)
    args.set(name!, value)
  }
  return args
}

const stages = (steps: ReadonlyArray<Instruction>) =>
  steps.filter((step) => step.keyword === "FROM").map((step) => {
    const [image, as, name] = step.args.replace(/--platform=\S+\s+/, "").split(/\s+/)
    return { image: image!, name: as?.toUpperCase() === "AS" ? name : undefined }
  })

/** COPY instructions from the build context (not `--from`): their sources and destination. */
const copies = (steps: ReadonlyArray<Instruction>) =>
  steps.filter((step) => step.keyword === "COPY" && !/--from=/.test(step.args)).map((step) => {
    const parts = step.args.split(/\s+/).filter((part) => !part.startsWith("--"))
    return { sources: parts.slice(0, -1), destination: parts.at(-1)! }
  })

/** `.dockerignore` semantics enough for our files: patterns in order, `!` re-includes. */
const ignored = (ignoreFile: string, path: string): boolean => {
  if (!Fs.existsSync(ignoreFile)) return false
  let result = false
  for (const raw of Fs.readFileSync(ignoreFile, "utf8").split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) continue
    const negated = line.startsWith("!")
    const pattern = (negated ? line.slice(1) : line).replace(/\/$/, "")
    const regex = new RegExp(
      `^${pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*")}(/.*)?$`
    )
    if (regex.test(path.replace(/\/$/, ""))) result = !negated
  }
  return result
}

// --- compose files -----------------------------------------------------------------------------

const composeFiles = Fs.readdirSync(docker).filter((file) => /^compose(\.[\w-]+)?\.ya?ml$/.test(file)).sort()

const readCompose = (file: string): any => Yaml.parse(Fs.readFileSync(Path.join(docker, file), "utf8"), { merge: true })

/** The Dockerfiles the compose files build, with their contexts. */
const builds = () => {
  const found = new Map<string, { readonly dockerfile: string; readonly context: string; readonly by: string }>()
  for (const file of composeFiles) {
    for (const [name, service] of Object.entries<any>(readCompose(file).services ?? {})) {
      if (service.build === undefined) continue
      const context = Path.resolve(docker, service.build.context ?? ".")
      const dockerfile = Path.resolve(context, service.build.dockerfile ?? "Dockerfile")
      found.set(dockerfile, { dockerfile, context, by: `${file}: ${name}` })
    }
  }
  return [...found.values()]
}

// --- the application image's programs ----------------------------------------------------------

const worker = Path.join(docker, "worker/Dockerfile")

/** Where each file the image copies into /app comes from: `src/sreWorker.ts` -> packages/.../sreWorker.ts. */
const imageFiles = (): ReadonlyMap<string, string> => {
  const files = new Map<string, string>()
  for (const copy of copies(instructions(worker))) {
    for (const source of copy.sources) {
      const destination = copy.destination.endsWith("/")
        ? Path.posix.join(copy.destination, Path.basename(source))
        : copy.destination
      files.set(Path.posix.normalize(destination).replace(/^\.\//, ""), Path.join(root, source))
    }
  }
  return files
}

const importsOf = (file: string): ReadonlyArray<string> =>
  [...Fs.readFileSync(file, "utf8").matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gm)].map((match) => match[1]!)

/** The modules a program needs (itself and its relative imports, transitively) and the packages they import. */
const closure = (entry: string) => {
  const modules = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string) => {
    if (modules.has(file)) return
    modules.add(file)
    for (const specifier of importsOf(file)) {
      if (specifier.startsWith(".")) visit(Path.resolve(Path.dirname(file), specifier))
      else if (!specifier.startsWith("node:")) {
        packages.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!)
      }
    }
  }
  visit(entry)
  return { modules, packages }
}

const freePort = () =>
  Effect.promise(() =>
    new Promise<number>((resolve) => {
      const server = Net.createServer()
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as Net.AddressInfo).port
        server.close(() => resolve(port))
      })
    })
  )

/** Starts a program of the image as the image would (its file, the environment), until `ready` prints. */
const program = (file: string, env: Record<string, string>, ready: RegExp) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly child: ChildProcess.ChildProcess; readonly output: () => string }>((resume) => {
      const child = ChildProcess.spawn(process.execPath, [file], {
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      const onData = (chunk: Buffer) => {
        output += chunk
        if (ready.test(output)) resume(Effect.succeed({ child, output: () => output }))
      }
      child.stdout!.on("data", onData)
      child.stderr!.on("data", onData)
      child.on("exit", (code) => resume(Effect.die(new Error(`${rel(file)} exited (${code}):\n${output}`))))
    }).pipe(Effect.timeout("30 seconds"), Effect.orDie),
    ({ child }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.on("exit", () => resolve())
          child.kill("SIGTERM")
        })
      )
  )

describe("docker/ compose files", () => {
  it("there are the three compose files of the issue and the live tests' one", () => {
    assert.deepStrictEqual(composeFiles, ["compose.durable.yml", "compose.full.yml", "compose.yml"])
  })

  for (const file of composeFiles) {
    it(`${file} parses and refers only to what exists`, () => {
      const compose = readCompose(file)
      const services = compose.services as Record<string, any>
      assert.isObject(services, `${file} has services`)
      const volumes = Object.keys(compose.volumes ?? {})
      const images = new Map(
        Object.values(services).filter((s) => s.build !== undefined && s.image !== undefined).map((s) => [s.image, s])
      )
      for (const [name, service] of Object.entries(services)) {
        const where = `${file}: service ${name}`
        if (service.build !== undefined) {
          const context = Path.resolve(docker, service.build.context ?? ".")
          assert.isTrue(
            Fs.statSync(context, { throwIfNoEntry: false })?.isDirectory(),
            `${where}: context ${rel(context)}`
          )
          const dockerfile = Path.resolve(context, service.build.dockerfile ?? "Dockerfile")
          assert.isTrue(Fs.existsSync(dockerfile), `${where}: ${rel(dockerfile)} exists`)
          if (service.build.target !== undefined) {
            assert.include(
              stages(instructions(dockerfile)).map((stage) => stage.name),
              service.build.target,
              `${where}: ${rel(dockerfile)} has a stage ${service.build.target}`
            )
          }
        } else {
          assert.isTrue(images.has(service.image), `${where}: its image ${service.image} is built by this file`)
        }
        for (const envFile of [service.env_file ?? []].flat()) {
          assert.isTrue(Fs.existsSync(Path.resolve(docker, envFile)), `${where}: env file ${envFile}`)
        }
        for (const volume of service.volumes ?? []) {
          const source = typeof volume === "string" ? volume.split(":")[0]! : volume.source
          if (/^[./]/.test(source)) {
            assert.isTrue(Fs.existsSync(Path.resolve(docker, source)), `${where}: mounted ${source} exists`)
          } else {
            assert.include(volumes, source, `${where}: volume ${source} is declared`)
          }
        }
        for (const dependency of Object.keys(service.depends_on ?? {})) {
          assert.property(services, dependency, `${where}: depends on ${dependency}`)
        }
        // A program the application image runs must be a file the image has.
        if (service.build?.dockerfile === "docker/worker/Dockerfile" && Array.isArray(service.command)) {
          assert.isTrue(imageFiles().has(service.command[0]), `${where}: the image has ${service.command[0]}`)
        }
      }
    })
  }

  it("the full stack has the database, the migrations, a worker and the server", () => {
    const services = readCompose("compose.full.yml").services
    for (const name of ["postgres", "migrate", "worker", "server"]) assert.property(services, name)
    assert.deepStrictEqual(services.worker.command, ["src/sreWorker.ts"])
    assert.deepStrictEqual(services.server.command, ["src/sreServer.ts"])
    assert.deepStrictEqual(services.migrate.entrypoint, ["npx", "--no-install", "pgflows-migrate"])
  })
})

describe("docker/ Dockerfiles", () => {
  it("every Dockerfile is built by a compose file", () => {
    const dockerfiles = [Path.join(docker, "postgres/Dockerfile"), worker]
    for (const dockerfile of dockerfiles) {
      assert.include(builds().map((b) => b.dockerfile), dockerfile, `${rel(dockerfile)} is built by a compose file`)
    }
  })

  for (const { dockerfile, context, by } of builds()) {
    it(`${rel(dockerfile)} pins its images and copies what its context has (${by})`, () => {
      const steps = instructions(dockerfile)
      const args = globalArgs(steps)
      const names = new Set<string>()
      for (const stage of stages(steps)) {
        const image = stage.image.replace(/\$\{(\w+)\}/g, (_, name: string) => {
          assert.isDefined(args.get(name), `${rel(dockerfile)}: ARG ${name} has a default`)
          return args.get(name)!
        })
        if (!names.has(image)) {
          assert.match(image, /^[\w./-]+:[\w.-]+$/, `${rel(dockerfile)}: ${image} has a tag`)
          assert.notMatch(image, /:latest$/, `${rel(dockerfile)}: ${image} is pinned`)
        }
        if (stage.name !== undefined) names.add(stage.name)
      }
      for (const copy of copies(steps)) {
        for (const source of copy.sources) {
          assert.isTrue(Fs.existsSync(Path.join(context, source)), `${rel(dockerfile)}: COPY ${source} exists`)
          assert.isFalse(
            ignored(`${dockerfile}.dockerignore`, source),
            `${rel(dockerfile)}: COPY ${source} is not excluded by its .dockerignore`
          )
        }
      }
    })
  }

  it("the pg_durable and pgmq versions are pinned build arguments", () => {
    const args = globalArgs(instructions(Path.join(docker, "postgres/Dockerfile")))
    for (const name of ["PG_MAJOR", "PGMQ_VERSION", "PG_DURABLE_VERSION", "PGRX_VERSION", "RUST_VERSION"]) {
      assert.match(args.get(name) ?? "", /^\d+(\.\d+)*$/, `ARG ${name}`)
    }
  })
})

describe("docker/worker: the application image", () => {
  const files = imageFiles()
  const entries = ["src/sreWorker.ts", "src/sreServer.ts", "src/checkout.ts"]

  it("runs src/sreWorker.ts by default, copied from packages/examples/src/sreWorker.ts", () => {
    const steps = instructions(worker)
    const entrypoint = JSON.parse(steps.findLast((step) => step.keyword === "ENTRYPOINT")!.args)
    const command = JSON.parse(steps.findLast((step) => step.keyword === "CMD")!.args)
    assert.deepStrictEqual([...entrypoint, ...command], ["node", "src/sreWorker.ts"])
    assert.strictEqual(files.get("src/sreWorker.ts"), Path.join(root, "packages/examples/src/sreWorker.ts"))
  })

  it("copies every module its programs import, and declares every package at the workspace's version", () => {
    const manifest = JSON.parse(Fs.readFileSync(Path.join(docker, "worker/package.json"), "utf8"))
    const workspace = JSON.parse(Fs.readFileSync(Path.join(root, "packages/examples/package.json"), "utf8"))
    const copied = new Set(files.values())
    for (const entry of entries) {
      const { modules, packages } = closure(files.get(entry)!)
      for (const module of modules) assert.isTrue(copied.has(module), `${entry} needs ${rel(module)}, which is copied`)
      for (const name of packages) {
        assert.notStrictEqual(name, "@pgflows/testing", `${entry} must not need the test package`)
        assert.property(manifest.dependencies, name, `${entry} imports ${name}: docker/worker/package.json has it`)
        assert.strictEqual(
          manifest.dependencies[name],
          workspace.dependencies[name],
          `${name}: the workspace's version`
        )
      }
    }
  })

  it("its worker is the program npm run example:sre starts, which Sre.test.ts runs", () => {
    assert.include(Fs.readFileSync(Path.join(root, "packages/examples/src/sre.ts"), "utf8"), `"sreWorker.ts"`)
    assert.include(Fs.readFileSync(Path.join(import.meta.dirname, "Sre.test.ts"), "utf8"), `"../src/sre.ts"`)
  })
})

layer(TestDatabase.layer, { excludeTestServices: true })("docker/worker: the programs it runs", (it) => {
  it.effect("src/checkout.ts serves its health with the fault of CHECKOUT_FAULT", () =>
    Effect.gen(function*() {
      const port = yield* freePort()
      yield* program(
        imageFiles().get("src/checkout.ts")!,
        { PORT: String(port), HOST: "127.0.0.1", CHECKOUT_FAULT: "memory_leak" },
        /checkout listening on port \d+ with fault memory_leak/
      )
      const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/health`))
      assert.strictEqual(response.status, 200)
      const report: any = yield* Effect.promise(() => response.json())
      assert.strictEqual(report.status, "degraded")
      assert.strictEqual(report.memoryPercent, 94)
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.effect(
    "src/sreServer.ts takes alerts and approvals on the database of PGFLOWS_DATABASE_URL",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const port = yield* freePort()
        yield* program(
          imageFiles().get("src/sreServer.ts")!,
          { PORT: String(port), HOST: "127.0.0.1", PGFLOWS_DATABASE_URL: Redacted.value(database.url) },
          /incident API listening on port \d+/
        )
        const api = `http://127.0.0.1:${port}`
        const post = (path: string, body: unknown) =>
          Effect.promise(() =>
            fetch(`${api}${path}`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(body)
            })
          )
        const alert = {
          incidentId: "INC-D1",
          service: "checkout",
          serviceUrl: "http://checkout:8081",
          summary: "error rate up",
          approvalSeconds: 600
        }
        const started = yield* post("/alerts", alert)
        assert.strictEqual(started.status, 201)
        assert.deepStrictEqual(yield* Effect.promise(() => started.json()), { runId: "INC-D1" })
        assert.strictEqual((yield* post("/alerts", { incidentId: "INC-D2" })).status, 400)
        assert.strictEqual((yield* post("/incidents/INC-D1/approval", { approved: true, by: "you" })).status, 202)
        assert.strictEqual((yield* post("/incidents/INC-NONE/approval", { approved: true, by: "you" })).status, 404)
        const incident: any = yield* Effect.promise(() => fetch(`${api}/incidents/INC-D1`).then((r) => r.json()))
        assert.strictEqual(incident.status, "pending", "no worker runs here: the run waits for one")
        assert.strictEqual(incident.diagnosis, null)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
