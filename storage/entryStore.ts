// The bookie's entry store on RocksDB (PROTOCOL.md "Bookie storage").
//   CF `entries`: key = ledgerId u64 BE | entryId u64 BE (16 bytes), value = the entry's bytes.
//   CF `ledgers`: key = ledgerId u64 BE (8 bytes), value = msgpack {masterKey, fenced, explicitLac}.
//   CF `meta`:    key = utf-8 name, value = raw bytes (the checkpoint record lives here).
// Invariants:
// - Big-endian fixed-width keys make RocksDB's byte order equal (ledgerId, entryId) order, so a
//   ledger is one contiguous key range: lastEntryId is one reverse seek, deleteLedger one
//   deleteRange, listLedgers one seek per ledger.
// - Ids are integers in [0, 2^53) (asserted): they round-trip through a JS number exactly.
// - No synced writes here: the journal is the write-ahead log, and flush() (memtables to SST
//   files) is what makes a checkpoint safe.
// - Values handed out are Buffers the binding allocated for this read (freed by GC), never views
//   of a reused native buffer, so callers may keep them.
// - Every batch is created with autoDestroy and flushed at once, with all checks done before it
//   is created: a batch never flushed holds a ref, and close() then waits forever.
// Damage (bytes flipped in an SST file; storage/entrySalvage.ts says why it cannot stay):
// - a read that hits a block failing its checksum answers 'damaged' for those keys only (each key
//   of a batch has its own result), never null and never an error for the others;
// - the first corruption met anywhere starts one repair: everything readable is copied into a
//   fresh store, which replaces this one (writes wait for it, reads pause only for the swap); an
//   operation that failed on corruption is retried once after it;
// - entries found damaged stay listed (meta key `damaged`) until a new copy is written or their
//   ledger is deleted: a read of one answers 'damaged', and lastEntryId counts them, so a lost
//   copy never looks like an entry that was never written.

import { access, mkdir, rename, rm } from 'node:fs/promises'
import RocksDB from 'rocksdb-native'
import { Packr } from 'msgpackr'
import { QuireError, assert } from '../machines/errors.ts'
import { COLUMN_FAMILIES, isCorruption, salvageInto } from './entrySalvage.ts'
import type { EntryRef, EntryStore, StoredEntry, StoredLedgerState } from './types.ts'

export { isCorruption } from './entrySalvage.ts'

const ID_END = 2 ** 53
const TWO_32 = 2 ** 32
const DAMAGED_KEY = 'damaged'
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

// useRecords off: records would make a value depend on structure definitions kept elsewhere.
const packr = new Packr({ useRecords: false })

function assertId(id: number, what: string): void {
  assert(Number.isInteger(id) && id >= 0 && id < ID_END, `${what} must be an integer in [0, 2^53), got ${id}`)
}

/** Writes `n` as u64 BE. `n` may be 2^53 itself: the exclusive end of the last ledger's range. */
function writeU64(buf: Buffer, offset: number, n: number): void {
  buf.writeUInt32BE(Math.floor(n / TWO_32), offset)
  buf.writeUInt32BE(n % TWO_32, offset + 4)
}

function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * TWO_32 + buf.readUInt32BE(offset + 4)
}

function entryKey(ledgerId: number, entryId: number): Buffer {
  const key = Buffer.allocUnsafe(16)
  writeU64(key, 0, ledgerId)
  writeU64(key, 8, entryId)
  return key
}

function ledgerKey(ledgerId: number): Buffer {
  const key = Buffer.allocUnsafe(8)
  writeU64(key, 0, ledgerId)
  return key
}

function encodeState(state: StoredLedgerState): Buffer {
  assert(state.masterKey === null || state.masterKey instanceof Uint8Array, 'masterKey is bytes or null')
  assert(typeof state.fenced === 'boolean', 'fenced is a boolean')
  assert(Number.isInteger(state.explicitLac) && state.explicitLac >= -1 && state.explicitLac < ID_END,
    `explicitLac is -1 or an entry id, got ${state.explicitLac}`)
  assert(state.digestType === null || typeof state.digestType === 'string', 'digestType is a string or null')
  return packr.pack({ masterKey: state.masterKey, digestType: state.digestType, fenced: state.fenced, explicitLac: state.explicitLac })
}

