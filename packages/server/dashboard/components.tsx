/** Small pieces shared by the pages: status badges, JSON, times, notices, dialogs. */
import type { ComponentChildren } from "preact"
import { useEffect, useRef } from "preact/hooks"
import { ApiError } from "./api.ts"
import type { Status } from "./api.ts"
import { ago, pretty, time } from "./format.ts"

export const StatusBadge = ({ status }: { readonly status: string }) => (
  <span class={`badge badge-${status}`} data-status={status}>{status}</span>
)

export const Time = ({ iso }: { readonly iso: string | null | undefined }) =>
  iso === null || iso === undefined
    ? <span class="muted">—</span>
    : <time dateTime={iso} title={time(iso)}>{ago(iso)}</time>

/** Pretty-printed JSON in a scrollable block, labelled for screen readers. */
export const Json = ({ value, label }: { readonly value: unknown; readonly label: string }) => (
  <pre class="json" tabIndex={0} aria-label={label}>
    <code>{pretty(value)}</code>
  </pre>
)

export const Notice = (
  { kind, children }: { readonly kind: "error" | "info" | "success"; readonly children: ComponentChildren }
) => (
  <div class={`notice notice-${kind}`} role={kind === "error" ? "alert" : "status"}>
    {children}
  </div>
)

/** What went wrong with a call, in words, with what to do for the usual cases. */
export const explain = (error: unknown): string => {
  if (!(error instanceof ApiError)) return String(error)
  if (error.status === 403) return `${error.message} (sign in with an admin token to act on runs)`
  return error.message
}

/** A modal `<dialog>`: focus moves into it, Escape closes it, focus returns where it was. */
export const Dialog = (
  { title, open, onClose, children }: {
    readonly title: string
    readonly open: boolean
    readonly onClose: () => void
    readonly children: ComponentChildren
  }
) => {
  const ref = useRef<HTMLDialogElement>(null)
  useEffect(() => {
    const dialog = ref.current
    if (dialog === null) return
    if (open && !dialog.open) dialog.showModal()
    if (!open && dialog.open) dialog.close()
  }, [open])
  return (
    <dialog ref={ref} aria-label={title} onClose={onClose} onCancel={onClose}>
      <h2>{title}</h2>
      {children}
    </dialog>
  )
}

export const statusOptions = (selected: Status | undefined, statuses: ReadonlyArray<Status>) => [
  <option value="" selected={selected === undefined}>any status</option>,
  ...statuses.map((status) => <option value={status} selected={selected === status}>{status}</option>)
]
