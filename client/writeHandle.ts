// WriteHandleImpl (public as the WriteHandle interface of client/api.ts; the class and its deps
// constructor are internal): the single writer of a ledger. Binds machines/writer.ts to the bookie transport
// and the metadata store. Appends made in the same tick go to the machine as one event, so they
// travel as one message per bookie; acks come back one message per bookie journal group commit.
//
// Explicit LACs (an idle writer's, the eager hint, the final one at close) go through the
// client's LacBatcher (client/lacBatcher.ts), with every other writer's: one frame per bookie.
//
// Invariants: append promises resolve in entryId order (the machine only emits `resolve` for the
// contiguous prefix); nothing is resolved once the writer is fenced, closed or failed; an add
// that got no ack quorum within addTimeoutMs fails the writer with TIMEOUT.

import { createActor, type ActorRefFrom } from 'xstate'
import { QuireError, asOperatingError, type ErrorCode } from '../machines/errors.ts'
import { writerMachine } from '../machines/writer.ts'
import { hasIndex } from '../machines/quorum.ts'
import { ensembleChangeRefusal, segmentsAfterChange, writerCloseDecision } from '../machines/ledgerRules.ts'
import { ensembleMaxEntryBytes, ensembleTakesWriteSetSubjects, pickBookies, type LedgerMetadata, type MetadataStore } from '../storage/metadataStore.ts'
import { KvConflict } from '../storage/types.ts'
import { HEADER_BYTES, digestBytes, encodeEntry } from '../transport/entry.ts'
import { RC, rcName } from '../transport/wire.ts'
import { summariseContext, watchActor, type InspectSink } from '../transport/inspect.ts'
import type { ClientMetrics } from './telemetry.ts'
import type { BookieTransport, TailTransport } from './bookieClient.ts'
import type { Clock, Random } from '../transport/clock.ts'
import { ReadHandleImpl, type HandleDeps } from './readHandle.ts'
import type { WriteHandle } from './api.ts'
import type { Observable, ObservableInput } from 'rxjs'
import { appendIterable, appendObservable, type Appended, type ProducerOptions } from './producer.ts'
import type { LacBatcher } from './lacBatcher.ts'
import { Ticker } from './ticker.ts'

interface Waiting {
  resolve: (entryId: number) => void
  reject: (err: unknown) => void
  /** performance.now() at append(), for quire_client_add_duration_seconds. */
  calledAt: number
}

export interface WriteDeps extends HandleDeps {
  bookies: BookieTransport & Partial<TailTransport>
  /** After about this long without a new entry, send the LAC on its own (0: never); see idleLacDue. */
  explicitLacIntervalMs: number
  /** The client's explicit LACs, sent together; absent: none are sent. */
  lacs?: LacBatcher | null
  /** Send the LAC on its own as soon as it moves, when no add of the same turn carries it. */
  eagerLac: boolean
  clock: Clock
  random: Random
  metadata: MetadataStore
  addTimeoutMs: number
  /**
   * The client's tick for every writer's add timeouts and re-sends (addWatchInterval(addTimeoutMs));
   * absent: this writer ticks on its own. Either way a writer is polled only while adds are pending.
   */
  addWatch?: Ticker
  maxEntryBytes: number
  /** The smallest entry limit (header and digest included) the ensemble's bookies publish. */
  bookiesMaxEntryBytes?: { bytes: number; bookieId: string } | undefined
  /** Every bookie of the ensemble takes adds on write-set subjects (storage/metadataStore.ts BookieRecord). */
  writeSetSubjects?: boolean
  /** Where the writer publishes its inspection; null: nowhere (the client's `inspect` option). */
  inspect: InspectSink | null
  metrics: ClientMetrics
  /** Replace a rule of the writer machine (machine.provide), for the simulator's known-broken variants; the product never does. */
  writerLogic?: ((m: typeof writerMachine) => typeof writerMachine) | undefined
}

