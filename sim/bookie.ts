// A simulated bookie: the real per-ledger machine (machines/bookieLedger.ts) over in-memory
// storage, driven by the simulated world. It answers the same requests as actors/bookie.ts, by
// the same rules: acks only after the journal "syncs"; reads verify stored digests and answer
// CORRUPT for a copy that fails; a fencing read or LAC read fences first.
//
// Fault model:
// - crash(): everything not yet synced is lost (the torn journal tail), actors are gone; what was
//   synced (entries, master keys, fence marks) survives; restart() reloads it;
// - hang / unhang (through the world): requests wait, then all arrive;
// - rot(): flips a byte of one stored entry (bit rot);
// - the journal syncs after a random disk delay, one sync for every record queued by then.

import { createActor, type ActorRefFrom } from 'xstate'
import { bookieLedgerMachine, type BookieEntry } from '../machines/bookieLedger.ts'
import { DIGEST_TYPES, decodeEntry, readEntryHeader, trustedLac, type DigestType } from '../transport/entry.ts'
import { RC, type AddRequest, type ReadLacRequest, type ReadRequest, type WireMessage } from '../transport/wire.ts'
import type { World } from './world.ts'

type LedgerActor = ActorRefFrom<typeof bookieLedgerMachine>

interface Durable {
  entries: Map<number, Map<number, Uint8Array>>
  states: Map<number, { masterKey: Uint8Array | null; digestType: string | null; fenced: boolean }>
}

/** Replies go back through the world to the client node named `replyTo`. */
export type Reply = (replyTo: string, msg: WireMessage) => void

export class SimBookie {
  readonly durable: Durable = { entries: new Map(), states: new Map() }
  private ledgers = new Map<number, LedgerActor>()
  private journal: Array<() => void> = []
  private syncScheduled = false
  private incarnation = 0
  alive = true
  private readonly fencedReads = new Map<string, ReadRequest>()

  constructor(readonly id: string, private readonly world: World, private readonly reply: Reply) {}

  crash(): void {
    this.alive = false
    this.incarnation++
    this.journal = []
    this.syncScheduled = false
    for (const a of this.ledgers.values()) a.stop()
    this.ledgers.clear()
    this.fencedReads.clear()
    this.world.down.add(this.id)
  }

  restart(): void {
    this.alive = true
    this.world.down.delete(this.id)
  }

  /** Bit rot in one stored entry; returns false if there is none to rot. */
  rot(ledgerId: number, entryId: number): boolean {
    const data = this.durable.entries.get(ledgerId)?.get(entryId)
    if (!data || data.byteLength === 0) return false
    const copy = Uint8Array.from(data)
    const at = Math.floor(this.world.random() * copy.byteLength)
    copy[at] = copy[at]! ^ 0x10
    this.durable.entries.get(ledgerId)!.set(entryId, copy)
    return true
  }

  receive(msg: WireMessage, replyTo: string): void {
    if (!this.alive) return
    if (msg.op === 'add') this.onAdd(msg, replyTo)
    else if (msg.op === 'read') this.onRead(msg, replyTo)
    else if (msg.op === 'readLac') this.onReadLac(msg, replyTo)
  }

  // --- journal -------------------------------------------------------------------------------
  private append(persist: () => void, synced: () => void): void {
    const inc = this.incarnation
    this.journal.push(() => {
      persist()
      synced()
    })
    if (this.syncScheduled) return
    this.syncScheduled = true
    this.world.setTimeout(() => {
      if (inc !== this.incarnation) return
      this.syncScheduled = false
      const group = this.journal
      this.journal = []
      for (const r of group) r()
    }, this.world.between(0.05, 0.6))
  }

