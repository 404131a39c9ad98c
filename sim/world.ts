// The simulated world: a seeded random generator, a virtual clock driven by one event queue, and
// a network between named nodes that delays, drops, duplicates and reorders messages, hangs a node
// (its messages held until it is unhung) and cuts two nodes apart (each still reaching the rest).
// Nothing here reads the real clock or Math.random, so a run is a function of its seed: a failing seed
// replays exactly. The run loop lets promise chains settle after every event (microtasks only,
// no real timers or IO), which keeps the real client code deterministic too.

import type { Clock, TimerHandle } from '../transport/clock.ts'

/** sfc32: small, fast, good enough statistically; seeded from one integer. */
export function seededRandom(seed: number): () => number {
  let a = 0x9e3779b9 ^ seed
  let b = 0x243f6a88 ^ (seed * 31)
  let c = 0xb7e15162 ^ (seed * 17)
  let d = 1
  const next = (): number => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
    let t = (a + b) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    d = (d + 1) | 0
    t = (t + d) | 0
    c = (c + t) | 0
    return (t >>> 0) / 4294967296
  }
  for (let i = 0; i < 12; i++) next()
  return next
}

interface Scheduled {
  at: number
  seq: number
  fn: () => void
  cancelled: boolean
}

export interface NetworkFaults {
  dropRate: number
  duplicateRate: number
  minDelayMs: number
  maxDelayMs: number
  /** Chance that a message is held up much longer (a network hiccup), and by how much at most. */
  stallRate: number
  stallMaxMs: number
}

export class World implements Clock {
  readonly random: () => number
  private time = 0
  private seq = 0
  private queue: Scheduled[] = []
  faults: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.05, maxDelayMs: 1, stallRate: 0, stallMaxMs: 0 }
  /** Nodes that receive nothing (crashed) or hold what they receive (hung). */
  readonly down = new Set<string>()
  /** Node pairs cut apart (cut/heal), as `a|b` with a < b. */
  private readonly cuts = new Set<string>()
  readonly hung = new Map<string, Array<() => void>>()
  events = 0

  constructor(readonly seed: number) {
    this.random = seededRandom(seed)
  }

  // --- Clock ---------------------------------------------------------------------------------
  now(): number {
    return this.time
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const s: Scheduled = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false }
    this.push(s)
    return { id: s.seq, s } as unknown as TimerHandle
  }

  defer(fn: () => void): void {
    this.setTimeout(fn, 0)
  }

  clearTimeout(handle: TimerHandle): void {
    const s = (handle as unknown as { s?: Scheduled }).s
    if (s) s.cancelled = true
  }

  // --- randomness helpers ----------------------------------------------------------------------
  chance(p: number): boolean {
    return this.random() < p
  }

  between(lo: number, hi: number): number {
    return lo + this.random() * (hi - lo)
  }

  int(lo: number, hi: number): number {
    return Math.floor(this.between(lo, hi + 1))
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.random() * xs.length)]!
  }

  // --- network -------------------------------------------------------------------------------
  /**
   * Deliver `deliver` at node `to` after a random delay, unless dropped, the node is down, or
   * `from` and `to` are cut apart (at sending or at arrival).
   */
  send(to: string, deliver: () => void, from?: string): void {
    const f = this.faults
    if (this.chance(f.dropRate)) return
    if (from !== undefined && this.isCut(from, to)) return
    const copies = this.chance(f.duplicateRate) ? 2 : 1
    for (let i = 0; i < copies; i++) {
      const stall = this.chance(f.stallRate) ? this.between(0, f.stallMaxMs) : 0
      this.setTimeout(() => this.arrive(to, deliver, from), this.between(f.minDelayMs, f.maxDelayMs) + stall)
    }
  }

  /** A partition between two nodes only (each still reaches every other node): both ways, until healed. */
  cut(a: string, b: string): void {
    this.cuts.add(pairKey(a, b))
  }

  heal(a: string, b: string): void {
    this.cuts.delete(pairKey(a, b))
  }

  healAll(): void {
    this.cuts.clear()
  }

  isCut(a: string, b: string): boolean {
    return this.cuts.has(pairKey(a, b))
  }

  private arrive(to: string, deliver: () => void, from?: string): void {
    if (this.down.has(to)) return
    if (from !== undefined && this.isCut(from, to)) return
    const held = this.hung.get(to)
    if (held) held.push(deliver)
    else deliver()
  }

  hang(node: string): void {
    if (!this.hung.has(node)) this.hung.set(node, [])
  }

  unhang(node: string): void {
    const held = this.hung.get(node)
    this.hung.delete(node)
    for (const d of held ?? []) this.setTimeout(() => this.arrive(node, d), this.between(0, 0.5))
  }

  // --- the loop ------------------------------------------------------------------------------
  private push(s: Scheduled): void {
    // Binary insert by (at, seq): the queue stays sorted, ties in scheduling order.
    let lo = 0
    let hi = this.queue.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const m = this.queue[mid]!
      if (m.at < s.at || (m.at === s.at && m.seq < s.seq)) lo = mid + 1
      else hi = mid
    }
    this.queue.splice(lo, 0, s)
  }

  /** Run events until `until` (virtual ms) or until nothing is left; settle promises after each. */
  async run(until: number, maxEvents = 2_000_000): Promise<void> {
    // What was started before the call (a process's start-up, a pure promise chain) goes first.
    await settle()
    while (this.queue.length > 0 && this.events < maxEvents) {
      const s = this.queue[0]!
      if (s.at > until) break
      this.queue.shift()
      if (s.cancelled) continue
      this.time = s.at
      this.events++
      s.fn()
      await settle()
    }
    if (this.time < until) this.time = until
  }
}

/** Let every pending promise reaction run (there are no real timers or IO in a simulation). */
export function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r))
}

const pairKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`)
