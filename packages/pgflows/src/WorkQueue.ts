/**
 * A message queue with pgmq's semantics: `send` with an optional delay, `read` with a visibility
 * timeout (a read message is invisible to other readers until it expires, and `readCount` counts its
 * deliveries), `delete`, `archive` (the dead-letter archive keeps the message), `setVisibility`, and
 * metrics. Queues are created with `create` (or by the first `send`) and removed with `drop`.
 *
 * `PgWorkQueue` implements it with pgflows' own tables (no extension needed), `MemoryWorkQueue` in
 * memory; one conformance suite runs against both. The engine keeps its run queue here too (the
 * queue named by `PgflowsConfig.queue`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type { StoreError } from "./PgflowsError.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Message {
  readonly msgId: number
  readonly readCount: number
  readonly enqueuedAt: Date
  /** When the message is (or becomes) visible to readers. */
  readonly visibleAt: Date
  readonly message: unknown
}

/**
 * @category models
 * @since 0.1.0
 */
export interface ArchivedMessage extends Message {
  readonly archivedAt: Date
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Metrics {
  readonly queue: string
  /** Messages in the queue, visible or not. */
  readonly length: number
  /** Messages visible now. */
  readonly visible: number
  readonly newestMessageAge: Duration.Duration | undefined
  readonly oldestMessageAge: Duration.Duration | undefined
  /**
   * Messages moved to the archive: counted up to 10,000, estimated beyond from the database's
   * statistics (`archivedExact` says which), so the metrics read a bounded number of rows.
   */
  readonly archived: number
  readonly archivedExact: boolean
  readonly scrapedAt: Date
}

/**
 * @category models
 * @since 0.1.0
 */
export interface QueueInfo {
  readonly queue: string
  readonly createdAt: Date
}

/**
 * @category services
 * @since 0.1.0
 */
export class WorkQueue extends Context.Service<WorkQueue, {
  readonly create: (queue: string) => Effect.Effect<void, StoreError>
  /** Removes the queue, its messages and its archive; false when it did not exist. */
  readonly drop: (queue: string) => Effect.Effect<boolean, StoreError>
  readonly list: Effect.Effect<ReadonlyArray<QueueInfo>, StoreError>
  /** Deletes every message of the queue (not its archive); returns how many. */
  readonly purge: (queue: string) => Effect.Effect<number, StoreError>
  readonly send: (
    queue: string,
    message: unknown,
    options?: { readonly delay?: Duration.Input | undefined }
  ) => Effect.Effect<number, StoreError>
  readonly sendBatch: (
    queue: string,
    messages: ReadonlyArray<unknown>,
    options?: { readonly delay?: Duration.Input | undefined }
  ) => Effect.Effect<ReadonlyArray<number>, StoreError>
  /** Up to `limit` visible messages, oldest first, each made invisible for `visibilityTimeout`. */
  readonly read: (
    queue: string,
    options: { readonly visibilityTimeout: Duration.Input; readonly limit?: number | undefined }
  ) => Effect.Effect<ReadonlyArray<Message>, StoreError>
  readonly delete: (queue: string, msgId: number) => Effect.Effect<boolean, StoreError>
  /** Moves the message to the queue's archive. */
  readonly archive: (queue: string, msgId: number) => Effect.Effect<boolean, StoreError>
  /** Makes the message visible again after `delay` from now. */
  readonly setVisibility: (
    queue: string,
    msgId: number,
    delay: Duration.Input
  ) => Effect.Effect<Message | undefined, StoreError>
  readonly archived: (
    queue: string,
    options?: { readonly limit?: number | undefined }
  ) => Effect.Effect<ReadonlyArray<ArchivedMessage>, StoreError>
  readonly metrics: (queue: string) => Effect.Effect<Metrics, StoreError>
}>()("pgflows/WorkQueue") {}
