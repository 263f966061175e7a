/**
 * The web dashboard: static files (a Preact application) that `@pgflows/server` serves, under
 * `/dashboard/` by default. It reads and steers runs through the server's REST API (`GET
 * /views/runs`, `/views/runs/:id`, `/views/stats`, and the admin routes for cancel, retry, resume,
 * signals and forks), with a bearer token the person types in, kept in the tab's `sessionStorage`,
 * or hands over in a link's fragment (`/dashboard/#token=...`, never sent to a server).
 *
 * The files themselves hold no data and are served without authentication; every request for data
 * needs a token (`read` to look, `admin` to act), so a page without one shows only its sign-in form.
 * They are served with a strict Content-Security-Policy (scripts, styles and requests from the same
 * origin only) and `X-Frame-Options: DENY`.
 *
 * - `PgflowsServer.layerServer({ dashboard: true, ... })` serves it beside the API (and redirects
 *   `/` to it);
 * - `Dashboard.layer({ apiPrefix })` adds it to an application's own `HttpRouter`, next to
 *   `PgflowsServer.layer({ prefix })`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as DashboardAssets from "./internal/dashboardAssets.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Where the dashboard is served (default `/dashboard`). */
  readonly path?: `/${string}` | undefined
  /** The `prefix` of `PgflowsServer.layer` whose API the page calls (default: none, the API at `/`). */
  readonly apiPrefix?: `/${string}` | undefined
  /** A directory with the built files (`index.html`, `app.js`, `app.css`); default: the package's own. */
  readonly assets?: string | undefined
}

/**
 * The dashboard cannot be served: its files are missing, or an option is wrong.
 *
 * @category errors
 * @since 0.1.0
 */
export class DashboardError extends Schema.TaggedError<DashboardError>()("DashboardError", {
  reason: Schema.String
}) {
  override get message() {
    return this.reason
  }
}

/**
 * @category models
 * @since 0.1.0
 */
export const defaultPath = "/dashboard"

/**
 * The dashboard's routes: `GET <path>/` (also `<path>`), `<path>/app.js` and `<path>/app.css`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<never, DashboardError, HttpRouter.HttpRouter> =>
  Layer.unwrap(Effect.gen(function*() {
    const path = options.path ?? defaultPath
    for (const [name, value] of [["path", path], ["apiPrefix", options.apiPrefix]] as const) {
      if (value !== undefined && !/^(\/[A-Za-z0-9._~-]+)+$/.test(value)) {
        return yield* new DashboardError({
          reason: `Dashboard.layer: ${name} must be a path such as /dashboard (letters, digits, . _ ~ -)`
        })
      }
    }
    const assets = yield* load(options.assets)
    // The files by absolute path: the router answers `<path>` and `<path>/` alike.
    const page = new TextDecoder().decode(assets.get("index.html")!.body)
      .replace(/<meta name="pgflows-api" content="">/, `<meta name="pgflows-api" content="${options.apiPrefix ?? ""}">`)
      .replace(/(href|src)="(app\.css|app\.js)"/g, `$1="${path}/$2"`)
    const serve = (file: string) => {
      const asset = assets.get(file)!
      return HttpRouter.add(
        "GET",
        `${path}/${file === "index.html" ? "" : file}`,
        Effect.succeed(
          HttpServerResponse.uint8Array(file === "index.html" ? new TextEncoder().encode(page) : asset.body, {
            contentType: asset.contentType,
            headers: headers(file)
          })
        )
      )
    }
    const [page0, ...rest] = DashboardAssets.files.map(serve)
    return Layer.mergeAll(page0!, ...rest)
  }))

/**
 * `GET /` redirected to the dashboard: for a server that serves the dashboard at its root's side.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerRedirectRoot = (path: `/${string}` = defaultPath): Layer.Layer<never, never, HttpRouter.HttpRouter> =>
  HttpRouter.add("GET", "/", Effect.succeed(HttpServerResponse.redirect(`${path}/`, { status: 302 })))

// internal

const load = (directory: string | undefined): Effect.Effect<DashboardAssets.Assets, DashboardError> =>
  Effect.tryPromise({
    try: async () => {
      if (directory !== undefined) {
        const given = DashboardAssets.fromDirectory(directory)
        if (given === undefined) throw new Error(`${directory} lacks one of ${DashboardAssets.files.join(", ")}`)
        return given
      }
      return DashboardAssets.fromDirectory(DashboardAssets.builtDirectory) ?? await DashboardAssets.bundle()
    },
    catch: (cause) =>
      new DashboardError({
        reason: `the dashboard's files are missing (${
          cause instanceof Error ? cause.message : String(cause)
        }): reinstall @pgflows/server, or in its repository run \`npm install\``
      })
  })

const headers = (file: string): Record<string, string> => ({
  "cache-control": file === "index.html" ? "no-cache" : "public, max-age=300",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
})
