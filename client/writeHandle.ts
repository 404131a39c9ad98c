// WriteHandleImpl (public as the WriteHandle interface of client/api.ts; the class and its deps
// constructor are internal): the single writer of a ledger. Binds machines/writer.ts to the bookie
// transport and the metadata store, and keeps the append promises; the machine decides everything
// else: when to re-send, when a bookie has failed, when an idle writer sends its LAC (delays on
// the client's TickClock, client/tickClock.ts), and the compare-and-swap loops of ensemble change
// and close (each effect here answers with one event). Appends made in the same tick go to the
// machine as one event, so they travel as one message per bookie; acks come back one message per
// bookie journal group commit.
//
// Explicit LACs (an idle writer's, the eager hint, the final one at close) go through the
// client's LacBatcher (client/lacBatcher.ts), with every other writer's: one frame per bookie.
//
// Invariants: append promises resolve in entryId order (the machine only emits `resolve` for the
// contiguous prefix); nothing is resolved once the writer is fenced, closed or failed; an effect
// that fails with a bug (an assertion, a TypeError) throws, and is never answered as an operating
// error.

import { createActor, type ActorRefFrom } from 'xstate'
import { QuireError, asOperatingError, type ErrorCode } from '../machines/errors.ts'
import { writerMachine, writerTiming, type PickBookiesParams, type ResendParams, type WriteMetadataParams } from '../machines/writer.ts'
import { ensembleMaxEntryBytes, ensembleTakesWriteSetSubjects, pickBookies, type BookieRecord, type LedgerMetadata, type MetadataStore } from '../storage/metadataStore.ts'
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
import { TickClock } from './tickClock.ts'

interface Waiting {
  resolve: (entryId: number) => void
  reject: (err: unknown) => void
  /** performance.now() at append(), for quire_client_add_duration_seconds. */
  calledAt: number
}

