// A bookie's reads: entry reads (fencing or not), LAC reads and long polls, answered from the
// write cache and the entry store, with the LAC the ledger's actor knows.
//
// Invariants (PROTOCOL.md "Response classes", "LAC, tailing and long poll", "Recovery"):
// - explicit negatives only for what the bookie can vouch for: an entry it lacks is NO_SUCH_ENTRY
//   (NO_SUCH_LEDGER when it knows nothing of the ledger), but IN_LIMBO for a ledger in limbo
//   (actors/integrityCheck.ts); a stored copy that fails its digest or its block checksum is
//   CORRUPT (the reader tries another replica), never "no such entry";
// - a fencing read or LAC read takes the ledger's place in line when it arrives (adds that came
//   before it are decided first, later ones after it: actors/bookieAdds.ts), and a fencing read
//   is answered only once its fence record is synced (the actor's `read.fenced`);
// - long polls are parked, bounded, and answered when the LAC passes what the reader knew
//   (actors/longPolls.ts);
// - a ledger with a password (a master key other than the empty password's) gives its entries
//   only to a read that carries that master key: any other read is UNAUTHORIZED, and a long poll
//   without it gets the LAC but not the entry. A ledger without a password asks for nothing.
//   (BookKeeper checks the password on the client only; the master key travels with each add
//   already, and now with each read of a ledger that has one.)

import type { BookieStorage } from './bookieStorage.ts'
import type { LedgerActor } from './bookieAdds.ts'
import { LongPolls, type ParkedPoll } from './longPolls.ts'
import { bookieMetrics } from './metrics.ts'
import { sameKey } from '../machines/bookieLedger.ts'
import { NO_PASSWORD_KEY, storedCopyIntact } from '../transport/entry.ts'
import type { Clock } from '../transport/clock.ts'
import { RC, type ReadLacRequest, type ReadRequest, type WireMessage } from '../transport/wire.ts'

/** Whether a read carrying `given` may see the entries of a ledger whose master key is `stored` (null: none yet). */
export function mayRead(stored: Uint8Array | null | undefined, given: Uint8Array | undefined): boolean {
  if (stored === null || stored === undefined || sameKey(stored, NO_PASSWORD_KEY)) return true
  return given !== undefined && sameKey(stored, given)
}

/** What the read path needs of its bookie. */
export interface ReadHost {
  readonly bookieId: string
  readonly stats: { reads: number; lacReads: number; corruptReads: number }
  storage(): BookieStorage
  /** The ledger's actor; created if unknown and `create`, else null when unknown. */
  ledger(ledgerId: number, create: boolean): Promise<LedgerActor | null>
  /** A request takes the ledger's place in line now: later adds of the ledger go behind it. */
  closeBatch(ledgerId: number): void
  publish(subject: string, msg: WireMessage): void
  /** The long polls' timers. */
  readonly clock: Clock
}

export class BookieReads {
  /** Parked long-poll LAC reads (bounded). */
  readonly polls: LongPolls
  /** Fencing reads waiting for their fence to sync, by `${replyTo}#${reqId}`. */
  private readonly fencedReads = new Map<string, ReadRequest>()

  constructor(private readonly host: ReadHost) {
    this.polls = new LongPolls((ledgerId, p, lac, lastEntryId) => { void this.answerPoll(ledgerId, p, lac, lastEntryId) }, undefined, host.clock)
  }

  async onRead(req: ReadRequest, replyTo: string): Promise<void> {
    this.host.stats.reads++
    const arrivedAt = performance.now()
    if (req.fence !== true) return this.readEntries(req, replyTo, arrivedAt)
    const refuse = (rc: number): void => {
      bookieMetrics.readAnswered(rc, arrivedAt, performance.now())
      this.host.publish(replyTo, { op: 'readResp', reqId: req.reqId, bookieId: this.host.bookieId, rc, entries: [] })
    }
    if (!req.masterKey) return refuse(RC.UNAUTHORIZED)
    // The fence's place in the ledger's line is taken now: later adds go behind it.
    this.host.closeBatch(req.ledgerId)
    try {
      const a = await this.host.ledger(req.ledgerId, true)
      this.fencedReads.set(`${replyTo}#${req.reqId}`, req)
      a!.send({ type: 'fence', replyTo, reqId: req.reqId, masterKey: req.masterKey, kind: 'read' })
    } catch {
      refuse(RC.ERROR)
    }
  }

  /** The ledger actor's `read.fenced`: the fence of a fencing read is synced (or refused); now the read. */
  fenced(p: { replyTo: string; reqId: number; rc: number }): void {
    const key = `${p.replyTo}#${p.reqId}`
    const req = this.fencedReads.get(key)
    this.fencedReads.delete(key)
    if (!req) return
    if (p.rc !== RC.OK) this.host.publish(p.replyTo, { op: 'readResp', reqId: p.reqId, bookieId: this.host.bookieId, rc: p.rc, entries: [] })
    else void this.readEntries(req, p.replyTo)
  }

