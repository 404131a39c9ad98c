// Entry logs: append-only files holding entry payloads (BookKeeper's EntryLogger), indexed by
// RocksDB (storage/entryStore.ts): the logs of one store, reads with read-ahead. The layout of a
// log and its writer are in storage/entryLogWriter.ts.
// Invariants:
// - A log is written by one writer, sequentially, and never again once sealed (rolled over, or
//   the process stopped): every start writes to a new log, so a torn tail is only ever at the
//   end of a log nothing appends to any more.
// - Every record carries its ids and checksums: a read verifies them, and a torn, rotted or
//   misplaced record, a record past the end of its file or a missing file is a QuireError
//   ENTRY_LOG_DAMAGED naming the file, never "no such entry".
// - sync() makes every byte appended before it durable (fdatasync of each log written since the
//   last sync, then of the folder when a log was created): the index may only be flushed after.
// - Bounded: at most READERS_MAX open read handles and READ_CACHE_CHUNKS read-ahead chunks.

import { open, readdir, rm, mkdir, type FileHandle } from 'node:fs/promises'
import { syncDir } from './syncDir.ts'
import path from 'node:path'
import { crc32c } from '@node-rs/crc32'
import { QuireError, assert } from '../machines/errors.ts'
import { readU64, type EntryLocation } from './entryLogIndex.ts'
import type { StoredEntry } from './types.ts'
import { LogWriter, RECORD_HEADER_BYTES, logFileName } from './entryLogWriter.ts'

export { LOG_HEADER_BYTES, LogWriter, RECORD_HEADER_BYTES, logFileName } from './entryLogWriter.ts'

const NAME = /^entrylog-(\d{10})\.log$/
/** Default size at which the log being written is sealed and a new one started. */
export const DEFAULT_LOG_BYTES_MAX = 256 * 1024 * 1024
const READERS_MAX = 32
/** Read-ahead: a read of a smaller entry reads this much and keeps it for the next reads. */
const READ_AHEAD_BYTES = 64 * 1024
const READ_CACHE_CHUNKS = 16



interface Reader {
  fh: FileHandle
  refs: number
  dropped: boolean
}

interface Chunk {
  logId: number
  start: number
  bytes: Buffer
}

/** A read-ahead under way. */
interface PendingChunk {
  logId: number
  start: number
  /** Bytes asked for (the read may return fewer: the end of a log). */
  want: number
  bytes: Promise<Buffer>
}

export interface EntryLogsOptions {
  /** Seal the current log and start a new one past this size. */
  logBytesMax?: number
  /** Open without writing: no folder created, no log started; append throws. */
  readOnly?: boolean
}

/** The entry logs of one store: the log being written, sealed logs, reads with read-ahead. */
export class EntryLogs {
  private current: LogWriter | null = null
  /** Logs written since the last sync (the current one included once written to). */
  private unsynced = new Set<LogWriter>()
  /** Logs with a write handle: a read-ahead stops at their size (bytes past it may be half written). */
  private readonly writing = new Map<number, LogWriter>()
  private folderDirty = false
  private readonly readers = new Map<number, Reader>()
  private chunks: Chunk[] = []
  /** Read-aheads under way: a record inside one waits for it rather than reading its bytes again. */
  private readonly pending = new Set<PendingChunk>()
  private readonly logBytesMax: number
  private closed = false

  private constructor(readonly dir: string, private nextId: number, private readonly readOnly: boolean, opts: EntryLogsOptions) {
    this.logBytesMax = opts.logBytesMax ?? DEFAULT_LOG_BYTES_MAX
    assert(Number.isInteger(this.logBytesMax) && this.logBytesMax > 0, 'logBytesMax is a positive integer')
  }

  static async open(dir: string, opts: EntryLogsOptions = {}): Promise<EntryLogs> {
    if (!opts.readOnly) await mkdir(dir, { recursive: true })
    const ids = await listLogIds(dir)
    return new EntryLogs(dir, (ids.at(-1) ?? 0) + 1, opts.readOnly ?? false, opts)
  }

