// A simulated bookie: the real per-ledger machine (machines/bookieLedger.ts) over in-memory
// storage, driven by the simulated world. It answers the same requests as actors/bookie.ts, by
// the same rules: acks only after the journal syncs; reads verify stored digests and answer
// CORRUPT for a copy that fails; a fencing read or LAC read fences first. Its storage is shaped
// like actors/bookieStorage.ts: the journal (storage/memoryJournal.ts, the real record format of
// actors/journalRecords.ts) in front of an entry store (storage/memoryEntryStore.ts), with
// checkpoints (flush the store, then record the journal position) and replay from the last one.
//
// Fault model:
// - stop(): a clean stop: the records not yet synced (never acked) are dropped, nothing acked is lost;
// - crash(): the process dies (kill -9): records not yet synced are lost (never acked);
// - powerCut(tear): crash(), and the store loses every write since its last flush (RocksDB's
//   unsynced WAL); with `tear`, the last synced journal record is also damaged, so replay ends
//   before it and the entries it held (acked!) are gone unless a checkpoint had covered them;
// - restart(): replay from the last checkpoint. After a crash or power cut (no clean-stop marker)
//   every ledger it had is in limbo, and so is every ledger it does not know, until the integrity
//   check has read the metadata: for them an entry it does not hold is answered IN_LIMBO
//   (unknown), never NO_SUCH_ENTRY. The check takes the real one's verdicts
//   (machines/integrityCheck.ts): ledgers closed, deleted or not placed on it leave limbo, open
//   ones stay until recovery closes them (the lost copies of a closed ledger are not copied back
//   here: the checkers count them as having reached it). Limbo outlasts a later clean restart.
//   With `limbo: false` (a known-broken variant, sim/variants.ts) it answers NO_SUCH_ENTRY as
//   before limbo existed;
// - hang / unhang (through the world): requests wait, then all arrive;
// - rot(): flips a byte of one stored entry (bit rot);
// - the journal syncs after a random disk delay, one sync for every record queued by then.

import { createActor, type ActorRefFrom } from 'xstate'
import { decodeRecord, encodeRecord, type JournalRecord } from '../actors/journalRecords.ts'
import { bookieLedgerMachine, type BookieEntry } from '../machines/bookieLedger.ts'
import { isQuireError } from '../machines/errors.ts'
import { limboVerdict } from '../machines/integrityCheck.ts'
import { MemoryEntryStore } from '../storage/memoryEntryStore.ts'
import { MemoryJournal } from '../storage/memoryJournal.ts'
import type { MetadataStore } from '../storage/metadataStore.ts'
import type { JournalPosition } from '../storage/types.ts'
import { DIGEST_TYPES, decodeEntry, readEntryHeader, trustedLac, type DigestType } from '../transport/entry.ts'
import { RC, type AddRequest, type ReadLacRequest, type ReadRequest, type WireMessage } from '../transport/wire.ts'
import type { World } from './world.ts'

const CHECKPOINT_KEY = 'checkpoint'
/** How often the integrity check looks again at the ledgers still in limbo (virtual ms). */
const RECHECK_MS = 50

type LedgerActor = ActorRefFrom<typeof bookieLedgerMachine>

interface Durable {
  entries: Map<number, Map<number, Uint8Array>>
  states: Map<number, { masterKey: Uint8Array | null; digestType: DigestType | null; fenced: boolean }>
}

/** Replies go back through the world to the client node named `replyTo`. */
export type Reply = (replyTo: string, msg: WireMessage) => void

export interface SimBookieOptions {
  /** Limbo after an unclean stop (the product's rule); false only in the known-broken variant. */
  limbo: boolean
  /** What the integrity check reads. */
  metadata: MetadataStore
}

export class SimBookie {
  /** What the bookie holds (its write cache over the store): rebuilt from disk by restart(). */
  readonly durable: Durable = { entries: new Map(), states: new Map() }
  readonly journal = new MemoryJournal({ autoSync: false })
  readonly store = new MemoryEntryStore()
  /** Ledgers it cannot vouch for since an unclean stop. */
  readonly limbo = new Set<number>()
  /** After an unclean stop, until the integrity check has read the metadata: every ledger is in limbo. */
  unchecked = false
  /** Copies (`ledgerId:entryId`) an unclean stop destroyed, for the checkers: they had reached it. */
  readonly lost = new Set<string>()
  private ledgers = new Map<number, LedgerActor>()
  private syncScheduled = false
  private incarnation = 0
  /** The clean-stop marker: written by stop(), absent after a crash or power cut. */
  private stoppedCleanly = true
  private starting = false
  alive = true
  private readonly fencedReads = new Map<string, ReadRequest>()

  constructor(readonly id: string, private readonly world: World, private readonly reply: Reply, private readonly opts: SimBookieOptions) {
    this.scheduleCheckpoint()
  }