export interface WriteDeps extends HandleDeps {
  bookies: BookieTransport & Partial<TailTransport>
  /** About this long after its last entry completed, an idle writer sends the LAC on its own (0: never); machines/writer.ts. */
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
   * The clock of the client's writer machines, on its add tick (addWatchInterval(addTimeoutMs));
   * absent: this writer ticks on its own. Either way a tick runs only while a delay is set.
   */
  timers?: TickClock
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
  /** Bookies whose adds NATS refused to carry, with the refused subject. */
  private readonly refusedSubjects = new Map<string, string>()
  private closeWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []
  private revision: number
  /** The metadata the change or close under way last read, with its revision (what a write goes over). */
  private lastRead: { value: LedgerMetadata; revision: number } | null = null
  /** The bookie records the change under way picked from (for the new ensemble's limits). */
  private pickedFrom: BookieRecord[] = []
  /** Highest LAC the bookies were told, inside an entry or on its own (eager hint included). */
  private lacCarried = -1
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
    const seg = this.lastSegment()
    const machine = writerMachine.provide({
      actions: {
        send: (_, p) => {
          this.takeHanding()
          this.lacCarried = Math.max(this.lacCarried, p.lac)
          // Each entry encoded once, into the add group its write set shares (transport/addFrame.ts).
          if (w.bookies.queueEntries) w.bookies.queueEntries(this.ledgerId, w.masterKey, this.md.digestType, p.lac, p.entries, this.writeSetSubjects)
          else {
            for (const { entryId, payload, ledgerLength, bookies } of p.entries) {
              const data = encodeEntry(this.md.digestType, w.masterKey, this.ledgerId, entryId, p.lac, ledgerLength, payload)
              for (const b of bookies) w.bookies.queueAdd(b, this.ledgerId, w.masterKey, this.md.digestType, false, data)
            }
          }
        },
        resend: (_, p) => this.resend(p),
        resolve: (_, p) => {
          this.lac = p.lac
          const now = performance.now()
          for (let id = p.firstEntryId; id <= p.lastEntryId; id++) {
            const w = this.inflight.shift()
            if (!w) continue
            this.w.metrics.addResolved(w.calledAt, now)
            w.resolve(id)
          }
          if (this.w.eagerLac) this.w.lacs?.runAfterTurn(this.sendEagerLac)
        },
        reject: (_, p) => {
          const err = new QuireError(p.code, p.message, { ledgerId: this.ledgerId })
          const victims = p.scope === 'all' ? [...this.inflight.splice(0), ...this.handing] : this.handing
          this.handing = []
          for (const v of victims) v.reject(err)
          if (p.scope === 'all') this.settleClose(err)
        },
        explicitLac: (_, p) => {
          this.lacCarried = Math.max(this.lacCarried, p.lac)
          const item = { ledgerId: this.ledgerId, masterKey: this.w.masterKey, lac: p.lac, persist: true }
          if (p.idle) this.w.lacs?.queueIdle(this.actor.getSnapshot().context.ensemble, item)
          else this.w.lacs?.queue(this.actor.getSnapshot().context.ensemble, item)
        },
        readMetadata: (_, p) => { void this.readMetadata(p.fresh) },
        pickBookies: (_, p) => { void this.pickReplacements(p) },
        writeMetadata: (_, p) => { void this.writeMetadata(p) },
        adoptRead: () => {
          this.md = this.lastRead!.value
          this.revision = this.lastRead!.revision
        },
      },
    })
    const timers = w.timers ?? new TickClock(w.clock, new Ticker(w.clock, addWatchInterval(w.addTimeoutMs)))
    this.actor = createActor(w.writerLogic ? w.writerLogic(machine) : machine, {
      input: {
        ledgerId: metadata.ledgerId,
        quorum: metadata,
        ensemble: seg.ensemble,
        lastEntryId: metadata.lastEntryId,
        length: metadata.length,
        timing: writerTiming(w.addTimeoutMs, w.lacs?.enabled === true ? w.explicitLacIntervalMs : 0),
      },
      clock: timers,
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
    const unwatchReconnect = w.bookies.onReconnect?.(() => this.actor.send({ type: 'reconnected' })) ?? (() => {})
    // Adds NATS refused to carry (this client's user may not publish there) get no answer: fail the bookie now.
    const unwatchRefusals = w.bookies.onRefused?.((bookieId, subject) => this.onRefused(bookieId, subject)) ?? (() => {})
    this.unregister = () => { unregisterAcks(); unwatchReconnect(); unwatchRefusals(); unwatch() }
  }

  /** State of the writer machine (open, changingEnsemble, closing, closingMetadata, closed, fenced, failed). */
  get state(): string {
    const v = this.actor.getSnapshot().value
    return typeof v === 'string' ? v : Object.keys(v)[0]!
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
    const v = this.state
    if (v === 'closed') this.settleClose(null)
    // During an ensemble change the machine keeps the request and closes once the change is done.
    else if (v === 'open' || v === 'changingEnsemble') this.actor.send({ type: 'close' })
    else if (v === 'fenced' || v === 'failed') {
      const e = this.actor.getSnapshot().context.error
      this.settleClose(new QuireError(e?.code ?? 'LEDGER_CLOSED', e?.message ?? 'the writer has stopped', { ledgerId: this.ledgerId }))
    }
    return done
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

  private settleClose(err: QuireError | null): void {
    const waiters = this.closeWaiters
    this.closeWaiters = []
    this.w.lacs?.forget(this.sendEagerLac)
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

  /**
   * Re-send each entry to the bookies given. A timed re-send (`stalled`) skips a bookie that is
   * `behind` for the entry (answering older adds: client/bookieClient.ts addState), as an
   * overloaded bookie is: it takes the entry in its turn, and sending it again is more load on
   * what is already behind. A bookie that is merely slow takes the same entry again idempotently.
   */
  private resend(p: ResendParams): void {
    const state = p.stalled ? this.w.bookies.addState : undefined
    let sent = 0
    for (const e of p.entries) {
      const to = state ? e.bookies.filter((b) => state.call(this.w.bookies, b, this.ledgerId, e.entryId) !== 'behind') : e.bookies
      if (to.length === 0) continue
      const data = encodeEntry(this.md.digestType, this.w.masterKey, this.ledgerId, e.entryId, p.lac, e.ledgerLength, e.payload)
      for (const b of to) this.w.bookies.queueAdd(b, this.ledgerId, this.w.masterKey, this.md.digestType, false, data)
      sent += to.length
    }
    if (p.stalled && sent === 0 && p.entries.length > 0) this.actor.send({ type: 'resend.skipped' })
  }

  /** Answer `readMetadata`: the store's copy, or (a first attempt) the one this handle holds; always in a later turn. */
  private async readMetadata(fresh: boolean): Promise<void> {
    try {
      const cur = fresh ? await this.w.metadata.readLedger(this.ledgerId) : await Promise.resolve({ value: this.md, revision: this.revision })
      this.lastRead = cur
      this.actor.send({ type: 'metadata.read', ledger: cur.value })
    } catch (err) {
      this.metadataFailed(err, `reading the metadata of ledger ${this.ledgerId}`)
    }
  }

  /** Answer `pickBookies`: live, writable bookies not in the ensemble, one for each failed one. */
  private async pickReplacements(p: PickBookiesParams): Promise<void> {
    try {
      const records = await this.w.metadata.listBookies()
      const picked = pickBookies(records, p.failed.length, this.w.clock.now(), this.w.random, p.exclude)
      this.pickedFrom = records
      this.actor.send({ type: 'bookies.picked', replacements: p.failed.map((b, i) => [b, picked[i]!] as const) })
    } catch (err) {
      let q = asOperatingError(err, 'METADATA_ERROR', `changing the ensemble of ledger ${this.ledgerId}`)
      // No bookie left that this client may reach: say why, rather than only that none is left.
      const refused = p.failed.map((b) => this.refusedSubjects.get(b)).find((s) => s !== undefined)
      if (q.code === 'NOT_ENOUGH_BOOKIES' && refused !== undefined) {
        q = new QuireError('NATS_AUTH', `NATS refused this client's publish to ${refused} (its user's permissions), and no other bookie could replace it: ${q.message}`)
      }
      this.actor.send({ type: 'metadata.failed', code: q.code, message: q.message })
    }
  }

  /** Answer `writeMetadata`: a compare-and-swap over the metadata last read. */
  private async writeMetadata(p: WriteMetadataParams): Promise<void> {
    const cur = this.lastRead!
    const next: LedgerMetadata = p.kind === 'ensemble'
      ? { ...cur.value, segments: p.segments }
      : { ...cur.value, state: 'CLOSED', lastEntryId: p.lastEntryId, length: p.length }
    try {
      const written = await this.w.metadata.writeLedger(next, cur.revision)
      this.md = written.value
      this.revision = written.revision
      if (p.kind === 'ensemble') {
        this.bookiesMaxEntryBytes = ensembleMaxEntryBytes(this.pickedFrom, p.ensemble)
        this.writeSetSubjects = ensembleTakesWriteSetSubjects(this.pickedFrom, p.ensemble)
      }
      this.actor.send({ type: 'metadata.written' })
    } catch (err) {
      if (err instanceof KvConflict) this.actor.send({ type: 'metadata.conflict' })
      else this.metadataFailed(err, p.kind === 'ensemble' ? `changing the ensemble of ledger ${this.ledgerId}` : `closing ledger ${this.ledgerId}`)
    }
  }

  private metadataFailed(err: unknown, what: string): void {
    const q = asOperatingError(err, 'METADATA_ERROR', what)
    this.actor.send({ type: 'metadata.failed', code: q.code, message: q.message })
  }
}

/** How often a client's add tick polls its writers with adds pending. */
export function addWatchInterval(addTimeoutMs: number): number {
  return Math.max(20, Math.min(250, addTimeoutMs / 4))
}
