// A bookie's storage: the journal (write-ahead log, fdatasync before ack) in front of the entry
// store (payloads in entry logs, an index in RocksDB: storage/entryStore.ts), with a write cache
// for entries that are synced but not yet in the entry store ("RocksDB" below: the entry store).
//
// Invariants:
// - an entry is readable (write cache or RocksDB) from the moment its journal record is synced;
// - a checkpoint records a journal position only after every record before it is in the entry
//   store and the store is flushed (entry logs synced, then the index flushed); journal files
//   wholly before the checkpoint may then be deleted;
// - replay applies every record after the checkpoint, in order; a torn tail ends the journal, a
//   corrupt record before the tail refuses start-up (CORRUPT_JOURNAL from storage/journal.ts);
//   a record intact on disk but failing validation (actors/journalRecords.ts recordProblem: only
//   an older version, which journaled frames unchecked, wrote such) is skipped with a warning and
//   a count, never applied and never a refusal to start;
// - a RocksDB write that failed (disk full) keeps its entries in the write cache and is retried
//   by the next checkpoint, which records no position until it succeeds;
// - rotateJournal swaps in a new segment only once the old journal is closed (or, failed, cut
//   back to its last synced record), so a torn tail can only ever be in the newest segment.
// Limbo (docs/protocol-notes.md): after an unclean stop (no clean-stop marker, or a replay that
// cut off a damaged tail) every ledger held here is in limbo and the bookie is unchecked (a ledger
// it knows nothing of may be one it lost whole). The limbo set is persisted (meta key `limbo`,
// flushed) before the bookie serves, and only the integrity check (actors/integrityCheck.ts)
// takes ledgers out of it, so a second crash before the check keeps it. The clean-stop marker is
// written only after a close that checkpointed everything, and removed (synced) on start.

import { fileDisk, type BookieDisk, type BookieEntryStore, type BookieJournal } from '../storage/bookieDisk.ts'
import type { JournalOptions, ReplayEnding } from '../storage/journal.ts'
import type { JournalPosition, StoredEntry, StoredLedgerState } from '../storage/types.ts'
import { readEntryHeader, trustedLac } from '../transport/entry.ts'
import { realClock, type Clock, type TimerHandle } from '../transport/clock.ts'
import { decodeRecord, encodeRecordParts, recordProblem, type JournalRecord } from './journalRecords.ts'
import { isDiskFullError } from './diskMonitor.ts'
import { bookieMetrics, journalMetrics } from './metrics.ts'

export { CLEAN_STOP_FILE, hasCleanStopMarker, removeCleanStopMarker } from '../storage/bookieDisk.ts'

const CHECKPOINT_KEY = 'checkpoint'
/**
 * Synced entries wait in the write cache (readable there) and go to the entry store together:
 * PUT_DELAY_MS after the first of them, or at the end of the turn once PUT_BATCH_BYTES wait
 * (BookKeeper's DbLedgerStorage flushes its write cache in the same spirit). Each batch is one
 * entry-log write and one RocksDB index write, two hand-offs to worker threads and two wake-ups
 * of the event loop: at one add in flight, putting each group commit on its own cost that much
 * for every add. A crash loses nothing: the journal holds every entry not yet checkpointed.
 */
export const PUT_DELAY_MS = 50
export const PUT_BATCH_BYTES = 1024 * 1024
const LIMBO_KEY = 'limbo'
/** The ledgers the bookie cannot vouch for; `unchecked`: also every ledger it does not know. */
export interface LimboState {
  unchecked: boolean
  ledgers: number[]
}

/** The journal's options (group commit, segment size, and the `beforeSync` test hook). */
export interface BookieStorageOptions extends JournalOptions {
  /**
   * Test hook, not a setting: how long synced entries wait in the write cache before they go to
   * the entry store (default PUT_DELAY_MS), so a test can count batches without timing.
   */
  putDelayMs?: number
}

export interface LedgerSummary {
  state: StoredLedgerState | null
  lastEntryId: number
  /** Highest LAC known: the last entry's piggybacked LAC or the explicit LAC. */
  lac: number
}

