// The bookie's entry store: payloads in append-only entry logs (storage/entryLog.ts), an index and
// per-ledger state in RocksDB (PROTOCOL.md "Bookie storage"; BookKeeper's DbLedgerStorage).
//   CF `entries`: (ledgerId, entryId) → where the payload is (storage/entryLogIndex.ts).
//   CF `ledgers`: ledgerId → msgpack {masterKey, digestType, fenced, explicitLac}.
//   CF `meta`:    utf-8 name → raw bytes (the checkpoint record, the damaged list, the format).
// Invariants:
// - Big-endian fixed-width keys make RocksDB's byte order equal (ledgerId, entryId) order, so a
//   ledger is one contiguous key range: lastEntryId is one reverse seek, deleteLedger one
//   deleteRange, listLedgers one seek per ledger.
// - An entry is appended to the current log before its index entry is written, and flush()
//   syncs the logs before it flushes the index: a durable index entry points at durable bytes
//   (what the journal holds past the checkpoint is put again on replay, which rewrites its index).
// - Index mutations (puts, ledger deletes, compaction's moves) run one at a time, so a
//   compaction's check "still points into the old log" and its update are one step.
// - No synced writes here: the journal is the write-ahead log, and flush() is what makes a
//   checkpoint safe.
// - Values handed out are Buffers the caller may keep.
// - Every batch is created with autoDestroy and flushed at once, with all checks done before it
//   is created: a batch never flushed holds a ref, and close() then waits forever.
// A store in the format before entry logs (payloads in the `entries` CF) is migrated when opened
// writable (storage/entryLogMigration.ts); read-only, its payloads are read where they are.
// Damage:
// - a read that hits an SST block failing its checksum, or an entry log record that is torn,
//   rotted, past the end of its file or in a missing file (ENTRY_LOG_DAMAGED), answers 'damaged'
//   for those keys only, never null and never an error for the others;
// - SST corruption starts one repair: everything readable in RocksDB is copied into a fresh
//   store, which replaces this one (writes wait for it, reads pause only for the swap); an
//   operation that failed on corruption is retried once after it (storage/entrySalvage.ts);
// - entries found damaged stay listed (meta key `damaged`) until a new copy is written or their
//   ledger is deleted: a read of one answers 'damaged', and lastEntryId counts them, so a lost
//   copy never looks like an entry that was never written.

import { rename, rm } from 'node:fs/promises'
import RocksDB from 'rocksdb-native'
import { QuireError, assert } from '../machines/errors.ts'
import { isCorruption, openDb, salvageInto } from './entrySalvage.ts'
import { EntryLogs, type EntryLogsOptions } from './entryLog.ts'
import { compactEntryLogs, moveIndex, scanIndex, type CompactionResult, type CompactionStep } from './entryLogCompaction.ts'
import { ID_END, assertId, decodeLocation, decodeState, encodeState, entryKey, indexPuts, isLocation, ledgerKey, readU64, sameLocation } from './entryLogIndex.ts'
import { migrateToEntryLogs, type MigrationResult } from './entryLogMigration.ts'
import { DAMAGED_KEY, DamagedEntries } from './entryStoreDamage.ts'
import type { EntryRef, EntryStore, StoredEntry, StoredLedgerState } from './types.ts'

export { isCorruption } from './entrySalvage.ts'

/** Least time between two repairs (storage/entrySalvage.ts copies the whole store). */
const REPAIR_BACKOFF_MS = 30_000

/** What the store knows of its damage (the bookie reports it: state, metric, registration). */
export interface StoreDamage {
  /** Entries whose stored copy is unreadable, by ledger. */
  entries: number
  ledgers: number[]
  /** Repairs (salvage copies) done since the store was opened. */
  repairs: number
  /** The corruption that started the last repair, or null. */
  lastError: string | null
}

export type DamageEvent =
  | { kind: 'found'; ledgerId: number; entryIds: number[]; error: string }
  | { kind: 'repaired'; damaged: number; copied: number; ranges: number; ms: number }
  | { kind: 'repairFailed'; error: string }

/**
 * `readOnly`: open without writing anything (RocksDB's read-only mode: the WAL is replayed into
 * memory, no flush, no new files), for a bookie whose disk was full at start-up. Every write then
 * fails; reads see everything the store held, its unflushed WAL included.
 */
