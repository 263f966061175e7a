import { defineConfig } from "vitest/config"

const project = (name: string) => ({
  extends: true,
  test: { name, include: [`packages/${name}/test/**/*.test.ts`] }
})

export default defineConfig({
  test: {
    // One PostgreSQL server for the whole run (DATABASE_URL, Docker, or embedded), see @pgflows/testing.
    globalSetup: ["./packages/testing/src/globalSetup.ts"],
    projects: [project("testing"), project("pgflows"), project("pg-durable"), project("examples")],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
