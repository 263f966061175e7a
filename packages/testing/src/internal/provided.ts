/**
 * What the vitest global setup hands to every test file, through vitest's `provide` / `inject`.
 */
import type { Source } from "../DatabaseServer.ts"

export interface ServerInfo {
  readonly source: Source
  /** Plain text: provided context is serialised to the test workers. */
  readonly url: string
  readonly version: string
  readonly description: string
  /** Database each test file's database is copied from. */
  readonly template: string
}

export const key = "pgflows/testServer"

/** Child processes of tests receive the same information through this variable, as JSON. */
export const envKey = "PGFLOWS_TEST_SERVER"

declare module "vitest" {
  export interface ProvidedContext {
    "pgflows/testServer": ServerInfo
  }
}
