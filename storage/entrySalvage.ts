// Salvage of a RocksDB entry store whose SST files hold blocks that fail their checksums (bit rot,
// a bad sector): copy everything still readable into a fresh store, and name the entries lost.
//
// Why a copy: a damaged data block cannot be dropped from RocksDB through the binding. Every
// iterator whose seek lands on it fails (also seeks for *other* ledgers: each SST file's iterator
// is positioned, and one in a file wholly before or after the wanted range still reads its
// nearest block), and a compaction that takes the file as input fails with a background error
// that stops every later write until the database is reopened, and then again at the next
// compaction. Only a store without the block is healthy again.
//
// How: each column family is iterated in key order. Where the iterator fails, the damaged key
// range is bounded by seeks alone (a seek fails exactly when the first key at or after it lies in
// a damaged block): the smallest key from which a seek works again is found by doubling, then
// bisection, over the 128-bit key space. Keys inside that range are unknown; for the entries CF
// they are (ledgerId, entryId) pairs, so the entry ids of the ledgers the range touches are
// probed one by one with point reads, which only read the block that would hold that key: a
// value is copied (a newer copy in another file survives), a checksum failure names a damaged
// entry, absence is nothing. Invariants: nothing unreadable is copied; every key that a point
// read can still return inside a probed window is copied; the source is only read.
// Also here: opening a store's RocksDB (openDb), which first finishes a repair a crash interrupted.

import { access, mkdir, rename, rm } from 'node:fs/promises'
import RocksDB from 'rocksdb-native'

/** Column families of an entry store, in the order they are copied. */
export const COLUMN_FAMILIES = ['entries', 'ledgers', 'meta'] as const

export interface SalvageSource {
  entries: RocksDB
  ledgers: RocksDB
  meta: RocksDB
}

export interface SalvageResult {
  /** Entries whose stored copy could not be read back: (ledgerId, entryId). */
  damaged: Array<[number, number]>
  /** Keys copied, over all column families. */
  copied: number
  /** Damaged key ranges found (each one or more adjacent unreadable blocks). */
  ranges: number
}

const KEY_BITS = 128n
const KEY_END = 1n << KEY_BITS
const U64 = 1n << 64n
const ID_END = 2 ** 53
/** Entry ids probed after a damaged range's start when the range runs into another ledger. */
const OPEN_GAP_IDS = 1024
/** Bound on entry ids probed per ledger in one damaged range. */
const GAP_IDS_MAX = 65_536
const COPY_BATCH_KEYS = 1000
const COPY_BATCH_BYTES = 4 * 1024 * 1024

/**
 * True when `err` (or an error it wraps: `cause`, AggregateError's `errors`) is RocksDB's
 * Corruption status: a block checksum mismatch, a bad block or table. The binding maps it to EIO
 * with RocksDB's message, and a write refused after a failed compaction wraps it as `cause`.
 */
export function isCorruption(err: unknown, depth = 0): boolean {
  if (depth > 4 || err === null || typeof err !== 'object') return false
  const e = err as { message?: unknown; cause?: unknown; errors?: unknown }
  if (typeof e.message === 'string' && /corrupt|checksum mismatch|bad block|bad table/i.test(e.message)) return true
  if (isCorruption(e.cause, depth + 1)) return true
  return Array.isArray(e.errors) && e.errors.some((x) => isCorruption(x, depth + 1))
}

/**
 * Open (creating) the RocksDB store in `dir`, first completing a repair a crash interrupted,
 * with a message that says what went wrong.
 */
