// The bookie's journal: the write-ahead log. A bookie acknowledges an add only after the journal
// record holding it is covered by an fdatasync, so everything here serves one promise: a resolved
// `append` survives a crash, and replay gives back exactly the synced records, in order.
//
// On disk: segment files `journal-<12-digit segment>.log`, each a run of records framed as
// `[u32 BE payload length][u32 BE crc32c(payload)][payload]`. Invariants:
// - Records are only appended; a position is (segment, offset just past the record).
// - One flush in flight at a time: one O_DSYNC write (durable on return, like write + fdatasync)
//   per group, into zero-filled preallocated space; a group's promises
//   resolve only after its sync, in append order, with strictly increasing positions.
// - Segments roll only between groups, and each open starts a fresh segment, so a torn write can
//   only sit at the end of the newest segment that has data. Replay truncates it there (and syncs
//   the truncation) so later records never follow garbage.
// - After a failed write or sync the journal is failed for good: a failed fsync may have dropped
//   dirty pages, so retrying could ack data that is not on disk.
// Replay before `openJournal`: replay may truncate the newest segment, which must not be open.

import { constants, writeSync } from 'node:fs'
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { crc32c } from '@node-rs/crc32'
import { journalMetrics } from '../actors/metrics.ts'
import { QuireError, assert } from '../machines/errors.ts'
import type { Journal, JournalPosition } from './types.ts'

export const RECORD_HEADER_BYTES = 8
/** No record is larger; a bigger length field is corruption, not a record. */
export const RECORD_BYTES_MAX = 64 * 1024 * 1024
/** Zero-filled ahead of the records of the current segment. */
const PREALLOCATE_BYTES = 4 * 1024 * 1024
const READ_CHUNK_BYTES = 1024 * 1024
const SEGMENT_NAME = /^journal-(\d{12})\.log$/

export interface JournalOptions {
  /** Longest time the oldest waiting record waits before its group is flushed. */
  groupWaitMs?: number
  /** Flush as soon as this many framed bytes wait. */
  groupBytesMax?: number
  /** Start a new segment file once the current one holds this many bytes. */
  segmentBytesMax?: number
}

export function segmentFileName(segment: number): string {
  return `journal-${String(segment).padStart(12, '0')}.log`
}

/** Segment numbers present in `dir`, ascending; [] when the directory does not exist. */
export async function listSegments(dir: string): Promise<number[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return []
    throw err
  }
  const segments: number[] = []
  for (const name of names) {
    const digits = SEGMENT_NAME.exec(name)?.[1]
    if (digits !== undefined) segments.push(Number(digits))
  }
  return segments.sort((a, b) => a - b)
}

// ---------------------------------------------------------------------------------------------
// Replay

/**
 * Each good record from `from` (or from the first segment when null), in order, with the
 * position just past it. A bad record at the end of the newest segment with data is a torn tail:
 * replay stops and truncates the file there. Any other bad record throws CORRUPT_JOURNAL.
 */
export async function* replayJournal(
  dir: string,
  from: JournalPosition | null,
): AsyncGenerator<{ record: Buffer; position: JournalPosition }> {
  const all = await listSegments(dir)
  const segments = from === null ? all : all.filter((s) => s >= from.segment)
  checkNoGaps(dir, segments, from)
  const tailIndex = await indexOfTailSegment(dir, segments)
  for (const [i, segment] of segments.entries()) {
    const start = from !== null && segment === from.segment ? from.offset : 0
    yield* replaySegment(dir, segment, start, i >= tailIndex)
  }
}

/** A missing segment in the middle means lost records; never skip over it silently. */
function checkNoGaps(dir: string, segments: readonly number[], from: JournalPosition | null): void {
  const first = segments[0]
  if (from !== null && first !== undefined && first !== from.segment) {
    throw corrupt(join(dir, segmentFileName(from.segment)), from.offset, 'replay starts in a segment file that is missing')
  }
  for (let i = 1; i < segments.length; i++) {
    const expected = (segments[i - 1] ?? 0) + 1
    if (segments[i] !== expected) {
      throw corrupt(join(dir, segmentFileName(expected)), 0, 'segment file is missing between its neighbours')
    }
  }
}

/**
 * Index of the segment whose end may be torn: the last one, or the last non-empty one when only
 * empty segments follow it (an open that crashed before its first write leaves an empty file;
 * nothing after the torn record was ever written, so it is still the tail).
 */
async function indexOfTailSegment(dir: string, segments: readonly number[]): Promise<number> {
  for (let i = segments.length - 1; i > 0; i--) {
    const { size } = await stat(join(dir, segmentFileName(segments[i] ?? 0)))
    if (size > 0) return i
  }
  return 0
}

