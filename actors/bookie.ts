// A bookie process: binds the lifecycle machine and one bookieLedger machine per ledger to its
// parts (BookieParts): a disk (journal and entry store), a network, the metadata store and a clock.
// The node command builds it over the real ones (a data folder's journal files and RocksDB, NATS,
// JetStream KV, the system clock); the simulator builds the same bookie over its memory disk,
// network and virtual clock. Nothing here reads the time or sets a timer except through the clock.
//
// Request handling (subject quire.bookie.<id>): every frame is first checked against its type's
// schema (transport/validate.ts); one that fails is answered BAD_REQUEST (actors/badFrames.ts)
// and nothing of it is acted on, so nothing unchecked reaches the journal.
// - add (actors/bookieAdds.ts): each ledger group joins that ledger's open batch of adds, and the
//   batch goes to the ledger's actor as one event, in arrival order with the ledger's fences and
//   LAC reads; its rules decide the whole batch at once, the accepted adds are journaled as one
//   record, and only after the journal's sync are they acknowledged, one addAck message per client
//   per event-loop turn (actors/addAcks.ts);
// - read (actors/bookieReads.ts): write cache, then the entry store; an entry it does not have is NO_SUCH_ENTRY
//   (or NO_SUCH_LEDGER when it knows nothing of the ledger): explicit negatives only, and only
//   for what it can vouch for: a ledger in limbo (after an unclean stop or on a wiped disk; see
//   actors/integrityCheck.ts) gets IN_LIMBO instead, and so does an unknown ledger while the
//   bookie is unchecked. Fences on a limbo ledger are journaled and answered as usual;
// - readLac (optionally fencing; actors/bookieReads.ts, with long polls): through the ledger
//   actor, so that it is ordered with adds;
// - writeLac, and writeLacs (many ledgers' explicit LACs, per-item answer): through the actor too;
//   the LACs persisted in one turn are journaled as one record (actors/lacRecords.ts).
// A full disk (actors/diskMonitor.ts) makes it read-only: normal adds are answered READ_ONLY,
// while recovery adds, fences and reads are still served. Garbage collection (actors/gc.ts)
// deletes the ledgers the metadata no longer names.
// Metrics (actors/metrics.ts): every add answer is counted by result, an OK add's latency runs
// from its message's arrival to its ack, a read's from arrival to answer.

import os from 'node:os'
import { createActor, type ActorRefFrom } from 'xstate'
import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { bookieLedgerMachine } from '../machines/bookieLedger.ts'
import { bookieLifecycleMachine } from '../machines/bookieLifecycle.ts'
import { placedOn } from '../machines/damage.ts'
import { explicitLacRefusal } from '../machines/explicitLac.ts'
import { AutorecoveryStore } from '../storage/autorecoveryStore.ts'
import type { DamageEvent } from '../storage/entryStore.ts'
import type { ReplayEnding } from '../storage/journal.ts'
import { DAMAGED_LEDGERS_LISTED_MAX, type MetadataStore } from '../storage/metadataStore.ts'
import { every, type Clock, type TimerHandle } from '../transport/clock.ts'
import type { Network, NetworkSubscription } from '../transport/network.ts'
import { storedCopyIntact } from '../transport/entry.ts'
import { requestProblem } from '../transport/validate.ts'
import { decodeAddFrame, isBinaryFrame } from '../transport/addFrame.ts'
import {
  RC, bookieSubject, decode, encode, writeSetSubscriptions,
  type BookieRequest, type WireMessage,
} from '../transport/wire.ts'
import { AddAcks } from './addAcks.ts'
import { BookieAdds, type LedgerActor } from './bookieAdds.ts'
import { BadFrames } from './badFrames.ts'
import { BookieStorage } from './bookieStorage.ts'
import { DiskMonitor, isDiskFullError } from './diskMonitor.ts'
import { GarbageCollector } from './gc.ts'
import { IntegrityCheck } from './integrityCheck.ts'
import { serveMasterKeys } from './masterKeys.ts'
import { watchActor } from '../transport/inspect.ts'
import { LacRecords } from './lacRecords.ts'
import { BookieReads } from './bookieReads.ts'
import { bookieMetrics } from './metrics.ts'
import { realBookieParts, type BookieOptions, type BookieParts } from './bookieOptions.ts'

export { realBookieParts, type BookieOptions, type BookieParts } from './bookieOptions.ts'

