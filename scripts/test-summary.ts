/**
 * Prints the closing line of a test run, `N passed, N failed`, from vitest's JSON report and, when
 * given, the consumer test's report (`scripts/consumer-test.ts`: one test per check).
 *
 * Usage: `node scripts/test-summary.ts <report.json> <exit status of npm test> [<consumer-report.json>
 * <exit status of npm run test:consumer>]`. A failed run with no report (the type-check or lint
 * failed before vitest started, the consumer test died) counts as one failure. A test file that
 * failed to load counts as one failure too. Exits with the first non-zero status, or 1 when it sees
 * a failure the statuses missed.
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

interface ConsumerReport {
  readonly checks: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly detail: string }>
}

const [reportPath, statusText = "0", consumerPath, consumerStatusText = "0"] = process.argv.slice(2)
const npmTestStatus = Number(statusText)
const consumerStatus = consumerPath === undefined ? 0 : Number(consumerStatusText)
const status = npmTestStatus !== 0 ? npmTestStatus : consumerStatus
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
} else if (npmTestStatus !== 0) {
  console.log("npm test failed before the tests ran (type-check, lint or format): see the output above")
  failed = 1
}
if (consumerPath !== undefined) {
  if (Fs.existsSync(consumerPath)) {
    const consumer = JSON.parse(Fs.readFileSync(consumerPath, "utf8")) as ConsumerReport
    const bad = consumer.checks.filter((check) => !check.ok)
    passed += consumer.checks.length - bad.length
    failed += bad.length
    for (const check of bad) console.log(`consumer test failed: ${check.name}: ${check.detail}`)
  } else if (consumerStatus !== 0) {
    console.log("the consumer test failed before it wrote its report: see the output above")
    failed += 1
  }
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(status !== 0 ? status : failed > 0 ? 1 : 0)
