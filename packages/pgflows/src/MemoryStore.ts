/**
 * `Store` (and its `WorkQueue`) in memory, for tests and local tools. It follows the same rules as
 * `PgStore` (one conformance suite runs on both): atomic start, claims under leases with token
 * checks on every write, takeover of expired leases, dead-letter archive, cancellation. Time comes
 * from `Clock`, so `TestClock.adjust` drives leases, delays, sleeps and retries.
 *
 * Nothing survives the process: use it where durability is not what is being tested.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type { MemoryMessage, MemoryQueueState } from "./internal/memoryQueue.ts"
import * as Versions from "./internal/versions.ts"
import * as MemoryWorkQueue from "./MemoryWorkQueue.ts"
import * as PgflowsConfig from "./PgflowsConfig.ts"
import type { StoreError } from "./PgflowsError.ts"
import * as Store from "./Store.ts"
import type * as WorkQueue from "./WorkQueue.ts"

/**
 * A fresh in-memory `Store` and the `WorkQueue` it keeps its run queue in.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<Store.Store | WorkQueue.WorkQueue, PgflowsConfig.PgflowsConfigError> = Layer.effect(
  Store.Store,
  Effect.gen(function*() {
    const state = yield* MemoryWorkQueue.State
    const config = yield* PgflowsConfig.PgflowsConfig
    const notifications = yield* PubSub.unbounded<Store.Notification>()
    return make(state, config, notifications)
  })
).pipe(
  Layer.provideMerge(MemoryWorkQueue.layerFromState),
  Layer.provide(MemoryWorkQueue.State.layer),
  Layer.provide(PgflowsConfig.layerDefault)
)

// internal

type MutableRun = { -readonly [K in keyof Store.RunRecord]: Store.RunRecord[K] } & {
  input: unknown
  /** The run's concurrency key and priority in its named queue. */
  concurrencyKey: string | null
  priority: number
}

/** A named queue's claim considers this many of its oldest due messages (as `PgStore`'s). */
const flowWindow = 1000

const terminal = (status: Store.RunRecord["status"]) =>
  status === "completed" || status === "failed" || status === "cancelled"