async function* replaySegment(
  dir: string,
  segment: number,
  start: number,
  mayBeTorn: boolean,
): AsyncGenerator<{ record: Buffer; position: JournalPosition }> {
  const file = join(dir, segmentFileName(segment))
  const fh = await open(file, mayBeTorn ? 'r+' : 'r')
  try {
    const reader = new SegmentReader(fh, (await fh.stat()).size)
    if (start > reader.size) {
      throw corrupt(file, start, `replay starts past the end of the file (${reader.size} bytes)`)
    }
    let offset = start
    while (offset < reader.size) {
      const parsed = await parseRecord(reader, offset)
      if (parsed.ok) {
        offset = parsed.end
        yield { record: Buffer.from(parsed.payload), position: { segment, offset } }
        continue
      }
      if (mayBeTorn && (parsed.end >= reader.size || (await reader.zeroFrom(parsed.end)))) {
        // The torn tail of an interrupted group write: nothing in it was acknowledged. Sync the
        // truncation, or a crash could bring the garbage back in front of newer segments.
        await fh.truncate(offset)
        await fh.sync()
        return
      }
      const after = reader.size - Math.min(parsed.end, reader.size)
      throw corrupt(file, offset, `${parsed.reason}, with ${after} bytes after it`)
    }
  } finally {
    await fh.close()
  }
}

type Parsed =
  | { ok: true; payload: Buffer; end: number }
  | { ok: false; reason: string; end: number }

async function parseRecord(reader: SegmentReader, offset: number): Promise<Parsed> {
  if (reader.size - offset < RECORD_HEADER_BYTES) {
    return { ok: false, reason: 'incomplete record header', end: offset + RECORD_HEADER_BYTES }
  }
  const header = await reader.bytes(offset, RECORD_HEADER_BYTES)
  const length = header.readUInt32BE(0)
  const end = offset + RECORD_HEADER_BYTES + length
  // Zero is never a valid length (append refuses empty records): a zero-filled tail would
  // otherwise read as an endless run of valid empty records, since crc32c('') is 0.
  if (length === 0 || length > RECORD_BYTES_MAX) return { ok: false, reason: `bad record length ${length}`, end }
  if (end > reader.size) return { ok: false, reason: `record length ${length} runs past end of file`, end }
  const payload = await reader.bytes(offset + RECORD_HEADER_BYTES, length)
  if (crc32c(payload) !== header.readUInt32BE(4)) return { ok: false, reason: 'record fails its crc32c', end }
  return { ok: true, payload, end }
}

/** Buffered positional reads, so replaying small records is not two syscalls each. */
class SegmentReader {
  private window = Buffer.alloc(0)
  private windowStart = 0

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** Bytes [pos, pos + n) of the file; shares memory with the read buffer. */
  async bytes(pos: number, n: number): Promise<Buffer> {
    assert(pos >= 0 && n >= 0 && pos + n <= this.size, `read [${pos}, ${pos + n}) inside ${this.size} bytes`)
    const at = pos - this.windowStart
    if (at >= 0 && at + n <= this.window.length) return this.window.subarray(at, at + n)
    const length = Math.min(this.size - pos, Math.max(n, READ_CHUNK_BYTES))
    const buf = Buffer.allocUnsafe(length)
    for (let filled = 0; filled < length; ) {
      const { bytesRead } = await this.fh.read(buf, filled, length - filled, pos + filled)
      if (bytesRead === 0) throw new Error(`journal file shrank while being replayed (at byte ${pos + filled})`)
      filled += bytesRead
    }
    this.window = buf
    this.windowStart = pos
    return buf.subarray(0, n)
  }

  /** True when every byte from `pos` to the end of the file is zero. */
  async zeroFrom(pos: number): Promise<boolean> {
    for (let p = pos; p < this.size; p += READ_CHUNK_BYTES) {
      const chunk = await this.bytes(p, Math.min(READ_CHUNK_BYTES, this.size - p))
      if (chunk.some((b) => b !== 0)) return false
    }
    return true
  }
}

function corrupt(file: string, offset: number, why: string): QuireError {
  return new QuireError('CORRUPT_JOURNAL', `journal ${file} is corrupt at byte ${offset}: ${why}`, { file, offset })
}

// ---------------------------------------------------------------------------------------------
// Appending

/** Creates `dir` if needed and starts a new segment one past the highest existing one. */
export async function openJournal(dir: string, opts: JournalOptions = {}): Promise<FileJournal> {
  const options = journalOptions(opts)
  const created = await mkdir(dir, { recursive: true })
  if (created !== undefined) await syncNewDirs(resolve(dir), resolve(created))
  const segment = ((await listSegments(dir)).at(-1) ?? -1) + 1
  const fh = await createSegment(dir, segment)
  return new FileJournal(dir, segment, fh, options)
}