  /**
   * Clean stop: the marker is written. The records not yet synced were never acked; like a crash
   * it drops them (a drain may refuse them as well as sync them), which the protocol allows.
   */
  stop(): void {
    if (!this.alive) return
    this.journal.crash()
    this.goDown()
    this.stoppedCleanly = true
  }

  /** kill -9: the records not yet synced are lost; no marker. */
  crash(): void {
    if (!this.alive) return
    this.journal.crash()
    this.goDown()
    this.stoppedCleanly = false
  }

  /**
   * Power cut: crash(), the store loses its unflushed writes, and with `tear` the last synced
   * journal record is damaged (only an add record: see tailEntries()).
   */
  powerCut(tear: boolean): void {
    if (!this.alive) return
    const tearable = tear && this.tailEntries() !== null
    this.crash()
    this.store.powerCut()
    if (tearable) this.journal.tearTail()
  }

  /** The entries of the last synced journal record, which a torn tail would take; null if it is no add. */
  tailEntries(): { ledgerId: number; entryIds: number[] } | null {
    const last = this.journal.lastRecord
    if (last === null) return null
    const r = decodeRecord(last)
    return r.t === 'add' ? { ledgerId: r.l, entryIds: r.e.map((data) => readEntryHeader(data).entryId) } : null
  }

  private goDown(): void {
    this.alive = false
    this.incarnation++
    this.syncScheduled = false
    for (const a of this.ledgers.values()) a.stop()
    this.ledgers.clear()
    this.fencedReads.clear()
    this.world.down.add(this.id)
  }

  /** Start: replay the journal from the last checkpoint; after an unclean stop, limbo and the integrity check. */
  restart(): void {
    if (this.alive || this.starting) return
    this.starting = true
    const inc = ++this.incarnation
    void this.replay().then(() => {
      this.starting = false
      if (inc !== this.incarnation) return
      const clean = this.stoppedCleanly
      this.stoppedCleanly = false // the marker is removed on start
      this.alive = true
      this.world.down.delete(this.id)
      this.scheduleCheckpoint()
      if (!clean && this.opts.limbo) {
        for (const l of this.durable.states.keys()) this.limbo.add(l)
        for (const l of this.durable.entries.keys()) this.limbo.add(l)
        this.unchecked = true
      }
      if (this.unchecked || this.limbo.size > 0) this.world.setTimeout(() => this.integrityCheck(inc), this.world.between(0, 10))
    })
  }

  /** Bit rot in one stored entry; returns false if there is none to rot. */
  rot(ledgerId: number, entryId: number): boolean {
    const data = this.durable.entries.get(ledgerId)?.get(entryId)
    if (!data || data.byteLength === 0) return false
    const at = Math.floor(this.world.random() * data.byteLength)
    const copy = Uint8Array.from(data)
    copy[at] = copy[at]! ^ 0xff
    this.durable.entries.get(ledgerId)!.set(entryId, copy)
    this.store.corrupt(ledgerId, entryId, at) // the same byte on disk (a copy still only in the journal heals on replay)
    return true
  }

  // --- storage -------------------------------------------------------------------------------
  /** A synced record takes effect: in what the bookie holds and in the store. */
  private apply(r: JournalRecord): void {
    if (r.t === 'add') {
      let m = this.durable.entries.get(r.l)
      if (!m) this.durable.entries.set(r.l, (m = new Map()))
      for (const data of r.e) m.set(readEntryHeader(data).entryId, data)
      void this.store.putEntries(r.e.map((data) => ({ ledgerId: r.l, entryId: readEntryHeader(data).entryId, data })))
      return
    }
    if (r.t === 'lac' || r.t === 'lacs') return
    const s = this.stateOf(r.l)
    if (r.t === 'key') {
      s.masterKey = r.k
      s.digestType = r.d ?? null
    } else {
      s.fenced = true
    }
    void this.store.putLedgerState(r.l, { masterKey: s.masterKey, digestType: s.digestType, fenced: s.fenced, explicitLac: -1 })
  }

  /** Rebuild what the bookie holds from the store, then replay the journal past the last checkpoint into both. */
  private async replay(): Promise<void> {
    const before = [...this.durable.entries].flatMap(([l, m]) => [...m.keys()].map((e) => `${l}:${e}`))
    this.durable.entries.clear()
    this.durable.states.clear()
    for await (const l of this.store.listLedgers()) {
      const st = await this.store.getLedgerState(l)
      if (st) this.durable.states.set(l, { masterKey: st.masterKey, digestType: st.digestType, fenced: st.fenced })
      const last = await this.store.lastEntryId(l)
      const ids = Array.from({ length: last + 1 }, (_, e) => e)
      const got = await this.store.getEntries(ids.map((entryId) => ({ ledgerId: l, entryId })))
      const m = new Map<number, Uint8Array>()
      got.forEach((data, e) => { if (data) m.set(e, data) })
      if (m.size > 0) this.durable.entries.set(l, m)
    }
    const cp = await this.store.getMeta(CHECKPOINT_KEY)
    for await (const { record } of this.journal.replay(cp ? JSON.parse(cp.toString('utf8')) as JournalPosition : null)) this.apply(decodeRecord(record))
    await this.checkpoint()
    for (const k of before) {
      const [l, e] = k.split(':').map(Number) as [number, number]
      if (!this.durable.entries.get(l)?.has(e)) this.lost.add(k)
    }
  }

