/**
 * The AI SRE incident workflow: an alert starts `incident_response`, which
 *
 * 1. checks the service's health over HTTP (`check_health`: retried with backoff on 503s, each
 *    attempt cut off after a second, so a request that hangs is one failed attempt);
 * 2. asks a language model for a diagnosis (`diagnose`, through `effect/ai`'s `LanguageModel`: see
 *    `Diagnoser.ts`) and publishes it as the run's event `diagnosis`;
 * 3. waits, parked, for a person's `approval` signal, no longer than the alert's `approvalSeconds`;
 *    when none comes, or the answer is no, it pages the on-call team (`page_on_call`) and ends
 *    `escalated`;
 * 4. applies the approved remediation (`apply_remediation`, a `Step.transaction`: the row in the
 *    application's table `sre_remediations` commits with the step's checkpoint, or neither does),
 *    with `revert_remediation` registered as its compensation;
 * 5. verifies the recovery (`verify_recovery`: three healthy probes in a row, retried a few times);
 *    when the service does not recover, the workflow fails with `RecoveryNotVerified` and the
 *    compensation reverts the remediation and marks its row `reverted`.
 *
 * Every value the run stores (input, step outputs, errors, the signal) has a Schema.
 *
 * @since 0.1.0
 */
import * as LanguageModel from "effect/ai/LanguageModel"
import * as Model from "effect/ai/Model"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as SqlClient from "effect/sql/SqlClient"
import { PgflowsError, Step, Workflow } from "pgflows"
import { Action, HealthReport } from "./CheckoutService.ts"
import * as Diagnoser from "./Diagnoser.ts"

/**
 * What the monitoring system sends.
 *
 * @category models
 * @since 0.1.0
 */
export class Alert extends Schema.Class<Alert>("Alert")({
  incidentId: Schema.String,
  service: Schema.String,
  /** Where the service answers `GET /health` and `POST /admin/...`. */
  serviceUrl: Schema.String,
  summary: Schema.String,
  /** How long a person has to approve the remediation before the incident is escalated. */
  approvalSeconds: Schema.Number
}) {}

/**
 * The payload of the `approval` signal.
 *
 * @category models
 * @since 0.1.0
 */
export const Approval = Schema.Struct({
  approved: Schema.Boolean,
  by: Schema.String,
  note: Schema.optional(Schema.String)
})

/**
 * @category models
 * @since 0.1.0
 */
export type Approval = typeof Approval.Type

/**
 * The model's proposal, with the model that made it.
 *
 * @category models
 * @since 0.1.0
 */
export class Diagnosis extends Schema.Class<Diagnosis>("Diagnosis")({
  ...Diagnoser.Proposal.fields,
  model: Schema.String
}) {}

/**
 * An approved remediation.
 *
 * @category models
 * @since 0.1.0
 */
export class Remediation extends Schema.Class<Remediation>("Remediation")({
  incidentId: Schema.String,
  service: Schema.String,
  serviceUrl: Schema.String,
  action: Action,
  approvedBy: Schema.String
}) {}

/**
 * How an incident ended, when it did not fail.
 *
 * @category models
 * @since 0.1.0
 */
export class Resolution extends Schema.Class<Resolution>("Resolution")({
  incidentId: Schema.String,
  outcome: Schema.Literals(["resolved", "escalated"]),
  action: Schema.NullOr(Action),
  detail: Schema.String
}) {}

/**
 * The service could not be asked (a refused connection, a 5xx, a body that is not a report).
 *
 * @category errors
 * @since 0.1.0
 */