function decodeState(ledgerId: number, value: Buffer): StoredLedgerState {
  const raw: unknown = packr.unpack(value)
  const r = raw as { masterKey?: unknown; digestType?: unknown; fenced?: unknown; explicitLac?: unknown } | null
  // A record that does not decode is disk corruption or a foreign format; refuse to guess.
  assert(typeof r === 'object' && r !== null, `ledger ${ledgerId} state is not a map`)
  assert(r.masterKey === null || r.masterKey instanceof Uint8Array, `ledger ${ledgerId} masterKey`)
  assert(typeof r.fenced === 'boolean', `ledger ${ledgerId} fenced`)
  assert(typeof r.explicitLac === 'number' && Number.isInteger(r.explicitLac) && r.explicitLac >= -1,
    `ledger ${ledgerId} explicitLac`)
  // A plain copy: msgpackr hands back a view into `value`, and callers compare and keep keys.
  const masterKey = r.masterKey === null ? null : Uint8Array.from(r.masterKey)
  const digestType = typeof r.digestType === 'string' ? r.digestType : null
  return { masterKey, digestType, fenced: r.fenced, explicitLac: r.explicitLac }
}

/**
 * `readOnly`: open without writing anything (RocksDB's read-only mode: the WAL is replayed into
 * memory, no flush, no new files), for a bookie whose disk was full at start-up. Every write then
 * fails; reads see everything the store held, its unflushed WAL included.
 */
export async function openEntryStore(dir: string, opts: { readOnly?: boolean } = {}): Promise<RocksEntryStore> {
  return RocksEntryStore.open(dir, opts.readOnly ?? false)
}

/**
 * Open (creating) the RocksDB store in `dir`, first completing a repair a crash interrupted,
 * with a message that says what went wrong.
 */
async function openDb(dir: string, readOnly: boolean): Promise<RocksDB> {
  let db: RocksDB | null = null
  try {
    await finishRepair(dir)
    // RocksDB creates only the last path component; a fresh bookie may name a deeper one.
    await mkdir(dir, { recursive: true })
    db = new RocksDB(dir, { columnFamilies: [...COLUMN_FAMILIES], readOnly })
    await db.ready()
    return db
  } catch (err) {
    if (db !== null) await db.close().catch(() => {})
    const reason = err instanceof Error ? err.message : String(err)
    const hint = /lock/i.test(reason) ? ' (another process, or another store in this one, holds its lock)' : ''
    throw new Error(`cannot open the entry store in ${dir}${hint}: ${reason}`, { cause: err })
  }
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false)

/**
 * A repair stopped by a crash: a complete copy (`.salvaged`) replaces the store, a partial one
 * (`.salvage`) is dropped, and the old damaged store (`.damaged`) goes once it is replaced.
 */
async function finishRepair(dir: string): Promise<void> {
  await rm(`${dir}.salvage`, { recursive: true, force: true })
  if (await exists(`${dir}.salvaged`)) {
    if (await exists(dir)) {
      await rm(`${dir}.damaged`, { recursive: true, force: true })
      await rename(dir, `${dir}.damaged`)
    }
    await rename(`${dir}.salvaged`, dir)
  }
  await rm(`${dir}.damaged`, { recursive: true, force: true })
}

export class RocksEntryStore implements EntryStore {
  private closing: Promise<void> | null = null
  private entries: RocksDB
  private ledgers: RocksDB
  private meta: RocksDB
  /** Damaged entries, by ledger (persisted under DAMAGED_KEY). */
  private readonly damaged = new Map<number, Set<number>>()
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

  private constructor(private readonly dir: string, private db: RocksDB) {
    this.entries = db.columnFamily('entries')
    this.ledgers = db.columnFamily('ledgers')
    this.meta = db.columnFamily('meta')
  }

  static async open(dir: string, readOnly: boolean): Promise<RocksEntryStore> {
    const store = new RocksEntryStore(dir, await openDb(dir, readOnly))
    await store.loadDamaged()
    return store
  }

  get damage(): StoreDamage {
    let entries = 0
    for (const ids of this.damaged.values()) entries += ids.size
    return { entries, ledgers: [...this.damaged.keys()].sort((a, b) => a - b), repairs: this.repairs, lastError: this.lastError }
  }