export class WriteHandleImpl extends ReadHandleImpl implements WriteHandle {
  private readonly actor: ActorRefFrom<typeof writerMachine>
  private readonly unregister: () => void
  /** Appends not yet handed to the machine (this tick), and those with an entry id. */
  private unsent: { payloads: Uint8Array[]; waiting: Waiting[] } = { payloads: [], waiting: [] }
  private handing: Waiting[] = []
  private readonly inflight: Waiting[] = []
  private flushQueued = false
  private lastProgressAt = 0
  private lastResendAt = 0
  /** Re-sends since the writer last made progress: from the third on, each waits twice as long as the one before. */
  private resends = 0
  /** Bookies whose adds NATS refused to carry, with the refused subject. */
  private readonly refusedSubjects = new Map<string, string>()
  private readonly addWatch: Ticker
  private readonly pollTimeouts = (): boolean => this.checkTimeouts()
  private closeWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []
  private revision: number
  /** Highest LAC the bookies were told, inside an entry or on its own (eager hint included). */
  private lacCarried = -1
  /** Highest LAC the bookies journal: inside an entry or an idle writer's explicit LAC. */
  private lacPersisted = -1
  /** clock.now() when the LAC last moved. */
  private lacMovedAt = 0
  private readonly pollIdleLac = (): boolean => this.idleLacDue()
  private readonly sendEagerLac = (): void => this.eagerLacTurn()
  /** The ensemble's smallest published entry limit; updated by an ensemble change. */
  private bookiesMaxEntryBytes: { bytes: number; bookieId: string } | undefined
  /** Whether the ensemble's bookies take adds on write-set subjects; updated by an ensemble change. */
  private writeSetSubjects: boolean

  constructor(private readonly w: WriteDeps, metadata: LedgerMetadata, revision: number) {
    super(w, metadata)
    this.revision = revision
    this.bookiesMaxEntryBytes = w.bookiesMaxEntryBytes
    this.writeSetSubjects = w.writeSetSubjects ?? false
    this.addWatch = w.addWatch ?? new Ticker(w.clock, addWatchInterval(w.addTimeoutMs))
    const seg = this.lastSegment()
    const machine = writerMachine.provide({
      actions: {
        send: (_, p) => {
          this.takeHanding()
          this.lacCarried = Math.max(this.lacCarried, p.lac)
          this.lacPersisted = Math.max(this.lacPersisted, p.lac)
          // Each entry encoded once, into the add group its write set shares (transport/addFrame.ts).
          if (w.bookies.queueEntries) w.bookies.queueEntries(this.ledgerId, w.masterKey, this.md.digestType, p.lac, p.entries, this.writeSetSubjects)
          else {
            for (const { entryId, payload, ledgerLength, bookies } of p.entries) {
              const data = encodeEntry(this.md.digestType, w.masterKey, this.ledgerId, entryId, p.lac, ledgerLength, payload)
              for (const b of bookies) w.bookies.queueAdd(b, this.ledgerId, w.masterKey, this.md.digestType, false, data)
            }
          }
          this.armTimer()
        },
        changeEnsemble: (_, p) => {
          // Appends of this event got ids too: they are in flight, sent once the change is done.
          this.takeHanding()
          void this.changeEnsemble(p.ensemble, p.failed, p.lac)
        },
        resolve: (_, p) => {
          this.lac = p.lac
          this.lastProgressAt = this.w.clock.now()
          this.resends = 0
          const now = performance.now()
          for (let id = p.firstEntryId; id <= p.lastEntryId; id++) {
            const w = this.inflight.shift()
            if (!w) continue
            this.w.metrics.addResolved(w.calledAt, now)
            w.resolve(id)
          }
          this.lacMovedAt = this.w.clock.now()
          if (this.w.eagerLac) this.w.lacs?.runAfterTurn(this.sendEagerLac)
          this.w.lacs?.watchIdle(this.pollIdleLac)
        },
        reject: (_, p) => {
          const err = new QuireError(p.code, p.message, { ledgerId: this.ledgerId })
          const victims = p.scope === 'all' ? [...this.inflight.splice(0), ...this.handing] : this.handing
          this.handing = []
          for (const v of victims) v.reject(err)
          if (p.scope === 'all') this.settleClose(err)
        },
        closeMetadata: (_, p) => {
          // Every entry is acknowledged now: tell the bookies the final LAC, so that tailing
          // readers parked on a long poll get the last entries at once, not at their poll timeout.
          this.sendExplicitLac(p.lastEntryId)
          void this.closeMetadata(p.lastEntryId, p.length)
        },
      },
    })
    this.actor = createActor(w.writerLogic ? w.writerLogic(machine) : machine, {
      input: {
        ledgerId: metadata.ledgerId,
        quorum: metadata,
        ensemble: seg.ensemble,
        lastEntryId: metadata.lastEntryId,
        length: metadata.length,
      },
    })
    const unwatch = watchActor(this.actor, w.inspect, 'writer', String(metadata.ledgerId), {
      summarise: (c) => ({ ...summariseContext('writer', c), segments: this.md.segments.length, metadataState: this.md.state }),
    })
    this.actor.subscribe((snap) => {
      if (snap.value === 'closed') this.settleClose(null)
      else if ((snap.value === 'failed' || snap.value === 'fenced') && snap.context.error) {
        this.settleClose(new QuireError(snap.context.error.code, snap.context.error.message, { ledgerId: this.ledgerId }))
      }
    })
    this.actor.start()
    const started = this.actor.getSnapshot()
    if (started.status === 'error') throw started.error
    const unregisterAcks = w.bookies.registerWriter(this.ledgerId, (bookieId, rc, entryIds) => this.onAcks(bookieId, rc, entryIds))
    // Adds or acks in flight on a NATS server that died are lost: re-send once reconnected.
    const unwatchReconnect = w.bookies.onReconnect?.(() => this.resendUnacked()) ?? (() => {})
    // Adds NATS refused to carry (this client's user may not publish there) get no answer: fail the bookie now.
    const unwatchRefusals = w.bookies.onRefused?.((bookieId, subject) => this.onRefused(bookieId, subject)) ?? (() => {})
    this.unregister = () => { unregisterAcks(); unwatchReconnect(); unwatchRefusals(); unwatch() }
  }