export class HealthCheckFailed extends Schema.TaggedError<HealthCheckFailed>()("HealthCheckFailed", {
  service: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.service}: ${this.reason}`
  }
}

/**
 * The language model did not give a usable diagnosis. `retryable` comes from the `AiError`.
 *
 * @category errors
 * @since 0.1.0
 */
export class DiagnosisUnavailable extends Schema.TaggedError<DiagnosisUnavailable>()("DiagnosisUnavailable", {
  reason: Schema.String,
  retryable: Schema.Boolean
}) {}

/**
 * The service refused or did not confirm a remediation (or its revert).
 *
 * @category errors
 * @since 0.1.0
 */
export class RemediationFailed extends Schema.TaggedError<RemediationFailed>()("RemediationFailed", {
  incidentId: Schema.String,
  action: Action,
  reason: Schema.String
}) {
  override get message() {
    return `${this.action} for ${this.incidentId}: ${this.reason}`
  }
}

/**
 * The service was still degraded after the remediation.
 *
 * @category errors
 * @since 0.1.0
 */
export class RecoveryNotVerified extends Schema.TaggedError<RecoveryNotVerified>()("RecoveryNotVerified", {
  incidentId: Schema.String,
  action: Action,
  errorRate: Schema.Number,
  p99Millis: Schema.Number
}) {
  override get message() {
    return `${this.incidentId}: still degraded after ${this.action} (error rate ${
      percent(this.errorRate)
    }, p99 ${this.p99Millis} ms)`
  }
}

/**
 * The application's own tables: the remediations applied (and reverted), the escalations. In a real
 * application they belong to its migrations; the example creates them when a process starts, under
 * an advisory lock, since workers and the API may start together.
 *
 * @category setup
 * @since 0.1.0
 */
export const createTables = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.withTransaction(Effect.all([
    sql`SELECT pg_advisory_xact_lock(hashtext('examples.sre_tables'))`,
    sql`CREATE TABLE IF NOT EXISTS sre_remediations (
      incident_id text PRIMARY KEY,
      service text NOT NULL,
      action text NOT NULL,
      approved_by text NOT NULL,
      status text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      reverted_at timestamptz
    )`,
    sql`CREATE TABLE IF NOT EXISTS sre_escalations (
      incident_id text PRIMARY KEY,
      service text NOT NULL,
      reason text NOT NULL,
      paged_at timestamptz NOT NULL DEFAULT now()
    )`
  ], { discard: true })))

/**
 * `GET <serviceUrl>/health`, decoded; any failure is a `HealthCheckFailed`.
 *
 * @category steps
 * @since 0.1.0
 */
export const probe = (target: { readonly service: string; readonly serviceUrl: string }) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const failed = (reason: string) => new HealthCheckFailed({ service: target.service, reason })
    const response = yield* client.get(`${target.serviceUrl}/health`).pipe(
      Effect.mapError((error) => failed(error.message))
    )
    if (response.status !== 200) return yield* failed(`answered ${response.status}`)
    return yield* HttpClientResponse.schemaBodyJson(HealthReport)(response).pipe(
      Effect.mapError(() => failed("answered something that is not a health report"))
    )
  })

/**
 * @category steps
 * @since 0.1.0
 */
export const checkHealth = Step.make("check_health", {
  input: Schema.Struct({ service: Schema.String, serviceUrl: Schema.String }),
  output: HealthReport,
  error: HealthCheckFailed,
  timeout: "1 second",
  retry: Schedule.exponential("200 millis").pipe(Schedule.upTo({ times: 4 })),
  run: probe
})

/**
 * @category steps
 * @since 0.1.0
 */
export const diagnose = Step.make("diagnose", {
  input: Schema.Struct({ alert: Alert, report: HealthReport }),
  output: Diagnosis,
  error: DiagnosisUnavailable,
  timeout: "60 seconds",
  retry: Schedule.exponential("1 second").pipe(
    Schedule.while(({ input }: { readonly input: DiagnosisUnavailable | PgflowsError.StepTimeoutError }) =>
      input._tag === "StepTimeoutError" || input.retryable
    ),
    Schedule.upTo({ times: 3 })
  ),
  run: ({ alert, report }) =>
    Effect.gen(function*() {
      const model = yield* LanguageModel.LanguageModel
      const response = yield* model.generateObject({
        prompt: Diagnoser.prompt(alert, report),
        schema: Diagnoser.Proposal,
        objectName: "incident_diagnosis"
      }).pipe(
        Effect.mapError((error) => new DiagnosisUnavailable({ reason: error.message, retryable: error.isRetryable }))
      )
      const name = `${yield* Model.ProviderName}/${yield* Model.ModelName}`
      return new Diagnosis({ ...response.value, model: name })
    })
})

/**
 * @category steps
 * @since 0.1.0
 */
export const pageOnCall = Step.transaction("page_on_call", {
  input: Schema.Struct({ incidentId: Schema.String, service: Schema.String, reason: Schema.String }),
  output: Schema.Struct({ paged: Schema.String }),
  run: (escalation) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO sre_escalations (incident_id, service, reason)
        VALUES (${escalation.incidentId}, ${escalation.service}, ${escalation.reason})`
      return { paged: `the ${escalation.service} on-call team` }
    }).pipe(Effect.orDie)
})

/**
 * Records the remediation in `sre_remediations` and asks the service to apply it, in the step's
 * transaction: when the service refuses, the row is rolled back with the step. The service applies a
 * remediation once per incident, so the request of an attempt that was rolled back can be sent
 * again.
 *
 * @category steps
 * @since 0.1.0
 */
