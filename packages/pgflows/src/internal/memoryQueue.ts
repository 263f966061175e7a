/**
 * The in-memory queue shared by `MemoryWorkQueue` and `MemoryStore`. Plain synchronous state: every
 * operation runs inside one `Effect.sync`, so operations are atomic with respect to each other.
 */
export interface MemoryMessage {
  readonly msgId: number
  readonly queue: string
  readCount: number
  readonly enqueuedAt: number
  visibleAt: number
  readonly message: unknown
}

export interface ArchivedMemoryMessage extends MemoryMessage {
  readonly archivedAt: number
}

export class MemoryQueueState {
  readonly queues = new Map<string, number>()
  readonly messages = new Map<number, MemoryMessage>()
  readonly archive = new Map<number, ArchivedMemoryMessage>()
  private lastId = 0

  create(queue: string, now: number): void {
    if (!this.queues.has(queue)) this.queues.set(queue, now)
  }

  send(queue: string, message: unknown, now: number, delayMillis: number): number {
    this.create(queue, now)
    const msgId = ++this.lastId
    this.messages.set(msgId, { msgId, queue, readCount: 0, enqueuedAt: now, visibleAt: now + delayMillis, message })
    return msgId
  }

  /**
   * Visible messages (those `accept` takes, when given), earliest visible first, each hidden for
   * `visibilityMillis`.
   */
  read(
    queue: string,
    now: number,
    visibilityMillis: number,
    limit: number,
    accept?: (message: unknown) => boolean
  ): Array<MemoryMessage> {
    const due = [...this.messages.values()]
      .filter((m) => m.queue === queue && m.visibleAt <= now && (accept === undefined || accept(m.message)))
      .sort((a, b) => a.visibleAt - b.visibleAt || a.msgId - b.msgId)
      .slice(0, limit)
    for (const m of due) {
      m.readCount++
      m.visibleAt = now + visibilityMillis
    }
    return due
  }

  delete(msgId: number, queue?: string): boolean {
    const message = this.messages.get(msgId)
    if (message === undefined || (queue !== undefined && message.queue !== queue)) return false
    return this.messages.delete(msgId)
  }

  archiveMessage(msgId: number, now: number, queue?: string): boolean {
    const message = this.messages.get(msgId)
    if (message === undefined || (queue !== undefined && message.queue !== queue)) return false
    this.messages.delete(msgId)
    this.archive.set(msgId, { ...message, archivedAt: now })
    return true
  }

  /** Earliest time a message of the queue becomes visible, after `now`. */
  nextVisible(queue: string, now: number): number | undefined {
    let next: number | undefined
    for (const m of this.messages.values()) {
      if (m.queue === queue && m.visibleAt > now && Number.isFinite(m.visibleAt)) {
        next = next === undefined ? m.visibleAt : Math.min(next, m.visibleAt)
      }
    }
    return next
  }
}