type Lifecycle = ActorRefFrom<typeof bookieLifecycleMachine>

/** Frames held while the bookie is subscribed but not yet serving (start-up). */
const HELD_FRAMES_MAX = 10_000

const DEFAULT_MAX_ENTRY_BYTES = ROLE_DEFAULTS.maxEntryBytes
/** Between two looks at the metadata of the ledgers with damaged entries (see pruneDamage). */
const DAMAGE_PRUNE_MS = 5000

export class Bookie {
  private storage: BookieStorage | null = null
  private network: Network | null = null
  private metadata: MetadataStore | null = null
  private readonly parts: BookieParts
  private readonly clock: Clock
  /** The bookie's own subject, then its write sets' (transport/wire.ts writeSetSubscriptions). */
  private subs: NetworkSubscription[] = []
  /** Frames that arrived before the lifecycle served (see subscribe); null once serving. */
  private held: Array<[Uint8Array, string | null]> | null = []
  /** Stop the heartbeat and checkpoint timers. */
  private stopTimers: Array<() => void> = []
  private readonly ledgers = new Map<number, Promise<LedgerActor | null>>()
  private readonly acks: AddAcks
  /** Frames that fail their schema: answered BAD_REQUEST, counted, logged once per interval. */
  readonly badFrames: BadFrames
  private readonly lifecycle: Lifecycle
  private readonly startedAt: number
  private started: { resolve: () => void; reject: (e: unknown) => void } | null = null
  private stopped: (() => void) | null = null
  private pruning = false
  private prunedAt = 0
  readonly stats = { adds: 0, reads: 0, lacReads: 0, corruptReads: 0 }
  /** Entry reads, LAC reads and long polls (actors/bookieReads.ts). */
  private readonly reads: BookieReads
  /** The add path: batches per ledger, their journal records, the entry store (actors/bookieAdds.ts). */
  private readonly adds: BookieAdds
  /** Explicit LACs to persist, one journal record per turn (actors/lacRecords.ts). */
  readonly lacRecords = new LacRecords((r) => this.storage!.append(r), (err) => { this.disk.writeFailed(err) })
  /** Turns the bookie read-only when its disk fills, writable when space returns. */
  readonly disk: DiskMonitor
  /** Deletes the entries of ledgers deleted from the metadata. */
  readonly gc: GarbageCollector
  /** Takes ledgers out of limbo once the metadata says it is safe. */
  readonly integrity: IntegrityCheck
  private readonly log: NonNullable<BookieOptions['log']>