export async function openEntryStore(dir: string, opts: EntryStoreOptions = {}): Promise<RocksEntryStore> {
  return RocksEntryStore.open(dir, opts)
}

export interface EntryStoreOptions extends EntryLogsOptions {
  /** Where the entry logs are; default `<dir>.logs` (beside the RocksDB folder, which a repair replaces). */
  logDir?: string
  /** Test hook: called after each chunk a migration from the old format commits. */
  onMigrateChunk?: (entries: number) => Promise<void>
}

export class RocksEntryStore implements EntryStore {
  private closing: Promise<void> | null = null
  private entries: RocksDB
  private ledgers: RocksDB
  private meta: RocksDB
  /** Damaged entries (persisted under DAMAGED_KEY). */
  private readonly damaged = new DamagedEntries()
  /** The repair under way: writes wait for all of it. */
  private repairing: Promise<void> | null = null
  /** The swap to the repaired store under way: reads wait for it. */
  private swapping: Promise<void> | null = null
  private repairs = 0
  private repairedAt = 0
  private readonly writesInFlight = new Set<Promise<unknown>>()
  private lastError: string | null = null
  /** Told of damage found and of repairs (the bookie logs and reports it). */
  onDamage: (e: DamageEvent) => void = () => {}
  /** Test hook: a repair's copy is in place and reads go to it; the repair has not resolved yet. */
  onRepairSwapped: (() => Promise<void>) | null = null

  /** Index mutations, one at a time (see the header). */
  private indexing: Promise<unknown> = Promise.resolve()
  private compacting: Promise<CompactionResult> | null = null
  /** What opening migrated from the format before entry logs; null when nothing. */
  migrated: MigrationResult | null = null

  private constructor(private readonly dir: string, private db: RocksDB, readonly logs: EntryLogs) {
    this.entries = db.columnFamily('entries')
    this.ledgers = db.columnFamily('ledgers')
    this.meta = db.columnFamily('meta')
  }

  static async open(dir: string, opts: EntryStoreOptions): Promise<RocksEntryStore> {
    const readOnly = opts.readOnly ?? false
    const db = await openDb(dir, readOnly)
    const logDir = opts.logDir ?? `${dir}.logs`
    const logs = await EntryLogs.open(logDir, opts).catch(async (err: unknown) => {
      await db.close().catch(() => {})
      throw new Error(`cannot open the entry logs in ${logDir}: ${errorText(err)}`, { cause: err })
    })
    const store = new RocksEntryStore(dir, db, logs)
    try {
      await store.loadDamaged()
      if (!readOnly) store.migrated = await migrateToEntryLogs({ entries: store.entries, meta: store.meta, logs }, opts.onMigrateChunk)
    } catch (err) {
      await store.close().catch(() => {})
      throw err
    }
    return store
  }

  get damage(): StoreDamage {
    return { entries: this.damaged.count, ledgers: this.damaged.ledgers(), repairs: this.repairs, lastError: this.lastError }
  }

  async putEntries(entries: readonly StoredEntry[]): Promise<void> {
    if (entries.length === 0) return
    for (const e of entries) {
      assertId(e.ledgerId, 'ledgerId')
      assertId(e.entryId, 'entryId')
      // The binding throws on other types inside flush(), whose promise then never settles.
      assert(e.data instanceof Uint8Array, 'entry data is a Uint8Array')
    }
    await this.write(() => this.locked(async () => {
      const locs = await this.logs.append(entries)
      const batch = this.entries.write({ autoDestroy: true, capacity: entries.length })
      indexPuts(entries, locs, (key, value) => batch.tryPut(key, value))
      await batch.flush()
    }))
    // A new copy of a damaged entry replaces it.
    let healed = false
    for (const e of entries) healed = this.damaged.forget(e.ledgerId, e.entryId) || healed
    if (healed) await this.saveDamaged()
  }

  /** EntryStore's read: as readEntries, but a damaged copy fails it (CORRUPT_ENTRY). */
  async getEntries(refs: readonly EntryRef[]): Promise<(Buffer | null)[]> {
    const got = await this.readEntries(refs)
    const at = got.indexOf('damaged')
    if (at >= 0) {
      const r = refs[at]!
      throw new QuireError('CORRUPT_ENTRY', `the stored copy of entry ${r.entryId} of ledger ${r.ledgerId} is damaged`, { ledgerId: r.ledgerId, entryId: r.entryId })
    }
    return got as (Buffer | null)[]
  }