  file(id: number): string {
    return path.join(this.dir, logFileName(id))
  }

  /** Opened read-only: takes no appends (and so no compaction). */
  get isReadOnly(): boolean {
    return this.readOnly
  }

  /** The log appends go to now, or null before the first append. */
  get currentLogId(): number | null {
    return this.current?.id ?? null
  }

  /**
   * Seal the log being written (the next append starts a new one), so a compaction can take it.
   * Returns the id the next log will have: every log below it takes no more appends.
   */
  async seal(): Promise<number> {
    const sealed = this.current
    this.current = null
    if (sealed && !this.unsynced.has(sealed)) await this.closeWriter(sealed)
    return this.nextId
  }

  /** Log ids on disk, ascending. */
  list(): Promise<number[]> {
    return listLogIds(this.dir)
  }

  /** A new log for a compaction's output (never the current log). */
  async createWriter(): Promise<LogWriter> {
    assert(!this.readOnly, 'entry logs opened read-only take no writes')
    if (this.closed) throw new Error(`the entry logs in ${this.dir} are closed`)
    this.folderDirty = true
    const w = await LogWriter.create(this.dir, this.nextId++)
    this.writing.set(w.id, w)
    return w
  }

  /** A compaction's output is complete (and synced): its write handle goes. */
  async closeWriter(w: LogWriter): Promise<void> {
    assert(w !== this.current, 'the current log is closed by close()')
    this.unsynced.delete(w)
    this.writing.delete(w.id)
    await w.close()
  }

  /** Appends to the current log (sealing it first when full). Not durable before sync(). */
  async append(entries: readonly StoredEntry[]): Promise<EntryLocation[]> {
    if (this.readOnly) throw new Error(`the entry logs in ${this.dir} are open read-only`)
    // Sealed when full: closed now when already synced, else by the next sync().
    if (this.current && this.current.size >= this.logBytesMax) await this.seal()
    this.current ??= await this.createWriter()
    const writer = this.current
    this.unsynced.add(writer)
    return writer.append(entries)
  }

  /** Everything appended so far is durable when this resolves. */
  async sync(): Promise<void> {
    const writers = [...this.unsynced]
    this.unsynced.clear()
    const folder = this.folderDirty
    this.folderDirty = false
    try {
      for (const w of writers) await w.sync()
      if (folder) await syncDir(this.dir)
    } catch (err) {
      for (const w of writers) this.unsynced.add(w)
      this.folderDirty ||= folder
      throw err
    }
    // Sealed logs are done with: their write handles can go.
    for (const w of writers) if (w !== this.current) await this.closeWriter(w).catch(() => {})
  }

  /** Size of a log file in bytes, or null when it does not exist. */
  async size(id: number): Promise<number | null> {
    const fh = await open(this.file(id), 'r').catch(() => null)
    if (!fh) return null
    try {
      return (await fh.stat()).size
    } finally {
      await fh.close()
    }
  }

  /**
   * The payload of the record at `loc`, checked against its checksums and ids. Throws QuireError
   * ENTRY_LOG_DAMAGED naming the file when the file is missing, ends before the record, or the
   * record is not intact.
   */
  async read(loc: EntryLocation, ledgerId: number, entryId: number): Promise<Buffer> {
    const need = RECORD_HEADER_BYTES + loc.length
    // The read-ahead cache, else a read-ahead under way that covers the record, else a read of its
    // own, found or started before any await: records read together (EntryStore.readEntries)
    // share read-aheads.
    const under = this.pendingCovering(loc.logId, loc.offset, need)
    const shared = this.fromCache(loc.logId, loc.offset, need) ?? (under && await this.fromPending(under, loc.offset, need))
    const record = shared ?? await this.readRecord(loc, need, ledgerId, entryId)
    const problem = recordProblem(record, loc, ledgerId, entryId)
    if (problem !== null) throw this.damaged(loc, ledgerId, entryId, problem)
    const payload = record.subarray(RECORD_HEADER_BYTES, need)
    // A copy out of a shared chunk, so a caller keeping the entry does not keep the chunk.
    return shared || record.byteLength > need ? Buffer.from(payload) : payload
  }