export class BookieStorage {
  /** Write cache: ledgerId → entryId → entry, for entries synced but not yet in RocksDB. */
  private readonly cache = new Map<number, Map<number, Uint8Array>>()
  private puts: StoredEntry[] = []
  private putBytes = 0
  /** The pending flush of `puts`: a timer (PUT_DELAY_MS) or, past PUT_BATCH_BYTES, an immediate. */
  private putTimer: { kind: 'timeout'; handle: TimerHandle } | { kind: 'immediate' } | null = null
  /** Batches sent to the entry store since open (tests count them). */
  readonly putStats = { batches: 0, entries: 0 }
  private writes: Promise<void> = Promise.resolve()
  private journalInFlight = 0
  private journalIdle: (() => void) | null = null
  /** Batches whose RocksDB write failed; still in the write cache, retried by checkpoint(). */
  private failedPuts: StoredEntry[] = []
  /** The first error of a journal append: the journal takes no more records until rotated. */
  private journalError: Error | null = null
  /** Appends wait for a journal rotation under way. */
  private rotating: Promise<void> | null = null
  private journalOptions: BookieStorageOptions = {}

  /**
   * Set while the disk was full at start-up (or when space last returned): the store is open
   * read-only, no journal is open, the journal's records since the checkpoint are held in memory
   * (write cache and `replayedStates`), and every write fails with this as its cause.
   */
  private readOnlyCause: Error | null = null
  private replayedStates = new Map<number, StoredLedgerState>()
  /**
   * States whose change is journaled and synced but need not reach RocksDB before the next
   * checkpoint (an explicit LAC: putLedgerStateAtCheckpoint); read back from here until then.
   */
  private checkpointStates = new Map<number, StoredLedgerState>()
  /** Entries a read-only replay put in the write cache; dropped from it once in RocksDB. */
  private replayedEntries: StoredEntry[] = []

  private constructor(
    readonly disk: BookieDisk,
    /** Replaced when a read-only start turns writable (reopenWritable). */
    public store: BookieEntryStore,
    private journal: BookieJournal | null,
    private readonly clock: Clock,
  ) {}

  /**
   * Over a data folder (the product's disk, storage/bookieDisk.ts fileDisk) or any BookieDisk. A
   * full disk (RocksDB's open writes: a flush of its WAL, a new MANIFEST) opens it read-only.
   */
  static async open(where: string | BookieDisk, clock: Clock = realClock): Promise<BookieStorage> {
    const disk = typeof where === 'string' ? fileDisk(where, journalMetrics) : where
    try {
      return new BookieStorage(disk, await disk.openStore({ readOnly: false }), null, clock)
    } catch (err) {
      if (!isDiskFullError(err)) throw err
      const storage = new BookieStorage(disk, await disk.openStore({ readOnly: true }), null, clock)
      storage.readOnlyCause = err as Error
      return storage
    }
  }

  /** The disk was full at start-up: reads only, until reopenWritable. */
  get readOnly(): Error | null {
    return this.readOnlyCause
  }

  /**
   * A replay that failed on a full disk: reopen the store read-only; replay again with
   * replayAndOpen, which then holds the journal's records in memory and opens no journal.
   */
  async startReadOnly(cause: Error): Promise<void> {
    if (this.journal) await this.journal.close().catch(() => {})
    this.journal = null
    const onDamage = this.store.onDamage
    await this.store.close().catch(() => {})
    this.store = await this.disk.openStore({ readOnly: true })
    this.store.onDamage = onDamage
    this.readOnlyCause = cause
    // Rebuilt from the journal by the replay that follows.
    this.cache.clear()
    this.cancelPutTimer()
    this.puts = []
    this.putBytes = 0
    this.failedPuts = []
  }

  /**
   * Space is back after a read-only start: open the store writable, replay the journal into it
   * and open a journal as a normal start does (reads go on from the read-only store meanwhile).
   * On a full disk again it goes back to read-only and throws.
   */
  async reopenWritable(): Promise<void> {
    if (this.readOnlyCause === null) return
    const readOnly = this.store
    const store = await this.disk.openStore({ readOnly: false })
    store.onDamage = readOnly.onDamage
    this.store = store
    this.readOnlyCause = null
    const replayed = this.replayedEntries
    try {
      await this.replayAndOpen(this.journalOptions)
      // What the integrity check decided meanwhile was kept in memory only.
      await this.saveLimbo()
    } catch (err) {
      if (isDiskFullError(err)) {
        await this.startReadOnly(err as Error)
        await this.replayAndOpen(this.journalOptions)
      }
      throw err
    } finally {
      await readOnly.close().catch(() => {})
    }
    this.replayedStates.clear()
    this.replayedEntries = []
    this.uncache(replayed)
  }