  // --- ledger actors -------------------------------------------------------------------------
  private ledger(ledgerId: number, create: boolean): LedgerActor | null {
    const have = this.ledgers.get(ledgerId)
    if (have) return have
    const state = this.durable.states.get(ledgerId)
    const stored = this.durable.entries.get(ledgerId)
    if (!create && !state && !stored) return null
    let lastEntryId = -1
    let lac = -1
    for (const [id, data] of stored ?? []) {
      if (id > lastEntryId) lastEntryId = id
      // A rotted copy still counts as present, but its header is no evidence of a LAC.
      lac = Math.max(lac, trustedLac(data, ledgerId, id, state?.digestType ?? null, state?.masterKey ?? null) ?? -1)
    }
    const inc = this.incarnation
    const live = (fn: () => void) => () => { if (inc === this.incarnation) fn() }
    const machine = bookieLedgerMachine.provide({
      actions: {
        'journal.add': (_, p) => this.append(
          () => this.store(ledgerId, p.entries),
          live(() => actor.send({ type: 'journal.synced', replyTo: p.replyTo, entries: p.entries })),
        ),
        'journal.masterKey': (_, p) => this.append(() => {
          const s = this.stateOf(ledgerId)
          s.masterKey = p.masterKey
          s.digestType = p.digestType
        }, () => {}),
        'journal.fence': () => this.append(
          () => { this.stateOf(ledgerId).fenced = true },
          live(() => actor.send({ type: 'journal.fenceSynced' })),
        ),
        'store.put': () => {},
        'reply.add': (_, p) => this.reply(p.replyTo, { op: 'addAck', bookieId: this.id, acks: [[ledgerId, p.rc, p.entryIds]] }),
        'reply.lac': (_, p) => this.reply(p.replyTo, { op: 'lacResp', reqId: p.reqId, bookieId: this.id, rc: p.rc, lac: p.lac, lastEntryId: p.lastEntryId }),
        'read.fenced': (_, p) => {
          const key = `${p.replyTo}#${p.reqId}`
          const req = this.fencedReads.get(key)
          this.fencedReads.delete(key)
          if (!req) return
          if (p.rc !== RC.OK) this.reply(p.replyTo, { op: 'readResp', reqId: p.reqId, bookieId: this.id, rc: p.rc, entries: [] })
          else this.readEntries(req, p.replyTo)
        },
      },
    })
    const actor: LedgerActor = createActor(machine, {
      input: {
        ledgerId, masterKey: state?.masterKey ?? null, digestType: state?.digestType ?? null,
        fenced: state?.fenced ?? false, lac, lastEntryId,
      },
    })
    actor.start()
    this.ledgers.set(ledgerId, actor)
    return actor
  }

  private stateOf(ledgerId: number) {
    let s = this.durable.states.get(ledgerId)
    if (!s) this.durable.states.set(ledgerId, (s = { masterKey: null, digestType: null, fenced: false }))
    return s
  }

  private store(ledgerId: number, entries: readonly BookieEntry[]): void {
    let m = this.durable.entries.get(ledgerId)
    if (!m) this.durable.entries.set(ledgerId, (m = new Map()))
    for (const e of entries) m.set(e.entryId, e.data)
  }

  // --- requests ------------------------------------------------------------------------------
  private onAdd(req: AddRequest, replyTo: string): void {
    for (const g of req.groups) {
      const entries: BookieEntry[] = g.entries.map((data) => {
        const h = readEntryHeader(data)
        return { entryId: h.entryId, lac: h.lac, data }
      })
      this.ledger(g.ledgerId, true)!.send({
        type: 'add', replyTo, masterKey: g.masterKey, digestType: g.digestType, recovery: g.recovery, entries,
      })
    }
  }

  private onReadLac(req: ReadLacRequest, replyTo: string): void {
    const fence = req.fence === true
    const fail = (rc: number): void => this.reply(replyTo, { op: 'lacResp', reqId: req.reqId, bookieId: this.id, rc, lac: -1, lastEntryId: -1 })
    if (fence && !req.masterKey) return fail(RC.UNAUTHORIZED)
    const a = this.ledger(req.ledgerId, fence)
    if (!a) return fail(RC.NO_SUCH_LEDGER)
    if (fence) a.send({ type: 'fence', replyTo, reqId: req.reqId, masterKey: req.masterKey!, kind: 'lac' })
    else a.send({ type: 'readLac', replyTo, reqId: req.reqId })
  }

  private onRead(req: ReadRequest, replyTo: string): void {
    if (req.fence !== true) return this.readEntries(req, replyTo)
    if (!req.masterKey) return this.reply(replyTo, { op: 'readResp', reqId: req.reqId, bookieId: this.id, rc: RC.UNAUTHORIZED, entries: [] })
    this.fencedReads.set(`${replyTo}#${req.reqId}`, req)
    this.ledger(req.ledgerId, true)!.send({ type: 'fence', replyTo, reqId: req.reqId, masterKey: req.masterKey, kind: 'read' })
  }

  private readEntries(req: ReadRequest, replyTo: string): void {
    const stored = this.durable.entries.get(req.ledgerId)
    const state = this.durable.states.get(req.ledgerId)
    if (!stored && !state) {
      this.reply(replyTo, { op: 'readResp', reqId: req.reqId, bookieId: this.id, rc: RC.NO_SUCH_LEDGER, entries: [] })
      return
    }
    const entries: Array<[number, Uint8Array | null]> = req.entryIds.map((id) => {
      const data = stored?.get(id)
      if (!data) return [RC.NO_SUCH_ENTRY, null]
      return this.intact(req.ledgerId, id, data) ? [RC.OK, data] : [RC.CORRUPT, null]
    })
    this.reply(replyTo, { op: 'readResp', reqId: req.reqId, bookieId: this.id, rc: RC.OK, entries })
  }

  private intact(ledgerId: number, entryId: number, data: Uint8Array): boolean {
    const s = this.durable.states.get(ledgerId)
    if (!s?.masterKey || !s.digestType || !DIGEST_TYPES.includes(s.digestType as DigestType)) return true
    try {
      decodeEntry(s.digestType as DigestType, s.masterKey, data, { ledgerId, entryId })
      return true
    } catch {
      return false
    }
  }
}