  /**
   * One batched read; each key has its own result, so a block that fails its checksum makes only
   * the keys in it 'damaged'. Those are recorded, and a repair starts (not awaited).
   */
  async readEntries(refs: readonly EntryRef[]): Promise<(Buffer | null | 'damaged')[]> {
    if (refs.length === 0) return []
    for (const r of refs) {
      assertId(r.ledgerId, 'ledgerId')
      assertId(r.entryId, 'entryId')
    }
    if (this.swapping) await this.swapping
    const batch = this.entries.read({ autoDestroy: true, capacity: refs.length })
    const values = refs.map((r) => batch.get(entryKey(r.ledgerId, r.entryId)))
    // Settled together, so a failed flush cannot leave the per-key rejections unhandled.
    const [flushed, ...got] = await Promise.allSettled([batch.flush(), ...values])
    const out: (Buffer | null | 'damaged')[] = []
    const found = new Map<number, number[]>()
    let corruption: unknown = null
    const inLogs: number[] = []
    for (let i = 0; i < refs.length; i++) {
      const g = got[i]!
      const r = refs[i]!
      if (g.status === 'fulfilled') {
        const v = g.value
        if (v !== null && isLocation(v)) inLogs.push(i)
        // A value that is no location is an entry stored whole (a store not migrated yet).
        out.push(v ?? (this.damaged.has(r.ledgerId, r.entryId) ? 'damaged' : null))
        continue
      }
      if (!isCorruption(g.reason)) throw g.reason
      corruption = g.reason
      out.push('damaged')
      addFound(found, r)
    }
    if (flushed!.status === 'rejected' && corruption === null) throw flushed!.reason
    if (corruption !== null) await this.found(found, corruption, true)
    const logFound = new Map<number, number[]>()
    let logError: unknown = null
    // All at once: records near each other share one read-ahead (EntryLogs.read), and the file
    // reads a batch needs wait side by side, not one after another (each wait is an event-loop
    // turn, long on a bookie busy with adds).
    const logged = await Promise.allSettled(inLogs.map((i) => this.readLogged(refs[i]!, out[i] as Buffer)))
    for (let k = 0; k < inLogs.length; k++) {
      const i = inLogs[k]!
      const g = logged[k]!
      if (g.status === 'fulfilled') {
        out[i] = g.value
        continue
      }
      if (!(g.reason instanceof QuireError && g.reason.code === 'ENTRY_LOG_DAMAGED')) throw g.reason
      logError = g.reason
      out[i] = 'damaged'
      addFound(logFound, refs[i]!)
    }
    // Not a RocksDB repair: the index is sound; a new copy of the entry heals it.
    if (logError !== null) await this.found(logFound, logError, false)
    return out
  }

  /**
   * The payload an index value points to. A compaction may have moved the entry (and deleted
   * its old log) since the index was read: on damage, the index is read again, once.
   */
  private async readLogged(r: EntryRef, value: Buffer): Promise<Buffer> {
    const loc = decodeLocation(value)
    try {
      return await this.logs.read(loc, r.ledgerId, r.entryId)
    } catch (err) {
      const again = await this.getOne(this.entries, entryKey(r.ledgerId, r.entryId)).catch(() => null)
      if (again === null || !isLocation(again) || sameLocation(decodeLocation(again), loc)) throw err
      return this.logs.read(decodeLocation(again), r.ledgerId, r.entryId)
    }
  }

  /** Highest entry id stored or known damaged; -1 when none. */
  async lastEntryId(ledgerId: number): Promise<number> {
    assertId(ledgerId, 'ledgerId')
    const stored = await this.reading(async () => {
      const range = { gte: entryKey(ledgerId, 0), lt: entryKey(ledgerId + 1, 0) }
      for await (const { key } of this.entries.iterator(range, { reverse: true, limit: 1, values: false })) {
        assert(key.length === 16 && readU64(key, 0) === ledgerId, 'entry key inside the ledger range')
        return readU64(key, 8)
      }
      return -1
    })
    return Math.max(stored, this.damaged.last(ledgerId))
  }

  async getLedgerState(ledgerId: number): Promise<StoredLedgerState | null> {
    assertId(ledgerId, 'ledgerId')
    const value = await this.reading(() => this.getOne(this.ledgers, ledgerKey(ledgerId)))
    return value === null ? null : decodeState(ledgerId, value)
  }

