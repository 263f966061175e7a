/**
 * `npm run example:sre` as a user runs it (a child process, its workers child processes of it), on a
 * fresh database of its own, then that database read back: the approved incident (remediation
 * applied once and recorded, verified, after a worker was killed in the middle of it), the expired
 * approval (escalated), the failed verification (compensated). The docs page's transcript is
 * checked against the same output.
 */
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { assertTranscript } from "./transcript.ts"

const sre = Path.resolve(import.meta.dirname, "../src/sre.ts")

const run = (env: Record<string, string | undefined>) =>
  Effect.promise(() =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const childEnv: Record<string, string | undefined> = { ...process.env, ...env }
      for (const [key, value] of Object.entries(env)) if (value === undefined) delete childEnv[key]
      const child = ChildProcess.spawn(process.execPath, [sre], { env: childEnv, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk) => stdout += chunk)
      child.stderr.on("data", (chunk) => stderr += chunk)
      child.on("exit", (code) => resolve({ code, stdout, stderr }))
    })
  )

layer(TestDatabase.layer, { excludeTestServices: true })("npm run example:sre", (it) => {
  it.effect(
    "approval, expired approval and failed verification, with a crash and takeover",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const { code, stdout, stderr } = yield* run({
          DATABASE_URL: Redacted.value(database.url),
          PGFLOWS_DATABASE_URL: undefined,
          OPENAI_API_KEY: undefined // the local diagnoser: no network, the same answers every time
        })
        const output = `${stdout}\n--- stderr ---\n${stderr}`
        assert.strictEqual(code, 0, output)

        // Approved: a transient 503 twice and a hang, retried; the worker killed during the
        // verification; the other one verifies, and nothing completed before the crash runs again.
        assert.match(stdout, /\[worker-A\] INC-1 check_health attempt 2 failed, retrying: HealthCheckFailed/)
        assert.match(stdout, /\[worker-A\] INC-1 check_health attempt 3 failed, retrying: StepTimeoutError/)
        assert.match(stdout, /\[worker-A\] INC-1 check_health done \(attempt 4\): degraded/)
        assert.match(stdout, /killing worker-A with SIGKILL/)
        assert.match(stdout, /\[worker-B\] INC-1 verify_recovery done \(attempt 2\): healthy/)
        const workerB = stdout.split("\n").filter((line) => line.startsWith("[worker-B] INC-1 "))
        assert.deepStrictEqual(
          workerB.filter((line) => !/ incident_response /.test(line)).map((line) => line.split(" ")[2]),
          ["verify_recovery"],
          "worker-B ran no step of INC-1 but the one it was killed in"
        )
        // Plugins: the logging plugin's lines on stderr, the metrics and spans of worker-B at the end.
        assert.match(stderr, /\[worker-A\] .*level=WARN .*message="step check_health attempt 1 failed, will retry/)
        assert.match(stdout, /\[worker-B\] {3}verify_recovery: completed 1, failed 1, retried 3/)
        assert.match(stdout, /\[worker-B\] {3}LanguageModel\.generateObject x2/)
        assert.match(stdout, /\[worker-B\] {3}pgflows\.step revert_remediation x1/)
        assert.match(stdout, /\[worker-B\] {3}pgflows\.workflow incident_response x5/)
        assertTranscript("sre-incident.md", stdout)

        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ id: string; status: string; output: any; error: any; recoveries: number }>`
        SELECT id, status, output, error, recoveries FROM pgflows.runs ORDER BY id`
        assert.deepStrictEqual(runs.map((r) => [r.id, r.status]), [
          ["INC-1", "completed"],
          ["INC-2", "completed"],
          ["INC-3", "failed"]
        ])
        assert.strictEqual(runs[0]!.output.outcome, "resolved")
        assert.strictEqual(runs[0]!.output.action, "rollback")
        assert.strictEqual(runs[0]!.recoveries, 1)
        assert.strictEqual(runs[1]!.output.outcome, "escalated")
        assert.strictEqual(runs[1]!.output.detail, "no approval within 3 seconds; paged the checkout on-call team")
        assert.deepStrictEqual(runs[2]!.error.compensation, { undone: 1, failed: [] })

        const remediations = yield* sql<{ incident_id: string; action: string; approved_by: string; status: string }>`
        SELECT incident_id, action, approved_by, status FROM sre_remediations ORDER BY incident_id`
        assert.deepStrictEqual(remediations.map((r) => [r.incident_id, r.action, r.approved_by, r.status]), [
          ["INC-1", "rollback", "ana", "applied"],
          ["INC-3", "scale_out", "ana", "reverted"]
        ])
        const escalations = yield* sql<{ incident_id: string; reason: string }>`
        SELECT incident_id, reason FROM sre_escalations ORDER BY incident_id`
        assert.deepStrictEqual(escalations.map((r) => [r.incident_id, r.reason]), [
          ["INC-2", "no approval within 3 seconds"]
        ])
      }),
    { timeout: 90_000 }
  )
})