const make = (
  state: MemoryQueueState,
  config: PgflowsConfig.PgflowsConfig,
  notifications: PubSub.PubSub<Store.Notification>
): Store.Store["Service"] => {
  const runs = new Map<string, MutableRun>()
  const steps = new Map<string, Map<string, Store.StepRecord>>()
  const signals: Array<{ runId: string; name: string; payload: unknown; consumedKey: string | null }> = []
  const events = new Map<string, { value: unknown; updatedAt: number }>()
  /** Live workers and the workflow keys (`internal/versions.ts`) they serve. */
  const workers = new Map<string, { readonly workflows: ReadonlyArray<string>; readonly expiresAt: number }>()
  const queue = config.queue
  /** The names `exclusive` runs an effect under now. */
  const held = new Set<string>()

  const atNow = <A>(f: (now: number) => A): Effect.Effect<A, StoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => f(now)))
  const notify = (notification: Store.Notification) => PubSub.publishUnsafe(notifications, notification)
  const snapshot = ({ input: _, concurrencyKey: _key, priority: _priority, ...run }: MutableRun): Store.RunRecord => ({
    ...run
  })
  /** The starts (first executions) of runs of rate-limited queues. */
  const starts: Array<{ readonly queue: string; readonly bucket: string; readonly at: number }> = []
  /** The latest run started with each deduplication key, by workflow and key. */
  const deduplication = new Map<string, { readonly runId: string; readonly until: number }>()
  /** The runs that took a slot of a named queue, by run: the slot is held while the claim's lease is. */
  const slots = new Map<string, { readonly queue: string; readonly key: string | null; readonly token: string }>()
  const holdsSlot = (runId: string, slot: { readonly token: string }, now: number) => {
    const run = runs.get(runId)
    return run !== undefined && run.status === "running" && run.leaseOwner === slot.token &&
      (run.leaseExpiresAt ?? 0) > now
  }
  /** The slots of a queue in use now, dropping those whose run gave them back. */
  const liveSlots = (queue: string, now: number) => {
    const live: Array<{ readonly runId: string; readonly key: string | null }> = []
    for (const [runId, slot] of slots) {
      if (slot.queue !== queue) continue
      if (holdsSlot(runId, slot, now)) live.push({ runId, key: slot.key })
      else if (runs.get(runId)?.leaseOwner !== slot.token || runs.get(runId)?.status !== "running") {
        slots.delete(runId)
      }
    }
    return live
  }
  const served = (key: string, now: number) =>
    [...workers.values()].some((worker) => worker.expiresAt > now && worker.workflows.includes(key))
  /** The newest version of `workflow` a live worker serves, else 0. */
  const newestServed = (workflow: string, now: number) => {
    let newest = 0
    for (const worker of workers.values()) {
      if (worker.expiresAt <= now) continue
      for (const key of worker.workflows) {
        const served = Versions.parse(key)
        if (served.workflow === workflow && served.version > newest) newest = served.version
      }
    }
    return newest
  }
  const message = (run: { readonly id: string; readonly workflow: string; readonly version: number }) => ({
    run: run.id,
    workflow: Versions.key(run.workflow, run.version)
  })

  const end = (run: MutableRun, msgId: number | null, now: number) => {
    if (msgId !== null) state.delete(msgId)
    run.leaseOwner = null
    run.leaseExpiresAt = null
    run.updatedAt = now
  }

  /** Something happened that the run may wait for: count it, and wake the run if it sleeps. */
  const wake = (run: MutableRun, now: number) => {
    if (terminal(run.status)) return
    run.events++
    run.updatedAt = now
    if (run.status !== "suspended") return
    run.wakeAt = now
    const message = run.msgId === null ? undefined : state.messages.get(run.msgId)
    if (message !== undefined) message.visibleAt = now
    notify({ _tag: "Runnable" })
  }

  const wakeParent = (run: MutableRun, now: number) => {
    const parent = run.parentId === null ? undefined : runs.get(run.parentId)
    if (parent !== undefined) wake(parent, now)
  }

  const writeJournal = (
    run: MutableRun,
    entry: Omit<Store.StepRecord, "runId" | "startedAt" | "completedAt">,
    now: number
  ) => {
    const journal = steps.get(run.id) ?? new Map<string, Store.StepRecord>()
    steps.set(run.id, journal)
    const existing = journal.get(entry.key)
    if (existing !== undefined && (existing.status === "completed" || existing.status === "failed")) return
    const final = entry.status === "completed" || entry.status === "failed"
    journal.set(entry.key, {
      ...entry,
      runId: run.id,
      startedAt: existing?.startedAt ?? now,
      completedAt: final ? now : null
    })
  }

  const owned = (runId: string, token: string) => {
    const run = runs.get(runId)
    return run !== undefined && run.leaseOwner === token ? run : undefined
  }

  const descendants = (runId: string): Array<MutableRun> => {
    const found: Array<MutableRun> = []
    for (const run of runs.values()) {
      if (run.parentId === runId) found.push(run, ...descendants(run.id))
    }
    return found
  }

  const restart = (run: MutableRun, now: number) => {
    run.status = "pending"
    run.completedAt = null
    run.wakeAt = null
    run.leaseOwner = null
    run.leaseExpiresAt = null
    run.events++
    run.updatedAt = now
    run.msgId = state.send(queue, message(run), now, 0)
  }

  const claimable = (run: MutableRun, now: number) =>
    (run.status === "pending" && (run.wakeAt === null || run.wakeAt <= now)) ||
    (run.status === "suspended" && run.wakeAt !== null && run.wakeAt <= now) ||
    (run.status === "running" && (run.leaseExpiresAt ?? 0) < now)

  /**
   * What a named queue's claim of up to `limit` runs takes (as `PgStore`'s `flowClaim`): among the
   * oldest due messages of its workflows, the claimable runs highest priority first, then in due
   * order, within the queue's limits; how many were claimable; and the messages whose run cannot be
   * claimed (the claim reads them too, so it fixes them).
   */
  const planFlow = (limit: number, flow: Store.ClaimQueue, keys: ReadonlySet<string>, now: number) => {
    const live = liveSlots(flow.name, now)
    const candidates = [...state.messages.values()]
      .filter((m) => m.queue === queue && m.visibleAt <= now && keys.has((m.message as { workflow: string }).workflow))
      .sort((a, b) => a.visibleAt - b.visibleAt || a.msgId - b.msgId)
      .slice(0, flowWindow)
    const runOf = (m: MemoryMessage) => runs.get((m.message as { run: string }).run)
    const isClaimable = (m: MemoryMessage) => {
      const run = runOf(m)
      return run !== undefined && keys.has(Versions.key(run.workflow, run.version)) && claimable(run, now)
    }
    const ranked = candidates.filter(isClaimable).sort((a, b) =>
      runOf(b)!.priority - runOf(a)!.priority || a.visibleAt - b.visibleAt || a.msgId - b.msgId
    )
    const room = Math.min(limit, flow.concurrency === undefined ? limit : flow.concurrency - live.length)
    const perKey = new Map<string, number>()
    for (const slot of live) if (slot.key !== null) perKey.set(slot.key, (perKey.get(slot.key) ?? 0) + 1)
    // The starts within the rate limit's period, per bucket (the key, or "" for the whole queue).
    const rate = flow.rateLimit
    const bucketOf = (run: MutableRun) => rate?.perKey === true ? run.concurrencyKey ?? "" : ""
    const recent = new Map<string, number>()
    if (rate !== undefined) {
      for (let i = starts.length - 1; i >= 0; i--) {
        if (starts[i]!.queue === flow.name && starts[i]!.at <= now - rate.periodMillis) starts.splice(i, 1)
      }
      for (const start of starts) {
        if (start.queue === flow.name && start.at > now - rate.periodMillis) {
          recent.set(start.bucket, (recent.get(start.bucket) ?? 0) + 1)
        }
      }
    }
    const chosen: Array<MemoryMessage> = []
    for (const m of ranked) {
      if (chosen.length >= room) break
      const run = runOf(m)!
      if (rate !== undefined && run.executions === 0 && (recent.get(bucketOf(run)) ?? 0) >= rate.limit) continue
      const key = run.concurrencyKey
      if (flow.keyConcurrency !== undefined && key !== null) {
        const taken = perKey.get(key) ?? 0
        if (taken >= flow.keyConcurrency) continue
        perKey.set(key, taken + 1)
      }
      if (rate !== undefined && run.executions === 0) recent.set(bucketOf(run), (recent.get(bucketOf(run)) ?? 0) + 1)
      chosen.push(m)
    }
    return { chosen, claimable: ranked.length, unclaimable: candidates.filter((m) => !isClaimable(m)) }
  }

  /** The claimable due runs of a queue that its limits hold back now. */
  const throttledIn = (flow: Store.ClaimQueue, keys: ReadonlySet<string>, now: number) => {
    const plan = planFlow(Number.MAX_SAFE_INTEGER, flow, keys, now)
    return plan.claimable - plan.chosen.length
  }

  const readFlow = (request: Store.ClaimRequest, flow: Store.ClaimQueue, keys: ReadonlySet<string>, now: number) => {
    const plan = planFlow(request.limit, flow, keys, now)
    const read = [...plan.chosen, ...plan.unclaimable]
    for (const m of read) {
      m.readCount++
      m.visibleAt = now + request.leaseMillis
    }
    return read
  }

  return Store.Store.of({
    createRuns: (newRuns) =>
      atNow((now) => {
        let runnable = false
        const result = newRuns.map((input): Store.Created => {
          const dedup = input.deduplication
          const dedupKey = dedup === undefined ? undefined : `${input.workflow}\u0000${dedup.key}`
          const named = dedupKey === undefined ? undefined : deduplication.get(dedupKey)
          const latest = named === undefined ? undefined : runs.get(named.runId)
          const debounce = dedup?.debounce
          if (debounce !== undefined) {
            if (latest !== undefined && latest.status === "pending" && latest.executions === 0) {
              latest.input = input.input ?? null
              latest.wakeAt = Math.min(now + debounce.periodMillis, named!.until)
              latest.updatedAt = now
              const message = latest.msgId === null ? undefined : state.messages.get(latest.msgId)
              if (message !== undefined) message.visibleAt = latest.wakeAt
              return { id: latest.id, created: false, workflow: latest.workflow, deduplicated: true }
            }
          } else if (
            latest !== undefined &&
            (latest.status === "pending" ||
              (dedup!.whileRunning && (latest.status === "running" || latest.status === "suspended")))
          ) {
            return { id: latest.id, created: false, workflow: latest.workflow, deduplicated: true }
          }
          const existing = runs.get(input.id)
          if (existing !== undefined) {
            return { id: input.id, created: false, workflow: existing.workflow }
          }
          const deadlines = [
            input.deadlineAt,
            input.timeoutMillis === undefined ? undefined : now + input.timeoutMillis
          ]
            .filter((d): d is number => d !== undefined)
          const deadlineAt = deadlines.length === 0 ? null : Math.min(...deadlines)
          const delay = input.delayMillis ?? 0
          const claimed = input.claimFor
          const visibleIn = claimed !== undefined ? claimed.leaseMillis : delay
          const version = input.version ?? newestServed(input.workflow, now)
          const msgId = state.send(queue, message({ ...input, version }), now, visibleIn)
          runs.set(input.id, {
            id: input.id,
            workflow: input.workflow,
            version,
            status: claimed !== undefined ? "running" : "pending",
            input: input.input ?? null,
            output: null,
            error: null,
            executions: claimed !== undefined ? 1 : 0,
            recoveries: 0,
            events: 0,
            deadlineAt,
            trace: input.trace ?? null,
            leaseOwner: claimed?.token ?? null,
            leaseExpiresAt: claimed !== undefined ? now + claimed.leaseMillis : null,
            wakeAt: delay > 0 && claimed === undefined ? now + delay : null,
            parentId: input.parentId ?? null,
            forkedFrom: null,
            concurrencyKey: input.concurrencyKey ?? null,
            priority: input.priority ?? 0,
            msgId,
            createdAt: now,
            updatedAt: now,
            startedAt: claimed !== undefined ? now : null,
            completedAt: null
          })
          if (claimed === undefined && delay <= 0) runnable = true
          if (dedupKey !== undefined) {
            deduplication.set(dedupKey, {
              runId: input.id,
              until: now + (dedup?.debounce?.maxDelayMillis ?? Number.POSITIVE_INFINITY)
            })
          }
          const run = runs.get(input.id)!
          return {
            id: input.id,
            created: true,
            workflow: input.workflow,
            ...(claimed === undefined ? {} : {
              claimed: {
                run: snapshot(run),
                input: { _tag: "Value", value: run.input },
                token: claimed.token,
                msgId,
                journal: [],
                now
              }
            })
          }
        })
        if (runnable) notify({ _tag: "Runnable" })
        return result
      }),

    claim: (request) =>
      atNow((now) => {
        // Only messages of the workflow versions this worker registers are read.
        const keys = new Set(request.workflows.map((served) => Versions.key(served.workflow, served.version)))
        const messages = request.queue === undefined
          ? state.read(
            queue,
            now,
            request.leaseMillis,
            request.limit,
            (message) => keys.has((message as { workflow: string }).workflow)
          )
          : readFlow(request, request.queue, keys, now)
        const claimed: Array<Store.ClaimedRun> = []
        const claimedRuns = new Set<string>()
        for (const message of messages) {
          const body = message.message as { run: string; workflow: string }
          const run = runs.get(body.run)
          if (run === undefined || terminal(run.status) || claimedRuns.has(body.run)) {
            state.delete(message.msgId)
            continue
          }
          if (!claimable(run, now)) {
            message.visibleAt = run.status === "running"
              ? run.leaseExpiresAt ?? now
              : run.wakeAt ?? Number.POSITIVE_INFINITY
            continue
          }
          const token = `${request.worker}:${message.msgId}:${message.readCount}`
          if (run.status === "running") run.recoveries++
          run.status = "running"
          run.leaseOwner = token
          run.leaseExpiresAt = now + request.leaseMillis
          run.executions++
          run.startedAt = run.startedAt ?? now
          run.wakeAt = null
          run.msgId = message.msgId
          run.updatedAt = now
          claimedRuns.add(run.id)
          if (request.queue !== undefined) {
            slots.set(run.id, { queue: request.queue.name, key: run.concurrencyKey, token })
            const rate = request.queue.rateLimit
            if (rate !== undefined && run.executions === 1) {
              starts.push({ queue: request.queue.name, bucket: rate.perKey ? run.concurrencyKey ?? "" : "", at: now })
            }
          }
          claimed.push({
            run: snapshot(run),
            input: { _tag: "Value", value: run.input },
            token,
            msgId: message.msgId,
            journal: [...(steps.get(run.id)?.values() ?? [])],
            now
          })
        }
        return claimed
      }),

    checkpoint: (checkpoint) =>
      atNow((now): Store.WriteResult => {
        const run = owned(checkpoint.runId, checkpoint.token)
        if (run === undefined) return "lease-lost"
        writeJournal(run, toEntry(checkpoint, now), now)
        return "ok"
      }),

    transition: (transition) =>
      atNow((now): Store.WriteResult => {
        const run = runs.get(transition.runId)
        if (run === undefined || run.leaseOwner !== transition.token) return "lease-lost"
        for (const checkpoint of transition.checkpoints ?? []) writeJournal(run, toEntry(checkpoint, now), now)
        switch (transition.kind) {
          case "complete": {
            run.status = "completed"
            run.output = transition.output ?? null
            run.completedAt = now
            end(run, transition.msgId, now)
            notify({ _tag: "Done", runId: run.id })
            wakeParent(run, now)
            break
          }
          case "fail": {
            run.status = "failed"
            run.error = transition.error ?? null
            run.completedAt = now
            end(run, null, now)
            if (transition.msgId !== null) state.archiveMessage(transition.msgId, now)
            notify({ _tag: "Done", runId: run.id })
            wakeParent(run, now)
            break
          }
          case "suspend": {
            if (run.events !== transition.observedEvents) {
              // Woken while it ran: claimable again at once instead of parked.
              run.status = "pending"
              run.wakeAt = null
              end(run, null, now)
              const message = transition.msgId === null ? undefined : state.messages.get(transition.msgId)
              if (message !== undefined) message.visibleAt = now
              notify({ _tag: "Runnable" })
              break
            }
            run.status = "suspended"
            run.wakeAt = transition.wakeInMillis === null ? null : now + transition.wakeInMillis
            end(run, null, now)
            const message = transition.msgId === null ? undefined : state.messages.get(transition.msgId)
            if (message !== undefined) message.visibleAt = run.wakeAt ?? Number.POSITIVE_INFINITY
            break
          }
          case "release": {
            run.status = "pending"
            run.wakeAt = null
            end(run, null, now)
            const message = transition.msgId === null ? undefined : state.messages.get(transition.msgId)
            if (message !== undefined) message.visibleAt = now
            notify({ _tag: "Runnable" })
            break
          }
        }
        return "ok"
      }),

    heartbeat: (leases, leaseMillis) =>
      atNow((now) => {
        const alive = new Set<string>()
        for (const lease of leases) {
          const run = runs.get(lease.runId)
          if (run === undefined || run.leaseOwner !== lease.token || run.status !== "running") continue
          run.leaseExpiresAt = now + leaseMillis
          const message = lease.msgId === null ? undefined : state.messages.get(lease.msgId)
          if (message !== undefined) message.visibleAt = now + leaseMillis
          alive.add(lease.token)
        }
        return alive
      }),

    cancel: (runId) =>
      atNow((now): Store.CancelResult => {
        const run = runs.get(runId)
        if (run === undefined) return "not-found"
        if (terminal(run.status)) return "already-terminal"
        for (const target of [run, ...descendants(runId)]) {
          if (terminal(target.status)) continue
          target.status = "cancelled"
          target.wakeAt = null
          target.completedAt = now
          end(target, target.msgId, now)
          notify({ _tag: "Cancelled", runId: target.id })
        }
        wakeParent(run, now)
        return "cancelled"
      }),

    sendSignal: (runId, name, payload) =>
      atNow((now): Store.SignalResult => {
        const run = runs.get(runId)
        if (run === undefined) return "not-found"
        if (terminal(run.status)) return "ended"
        signals.push({ runId, name, payload: payload ?? null, consumedKey: null })
        wake(run, now)
        return "sent"
      }),

    takeSignal: (take) =>
      atNow((now): Store.TakeResult => {
        const run = owned(take.runId, take.token)
        if (run === undefined) return { _tag: "LeaseLost" }
        const signal = signals.find((s) => s.runId === take.runId && s.name === take.signal && s.consumedKey === null)
        if (signal === undefined) return { _tag: "None" }
        signal.consumedKey = take.key
        writeJournal(run, {
          key: take.key,
          name: take.name,
          inputHash: take.inputHash,
          status: "completed",
          output: { signal: signal.payload },
          error: null,
          attempts: 1,
          wakeAt: null
        }, now)
        return { _tag: "Taken", payload: signal.payload }
      }),

    setEvent: (write) =>
      atNow((now): Store.WriteResult => {
        const run = owned(write.runId, write.token)
        if (run === undefined) return "lease-lost"
        if (steps.get(run.id)?.has(write.key) === true) return "ok"
        writeJournal(run, {
          key: write.key,
          name: write.name,
          inputHash: write.inputHash,
          status: "completed",
          output: null,
          error: null,
          attempts: 1,
          wakeAt: null
        }, now)
        events.set(`${write.runId}\u0000${write.event}`, { value: write.value ?? null, updatedAt: now })
        notify({ _tag: "Event", runId: write.runId })
        return "ok"
      }),

    getEvent: (runId, event) => Effect.sync(() => events.get(`${runId}\u0000${event}`)),

    retry: (runId) =>
      atNow((now): Store.RestartResult => {
        const run = runs.get(runId)
        if (run === undefined) return "not-found"
        if (run.status !== "failed") return "wrong-state"
        run.error = null
        run.recoveries = 0
        const journal = steps.get(runId)
        for (const [key, entry] of journal ?? []) {
          if (
            entry.status === "failed" || entry.status === "running" || entry.status === "retrying" ||
            key.startsWith("c")
          ) {
            journal!.delete(key)
          }
        }
        restart(run, now)
        notify({ _tag: "Runnable" })
        return "restarted"
      }),

    resume: (runId) =>
      atNow((now): Store.RestartResult => {
        const run = runs.get(runId)
        if (run === undefined) return "not-found"
        if (run.status !== "cancelled") return "wrong-state"
        for (const target of [run, ...descendants(runId)]) if (target.status === "cancelled") restart(target, now)
        notify({ _tag: "Runnable" })
        return "restarted"
      }),

    checkpointWith: (checkpoint, effect) =>
      Effect.flatMap(effect, (value) =>
        atNow((now) => {
          const cp = checkpoint(value)
          const run = owned(cp.runId, cp.token)
          if (run === undefined) return "lease-lost" as const
          writeJournal(run, toEntry(cp, now), now)
          return value
        })),

    getRun: (runId) =>
      Effect.sync(() => {
        const run = runs.get(runId)
        return run === undefined ? undefined : snapshot(run)
      }),

    getInput: (runId) =>
      Effect.sync(() => {
        const run = runs.get(runId)
        return run === undefined ? undefined : { _tag: "Value", value: run.input }
      }),

    getSteps: (runId) => Effect.sync(() => [...(steps.get(runId)?.values() ?? [])]),

    listRuns: (query) =>
      Effect.sync(() => {
        const page = newestFirst(
          [...runs.values()].filter((run) =>
            (query.workflow === undefined || run.workflow === query.workflow) &&
            (query.version === undefined || run.version === query.version) &&
            (query.status === undefined || run.status === query.status) &&
            (query.createdAfter === undefined || run.createdAt >= query.createdAfter) &&
            (query.createdBefore === undefined || run.createdAt < query.createdBefore)
          ),
          (run) => run.createdAt,
          query
        )
        return {
          runs: page.rows.map((run) => ({
            id: run.id,
            workflow: run.workflow,
            version: run.version,
            status: run.status,
            executions: run.executions,
            createdAt: run.createdAt,
            updatedAt: run.updatedAt,
            completedAt: run.completedAt
          })),
          nextCursor: page.nextCursor
        }
      }),

    deadLetters: (query) =>
      Effect.sync(() => {
        const page = newestFirst(
          [...runs.values()].filter((run) =>
            run.status === "failed" &&
            (query.workflow === undefined || run.workflow === query.workflow) &&
            (query.version === undefined || run.version === query.version) &&
            (query.failedAfter === undefined || run.completedAt! >= query.failedAfter) &&
            (query.failedBefore === undefined || run.completedAt! < query.failedBefore)
          ),
          (run) => run.completedAt!,
          query
        )
        return {
          deadLetters: page.rows.map((run): Store.DeadLetterRecord => ({
            id: run.id,
            workflow: run.workflow,
            version: run.version,
            executions: run.executions,
            createdAt: run.createdAt,
            failedAt: run.completedAt!,
            error: run.error
          })),
          nextCursor: page.nextCursor
        }
      }),

    countRuns: (workflow) =>
      Effect.sync(() => {
        const counted = new Map<string, Store.RunCount>()
        for (const run of runs.values()) {
          if (workflow !== undefined && run.workflow !== workflow) continue
          const key = `${run.workflow}\u0000${run.status}`
          const found = counted.get(key)
          counted.set(key, { workflow: run.workflow, status: run.status, runs: (found?.runs ?? 0) + 1, exact: true })
        }
        return [...counted.values()]
      }),

    findRuns: (filter) =>
      Effect.sync(() => {
        const matching = [...runs.values()]
          .filter((run) =>
            run.workflow === filter.workflow &&
            (filter.version === undefined || run.version === filter.version) &&
            filter.statuses.includes(run.status) &&
            (filter.createdAfter === undefined || run.createdAt >= filter.createdAfter) &&
            (filter.createdBefore === undefined || run.createdAt < filter.createdBefore)
          )
          .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        return { total: matching.length, ids: matching.slice(0, filter.limit).map((run) => run.id) }
      }),

    forkRun: (request) =>
      atNow((now): Store.ForkResult => {
        const source = runs.get(request.sourceId)
        if (source === undefined) return { _tag: "NotFound" }
        const existing = runs.get(request.id)
        if (existing !== undefined) {
          return { _tag: "Exists", workflow: existing.workflow, forkedFrom: existing.forkedFrom }
        }
        const msgId = state.send(queue, message({ ...request, workflow: source.workflow }), now, 0)
        runs.set(request.id, {
          id: request.id,
          workflow: source.workflow,
          version: request.version,
          status: "pending",
          input: source.input,
          output: null,
          error: null,
          executions: 0,
          recoveries: 0,
          events: 0,
          deadlineAt: request.timeoutMillis === undefined ? null : now + request.timeoutMillis,
          trace: null,
          leaseOwner: null,
          leaseExpiresAt: null,
          wakeAt: null,
          parentId: null,
          forkedFrom: { runId: source.id, key: request.fromKey },
          concurrencyKey: source.concurrencyKey,
          priority: source.priority,
          msgId,
          createdAt: now,
          updatedAt: now,
          startedAt: null,
          completedAt: null
        })
        const original = steps.get(source.id)
        const copied = new Map<string, Store.StepRecord>()
        for (const key of request.keys) {
          const entry = original?.get(key)
          if (entry !== undefined) copied.set(key, { ...entry, runId: request.id })
        }
        steps.set(request.id, copied)
        notify({ _tag: "Runnable" })
        return { _tag: "Created" }
      }),

    inFlight: Effect.sync(() => {
      const counts = new Map<string, number>()
      for (const message of state.messages.values()) {
        if (message.queue !== queue) continue
        const key = (message.message as { workflow: string }).workflow
        counts.set(key, (counts.get(key) ?? 0) + 1)
      }
      return [...counts].sort(([a], [b]) => a < b ? -1 : 1).map(([key, runs]) => ({ ...Versions.parse(key), runs }))
    }),

    queueState: (flow, workflows) =>
      atNow((now): Store.QueueState => {
        const name = flow.name
        const keys = new Set(workflows.map((served) => Versions.key(served.workflow, served.version)))
        let due = 0
        for (const m of state.messages.values()) {
          if (m.queue === queue && m.visibleAt <= now && keys.has((m.message as { workflow: string }).workflow)) due++
        }
        const live = liveSlots(name, now)
        const byKey = new Map<string, number>()
        for (const slot of live) if (slot.key !== null) byKey.set(slot.key, (byKey.get(slot.key) ?? 0) + 1)
        return {
          queue: name,
          due,
          running: live.length,
          runningByKey: [...byKey].map(([key, running]) => ({ key, running }))
            .sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
          throttled: throttledIn(flow, keys, now)
        }
      }),

    nextWakeup: atNow((now) => {
      const next = state.nextVisible(queue, now)
      return next === undefined ? undefined : next - now
    }),

    announceWorker: (announcement) =>
      atNow((now) => {
        workers.set(announcement.worker, {
          workflows: announcement.workflows.map((served) => Versions.key(served.workflow, served.version)),
          expiresAt: now + announcement.ttlMillis
        })
      }),

    retireWorker: (worker) => Effect.sync(() => void workers.delete(worker)),

    hasWorkerFor: (workflow, version) => atNow((now) => served(Versions.key(workflow, version), now)),

    unclaimed: (olderThanMillis) =>
      atNow((now) => {
        const counts = new Map<string, number>()
        for (const message of state.messages.values()) {
          const key = (message.message as { workflow: string }).workflow
          if (message.queue !== queue || message.visibleAt > now - olderThanMillis || served(key, now)) continue
          counts.set(key, (counts.get(key) ?? 0) + 1)
        }
        return [...counts].sort(([a], [b]) => a < b ? -1 : 1).map(([key, runs]) => ({ ...Versions.parse(key), runs }))
      }),

    purgeRuns: (query) =>
      atNow((now): Store.PurgeBatch => {
        const cutoff = Math.min(query.before, now)
        const micros = (run: MutableRun) => BigInt(run.createdAt) * 1000n
        const after = query.cursor
        const statuses: ReadonlyArray<string> = query.statuses
        const single = query.statuses.length === 1 ? query.statuses[0] : undefined
        // The rows the PostgreSQL walk reads: of its source table (`failed_runs` and `cancelled_runs`
        // hold the runs in that state), in creation order, after the cursor, created before the cutoff.
        const scanned = [...runs.values()]
          .filter((run) =>
            run.createdAt < cutoff &&
            (query.workflow === undefined || run.workflow === query.workflow) &&
            (single === "failed" || single === "cancelled" ? run.status === single : true) &&
            (after === undefined || micros(run) > BigInt(after.micros) ||
              (micros(run) === BigInt(after.micros) && run.id > after.id))
          )
          .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .slice(0, query.limit)
        const ended = (run: MutableRun) => terminal(run.status) && run.completedAt !== null && run.completedAt < cutoff
        let deletedRuns = 0
        let rows = 0
        for (const root of scanned) {
          if (!runs.has(root.id) || !statuses.includes(root.status) || !ended(root)) continue
          if (root.parentId !== null && runs.has(root.parentId)) continue
          const tree = [root, ...descendants(root.id)]
          if (!tree.every(ended)) continue
          for (const run of tree) {
            runs.delete(run.id)
            deletedRuns++
            rows += 1 + (steps.get(run.id)?.size ?? 0) + (run.status === "completed" ? 0 : 1)
            steps.delete(run.id)
            for (let i = signals.length - 1; i >= 0; i--) {
              if (signals[i]!.runId === run.id) {
                signals.splice(i, 1)
                rows++
              }
            }
            for (const key of [...events.keys()]) {
              if (key.startsWith(`${run.id}\u0000`)) {
                events.delete(key)
                rows++
              }
            }
            for (const [msgId, archived] of state.archive) {
              if ((archived.message as { run?: unknown } | null)?.run === run.id) {
                state.archive.delete(msgId)
                rows++
              }
            }
            for (const [key, latest] of deduplication) {
              if (latest.runId === run.id) {
                deduplication.delete(key)
                rows++
              }
            }
            if (slots.delete(run.id)) rows++
          }
        }
        const last = scanned[scanned.length - 1]
        return {
          runs: deletedRuns,
          rows,
          scanned: scanned.length,
          nextCursor: scanned.length >= query.limit && last !== undefined
            ? { micros: micros(last).toString(), id: last.id }
            : undefined
        }
      }),

    exclusive: (name, effect) =>
      Effect.suspend(() => {
        if (held.has(name)) return Effect.succeed(Option.none())
        held.add(name)
        return effect.pipe(Effect.map(Option.some), Effect.ensuring(Effect.sync(() => held.delete(name))))
      }),

    subscribe: Effect.gen(function*() {
      const subscription = yield* PubSub.subscribe(notifications)
      const out = yield* Queue.unbounded<Store.Notification, StoreError>()
      yield* Effect.forkScoped(Effect.forever(Effect.flatMap(PubSub.take(subscription), (n) => Queue.offer(out, n))))
      return out as Queue.Dequeue<Store.Notification, StoreError>
    })
  })
}