function journalOptions(opts: JournalOptions): Required<JournalOptions> {
  const options = {
    groupWaitMs: opts.groupWaitMs ?? 1,
    groupBytesMax: opts.groupBytesMax ?? 512 * 1024,
    segmentBytesMax: opts.segmentBytesMax ?? 64 * 1024 * 1024,
  }
  const ok =
    Number.isFinite(options.groupWaitMs) &&
    options.groupWaitMs >= 0 &&
    Number.isSafeInteger(options.groupBytesMax) &&
    options.groupBytesMax >= 1 &&
    Number.isSafeInteger(options.segmentBytesMax) &&
    options.segmentBytesMax >= 1
  if (!ok) throw new QuireError('INVALID_CONFIG', `journal options out of range: ${JSON.stringify(options)}`, options)
  return options
}

interface Waiting {
  frame: Buffer
  resolve(position: JournalPosition): void
  reject(err: Error): void
}

/** The real journal. Build it with `openJournal`. */
export class FileJournal implements Journal {
  readonly stats = { syncs: 0, records: 0, bytes: 0 }
  private waiting: Waiting[] = []
  private waitingBytes = 0
  /** performance.now() when the oldest waiting record arrived. */
  private oldestAt = 0
  private timer: NodeJS.Timeout | null = null
  private flushing: Promise<void> | null = null
  private failure: Error | null = null
  private closed = false
  private closing: Promise<void> | null = null
  private offset = 0
  /** Bytes of the current segment already zero-filled, and the zero-fill under way. */
  private allocated = 0
  private preallocating: Promise<void> | null = null
  private synced: JournalPosition

  constructor(
    readonly dir: string,
    private segment: number,
    private fh: FileHandle,
    private readonly options: Required<JournalOptions>,
  ) {
    this.synced = { segment, offset: 0 }
  }

  get syncedPosition(): JournalPosition {
    return this.synced
  }

  get pendingBytes(): number {
    return this.waitingBytes
  }

  async append(record: Uint8Array): Promise<JournalPosition> {
    if (this.closed) throw new Error(`journal ${this.dir} is closed`)
    if (this.failure !== null) throw this.failedError()
    assert(record.length > 0 && record.length <= RECORD_BYTES_MAX, `journal record of ${record.length} bytes`)
    // Copy now: the caller may reuse its buffer before the group is written.
    const frame = Buffer.allocUnsafe(RECORD_HEADER_BYTES + record.length)
    frame.writeUInt32BE(record.length, 0)
    frame.set(record, RECORD_HEADER_BYTES)
    frame.writeUInt32BE(crc32c(frame.subarray(RECORD_HEADER_BYTES)), 4)
    return new Promise<JournalPosition>((resolve, reject) => {
      if (this.waiting.length === 0) this.oldestAt = performance.now()
      this.waiting.push({ frame, resolve, reject })
      this.waitingBytes += frame.length
      this.kick(false)
    })
  }

  /** Starts a flush when one is due and none is in flight, else makes sure a timer will. */
  private kick(deadlinePassed: boolean): void {
    if (this.flushing !== null || this.waiting.length === 0) return
    const waitedMs = performance.now() - this.oldestAt
    const due =
      deadlinePassed ||
      this.closed ||
      this.waitingBytes >= this.options.groupBytesMax ||
      waitedMs >= this.options.groupWaitMs
    if (due) {
      this.clearTimer()
      // The flush starts once the current callback and its promise reactions are done (a
      // microtask queued now runs after them), so every record appended while handling the
      // messages of one socket read joins the group; records that arrive while it writes form the
      // next one. flushGroup never rejects; a finished flush looks at what arrived meanwhile.
      this.flushing = new Promise<void>((r) => queueMicrotask(r)).then(() => this.flushGroup()).finally(() => {
        this.flushing = null
        this.kick(false)
      })
    } else if (this.timer === null) {
      // The timer always belongs to the current waiting group: starting a flush clears it.
      this.timer = setTimeout(() => {
        this.timer = null
        this.kick(true)
      }, this.options.groupWaitMs - waitedMs)
    }
  }