  /**
   * Replay the journal from the last checkpoint into RocksDB, then start a new journal segment.
   * Returns the records applied; records that fail validation are skipped (counted in
   * `skippedRecords` and the metric, each told to `onSkipped`).
   */
  async replayAndOpen(
    opts: BookieStorageOptions = {}, onSkipped?: (reason: string, position: JournalPosition) => void, ending?: ReplayEnding,
  ): Promise<number> {
    const cp = await this.store.getMeta(CHECKPOINT_KEY)
    const from = cp ? (JSON.parse(cp.toString('utf8')) as JournalPosition) : null
    const states = new Map<number, StoredLedgerState>()
    const stateOf = async (l: number): Promise<StoredLedgerState> => {
      let s = states.get(l)
      if (!s) {
        s = (await this.store.getLedgerState(l)) ?? { masterKey: null, digestType: null, fenced: false, explicitLac: -1 }
        states.set(l, s)
      }
      return s
    }
    let batch: StoredEntry[] = []
    let count = 0
    for await (const { record, position } of this.disk.replayJournal(from, ending)) {
      // A record that fails validation came from an older version that journaled frames unchecked
      // (an add with entry id 2^60, a LAC of 1e300, ...): applying it would fail RocksDB's
      // assertions on every start. It was never acknowledged as valid data: skip it, and say so.
      let r: JournalRecord
      try {
        r = decodeRecord(record)
      } catch {
        this.skipRecord(`undecodable record of ${record.byteLength} bytes`, position, onSkipped)
        continue
      }
      const problem = recordProblem(r)
      if (problem !== null) {
        this.skipRecord(problem, position, onSkipped)
        continue
      }
      count++
      if (r.t === 'add') {
        for (const data of r.e) {
          const h = readEntryHeader(data)
          batch.push({ ledgerId: r.l, entryId: h.entryId, data: Buffer.from(data) })
        }
        if (batch.length >= 2000) {
          await this.applyReplayed(batch)
          batch = []
        }
      } else if (r.t === 'key') {
        const s = await stateOf(r.l)
        s.masterKey = Buffer.from(r.k)
        s.digestType = r.d ?? s.digestType
      }
      else if (r.t === 'fence') (await stateOf(r.l)).fenced = true
      else if (r.t === 'lac') {
        const s = await stateOf(r.l)
        s.explicitLac = Math.max(s.explicitLac, r.lac)
      } else if (r.t === 'lacs') {
        for (let i = 0; i < r.x.length; i += 2) {
          const s = await stateOf(r.x[i]!)
          s.explicitLac = Math.max(s.explicitLac, r.x[i + 1]!)
        }
      }
    }
    if (batch.length > 0) await this.applyReplayed(batch)
    this.journalOptions = opts
    if (this.readOnlyCause !== null) {
      this.replayedStates = states
      return count
    }
    for (const [l, s] of states) await this.store.putLedgerState(l, s)
    this.journal = await this.disk.openJournal(opts)
    // Everything replayed is in RocksDB now: checkpoint so the old segments can go.
    await this.checkpoint()
    return count
  }

  /** Journal records replay skipped because they failed validation (see replayAndOpen). */
  skippedRecords = 0

  private limboLedgers = new Set<number>()
  private limboUnchecked = false

  /** A ledger the bookie cannot vouch for: it answers IN_LIMBO, not "no such entry", for what it lacks. */
  inLimbo(ledgerId: number): boolean {
    return this.limboUnchecked || this.limboLedgers.has(ledgerId)
  }

  get limbo(): LimboState {
    return { unchecked: this.limboUnchecked, ledgers: [...this.limboLedgers].sort((a, b) => a - b) }
  }

  /**
   * At start, after replay: load the persisted limbo set; after an unclean stop (`clean` false)
   * add every ledger held here and mark the bookie unchecked, persisted before it serves.
   */
  async startLimbo(clean: boolean): Promise<void> {
    const raw = await this.store.getMeta(LIMBO_KEY)
    if (raw) {
      const saved = JSON.parse(raw.toString('utf8')) as LimboState
      this.limboUnchecked = saved.unchecked === true
      for (const id of saved.ledgers) this.limboLedgers.add(id)
    }
    if (clean) return
    for (const id of await this.listLedgers()) this.limboLedgers.add(id)
    this.limboUnchecked = true
    await this.saveLimbo()
  }

