// Migration of an entry store from the format before entry logs (each entry's bytes as the value
// of its key in the `entries` column family) to entry logs with an index (storage/entryStore.ts).
// Chosen over refusing to start: a bookie upgraded in place keeps its data without an operator
// step, and the work is bounded (one copy of the payloads, then a compaction of the CF).
// Order, per chunk of keys: append the chunk's payloads to the current entry log, sync it, then
// overwrite the chunk's values with their index values. A crash at any point leaves every key
// holding either its old payload or an index value pointing at synced bytes; the next open goes
// on from where it stopped (index values are told apart from payloads, storage/entryLogIndex.ts),
// and payloads appended but not yet indexed are dead bytes that compaction reclaims. When every
// key is done, the CF is flushed and compacted (dropping the old payloads from the SST files) and
// the meta key `format` is written: from then on, opening checks nothing more.

import type RocksDB from 'rocksdb-native'
import type { EntryLogs } from './entryLog.ts'
import { encodeLocation, isLocation, readU64 } from './entryLogIndex.ts'
import type { StoredEntry } from './types.ts'

const FORMAT_KEY = Buffer.from('format', 'utf8')
const FORMAT = 'entry-logs-1'
const CHUNK_KEYS = 1000
const CHUNK_BYTES = 8 * 1024 * 1024

export interface MigrationResult {
  /** Entries whose payload was moved from RocksDB to an entry log. */
  entries: number
  bytes: number
  ms: number
}

export interface MigrationTarget {
  entries: RocksDB
  meta: RocksDB
  logs: EntryLogs
}

/** Migrates the store if it is in the old format; null when there was nothing to do. */
export async function migrateToEntryLogs(t: MigrationTarget, onChunk?: (entries: number) => Promise<void>): Promise<MigrationResult | null> {
  const format = await getOne(t.meta, FORMAT_KEY)
  if (format !== null && format.toString('utf8') === FORMAT) return null
  const started = performance.now()
  let entries = 0
  let bytes = 0
  let after: Buffer | null = null
  for (;;) {
    const chunk = await nextChunk(t.entries, after)
    if (chunk.keys.length === 0) break
    after = chunk.keys.at(-1)!
    if (chunk.legacy.length > 0) {
      const locs = await t.logs.append(chunk.legacy)
      await t.logs.sync()
      const batch = t.entries.write({ autoDestroy: true, capacity: chunk.legacy.length })
      for (let i = 0; i < chunk.legacy.length; i++) batch.tryPut(chunk.legacyKeys[i]!, encodeLocation(locs[i]!))
      await batch.flush()
      entries += chunk.legacy.length
      for (const e of chunk.legacy) bytes += e.data.byteLength
      await onChunk?.(entries)
    }
  }
  if (entries > 0) {
    await t.entries.flush()
    await t.entries.compactRange()
  }
  const batch = t.meta.write({ autoDestroy: true, capacity: 1 })
  batch.tryPut(FORMAT_KEY, Buffer.from(FORMAT, 'utf8'))
  await batch.flush()
  await t.meta.flush()
  return entries > 0 ? { entries, bytes, ms: Math.round(performance.now() - started) } : null
}

async function nextChunk(cf: RocksDB, after: Buffer | null): Promise<{ keys: Buffer[]; legacy: StoredEntry[]; legacyKeys: Buffer[] }> {
  const keys: Buffer[] = []
  const legacy: StoredEntry[] = []
  const legacyKeys: Buffer[] = []
  let size = 0
  for await (const { key, value } of cf.iterator(after === null ? {} : { gt: after })) {
    keys.push(key)
    if (value !== null && !isLocation(value)) {
      legacy.push({ ledgerId: readU64(key, 0), entryId: readU64(key, 8), data: value })
      legacyKeys.push(key)
      size += value.byteLength
    }
    if (keys.length >= CHUNK_KEYS || size >= CHUNK_BYTES) break
  }
  return { keys, legacy, legacyKeys }
}

async function getOne(cf: RocksDB, key: Buffer): Promise<Buffer | null> {
  const batch = cf.read({ autoDestroy: true, capacity: 1 })
  const value = batch.get(key)
  const [, result] = await Promise.all([batch.flush(), value])
  return result
}