const toEntry = (
  checkpoint: Store.Checkpoint,
  now: number
): Omit<Store.StepRecord, "runId" | "startedAt" | "completedAt"> => ({
  key: checkpoint.key,
  name: checkpoint.name,
  inputHash: checkpoint.inputHash,
  status: checkpoint.status,
  output: checkpoint.output ?? null,
  error: checkpoint.error ?? null,
  attempts: checkpoint.attempts,
  wakeAt: checkpoint.wakeInMillis === undefined ? null : now + checkpoint.wakeInMillis,
  ...(checkpoint.transactional === true ? { transactional: true } : {})
})

/**
 * The newest `limit` rows within the cursor (by `time`, then id), and the cursor of the next page:
 * what the keyset pages of `PgStore` return, in epoch microseconds.
 */
const newestFirst = <A extends { readonly id: string }>(
  rows: ReadonlyArray<A>,
  time: (row: A) => number,
  query: { readonly limit: number; readonly cursor?: Store.Cursor | undefined }
) => {
  const micros = (row: A) => BigInt(time(row)) * 1000n
  const after = query.cursor
  const order = rows
    .filter((row) =>
      after === undefined || micros(row) < BigInt(after.micros) ||
      (micros(row) === BigInt(after.micros) && row.id < after.id)
    )
    .sort((a, b) => time(b) - time(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
  const page = order.slice(0, query.limit)
  const last = page[page.length - 1]
  return {
    rows: page,
    nextCursor: order.length > query.limit && last !== undefined
      ? { micros: micros(last).toString(), id: last.id }
      : undefined
  }
}