  /** Every synced record is in the store by now (applied as it synced): flush, then record the position. */
  private async checkpoint(): Promise<void> {
    const position = this.journal.syncedPosition
    await this.store.flush()
    await this.store.putMeta(CHECKPOINT_KEY, Buffer.from(JSON.stringify(position)))
    await this.store.flush()
    await this.journal.trimBefore(position)
  }

  private scheduleCheckpoint(): void {
    const inc = this.incarnation
    this.world.setTimeout(() => {
      if (inc !== this.incarnation) return
      void this.checkpoint()
      this.scheduleCheckpoint()
    }, this.world.between(40, 250))
  }

  /**
   * The integrity check: which of its ledgers does the metadata still leave open with this bookie
   * placed in it? Those stay in limbo (recovery will close them); the rest leave it. The first
   * pass also takes every such ledger it does not hold (lost whole); then unknown ledgers are no
   * longer in limbo. Repeats while any ledger is in limbo.
   */
  private integrityCheck(inc: number): void {
    const current = (): boolean => inc === this.incarnation
    void (async () => {
      const ids = new Set(this.limbo)
      if (this.unchecked) for await (const l of this.opts.metadata.listLedgers()) ids.add(l)
      for (const l of ids) {
        let stays = true // unreadable metadata: never released on a guess
        try {
          stays = limboVerdict((await this.opts.metadata.readLedger(l)).value, this.id) === 'keep'
        } catch (err) {
          if (isQuireError(err, 'NO_SUCH_LEDGER')) stays = false
        }
        if (!current()) return
        if (stays) this.limbo.add(l)
        else this.limbo.delete(l)
      }
      this.unchecked = false
    })().then(() => {
      if (current() && this.limbo.size > 0) this.world.setTimeout(() => this.integrityCheck(inc), RECHECK_MS)
    })
  }

  receive(msg: WireMessage, replyTo: string): void {
    if (!this.alive) return
    if (msg.op === 'add') this.onAdd(msg, replyTo)
    else if (msg.op === 'read') this.onRead(msg, replyTo)
    else if (msg.op === 'readLac') this.onReadLac(msg, replyTo)
  }

  // --- journal -------------------------------------------------------------------------------
  /** Journal a record; once synced it takes effect (even if the bookie stopped meanwhile), then `synced`. */
  private append(record: JournalRecord, synced: () => void): void {
    const inc = this.incarnation
    this.journal.append(encodeRecord(record)).then(() => {
      this.apply(record)
      synced()
    }, () => {}) // lost in a crash: never acked
    if (this.syncScheduled) return
    this.syncScheduled = true
    this.world.setTimeout(() => {
      if (inc !== this.incarnation) return
      this.syncScheduled = false
      this.journal.sync()
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
          { t: 'add', l: ledgerId, e: p.adds.flatMap((a) => a.entries.map((e) => e.data)) },
          live(() => actor.send({ type: 'journal.synced', adds: p.adds })),
        ),
        'journal.masterKey': (_, p) => this.append({ t: 'key', l: ledgerId, k: p.masterKey, d: p.digestType }, () => {}),
        'journal.fence': () => this.append({ t: 'fence', l: ledgerId }, live(() => actor.send({ type: 'journal.fenceSynced' }))),
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

  // --- requests ------------------------------------------------------------------------------
  private onAdd(req: AddRequest, replyTo: string): void {
    for (const g of req.groups) {
      const entries: BookieEntry[] = g.entries.map((data) => {
        const h = readEntryHeader(data)
        return { entryId: h.entryId, lac: h.lac, data }
      })
      // A batch of one: the simulator delivers each request on its own.
      this.ledger(g.ledgerId, true)!.send({
        type: 'adds', adds: [{ replyTo, masterKey: g.masterKey, digestType: g.digestType, recovery: g.recovery, entries }],
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
    // Limbo: it cannot vouch that it never had what it lacks (an unclean stop may have taken it).
    const inLimbo = this.unchecked || this.limbo.has(req.ledgerId)
    const missing = inLimbo ? RC.IN_LIMBO : RC.NO_SUCH_ENTRY
    if (!stored && !state) {
      this.reply(replyTo, { op: 'readResp', reqId: req.reqId, bookieId: this.id, rc: inLimbo ? RC.IN_LIMBO : RC.NO_SUCH_LEDGER, entries: [] })
      return
    }
    const entries: Array<[number, Uint8Array | null]> = req.entryIds.map((id) => {
      const data = stored?.get(id)
      if (!data) return [missing, null]
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