  /** Remove a log whose entries are all dead or copied elsewhere (compaction). */
  async deleteLog(id: number): Promise<void> {
    assert(id !== this.current?.id, `log ${id} is being written`)
    // Sealed but not synced yet: its bytes are wanted no more.
    const w = this.writing.get(id)
    if (w) await this.closeWriter(w).catch(() => {})
    this.chunks = this.chunks.filter((c) => c.logId !== id)
    const r = this.readers.get(id)
    if (r) {
      this.readers.delete(id)
      r.dropped = true
      if (r.refs === 0) await r.fh.close().catch(() => {})
    }
    await rm(this.file(id), { force: true })
  }

  async close(): Promise<void> {
    this.closed = true
    const writers = new Set(this.unsynced)
    if (this.current) writers.add(this.current)
    this.current = null
    this.unsynced.clear()
    for (const w of this.writing.values()) writers.add(w)
    this.writing.clear()
    for (const w of writers) await w.close().catch(() => {})
    for (const r of this.readers.values()) if (r.refs === 0) await r.fh.close().catch(() => {})
    this.readers.clear()
    this.chunks = []
  }

  /** Reads the record with read-ahead, listed in `pending` (synchronously) until the bytes are in. */
  private readRecord(loc: EntryLocation, need: number, ledgerId: number, entryId: number): Promise<Buffer> {
    const writer = this.writing.get(loc.logId)
    if (writer !== undefined && loc.offset + need > writer.writtenEnd) return this.readStaged(writer, loc, need, ledgerId, entryId)
    // Never past the written end of a log being written: bytes beyond may be half written.
    const stable = writer?.writtenEnd ?? Infinity
    const want = Math.max(need, Math.min(need < READ_AHEAD_BYTES ? READ_AHEAD_BYTES : 0, stable - loc.offset))
    const p: PendingChunk = { logId: loc.logId, start: loc.offset, want, bytes: this.readAt(loc, need, want, ledgerId, entryId) }
    this.pending.add(p)
    const done = (): void => { this.pending.delete(p) }
    p.bytes.then(done, done)
    return p.bytes
  }

  /**
   * A record of a log being written that is staged, in whole or in its last part: that part is
   * copied out at once (before the stage can move on), the rest read from the file.
   */
  private async readStaged(writer: LogWriter, loc: EntryLocation, need: number, ledgerId: number, entryId: number): Promise<Buffer> {
    if (loc.offset + need > writer.size) {
      throw this.damaged(loc, ledgerId, entryId, `the log being written ends at byte ${writer.size}, before the end of the record at offset ${loc.offset} (${need} bytes)`)
    }
    const record = Buffer.allocUnsafe(need)
    const onDisk = writer.copyStaged(loc.offset, need, record, 0)
    if (onDisk > 0) {
      const written = await this.readAt(loc, onDisk, onDisk, ledgerId, entryId)
      written.copy(record, 0)
    }
    return record
  }

  private async readAt(loc: EntryLocation, need: number, want: number, ledgerId: number, entryId: number): Promise<Buffer> {
    const reader = await this.reader(loc.logId, ledgerId, entryId, loc)
    try {
      const buf = Buffer.allocUnsafe(want)
      const { bytesRead } = await reader.fh.read(buf, 0, want, loc.offset)
      if (bytesRead < need) {
        throw this.damaged(loc, ledgerId, entryId, `the file ends at byte ${loc.offset + bytesRead}, before the end of the record at offset ${loc.offset} (${need} bytes)`)
      }
      if (bytesRead > need) this.keepChunk({ logId: loc.logId, start: loc.offset, bytes: buf.subarray(0, bytesRead) })
      return buf.subarray(0, bytesRead)
    } finally {
      this.release(loc.logId, reader)
    }
  }