  /** State of the writer machine (open, closing, closed, fenced, failed, ...). */
  get state(): string {
    return String(this.actor.getSnapshot().value)
  }

  get lastAddPushed(): number {
    return this.actor.getSnapshot().context.lastAddPushed
  }

  /** Append one entry; resolves with its entryId once Qa bookies of its write set have it on disk. */
  append(data: Uint8Array | string): Promise<number> {
    const payload = typeof data === 'string' ? Buffer.from(data) : data
    const limit = this.entryLimit()
    if (payload.byteLength > limit.bytes) {
      return Promise.reject(new QuireError('ENTRY_TOO_LARGE', `entry of ${payload.byteLength} bytes exceeds the limit of ${limit.bytes} bytes (${limit.why})`, {
        ledgerId: this.ledgerId, size: payload.byteLength, limit: limit.bytes, boundBy: limit.why,
      }))
    }
    return new Promise((resolve, reject) => {
      this.unsent.payloads.push(payload)
      this.unsent.waiting.push({ resolve, reject, calledAt: performance.now() })
      if (!this.flushQueued) {
        this.flushQueued = true
        queueMicrotask(() => this.handOver())
      }
    })
  }

  /**
   * Largest payload an append may carry: the smallest of the client's maxEntryBytes, what one add
   * frame can carry on the NATS server (max_payload less framing), and the smallest entry the
   * ensemble's bookies accept; the last two less the entry's header and digest. Past it an entry
   * would crash the publish or be refused by a bookie, failing the writer: it is refused here.
   */
  private entryLimit(): { bytes: number; why: string } {
    const framing = HEADER_BYTES + digestBytes(this.md.digestType)
    let best = { bytes: this.w.maxEntryBytes, why: 'the client\'s maxEntryBytes' }
    const frame = this.w.bookies.maxEntryBytes?.()
    if (frame !== undefined && frame - framing < best.bytes) {
      best = { bytes: frame - framing, why: 'the NATS server\'s max_payload less the add frame\'s framing and the entry header' }
    }
    const bookie = this.bookiesMaxEntryBytes
    if (bookie && bookie.bytes - framing < best.bytes) {
      best = { bytes: bookie.bytes - framing, why: `bookie ${bookie.bookieId} accepts entries of at most ${bookie.bytes} bytes with header and digest` }
    }
    return best
  }

  private takeHanding(): void {
    if (this.handing.length === 0) return
    if (this.inflight.length === 0) this.lastProgressAt = this.w.clock.now()
    this.inflight.push(...this.handing)
    this.handing = []
  }

  private handOver(): void {
    this.flushQueued = false
    const { payloads, waiting } = this.unsent
    if (payloads.length === 0) return
    this.unsent = { payloads: [], waiting: [] }
    this.handing = waiting
    const pushed = this.lastAddPushed
    this.actor.send({ type: 'append', payloads })
    // During an ensemble change the machine gives them ids but holds them (sent once it is
    // done): they are in flight, in id order, like the appends it sent.
    if (this.handing.length > 0 && this.lastAddPushed === pushed + payloads.length) this.takeHanding()
    // Neither `send` nor `reject` took them: cannot happen, but never leave a caller hanging.
    for (const h of this.handing) h.reject(new Error('append was neither sent nor refused'))
    this.handing = []
  }