  async putEntries(entries: readonly StoredEntry[]): Promise<void> {
    if (entries.length === 0) return
    for (const e of entries) {
      assertId(e.ledgerId, 'ledgerId')
      assertId(e.entryId, 'entryId')
      // The binding throws on other types inside flush(), whose promise then never settles.
      assert(e.data instanceof Uint8Array, 'entry data is a Uint8Array')
    }
    await this.write(async () => {
      const batch = this.entries.write({ autoDestroy: true, capacity: entries.length })
      for (const e of entries) batch.tryPut(entryKey(e.ledgerId, e.entryId), e.data)
      await batch.flush()
    })
    // A new copy of a damaged entry replaces it.
    let healed = false
    for (const e of entries) healed = this.forget(e.ledgerId, e.entryId) || healed
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
    for (let i = 0; i < refs.length; i++) {
      const g = got[i]!
      const r = refs[i]!
      if (g.status === 'fulfilled') {
        out.push(g.value ?? (this.damaged.get(r.ledgerId)?.has(r.entryId) ? 'damaged' : null))
        continue
      }
      if (!isCorruption(g.reason)) throw g.reason
      corruption = g.reason
      out.push('damaged')
      let ids = found.get(r.ledgerId)
      if (!ids) found.set(r.ledgerId, (ids = []))
      ids.push(r.entryId)
    }
    if (flushed!.status === 'rejected' && corruption === null) throw flushed!.reason
    if (corruption !== null) await this.found(found, corruption)
    return out
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
    let last = stored
    for (const id of this.damaged.get(ledgerId) ?? []) if (id > last) last = id
    return last
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
    await this.write(async () => {
      const entries = this.entries.write({ autoDestroy: true, capacity: 1 })
      entries.tryDeleteRange(entryKey(ledgerId, 0), entryKey(ledgerId + 1, 0))
      await entries.flush()
    })
    if (this.damaged.delete(ledgerId)) await this.saveDamaged()
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

  async flush(): Promise<void> {
    await this.write(async () => { await Promise.all([this.entries.flush(), this.ledgers.flush(), this.meta.flush()]) })
  }

  /** Waits for a repair and for reads and writes in flight; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.repairing?.catch(() => {})
      await this.db.close()
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

  private async found(byLedger: Map<number, number[]>, err: unknown): Promise<void> {
    let added = false
    for (const [ledgerId, ids] of byLedger) {
      let known = this.damaged.get(ledgerId)
      if (!known) this.damaged.set(ledgerId, (known = new Set()))
      const fresh = ids.filter((id) => !known.has(id))
      for (const id of fresh) known.add(id)
      if (fresh.length > 0) {
        added = true
        this.onDamage({ kind: 'found', ledgerId, entryIds: fresh, error: errorText(err) })
      }
    }
    if (added && !this.closing) void this.repair(errorText(err)).catch(() => {})
  }

  /** Damaged entry ids of a ledger, ascending. */
  damagedOf(ledgerId: number): number[] {
    return [...(this.damaged.get(ledgerId) ?? [])].sort((a, b) => a - b)
  }

  /**
   * Drop entries from the damaged list without a new copy: ones the ledger's metadata does not
   * place on this bookie (machines/damage.ts), which nothing would ever rewrite.
   */
  async forgetDamaged(ledgerId: number, entryIds: readonly number[]): Promise<void> {
    let changed = false
    for (const id of entryIds) changed = this.forget(ledgerId, id) || changed
    if (changed) await this.saveDamaged()
  }

  /** True when (ledgerId, entryId) was damaged (it is not any more). */
  private forget(ledgerId: number, entryId: number): boolean {
    const ids = this.damaged.get(ledgerId)
    if (!ids?.delete(entryId)) return false
    if (ids.size === 0) this.damaged.delete(ledgerId)
    return true
  }

  private async loadDamaged(): Promise<void> {
    const raw = await this.getOne(this.meta, Buffer.from(DAMAGED_KEY, 'utf8')).catch(() => null)
    if (raw === null) return
    const list = JSON.parse(raw.toString('utf8')) as unknown
    assert(Array.isArray(list), 'the damaged entries list is an array')
    for (const item of list) {
      assert(Array.isArray(item) && item.length === 2, 'a damaged entry is [ledgerId, entryId]')
      const [l, e] = item as [number, number]
      assertId(l, 'damaged ledgerId')
      assertId(e, 'damaged entryId')
      let ids = this.damaged.get(l)
      if (!ids) this.damaged.set(l, (ids = new Set()))
      ids.add(e)
    }
  }

  private damagedList(): Array<[number, number]> {
    return [...this.damaged].flatMap(([l, ids]) => [...ids].map((e): [number, number] => [l, e]))
  }

  private async saveDamaged(): Promise<void> {
    const value = Buffer.from(JSON.stringify(this.damagedList()))
    await this.write(async () => {
      const batch = this.meta.write({ autoDestroy: true, capacity: 1 })
      batch.tryPut(Buffer.from(DAMAGED_KEY, 'utf8'), value)
      await batch.flush()
    })
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
      const r = await salvageInto({ entries: this.entries, ledgers: this.ledgers, meta: this.meta }, `${this.dir}.salvage`, () => this.damagedList(), DAMAGED_KEY)
      await rename(`${this.dir}.salvage`, `${this.dir}.salvaged`)
      this.swapping = (async () => {
        await this.db.close()
        this.db = await openDb(this.dir, false)
        this.entries = this.db.columnFamily('entries')
        this.ledgers = this.db.columnFamily('ledgers')
        this.meta = this.db.columnFamily('meta')
      })()
      try {
        await this.swapping
      } finally {
        this.swapping = null
      }
      this.damaged.clear()
      await this.loadDamaged()
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

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
