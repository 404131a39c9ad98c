// The bookie's journal: the write-ahead log. A bookie acknowledges an add only after the journal
// record holding it is covered by an fdatasync, so everything here serves one promise: a resolved
// `append` survives a crash, and replay gives back exactly the synced records, in order.
//
// On disk (journal format 4): segment files `journal-<12-digit segment>.log`. Each opens with a
// 16-byte segment header `["QJNL"][u32 BE format version = 4][u32 0][u32 crc32c(bytes 0-11)]`,
// then a run of records, each a 16-byte record header and its payload:
//   [u32 payload length][u32 group offset][u32 crc32c(payload)][u32 crc32c(header bytes 0-11)][payload]
// The group offset is the distance in bytes from the start of the group write the record was
// part of to the record's start (0 for the first record of a group). Because the header has its
// own checksum, a length is trusted before it is used, and every record says which write it came
// from. A record whose length field has PADDING_FLAG set is padding (zeros), which replay skips:
// format 4 writes whole 4 KiB blocks (O_DIRECT, storage/directIo.ts), so the segment header is
// followed by padding to the end of its block and every group write ends with padding to a block
// boundary. Format 3 is format 4 without padding; format 2 differs from 3 in what a payload holds
// (a binary add record, actors/journalRecords.ts); replay reads all three, and a Quire that does
// not know a segment's format refuses it instead of misreading it. Invariants:
// - Records are only appended; a position is (segment, offset just past the record); a segment's
//   first group starts at byte 4096, every group on a block boundary. A group write holds at
//   most GROUP_BYTES_MAX bytes, so the group offset fits its u32. A scan for intact records
//   (below) runs only on damage.
// - One flush in flight at a time: per group, O_DSYNC writes (durable on return, like write +
//   fdatasync) from one reused page-aligned staging buffer into which the group is framed in one
//   pass (each record's header, its parts, the padding); one write unless the group is larger
//   than the buffer. Into zero-filled space,
//   or, for a group of GROW_GROUP_BYTES or more, past the end of the file (see preallocate);
//   a group's promises resolve only after its sync, in append order, with strictly increasing
//   positions. So when an intact record of one group is on disk, every earlier group's write had
//   completed: it was synced, maybe acked.
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
// - Segments without a format 2 or 3 header (written before journal format 2, or not a journal) are
//   refused with CORRUPT_JOURNAL, unless replay has nothing to read in them (a bookie stopped
//   cleanly checkpoints at the end of its last segment, so it upgrades without a refusal).
// - After a failed write or sync the journal is failed for good: a failed fsync may have dropped
//   dirty pages, so retrying could ack data that is not on disk.
// Replay before `openJournal`: replay may truncate the newest segment, which must not be open.