  async putLedgerState(ledgerId: number, state: StoredLedgerState): Promise<void> {
    assertId(ledgerId, 'ledgerId')
    const value = encodeState(state) // may assert: before the batch, which must not be left open
    await this.write(async () => {
      const batch = this.ledgers.write({ autoDestroy: true, capacity: 1 })
      batch.tryPut(ledgerKey(ledgerId), value)
      await batch.flush()
    })
  }

  /** Several ledgers' states in one write (a checkpoint's deferred explicit LACs). */
  async putLedgerStates(states: ReadonlyMap<number, StoredLedgerState>): Promise<void> {
    if (states.size === 0) return
    const values: [Uint8Array, Uint8Array][] = []
    for (const [ledgerId, state] of states) {
      assertId(ledgerId, 'ledgerId')
      values.push([ledgerKey(ledgerId), encodeState(state)]) // may assert: before the batch, which must not be left open
    }
    await this.write(async () => {
      const batch = this.ledgers.write({ autoDestroy: true, capacity: values.length })
      for (const [k, v] of values) batch.tryPut(k, v)
      await batch.flush()
    })
  }

  /**
   * Ascending, distinct ids from both CFs. One seek per ledger and CF (never a scan of entries);
   * each seek is its own short iterator, so abandoning the loop leaves nothing open. Ledgers
   * added or deleted while this runs may or may not appear.
   */
  async *listLedgers(): AsyncIterable<number> {
    let cursor = 0
    // Next id found in each CF at or after some earlier cursor; null once that CF is exhausted.
    let fromEntries: number | null = -1
    let fromLedgers: number | null = -1
    while (cursor < ID_END) {
      const at = cursor
      if (fromEntries !== null && fromEntries < cursor) fromEntries = await this.reading(() => this.seekLedger(this.entries, entryKey(at, 0), 16))
      if (fromLedgers !== null && fromLedgers < cursor) fromLedgers = await this.reading(() => this.seekLedger(this.ledgers, ledgerKey(at), 8))
      const next = fromEntries === null ? fromLedgers : fromLedgers === null ? fromEntries : Math.min(fromEntries, fromLedgers)
      if (next === null) return
      yield next
      cursor = next + 1
    }
  }

  /**
   * Entries first, then state: the two CFs cannot share one batch, and if we stop in between,
   * the surviving state (master key, fence) still guards the ledger and listLedgers still shows
   * it, so the delete can be retried.
   */
  async deleteLedger(ledgerId: number): Promise<void> {
    assertId(ledgerId, 'ledgerId')
    await this.write(() => this.locked(async () => {
      const entries = this.entries.write({ autoDestroy: true, capacity: 1 })
      entries.tryDeleteRange(entryKey(ledgerId, 0), entryKey(ledgerId + 1, 0))
      await entries.flush()
    }))
    if (this.damaged.forgetLedger(ledgerId)) await this.saveDamaged()
    await this.write(async () => {
      const state = this.ledgers.write({ autoDestroy: true, capacity: 1 })
      state.tryDelete(ledgerKey(ledgerId))
      await state.flush()
    })
  }

  /** Drops the range tombstones deleteLedger left, and the entries under them, from the SST files. */
  async compactLedgers(firstLedgerId: number, lastLedgerId: number): Promise<void> {
    assertId(firstLedgerId, 'firstLedgerId')
    assertId(lastLedgerId, 'lastLedgerId')
    assert(firstLedgerId <= lastLedgerId, `compact range ${firstLedgerId}..${lastLedgerId} is empty`)
    await this.write(() => this.entries.compactRange(entryKey(firstLedgerId, 0), entryKey(lastLedgerId + 1, 0)))
    await this.write(() => this.ledgers.compactRange(ledgerKey(firstLedgerId), ledgerKey(lastLedgerId + 1)))
  }

  async getMeta(key: string): Promise<Buffer | null> {
    return this.reading(() => this.getOne(this.meta, Buffer.from(key, 'utf8')))
  }

  /** Durable only after the next flush(); a lost checkpoint record just means a longer replay. */
  async putMeta(key: string, value: Uint8Array): Promise<void> {
    await this.write(async () => {
      const batch = this.meta.write({ autoDestroy: true, capacity: 1 })
      batch.tryPut(Buffer.from(key, 'utf8'), value)
      await batch.flush()
    })
  }

