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
// Per client, the answers of a turn are kept as the message's own records ([ledger, rc, ids]),
// found again by ledger id, so queueing and flushing build no keys and copy no id lists.

import { encodeAckFrame } from '../transport/addFrame.ts'
import { realClock, type Clock } from '../transport/clock.ts'
import type { AddAck, WireMessage } from '../transport/wire.ts'
import { bookieMetrics } from './metrics.ts'

export const BINARY_CLIENTS_MAX = 10_000

type AckRecord = AddAck['acks'][number]

/** One client's answers of this turn: the records in the order first queued, and by ledger. */
interface ClientAcks { records: AckRecord[]; byLedger: Map<number, AckRecord[]> }

export class AddAcks {
  /** Reply subjects that sent binary add frames, oldest first. */
  private readonly binaryClients = new Set<string>()
  /** By client reply subject: what this turn answers. */
  private readonly byClient = new Map<string, ClientAcks>()
  private readonly bookieIdBytes: Buffer
  private queued = false

  constructor(
    private readonly bookieId: string,
    private readonly publish: (subject: string, msg: WireMessage) => void,
    private readonly publishBytes?: (subject: string, frame: Uint8Array) => void,
    private readonly clock: Clock = realClock,
  ) {
    this.bookieIdBytes = Buffer.from(bookieId)
  }

  /** `replyTo` sent a binary add frame: it reads binary acks. */
  speaksBinary(replyTo: string): void {
    if (this.binaryClients.has(replyTo)) return
    if (this.binaryClients.size >= BINARY_CLIENTS_MAX) this.binaryClients.delete(this.binaryClients.values().next().value!)
    this.binaryClients.add(replyTo)
  }

  /** Answer `entryIds` with `rc`; the list is kept (and may grow) until the flush: pass a fresh one. */
  queue(replyTo: string, ledgerId: number, rc: number, entryIds: number[]): void {
    bookieMetrics.addAnswered(rc, entryIds.length)
    let acks = this.byClient.get(replyTo)
    if (!acks) this.byClient.set(replyTo, (acks = { records: [], byLedger: new Map() }))
    const ofLedger = acks.byLedger.get(ledgerId)
    let record: AckRecord | undefined
    if (ofLedger) for (const r of ofLedger) if (r[1] === rc) record = r
    if (record) for (const id of entryIds) record[2].push(id)
    else {
      record = [ledgerId, rc, entryIds]
      acks.records.push(record)
      if (ofLedger) ofLedger.push(record)
      else acks.byLedger.set(ledgerId, [record])
    }
    if (!this.queued) {
      this.queued = true
      this.clock.defer(() => this.flush())
    }
  }

  /** Send everything queued now (also when the bookie stops). */
  flush(): void {
    this.queued = false
    for (const [replyTo, { records: out }] of this.byClient) {
      const frame = this.publishBytes && this.binaryClients.has(replyTo) ? encodeAckFrame(this.bookieIdBytes, out) : null
      if (frame) this.publishBytes!(replyTo, frame)
      else this.publish(replyTo, { op: 'addAck', bookieId: this.bookieId, acks: out })
    }
    this.byClient.clear()
  }
}
