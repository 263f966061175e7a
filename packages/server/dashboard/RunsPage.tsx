/**
 * The runs list: filters (workflow, version, status, time range, id search) kept in the address, so
 * a filtered view can be bookmarked or shared; live updates every few seconds while the tab is
 * visible; more rows on demand.
 */
import { useCallback, useEffect, useRef, useState } from "preact/hooks"
import { api, statuses } from "./api.ts"
import type { RunFilter, RunRow, Status } from "./api.ts"
import { explain, Notice, StatusBadge, statusOptions, Time } from "./components.tsx"
import { between, duration } from "./format.ts"

/** The time ranges offered, in minutes back from now (`all`: no bound). */
const ranges = [["15m", 15], ["1h", 60], ["24h", 1440], ["7d", 10_080], ["30d", 43_200], ["all", 0], [
  "custom",
  -1
]] as const
type Range = typeof ranges[number][0]

export interface Filters {
  readonly workflow: string
  readonly version: string
  readonly status: Status | ""
  readonly range: Range
  readonly from: string
  readonly to: string
  readonly q: string
}

export const emptyFilters: Filters = { workflow: "", version: "", status: "", range: "all", from: "", to: "", q: "" }

export const parseFilters = (search: URLSearchParams): Filters => {
  const status = search.get("status") ?? ""
  const range = search.get("range") ?? "all"
  return {
    workflow: search.get("workflow") ?? "",
    version: /^\d+$/.test(search.get("version") ?? "") ? search.get("version")! : "",
    status: (statuses as ReadonlyArray<string>).includes(status) ? status as Status : "",
    range: ranges.some(([name]) => name === range) ? range as Range : "all",
    from: search.get("from") ?? "",
    to: search.get("to") ?? "",
    q: search.get("q") ?? ""
  }
}

const toSearch = (filters: Filters): string => {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(filters)) {
    if (value !== "" && !(key === "range" && value === "all")) search.set(key, value)
  }
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}