export async function openDb(dir: string, readOnly: boolean): Promise<RocksDB> {
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

function toBig(key: Buffer): bigint {
  let n = 0n
  for (let i = 0; i < 16; i++) n = (n << 8n) | BigInt(i < key.length ? key[i]! : 0)
  // Keys shorter than 16 bytes sort before their zero-padded form's successor: fine for bounds.
  return n
}

function toKey(n: bigint): Buffer {
  const key = Buffer.alloc(16)
  for (let i = 15; i >= 0; i--) {
    key[i] = Number(n & 0xffn)
    n >>= 8n
  }
  return key
}

/** The first key at or after `from` with its value (null: none), or 'damaged' when that read fails. */
async function firstAt(cf: RocksDB, from: bigint, values = true): Promise<{ key: Buffer; value: Buffer | null } | null | 'damaged'> {
  try {
    // limit 1 reads exactly one entry: no read-ahead into the blocks after it.
    for await (const item of cf.iterator({ gte: toKey(from) }, { limit: 1, values })) return item
    return null
  } catch (err) {
    if (isCorruption(err)) return 'damaged'
    throw err
  }
}

/** 'ok' when a seek at `from` works (whatever it finds), 'damaged' when it fails on corruption. */
async function seekAt(cf: RocksDB, from: bigint): Promise<'ok' | 'damaged'> {
  return (await firstAt(cf, from, false)) === 'damaged' ? 'damaged' : 'ok'
}

/** The smallest key after `bad` (a key whose seek fails) from which a seek works; KEY_END if none. */
async function endOfDamage(cf: RocksDB, bad: bigint): Promise<bigint> {
  let lo = bad
  let hi = KEY_END
  for (let step = 1n; bad + step < KEY_END; step *= 2n) {
    if ((await seekAt(cf, bad + step)) === 'ok') {
      hi = bad + step
      break
    }
    lo = bad + step
  }
  while (hi - lo > 1n) {
    const mid = (lo + hi) / 2n
    if ((await seekAt(cf, mid)) === 'ok') hi = mid
    else lo = mid
  }
  return hi
}

class Copier {
  copied = 0
  private keys: Array<[Buffer, Buffer]> = []
  private bytes = 0

  constructor(private readonly dst: RocksDB) {}

  async put(key: Buffer, value: Buffer): Promise<void> {
    this.keys.push([Buffer.from(key), Buffer.from(value)])
    this.bytes += key.length + value.length
    if (this.keys.length >= COPY_BATCH_KEYS || this.bytes >= COPY_BATCH_BYTES) await this.flush()
  }

  async flush(): Promise<void> {
    if (this.keys.length === 0) return
    const batch = this.dst.write({ autoDestroy: true, capacity: this.keys.length })
    for (const [k, v] of this.keys) batch.tryPut(k, v)
    this.copied += this.keys.length
    this.keys = []
    this.bytes = 0
    await batch.flush()
  }
}

/** One point read: the value, null when absent, 'damaged' on a checksum failure. */
async function pointRead(cf: RocksDB, key: Buffer): Promise<Buffer | null | 'damaged'> {
  const batch = cf.read({ autoDestroy: true, capacity: 1 })
  const value = batch.get(key)
  const [flushed, got] = await Promise.allSettled([batch.flush(), value])
  if (got.status === 'fulfilled') return got.value
  if (isCorruption(got.reason)) return 'damaged'
  throw flushed.status === 'rejected' ? flushed.reason : got.reason
}

/** Ledger ids with state in the ledgers CF strictly between `after` and `before` (best effort). */
async function ledgersBetween(ledgers: RocksDB, after: number, before: number): Promise<number[]> {
  if (before - after <= 1) return []
  const out: number[] = []
  const from = Buffer.alloc(8)
  from.writeBigUInt64BE(BigInt(after + 1))
  const to = Buffer.alloc(8)
  to.writeBigUInt64BE(BigInt(before))
  try {
    for await (const { key } of ledgers.iterator({ gte: from, lt: to }, { values: false })) {
      if (key.length === 8) out.push(Number(key.readBigUInt64BE(0)))
      if (out.length >= 10_000) break
    }
  } catch {
    // The ledgers CF is damaged too: probe only the range's own ends.
  }
  return out
}

/** Point-read the entry ids of every ledger the damaged range [lo, hi) touches. */
async function probeEntries(src: SalvageSource, lo: bigint, hi: bigint, out: Copier, damaged: Array<[number, number]>): Promise<void> {
  const split = (n: bigint): { l: number; e: number } => ({ l: Number(n / U64), e: Number(n % U64) })
  const a = split(lo)
  const b = split(hi === KEY_END ? KEY_END - 1n : hi)
  if (a.l >= ID_END) return
  const ledgerIds = [a.l, ...(await ledgersBetween(src.ledgers, a.l, Math.min(b.l, ID_END)))]
  if (b.l !== a.l && b.l < ID_END && hi !== KEY_END) ledgerIds.push(b.l)
  for (const l of ledgerIds) {
    const first = l === a.l ? Math.min(a.e, ID_END) : 0
    const end = l === b.l && hi !== KEY_END ? Math.min(b.e, first + GAP_IDS_MAX) : first + OPEN_GAP_IDS
    for (let e = first; e < Math.min(end, ID_END); e++) {
      const key = toKey(BigInt(l) * U64 + BigInt(e))
      const got = await pointRead(src.entries, key)
      if (got === 'damaged') damaged.push([l, e])
      else if (got !== null) await out.put(key, got)
    }
  }
}

/**
 * Copy one column family, skipping damaged ranges (handed to `onDamage` when given). A plain
 * iterator reads ahead, so where it fails the keys are walked one read at a time up to the damage,
 * past it, and then the plain iterator takes over again.
 */
async function copyFamily(
  cf: RocksDB, out: Copier, onDamage: ((lo: bigint, hi: bigint) => Promise<void>) | null,
): Promise<number> {
  let from = 0n
  let ranges = 0
  for (;;) {
    let last: bigint | null = null
    try {
      for await (const { key, value } of cf.iterator({ gte: toKey(from) })) {
        await out.put(key, value!)
        last = toBig(key)
      }
      return ranges
    } catch (err) {
      if (!isCorruption(err)) throw err
    }
    let at = last === null ? from : last + 1n
    for (;;) {
      const got = await firstAt(cf, at)
      if (got === null) return ranges
      if (got !== 'damaged') {
        await out.put(got.key, got.value!)
        at = toBig(got.key) + 1n
        continue
      }
      ranges++
      const good = await endOfDamage(cf, at)
      if (onDamage) await onDamage(at, good)
      if (good >= KEY_END) return ranges
      from = good
      break
    }
  }
}

/**
 * Copy what `src` can still read into a new store at `dstDir` (which must not exist), with the
 * damaged entries (those found by the copy, and `known()` as it is when the copy ends: reads go on
 * meanwhile) stored under the meta key `damagedKey`.
 */
export async function salvageInto(
  src: SalvageSource, dstDir: string, known: () => ReadonlyArray<[number, number]>, damagedKey: string,
): Promise<SalvageResult> {
  const dst = new RocksDB(dstDir, { columnFamilies: [...COLUMN_FAMILIES] })
  await dst.ready()
  try {
    const damaged: Array<[number, number]> = []
    let copied = 0
    let ranges = 0
    for (const name of COLUMN_FAMILIES) {
      const out = new Copier(dst.columnFamily(name))
      const probe = name === 'entries' ? (lo: bigint, hi: bigint) => probeEntries(src, lo, hi, out, damaged) : null
      ranges += await copyFamily(src[name], out, probe)
      await out.flush()
      copied += out.copied
    }
    damaged.push(...known())
    const unique = [...new Map(damaged.map(([l, e]) => [`${l}/${e}`, [l, e] as [number, number]])).values()]
      .sort((x, y) => x[0] - y[0] || x[1] - y[1])
    const meta = dst.columnFamily('meta').write({ autoDestroy: true, capacity: 1 })
    meta.tryPut(Buffer.from(damagedKey, 'utf8'), Buffer.from(JSON.stringify(unique)))
    await meta.flush()
    await Promise.all(COLUMN_FAMILIES.map((name) => dst.columnFamily(name).flush()))
    return { damaged: unique, copied, ranges }
  } finally {
    await dst.close()
  }
}