  /**
   * Answer a read from the write cache and the entry store. A stored entry that fails its digest,
   * or whose RocksDB block fails its checksum ('damaged': the store names it, repairs itself and
   * keeps it listed until autorecovery writes a new copy), is answered CORRUPT (an error: the
   * reader tries another replica), never "no such entry"; the other entries are answered as usual.
   */
  private async readEntries(req: ReadRequest, replyTo: string, arrivedAt = performance.now()): Promise<void> {
    // With the LAC this bookie knows (when it holds the ledger): a reader behind its writer reads
    // on from it without a long poll in between.
    const reply = (rc: number, entries: Array<[number, Uint8Array | null]>, lac = -1): void => {
      bookieMetrics.readAnswered(rc, arrivedAt, performance.now())
      this.host.publish(replyTo, { op: 'readResp', reqId: req.reqId, bookieId: this.host.bookieId, rc, entries, ...(lac >= 0 ? { lac } : {}) })
    }
    try {
      const got = await this.host.storage().getEntries(req.ledgerId, req.entryIds)
      const actor = got.some((d) => d !== null) ? await this.host.ledger(req.ledgerId, false) : null
      const state = actor?.getSnapshot().context
      if (!mayRead(state?.masterKey, req.masterKey)) {
        reply(RC.UNAUTHORIZED, [])
        return
      }
      const limbo = this.host.storage().inLimbo(req.ledgerId)
      const out: Array<[number, Uint8Array | null]> = []
      let bytes = 0
      let anyFound = false
      for (let i = 0; i < got.length; i++) {
        const data = got[i]
        if (data === 'damaged') {
          anyFound = true
          this.host.stats.corruptReads++
          out.push([RC.CORRUPT, null])
          continue
        }
        if (data && out.length > 0 && bytes + data.byteLength > req.maxBytes) break
        if (!data) {
          out.push([limbo ? RC.IN_LIMBO : RC.NO_SUCH_ENTRY, null])
          continue
        }
        anyFound = true
        bytes += data.byteLength
        if (storedCopyIntact(data, req.ledgerId, req.entryIds[i]!, state?.digestType ?? null, state?.masterKey ?? null)) out.push([RC.OK, data])
        else {
          this.host.stats.corruptReads++
          out.push([RC.CORRUPT, null])
        }
      }
      if (!anyFound && (await this.host.ledger(req.ledgerId, false)) === null) {
        reply(limbo ? RC.IN_LIMBO : RC.NO_SUCH_LEDGER, [])
        return
      }
      reply(RC.OK, out, actor?.getSnapshot().context.lac)
    } catch {
      reply(RC.ERROR, [])
    }
  }

  async onReadLac(req: ReadLacRequest, replyTo: string): Promise<void> {
    this.host.stats.lacReads++
    const fail = (rc: number): void =>
      this.host.publish(replyTo, { op: 'lacResp', reqId: req.reqId, bookieId: this.host.bookieId, rc, lac: -1, lastEntryId: -1 })
    try {
      const fence = req.fence === true
      if (fence && !req.masterKey) return fail(RC.UNAUTHORIZED)
      // Behind the adds that came before it, ahead of those that come after (see BookieAdds.queue).
      this.host.closeBatch(req.ledgerId)
      const a = await this.host.ledger(req.ledgerId, fence)
      if (a === null) return fail(this.host.storage().inLimbo(req.ledgerId) ? RC.IN_LIMBO : RC.NO_SUCH_LEDGER)
      if (fence) a.send({ type: 'fence', replyTo, reqId: req.reqId, masterKey: req.masterKey!, kind: 'lac' })
      else if (req.previousLac !== undefined) {
        const c = a.getSnapshot().context
        // The entry a poll may bring is read data: only with the key of a ledger that has one.
        const poll: ParkedPoll = { replyTo, reqId: req.reqId, withEntry: req.withEntry === true && mayRead(c.masterKey, req.masterKey) }
        if (c.lac > req.previousLac) void this.answerPoll(req.ledgerId, poll, c.lac, c.lastEntryId)
        else this.polls.park(req.ledgerId, poll, req.previousLac, Math.min(req.timeoutMs ?? 10_000, 60_000), () => {
          const now = a.getSnapshot().context
          return { lac: now.lac, lastEntryId: now.lastEntryId }
        })
      } else a.send({ type: 'readLac', replyTo, reqId: req.reqId })
    } catch {
      fail(RC.ERROR)
    }
  }

  /** Answer a long poll: the LAC, and the entry at it when asked for and held here. */
  private async answerPoll(ledgerId: number, p: ParkedPoll, lac: number, lastEntryId: number): Promise<void> {
    let entry: Uint8Array | undefined
    if (p.withEntry && lac >= 0) {
      const got = (await this.host.storage().getEntries(ledgerId, [lac]).catch(() => [null]))[0]
      // A damaged copy is left out: the reader then reads the entry from a replica.
      if (got && got !== 'damaged') entry = got
    }
    this.host.publish(p.replyTo, { op: 'lacResp', reqId: p.reqId, bookieId: this.host.bookieId, rc: RC.OK, lac, lastEntryId, ...(entry ? { entry } : {}) })
  }
}
