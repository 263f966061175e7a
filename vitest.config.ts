import { defineConfig } from "vitest/config"

// Inside the repository the packages run from their TypeScript sources: the `@pgflows/source` export
// condition points `pgflows`, `@pgflows/pg-durable`, `@pgflows/server` and `@pgflows/testing` at `src/*.ts` (users get
// the compiled `dist/`). Vite resolves the test files' imports with these conditions, and vitest
// passes them to its workers as `--conditions`; the others are vitest's defaults for server code
// (not `module`, which would give Node the extensionless ESM build of @opentelemetry/api). NODE_OPTIONS
// carries the condition on to the processes that tests spawn.
const conditions = ["@pgflows/source", "node", "development|production"]
if (!(process.env.NODE_OPTIONS ?? "").includes("--conditions=@pgflows/source")) {
  process.env.NODE_OPTIONS = `--conditions=@pgflows/source ${process.env.NODE_OPTIONS ?? ""}`.trim()
}

const project = (name: string) => ({
  extends: true,
  test: { name, include: [`packages/${name}/test/**/*.test.ts`] }
})

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    // One PostgreSQL server for the whole run (DATABASE_URL, Docker, or embedded), see @pgflows/testing.
    globalSetup: ["./packages/testing/src/globalSetup.ts"],
    projects: [
      project("testing"),
      project("pgflows"),
      project("pg-durable"),
      project("server"),
      project("cli"),
      project("examples")
    ],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
