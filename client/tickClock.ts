// The clock a client's writer machines run their delays on (createActor({clock})): re-sends, add
// timeouts and idle LACs. Each delay fires at the first tick of the client's add Ticker
// (client/ticker.ts) at or after it is due, so that 1,000 writers with adds pending cost one
// timer per tick, not one each, and timers set and cleared on every acknowledgement cost a map
// entry, not a timer. On the simulator's clock the ticks, and so the delays, are simulated time.
//
// Invariants: a cleared delay never fires; delays due at the same tick fire in the order they
// are due (then set); the ticker is watched only while a delay is set, so an idle client has no
// timer at all.

import type { Clock } from '../transport/clock.ts'
import type { Ticker } from './ticker.ts'

interface Delay { dueAt: number; seq: number; fn: () => void }

export class TickClock {
  private readonly delays = new Map<number, Delay>()
  private seq = 0
  private readonly poll = (): boolean => this.fireDue()

  constructor(private readonly clock: Clock, private readonly ticker: Ticker) {}

  setTimeout(fn: () => void, ms: number): number {
    const id = ++this.seq
    this.delays.set(id, { dueAt: this.clock.now() + ms, seq: id, fn })
    this.ticker.watch(this.poll)
    return id
  }

  clearTimeout(id: number): void {
    this.delays.delete(id)
  }

  private fireDue(): boolean {
    const now = this.clock.now()
    const due: Array<[number, Delay]> = []
    for (const entry of this.delays) if (entry[1].dueAt <= now) due.push(entry)
    due.sort((a, b) => a[1].dueAt - b[1].dueAt || a[1].seq - b[1].seq)
    for (const [id, d] of due) {
      // Cleared by a delay that fired before it in this tick.
      if (!this.delays.delete(id)) continue
      d.fn()
    }
    return this.delays.size > 0
  }
}