  constructor(readonly opts: BookieOptions) {
    this.log = opts.log ?? (() => {})
    this.parts = opts.parts ?? realBookieParts(opts, this.log)
    this.clock = this.parts.clock
    this.startedAt = this.clock.now()
    this.lastMajorCompaction = this.clock.now()
    const clock = this.clock
    this.acks = new AddAcks(opts.bookieId, (subject, msg) => this.publish(subject, msg), (subject, frame) => this.publishBytes(subject, frame), clock)
    this.adds = new BookieAdds({
      maxEntryBytes: opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES,
      acks: this.acks,
      stats: this.stats,
      writable: () => this.lifecycle.getSnapshot().value === 'writable',
      ledger: (ledgerId) => this.ledger(ledgerId, true),
      storage: () => this.storage!,
      writeFailed: (err) => this.disk.writeFailed(err),
    })
    this.reads = new BookieReads({
      bookieId: opts.bookieId,
      stats: this.stats,
      storage: () => this.storage!,
      ledger: (ledgerId, create) => this.ledger(ledgerId, create),
      closeBatch: (ledgerId) => this.adds.closeBatch(ledgerId),
      publish: (subject, msg) => this.publish(subject, msg),
      clock,
    })
    this.badFrames = new BadFrames(opts.bookieId, (subject, msg) => this.publish(subject, msg), this.log, undefined, () => clock.now())
    this.disk = new DiskMonitor((quotaBytes) => this.parts.disk.usage(quotaBytes), opts, {
      onFull: () => {
        this.lifecycle.send({ type: 'disk.full' })
        if (this.metadata) this.gc.trigger().catch(() => {})
      },
      // A journal that failed (ENOSPC) takes records again only in a fresh segment.
      prepareOk: async () => {
        if (this.storage?.journalFailure) await this.storage.rotateJournal()
        await this.storage?.reopenWritable()
        return true
      },
      onOk: () => this.lifecycle.send({ type: 'disk.ok' }),
      log: this.log,
      clock,
    })
    this.gc = new GarbageCollector({
      localLedgers: () => this.storage!.listLedgers(),
      metadataLedgers: () => this.metadata!.listLedgers(),
      deleteLocal: (ids, ranges) => this.deleteLocalLedgers(ids, ranges),
    }, { gcIntervalMs: opts.gcIntervalMs ?? ROLE_DEFAULTS.gcIntervalMs, log: this.log, clock })
    this.integrity = new IntegrityCheck({
      bookieId: opts.bookieId,
      limbo: () => this.storage?.limbo ?? { unchecked: false, ledgers: [] },
      setLimbo: (state) => this.storage!.setLimbo(state),
      holdsIntact: (ledgerId, ids) => this.holdsIntact(ledgerId, ids),
      listLedgers: () => this.metadata!.listLedgers(),
      readLedger: (id) => this.metadata!.readLedger(id).then((r) => r.value),
      markLacking: async (id) => { await new AutorecoveryStore(this.metadata!.clusterKv).mark(id, { damaged: [opts.bookieId] }, opts.bookieId) },
      log: this.log,
    }, opts.integrityRecheckMs ?? 30_000, clock)
    const fail = (err: unknown): void => {
      this.lifecycle.send({ type: 'failed', error: err instanceof Error ? err.message : String(err) })
      this.started?.reject(err)
      this.started = null
    }
    const step = (fn: () => Promise<void>): void => { fn().catch(fail) }
    const machine = bookieLifecycleMachine.provide({
      actions: {
        'storage.open': () => step(() => this.openStorage()),
        'journal.replay': () => step(() => this.replayJournal()),
        'metadata.register': () => step(() => this.connectAndRegister()),
        'serve.start': () => {
          const held = this.held
          this.held = null
          for (const [data, replyTo] of held ?? []) this.onFrame(data, replyTo)
          this.network!.flush().then(() => { this.started?.resolve(); this.started = null }, fail)
        },
        'registration.update': (_, p) => { void this.register(p.state).catch(() => {}) },
        'drain.start': () => step(() => this.drain()),
        shutdown: () => step(() => this.shutdown()),
      },
    })
    this.lifecycle = createActor(machine, { input: { bookieId: opts.bookieId } })
    // The NATS connection comes up during start-up; publish lifecycle changes once it exists.
    watchActor(this.lifecycle, opts.inspect ? { publish: (s, d) => this.network?.publish(s, d) } : null, 'bookie', opts.bookieId, {
      // Mostly state outside the lifecycle's context; the inspection beacon refreshes it.
      summarise: (ctx) => ({
        mode: this.disk.full ? 'readonly' : 'writable',
        diskUsage: this.disk.last ? Math.round(this.disk.last.usage * 1000) / 1000 : null,
        diskUsedBytes: this.disk.last?.usedBytes ?? null,
        journal: this.storage ? (() => { try { return this.storage.journalStats } catch { return null } })() : null,
        addsInJournal: this.adds.inflight, ledgers: this.ledgers.size, parkedPolls: this.reads.polls.size, ...this.stats, error: ctx.error,
        damage: this.storage ? this.storage.store.damage : null,
        integrity: this.integrityState(),
      }),
    })
  }

  /** Lifecycle `storage.open`: RocksDB and the entry logs (migrating an older data folder). */
  private async openStorage(): Promise<void> {
    this.storage = await BookieStorage.open(this.parts.disk, this.clock)
    this.storage.store.onDamage = (e) => this.onStoreDamage(e)
    const migrated = this.storage.store.migrated
    if (migrated) this.log('entry store migrated: payloads moved from RocksDB to entry logs', { ...migrated })
    this.lifecycle.send({ type: 'storage.opened' })
  }

