/**
 * Prints the closing line of a test run, `N passed, N failed`, from vitest's JSON report.
 *
 * Usage: `node scripts/test-summary.ts <report.json> <exit status of npm test>`. A failed run with no
 * report (the type-check or lint failed before vitest started) counts as one failure. A test file
 * that failed to load counts as one failure too. Exits with the given status, or 1 when it sees a
 * failure the status missed.
 */
import * as Fs from "node:fs"

interface Report {
  readonly numPassedTests: number
  readonly numFailedTests: number
  readonly numPendingTests: number
  readonly numTodoTests: number
  readonly testResults: ReadonlyArray<{
    readonly name: string
    readonly status: string
    readonly message?: string
    readonly assertionResults: ReadonlyArray<{ readonly status: string }>
  }>
}

const [reportPath, statusText = "0"] = process.argv.slice(2)
const status = Number(statusText)
let passed = 0
let failed = 0
if (reportPath !== undefined && Fs.existsSync(reportPath)) {
  const report = JSON.parse(Fs.readFileSync(reportPath, "utf8")) as Report
  const brokenFiles = report.testResults.filter((file) =>
    file.status === "failed" && file.assertionResults.every((test) => test.status !== "failed")
  )
  passed = report.numPassedTests
  failed = report.numFailedTests + brokenFiles.length
  const skipped = report.numPendingTests + report.numTodoTests
  for (const file of brokenFiles) console.log(`failed to run: ${file.name}: ${file.message ?? ""}`.trim())
  if (skipped > 0) console.log(`${skipped} skipped`)
} else if (status !== 0) {
  console.log("npm test failed before the tests ran (type-check, lint or format): see the output above")
  failed = 1
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(status !== 0 ? status : failed > 0 ? 1 : 0)