  /**
   * Append every payload of an RxJS source; emits `{entryId, payload}` in order as each is
   * acknowledged. Bounded: see client/producer.ts (a push source that outruns the bookies fails
   * with BACKPRESSURE rather than growing memory).
   */
  append$(source: ObservableInput<Uint8Array | string>, opts?: ProducerOptions): Observable<Appended> {
    return appendObservable(this, source, opts)
  }

  /** Append every payload of an (async) iterable, pulling only while under the in-flight bounds. */
  appendAll(source: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>, opts?: ProducerOptions): AsyncGenerator<Appended> {
    return appendIterable(this, source, opts)
  }

  /** Finish in-flight appends, then CAS the metadata to CLOSED at the LAC. */
  close(): Promise<void> {
    this.handOver()
    const done = new Promise<void>((resolve, reject) => this.closeWaiters.push({ resolve, reject }))
    const v = this.actor.getSnapshot().value
    if (v === 'closed') this.settleClose(null)
    else if (v === 'open') this.actor.send({ type: 'close' })
    else if (v === 'fenced' || v === 'failed') {
      const e = this.actor.getSnapshot().context.error
      this.settleClose(new QuireError(e?.code ?? 'LEDGER_CLOSED', e?.message ?? 'the writer has stopped', { ledgerId: this.ledgerId }))
    }
    return done
  }

  /**
   * Explicit LAC: the LAC travels in the next entry, so when the writer goes idle the bookies (and
   * tailing readers) would never learn of the last one. Polled at the client's idle ticks (every
   * `explicitLacIntervalMs`, shared by all its writers): a writer with nothing in flight whose LAC
   * has not moved for half an interval queues it, so it goes out between half an interval and an
   * interval and a half after its entry, in the tick's one frame per bookie. A writer that appends
   * more often than that sends none: its entries carry the LAC. True: poll again at the next tick.
   */
  private idleLacDue(): boolean {
    const snap = this.actor.getSnapshot()
    if (snap.value !== 'open' || this.lac <= this.lacPersisted) return false
    if (snap.context.lastAddPushed !== this.lac) return true
    if (this.w.clock.now() - this.lacMovedAt < this.w.explicitLacIntervalMs / 2) return true
    this.sendExplicitLac(this.lac)
    return false
  }

  /**
   * Eager LAC: run once this turn's callbacks have (the callers whose appends were just resolved
   * may append again, and that entry carries the LAC): tell the bookies a LAC no entry carried.
   */
  private eagerLacTurn(): void {
    if (this.state !== 'open' || this.lac <= this.lacCarried) return
    this.w.lacs!.queue(this.actor.getSnapshot().context.ensemble, { ledgerId: this.ledgerId, masterKey: this.w.masterKey, lac: this.lac, persist: false })
    this.lacCarried = this.lac
  }

  private sendExplicitLac(lac: number): void {
    if (!this.w.lacs || lac <= this.lacPersisted) return
    this.w.lacs.queue(this.actor.getSnapshot().context.ensemble, { ledgerId: this.ledgerId, masterKey: this.w.masterKey, lac, persist: true })
    this.lacCarried = Math.max(this.lacCarried, lac)
    this.lacPersisted = lac
  }

  private settleClose(err: QuireError | null): void {
    const waiters = this.closeWaiters
    this.closeWaiters = []
    this.w.lacs?.forget(this.pollIdleLac, this.sendEagerLac)
    this.addWatch.forget(this.pollTimeouts)
    if (err === null || this.state !== 'open') this.unregister()
    for (const w of waiters) (err ? w.reject(err) : w.resolve())
  }

  private onAcks(bookieId: string, rc: number, entryIds: number[]): void {
    if (rc === RC.OK) this.actor.send({ type: 'acks', bookieId, entryIds })
    else if (rc === RC.FENCED) this.actor.send({ type: 'fenced', bookieId })
    else if (rc === RC.UNAUTHORIZED) this.actor.send({ type: 'unauthorized', bookieId })
    else {
      const code: ErrorCode = rc === RC.TOO_LARGE ? 'ENTRY_TOO_LARGE' : 'BOOKIE_UNAVAILABLE'
      this.actor.send({ type: 'bookie.failed', bookieId, code, reason: `bookie answered ${rcName(rc)} for ${entryIds.length} adds` })
    }
  }