  /** The integrity check's result: `ledgers` replaces the set (persisted, flushed). */
  async setLimbo(state: LimboState): Promise<void> {
    this.limboLedgers = new Set(state.ledgers)
    this.limboUnchecked = state.unchecked
    await this.saveLimbo()
  }

  private async saveLimbo(): Promise<void> {
    // A read-only start keeps it in memory; reopenWritable saves it.
    if (this.readOnlyCause !== null) return
    await this.store.putMeta(LIMBO_KEY, Buffer.from(JSON.stringify(this.limbo)))
    await this.store.flush()
  }

  private skipRecord(reason: string, position: JournalPosition, onSkipped?: (reason: string, position: JournalPosition) => void): void {
    this.skippedRecords++
    bookieMetrics.journalRecordSkipped()
    onSkipped?.(reason, position)
  }

  get journalStats(): { syncs: number; records: number; bytes: number; pendingBytes: number } {
    const j = this.requireJournal()
    return { ...j.stats, pendingBytes: j.pendingBytes }
  }

  private requireJournal(): BookieJournal {
    if (this.readOnlyCause !== null) {
      throw new Error(`storage is read-only: the disk was full at start-up (${this.readOnlyCause.message})`, { cause: this.readOnlyCause })
    }
    if (!this.journal) throw new Error('journal not open: replay first')
    return this.journal
  }

  /** The error that failed the journal (ENOSPC, EIO), or null while it takes appends. */
  get journalFailure(): Error | null {
    return this.journalError
  }

  /**
   * Append a record; resolves once it is on disk. An add's entries are written from the buffers
   * given (no copy): they must not change until then (the write cache keeps them as they are).
   */
  append(r: JournalRecord): Promise<void> {
    // One reaction per record on the add path (no async function's own promise and await).
    if (this.rotating) return this.rotating.then(() => this.append(r))
    let j: BookieJournal
    let parts: Uint8Array[]
    try {
      j = this.requireJournal()
      parts = encodeRecordParts(r)
    } catch (err) {
      return Promise.reject(err)
    }
    this.journalInFlight++
    return j.append(parts).then(
      () => { this.appendSettled() },
      (err: unknown) => {
        if (j === this.journal) this.journalError ??= err instanceof Error ? err : new Error(String(err))
        this.appendSettled()
        throw err
      },
    )
  }

  private appendSettled(): void {
    if (--this.journalInFlight === 0 && this.journalIdle) this.journalIdle()
  }

  /** After sync: make entries readable now, and queue them for the entry store (see PUT_DELAY_MS). */
  putEntries(entries: readonly StoredEntry[]): void {
    for (const e of entries) {
      let byEntry = this.cache.get(e.ledgerId)
      if (!byEntry) this.cache.set(e.ledgerId, (byEntry = new Map()))
      byEntry.set(e.entryId, e.data)
      this.puts.push(e)
      this.putBytes += e.data.byteLength
    }
    if (this.putBytes >= PUT_BATCH_BYTES) {
      if (this.putTimer?.kind === 'immediate') return
      this.cancelPutTimer()
      const immediate = { kind: 'immediate' } as const
      this.putTimer = immediate
      this.clock.defer(() => { if (this.putTimer === immediate) this.flushPuts() })
    } else if (this.putTimer === null && this.puts.length > 0) {
      // Pending puts never keep a process alive (the real clock's timers are unref'd): close() checkpoints them.
      const handle = this.clock.setTimeout(() => this.flushPuts(), this.journalOptions.putDelayMs ?? PUT_DELAY_MS)
      this.putTimer = { kind: 'timeout', handle }
    }
  }

  private cancelPutTimer(): void {
    const t = this.putTimer
    if (t === null) return
    if (t.kind === 'timeout') this.clock.clearTimeout(t.handle)
    this.putTimer = null
  }

