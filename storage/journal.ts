// The bookie's journal: the write-ahead log. A bookie acknowledges an add only after the journal
// record holding it is covered by an fdatasync, so everything here serves one promise: a resolved
// `append` survives a crash, and replay gives back exactly the synced records, in order.
//
// On disk (journal format 2): segment files `journal-<12-digit segment>.log`. Each opens with a
// 16-byte segment header `["QJNL"][u32 BE format version = 2][u32 0][u32 crc32c(bytes 0-11)]`,
// then a run of records, each a 16-byte record header and its payload:
//   [u32 payload length][u32 group offset][u32 crc32c(payload)][u32 crc32c(header bytes 0-11)][payload]
// The group offset is the distance in bytes from the start of the group write the record was
// part of to the record's start (0 for the first record of a group). Because the header has its
// own checksum, a length is trusted before it is used, and every record says which write it came
// from. Invariants:
// - Records are only appended; a position is (segment, offset just past the record); a segment's
//   first record starts at byte 16. A group write holds at most GROUP_BYTES_MAX bytes, so the
//   group offset fits its u32. A scan for intact records (below) runs only on damage.
// - One flush in flight at a time: one O_DSYNC write (durable on return, like write + fdatasync)
//   per group, into zero-filled preallocated space; a group's promises resolve only after its
//   sync, in append order, with strictly increasing positions. So when an intact record of one
//   group is on disk, every earlier group's write had completed: it was synced, maybe acked.
// - Segments roll only between groups, a sealed segment is cut to its last record, and each open
//   starts a fresh segment (O_EXCL, header synced before any record), so a torn write can only
//   be the last group of the newest segment that holds records.
// - Replay classifies damage (a record whose header or payload fails its checksum, or that runs
//   past the end of the file) precisely. It is the torn end of the journal only when it lies in
//   the newest segment with records and no intact record of a *later* group follows it anywhere
//   (what follows is zero-filled space or remains of that same last write, which a power loss may
//   have persisted in any order). Replay then truncates the file there and syncs the truncation,
//   so later records never follow garbage. Any other damage is CORRUPT_JOURNAL naming the file
//   and offset: an acknowledged record may be lost, and a human must look.
// - Damage inside the last group cannot be told apart from a torn write and ends the journal;
//   what it drops was acknowledged only if the disk rotted it after the sync, the case of a lost
//   disk that the write quorum covers.
// - Segments without a format 2 header (written before journal format 2, or not a journal) are
//   refused with CORRUPT_JOURNAL, unless replay has nothing to read in them (a bookie stopped
//   cleanly checkpoints at the end of its last segment, so it upgrades without a refusal).
// - After a failed write or sync the journal is failed for good: a failed fsync may have dropped
//   dirty pages, so retrying could ack data that is not on disk.
// Replay before `openJournal`: replay may truncate the newest segment, which must not be open.

import { constants, writeSync } from 'node:fs'
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { crc32c } from '@node-rs/crc32'
import { QuireError, assert } from '../machines/errors.ts'
import { JOURNAL_RECORD_HEADER_BYTES, JOURNAL_SEGMENT_HEADER_BYTES, type Journal, type JournalPosition } from './types.ts'

export const RECORD_HEADER_BYTES = JOURNAL_RECORD_HEADER_BYTES
export const SEGMENT_HEADER_BYTES = JOURNAL_SEGMENT_HEADER_BYTES
/** The format this code writes and the only one it replays. */
export const JOURNAL_FORMAT_VERSION = 2
const SEGMENT_MAGIC = Buffer.from('QJNL', 'latin1')
/** No record is larger; a bigger length field is corruption, not a record. */
export const RECORD_BYTES_MAX = 64 * 1024 * 1024
/** A group write takes at most this many bytes (more wait for the next one): group offsets are u32. */
const GROUP_BYTES_MAX = 256 * 1024 * 1024
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
  /**
   * Test hook, not a setting (no flag, no environment variable, absent from the settings table):
   * awaited before each group's durable write, so a test can hold the sync and check that
   * nothing is acknowledged meanwhile. The group waits, and later records queue, until it
   * resolves; if it rejects, the group fails like a failed write.
   */
  beforeSync?: (group: { segment: number; records: number; bytes: number }) => Promise<void> | void
  /** Told of each durable group (actors/metrics.ts's journalMetrics in a bookie); default: nobody. */
  metrics?: JournalMetrics
}

export interface JournalMetrics {
  /** A group of `records` (`bytes` framed) is on disk; its write took `syncMs`. */
  groupCommitted(records: number, bytes: number, syncMs: number): void
}

