// Entry log compaction (BookKeeper's GarbageCollectorThread: minor and major compaction are the
// same pass with a lower or higher threshold). Deleted ledgers and entries put again leave dead
// bytes in their old logs; a sealed log whose live fraction is under the threshold is rewritten.
//
// One run:
//  1. boundary: the log being written is sealed (the next append starts a new one) while no index
//     mutation is in flight; only logs below the next id are candidates (nothing appends to them
//     any more, and every index entry pointing into them is written);
//  2. scan the index once: live bytes per candidate log; pick those under the threshold;
//  3. scan the index again for the picked logs' live entries (a group of logs per scan, so that
//     at most LIVE_ENTRIES_PER_SCAN are held; a log with more live entries than that on its own,
//     streamed from the scan); per log, COPY_CHUNK_ENTRIES at a time: read each (checksums verified),
//     append it to a new log, sync the new log ('copied' after the last chunk); move the index
//     entries that still point at the old copies (one step under the store's index lock, so a
//     delete or a new put in between wins) and flush the index ('indexed'); delete the old log
//     ('deleted'). A chunk's moves are made once its copies are synced, before the next chunk.
// Why no live entry is lost across a kill -9 anywhere in this: an index entry moves only to
// synced bytes of the new log, and the old log stays until every move is flushed; until then an
// index entry not yet moved (or moved but not flushed) points at the old log, which still exists.
// A new log left behind by a crash before 'indexed' holds no live entry or only copies the index
// also points at: the next run compacts or deletes it. A log that holds a damaged record is left
// as it is (its readable entries stay where they are; those of earlier chunks already moved).

import { QuireError } from '../machines/errors.ts'
import { LOG_HEADER_BYTES, RECORD_HEADER_BYTES, type EntryLogs, type LogWriter } from './entryLog.ts'
import { syncDir } from './syncDir.ts'
import type RocksDB from 'rocksdb-native'
import { decodeLocation, encodeLocation, entryKey, isLocation, readU64, type EntryLocation } from './entryLogIndex.ts'

export type CompactionStep = 'copied' | 'indexed' | 'deleted'

export interface CompactionResult {
  /** Logs rewritten (live entries copied) and deleted. */
  compacted: number
  /** Logs deleted with no live entry. */
  emptied: number
  /** Logs left alone because a record in them is damaged. */
  skipped: number
  entriesMoved: number
  bytesFreed: number
  /** The most live entries held in memory at once (bounded by the scan bound). */
  liveEntriesHeldMax: number
}

export interface CompactionTarget {
  logs: EntryLogs
  boundary(): Promise<number>
  scan(): AsyncIterable<{ ledgerId: number; entryId: number; value: Buffer }>
  move(moves: ReadonlyArray<{ ledgerId: number; entryId: number; from: Buffer; to: Buffer }>): Promise<number>
  flushIndex(): Promise<void>
}

interface Live {
  ledgerId: number
  entryId: number
  value: Buffer
  loc: EntryLocation
}

/** Bound on the live entries held in memory at once (a group of logs per index scan). */
export const LIVE_ENTRIES_PER_SCAN = 100_000
/**
 * Entries copied, synced and moved in the index at a time: what a copy holds besides its live
 * entries (data read, new locations) costs about 1 KB per entry in V8's heap; a log rewritten at
 * once with 800,000 live took a process from 135 MB to 840 MB, in chunks of 10,000 to 270 MB.
 */
export const COPY_CHUNK_ENTRIES = 10_000
/** Entries copied per append to the new log. */
const COPY_BATCH_BYTES = 4 * 1024 * 1024

