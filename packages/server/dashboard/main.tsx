/**
 * The pgflows dashboard: a single page served by `@pgflows/server` (`Dashboard.layer`), talking to
 * its REST API with a bearer token.
 *
 * Signing in: the page asks for a token (read or admin scope) and keeps it in `sessionStorage`,
 * so it is gone when the tab closes. A link may carry it in the fragment (`#token=...`, which
 * browsers never send to a server): the page takes it, then removes it from the address. Without a
 * token nothing but the sign-in form is shown, and the API refuses every call (401).
 *
 * Routes (in the fragment): `#/` the runs list with its filters as a query (`#/?status=failed`),
 * `#/runs/<id>` a run, `#/overview` throughput, failures, queue and workers.
 */
import { render } from "preact"
import { useEffect, useMemo, useState } from "preact/hooks"
import { api, ApiError, session } from "./api.ts"
import { explain, Notice } from "./components.tsx"
import { OverviewPage } from "./OverviewPage.tsx"
import { RunPage } from "./RunPage.tsx"
import { emptyFilters, parseFilters, RunsPage } from "./RunsPage.tsx"

type Route =
  | { readonly page: "runs"; readonly search: URLSearchParams }
  | { readonly page: "run"; readonly id: string }
  | { readonly page: "overview" }

const route = (): Route => {
  const hash = location.hash.replace(/^#/, "")
  const [path = "/", search = ""] = hash.split("?", 2)
  const run = /^\/runs\/(.+)$/.exec(path)
  if (run !== null) return { page: "run", id: decodeURIComponent(run[1]!) }
  if (path === "/overview") return { page: "overview" }
  return { page: "runs", search: new URLSearchParams(search) }
}

/** A token handed over in the fragment (`#token=...`) is taken, then removed from the address. */
const takeTokenFromFragment = () => {
  const match = /^#token=([^&]+)/.exec(location.hash)
  if (match === null) return
  session.signIn(decodeURIComponent(match[1]!))
  history.replaceState(null, "", `${location.pathname}${location.search}#/`)
}

const SignIn = ({ onSignedIn, reason }: { readonly onSignedIn: () => void; readonly reason?: string | undefined }) => {
  const [token, setToken] = useState("")
  const [error, setError] = useState<string | undefined>(reason)
  const submit = async (event: Event) => {
    event.preventDefault()
    session.signIn(token.trim())
    try {
      await api.runs({ limit: 1 })
      onSignedIn()
    } catch (caught) {
      session.signOut()
      setError(caught instanceof ApiError && caught.status === 401 ? "That token is not accepted." : explain(caught))
    }
  }
  return (
    <main id="main" class="signin">
      <h1>pgflows</h1>
      <form onSubmit={(event) => void submit(event)} aria-label="Sign in">
        <label>
          API token
          <input
            name="token"
            type="password"
            autoComplete="current-password"
            required
            autoFocus
            value={token}
            onInput={(event) => setToken(event.currentTarget.value)}
          />
        </label>
        <p class="muted">
          A bearer token of the server (<code>PGFLOWS_SERVER_TOKENS</code>): scope <code>read</code> to look,{" "}
          <code>admin</code> to cancel, retry, signal and fork. It is kept in this tab only.
        </p>
        {error !== undefined && <Notice kind="error">{error}</Notice>}
        <button type="submit">Sign in</button>
      </form>
    </main>
  )
}

const App = () => {
  takeTokenFromFragment()
  const [signedIn, setSignedIn] = useState(session.token() !== undefined)
  const [reason, setReason] = useState<string | undefined>(undefined)
  const [current, setCurrent] = useState(route)
  const [workflows, setWorkflows] = useState<ReadonlyArray<string>>([])

  useEffect(() => {
    const onHash = () => {
      takeTokenFromFragment()
      setSignedIn(session.token() !== undefined)
      setCurrent(route())
    }
    window.addEventListener("hashchange", onHash)
    // A token that the server stops accepting signs the person out.
    const onRejected = (event: PromiseRejectionEvent) => {
      if (event.reason instanceof ApiError && event.reason.status === 401) signOut("Your token was refused.")
    }
    window.addEventListener("unhandledrejection", onRejected)
    return () => {
      window.removeEventListener("hashchange", onHash)
      window.removeEventListener("unhandledrejection", onRejected)
    }
  }, [])

  useEffect(() => {
    if (!signedIn) return
    api.stats({}).then(
      (stats) => setWorkflows(stats.workflows.map((workflow) => workflow.workflow)),
      (error: unknown) => {
        if (error instanceof ApiError && error.status === 401) signOut("Your token was refused.")
      }
    )
  }, [signedIn])

  const signOut = (why?: string) => {
    session.signOut()
    setReason(why)
    setSignedIn(false)
  }

  const searchText = current.page === "runs" ? current.search.toString() : ""
  const filters = useMemo(
    () => searchText === "" ? emptyFilters : parseFilters(new URLSearchParams(searchText)),
    [searchText]
  )

  if (!signedIn) return <SignIn reason={reason} onSignedIn={() => setSignedIn(true)} />
  const nav = (page: Route["page"], href: string, label: string) => (
    <a
      href={href}
      aria-current={current.page === page || (page === "runs" && current.page === "run") ? "page" : undefined}
    >
      {label}
    </a>
  )
  return (
    <>
      <a
        class="skip"
        href="#main"
        onClick={(event) => {
          event.preventDefault()
          document.getElementById("main")?.focus()
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <span class="brand">pgflows</span>
        <nav aria-label="Pages">
          {nav("runs", "#/", "Runs")}
          {nav("overview", "#/overview", "Overview")}
        </nav>
        <button type="button" class="secondary" onClick={() => signOut()}>Sign out</button>
      </header>
      <main id="main" tabIndex={-1}>
        {current.page === "runs" && <RunsPage filters={filters} workflows={workflows} />}
        {current.page === "run" && <RunPage id={current.id} />}
        {current.page === "overview" && <OverviewPage />}
      </main>
    </>
  )
}

render(<App />, document.getElementById("app")!)
