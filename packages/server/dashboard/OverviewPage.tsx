/**
 * The overview: per workflow, its runs by state and a chart of throughput and failures over the
 * chosen range; the run queue's depth; the latest dead letters; the workers.
 */
import { useCallback, useEffect, useState } from "preact/hooks"
import { api } from "./api.ts"
import type { Bucket, Stats } from "./api.ts"
import { explain, Notice, Time } from "./components.tsx"
import { duration } from "./format.ts"

const ranges = [["1h", 60], ["6h", 360], ["24h", 1440], ["7d", 10_080]] as const

export const OverviewPage = () => {
  const [range, setRange] = useState<number>(60)
  const [stats, setStats] = useState<Stats | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const load = useCallback(async () => {
    try {
      setStats(await api.stats({ from: new Date(Date.now() - range * 60_000).toISOString() }))
      setError(undefined)
    } catch (caught) {
      setError(explain(caught))
    }
  }, [range])
  useEffect(() => {
    void load()
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void load()
    }, 5000)
    return () => clearInterval(timer)
  }, [load])

  return (
    <section aria-labelledby="overview-title">
      <div class="page-head">
        <h1 id="overview-title">Overview</h1>
        <label>
          Range{" "}
          <select onChange={(event) => setRange(Number(event.currentTarget.value))}>
            {ranges.map(([name, minutes]) => <option value={minutes} selected={range === minutes}>last {name}</option>)}
          </select>
        </label>
      </div>
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      {stats === undefined ? (error === undefined && <p class="muted" aria-busy="true">Loading…</p>) : (
        <>
          <div class="cards">
            <div class="card" data-metric="queue-depth">
              <h2>Queue depth</h2>
              <p class="big">{stats.queue.depth}</p>
              <p class="muted">
                {stats.queue.visible} due now · oldest {stats.queue.oldestAgeSeconds === null
                  ? "—"
                  : duration(stats.queue.oldestAgeSeconds * 1000)} · queue {stats.queue.name}
              </p>
            </div>
            <div class="card" data-metric="dead-letters">
              <h2>Dead letters</h2>
              <p class="big">{stats.queue.archivedExact ? "" : "≈"}{stats.queue.archived}</p>
              <p class="muted">runs that ended failed, in the archive</p>
            </div>
            <div class="card" data-metric="workers">
              <h2>Workers</h2>
              <p class="big">{stats.workers.filter((worker) => worker.alive).length}</p>
              <p class="muted">alive, of {stats.workers.length} announced</p>
            </div>
          </div>
          <h2>Workflows</h2>
          {stats.throughputFrom > stats.from && (
            <p class="muted" data-notice="throughput-partial">
              The range holds more runs than the charts read (the newest 100,000): they are whole from{" "}
              <Time iso={stats.throughputFrom} /> on.
            </p>
          )}
          {stats.workflows.length === 0 ? <p class="muted">No run yet.</p> : (
            <div class="workflow-grid">
              {stats.workflows.map((workflow) => (
                <article class="card" data-workflow={workflow.workflow}>
                  <h3>
                    <a href={`#/?workflow=${encodeURIComponent(workflow.workflow)}`}>{workflow.workflow}</a>{" "}
                    <span class="muted">v{workflow.versions.join(", v")}</span>
                  </h3>
                  <p class="counts">
                    {Object.entries(workflow.counts).map(([status, count]) => (
                      <a
                        class={`badge badge-${status}`}
                        href={`#/?workflow=${encodeURIComponent(workflow.workflow)}&status=${status}`}
                      >
                        {workflow.estimated.includes(status) ? "≈" : ""}
                        {count} {status}
                      </a>
                    ))}
                  </p>
                  <Chart buckets={workflow.buckets} seconds={stats.bucketSeconds} name={workflow.workflow} />
                </article>
              ))}
            </div>
          )}
          <h2>Latest dead letters</h2>
          {stats.deadLetters.length === 0 ?
            <p class="muted">No failed run.</p> :
            (
              <table class="compact" aria-label="Latest failed runs">
                <thead>
                  <tr>
                    <th scope="col">Run</th>
                    <th scope="col">Workflow</th>
                    <th scope="col">Error</th>
                    <th scope="col">Failed</th>
                  </tr>
                </thead>
                <tbody>
                  {stats.deadLetters.map((run) => (
                    <tr>
                      <td data-label="Run">
                        <a class="mono" href={`#/runs/${encodeURIComponent(run.id)}`}>{run.id}</a>
                      </td>
                      <td data-label="Workflow">
                        {run.workflow} <span class="muted">v{run.version}</span>
                      </td>
                      <td data-label="Error">
                        <strong>{run.errorTag ?? ""}</strong> {run.errorMessage ?? ""}
                      </td>
                      <td data-label="Failed">
                        <Time iso={run.completedAt} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          <h2>Workers</h2>
          {stats.workers.length === 0 ?
            <p class="muted">No worker has announced itself.</p> :
            (
              <table class="compact" aria-label="Workers">
                <thead>
                  <tr>
                    <th scope="col">Worker</th>
                    <th scope="col">Workflows</th>
                    <th scope="col">Heartbeat</th>
                    <th scope="col">State</th>
                  </tr>
                </thead>
                <tbody>
                  {stats.workers.map((worker) => (
                    <tr>
                      <td data-label="Worker" class="mono">{worker.id}</td>
                      <td data-label="Workflows">{worker.workflows.join(", ")}</td>
                      <td data-label="Heartbeat">
                        <Time iso={worker.heartbeatAt} />
                      </td>
                      <td data-label="State">{worker.alive ? "alive" : "gone"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
        </>
      )}
    </section>
  )
}

/** Throughput (completed) and failures per bucket, as stacked bars in an SVG with a text summary. */
const Chart = (
  { buckets, seconds, name }: {
    readonly buckets: ReadonlyArray<Bucket>
    readonly seconds: number
    readonly name: string
  }
) => {
  const width = 300
  const height = 80
  const max = Math.max(1, ...buckets.map((bucket) => bucket.completed + bucket.failed + bucket.cancelled))
  const step = width / Math.max(1, buckets.length)
  const total = (key: "completed" | "failed" | "cancelled" | "started") =>
    buckets.reduce((sum, bucket) => sum + bucket[key], 0)
  const summary = `${total("started")} started, ${total("completed")} completed, ${total("failed")} failed, ${
    total("cancelled")
  } cancelled; bars of ${duration(seconds * 1000)}`
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${name}: ${summary}`} preserveAspectRatio="none">
        {buckets.map((bucket, index) => {
          const done = (bucket.completed / max) * (height - 2)
          const failed = (bucket.failed / max) * (height - 2)
          const cancelled = (bucket.cancelled / max) * (height - 2)
          const x = index * step + 0.5
          const w = Math.max(1, step - 1)
          return (
            <g>
              <title>
                {new Date(bucket.start).toLocaleTimeString()}: {bucket.completed} completed, {bucket.failed} failed,
                {" "}
                {bucket.cancelled} cancelled, {bucket.started} started
              </title>
              <rect class="bar-completed" x={x} y={height - done} width={w} height={done} />
              <rect class="bar-failed" x={x} y={height - done - failed} width={w} height={failed} />
              <rect class="bar-cancelled" x={x} y={height - done - failed - cancelled} width={w} height={cancelled} />
            </g>
          )
        })}
      </svg>
      <figcaption class="muted">{summary}</figcaption>
    </figure>
  )
}