  private onRefused(bookieId: string, subject: string): void {
    if (!this.actor.getSnapshot().context.ensemble.includes(bookieId)) return
    this.refusedSubjects.set(bookieId, subject)
    this.actor.send({ type: 'bookie.failed', bookieId, code: 'NATS_AUTH', reason: `NATS refused this client's publish to ${subject} (its user's permissions)` })
  }

  /** Watched by the client's add tick while adds are pending (not a timer per entry, nor per writer). */
  private armTimer(): void {
    this.addWatch.watch(this.pollTimeouts)
  }

  /**
   * At each add tick: re-send what is stalled, fail the bookies that hold up the oldest add past
   * addTimeoutMs. Returns whether to keep polling: not once nothing is pending (the next send
   * watches again), so an idle writer costs no tick.
   */
  private checkTimeouts(): boolean {
    const snap = this.actor.getSnapshot()
    const head = snap.context.pending[0]
    if (!head) return false
    const now = this.w.clock.now()
    const stalledMs = now - this.lastProgressAt
    const resendAfterMs = this.resendAfterMs()
    if (stalledMs >= resendAfterMs && now - this.lastResendAt >= resendAfterMs * 2 ** Math.max(0, this.resends - 1)) {
      const to = this.resendTargets()
      if (to === null || to.size > 0) {
        this.resendUnacked(to)
        this.resends++
      }
    }
    if (stalledMs < this.w.addTimeoutMs) return true
    if (snap.value === 'changingEnsemble') return true
    snap.context.ensemble.forEach((bookieId, i) => {
      if (hasIndex(head.writeMask, i) && !hasIndex(head.ackedMask, i)) {
        this.actor.send({ type: 'bookie.failed', bookieId, code: 'TIMEOUT', reason: `no answer within ${this.w.addTimeoutMs} ms` })
      }
    })
    this.lastProgressAt = this.w.clock.now()
    return true
  }

  /**
   * A stalled writer re-sends after this long, again as long after, then twice as long each time
   * (stalled 1, 2, 4, 8, 16 s with the longest interval), before it
   * gives up on a bookie at addTimeoutMs: the add or its ack may have been lost with a NATS server
   * the bookie or this client was connected to, and a bookie that is merely slow takes the same
   * entry again idempotently (journaled again, stored under the same key, acknowledged again).
   * Doubling keeps an overloaded bookie from being sent each stalled entry again every second,
   * which is more load on what is already behind.
   */
  private resendAfterMs(): number {
    return Math.max(20, Math.min(1000, this.w.addTimeoutMs / 4))
  }

  /**
   * The bookies a stalled writer re-sends to: each one with an add unacknowledged, unless it is
   * `behind` for the oldest of them (answering older adds: client/bookieClient.ts addState), as an
   * overloaded bookie is. Null: every one (the transport cannot tell).
   */
  private resendTargets(): Set<string> | null {
    const state = this.w.bookies.addState
    if (!state) return null
    const { ensemble, pending } = this.actor.getSnapshot().context
    const to = new Set<string>()
    const decided = new Set<string>()
    for (const p of pending) {
      if (!p.sent) continue
      ensemble.forEach((b, i) => {
        if (!hasIndex(p.writeMask, i) || hasIndex(p.ackedMask, i) || decided.has(b)) return
        decided.add(b)
        if (state.call(this.w.bookies, b, this.ledgerId, p.entryId) !== 'behind') to.add(b)
      })
    }
    return to
  }

  /** Re-send each sent, unacknowledged add to the bookies of its write set (of `to`, if given) that have not acked it. */
  private resendUnacked(to: ReadonlySet<string> | null = null): void {
    this.lastResendAt = this.w.clock.now()
    const snap = this.actor.getSnapshot()
    // During an ensemble change the machine re-sends to the replacements itself once it is done.
    if (snap.value !== 'open' && snap.value !== 'closing') return
    const { ensemble, pending, lac } = snap.context
    for (const p of pending) {
      if (!p.sent) continue
      // The LAC piggybacked is the current one: still below the entry, and a true LAC.
      const data = encodeEntry(this.md.digestType, this.w.masterKey, this.ledgerId, p.entryId, lac, p.ledgerLength, p.payload)
      ensemble.forEach((b, i) => {
        if (hasIndex(p.writeMask, i) && !hasIndex(p.ackedMask, i) && (to === null || to.has(b))) this.w.bookies.queueAdd(b, this.ledgerId, this.w.masterKey, this.md.digestType, false, data)
      })
    }
  }

