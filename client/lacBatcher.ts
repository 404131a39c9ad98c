// Explicit LACs of all of a client's writers, sent together (transport/wire.ts `writeLacs`): one
// frame per bookie per flush, carrying every ledger of this client that needs one, where each
// ledger used to send its own `writeLac` to each bookie of its ensemble. With 1,000 idle-ish
// ledgers that was 3,000 messages per explicit-LAC interval; now it is one per bookie.
//
// Two kinds of LAC come through here (client/writeHandle.ts decides which and when):
// - an idle writer's (persisted by the bookies): a writer's machine says when it is due (a delay
//   after its last entry completed), and it waits here for the next idle tick, every `intervalMs`
//   while any waits, which sends all of them at once;
// - an eager hint or a closing writer's final LAC: queued from a deferred turn (after the turn's
//   callbacks, so that an append they make carries the LAC instead) and sent at the end of it,
//   with every other writer's of that turn.
//
// Invariants: per bookie and ledger only the highest LAC queued is sent (a lower one says
// nothing more); no frame holds more than `perFrame` items (the wire's LIMITS.lacsPerFrame): a
// larger batch is split; no timer runs while no idle LAC waits. Sending is best effort, as a
// single writeLac is: a lost frame is made good by the ledger's next entry or next idle tick.

import type { Clock } from '../transport/clock.ts'
import { LIMITS } from '../transport/validate.ts'
import type { LacItem } from '../transport/wire.ts'
import type { BookieTransport, TailTransport } from './bookieClient.ts'
import { Ticker } from './ticker.ts'

export class LacBatcher {
  private readonly afterTurn = new Set<() => void>()
  /** Per bookie, per ledger: the item to send. */
  private readonly out = new Map<string, Map<number, LacItem>>()
  /** Idle writers' LACs, sent at the next idle tick (every intervalMs while any waits). */
  private readonly idle: Ticker
  private idleOut: Array<{ bookies: readonly string[]; item: LacItem }> = []
  private readonly takeIdle = (): boolean => {
    const out = this.idleOut
    this.idleOut = []
    for (const { bookies, item } of out) this.queue(bookies, item)
    return false
  }
  private deferred = false
  /** A tick or a deferred turn is polling writers: it flushes what they queue when done. */
  private polling = false
  /** Frames and items sent since start (the many-ledgers benchmark and tests read them). */
  readonly stats = { frames: 0, items: 0 }

  constructor(
    /** The writers' transport: its writeLacs, else its writeLac; neither (the simulator's): no explicit LACs. */
    private readonly bookies: BookieTransport & Partial<TailTransport>,
    private readonly clock: Clock,
    /** Between two idle ticks; 0: no idle LACs (eager hints and final LACs still go out). */
    readonly intervalMs: number,
    private readonly perFrame: number = LIMITS.lacsPerFrame,
  ) {
    if (!Number.isInteger(perFrame) || perFrame < 1 || perFrame > LIMITS.lacsPerFrame) throw new RangeError(`perFrame ${perFrame} is not in 1..${LIMITS.lacsPerFrame}`)
    this.idle = new Ticker(clock, intervalMs, (run) => {
      this.polling = true
      run()
      this.polling = false
      this.flush()
    })
  }

  /** The transport can carry an explicit LAC at all (the simulator's cannot). */
  get enabled(): boolean {
    return this.bookies.writeLacs !== undefined || this.bookies.writeLac !== undefined
  }

  /** An idle writer's LAC: sent at the next idle tick, with every other one queued so (one frame per bookie per interval). */
  queueIdle(bookies: readonly string[], item: LacItem): void {
    if (!this.enabled) return
    if (this.intervalMs <= 0) return this.queue(bookies, item)
    this.idleOut.push({ bookies, item })
    this.idle.watch(this.takeIdle)
  }

  /** Run `fn` in a deferred turn (once, however often asked before it), then send what it queued. */
  runAfterTurn(fn: () => void): void {
    if (!this.enabled) return
    this.afterTurn.add(fn)
    this.defer()
  }

  /** A writer that stops: its deferred turn does not run. */
  forget(fn: () => void): void {
    this.afterTurn.delete(fn)
  }

  /** Send `item` to each of `bookies` with the next flush: the end of the tick or turn polling, or a deferred turn. */
  queue(bookies: readonly string[], item: LacItem): void {
    if (!this.enabled) return
    for (const b of bookies) {
      let m = this.out.get(b)
      if (!m) this.out.set(b, (m = new Map()))
      const had = m.get(item.ledgerId)
      if (!had || item.lac > had.lac) m.set(item.ledgerId, item)
      else if (item.lac === had.lac && item.persist === true && had.persist !== true) m.set(item.ledgerId, item)
    }
    if (!this.polling) this.defer()
  }

  /** Send everything queued: per bookie, frames of at most `perFrame` items. */
  flush(): void {
    for (const [bookieId, m] of this.out) {
      this.out.delete(bookieId)
      const items = [...m.values()]
      for (let i = 0; i < items.length; i += this.perFrame) this.send(bookieId, items.slice(i, i + this.perFrame))
    }
  }

  /** Send what is queued and stop the tick (the client closes). */
  close(): void {
    this.idle.stop()
    this.afterTurn.clear()
    this.takeIdle()
    this.flush()
  }

  private send(bookieId: string, items: LacItem[]): void {
    this.stats.frames++
    this.stats.items += items.length
    // A transport without the batch frame (an in-memory one, say) gets them one by one.
    if (this.bookies.writeLacs) this.bookies.writeLacs(bookieId, items)
    else for (const it of items) this.bookies.writeLac!(bookieId, it.ledgerId, it.masterKey, it.lac, it.persist !== false)
  }

  private defer(): void {
    if (this.deferred) return
    this.deferred = true
    this.clock.defer(() => {
      this.deferred = false
      const fns = [...this.afterTurn]
      this.afterTurn.clear()
      this.polling = true
      // One writer's failure must not keep the others' LACs back.
      for (const fn of fns) try { fn() } catch { /* dropped */ }
      this.polling = false
      this.flush()
    })
  }
}
