/**
 * The order of journal keys. A key is the position of a durable operation in the workflow (see
 * `context.ts` `nextKey`): levels separated by `/`, each inner level `<counter>.<branch>` (the
 * branch of a concurrent combinator at that counter), the last one `<counter>` (the operation) or
 * `<counter>.w` (the winner of the race at that counter, recorded after its branches). A key that
 * starts with `c<i>/` belongs to the i-th compensation run after the body failed. A patch marker is
 * `<position>~<patch id>`: decided at `<position>`, just before the operation that gets that key.
 *
 * Two positions compare as before, after, the same, or concurrent (in sibling branches, whose
 * operations have no order). Patches, forks and the replay checker read journals with this order.
 */

/** One level of a position: an operation, a branch of a combinator, or a race's winner. */
interface Level {
  readonly counter: number
  /** 0: the operation at `counter` (or the point just before it); 1: inside a branch; 2: a race's winner. */
  readonly rank: 0 | 1 | 2
  readonly branch: number
}

/** A parsed position: the body (`phase` -1) or the compensation `phase`, then its levels. */
export interface Position {
  readonly phase: number
  readonly levels: ReadonlyArray<Level>
}

export type Order = "before" | "after" | "same" | "concurrent"

const separator = "~"

/** The key of the marker of patch `id` decided at `position` (a key that operations do not use). */
export const patchMarker = (position: string, id: string): string => `${position}${separator}${id}`

/** The position a key stands for, or `undefined` for keys that are not positions (the trace entry). */
export const parse = (key: string): Position | undefined => {
  const cut = key.indexOf(separator)
  let rest = cut === -1 ? key : key.slice(0, cut)
  let phase = -1
  const compensation = /^c(\d+)\//.exec(rest)
  if (compensation !== null) {
    phase = Number(compensation[1])
    rest = rest.slice(compensation[0].length)
  }
  const parts = rest.split("/")
  const levels: Array<Level> = []
  for (const [index, part] of parts.entries()) {
    const last = index === parts.length - 1
    const match = /^(\d+)(?:\.(\d+|w))?$/.exec(part)
    if (match === null) return undefined
    const counter = Number(match[1])
    if (!last) {
      if (match[2] === undefined || match[2] === "w") return undefined
      levels.push({ counter, rank: 1, branch: Number(match[2]) })
    } else if (match[2] === undefined) {
      levels.push({ counter, rank: 0, branch: 0 })
    } else if (match[2] === "w") {
      levels.push({ counter, rank: 2, branch: 0 })
    } else {
      return undefined
    }
  }
  return { phase, levels }
}

/** Whether `key` is a patch marker. */
export const isPatchMarker = (key: string): boolean => key.includes(separator) && parse(key) !== undefined

/** How position `a` stands to position `b` in the execution. */
export const compare = (a: Position, b: Position): Order => {
  if (a.phase !== b.phase) return a.phase < b.phase ? "before" : "after"
  for (let i = 0; i < Math.max(a.levels.length, b.levels.length); i++) {
    const x = a.levels[i]
    const y = b.levels[i]
    if (x === undefined || y === undefined) return "same"
    if (x.counter !== y.counter) return x.counter < y.counter ? "before" : "after"
    if (x.rank !== y.rank) return x.rank < y.rank ? "before" : "after"
    if (x.rank !== 1) return "same"
    if (x.branch !== y.branch) return "concurrent"
  }
  return "same"
}

/** `compare` on keys; `undefined` when either is not a position. */
export const compareKeys = (a: string, b: string): Order | undefined => {
  const x = parse(a)
  const y = parse(b)
  return x === undefined || y === undefined ? undefined : compare(x, y)
}

/** Sorts keys in execution order (concurrent branches by branch number; other keys last, by text). */
export const byExecution = (a: string, b: string): number => {
  const x = parse(a)
  const y = parse(b)
  if (x === undefined || y === undefined) return x !== undefined ? -1 : y !== undefined ? 1 : a < b ? -1 : a > b ? 1 : 0
  if (x.phase !== y.phase) return x.phase - y.phase
  for (let i = 0; i < Math.max(x.levels.length, y.levels.length); i++) {
    const l = x.levels[i]
    const r = y.levels[i]
    if (l === undefined || r === undefined) return l === undefined ? -1 : 1
    if (l.counter !== r.counter) return l.counter - r.counter
    if (l.rank !== r.rank) return l.rank - r.rank
    if (l.branch !== r.branch) return l.branch - r.branch
  }
  // The same position: a patch marker comes before the operation that follows it.
  const markerA = a.includes(separator)
  const markerB = b.includes(separator)
  if (markerA !== markerB) return markerA ? -1 : 1
  return a < b ? -1 : a > b ? 1 : 0
}