  /**
   * A state change already journaled and synced (master key, fence, explicit LAC; `state` is the
   * whole state): replay restores it, so it goes to RocksDB with the next checkpoint, before the
   * checkpoint's position is recorded, in one batch with the others, retried by every checkpoint
   * until it is in. An idle writer's LAC costs no RocksDB write of its own, and a store write that
   * fails (a full disk) neither loses the change nor holds up its answer.
   */
  putLedgerStateAtCheckpoint(ledgerId: number, state: StoredLedgerState): void {
    this.checkpointStates.set(ledgerId, state)
  }

  private flushPuts(): void {
    this.cancelPutTimer()
    const batch = this.puts
    if (batch.length === 0) return
    this.puts = []
    this.putBytes = 0
    this.putStats.batches++
    this.putStats.entries += batch.length
    this.chain(() => this.putAndUncache(batch)).catch(() => {
      // Disk full or a RocksDB error: the entries stay readable from the write cache, and the
      // checkpoint retries them (and records nothing until they are in).
      this.failedPuts.push(...batch)
    })
  }

  /** Replayed entries go to RocksDB; on a read-only start, to the write cache (which serves reads). */
  private async applyReplayed(batch: StoredEntry[]): Promise<void> {
    if (this.readOnlyCause === null) return this.store.putEntries(batch)
    for (const e of batch) {
      let byEntry = this.cache.get(e.ledgerId)
      if (!byEntry) this.cache.set(e.ledgerId, (byEntry = new Map()))
      byEntry.set(e.entryId, e.data)
    }
    this.replayedEntries.push(...batch)
  }

  private async putAndUncache(batch: readonly StoredEntry[]): Promise<void> {
    await this.store.putEntries(batch)
    this.uncache(batch)
  }

  /** Drop entries now in RocksDB from the write cache (unless a newer copy replaced them there). */
  private uncache(batch: readonly StoredEntry[]): void {
    for (const e of batch) {
      const byEntry = this.cache.get(e.ledgerId)
      if (byEntry?.get(e.entryId) === e.data) {
        byEntry.delete(e.entryId)
        if (byEntry.size === 0) this.cache.delete(e.ledgerId)
      }
    }
  }

  /** Ledger ids with entries or state here (entry store and write cache), ascending. */
  async listLedgers(): Promise<number[]> {
    const ids = new Set<number>(this.cache.keys())
    for await (const id of this.store.listLedgers()) ids.add(id)
    return [...ids].sort((a, b) => a - b)
  }

  /**
   * Remove ledgers' entries (write cache, queued and failed puts, RocksDB) and state. Ordered
   * after every write queued before it, so no earlier put can bring an entry back.
   */
  deleteLedgers(ledgerIds: readonly number[]): Promise<void> {
    const doomed = new Set(ledgerIds)
    const keep = (e: StoredEntry): boolean => !doomed.has(e.ledgerId)
    this.puts = this.puts.filter(keep)
    this.putBytes = this.puts.reduce((n, e) => n + e.data.byteLength, 0)
    this.failedPuts = this.failedPuts.filter(keep)
    for (const l of doomed) {
      this.cache.delete(l)
      this.checkpointStates.delete(l)
    }
    return this.chain(async () => {
      for (const l of doomed) await this.store.deleteLedger(l)
      // Deleted from the metadata (GC): nothing can ask for them any more.
      if ([...doomed].some((l) => this.limboLedgers.delete(l))) await this.saveLimbo()
    })
  }

  /**
   * Close the journal and start a new segment, so a checkpoint can trim every older one (GC
   * frees the journal space of deleted ledgers this way), and so a journal that failed (ENOSPC)
   * takes appends again. Appends wait meanwhile. A failed journal's segments are cut back to its
   * last synced record first: a torn or zero-filled tail must never sit before a newer segment.
   */
  rotateJournal(): Promise<void> {
    this.rotating ??= this.rotate().finally(() => { this.rotating = null })
    return this.rotating
  }

  private async rotate(): Promise<void> {
    const old = this.requireJournal()
    await this.quiesce()
    await old.close().catch(() => {})
    // Looked at only now: an append in flight may have failed the journal meanwhile (its torn
    // write must be cut off too), and a failed journal's synced position no longer moves.
    const failed = this.journalError !== null
    const synced = old.syncedPosition
    if (failed) await this.disk.cutJournalBack(synced)
    this.journal = await this.disk.openJournal(this.journalOptions)
    this.journalError = null
  }

  private chain(fn: () => Promise<void>): Promise<void> {
    const next = this.writes.then(fn)
    this.writes = next.catch(() => {})
    return next
  }

