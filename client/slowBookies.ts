// The bookies a read handle saw time out recently, asked last for a while. A dead or hung bookie
// costs a reader one read timeout, not one per chunk of a long read: once a request to it timed
// out, every later request of the handle goes to another replica of the write set first, and the
// slow bookie is asked only when no other replica is left (so a timeout still never counts as
// "absent": PROTOCOL.md "Response classes"; this only orders the replicas).
// Invariants: at most SLOW_BOOKIES_MAX remembered (the oldest forgotten first); a bookie is
// forgotten after `forgetMs` (then asked first again: it may be back) or as soon as it answers.

/** Bound on the bookies remembered by one handle. */
export const SLOW_BOOKIES_MAX = 256
/** Shortest time a bookie that timed out is asked last. */
const FORGET_MS_MIN = 30_000

export class SlowBookies {
  /** bookieId -> when it last timed out; insertion order is age order. */
  private readonly since = new Map<string, number>()
  readonly forgetMs: number

  /** Remembered for max(30 s, 6 read timeouts): re-probing a dead bookie then costs at most a sixth of the time. */
  constructor(readTimeoutMs: number, private readonly now: () => number = Date.now) {
    this.forgetMs = Math.max(FORGET_MS_MIN, 6 * readTimeoutMs)
  }

  timedOut(bookieId: string): void {
    this.since.delete(bookieId)
    this.since.set(bookieId, this.now())
    while (this.since.size > SLOW_BOOKIES_MAX) this.since.delete(this.since.keys().next().value!)
  }

  answered(bookieId: string): void {
    this.since.delete(bookieId)
  }

  isSlow(bookieId: string): boolean {
    const at = this.since.get(bookieId)
    if (at === undefined) return false
    if (this.now() - at < this.forgetMs) return true
    this.since.delete(bookieId)
    return false
  }

  get size(): number {
    return this.since.size
  }
}
