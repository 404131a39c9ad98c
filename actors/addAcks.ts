// A bookie's add acknowledgements, batched: every answer queued in one turn of the event loop goes
// out in one `addAck` message per client, flushed at the end of that turn (setImmediate). The
// journal writes synchronously and starts its next group in a microtask when records wait, so
// under load several group commits finish in one turn: flushed per group (a microtask each) that
// was one message per client per group, 1.8-2.7 ack messages per add message with 1,000 ledgers;
// per turn it is one. An ack is never held past its turn: the cost is that a group's acks wait
// for the groups the journal commits right after it in the same turn (a sync each), where they
// used to go out between them. With one group at a time (one add at a time) nothing waits.
// A client that sends binary add frames (transport/addFrame.ts) gets binary ack frames; any other
// (an older client, which reads msgpack only) gets msgpack ones. The clients known to read binary
// are remembered up to BINARY_CLIENTS_MAX, the oldest forgotten first: a forgotten one gets msgpack
// acks, which every client reads.

import { encodeAckFrame } from '../transport/addFrame.ts'
import type { AddAck, WireMessage } from '../transport/wire.ts'
import { bookieMetrics } from './metrics.ts'

export const BINARY_CLIENTS_MAX = 10_000

export class AddAcks {
  /** Reply subjects that sent binary add frames, oldest first. */
  private readonly binaryClients = new Set<string>()
  /** By client reply subject, then by `${ledgerId}:${rc}`: the entry ids answered so. */
  private readonly byClient = new Map<string, Map<string, number[]>>()
  private queued = false

  constructor(
    private readonly bookieId: string,
    private readonly publish: (subject: string, msg: WireMessage) => void,
    private readonly publishBytes?: (subject: string, frame: Uint8Array) => void,
  ) {}

  /** `replyTo` sent a binary add frame: it reads binary acks. */
  speaksBinary(replyTo: string): void {
    if (this.binaryClients.has(replyTo)) return
    if (this.binaryClients.size >= BINARY_CLIENTS_MAX) this.binaryClients.delete(this.binaryClients.values().next().value!)
    this.binaryClients.add(replyTo)
  }

  queue(replyTo: string, ledgerId: number, rc: number, entryIds: readonly number[]): void {
    bookieMetrics.addAnswered(rc, entryIds.length)
    let acks = this.byClient.get(replyTo)
    if (!acks) this.byClient.set(replyTo, (acks = new Map()))
    const k = `${ledgerId}:${rc}`
    const list = acks.get(k)
    if (list) list.push(...entryIds)
    else acks.set(k, [...entryIds])
    if (!this.queued) {
      this.queued = true
      setImmediate(() => this.flush())
    }
  }

  /** Send everything queued now (also when the bookie stops). */
  flush(): void {
    this.queued = false
    for (const [replyTo, acks] of this.byClient) {
      const out: AddAck['acks'] = []
      for (const [k, ids] of acks) {
        const [l, rc] = k.split(':').map(Number)
        out.push([l!, rc!, ids])
      }
      const frame = this.publishBytes && this.binaryClients.has(replyTo) ? encodeAckFrame(this.bookieId, out) : null
      if (frame) this.publishBytes!(replyTo, frame)
      else this.publish(replyTo, { op: 'addAck', bookieId: this.bookieId, acks: out })
    }
    this.byClient.clear()
  }
}