const NO_JOURNAL_METRICS: JournalMetrics = { groupCommitted() {} }

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
 * position just past it. The torn end of the last group written ends the journal: replay stops
 * and truncates the file there. Any other damage throws CORRUPT_JOURNAL (see the file header).
 */
export async function* replayJournal(
  dir: string,
  from: JournalPosition | null,
  ending?: ReplayEnding,
): AsyncGenerator<{ record: Buffer; position: JournalPosition }> {
  const all = await listSegments(dir)
  const segments = from === null ? all : all.filter((s) => s >= from.segment)
  checkNoGaps(dir, segments, from)
  const tailIndex = await indexOfTailSegment(dir, segments)
  for (const [i, segment] of segments.entries()) {
    const start = from !== null && segment === from.segment ? from.offset : 0
    const laterWithRecords = i < tailIndex ? segments[tailIndex] ?? null : null
    yield* replaySegment(dir, segment, start, laterWithRecords, ending)
  }
}

/**
 * How a replay ended, filled in by replayJournal when given: `damaged` is null when the journal
 * ended cleanly (end of file, or zero-filled space after the last record), else the torn or
 * damaged tail replay cut off. A cut-off tail is what a crash mid-write leaves, but also what bit
 * rot in the last record or a flipped length field looks like: records it held may have been
 * acknowledged, so the bookie cannot vouch for what it lacks (its ledgers go into limbo).
 */
