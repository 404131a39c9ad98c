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

import { mkdir } from 'node:fs/promises'
import RocksDB from 'rocksdb-native'
import { Packr } from 'msgpackr'
import { assert } from '../machines/errors.ts'
import type { EntryRef, EntryStore, StoredEntry, StoredLedgerState } from './types.ts'

const ID_END = 2 ** 53
const TWO_32 = 2 ** 32
const COLUMN_FAMILIES = ['entries', 'ledgers', 'meta']

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

export async function openEntryStore(dir: string): Promise<RocksEntryStore> {
  return RocksEntryStore.open(dir)
}

export class RocksEntryStore implements EntryStore {
  private closing: Promise<void> | null = null

  private constructor(
    private readonly db: RocksDB,
    private readonly entries: RocksDB,
    private readonly ledgers: RocksDB,
    private readonly meta: RocksDB,
  ) {}

  static async open(dir: string): Promise<RocksEntryStore> {
    let db: RocksDB | null = null
    try {
      // RocksDB creates only the last path component; a fresh bookie may name a deeper one.
      await mkdir(dir, { recursive: true })
      db = new RocksDB(dir, { columnFamilies: COLUMN_FAMILIES })
      await db.ready()
    } catch (err) {
      if (db !== null) await db.close().catch(() => {})
      const reason = err instanceof Error ? err.message : String(err)
      const hint = /lock/i.test(reason) ? ' (another process, or another store in this one, holds its lock)' : ''
      throw new Error(`cannot open the entry store in ${dir}${hint}: ${reason}`, { cause: err })
    }
    return new RocksEntryStore(db, db.columnFamily('entries'), db.columnFamily('ledgers'), db.columnFamily('meta'))
  }

  async putEntries(entries: readonly StoredEntry[]): Promise<void> {
    if (entries.length === 0) return
    for (const e of entries) {
      assertId(e.ledgerId, 'ledgerId')
      assertId(e.entryId, 'entryId')
      // The binding throws on other types inside flush(), whose promise then never settles.
      assert(e.data instanceof Uint8Array, 'entry data is a Uint8Array')
    }
    const batch = this.entries.write({ autoDestroy: true, capacity: entries.length })
    for (const e of entries) batch.tryPut(entryKey(e.ledgerId, e.entryId), e.data)
    await batch.flush()
  }

  async getEntries(refs: readonly EntryRef[]): Promise<(Buffer | null)[]> {
    if (refs.length === 0) return []
    for (const r of refs) {
      assertId(r.ledgerId, 'ledgerId')
      assertId(r.entryId, 'entryId')
    }
    const batch = this.entries.read({ autoDestroy: true, capacity: refs.length })
    const values = refs.map((r) => batch.get(entryKey(r.ledgerId, r.entryId)))
    // One Promise.all over both, so a failed flush cannot leave the per-key rejections unhandled.
    const [, result] = await Promise.all([batch.flush(), Promise.all(values)])
    return result
  }

  async lastEntryId(ledgerId: number): Promise<number> {
    assertId(ledgerId, 'ledgerId')
    const range = { gte: entryKey(ledgerId, 0), lt: entryKey(ledgerId + 1, 0) }
    for await (const { key } of this.entries.iterator(range, { reverse: true, limit: 1, values: false })) {
      assert(key.length === 16 && readU64(key, 0) === ledgerId, 'entry key inside the ledger range')
      return readU64(key, 8)
    }
    return -1
  }

  async getLedgerState(ledgerId: number): Promise<StoredLedgerState | null> {
    assertId(ledgerId, 'ledgerId')
    const value = await this.getOne(this.ledgers, ledgerKey(ledgerId))
    return value === null ? null : decodeState(ledgerId, value)
  }

  async putLedgerState(ledgerId: number, state: StoredLedgerState): Promise<void> {
    assertId(ledgerId, 'ledgerId')
    const value = encodeState(state) // may assert: before the batch, which must not be left open
    const batch = this.ledgers.write({ autoDestroy: true, capacity: 1 })
    batch.tryPut(ledgerKey(ledgerId), value)
    await batch.flush()
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
      if (fromEntries !== null && fromEntries < cursor) fromEntries = await this.seekLedger(this.entries, entryKey(cursor, 0), 16)
      if (fromLedgers !== null && fromLedgers < cursor) fromLedgers = await this.seekLedger(this.ledgers, ledgerKey(cursor), 8)
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
    const entries = this.entries.write({ autoDestroy: true, capacity: 1 })
    entries.tryDeleteRange(entryKey(ledgerId, 0), entryKey(ledgerId + 1, 0))
    await entries.flush()
    const state = this.ledgers.write({ autoDestroy: true, capacity: 1 })
    state.tryDelete(ledgerKey(ledgerId))
    await state.flush()
  }

  /** Drops the range tombstones deleteLedger left, and the entries under them, from the SST files. */
  async compactLedgers(firstLedgerId: number, lastLedgerId: number): Promise<void> {
    assertId(firstLedgerId, 'firstLedgerId')
    assertId(lastLedgerId, 'lastLedgerId')
    assert(firstLedgerId <= lastLedgerId, `compact range ${firstLedgerId}..${lastLedgerId} is empty`)
    await this.entries.compactRange(entryKey(firstLedgerId, 0), entryKey(lastLedgerId + 1, 0))
    await this.ledgers.compactRange(ledgerKey(firstLedgerId), ledgerKey(lastLedgerId + 1))
  }

  async getMeta(key: string): Promise<Buffer | null> {
    return this.getOne(this.meta, Buffer.from(key, 'utf8'))
  }

  /** Durable only after the next flush(); a lost checkpoint record just means a longer replay. */
  async putMeta(key: string, value: Uint8Array): Promise<void> {
    const batch = this.meta.write({ autoDestroy: true, capacity: 1 })
    batch.tryPut(Buffer.from(key, 'utf8'), value)
    await batch.flush()
  }

  async flush(): Promise<void> {
    await Promise.all([this.entries.flush(), this.ledgers.flush(), this.meta.flush()])
  }

  /** Waits for reads and writes in flight; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.db.close()
    return this.closing
  }

  private async getOne(cf: RocksDB, key: Buffer): Promise<Buffer | null> {
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