  private async reader(id: number, ledgerId: number, entryId: number, loc: EntryLocation): Promise<Reader> {
    let r = this.readers.get(id)
    if (r) {
      // Most recently used last.
      this.readers.delete(id)
      this.readers.set(id, r)
    } else {
      const fh = await open(this.file(id), 'r').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw this.damaged(loc, ledgerId, entryId, 'the file is missing')
        throw err
      })
      // Opened meanwhile by another read: use that one. Either way the reference is taken before
      // anything can evict the handle (an eviction closes handles nobody holds: a new handle
      // evicted at once while 32 others were in use went on to read a closed file).
      const other = this.readers.get(id)
      if (other) {
        other.refs++
        await fh.close()
        return other
      }
      r = { fh, refs: 1, dropped: false }
      this.readers.set(id, r)
      this.evictReaders()
      return r
    }
    r.refs++
    return r
  }

  private release(id: number, r: Reader): void {
    r.refs--
    if (r.refs === 0 && r.dropped) void r.fh.close().catch(() => {})
    if (this.readers.get(id) === r) this.evictReaders()
  }

  private evictReaders(): void {
    for (const [id, r] of this.readers) {
      if (this.readers.size <= READERS_MAX) return
      if (r.refs > 0) continue
      this.readers.delete(id)
      void r.fh.close().catch(() => {})
    }
  }

  private fromCache(logId: number, offset: number, need: number): Buffer | null {
    for (const c of this.chunks) {
      if (c.logId === logId && offset >= c.start && offset + need <= c.start + c.bytes.byteLength) {
        return c.bytes.subarray(offset - c.start, offset - c.start + need)
      }
    }
    return null
  }

  private pendingCovering(logId: number, offset: number, need: number): PendingChunk | null {
    for (const p of this.pending) if (p.logId === logId && offset >= p.start && offset + need <= p.start + p.want) return p
    return null
  }

  /** The record's bytes from a read-ahead under way; null when it failed or came back short (then read on its own). */
  private async fromPending(p: PendingChunk, offset: number, need: number): Promise<Buffer | null> {
    const bytes = await p.bytes.catch(() => null)
    if (bytes === null || offset + need > p.start + bytes.byteLength) return null
    return bytes.subarray(offset - p.start, offset - p.start + need)
  }

  private keepChunk(c: Chunk): void {
    this.chunks.push(c)
    if (this.chunks.length > READ_CACHE_CHUNKS) this.chunks.shift()
  }

  private damaged(loc: EntryLocation, ledgerId: number, entryId: number, problem: string): QuireError {
    const file = this.file(loc.logId)
    return new QuireError('ENTRY_LOG_DAMAGED', `entry log ${file}: ${problem} (entry ${entryId} of ledger ${ledgerId}, indexed at offset ${loc.offset}, ${loc.length} bytes)`,
      { file, logId: loc.logId, offset: loc.offset, length: loc.length, ledgerId, entryId })
  }
}

/** Why the record bytes are not the intact record of (ledgerId, entryId) at `loc`, or null. */
function recordProblem(record: Buffer, loc: EntryLocation, ledgerId: number, entryId: number): string | null {
  if (record.readUInt32BE(24) !== crc32c(record.subarray(0, 24))) return 'the record header fails its checksum (torn or damaged)'
  if (record.readUInt32BE(0) !== loc.length) return `the record holds ${record.readUInt32BE(0)} bytes, the index says ${loc.length}`
  if (readU64(record, 8) !== ledgerId || readU64(record, 16) !== entryId) {
    return `the record is entry ${readU64(record, 16)} of ledger ${readU64(record, 8)}`
  }
  const payload = record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + loc.length)
  if (record.readUInt32BE(4) !== crc32c(payload)) return 'the payload fails its checksum (torn or damaged)'
  return null
}

async function listLogIds(dir: string): Promise<number[]> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[]
    throw err
  })
  const ids: number[] = []
  for (const n of names) {
    const m = NAME.exec(n)
    if (m) ids.push(Number(m[1]))
  }
  return ids.sort((a, b) => a - b)
}
