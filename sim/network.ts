// The simulator's message network and processes' clocks: what a role is handed in place of NATS
// and the system clock, so the product's roles run here unchanged.
// - SimNetwork routes a publish to every subscription whose subject matches (NATS's rules: `*` one
//   token, `>` the rest), each delivery carried by the world (World.send: delay, drop, duplicate,
//   stall, hang, partitions) from the publisher's node to the subscriber's;
// - an endpoint is one process's connection (transport/network.ts Network); kill() ends it: its
//   subscriptions are gone and what it publishes from then on goes nowhere;
// - a ProcessClock is one process's view of the world's clock; kill() cancels its timers and
//   ignores new ones, so a dead process does nothing more. `skewMs` shifts what now() reads (clock
//   skew between processes), never when timers fire.

import type { Clock, TimerHandle } from '../transport/clock.ts'
import type { Network, NetworkSubscription, OnMessage } from '../transport/network.ts'
import type { World } from './world.ts'

interface Subscription {
  readonly node: string
  readonly tokens: string[]
  readonly onMessage: OnMessage
  readonly endpoint: SimEndpoint
}

/** NATS subject matching: `*` matches one token, a final `>` one or more. */
export function subjectMatches(pattern: readonly string[], subject: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!
    if (p === '>') return subject.length > i
    if (i >= subject.length) return false
    if (p !== '*' && p !== subject[i]) return false
  }
  return pattern.length === subject.length
}

export class SimNetwork {
  private readonly subs = new Set<Subscription>()

  constructor(private readonly world: World) {}

  /** A new connection for a process on `node`. */
  endpoint(node: string): SimEndpoint {
    return new SimEndpoint(node, this.world, this)
  }

  /** @internal */
  add(s: Subscription): void {
    this.subs.add(s)
  }

  /** @internal */
  remove(s: Subscription): void {
    this.subs.delete(s)
  }

  /** @internal Deliver to every matching subscription, each through the world from `from`. */
  route(from: string, subject: string, data: Uint8Array, replyTo: string | null): void {
    const tokens = subject.split('.')
    for (const s of this.subs) {
      if (!subjectMatches(s.tokens, tokens)) continue
      this.world.send(s.node, () => { if (this.subs.has(s) && !s.endpoint.dead) s.onMessage(data, replyTo) }, from)
    }
  }
}

export class SimEndpoint implements Network {
  dead = false
  private readonly mine = new Set<Subscription>()

  constructor(readonly node: string, private readonly world: World, private readonly net: SimNetwork) {}

  subscribe(subject: string, onMessage: OnMessage): NetworkSubscription {
    const s: Subscription = { node: this.node, tokens: subject.split('.'), onMessage, endpoint: this }
    if (!this.dead) {
      this.net.add(s)
      this.mine.add(s)
    }
    const end = (): void => {
      this.net.remove(s)
      this.mine.delete(s)
    }
    return { unsubscribe: end, drain: async () => end() }
  }

  publish(subject: string, data: Uint8Array): void {
    this.request(subject, data, null)
  }

  /** A publish with a reply subject (what a client's request carries). */
  request(subject: string, data: Uint8Array, replyTo: string | null): void {
    if (this.dead) return
    this.net.route(this.node, subject, data, replyTo)
  }

  async flush(): Promise<void> {
    // Everything published is already in the world's hands; a round trip's worth of time passes.
    await new Promise<void>((r) => { this.world.setTimeout(r, 0) })
  }

  async close(): Promise<void> {
    this.kill()
  }

  /** The process is gone: no more deliveries to it, nothing more from it. */
  kill(): void {
    this.dead = true
    for (const s of this.mine) this.net.remove(s)
    this.mine.clear()
  }
}

/** One process's clock over the world's (see the header). */
export class ProcessClock implements Clock {
  private readonly timers = new Set<TimerHandle>()
  private dead = false
  skewMs = 0

  constructor(private readonly world: World) {}

  now(): number {
    return this.world.now() + this.skewMs
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.dead) return { id: -1 }
    const h: TimerHandle = this.world.setTimeout(() => {
      this.timers.delete(h)
      if (!this.dead) fn()
    }, ms)
    this.timers.add(h)
    return h
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle)
    this.world.clearTimeout(handle)
  }

  defer(fn: () => void): void {
    this.setTimeout(fn, 0)
  }

  kill(): void {
    this.dead = true
    for (const h of this.timers) this.world.clearTimeout(h)
    this.timers.clear()
  }
}