export async function compactEntryLogs(
  t: CompactionTarget, threshold: number, onStep?: (step: CompactionStep, logId: number) => Promise<void>,
): Promise<CompactionResult> {
  const result: CompactionResult = { compacted: 0, emptied: 0, skipped: 0, entriesMoved: 0, bytesFreed: 0, liveEntriesHeldMax: 0 }
  const boundary = await t.boundary()
  const sizes = new Map<number, number>()
  for (const id of await t.logs.list()) {
    if (id >= boundary) continue
    const size = await t.logs.size(id)
    if (size !== null) sizes.set(id, size)
  }
  if (sizes.size === 0) return result
  const liveBytes = new Map<number, number>()
  const liveEntries = new Map<number, number>()
  for await (const { value } of t.scan()) {
    const loc = decodeLocation(value)
    if (!sizes.has(loc.logId)) continue
    liveBytes.set(loc.logId, (liveBytes.get(loc.logId) ?? 0) + RECORD_HEADER_BYTES + loc.length)
    liveEntries.set(loc.logId, (liveEntries.get(loc.logId) ?? 0) + 1)
  }
  const picked: number[] = []
  for (const [id, size] of sizes) {
    const live = liveBytes.get(id) ?? 0
    if (live === 0 || live / Math.max(1, size - LOG_HEADER_BYTES) < threshold) picked.push(id)
  }
  picked.sort((a, b) => a - b)
  // Groups of logs whose live entries together fit the bound: one index scan per group.
  let group: number[] = []
  let groupEntries = 0
  for (const id of picked) {
    const n = liveEntries.get(id) ?? 0
    if (group.length > 0 && groupEntries + n > LIVE_ENTRIES_PER_SCAN) {
      await compactGroup(t, group, groupEntries > LIVE_ENTRIES_PER_SCAN, sizes, result, onStep)
      group = []
      groupEntries = 0
    }
    group.push(id)
    groupEntries += n
  }
  if (group.length > 0) await compactGroup(t, group, groupEntries > LIVE_ENTRIES_PER_SCAN, sizes, result, onStep)
  return result
}

/** `chunked`: one log with more live entries than the bound, streamed from the scan in chunks. */
async function compactGroup(
  t: CompactionTarget, ids: number[], chunked: boolean, sizes: Map<number, number>, result: CompactionResult,
  onStep?: (step: CompactionStep, logId: number) => Promise<void>,
): Promise<void> {
  if (chunked) {
    await finish(t, ids[0]!, await rewrite(t, ids[0]!, liveChunks(t, ids[0]!, result), onStep), sizes, result, onStep)
    return
  }
  const picked = new Set(ids)
  const lives = new Map<number, Live[]>()
  let held = 0
  for await (const { ledgerId, entryId, value } of t.scan()) {
    const loc = decodeLocation(value)
    if (!picked.has(loc.logId)) continue
    let list = lives.get(loc.logId)
    if (!list) lives.set(loc.logId, (list = []))
    list.push({ ledgerId, entryId, value, loc })
    result.liveEntriesHeldMax = Math.max(result.liveEntriesHeldMax, ++held)
  }
  for (const id of ids) {
    const live = lives.get(id) ?? []
    lives.delete(id)
    await finish(t, id, live.length > 0 ? await rewrite(t, id, slices(live), onStep) : 'empty', sizes, result, onStep)
  }
}

/** A log's live entries in log order, COPY_CHUNK_ENTRIES at a time. */
async function* slices(live: Live[]): AsyncIterable<Live[]> {
  live.sort((a, b) => a.loc.offset - b.loc.offset)
  for (let i = 0; i < live.length; i += COPY_CHUNK_ENTRIES) yield live.slice(i, i + COPY_CHUNK_ENTRIES)
}

/** The log's live entries in index order, COPY_CHUNK_ENTRIES at a time, from one scan. */
async function* liveChunks(t: CompactionTarget, id: number, result: CompactionResult): AsyncIterable<Live[]> {
  let chunk: Live[] = []
  for await (const { ledgerId, entryId, value } of t.scan()) {
    const loc = decodeLocation(value)
    if (loc.logId !== id) continue
    chunk.push({ ledgerId, entryId, value, loc })
    result.liveEntriesHeldMax = Math.max(result.liveEntriesHeldMax, chunk.length)
    if (chunk.length >= COPY_CHUNK_ENTRIES) {
      yield chunk
      chunk = []
    }
  }
  if (chunk.length > 0) yield chunk
}

/** After a log's rewrite (entries moved; 'empty': nothing was live; null: damaged, left alone): deletes it. */
async function finish(
  t: CompactionTarget, id: number, moved: number | 'empty' | null, sizes: Map<number, number>, result: CompactionResult,
  onStep?: (step: CompactionStep, logId: number) => Promise<void>,
): Promise<void> {
  if (moved === null) {
    result.skipped++
    return
  }
  if (moved === 'empty') {
    result.emptied++
  } else {
    result.entriesMoved += moved
    result.compacted++
  }
  await t.logs.deleteLog(id)
  result.bytesFreed += sizes.get(id)!
  await onStep?.('deleted', id)
}

