// A bookie's add acknowledgements, batched: every answer queued while a journal group's sync
// callbacks run (they are queued first) goes out in one `addAck` message per client, flushed in
// a microtask, so a group commit costs one message per client, without waiting a tick.

import type { AddAck, WireMessage } from '../transport/wire.ts'
import { bookieMetrics } from './metrics.ts'

export class AddAcks {
  /** By client reply subject, then by `${ledgerId}:${rc}`: the entry ids answered so. */
  private readonly byClient = new Map<string, Map<string, number[]>>()
  private queued = false

  constructor(
    private readonly bookieId: string,
    private readonly publish: (subject: string, msg: WireMessage) => void,
  ) {}

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
      queueMicrotask(() => this.flush())
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
      this.publish(replyTo, { op: 'addAck', bookieId: this.bookieId, acks: out })
    }
    this.byClient.clear()
  }
}
