// The network a server role (a bookie) is built over: subscribe to subjects, publish frames, flush,
// close. The product passes NATS (natsNetwork below); the simulator passes its own network, which
// delays, drops, reorders and partitions (sim/network.ts), so that one bookie runs in both.
// Invariants: a role's callbacks see messages in the order the network delivered them, across all
// its subscriptions (a client's frames keep the order it sent them in, whichever subject each
// took); publish never throws (a closing connection loses the frame, which the sender sees as a
// timeout: unknown, never a negative).

import type { NatsConnection } from '@nats-io/transport-node'

/** A message for a subscription: its bytes and where to answer (null when no answer is asked). */
export type OnMessage = (data: Uint8Array, replyTo: string | null) => void

export interface NetworkSubscription {
  unsubscribe(): void
  /** Stop taking messages once those already delivered to the callback are handled. */
  drain(): Promise<void>
}

export interface Network {
  subscribe(subject: string, onMessage: OnMessage): NetworkSubscription
  publish(subject: string, data: Uint8Array): void
  /** Resolves once everything published so far (and every SUB) has reached the server. */
  flush(): Promise<void>
  close(): Promise<void>
}

/** NATS as a role's network. */
export function natsNetwork(nc: NatsConnection): Network {
  return {
    subscribe(subject, onMessage) {
      // nats.js gives '' for a message without a reply subject.
      const sub = nc.subscribe(subject, { callback: (err, msg) => { if (!err) onMessage(msg.data, msg.reply || null) } })
      return { unsubscribe: () => sub.unsubscribe(), drain: () => sub.drain() }
    },
    publish(subject, data) {
      try {
        nc.publish(subject, data)
      } catch {
        // Connection closing: the asker times out and treats it as unknown.
      }
    },
    flush: () => nc.flush(),
    close: () => nc.close(),
  }
}