import { constants } from 'node:fs'
import { mkdir, unlink, type FileHandle } from 'node:fs/promises'
import { syncDir } from './syncDir.ts'
import { dirname, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { crc32c } from '@node-rs/crc32'
import { crc32cOfParts } from './crc32c.ts'
import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { QuireError, assert } from '../machines/errors.ts'
import {
  RECORD_BYTES_MAX, RECORD_HEADER_BYTES,
  isErrno, listSegments, paddingBytes, segmentFileName, writeHeaderBlock, writePadding,
} from './journalFormat.ts'
import type { Journal, JournalPosition } from './types.ts'
import { ZERO_FILL_BUFFER_BYTES, writeZeros, writevFully, writevFullySync } from './fileWrites.ts'
import { BLOCK_BYTES, alignUp, alignedBuffer, openDirect } from './directIo.ts'

export {
  JOURNAL_FORMAT_VERSION, RECORD_BYTES_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, listSegments, segmentFileName,
} from './journalFormat.ts'
export { replayJournal, type ReplayEnding } from './journalReplay.ts'

/** A group write takes at most this many bytes (more wait for the next one): group offsets are u32. */
const GROUP_BYTES_MAX = 256 * 1024 * 1024
/** Zero-filled ahead of the records of the current segment. */
const PREALLOCATE_BYTES = 4 * 1024 * 1024
/** A group is copied into a staging buffer this large and written from it, in several writes when larger. */
const STAGE_BYTES = 4 * 1024 * 1024
/** Where a segment's first group goes: after the block holding the segment header and its padding. */
const FIRST_GROUP_OFFSET = BLOCK_BYTES
/**
 * A group this large is written past the end of the file when it runs past the zeros, and while
 * recent groups are this large the journal zero-fills nothing ahead (see preallocate).
 * Measured with O_DSYNC writes on ext4: at 256 KiB a write that grows the file took as long as
 * one over zeros; at 64 KiB it took about twice as long (p50 0.5-0.8 ms against 0.3).
 */
const GROW_GROUP_BYTES = 256 * 1024

export interface JournalOptions {
  /**
   * Longest time the oldest waiting record waits for more before its group is flushed. 0 (the
   * default, and the bookie's): no wait of its own, which adds no latency when adds come one at a
   * time. Either way a group is written only once the turn that queued its first record is done
   * (every record of one socket read joins it), at most one group is written at a time, and what
   * arrives meanwhile (during a write, a segment roll, a zero-fill) forms the next group, so groups
   * grow with the load.
   */
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
    groupWaitMs: opts.groupWaitMs ?? ROLE_DEFAULTS.journalGroupWaitMs,
    groupBytesMax: opts.groupBytesMax ?? ROLE_DEFAULTS.journalGroupBytes,
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
  /** The record's bytes, in order, as the caller gave them. */
  parts: readonly Uint8Array[]
  /** Header and parts: the bytes the record takes on disk. */
  frameBytes: number
  /** crc32c of the parts taken together. */
  crc: number
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
  /** Where the next group goes: always on a block boundary. */
  private offset = FIRST_GROUP_OFFSET
  /** The end of the current segment's zero-filled or written bytes (header, records), and the zero-fill under way. */
  private allocated = FIRST_GROUP_OFFSET
  private preallocating: Promise<void> | null = null
  /**
   * Bytes of recent groups: the last group's, or more while larger ones came just before (an
   * average in which each new group weighs a quarter).
   */
  private groupBytesRecent = 0
  private synced: JournalPosition
  /** A group's bytes are framed here and written from here (page-aligned, for O_DIRECT); reused, as each write is done when it returns. */
  private readonly stage = alignedBuffer(STAGE_BYTES)
  /** One record header or padding record, framed before it is staged. */
  private readonly scratch = Buffer.alloc(RECORD_HEADER_BYTES + 2 * BLOCK_BYTES)

  constructor(
    readonly dir: string,
    private segment: number,
    private fh: FileHandle,
    private readonly options: Options,
  ) {
    this.synced = { segment, offset: FIRST_GROUP_OFFSET }
  }

  get syncedPosition(): JournalPosition {
    return this.synced
  }

  get pendingBytes(): number {
    return this.waitingBytes
  }

  /**
   * Append one record: `record`, or the concatenation of its parts. Nothing is copied: the bytes
   * are written from the caller's buffers, which must not change until the promise settles (a
   * bookie journals entries as they arrived and keeps them, unchanged, for its write cache).
   */
  async append(record: Uint8Array | readonly Uint8Array[]): Promise<JournalPosition> {
    if (this.closed) throw new Error(`journal ${this.dir} is closed`)
    if (this.failure !== null) throw this.failedError()
    const parts = record instanceof Uint8Array ? [record] : record
    let length = 0
    for (const part of parts) length += part.byteLength
    // A large entry's crc is computed once and remembered: its entry-log record reuses it.
    const crc = crc32cOfParts(parts)
    if (!(length > 0 && length <= RECORD_BYTES_MAX)) assert(false, `journal record of ${length} bytes`)
    const frameBytes = RECORD_HEADER_BYTES + length
    return new Promise<JournalPosition>((resolve, reject) => {
      if (this.waiting.length === 0) this.oldestAt = performance.now()
      this.waiting.push({ parts, frameBytes, crc, resolve, reject })
      this.waitingBytes += frameBytes
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
    while (n < this.waiting.length && (n === 0 || bytes + this.waiting[n]!.frameBytes <= GROUP_BYTES_MAX)) {
      bytes += this.waiting[n]!.frameBytes
      n++
    }
    const group = this.waiting.splice(0, n)
    this.waitingBytes -= bytes
    return { group, bytes }
  }

  private async flushGroup(): Promise<void> {
    const { group, bytes } = this.takeGroup()
    // Padded to a block boundary, so the next group's write starts on one.
    const padded = bytes + paddingBytes(alignUp(bytes) - bytes)
    let syncStartedAt = 0
    try {
      if (this.failure !== null) throw this.failedError()
      if (this.offset >= this.options.segmentBytesMax) await this.roll()
      if (this.offset + padded > this.allocated) await this.makeRoom(padded)
      await this.options.beforeSync?.({ segment: this.segment, records: group.length, bytes })
      syncStartedAt = performance.now()
      // The file is opened O_DSYNC (and O_DIRECT): each write returns once the data is durable,
      // as write + fdatasync would, in one call instead of two; over preallocated zeros (a small
      // group) no size change has to be synced either. It is written synchronously on purpose:
      // the bookie has nothing to acknowledge before it returns, and two thread-pool hand-offs
      // cost more than the wait.
      this.writeGroup(group, bytes, padded)
    } catch (err) {
      this.failure ??= err instanceof Error ? err : new Error(String(err))
      for (const w of group) w.reject(this.failure)
      return
    }
    this.options.metrics.groupCommitted(group.length, bytes, performance.now() - syncStartedAt)
    let offset = this.offset
    this.offset += padded
    // Written past the zeros, the file now ends at the group's end.
    this.allocated = Math.max(this.allocated, this.offset)
    this.synced = { segment: this.segment, offset: this.offset }
    this.stats.syncs += 1
    this.stats.records += group.length
    this.stats.bytes += bytes
    for (const w of group) {
      offset += w.frameBytes
      w.resolve({ segment: this.segment, offset })
    }
    // Zero-fill the next stretch in the background, before a small group has to wait for it.
    this.groupBytesRecent = Math.max(bytes, this.groupBytesRecent + (bytes - this.groupBytesRecent) / 4)
    if (!this.growing && this.allocated - this.offset < PREALLOCATE_BYTES / 2 && this.preallocating === null) {
      void this.preallocate(this.allocated + 1, PREALLOCATE_BYTES).catch(() => {})
    }
  }

  /**
   * Room for a group of `bytes` at the current offset, which runs past the zero-filled space: a
   * small group among small ones waits for zeros under it (a short stretch in line; the
   * background fill after it goes further); a large group, or one among large ones, is written
   * past the end of the file (a small group between large ones would otherwise wait for a fill).
   * Either way no zero-fill under way may still write where the group goes.
   */
  private async makeRoom(bytes: number): Promise<void> {
    while (this.preallocating !== null) await this.preallocating
    const end = this.offset + bytes
    if (end <= this.allocated || bytes >= GROW_GROUP_BYTES || this.growing) return
    await this.preallocate(end, ZERO_FILL_BUFFER_BYTES)
  }

  /** Recent groups are large: the file grows with them rather than being zero-filled ahead. */
  private get growing(): boolean {
    return this.groupBytesRecent >= GROW_GROUP_BYTES
  }

  /**
   * Zero-fill the segment from its zero-filled (or written) end up to `needed`, and at least
   * `ahead` bytes (BookKeeper preallocates its journal too), so a small group's write does not
   * grow the file and its sync carries no metadata (on a journaling file system, a commit of
   * its own). Large groups are not worth it: their sync is mostly their data, and zero-filling
   * writes every byte twice through the page cache; with 256 KiB entries the zero-fill cost the
   * bookie about as much CPU as everything else together. So the journal fills ahead only after
   * small groups, and a large group that runs past the zeros grows the file: O_DSYNC makes the
   * new size durable with the data. Replay reads a run of zeros, or the end of the file, after
   * the last record as the end of the journal.
   */
  private async preallocate(needed: number, ahead: number): Promise<void> {
    while (this.preallocating !== null) await this.preallocating
    if (needed <= this.allocated) return
    const fh = this.fh
    const from = this.allocated
    const end = alignUp(Math.max(needed, from + ahead))
    this.preallocating = writeZeros(fh, from, end - from)
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
    this.offset = FIRST_GROUP_OFFSET
    this.allocated = FIRST_GROUP_OFFSET
  }

  /**
   * The one framing pass of a group, written as it goes: each record's header (length, group
   * offset, payload and header checksums) and parts copied into the staging buffer, then the
   * padding record up to the block boundary; the buffer is written whenever it is full, and at
   * the end. `padded` bytes in all, from the current offset.
   */
  private writeGroup(group: readonly Waiting[], bytes: number, padded: number): void {
    const stage = this.stage
    const fd = this.fh.fd
    let fill = 0
    let position = this.offset
    const put = (src: Uint8Array): void => {
      for (let from = 0; from < src.byteLength;) {
        if (fill === stage.length) {
          writevFullySync(fd, [stage], position, fill)
          position += fill
          fill = 0
        }
        const n = Math.min(src.byteLength - from, stage.length - fill)
        stage.set(from === 0 && n === src.byteLength ? src : src.subarray(from, from + n), fill)
        fill += n
        from += n
      }
    }
    const header = this.scratch.subarray(0, RECORD_HEADER_BYTES)
    let groupOffset = 0
    for (const w of group) {
      header.writeUInt32BE(w.frameBytes - RECORD_HEADER_BYTES, 0)
      header.writeUInt32BE(groupOffset, 4)
      header.writeUInt32BE(w.crc, 8)
      header.writeUInt32BE(crc32c(header.subarray(0, 12)), 12)
      put(header)
      for (const part of w.parts) put(part)
      groupOffset += w.frameBytes
    }
    if (padded > bytes) {
      writePadding(this.scratch, 0, padded - bytes, groupOffset)
      put(this.scratch.subarray(0, padded - bytes))
    }
    writevFullySync(fd, [stage.subarray(0, fill)], position, fill)
    assert(position + fill === this.offset + padded, `a group of ${padded} bytes wrote ${position + fill - this.offset}`)
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

/** The first block of every segment (journalFormat.ts's writeHeaderBlock), page-aligned; never written to. */
const HEADER_BLOCK = writeHeaderBlock(alignedBuffer(BLOCK_BYTES))

/** A new segment holding only its header block, which, like its directory entry, is durable before any record goes in it. */
async function createSegment(dir: string, segment: number): Promise<FileHandle> {
  // O_EXCL: never reuse a file another journal (or an earlier run) wrote. O_DSYNC: every write
  // is durable when it returns (see flushGroup). O_DIRECT where the file system has it.
  const file = join(dir, segmentFileName(segment))
  const { fh } = await openDirect(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC)
  try {
    await writevFully(fh, [HEADER_BLOCK], 0, BLOCK_BYTES)
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