  /**
   * PROTOCOL.md "Ensemble change (writer side)": replace the failed bookies with live, writable
   * ones not in the ensemble, and CAS a new segment at LAC + 1 (or rewrite the last segment when
   * it already starts there). IN_RECOVERY means this writer was fenced; CLOSED, that it is done.
   */
  private async changeEnsemble(ensemble: readonly string[], failed: readonly string[], lac: number): Promise<void> {
    try {
      for (let attempt = 0; attempt < 50; attempt++) {
        const cur = attempt === 0 ? { value: this.md, revision: this.revision } : await this.w.metadata.readLedger(this.ledgerId)
        const md = cur.value
        const refusal = ensembleChangeRefusal(md.state)
        if (refusal) throw new QuireError(refusal.code, `ledger ${this.ledgerId}: ${refusal.message}`)
        const records = await this.w.metadata.listBookies()
        const replacements = pickBookies(records, failed.length, this.w.clock.now(), this.w.random, [...ensemble, ...failed])
        const next = ensemble.map((b) => (failed.includes(b) ? replacements[failed.indexOf(b)]! : b))
        const segments = segmentsAfterChange(md.segments, lac, next)
        try {
          const written = await this.w.metadata.writeLedger({ ...md, segments }, cur.revision)
          this.md = written.value
          this.revision = written.revision
          this.bookiesMaxEntryBytes = ensembleMaxEntryBytes(records, next)
          this.writeSetSubjects = ensembleTakesWriteSetSubjects(records, next)
          this.lastProgressAt = this.w.clock.now()
          this.actor.send({ type: 'ensemble.changed', ensemble: next })
          return
        } catch (err) {
          if (!(err instanceof KvConflict)) throw err
        }
      }
      throw new QuireError('METADATA_CONFLICT', `could not change the ensemble of ledger ${this.ledgerId}: too many concurrent metadata updates`)
    } catch (err) {
      let q = asOperatingError(err, 'METADATA_ERROR', `changing the ensemble of ledger ${this.ledgerId}`)
      // No bookie left that this client may reach: say why, rather than only that none is left.
      const refused = failed.map((b) => this.refusedSubjects.get(b)).find((s) => s !== undefined)
      if (q.code === 'NOT_ENOUGH_BOOKIES' && refused !== undefined) {
        q = new QuireError('NATS_AUTH', `NATS refused this client's publish to ${refused} (its user's permissions), and no other bookie could replace it: ${q.message}`)
      }
      this.actor.send({ type: 'ensemble.failed', code: q.code, message: q.message })
    }
  }

  /** PROTOCOL.md "Close (writer side)": CAS to CLOSED; conflicts resolved by re-reading. */
  private async closeMetadata(lastEntryId: number, length: number): Promise<void> {
    try {
      for (let attempt = 0; attempt < 50; attempt++) {
        const cur = attempt === 0 ? { value: this.md, revision: this.revision } : await this.w.metadata.readLedger(this.ledgerId)
        const md = cur.value
        const decision = writerCloseDecision(md, lastEntryId)
        if (decision.kind === 'done') return this.closedWith(md, cur.revision)
        if (decision.kind === 'error') throw new QuireError(decision.code, `ledger ${this.ledgerId}: ${decision.message}`)
        const next: LedgerMetadata = { ...md, state: 'CLOSED', lastEntryId, length }
        try {
          const written = await this.w.metadata.writeLedger(next, cur.revision)
          return this.closedWith(written.value, written.revision)
        } catch (err) {
          if (!(err instanceof KvConflict)) throw err
        }
      }
      throw new QuireError('METADATA_CONFLICT', `could not close ledger ${this.ledgerId}: too many concurrent metadata updates`)
    } catch (err) {
      const q = asOperatingError(err, 'METADATA_ERROR', `closing ledger ${this.ledgerId}`)
      this.actor.send({ type: 'metadata.closeFailed', code: q.code, message: q.message })
    }
  }

  private closedWith(md: LedgerMetadata, revision: number): void {
    this.md = md
    this.revision = revision
    this.actor.send({ type: 'metadata.closed' })
  }
}

/** How often a client's add tick polls its writers with adds pending. */
export function addWatchInterval(addTimeoutMs: number): number {
  return Math.max(20, Math.min(250, addTimeoutMs / 4))
}