export const applyRemediation = Step.transaction("apply_remediation", {
  input: Remediation,
  output: Remediation,
  error: RemediationFailed,
  retry: Schedule.spaced("500 millis").pipe(Schedule.upTo({ times: 2 })),
  run: (remediation) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO sre_remediations (incident_id, service, action, approved_by, status)
        VALUES (${remediation.incidentId}, ${remediation.service}, ${remediation.action}, ${remediation.approvedBy},
          'applied')`.pipe(Effect.orDie)
      yield* admin(remediation, "/admin/remediate", { incidentId: remediation.incidentId, action: remediation.action })
      return remediation
    })
})

/**
 * The compensation of `apply_remediation`: asks the service to undo it and marks the row `reverted`.
 *
 * @category steps
 * @since 0.1.0
 */
export const revertRemediation = Step.transaction("revert_remediation", {
  input: Remediation,
  output: Schema.Struct({ reverted: Action }),
  error: RemediationFailed,
  retry: Schedule.spaced("500 millis").pipe(Schedule.upTo({ times: 2 })),
  run: (remediation) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE sre_remediations SET status = 'reverted', reverted_at = now()
        WHERE incident_id = ${remediation.incidentId}`.pipe(Effect.orDie)
      yield* admin(remediation, "/admin/revert", { incidentId: remediation.incidentId })
      return { reverted: remediation.action }
    })
})

/**
 * Three healthy probes in a row, a second apart; a degraded one fails the attempt.
 *
 * @category steps
 * @since 0.1.0
 */
export const verifyRecovery = Step.make("verify_recovery", {
  input: Remediation,
  output: HealthReport,
  error: Schema.Union([RecoveryNotVerified, HealthCheckFailed]),
  timeout: "10 seconds",
  retry: Schedule.spaced("500 millis").pipe(Schedule.upTo({ times: 3 })),
  run: (remediation) =>
    Effect.gen(function*() {
      let report: HealthReport | undefined
      for (let probeNumber = 1; probeNumber <= 3; probeNumber++) {
        if (probeNumber > 1) yield* Effect.sleep("1 second")
        report = yield* probe(remediation)
        if (report.status !== "healthy") {
          return yield* new RecoveryNotVerified({
            incidentId: remediation.incidentId,
            action: remediation.action,
            errorRate: report.errorRate,
            p99Millis: report.p99Millis
          })
        }
      }
      return report!
    })
})

/**
 * The workflow.
 *
 * @category workflows
 * @since 0.1.0
 */
export const incidentResponse = Workflow.make("incident_response", {
  input: Alert,
  output: Resolution,
  error: Schema.Union([
    HealthCheckFailed,
    DiagnosisUnavailable,
    RemediationFailed,
    RecoveryNotVerified,
    PgflowsError.StepTimeoutError,
    PgflowsError.InvalidSignal
  ]),
  run: Effect.fn(function*(alert) {
    const target = { service: alert.service, serviceUrl: alert.serviceUrl }
    const report = yield* checkHealth(target)
    if (report.status === "healthy") {
      return new Resolution({
        incidentId: alert.incidentId,
        outcome: "resolved",
        action: null,
        detail: "healthy at the first check, nothing to do"
      })
    }
    const diagnosis = yield* diagnose({ alert, report })
    yield* Workflow.setEvent("diagnosis", Schema.encodeSync(Diagnosis)(diagnosis))

    const decision = yield* Workflow.waitForSignal("approval", Approval, {
      timeout: Duration.seconds(alert.approvalSeconds)
    })
    if (decision._tag === "TimedOut" || !decision.value.approved) {
      const reason = decision._tag === "TimedOut"
        ? `no approval within ${alert.approvalSeconds} seconds`
        : `${diagnosis.action} rejected by ${decision.value.by}`
      const { paged } = yield* pageOnCall({ incidentId: alert.incidentId, service: alert.service, reason })
      return new Resolution({
        incidentId: alert.incidentId,
        outcome: "escalated",
        action: null,
        detail: `${reason}; paged ${paged}`
      })
    }

    const remediation = yield* applyRemediation(
      new Remediation({
        ...target,
        incidentId: alert.incidentId,
        action: diagnosis.action,
        approvedBy: decision.value.by
      })
    ).pipe(Workflow.withCompensation(revertRemediation))
    const after = yield* verifyRecovery(remediation)
    return new Resolution({
      incidentId: alert.incidentId,
      outcome: "resolved",
      action: remediation.action,
      detail: `${remediation.action} approved by ${remediation.approvedBy}; healthy again (error rate ${
        percent(after.errorRate)
      }, p99 ${after.p99Millis} ms)`
    })
  })
})

// internal

const percent = (n: number) => `${(n * 100).toFixed(1)}%`

const admin = (remediation: Remediation, path: string, body: unknown) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(
      HttpClientRequest.post(`${remediation.serviceUrl}${path}`).pipe(HttpClientRequest.bodyJsonUnsafe(body))
    ).pipe(Effect.timeout("2 seconds"))
    if (response.status !== 200) return yield* Effect.fail(`answered ${response.status}`)
  }).pipe(
    Effect.mapError((error) =>
      new RemediationFailed({
        incidentId: remediation.incidentId,
        action: remediation.action,
        reason: typeof error === "string" ? error : error.message
      })
    )
  )
