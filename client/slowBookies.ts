// The client's memory of bookies that were slow or failing lately, so its reads, LAC reads and
// long polls ask them last for a while (BookKeeper's read order by bookie health). One per
// client, shared by its handles: a hung bookie found by one read is avoided by the next, from
// any handle. A bookie is FAILING once a request to it timed out or failed, SLOW once a read had
// to be sent to another replica because it had not answered within the speculative delay.
// This only orders replicas (machines/speculativeRead.ts): a bookie asked last is still asked
// when no other replica is left, so a timeout never counts as "absent" (PROTOCOL.md "Response
// classes").
// Invariants: at most SLOW_BOOKIES_MAX remembered (the oldest forgotten first); a bookie is
// forgotten after `forgetMs` (then asked first again: it may be back) or as soon as it answers
// in time. An answer that came after a speculative read went elsewhere leaves it as it was: a
// bookie that is merely slow would otherwise be asked first again by every read.

import { FAILING, HEALTHY, SLOW, type Rank } from '../machines/speculativeRead.ts'

/** Bound on the bookies remembered by one client. */
export const SLOW_BOOKIES_MAX = 256
/** Shortest time a slow or failing bookie is asked last. */
const FORGET_MS_MIN = 30_000

export class SlowBookies {
  /** bookieId -> rank and when it was last seen slow or failing; insertion order is age order. */
  private readonly since = new Map<string, { rank: Rank; at: number }>()
  readonly forgetMs: number

  /** Remembered for max(30 s, 6 read timeouts): re-probing a dead bookie then costs at most a sixth of the time. */
  constructor(readTimeoutMs: number, private readonly now: () => number = Date.now) {
    this.forgetMs = Math.max(FORGET_MS_MIN, 6 * readTimeoutMs)
  }

  /** A request to it timed out, or failed without an answer. */
  timedOut(bookieId: string): void {
    this.mark(bookieId, FAILING)
  }

  /** A read went to another replica because it had not answered within the speculative delay. */
  slow(bookieId: string): void {
    if (this.rank(bookieId) < SLOW) this.mark(bookieId, SLOW)
  }

  /** It answered; `inTime` false when a speculative read had already gone elsewhere. */
  answered(bookieId: string, inTime = true): void {
    if (inTime) this.since.delete(bookieId)
  }

  rank(bookieId: string): Rank {
    const seen = this.since.get(bookieId)
    if (seen === undefined) return HEALTHY
    if (this.now() - seen.at < this.forgetMs) return seen.rank
    this.since.delete(bookieId)
    return HEALTHY
  }

  isSlow(bookieId: string): boolean {
    return this.rank(bookieId) !== HEALTHY
  }

  get size(): number {
    return this.since.size
  }

  private mark(bookieId: string, rank: Rank): void {
    this.since.delete(bookieId)
    this.since.set(bookieId, { rank, at: this.now() })
    while (this.since.size > SLOW_BOOKIES_MAX) this.since.delete(this.since.keys().next().value!)
  }
}