export interface ReplayEnding {
  damaged: { file: string; offset: number; reason: string } | null
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
 * Index of the segment whose end may be torn: the last one holding records, or the first when
 * none does. Segments after it hold no record (an open that crashed before its first write
 * leaves a file with at most a header): nothing after its torn end was ever written.
 */
async function indexOfTailSegment(dir: string, segments: readonly number[]): Promise<number> {
  for (let i = segments.length - 1; i > 0; i--) {
    const { size } = await stat(join(dir, segmentFileName(segments[i] ?? 0)))
    if (size > SEGMENT_HEADER_BYTES) return i
  }
  return 0
}

/** `laterWithRecords`: a newer segment that holds records (its writes came after all of this one). */
async function* replaySegment(
  dir: string,
  segment: number,
  from: number,
  laterWithRecords: number | null,
  ending?: ReplayEnding,
): AsyncGenerator<{ record: Buffer; position: JournalPosition }> {
  const file = join(dir, segmentFileName(segment))
  const fh = await open(file, laterWithRecords === null ? 'r+' : 'r')
  try {
    const reader = new SegmentReader(fh, (await fh.stat()).size)
    // A segment that never got past its header holds no record (a crash while it was created).
    if (reader.size <= SEGMENT_HEADER_BYTES) return
    const start = Math.max(from, SEGMENT_HEADER_BYTES)
    if (start > reader.size) {
      throw corrupt(file, start, `replay starts past the end of the file (${reader.size} bytes)`)
    }
    // Nothing to read: not even the header is looked at, so a segment of an older format that a
    // clean stop checkpointed to its end does not stop an upgraded bookie.
    if (start === reader.size) return
    await checkSegmentHeader(reader, file)
    let offset = start
    /** Start of the group of the record before `offset`; null before the first one read. */
    let groupStart: number | null = null
    while (offset < reader.size) {
      const parsed = await parseRecord(reader, offset, groupStart)
      if (parsed.ok) {
        groupStart = offset - parsed.groupOffset
        offset = parsed.end
        yield { record: Buffer.from(parsed.payload), position: { segment, offset } }
        continue
      }
      if (laterWithRecords !== null) {
        throw corrupt(file, offset, `${parsed.reason}, and segment ${laterWithRecords} after it holds records`)
      }
      const later = await laterGroupAfter(reader, offset)
      if (later !== null) {
        throw corrupt(file, offset, `${parsed.reason}, and an intact record written after it starts at byte ${later}`)
      }
      // The torn end of the last group write: nothing in that group was acknowledged (or the disk
      // rotted it after the sync, which no single copy survives). Sync the truncation, or a crash
      // could bring the garbage back in front of newer segments.
      if (ending && !(await reader.zeroFrom(offset))) ending.damaged = { file, offset, reason: parsed.reason }
      await fh.truncate(offset)
      await fh.sync()
      return
    }
  } finally {
    await fh.close()
  }
}

/** Throws CORRUPT_JOURNAL unless the segment opens with a format 2 header. */
async function checkSegmentHeader(reader: SegmentReader, file: string): Promise<void> {
  const header = await reader.bytes(0, SEGMENT_HEADER_BYTES)
  if (!header.subarray(0, 4).equals(SEGMENT_MAGIC)) {
    throw corrupt(file, 0, `no journal format ${JOURNAL_FORMAT_VERSION} segment header: written by a Quire older than ` +
      'journal format 2 (stop that bookie cleanly with its own version first, or let autorecovery ' +
      're-replicate its ledgers and give it an empty data directory), or not a journal at all')
  }
  if (crc32c(header.subarray(0, 12)) !== header.readUInt32BE(12)) throw corrupt(file, 0, 'the segment header fails its crc32c')
  const version = header.readUInt32BE(4)
  if (version !== JOURNAL_FORMAT_VERSION) {
    throw corrupt(file, 0, `journal format ${version} is not one this Quire reads (it reads format ${JOURNAL_FORMAT_VERSION})`)
  }
}

function segmentHeader(): Buffer {
  const header = Buffer.alloc(SEGMENT_HEADER_BYTES)
  SEGMENT_MAGIC.copy(header, 0)
  header.writeUInt32BE(JOURNAL_FORMAT_VERSION, 4)
  header.writeUInt32BE(crc32c(header.subarray(0, 12)), 12)
  return header
}

type Parsed =
  | { ok: true; payload: Buffer; end: number; groupOffset: number }
  | { ok: false; reason: string }

/** Length and group offset of a record header at `at` of `buf` whose checksum holds; else null. */
function intactHeader(buf: Buffer, at: number, fileOffset: number): { length: number; groupOffset: number } | null {
  const length = buf.readUInt32BE(at)
  // Cheap tests first: this runs at every byte of a scan. Zero is never a valid length (append
  // refuses empty records), so zero-filled space is passed over without computing a checksum.
  if (length === 0 || length > RECORD_BYTES_MAX) return null
  const groupOffset = buf.readUInt32BE(at + 4)
  if (groupOffset > fileOffset - SEGMENT_HEADER_BYTES) return null
  if (crc32c(buf.subarray(at, at + 12)) !== buf.readUInt32BE(at + 12)) return null
  return { length, groupOffset }
}

async function parseRecord(reader: SegmentReader, offset: number, prevGroupStart: number | null): Promise<Parsed> {
  if (reader.size - offset < RECORD_HEADER_BYTES) return { ok: false, reason: 'incomplete record header' }
  const header = await reader.bytes(offset, RECORD_HEADER_BYTES)
  const h = intactHeader(header, 0, offset)
  if (h === null) {
    const zeros = header.every((b) => b === 0)
    return { ok: false, reason: zeros ? 'zero-filled record header' : 'record header fails its crc32c' }
  }
  // A record continues the group of the one before it or starts a new one, never an older one.
  if (prevGroupStart !== null && h.groupOffset !== 0 && offset - h.groupOffset !== prevGroupStart) {
    return { ok: false, reason: `record claims a group starting at byte ${offset - h.groupOffset}, not the group before it` }
  }
  const end = offset + RECORD_HEADER_BYTES + h.length
  if (end > reader.size) return { ok: false, reason: `record of ${h.length} bytes runs past the end of the file` }
  const payload = await reader.bytes(offset + RECORD_HEADER_BYTES, h.length)
  if (crc32c(payload) !== header.readUInt32BE(8)) return { ok: false, reason: 'record payload fails its crc32c' }
  return { ok: true, payload, end, groupOffset: h.groupOffset }
}

/**
 * The offset of an intact record after the damage at `damaged` that belongs to a later group
 * write than the damaged bytes (its group starts after them), or null when there is none. Only
 * run on damage: it tries every byte offset to the end of the file, since a damaged header gives
 * no length to skip by. An intact record whose group starts at or before `damaged` is a remnant
 * of the same torn write; the scan skips over it.
 */
const LENGTH_FIRST_BYTE_MAX = RECORD_BYTES_MAX >>> 24
const ZEROS = Buffer.alloc(4096)

/** Index of the first byte at or after `from` that is not zero (buf.length when none). */
function nextNonZero(buf: Buffer, from: number): number {
  let p = from
  while (p + ZEROS.length <= buf.length && buf.compare(ZEROS, 0, ZEROS.length, p, p + ZEROS.length) === 0) p += ZEROS.length
  while (p < buf.length && buf[p] === 0) p++
  return p
}

async function laterGroupAfter(reader: SegmentReader, damaged: number): Promise<number | null> {
  let pos = damaged + 1
  while (reader.size - pos >= RECORD_HEADER_BYTES) {
    const chunk = await reader.bytes(pos, Math.min(READ_CHUNK_BYTES, reader.size - pos))
    let next = pos + chunk.length - RECORD_HEADER_BYTES + 1
    for (let i = 0; i + RECORD_HEADER_BYTES <= chunk.length; i++) {
      // A length field (at most RECORD_BYTES_MAX) starts with a small byte; most bytes of other
      // data fail this at once. Zero-filled space is skipped a block at a time.
      if (chunk[i]! > LENGTH_FIRST_BYTE_MAX) continue
      if (chunk[i] === 0 && chunk[i + 1] === 0 && chunk[i + 2] === 0 && chunk[i + 3] === 0) {
        i = Math.max(i, nextNonZero(chunk, i + 4) - 4)
        continue
      }
      const at = pos + i
      const h = intactHeader(chunk, i, at)
      if (h === null) continue
      const end = at + RECORD_HEADER_BYTES + h.length
      if (end > reader.size) continue
      const crc = chunk.readUInt32BE(i + 8)
      if (crc32c(await reader.bytes(at + RECORD_HEADER_BYTES, h.length)) !== crc) continue
      if (at - h.groupOffset > damaged) return at
      next = end
      break
    }
    pos = next
  }
  return null
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

type Options = Required<Omit<JournalOptions, 'beforeSync'>> & Pick<JournalOptions, 'beforeSync'>

function journalOptions(opts: JournalOptions): Options {
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
  return { ...options, beforeSync: opts.beforeSync, metrics: opts.metrics ?? NO_JOURNAL_METRICS }
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
  private offset = SEGMENT_HEADER_BYTES
  /** Bytes of the current segment already zero-filled (or header), and the zero-fill under way. */
  private allocated = SEGMENT_HEADER_BYTES
  private preallocating: Promise<void> | null = null
  private synced: JournalPosition

  constructor(
    readonly dir: string,
    private segment: number,
    private fh: FileHandle,
    private readonly options: Options,
  ) {
    this.synced = { segment, offset: SEGMENT_HEADER_BYTES }
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
    // Copy now: the caller may reuse its buffer before the group is written. The group offset
    // and the header checksum are filled in when the group is formed (frameGroup).
    const frame = Buffer.allocUnsafe(RECORD_HEADER_BYTES + record.length)
    frame.writeUInt32BE(record.length, 0)
    frame.set(record, RECORD_HEADER_BYTES)
    frame.writeUInt32BE(crc32c(frame.subarray(RECORD_HEADER_BYTES)), 8)
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

  /** What waits, up to GROUP_BYTES_MAX (at least one record); the rest forms the next group. */
  private takeGroup(): { group: Waiting[]; bytes: number } {
    let n = 0
    let bytes = 0
    while (n < this.waiting.length && (n === 0 || bytes + this.waiting[n]!.frame.length <= GROUP_BYTES_MAX)) {
      bytes += this.waiting[n]!.frame.length
      n++
    }
    const group = this.waiting.splice(0, n)
    this.waitingBytes -= bytes
    return { group, bytes }
  }

  private async flushGroup(): Promise<void> {
    const { group, bytes } = this.takeGroup()
    let syncStartedAt = 0
    try {
      if (this.failure !== null) throw this.failedError()
      if (this.offset >= this.options.segmentBytesMax) await this.roll()
      if (this.offset + bytes > this.allocated) await this.preallocate(this.offset + bytes)
      const data = frameGroup(group.map((w) => w.frame), bytes)
      await this.options.beforeSync?.({ segment: this.segment, records: group.length, bytes })
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
    this.options.metrics.groupCommitted(group.length, bytes, performance.now() - syncStartedAt)
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
    this.offset = SEGMENT_HEADER_BYTES
    this.allocated = SEGMENT_HEADER_BYTES
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

/**
 * Fill in each frame's group offset and header checksum, and join the frames into the one
 * buffer of the group's write.
 */
function frameGroup(frames: readonly Buffer[], bytes: number): Buffer {
  let groupOffset = 0
  for (const frame of frames) {
    frame.writeUInt32BE(groupOffset, 4)
    frame.writeUInt32BE(crc32c(frame.subarray(0, 12)), 12)
    groupOffset += frame.length
  }
  return frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes)
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

/** A new segment holding only its header, which, like its directory entry, is durable before any record goes in it. */
async function createSegment(dir: string, segment: number): Promise<FileHandle> {
  // O_EXCL: never reuse a file another journal (or an earlier run) wrote. O_DSYNC: every write
  // is durable when it returns (see flushGroup).
  const file = join(dir, segmentFileName(segment))
  const fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC)
  try {
    await writeFully(fh, segmentHeader(), 0)
    await syncDir(dir)
  } catch (err) {
    await fh.close()
    // Ours (O_EXCL) and holding no record: a full disk would otherwise leave one per attempt.
    await unlink(file).catch(() => {})
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