  /** Lifecycle `journal.replay`: replay since the checkpoint, then limbo as the stop left it. */
  private async replayJournal(): Promise<void> {
    // The first few skipped records one by one; the count of all of them after the replay.
    const cleanStop = await this.parts.disk.hasCleanStopMarker()
    const ending: ReplayEnding = { damaged: null }
    const replay = (): Promise<number> => this.storage!.replayAndOpen(this.opts.journal, (reason, position) => {
      if (this.storage!.skippedRecords <= 20) this.log('journal record skipped: fails validation (written unchecked by an older version)', { reason, position })
    }, ending)
    // A full disk (RocksDB, a new journal segment, the checkpoint): start read-only, with the
    // journal's records since the checkpoint held in memory; writable once space returns.
    const records = await replay().catch(async (err: unknown) => {
      if (!isDiskFullError(err) || this.storage!.readOnly) throw err
      await this.storage!.startReadOnly(err as Error)
      return replay()
    })
    const readOnly = this.storage!.readOnly
    if (readOnly) {
      this.log('disk full at start-up: storage opened read-only', { error: readOnly.message })
      this.disk.writeFailed(readOnly)
    }
    this.log('journal replayed', { records, skipped: this.storage!.skippedRecords, cleanStop, damagedTail: ending.damaged })
    // Limbo is persisted before the marker goes: a crash in between is unclean either way.
    await this.storage!.startLimbo(cleanStop && ending.damaged === null)
    await this.parts.disk.removeCleanStopMarker()
    const limbo = this.storage!.limbo
    if (limbo.unchecked || limbo.ledgers.length > 0) {
      this.log('bookie cannot vouch for its ledgers (unclean stop, damaged journal tail or new disk): in limbo until the integrity check', { cleanStop, ledgers: limbo.ledgers.length, unchecked: limbo.unchecked })
    }
    this.lifecycle.send({ type: 'journal.replayed', records })
  }

  /** Lifecycle `metadata.register`: NATS, metadata, the first integrity check, subscribe, register. */
  private async connectAndRegister(): Promise<void> {
    const { network, metadata } = await this.parts.connect()
    this.network = network
    this.metadata = metadata
    await this.disk.check()
    // Before the registration: no new ledger can be placed here yet and be taken for an old one.
    await this.firstIntegrityCheck()
    // Subscribed (and the SUB at the server) before the registration makes this bookie
    // visible: a request sent as soon as a client sees it is held, never dropped.
    this.subscribe()
    await network.flush()
    await this.register(this.disk.full ? 'readonly' : 'writable')
    this.integrity.start(network)
    this.disk.start()
    this.gc.start()
    const beat = this.opts.heartbeatMs ?? ROLE_DEFAULTS.heartbeatMs
    this.stopTimers.push(
      every(this.clock, beat, () => { this.register(this.currentState()).catch((e) => this.log('heartbeat failed', { error: String(e) })) }),
      every(this.clock, this.opts.checkpointIntervalMs ?? ROLE_DEFAULTS.checkpointMs, () => {
        this.storage?.checkpoint().catch((e) => this.log('checkpoint failed', { error: String(e) }))
      }),
    )
    this.lifecycle.send({ type: 'registered', readOnly: this.disk.full })
  }

  /** Lifecycle `drain.start`: stop taking requests, finish and acknowledge the adds taken, deregister. */
  private async drain(): Promise<void> {
    await this.integrity.stop()
    this.disk.stop()
    await this.gc.stop()
    this.clearTimers()
    await Promise.all(this.subs.map((sub) => sub.drain()))
    await this.quiesce()
    this.acks.flush()
    await this.metadata?.removeBookie(this.opts.bookieId).catch(() => {})
    this.lifecycle.send({ type: 'drained' })
  }

  /** Lifecycle `shutdown`: stop the timers and the ledgers' actors, close storage and NATS. */
  private async shutdown(): Promise<void> {
    await this.integrity.stop()
    this.disk.stop()
    await this.gc.stop()
    this.reads.polls.answerAll()
    this.clearTimers()
    for (const p of this.ledgers.values()) (await p.catch(() => null))?.stop()
    await this.storage?.close().catch((e) => this.log('storage close failed', { error: String(e) }))
    if (this.network) {
      await this.network.flush().catch(() => {})
      await this.network.close().catch(() => {})
    }
    this.stopped?.()
  }

  private clearTimers(): void {
    for (const stop of this.stopTimers) stop()
    this.stopTimers = []
  }

  get state(): string {
    return String(this.lifecycle.getSnapshot().value)
  }