  /** Write cache, then RocksDB; 'damaged' where RocksDB's copy is unreadable (storage/entryStore.ts). */
  async getEntries(ledgerId: number, entryIds: readonly number[]): Promise<(Uint8Array | null | 'damaged')[]> {
    const byEntry = this.cache.get(ledgerId)
    const out: (Uint8Array | null | 'damaged')[] = entryIds.map((e) => byEntry?.get(e) ?? null)
    const missing = entryIds.filter((_, i) => out[i] === null)
    if (missing.length > 0) {
      const got = await this.store.readEntries(missing.map((entryId) => ({ ledgerId, entryId })))
      let j = 0
      for (let i = 0; i < out.length; i++) if (out[i] === null) out[i] = got[j++] ?? null
    }
    return out
  }

  async summary(ledgerId: number): Promise<LedgerSummary> {
    // The write cache first, RocksDB second: an entry leaves the cache only after its RocksDB put
    // completed, so whatever the cache no longer holds the store read below sees. (The other
    // order misses entries whose put lands while the store is being read.)
    let cachedLast = -1
    for (const e of this.cache.get(ledgerId)?.keys() ?? []) if (e > cachedLast) cachedLast = e
    const state = this.checkpointStates.get(ledgerId) ?? this.replayedStates.get(ledgerId) ?? await this.store.getLedgerState(ledgerId)
    const lastEntryId = Math.max(cachedLast, await this.store.lastEntryId(ledgerId))
    let lac = state?.explicitLac ?? -1
    if (lastEntryId >= 0) {
      // The LAC travels in the entries: take it from the newest copies that verify (a rotted
      // header must not become a LAC).
      const ids = Array.from({ length: Math.min(16, lastEntryId + 1) }, (_, i) => lastEntryId - i)
      const copies = await this.getEntries(ledgerId, ids)
      for (let i = 0; i < ids.length; i++) {
        const data = copies[i]
        const l = data && data !== 'damaged' ? trustedLac(data, ledgerId, ids[i]!, state?.digestType ?? null, state?.masterKey ?? null) : null
        if (l !== null) {
          lac = Math.max(lac, l)
          break
        }
      }
    }
    return { state, lastEntryId, lac }
  }

  /**
   * Flush the entry store (entry logs synced, then the index) and record the journal position it
   * covers; drop older journal files.
   */
  async checkpoint(): Promise<JournalPosition> {
    while (this.rotating) await this.rotating
    const j = this.requireJournal()
    const pos = j.syncedPosition
    // Let sync callbacks for records up to `pos` queue their puts, then write them.
    await new Promise<void>((r) => { this.clock.defer(r) })
    this.flushPuts()
    if (this.checkpointStates.size > 0) {
      const states = this.checkpointStates
      this.checkpointStates = new Map()
      await this.chain(() => this.store.putLedgerStates(states)).catch((err: unknown) => {
        // Kept for the next checkpoint, unless a newer state replaced one meanwhile.
        for (const [l, st] of states) if (!this.checkpointStates.has(l)) this.checkpointStates.set(l, st)
        throw err
      })
    }
    await this.writes
    if (this.failedPuts.length > 0) {
      const retry = this.failedPuts
      this.failedPuts = []
      await this.chain(() => this.putAndUncache(retry)).catch((err: unknown) => {
        this.failedPuts.push(...retry)
        throw err
      })
    }
    await this.store.flush()
    await this.store.putMeta(CHECKPOINT_KEY, Buffer.from(JSON.stringify(pos)))
    await this.store.flush()
    await j.trimBefore(pos)
    return pos
  }

  /** Wait for in-flight journal appends to settle. */
  async quiesce(): Promise<void> {
    if (this.journalInFlight === 0) return
    await new Promise<void>((r) => { this.journalIdle = r })
    this.journalIdle = null
  }

  /** With a replayed journal: checkpoint, close, then mark the stop clean (see CLEAN_STOP_FILE). */
  async close(): Promise<void> {
    while (this.rotating) await this.rotating.catch(() => {})
    const clean = this.journal !== null
    if (this.journal) {
      await this.quiesce()
      await this.checkpoint()
      await this.journal.close()
      this.journal = null
    }
    await this.store.close()
    if (clean) await this.disk.writeCleanStopMarker()
  }
}