  /** The entry logs first, then the index: a flushed index entry never points at bytes a crash can lose. */
  async flush(): Promise<void> {
    await this.write(async () => {
      await this.logs.sync()
      await Promise.all([this.entries.flush(), this.ledgers.flush(), this.meta.flush()])
    })
  }

  /**
   * Garbage collection of the entry logs (BookKeeper's minor and major compaction): every sealed
   * log whose live bytes are under `threshold` of its size has its live entries copied to a new
   * log, which is synced, then the index is moved to it and flushed, then the old log is
   * deleted; a log with no live entry is deleted at once. One run at a time (a second call
   * joins the first). `onStep` is a test hook, called between the steps.
   */
  compactEntryLogs(threshold: number, onStep?: (step: CompactionStep, logId: number) => Promise<void>): Promise<CompactionResult> {
    assert(threshold >= 0 && threshold <= 1, `compaction threshold is a fraction in [0, 1], got ${threshold}`)
    if (this.logs.isReadOnly) return Promise.resolve({ compacted: 0, emptied: 0, skipped: 0, entriesMoved: 0, bytesFreed: 0, liveEntriesHeldMax: 0 })
    this.compacting ??= compactEntryLogs({
      logs: this.logs,
      boundary: () => this.locked(() => this.logs.seal()),
      scan: () => this.scanIndex(),
      move: (moves) => this.write(() => this.locked(() => moveIndex(this.entries, moves))),
      flushIndex: () => this.write(() => this.entries.flush()),
    }, threshold, onStep).finally(() => { this.compacting = null })
    return this.compacting
  }

  private async *scanIndex(): AsyncIterable<{ ledgerId: number; entryId: number; value: Buffer }> {
    if (this.swapping) await this.swapping
    yield* scanIndex(this.entries)
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.indexing.then(fn)
    this.indexing = next.catch(() => {})
    return next
  }

  /** Waits for a repair and for reads and writes in flight; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.repairing?.catch(() => {})
      await this.compacting?.catch(() => {})
      await this.db.close()
      await this.logs.close()
    })()
    return this.closing
  }

  /**
   * Repair now (or join the repair under way); resolves when done. A store that fails again within
   * REPAIR_BACKOFF_MS of a repair is not copied again at once (a dying disk would keep it copying):
   * that is an error until the backoff has passed.
   */
  repair(reason = 'requested'): Promise<void> {
    if (this.repairing) return this.repairing
    const wait = this.repairedAt + REPAIR_BACKOFF_MS - performance.now()
    if (this.repairedAt > 0 && wait > 0) {
      return Promise.reject(new Error(`the entry store is damaged again ${Math.round((REPAIR_BACKOFF_MS - wait) / 1000)} s after a repair (${reason}); next repair in ${Math.ceil(wait / 1000)} s`))
    }
    this.repairing = this.salvage(reason).finally(() => {
      this.repairing = null
      this.repairedAt = performance.now()
    })
    return this.repairing
  }

  /** A write: waits for a repair under way; one that fails on corruption repairs, then retries once. */
  private async write<T>(fn: () => Promise<T>): Promise<T> {
    if (this.repairing) await this.repairing.catch(() => {})
    try {
      return await this.track(fn())
    } catch (err) {
      if (!isCorruption(err) || this.closing) throw err
      await this.repair(errorText(err))
      return this.track(fn())
    }
  }

  /** A write in flight: a repair copies only after every one has settled, so none is lost. */
  private track<T>(p: Promise<T>): Promise<T> {
    this.writesInFlight.add(p)
    const done = (): void => { this.writesInFlight.delete(p) }
    p.then(done, done)
    return p
  }

  /** A read: waits for a swap under way; one that fails on corruption repairs, then retries once. */
  private async reading<T>(fn: () => Promise<T>): Promise<T> {
    if (this.swapping) await this.swapping
    try {
      return await fn()
    } catch (err) {
      if (!isCorruption(err) || this.closing) throw err
      await this.repair(errorText(err))
      return fn()
    }
  }

  private async found(byLedger: Map<number, number[]>, err: unknown, repair: boolean): Promise<void> {
    let added = false
    for (const [ledgerId, ids] of byLedger) {
      const fresh = this.damaged.add(ledgerId, ids)
      if (fresh.length > 0) {
        added = true
        this.onDamage({ kind: 'found', ledgerId, entryIds: fresh, error: errorText(err) })
      }
    }
    if (added && repair && !this.closing) void this.repair(errorText(err)).catch(() => {})
    if (added && !repair && !this.closing) await this.saveDamaged().catch(() => {})
  }

