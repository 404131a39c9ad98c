// Long-poll LAC reads parked on a bookie (issue: tailing readers): a request waits until the
// ledger's LAC passes the reader's `previousLac`, or its timeout, whichever comes first. Bounded:
// at most `maxParked` requests per bookie; when full, the oldest is answered early with what the
// bookie knows (the reader simply polls again). One timer per parked request, nothing per entry.
// The quire_bookie_long_polls_parked gauge moves with every park and unpark.

import { realClock, type Clock, type TimerHandle } from '../transport/clock.ts'
import { bookieMetrics } from './metrics.ts'

export interface ParkedPoll {
  replyTo: string
  reqId: number
  withEntry: boolean
}

interface Parked extends ParkedPoll {
  ledgerId: number
  previousLac: number
  timer: TimerHandle
  current: () => { lac: number; lastEntryId: number }
}

export const MAX_PARKED_DEFAULT = 10_000
const CANCELLED_EARLY_MAX = 1024

export class LongPolls {
  /** Insertion order is age order: the first is the oldest. */
  private readonly parked = new Map<string, Parked>()
  /**
   * Cancels that came before their request was parked (a request waits for its ledger's state
   * to load; the cancel does not): the request is dropped when it arrives. Bounded, oldest out.
   */
  private readonly cancelledEarly = new Set<string>()

  constructor(
    private readonly answer: (ledgerId: number, p: ParkedPoll, lac: number, lastEntryId: number) => void,
    private readonly maxParked = MAX_PARKED_DEFAULT,
    private readonly clock: Clock = realClock,
  ) {}

  get size(): number {
    return this.parked.size
  }

  park(ledgerId: number, p: ParkedPoll, previousLac: number, timeoutMs: number, current: () => { lac: number; lastEntryId: number }): void {
    if (this.parked.size >= this.maxParked) {
      const oldest = this.parked.keys().next().value
      if (oldest !== undefined) this.release(oldest)
    }
    const key = `${p.replyTo}#${p.reqId}`
    if (this.cancelledEarly.delete(key)) return
    const timer = this.clock.setTimeout(() => this.release(key), Math.max(0, timeoutMs))
    this.parked.set(key, { ...p, ledgerId, previousLac, timer, current })
    bookieMetrics.pollParked()
  }

  /** The ledger's LAC moved to `lac`: answer everyone waiting on it. */
  wake(ledgerId: number, lac: number, lastEntryId: number): void {
    for (const [key, p] of this.parked) {
      if (p.ledgerId !== ledgerId || lac <= p.previousLac) continue
      this.clock.clearTimeout(p.timer)
      this.parked.delete(key)
      bookieMetrics.pollUnparked()
      this.answer(ledgerId, p, lac, lastEntryId)
    }
  }

  /** The reader gave up on this request (its tail was stopped): drop it without an answer. */
  cancel(replyTo: string, reqId: number): boolean {
    const key = `${replyTo}#${reqId}`
    const p = this.parked.get(key)
    if (!p) {
      this.cancelledEarly.add(key)
      if (this.cancelledEarly.size > CANCELLED_EARLY_MAX) this.cancelledEarly.delete(this.cancelledEarly.values().next().value!)
      return false
    }
    this.clock.clearTimeout(p.timer)
    this.parked.delete(key)
    bookieMetrics.pollUnparked()
    return true
  }

  /** Answer every parked request now (the bookie is stopping). */
  answerAll(): void {
    for (const key of [...this.parked.keys()]) this.release(key)
  }

  private release(key: string): void {
    const p = this.parked.get(key)
    if (!p) return
    this.clock.clearTimeout(p.timer)
    this.parked.delete(key)
    bookieMetrics.pollUnparked()
    const { lac, lastEntryId } = p.current()
    this.answer(p.ledgerId, p, lac, lastEntryId)
  }
}