/** A `datetime-local` value (local time, no zone) as an ISO instant. */
const localToIso = (value: string): string | undefined => {
  if (value === "") return undefined
  const date = new Date(value)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

const toQuery = (filters: Filters, now: number): RunFilter => {
  const minutes = ranges.find(([name]) => name === filters.range)?.[1] ?? 0
  const from = minutes > 0
    ? new Date(now - minutes * 60_000).toISOString()
    : minutes < 0
    ? localToIso(filters.from)
    : undefined
  return {
    workflow: filters.workflow.trim() || undefined,
    version: filters.version === "" ? undefined : Number(filters.version),
    status: filters.status === "" ? undefined : filters.status,
    from,
    to: minutes < 0 ? localToIso(filters.to) : undefined,
    q: filters.q.trim() || undefined
  }
}

export const RunsPage = (
  { filters, workflows }: { readonly filters: Filters; readonly workflows: ReadonlyArray<string> }
) => {
  const [draft, setDraft] = useState(filters)
  const [rows, setRows] = useState<ReadonlyArray<RunRow> | undefined>(undefined)
  const [cursor, setCursor] = useState<string | null>(null)
  const [error, setError] = useState<string | undefined>(undefined)
  const [live, setLive] = useState(true)
  const [updated, setUpdated] = useState<Date | undefined>(undefined)
  const pages = useRef(1)
  const search = useRef<HTMLInputElement>(null)

  useEffect(() => setDraft(filters), [filters])

  const load = useCallback(async (more: boolean) => {
    try {
      const query = toQuery(filters, Date.now())
      if (more && cursor !== null) {
        const page = await api.runs({ ...query, cursor })
        pages.current += 1
        setRows((current) => [...(current ?? []), ...page.runs])
        setCursor(page.nextCursor)
      } else {
        const page = await api.runs({ ...query, limit: Math.min(500, 50 * pages.current) })
        setRows(page.runs)
        setCursor(page.nextCursor)
      }
      setError(undefined)
      setUpdated(new Date())
    } catch (caught) {
      setError(explain(caught))
    }
  }, [filters, cursor])

  useEffect(() => {
    pages.current = 1
    setRows(undefined)
    void load(false)
    // Reload when the filters change; `load` changes with the cursor too, which must not reload.
  }, [filters])

  useEffect(() => {
    if (!live) return
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void load(false)
    }, 3000)
    return () => clearInterval(timer)
  }, [live, load])

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const target = event.target as HTMLElement | null
      const typing = target !== null && /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName)
      if (event.key === "/" && !typing) {
        event.preventDefault()
        search.current?.focus()
      }
    }
    document.addEventListener("keydown", onKey)
    return () => document.removeEventListener("keydown", onKey)
  }, [])

  const apply = (event: Event) => {
    event.preventDefault()
    location.hash = `#/${toSearch(draft)}`
  }
  const set = (key: keyof Filters) => (event: Event) =>
    setDraft({ ...draft, [key]: (event.currentTarget as HTMLInputElement).value })

  return (
    <section aria-labelledby="runs-title">
      <div class="page-head">
        <h1 id="runs-title">Runs</h1>
        <label class="live">
          <input type="checkbox" checked={live} onChange={(event) => setLive(event.currentTarget.checked)} />{" "}
          Live{updated === undefined ? "" : ` · updated ${updated.toLocaleTimeString()}`}
        </label>
      </div>
      <form class="filters" onSubmit={apply} aria-label="Filter runs">
        <label>
          Search id
          <input
            ref={search}
            type="search"
            name="q"
            value={draft.q}
            onInput={set("q")}
            placeholder="a run id: it and its children  ( / )"
            autoComplete="off"
          />
        </label>
        <label>
          Workflow
          <input name="workflow" list="workflow-names" value={draft.workflow} onInput={set("workflow")} />
          <datalist id="workflow-names">{workflows.map((name) => <option value={name} />)}</datalist>
        </label>
        <label>
          Version
          <input
            name="version"
            type="number"
            min={0}
            inputMode="numeric"
            value={draft.version}
            onInput={set("version")}
          />
        </label>
        <label>
          Status
          <select name="status" onChange={set("status")}>
            {statusOptions(draft.status === "" ? undefined : draft.status, statuses)}
          </select>
        </label>
        <label>
          Created
          <select name="range" onChange={set("range")}>
            {ranges.map(([name]) => (
              <option value={name} selected={draft.range === name}>
                {name === "all" ? "any time" : name === "custom" ? "between…" : `last ${name}`}
              </option>
            ))}
          </select>
        </label>
        {draft.range === "custom" && (
          <>
            <label>
              From
              <input name="from" type="datetime-local" value={draft.from} onInput={set("from")} />
            </label>
            <label>
              To
              <input name="to" type="datetime-local" value={draft.to} onInput={set("to")} />
            </label>
          </>
        )}
        <div class="filter-actions">
          <button type="submit">Apply</button>
          <button type="button" class="secondary" onClick={() => (location.hash = "#/")}>Clear</button>
        </div>
      </form>
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      {rows === undefined && error === undefined && <p class="muted" aria-busy="true">Loading runs…</p>}
      {rows !== undefined && rows.length === 0 && <p class="muted">No run matches these filters.</p>}
      {rows !== undefined && rows.length > 0 && (
        <table class="runs" aria-label="Runs, newest first">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Workflow</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Took</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((run) => (
              <tr key={run.id} data-run={run.id} data-status={run.status}>
                <td data-label="Run">
                  <a class="mono" href={`#/runs/${encodeURIComponent(run.id)}`}>{run.id}</a>
                  {run.parentId !== null && <span class="tag" title={`child of ${run.parentId}`}>child</span>}
                  {run.forkedFrom !== null && <span class="tag" title={`forked from ${run.forkedFrom}`}>fork</span>}
                </td>
                <td data-label="Workflow">
                  <span>
                    {run.workflow} <span class="muted">v{run.version}</span>
                  </span>
                </td>
                <td data-label="Status">
                  <StatusBadge status={run.status} />
                </td>
                <td data-label="Created">
                  <Time iso={run.createdAt} />
                </td>
                <td data-label="Took">{duration(between(run.createdAt, run.completedAt))}</td>
                <td data-label="Error" class="error-cell">
                  {run.errorTag === null ? null : <strong>{run.errorTag}</strong>}
                  {run.errorMessage === null ? null : <span>{run.errorMessage}</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {cursor !== null && rows !== undefined && (
        <button
          type="button"
          class="secondary more"
          onClick={() => void load(true)}
        >
          Load more
        </button>
      )}
    </section>
  )
}