  /** Damaged entry ids of a ledger, ascending. */
  damagedOf(ledgerId: number): number[] {
    return this.damaged.of(ledgerId)
  }

  /**
   * Drop entries from the damaged list without a new copy: ones the ledger's metadata does not
   * place on this bookie (machines/damage.ts), which nothing would ever rewrite.
   */
  async forgetDamaged(ledgerId: number, entryIds: readonly number[]): Promise<void> {
    let changed = false
    for (const id of entryIds) changed = this.damaged.forget(ledgerId, id) || changed
    if (changed) await this.saveDamaged()
  }

  private async loadDamaged(): Promise<void> {
    this.damaged.load(await this.getOne(this.meta, Buffer.from(DAMAGED_KEY, 'utf8')).catch(() => null))
  }

  private async saveDamaged(): Promise<void> {
    await this.write(() => this.putDamaged())
  }

  /** Store the damaged list as it is now (saveDamaged; a repair's swap, which a write would wait for). */
  private async putDamaged(): Promise<void> {
    const batch = this.meta.write({ autoDestroy: true, capacity: 1 })
    batch.tryPut(Buffer.from(DAMAGED_KEY, 'utf8'), this.damaged.encode())
    await batch.flush()
  }

  /**
   * Copy what is readable into `<dir>.salvage`, rename it `<dir>.salvaged` (complete), then swap
   * it in for this store; finishRepair() completes a swap a crash interrupted.
   */
  private async salvage(reason: string): Promise<void> {
    const started = performance.now()
    this.lastError = reason
    try {
      await Promise.allSettled([...this.writesInFlight])
      await rm(`${this.dir}.salvage`, { recursive: true, force: true })
      const r = await salvageInto({ entries: this.entries, ledgers: this.ledgers, meta: this.meta }, `${this.dir}.salvage`, () => this.damaged.list(), DAMAGED_KEY)
      await rename(`${this.dir}.salvage`, `${this.dir}.salvaged`)
      this.swapping = (async () => {
        await this.db.close()
        this.db = await openDb(this.dir, false)
        this.entries = this.db.columnFamily('entries')
        this.ledgers = this.db.columnFamily('ledgers')
        this.meta = this.db.columnFamily('meta')
        // In force before any read reaches the copy, which lacks the entries it names (they would
        // read as absent). Those found by reads after the copy's list was taken are kept, and stored.
        const foundMeanwhile = this.damaged.list()
        this.damaged.load(null)
        for (const [l, e] of r.damaged) this.damaged.add(l, [e])
        let more = false
        for (const [l, e] of foundMeanwhile) more = this.damaged.add(l, [e]).length > 0 || more
        if (more) await this.putDamaged()
      })()
      try {
        await this.swapping
      } finally {
        this.swapping = null
      }
      await this.onRepairSwapped?.()
      this.repairs++
      this.onDamage({ kind: 'repaired', damaged: r.damaged.length, copied: r.copied, ranges: r.ranges, ms: Math.round(performance.now() - started) })
    } catch (err) {
      this.onDamage({ kind: 'repairFailed', error: errorText(err) })
      throw err
    }
  }

  private async getOne(cf: RocksDB, key: Buffer): Promise<Buffer | null> {
    if (this.swapping) await this.swapping
    const batch = cf.read({ autoDestroy: true, capacity: 1 })
    const value = batch.get(key)
    const [, result] = await Promise.all([batch.flush(), value])
    return result
  }

  /** The ledger id of the first key at or after `from` in `cf`, or null when there is none. */
  private async seekLedger(cf: RocksDB, from: Buffer, keyBytes: number): Promise<number | null> {
    for await (const { key } of cf.iterator({ gte: from }, { limit: 1, values: false })) {
      assert(key.length === keyBytes, `key of ${keyBytes} bytes, got ${key.length}`)
      return readU64(key, 0)
    }
    return null
  }
}

function addFound(found: Map<number, number[]>, r: EntryRef): void {
  let ids = found.get(r.ledgerId)
  if (!ids) found.set(r.ledgerId, (ids = []))
  ids.push(r.entryId)
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