  /**
   * Subscribes to the bookie's subject. Until the lifecycle starts serving, frames are held in
   * arrival order (at most HELD_FRAMES_MAX; past that they are dropped, which the sender sees as
   * a timeout: unknown, never a negative).
   */
  private subscribe(): void {
    // One callback for every subject: the network calls it as messages arrive, so frames keep
    // the order a client sent them in, whichever subject each took.
    const onMessage = (data: Uint8Array, replyTo: string | null): void => {
      if (this.held === null) this.onFrame(data, replyTo)
      else if (this.held.length < HELD_FRAMES_MAX) this.held.push([data, replyTo])
    }
    const network = this.network!
    const subjects = [bookieSubject(this.opts.bookieId), ...writeSetSubscriptions(this.opts.bookieId)]
    this.subs = subjects.map((subject) => network.subscribe(subject, onMessage))
    // Replication workers' own subject (actors/masterKeys.ts), answered from the ledger's stored state.
    this.subs.push(serveMasterKeys(network, this.opts.bookieId, {
      ledgerKey: async (ledgerId) => {
        const c = (await this.ledger(ledgerId, false))?.getSnapshot().context
        return c?.masterKey && c.digestType ? { masterKey: c.masterKey, digestType: c.digestType } : null
      },
    }))
  }

