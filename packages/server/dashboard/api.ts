/**
 * The dashboard's side of `@pgflows/server`'s REST API: every call carries the bearer token the
 * person signed in with (kept in `sessionStorage`, so it ends with the tab), and every answer that
 * is not 2xx becomes an `ApiError` with the server's own message.
 */

export type Status = "pending" | "running" | "suspended" | "completed" | "failed" | "cancelled"

export const statuses: ReadonlyArray<Status> = ["pending", "running", "suspended", "completed", "failed", "cancelled"]

export const isEnded = (status: Status): boolean =>
  status === "completed" || status === "failed" || status === "cancelled"

export interface RunRow {
  readonly id: string
  readonly workflow: string
  readonly version: number
  readonly status: Status
  readonly executions: number
  readonly parentId: string | null
  readonly forkedFrom: string | null
  readonly errorTag: string | null
  readonly errorMessage: string | null
  readonly createdAt: string
  readonly updatedAt: string
  readonly completedAt: string | null
  readonly wakeAt: string | null
}

export interface RunRowPage {
  readonly runs: ReadonlyArray<RunRow>
  readonly nextCursor: string | null
}

export interface StepView {
  readonly key: string
  readonly name: string
  readonly status: string
  readonly attempts: number
  readonly output: unknown
  readonly error: unknown
  readonly startedAt: string | null
  readonly completedAt: string | null
  readonly wakeAt: string | null
}

export interface RunView {
  readonly id: string
  readonly workflow: string
  readonly status: Status
  readonly input: unknown
  readonly output: unknown
  readonly error: unknown
  readonly executions: number
  readonly recoveries: number
  readonly parentId: string | null
  readonly createdAt: string
  readonly updatedAt: string
  readonly startedAt: string | null
  readonly completedAt: string | null
  readonly wakeAt: string | null
  readonly waitingFor: string | null
  readonly steps: ReadonlyArray<StepView>
}

export interface RunDetail {
  readonly run: RunView
  readonly version: number
  readonly forkedFrom: { readonly runId: string; readonly key: string } | null
  readonly signals: ReadonlyArray<{
    readonly name: string
    readonly payload: unknown
    readonly sentAt: string
    readonly consumedKey: string | null
    readonly consumedAt: string | null
  }>
  readonly children: ReadonlyArray<{
    readonly id: string
    readonly workflow: string
    readonly version: number
    readonly status: Status
    readonly createdAt: string
    readonly completedAt: string | null
  }>
  readonly events: ReadonlyArray<{ readonly key: string; readonly value: unknown; readonly updatedAt: string }>
}

export interface Bucket {
  readonly start: string
  readonly started: number
  readonly completed: number
  readonly failed: number
  readonly cancelled: number
}

export interface Stats {
  readonly from: string
  readonly to: string
  readonly bucketSeconds: number
  readonly throughputFrom: string
  readonly workflows: ReadonlyArray<{
    readonly workflow: string
    readonly versions: ReadonlyArray<number>
    readonly counts: Readonly<Record<string, number>>
    readonly estimated: ReadonlyArray<string>
    readonly buckets: ReadonlyArray<Bucket>
  }>
  readonly queue: {
    readonly name: string
    readonly depth: number
    readonly visible: number
    readonly oldestAgeSeconds: number | null
    readonly archived: number
    readonly archivedExact: boolean
  }
  readonly deadLetters: ReadonlyArray<{
    readonly id: string
    readonly workflow: string
    readonly version: number
    readonly errorTag: string | null
    readonly errorMessage: string | null
    readonly completedAt: string | null
  }>
  readonly workers: ReadonlyArray<{
    readonly id: string
    readonly workflows: ReadonlyArray<string>
    readonly startedAt: string
    readonly heartbeatAt: string
    readonly alive: boolean
  }>
}

export interface ForkResult {
  readonly runId: string
  readonly forkId: string | null
  readonly dryRun: boolean
  readonly workflow: string
  readonly version: number
  readonly fromKey: string
  readonly kept: ReadonlyArray<string>
  readonly rerun: ReadonlyArray<{ readonly key: string; readonly name: string; readonly transactional: boolean }>
  readonly repeatedSideEffects: ReadonlyArray<{ readonly key: string; readonly name: string }>
}

/** An answer that is not 2xx: the HTTP status, the server's error tag and message. */
export class ApiError extends Error {
  readonly status: number
  readonly tag: string
  constructor(status: number, tag: string, message: string) {
    super(message)
    this.status = status
    this.tag = tag
  }
}

const tokenKey = "pgflows.token"

export const session = {
  token: (): string | undefined => sessionStorage.getItem(tokenKey) ?? undefined,
  signIn: (token: string): void => sessionStorage.setItem(tokenKey, token),
  signOut: (): void => sessionStorage.removeItem(tokenKey)
}

/** Where the API is: the prefix the server put in the page (empty when the API is at the root). */
const base = (): string => document.querySelector<HTMLMetaElement>("meta[name=pgflows-api]")?.content ?? ""

const request = async <A>(method: "GET" | "POST", path: string, body?: unknown): Promise<A> => {
  const token = session.token()
  const headers: Record<string, string> = { accept: "application/json" }
  if (token !== undefined) headers["authorization"] = `Bearer ${token}`
  if (body !== undefined) headers["content-type"] = "application/json"
  let response: Response
  try {
    response = await fetch(`${base()}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
  } catch {
    throw new ApiError(0, "NetworkError", "the server cannot be reached; is it running?")
  }
  const text = await response.text()
  let json: unknown = undefined
  try {
    json = text === "" ? undefined : JSON.parse(text)
  } catch {
    json = undefined
  }
  if (!response.ok) {
    const error = (json ?? {}) as { _tag?: unknown; message?: unknown }
    throw new ApiError(
      response.status,
      typeof error._tag === "string" ? error._tag : `HTTP ${response.status}`,
      typeof error.message === "string" ? error.message : `the server answered ${response.status}`
    )
  }
  return json as A
}

const query = (params: Readonly<Record<string, string | number | undefined>>): string => {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") search.set(key, String(value))
  }
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}

export interface RunFilter {
  readonly workflow?: string | undefined
  readonly version?: number | undefined
  readonly status?: Status | undefined
  readonly from?: string | undefined
  readonly to?: string | undefined
  readonly q?: string | undefined
  readonly limit?: number | undefined
  readonly cursor?: string | undefined
}

const path = (id: string) => encodeURIComponent(id)

export const api = {
  runs: (filter: RunFilter) => request<RunRowPage>("GET", `/views/runs${query({ ...filter })}`),
  run: (id: string) => request<RunDetail>("GET", `/views/runs/${path(id)}`),
  stats: (range: { readonly from?: string | undefined; readonly to?: string | undefined }) =>
    request<Stats>("GET", `/views/stats${query({ ...range, buckets: 30 })}`),
  cancel: (id: string) =>
    request<{ readonly runId: string; readonly outcome: string }>("POST", `/runs/${path(id)}/cancel`),
  retry: (id: string) => request<{ readonly runId: string }>("POST", `/runs/${path(id)}/retry`),
  resume: (id: string) => request<{ readonly runId: string }>("POST", `/runs/${path(id)}/resume`),
  signal: (id: string, name: string, payload: unknown) =>
    request<{ readonly runId: string }>("POST", `/runs/${path(id)}/signals/${path(name)}`, payload),
  fork: (id: string, body: { readonly fromStep: string; readonly version?: number; readonly dryRun?: boolean }) =>
    request<ForkResult>("POST", `/runs/${path(id)}/fork`, body)
}
