/**
 * A run's whole story: its state and times, input, output and typed error, the step timeline (each
 * journal entry with its attempts, duration, parked interval, output or error), the signals sent to
 * it, its children and events; and the actions an admin token may take: cancel, retry, resume,
 * signal and fork.
 */
import { useCallback, useEffect, useState } from "preact/hooks"
import { api, isEnded } from "./api.ts"
import type { ForkResult, RunDetail, StepView } from "./api.ts"
import { Dialog, explain, Json, Notice, StatusBadge, Time } from "./components.tsx"
import { between, brief, duration, errorSummary, kindLabel, kindOf, time } from "./format.ts"

type Action = "cancel" | "retry" | "resume"

export const RunPage = ({ id }: { readonly id: string }) => {
  const [detail, setDetail] = useState<RunDetail | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const [message, setMessage] = useState<{ kind: "success" | "error"; text: string } | undefined>(undefined)
  const [dialog, setDialog] = useState<"signal" | "fork" | undefined>(undefined)

  const load = useCallback(async () => {
    try {
      setDetail(await api.run(id))
      setError(undefined)
    } catch (caught) {
      setError(explain(caught))
    }
  }, [id])

  useEffect(() => {
    setDetail(undefined)
    void load()
  }, [id])

  // Live while the run has not ended.
  useEffect(() => {
    if (detail !== undefined && isEnded(detail.run.status)) return
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void load()
    }, 2000)
    return () => clearInterval(timer)
  }, [load, detail?.run.status])

  const act = async (action: Action) => {
    if (action === "cancel" && !confirm(`Cancel run ${id}? A worker running it is interrupted.`)) return
    try {
      const done = await api[action](id)
      const outcome = "outcome" in done ? String(done.outcome) : `${action} requested`
      setMessage({ kind: "success", text: `${action}: ${outcome}` })
      await load()
    } catch (caught) {
      setMessage({ kind: "error", text: `${action} failed: ${explain(caught)}` })
    }
  }

  if (error !== undefined && detail === undefined) {
    return (
      <section>
        <p>
          <a href="#/">← Runs</a>
        </p>
        <Notice kind="error">{error}</Notice>
      </section>
    )
  }
  if (detail === undefined) return <p class="muted" aria-busy="true">Loading run {id}…</p>

  const { run } = detail
  const ended = isEnded(run.status)
  const failure = errorSummary(run.error)
  return (
    <section aria-labelledby="run-title">
      <p>
        <a href="#/">← Runs</a>
      </p>
      <div class="page-head">
        <h1 id="run-title">
          <span class="mono">{run.id}</span> <StatusBadge status={run.status} />
        </h1>
        <div class="actions" role="group" aria-label="Actions">
          {!ended && <button type="button" class="danger" onClick={() => void act("cancel")}>Cancel</button>}
          {run.status === "failed" && <button type="button" onClick={() => void act("retry")}>Retry</button>}
          {run.status === "cancelled" && <button type="button" onClick={() => void act("resume")}>Resume</button>}
          {!ended && <button type="button" onClick={() => setDialog("signal")}>Signal…</button>}
          <button type="button" class="secondary" onClick={() => setDialog("fork")}>Fork…</button>
        </div>
      </div>
      {message !== undefined && <Notice kind={message.kind}>{message.text}</Notice>}
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      <dl class="facts">
        <div>
          <dt>Workflow</dt>
          <dd>
            {run.workflow} <span class="muted">v{detail.version}</span>
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{time(run.createdAt)}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{time(run.startedAt)}</dd>
        </div>
        <div>
          <dt>Ended</dt>
          <dd>{time(run.completedAt)}</dd>
        </div>
        <div>
          <dt>Took</dt>
          <dd>{duration(between(run.createdAt, run.completedAt))}</dd>
        </div>
        <div>
          <dt>Executions</dt>
          <dd>
            {run.executions}
            {run.recoveries > 0 ? ` (${run.recoveries} recovered)` : ""}
          </dd>
        </div>
        {run.wakeAt !== null && !ended && (
          <div>
            <dt>Wakes</dt>
            <dd>
              <Time iso={run.wakeAt} />
            </dd>
          </div>
        )}
        {run.parentId !== null && (
          <div>
            <dt>Parent</dt>
            <dd>
              <a class="mono" href={`#/runs/${encodeURIComponent(run.parentId)}`}>{run.parentId}</a>
            </dd>
          </div>
        )}
        {detail.forkedFrom !== null && (
          <div>
            <dt>Forked from</dt>
            <dd>
              <a class="mono" href={`#/runs/${encodeURIComponent(detail.forkedFrom.runId)}`}>
                {detail.forkedFrom.runId}
              </a>{" "}
              at key {detail.forkedFrom.key}
            </dd>
          </div>
        )}
        {run.waitingFor !== null && (
          <div class="wide">
            <dt>Waiting for</dt>
            <dd>{run.waitingFor}</dd>
          </div>
        )}
      </dl>
      {run.status === "failed" && (
        <div class="failure" role="region" aria-label="Error">
          <h2>
            Error{failure.tag === undefined ? "" : `: ${failure.tag}`}
          </h2>
          {failure.message !== undefined && <p>{failure.message}</p>}
          <Json value={run.error} label="The run's error as JSON" />
        </div>
      )}
      <div class="panels">
        <div>
          <h2>Input</h2>
          <Json value={run.input} label="The run's input as JSON" />
        </div>
        <div>
          <h2>Output</h2>
          {run.status === "completed"
            ? <Json value={run.output} label="The run's output as JSON" />
            : <p class="muted">{ended ? "none" : "not yet"}</p>}
        </div>
      </div>
      <Timeline run={run} />
      <h2>Signals</h2>
      {detail.signals.length === 0 ?
        <p class="muted">No signal was sent to this run.</p> :
        (
          <table class="compact" aria-label="Signals">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Payload</th>
                <th scope="col">Sent</th>
                <th scope="col">Taken</th>
              </tr>
            </thead>
            <tbody>
              {detail.signals.map((signal) => (
                <tr>
                  <td data-label="Name">{signal.name}</td>
                  <td data-label="Payload" class="mono">{brief(signal.payload)}</td>
                  <td data-label="Sent">
                    <Time iso={signal.sentAt} />
                  </td>
                  <td data-label="Taken">
                    {signal.consumedKey === null ? <span class="muted">waiting</span> : `by key ${signal.consumedKey}`}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      <h2>Children</h2>
      {detail.children.length === 0 ?
        <p class="muted">No child workflow.</p> :
        (
          <table class="compact" aria-label="Children">
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Workflow</th>
                <th scope="col">Status</th>
                <th scope="col">Took</th>
              </tr>
            </thead>
            <tbody>
              {detail.children.map((child) => (
                <tr>
                  <td data-label="Run">
                    <a class="mono" href={`#/runs/${encodeURIComponent(child.id)}`}>{child.id}</a>
                  </td>
                  <td data-label="Workflow">
                    {child.workflow} <span class="muted">v{child.version}</span>
                  </td>
                  <td data-label="Status">
                    <StatusBadge status={child.status} />
                  </td>
                  <td data-label="Took">{duration(between(child.createdAt, child.completedAt))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      <h2>Events</h2>
      {detail.events.length === 0 ?
        <p class="muted">No event published.</p> :
        (
          <table class="compact" aria-label="Events">
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Value</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {detail.events.map((event) => (
                <tr>
                  <td data-label="Key">{event.key}</td>
                  <td data-label="Value" class="mono">{brief(event.value)}</td>
                  <td data-label="Updated">
                    <Time iso={event.updatedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      <SignalDialog
        id={id}
        open={dialog === "signal"}
        onClose={() => setDialog(undefined)}
        onDone={(text) => {
          setDialog(undefined)
          setMessage({ kind: "success", text })
          void load()
        }}
      />
      <ForkDialog
        id={id}
        steps={run.steps}
        open={dialog === "fork"}
        onClose={() => setDialog(undefined)}
      />
    </section>
  )
}

/** The journal in execution order, each entry as a bar over the run's span and a row of facts. */
const Timeline = ({ run }: { readonly run: RunDetail["run"] }) => {
  const start = new Date(run.startedAt ?? run.createdAt).getTime()
  const ends = run.steps.map((step) =>
    new Date(step.completedAt ?? step.wakeAt ?? step.startedAt ?? run.updatedAt).getTime()
  )
  const end = Math.max(
    start + 1,
    new Date(run.completedAt ?? run.updatedAt).getTime(),
    ...ends.filter((value) => !Number.isNaN(value))
  )
  const span = end - start
  const position = (iso: string | null) =>
    iso === null ? undefined : Math.min(100, Math.max(0, ((new Date(iso).getTime() - start) / span) * 100))
  return (
    <>
      <h2>Timeline</h2>
      {run.steps.length === 0 ?
        <p class="muted">Nothing recorded yet.</p> :
        (
          <ol class="timeline" aria-label="Step timeline">
            {run.steps.map((step, index) => <Entry step={step} from={startOf(run, index)} position={position} />)}
          </ol>
        )}
    </>
  )
}

/**
 * Where an entry starts: the journal records when each entry committed (a step's checkpoint is
 * written when it ends), so an entry starts where the one before it ended, unless it recorded an
 * earlier start (a step that was retried or ran long).
 */
const startOf = (run: RunDetail["run"], index: number): string | null => {
  const step = run.steps[index]!
  if (step.startedAt === null) return null
  const runStart = new Date(run.startedAt ?? run.createdAt).getTime()
  const previous = Math.max(
    runStart,
    ...run.steps.slice(0, index).map((entry) => entry.completedAt === null ? 0 : new Date(entry.completedAt).getTime())
  )
  return new Date(Math.min(new Date(step.startedAt).getTime(), previous)).toISOString()
}

const Entry = (
  { step, from, position }: {
    readonly step: StepView
    readonly from: string | null
    readonly position: (iso: string | null) => number | undefined
  }
) => {
  const kind = kindOf(step.name)
  const parked = step.status === "waiting" || step.status === "retrying" || kind === "sleep" || kind === "signal"
  const left = position(from) ?? 0
  const right = position(step.completedAt ?? (parked ? step.wakeAt : null)) ?? left
  const took = between(from, step.completedAt)
  const failure = errorSummary(step.error)
  return (
    <li class={`entry entry-${step.status}`} data-key={step.key} data-step={step.name}>
      <div class="entry-head">
        <span class="mono key">{step.key}</span>
        <span class={`kind kind-${kind}`}>{kindLabel[kind]}</span>
        <strong class="entry-name">{kind === "step" ? step.name : step.name.replace(/^pgflows\./, "")}</strong>
        <StatusBadge status={step.status} />
        <span class="muted">
          {step.attempts} attempt{step.attempts === 1 ? "" : "s"} · {duration(took)}
        </span>
      </div>
      <div class="bar" aria-hidden="true">
        <span
          class={`bar-fill bar-${parked ? "parked" : step.status}`}
          style={{ left: `${left}%`, width: `${Math.max(0.8, right - left)}%` }}
        />
      </div>
      <div class="entry-facts muted">
        started {time(from)}
        {step.completedAt !== null && ` · ended ${time(step.completedAt)}`}
        {step.wakeAt !== null && ` · ${step.status === "retrying" ? "next attempt" : "wakes"} ${time(step.wakeAt)}`}
        {parked && step.wakeAt !== null && ` · parked ${duration(between(from, step.wakeAt))}`}
      </div>
      {failure.tag !== undefined && (
        <p class="entry-error">
          <strong>{failure.tag}</strong>
          {failure.message === undefined ? "" : `: ${failure.message}`}
        </p>
      )}
      {(step.output !== null || step.error !== null) && (
        <details>
          <summary>{step.error !== null ? "Error" : "Output"} as JSON</summary>
          <Json
            value={step.error ?? step.output}
            label={`${step.error !== null ? "Error" : "Output"} of ${step.key}`}
          />
        </details>
      )}
    </li>
  )
}

const SignalDialog = (
  { id, open, onClose, onDone }: {
    readonly id: string
    readonly open: boolean
    readonly onClose: () => void
    readonly onDone: (text: string) => void
  }
) => {
  const [name, setName] = useState("")
  const [payload, setPayload] = useState("null")
  const [error, setError] = useState<string | undefined>(undefined)
  const submit = async (event: Event) => {
    event.preventDefault()
    let value: unknown
    try {
      value = JSON.parse(payload)
    } catch {
      setError("the payload is not valid JSON")
      return
    }
    try {
      await api.signal(id, name, value)
      setError(undefined)
      onDone(`signal "${name}" sent`)
    } catch (caught) {
      setError(explain(caught))
    }
  }
  return (
    <Dialog title="Send a signal" open={open} onClose={onClose}>
      <form onSubmit={(event) => void submit(event)}>
        <label>
          Signal name
          <input name="signal" required value={name} onInput={(event) => setName(event.currentTarget.value)} />
        </label>
        <label>
          Payload (JSON)
          <textarea
            name="payload"
            rows={5}
            value={payload}
            onInput={(event) => setPayload(event.currentTarget.value)}
          />
        </label>
        {error !== undefined && <Notice kind="error">{error}</Notice>}
        <div class="dialog-actions">
          <button type="submit">Send</button>
          <button type="button" class="secondary" onClick={onClose}>Close</button>
        </div>
      </form>
    </Dialog>
  )
}

const ForkDialog = (
  { id, steps, open, onClose }: {
    readonly id: string
    readonly steps: ReadonlyArray<StepView>
    readonly open: boolean
    readonly onClose: () => void
  }
) => {
  const [fromStep, setFromStep] = useState("")
  const [version, setVersion] = useState("")
  const [plan, setPlan] = useState<ForkResult | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const run = async (dryRun: boolean) => {
    try {
      const result = await api.fork(id, {
        fromStep,
        ...(version === "" ? {} : { version: Number(version) }),
        dryRun
      })
      setPlan(result)
      setError(undefined)
      if (!dryRun && result.forkId !== null) location.hash = `#/runs/${encodeURIComponent(result.forkId)}`
    } catch (caught) {
      setPlan(undefined)
      setError(explain(caught))
    }
  }
  return (
    <Dialog title="Fork this run" open={open} onClose={onClose}>
      <form
        onSubmit={(event) => {
          event.preventDefault()
          void run(true)
        }}
      >
        <label>
          From step (a journal key or a step name)
          <select name="fromStep" required onChange={(event) => setFromStep(event.currentTarget.value)}>
            <option value="" selected={fromStep === ""}>choose…</option>
            {steps.map((step) => (
              <option value={step.key} selected={fromStep === step.key}>
                {step.key} · {step.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Version (default: the run's)
          <input
            name="version"
            type="number"
            min={0}
            value={version}
            onInput={(event) => setVersion(event.currentTarget.value)}
          />
        </label>
        {error !== undefined && <Notice kind="error">{error}</Notice>}
        {plan !== undefined && (
          <Notice kind="info">
            Keeps {plan.kept.length === 0 ? "nothing" : `keys ${plan.kept.join(", ")}`}; runs again{" "}
            {plan.rerun.length === 0 ? "no completed step" : plan.rerun.map((step) => step.name).join(", ")}
            {plan.repeatedSideEffects.length > 0 &&
              `; side effects repeat for ${plan.repeatedSideEffects.map((step) => step.name).join(", ")}`}.
          </Notice>
        )}
        <div class="dialog-actions">
          <button type="submit" class="secondary" disabled={fromStep === ""}>Preview</button>
          <button type="button" disabled={fromStep === ""} onClick={() => void run(false)}>Fork</button>
          <button type="button" class="secondary" onClick={onClose}>Close</button>
        </div>
      </form>
    </Dialog>
  )
}