  /** Resolves once the bookie serves requests; rejects with the start-up error. */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => { this.started = { resolve, reject } })
    this.lifecycle.start()
    return ready
  }

  /** Drain: stop taking requests, finish in-flight adds, deregister, close. */
  async stop(): Promise<void> {
    const snap = this.lifecycle.getSnapshot()
    const done = new Promise<void>((r) => { this.stopped = r })
    if (snap.status === 'done') return
    this.lifecycle.send({ type: 'drain' })
    await done
  }

  /** Ledgers in limbo now (the quire_bookie_limbo_ledgers gauge). */
  get limboLedgers(): number {
    return this.storage?.limbo.ledgers.length ?? 0
  }

  /** For the inspector: limbo and the last integrity check. */
  private integrityState(): { unchecked: boolean; limboLedgers: number; limbo: number[]; last: { result: string; at: number; marked: number } | null } | null {
    if (!this.storage) return null
    const l = this.storage.limbo
    const last = this.integrity.last
    return { unchecked: l.unchecked, limboLedgers: l.ledgers.length, limbo: l.ledgers.slice(0, 20), last: last && { result: last.result, at: last.at, marked: last.marked } }
  }

  /**
   * An unchecked bookie lists the metadata's ledgers before it serves (bounded by
   * integrityStartMs), so a ledger placed here that it lost whole is in limbo explicitly and a
   * new ledger is not; if the pass does not finish, it serves unchecked and re-checks later.
   */
  private async firstIntegrityCheck(): Promise<void> {
    if (!this.storage!.limbo.unchecked && this.storage!.limbo.ledgers.length === 0) return
    const bound = this.opts.integrityStartMs ?? 30_000
    let timer: TimerHandle | undefined
    await Promise.race([
      this.integrity.run('start-up'),
      new Promise((r) => { timer = this.clock.setTimeout(() => r(undefined), bound) }),
    ]).finally(() => { if (timer !== undefined) this.clock.clearTimeout(timer) })
  }

  /** Per id: whether an intact copy is held here (write cache or RocksDB, digest verified). */
  private async holdsIntact(ledgerId: number, ids: number[]): Promise<boolean[]> {
    const got = await this.storage!.getEntries(ledgerId, ids)
    const state = await this.storage!.store.getLedgerState(ledgerId)
    return got.map((d, i) => d !== null && d !== 'damaged' && storedCopyIntact(d, ledgerId, ids[i]!, state?.digestType ?? null, state?.masterKey ?? null))
  }

  /** Entries whose stored copy is damaged now (the quire_bookie_damaged_entries gauge). */
  get damagedEntries(): number {
    return this.storage?.store.damage.entries ?? 0
  }

  private currentState(): 'writable' | 'readonly' {
    return this.lifecycle.getSnapshot().value === 'readonly' ? 'readonly' : 'writable'
  }

  /** The registration's `damagedLedgers` (the auditor marks them), absent when nothing is damaged. */
  private damagedLedgers(): { damagedLedgers?: number[] } {
    const ledgers = this.storage?.store.damage.ledgers ?? []
    return ledgers.length > 0 ? { damagedLedgers: ledgers.slice(0, DAMAGED_LEDGERS_LISTED_MAX) } : {}
  }

  /**
   * Drop the damaged entries the ledgers' metadata does not place on this bookie (guesses of the
   * store's repair, machines/damage.ts): autorecovery rewrites only the others. At most once per
   * DAMAGE_PRUNE_MS; a ledger whose metadata cannot be read is looked at next time.
   */
  private async pruneDamage(): Promise<void> {
    const store = this.storage?.store
    if (!store || !this.metadata || this.pruning || this.clock.now() - this.prunedAt < DAMAGE_PRUNE_MS) return
    this.pruning = true
    this.prunedAt = this.clock.now()
    try {
      for (const ledgerId of store.damage.ledgers) {
        const md = await this.metadata.readLedger(ledgerId).then((r) => r.value, () => null)
        if (md === null) continue
        const stray = store.damagedOf(ledgerId).filter((id) => !placedOn(md, this.opts.bookieId, id))
        if (stray.length > 0) await store.forgetDamaged(ledgerId, stray)
      }
    } catch (err) {
      this.log('pruning the damaged entries failed', { error: String(err) })
    } finally {
      this.pruning = false
    }
  }

  /** Damage in the entry store (storage/entryStore.ts): logged, counted, and re-registered at once. */
  private onStoreDamage(e: DamageEvent): void {
    if (e.kind === 'found') this.log('entry store: stored copies damaged (answered CORRUPT; repairing the store)', { ledgerId: e.ledgerId, entryIds: e.entryIds.slice(0, 20), error: e.error })
    else if (e.kind === 'repaired') this.log('entry store repaired: readable data copied into a fresh store', { damagedEntries: e.damaged, keysCopied: e.copied, damagedRanges: e.ranges, ms: e.ms })
    else this.log('entry store repair failed', { error: e.error })
    if (e.kind !== 'found') bookieMetrics.storeRepaired(e.kind === 'repaired')
    if (this.metadata) void this.register(this.currentState()).catch(() => {})
  }

  private async register(state: 'writable' | 'readonly'): Promise<void> {
    // Not awaited: a heartbeat must not wait for metadata reads; the next one carries the result.
    if ((this.storage?.store.damage.entries ?? 0) > 0) void this.pruneDamage()
    await this.metadata!.putBookie({
      bookieId: this.opts.bookieId, state, heartbeatAt: this.clock.now(), heartbeatMs: this.opts.heartbeatMs ?? ROLE_DEFAULTS.heartbeatMs,
      startedAt: this.startedAt, host: os.hostname(), pid: process.pid,
      maxEntryBytes: this.opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES, writeSetSubjects: true,
      ...this.damagedLedgers(),
    })
  }

  private async quiesce(): Promise<void> {
    while (this.adds.inflight > 0) await new Promise((r) => { this.clock.setTimeout(() => r(undefined), 5) })
    await this.storage?.quiesce()
  }

  /**
   * Every frame on the bookie's subject: validated against its type's schema before anything acts
   * on it (transport/validate.ts); an invalid one is refused (BAD_REQUEST) and the bookie goes on.
   */
  private onFrame(data: Uint8Array, replyTo: string | null): void {
    let frame: unknown
    let problem: string | null
    if (isBinaryFrame(data)) {
      // A binary add frame (transport/addFrame.ts): checked as it is decoded, to the same AddRequest.
      const add = decodeAddFrame(data)
      frame = add.ok ? add.req : add.readable ?? undefined
      problem = add.ok ? null : add.reason
      if (add.ok && replyTo !== null) this.acks.speaksBinary(replyTo)
    } else {
      try {
        frame = decode(data)
      } catch {
        this.badFrames.refuse(undefined, replyTo, `not msgpack (${data.byteLength} bytes)`)
        return
      }
      try {
        problem = requestProblem(frame)
      } catch {
        // The checks do not throw on what msgpack decodes to; should a decoded value surprise them
        // (an extension type with odd getters), it is refused all the same.
        problem = 'frame could not be checked'
      }
    }
    if (problem !== null) {
      this.badFrames.refuse(frame, replyTo, problem)
      return
    }
    try {
      this.dispatch(frame as BookieRequest, replyTo)
    } catch (err) {
      // A valid frame the bookie failed to handle: a bug, but one frame must not stop the serving.
      this.badFrames.failed(frame, err)
    }
  }

  private dispatch(req: BookieRequest, replyTo: string | null): void {
    if (replyTo === null && req.op !== 'writeLac' && req.op !== 'writeLacs') return
    switch (req.op) {
      case 'writeLacs': this.onWriteLacs(req, replyTo); break
      case 'add': this.adds.onAdd(req, replyTo!); break
      case 'read': void this.reads.onRead(req, replyTo!); break
      case 'cancelPoll': this.reads.polls.cancel(replyTo!, req.reqId); break
      case 'readLac': void this.reads.onReadLac(req, replyTo!); break
      case 'writeLac': void this.ledger(req.ledgerId, false).then((a) => a?.send({ type: 'explicitLac', masterKey: req.masterKey, lac: req.lac, persist: req.persist !== false }), () => {}); break
    }
  }

  /**
   * writeLacs: each item as a writeLac (its ledger's machine journals a persisted LAC), except
   * that a fenced ledger's is refused (machines/explicitLac.ts). With a reply subject, one answer
   * once every item is decided: OK there means taken, the journal write following as for writeLac.
   */
  private onWriteLacs(req: Extract<BookieRequest, { op: 'writeLacs' }>, replyTo: string | null): void {
    const decided = req.items.map((it) => this.ledger(it.ledgerId, false).then((a): number => {
      if (a === null) return this.storage!.inLimbo(it.ledgerId) ? RC.IN_LIMBO : RC.NO_SUCH_LEDGER
      const refusal = explicitLacRefusal(a.getSnapshot().context, it.masterKey)
      if (refusal !== null) return refusal
      a.send({ type: 'explicitLac', masterKey: it.masterKey, lac: it.lac, persist: it.persist !== false })
      return RC.OK
    }, () => RC.ERROR))
    void Promise.all(decided).then((rcs) => {
      if (replyTo === null) return
      const results = req.items.map((it, i): [number, number] => [it.ledgerId, rcs[i]!])
      this.publish(replyTo, { op: 'writeLacsResp', reqId: req.reqId ?? -1, bookieId: this.opts.bookieId, rc: RC.OK, results })
    })
  }

  /** The ledger's actor, loading its state on first use; null if unknown and `create` is false. */
  private ledger(ledgerId: number, create: boolean): Promise<LedgerActor | null> {
    const have = this.ledgers.get(ledgerId)
    if (have) return have.then((a) => a ?? (create ? this.createLedger(ledgerId) : null))
    const p = this.loadLedger(ledgerId, create)
    this.ledgers.set(ledgerId, p)
    p.then((a) => { if (a === null) this.ledgers.delete(ledgerId) }, () => this.ledgers.delete(ledgerId))
    return p
  }

  private createLedger(ledgerId: number): Promise<LedgerActor> {
    const p = this.loadLedger(ledgerId, true) as Promise<LedgerActor>
    this.ledgers.set(ledgerId, p)
    return p
  }

  private async loadLedger(ledgerId: number, create: boolean): Promise<LedgerActor | null> {
    const s = await this.storage!.summary(ledgerId)
    if (!create && s.state === null && s.lastEntryId < 0) return null
    const storage = this.storage!
    // The ledger's state as RocksDB will hold it: read once here (summary), then kept by this
    // actor alone, so persisting a change never reads it back. Every change (master key, fence,
    // explicit LAC) is journaled and synced first, so it goes to RocksDB with the next checkpoint,
    // before the checkpoint's position is recorded (retried until it succeeds): a store write that
    // fails (a full disk) neither loses it nor holds up its answer.
    let explicitLac = s.state?.explicitLac ?? -1
    const persistState = (): void => {
      const c = actor.getSnapshot().context
      storage.putLedgerStateAtCheckpoint(ledgerId, { masterKey: c.masterKey, digestType: c.digestType, fenced: c.fenced, explicitLac })
    }
    const machine = bookieLedgerMachine.provide({
      actions: {
        'journal.add': (_, p) => this.adds.journal(ledgerId, p.adds, actor),
        'journal.masterKey': (_, p) => {
          // A failed write is no crash: a full disk turns the bookie read-only (see journal.add).
          void storage.append({ t: 'key', l: ledgerId, k: p.masterKey, d: p.digestType }).then(persistState)
            .catch((err: unknown) => { this.disk.writeFailed(err) })
        },
        'journal.fence': () => {
          storage.append({ t: 'fence', l: ledgerId }).then(
            () => {
              persistState()
              actor.send({ type: 'journal.fenceSynced' })
            },
            (err: unknown) => actor.send({ type: 'journal.fenceFailed', rc: this.disk.writeFailed(err) ? RC.READ_ONLY : RC.ERROR }),
          )
        },
        'store.put': (_, p) => this.adds.put(p.entries),
        'journal.lac': (_, p) => {
          // Journaled (with the other LACs of this turn: actors/lacRecords.ts) and synced: replay
          // restores it until the checkpoint writes it to RocksDB (a LAC per idle writer per
          // interval must not cost a RocksDB write each).
          this.lacRecords.queue(ledgerId, p.lac, () => {
            explicitLac = Math.max(explicitLac, p.lac)
            persistState()
          })
        },
        'reply.add': (_, p) => this.acks.queue(p.replyTo, ledgerId, p.rc, p.entryIds),
        'reply.lac': (_, p) => this.publish(p.replyTo, {
          op: 'lacResp', reqId: p.reqId, bookieId: this.opts.bookieId, rc: p.rc, lac: p.lac, lastEntryId: p.lastEntryId,
        }),
        'read.fenced': (_, p) => this.reads.fenced(p),
      },
    })
    const actor: LedgerActor = createActor(machine, {
      input: {
        ledgerId, masterKey: s.state?.masterKey ?? null, digestType: s.state?.digestType ?? null,
        fenced: s.state?.fenced ?? false, lac: s.lac, lastEntryId: s.lastEntryId,
      },
    })
    watchActor(actor, this.opts.inspect ? this.network : null, 'bookie-ledger', `${this.opts.bookieId}.${ledgerId}`)
    let lastLac = s.lac
    actor.subscribe((snap) => {
      if (snap.context.lac > lastLac) {
        lastLac = snap.context.lac
        this.reads.polls.wake(ledgerId, lastLac, snap.context.lastEntryId)
      }
    })
    actor.start()
    return actor
  }

  /**
   * GC: forget the ledgers' actors, checkpoint past every journal record of theirs (replay after
   * a restart starts there, so the journal cannot bring them back; the new segment lets the
   * checkpoint trim the old ones and free their space), delete them, checkpoint again (the
   * deletions reach the SST files), then compact their key ranges.
   */
  private async deleteLocalLedgers(ids: readonly number[], ranges: ReadonlyArray<readonly [number, number]>): Promise<void> {
    const s = this.storage!
    await this.dropLedgerActors(ids)
    await s.rotateJournal()
    await s.checkpoint()
    await s.deleteLedgers(ids)
    // Again: a request that came in meanwhile may have loaded one from the state not yet deleted.
    await this.dropLedgerActors(ids)
    await s.checkpoint()
    for (const [first, last] of ranges) await s.store.compactLedgers(first, last)
    await this.compactEntryLogs()
  }

  private lastMajorCompaction: number

  /** Minor compaction, or major once majorCompactionIntervalMs has passed (storage/entryLogCompaction.ts). */
  private async compactEntryLogs(): Promise<void> {
    const major = this.clock.now() - this.lastMajorCompaction >= (this.opts.majorCompactionIntervalMs ?? ROLE_DEFAULTS.majorCompactionIntervalMs)
    const threshold = major ? this.opts.majorCompactionThreshold ?? ROLE_DEFAULTS.majorCompactionThreshold : this.opts.minorCompactionThreshold ?? ROLE_DEFAULTS.minorCompactionThreshold
    const r = await this.storage!.store.compactEntryLogs(threshold)
    if (major) this.lastMajorCompaction = this.clock.now()
    if (r.compacted + r.emptied + r.skipped > 0) this.log('entry logs compacted', { major, threshold, ...r })
  }

  private async dropLedgerActors(ids: readonly number[]): Promise<void> {
    for (const id of ids) {
      const p = this.ledgers.get(id)
      this.ledgers.delete(id)
      ;(await p?.catch(() => null))?.stop()
    }
  }

  /** Reads; a recovery read (fence) first fences the ledger, through its actor, and waits for the fence to sync. */
  private publish(subject: string, msg: WireMessage): void {
    this.publishBytes(subject, encode(msg))
  }

  private publishBytes(subject: string, frame: Uint8Array): void {
    // Never throws: a closing connection loses the frame, which the client sees as a timeout (unknown).
    this.network?.publish(subject, frame)
  }
}