  private async flushGroup(): Promise<void> {
    const group = this.waiting
    const bytes = this.waitingBytes
    this.waiting = []
    this.waitingBytes = 0
    let syncStartedAt = 0
    try {
      if (this.failure !== null) throw this.failedError()
      if (this.offset >= this.options.segmentBytesMax) await this.roll()
      if (this.offset + bytes > this.allocated) await this.preallocate(this.offset + bytes)
      const data = group.length === 1 ? group[0]!.frame : Buffer.concat(group.map((w) => w.frame), bytes)
      syncStartedAt = performance.now()
      // The file is opened O_DSYNC: the write returns once the data is durable, as write +
      // fdatasync would, in one call instead of two; over preallocated zeros no size change has
      // to be synced either. It is written synchronously on purpose: the bookie has nothing to
      // acknowledge before it returns, and two thread-pool hand-offs cost more than the wait.
      writeFullySync(this.fh.fd, data, this.offset)
    } catch (err) {
      this.failure ??= err instanceof Error ? err : new Error(String(err))
      for (const w of group) w.reject(this.failure)
      return
    }
    journalMetrics.groupCommitted(group.length, bytes, performance.now() - syncStartedAt)
    let offset = this.offset
    this.offset += bytes
    this.synced = { segment: this.segment, offset: this.offset }
    this.stats.syncs += 1
    this.stats.records += group.length
    this.stats.bytes += bytes
    for (const w of group) {
      offset += w.frame.length
      w.resolve({ segment: this.segment, offset })
    }
    // Zero-fill the next stretch in the background, before a group has to wait for it.
    if (this.allocated - this.offset < PREALLOCATE_BYTES / 2 && this.preallocating === null) {
      void this.preallocate(this.allocated + 1).catch(() => {})
    }
  }

  /**
   * Zero-fill the segment ahead of the records (BookKeeper preallocates its journal too), so a
   * record write never grows the file and its sync carries no metadata. Replay reads a run of
   * zeros after the last record as the end of the journal.
   */
  private async preallocate(needed: number): Promise<void> {
    while (this.preallocating !== null) await this.preallocating
    if (needed <= this.allocated) return
    const fh = this.fh
    const from = this.allocated
    const end = Math.max(needed, from + PREALLOCATE_BYTES)
    this.preallocating = writeFully(fh, Buffer.alloc(end - from), from)
    try {
      await this.preallocating
      if (fh === this.fh) this.allocated = Math.max(this.allocated, end)
    } finally {
      this.preallocating = null
    }
  }

  /** Cut the preallocated zeros off a segment that is done, so only the last one ever has them. */
  private async seal(fh: FileHandle, length: number): Promise<void> {
    await fh.truncate(length)
    await fh.datasync()
    await fh.close()
  }

  private async roll(): Promise<void> {
    while (this.preallocating !== null) await this.preallocating.catch(() => {})
    // Seal the old segment before the new one exists: replay treats a bad tail in any segment
    // but the last as corruption.
    await this.seal(this.fh, this.offset)
    const next = this.segment + 1
    this.fh = await createSegment(this.dir, next)
    this.segment = next
    this.offset = 0
    this.allocated = 0
  }

  private failedError(): Error {
    const cause = this.failure
    return new Error(`journal ${this.dir} failed (${cause?.message}); it takes no more appends`, { cause })
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /** Deletes segment files numbered below `position.segment`, never the current one. */
  async trimBefore(position: JournalPosition): Promise<void> {
    assert(position.segment <= this.segment, `trim position ${position.segment} is not past the current segment ${this.segment}`)
    for (const segment of await listSegments(this.dir)) {
      if (segment >= position.segment || segment >= this.segment) break
      // No directory sync: a deletion lost in a crash only leaves a file replay skips anyway.
      await unlink(join(this.dir, segmentFileName(segment))).catch((err: unknown) => {
        if (!isErrno(err, 'ENOENT')) throw err
      })
    }
  }

  close(): Promise<void> {
    if (this.closing === null) {
      this.closed = true
      this.closing = this.shutdown()
    }
    return this.closing
  }

  private async shutdown(): Promise<void> {
    this.kick(true)
    while (this.flushing !== null) await this.flushing
    this.clearTimer()
    while (this.preallocating !== null) await this.preallocating.catch(() => {})
    if (this.failure === null) await this.seal(this.fh, this.offset)
    else await this.fh.close()
  }
}

function writeFullySync(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length; ) {
    const n = writeSync(fd, data, done, data.length - done, position + done)
    assert(n > 0, 'a file write without an error wrote no bytes')
    done += n
  }
}

async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done)
    assert(bytesWritten > 0, 'a file write without an error wrote no bytes')
    done += bytesWritten
  }
}

/** A new, empty segment whose directory entry is durable before any record goes in it. */
async function createSegment(dir: string, segment: number): Promise<FileHandle> {
  // O_EXCL: never reuse a file another journal (or an earlier run) wrote. O_DSYNC: every write
  // is durable when it returns (see flushGroup).
  const fh = await open(join(dir, segmentFileName(segment)), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC)
  try {
    await syncDir(dir)
  } catch (err) {
    await fh.close()
    throw err
  }
  return fh
}

/** `mkdir -p` made `created` .. `dir`; make each new entry durable in its parent. */
async function syncNewDirs(dir: string, created: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    await syncDir(dirname(d))
    if (d === created || dirname(d) === d) return
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code
}
