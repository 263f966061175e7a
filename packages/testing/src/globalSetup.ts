/**
 * Vitest global setup: finds or starts one PostgreSQL server for the whole test run (see
 * `DatabaseServer`), creates an empty template database on it, and provides both to every test
 * file. The teardown drops the template and stops a server it started; a watchdog stops an
 * embedded server even when the run is killed.
 *
 * Use it from `vitest.config.ts`: `test: { globalSetup: ["@pgflows/testing/globalSetup"] }` (inside
 * pgflows' repository, `["./packages/testing/src/globalSetup.ts"]`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import type { TestProject } from "vitest/node"
import * as DatabaseServer from "./DatabaseServer.ts"
import * as Admin from "./internal/admin.ts"
import { envKey, key, type ServerInfo } from "./internal/provided.ts"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const scope = Scope.makeUnsafe()
  const close = () => Effect.runPromise(Scope.close(scope, Exit.void))
  try {
    const info = await Effect.runPromise(
      Effect.gen(function*() {
        const server = yield* DatabaseServer.acquire()
        const template = `pgflows_template_${process.pid}_${Crypto.randomBytes(3).toString("hex")}`
        yield* Admin.createDatabase(server.url, template)
        yield* Scope.addFinalizer(scope, Effect.ignore(Admin.dropDatabase(server.url, template)))
        return {
          source: server.source,
          url: Redacted.value(server.url),
          version: server.version,
          description: server.description,
          template
        } satisfies ServerInfo
      }).pipe(Scope.provide(scope))
    )
    console.log(`[pgflows] tests use ${info.description}: ${info.version.split(" on ")[0]}`)
    project.provide(key, info)
    process.env[envKey] = JSON.stringify(info)
    return close
  } catch (error) {
    await close()
    throw error
  }
}