type Move = { ledgerId: number; entryId: number; from: Buffer; to: Buffer }

/**
 * Copies a log's live entries, chunk by chunk, to one new log and moves the index to the copies;
 * 'empty' when there were none, null when a record is damaged. A chunk's moves wait until its
 * copies are synced; the last chunk's until after the 'copied' step.
 */
async function rewrite(t: CompactionTarget, id: number, chunks: AsyncIterable<Live[]>, onStep?: (step: CompactionStep, logId: number) => Promise<void>): Promise<number | 'empty' | null> {
  let out: LogWriter | null = null
  let pending: Move[] = []
  let moved = 0
  try {
    for await (const live of chunks) {
      moved += await moveAll(t, pending)
      pending = []
      out ??= await t.logs.createWriter()
      const moves = await copyChunk(t, out, live)
      if (moves === null) return null
      // The new log's bytes and its name in the folder, before the index points into it.
      await out.sync()
      await syncDir(t.logs.dir)
      pending = moves
    }
  } finally {
    if (out !== null) await t.logs.closeWriter(out).catch(() => {})
  }
  if (out === null) return 'empty'
  await onStep?.('copied', id)
  moved += await moveAll(t, pending)
  await t.flushIndex()
  await onStep?.('indexed', id)
  return moved
}

/** Appends a chunk's entries (read in log order: sequential reads and read-ahead) to `out`; null when one is damaged. */
async function copyChunk(t: CompactionTarget, out: LogWriter, live: Live[]): Promise<Move[] | null> {
  live.sort((a, b) => a.loc.offset - b.loc.offset)
  const moves: Move[] = []
  let batch: Array<{ ledgerId: number; entryId: number; data: Buffer; from: Buffer }> = []
  let bytes = 0
  const flush = async (): Promise<void> => {
    const locs = await out.append(batch)
    batch.forEach((e, i) => moves.push({ ledgerId: e.ledgerId, entryId: e.entryId, from: e.from, to: encodeLocation(locs[i]!) }))
    batch = []
    bytes = 0
  }
  for (const e of live) {
    let data: Buffer
    try {
      data = await t.logs.read(e.loc, e.ledgerId, e.entryId)
    } catch (err) {
      if (err instanceof QuireError && err.code === 'ENTRY_LOG_DAMAGED') return null
      throw err
    }
    batch.push({ ledgerId: e.ledgerId, entryId: e.entryId, data, from: e.value })
    bytes += data.byteLength
    if (bytes >= COPY_BATCH_BYTES) await flush()
  }
  if (batch.length > 0) await flush()
  return moves
}

async function moveAll(t: CompactionTarget, moves: Move[]): Promise<number> {
  let moved = 0
  for (let i = 0; i < moves.length; i += 1000) moved += await t.move(moves.slice(i, i + 1000))
  return moved
}

/** Every index entry of `cf` (an entry store's `entries` CF) that points into an entry log, in key order. */
export async function* scanIndex(cf: RocksDB): AsyncIterable<{ ledgerId: number; entryId: number; value: Buffer }> {
  for await (const { key, value } of cf.iterator({})) {
    if (value === null || !isLocation(value)) continue
    yield { ledgerId: readU64(key, 0), entryId: readU64(key, 8), value }
  }
}

/**
 * Points the index entries still at `from` to `to`; entries deleted or put again meanwhile stay
 * as they are. The caller holds the store's index lock, so nothing changes between read and write.
 */
export async function moveIndex(cf: RocksDB, moves: ReadonlyArray<{ ledgerId: number; entryId: number; from: Buffer; to: Buffer }>): Promise<number> {
  if (moves.length === 0) return 0
  const read = cf.read({ autoDestroy: true, capacity: moves.length })
  const values = moves.map((m) => read.get(entryKey(m.ledgerId, m.entryId)))
  const [, ...now] = await Promise.all([read.flush(), ...values])
  const still = moves.filter((m, i) => now[i] !== null && now[i]!.equals(m.from))
  if (still.length === 0) return 0
  const batch = cf.write({ autoDestroy: true, capacity: still.length })
  for (const m of still) batch.tryPut(entryKey(m.ledgerId, m.entryId), m.to)
  await batch.flush()
  return still.length
}
