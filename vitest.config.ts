import { defineConfig } from "vitest/config"

// Inside the repository the packages run from their TypeScript sources: the `@pgflows/source` export
// condition points `pgflows`, `@pgflows/pg-durable` and `@pgflows/testing` at `src/*.ts` (users get
// the compiled `dist/`). Vite resolves the test files' imports with these conditions (the rest are
// Vite's defaults for server code); NODE_OPTIONS carries the condition to processes the tests spawn.
const conditions = ["@pgflows/source", "module", "node", "development|production"]
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
    projects: [project("testing"), project("pgflows"), project("pg-durable"), project("examples")],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
