// One timer for many pollers: a client's writers share a tick for their add timeouts and
// re-sends, and its LacBatcher one for idle LACs, instead of a timer per writer. With 1,000
// ledgers each written once a second, a timer per writer ticking every 250 ms was 4-5 timers per
// entry; a shared tick is 4 a second in all.
//
// Invariants: at most one timer is set; a poll runs at most once per tick, only while watched; a poll that answers false (or
// throws) is dropped until watched again; no timer runs while nothing is watched (a tick that
// finds none arms no next one), so an idle client has no timer at all.

import type { Clock, TimerHandle } from '../transport/clock.ts'

/** Polled at each tick: true to be polled again at the next. */
export type TickPoll = () => boolean

export class Ticker {
  private readonly polls = new Set<TickPoll>()
  private timer: TimerHandle | null = null
  private readonly fire = (): void => this.tick()

  constructor(
    private readonly clock: Clock,
    readonly intervalMs: number,
    /** Runs each tick's polls (`run`); the LacBatcher flushes what they queued after it. */
    private readonly around: (run: () => void) => void = (run) => run(),
  ) {}

  /** Poll `poll` at each tick from the next one on, until it answers false. */
  watch(poll: TickPoll): void {
    this.polls.add(poll)
    this.timer ??= this.clock.setTimeout(this.fire, this.intervalMs)
  }

  forget(poll: TickPoll): void {
    this.polls.delete(poll)
  }

  /** Pollers watched now. */
  get size(): number {
    return this.polls.size
  }

  /** No more ticks; what is watched is forgotten. */
  stop(): void {
    if (this.timer) this.clock.clearTimeout(this.timer)
    this.timer = null
    this.polls.clear()
  }

  private tick(): void {
    // The timer stays set while the polls run: a poll that makes something watch (a writer's
    // delay set by a delay that fired) must not arm a second timer beside the next one.
    this.around(() => {
      for (const poll of [...this.polls]) {
        let again = false
        // One poller's failure must not stop the others'.
        try { again = poll() } catch { /* dropped */ }
        if (!again) this.polls.delete(poll)
      }
    })
    this.timer = this.polls.size > 0 ? this.clock.setTimeout(this.fire, this.intervalMs) : null
  }
}
