// Journal replay: each good record of the segments from a position on, in order; the torn end of
// the last group write is the end (truncated and synced there), any other damage CORRUPT_JOURNAL.
// The rules are in storage/journal.ts's header. Replay before `openJournal`: replay may truncate
// the newest segment, which must not be open.

import { open, readFile, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32c } from '@node-rs/crc32'
import { QuireError, assert } from '../machines/errors.ts'
import {
  JOURNAL_FORMATS_READ, PADDING_FLAG, RECORD_BYTES_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
  listSegments, segmentFileName, writeHeaderBlock,
} from './journalFormat.ts'
import { BLOCK_BYTES } from './directIo.ts'
import type { JournalPosition } from './types.ts'

const READ_CHUNK_BYTES = 1024 * 1024

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
    if (await holdsRecords(join(dir, segmentFileName(segments[i] ?? 0)))) return i
  }
  return 0
}

const HEADER_BLOCK = writeHeaderBlock(Buffer.alloc(BLOCK_BYTES))

/** More than a segment header, and more than format 4's header block (the header and its padding). */
async function holdsRecords(file: string): Promise<boolean> {
  const { size } = await stat(file)
  if (size <= SEGMENT_HEADER_BYTES) return false
  if (size !== BLOCK_BYTES) return true
  return !(await readFile(file)).equals(HEADER_BLOCK)
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
        if (!parsed.padding) yield { record: Buffer.from(parsed.payload), position: { segment, offset } }
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

/** Throws CORRUPT_JOURNAL unless the segment opens with the header of a format replay reads (2, 3 or 4). */
async function checkSegmentHeader(reader: SegmentReader, file: string): Promise<void> {
  const header = await reader.bytes(0, SEGMENT_HEADER_BYTES)
  if (!header.subarray(0, 4).equals(SEGMENT_MAGIC)) {
    throw corrupt(file, 0, 'no journal format 2, 3 or 4 segment header: written by a Quire older than ' +
      'journal format 2 (stop that bookie cleanly with its own version first, or let autorecovery ' +
      're-replicate its ledgers and give it an empty data directory), or not a journal at all')
  }
  if (crc32c(header.subarray(0, 12)) !== header.readUInt32BE(12)) throw corrupt(file, 0, 'the segment header fails its crc32c')
  const version = header.readUInt32BE(4)
  if (!JOURNAL_FORMATS_READ.includes(version)) {
    throw corrupt(file, 0, `journal format ${version} is not one this Quire reads (it reads formats ${JOURNAL_FORMATS_READ.join(', ')})`)
  }
}

type Parsed =
  | { ok: true; payload: Buffer; end: number; groupOffset: number; padding: boolean }
  | { ok: false; reason: string }

/** Length, group offset and padding flag of a record header at `at` of `buf` whose checksum holds; else null. */
function intactHeader(buf: Buffer, at: number, fileOffset: number): { length: number; groupOffset: number; padding: boolean } | null {
  const field = buf.readUInt32BE(at)
  const length = (field & ~PADDING_FLAG) >>> 0
  // Cheap tests first: this runs at every byte of a scan. Zero is never a valid length (append
  // refuses empty records), so zero-filled space is passed over without computing a checksum.
  if (length === 0 || length > RECORD_BYTES_MAX) return null
  const groupOffset = buf.readUInt32BE(at + 4)
  if (groupOffset > fileOffset - SEGMENT_HEADER_BYTES) return null
  if (crc32c(buf.subarray(at, at + 12)) !== buf.readUInt32BE(at + 12)) return null
  return { length, groupOffset, padding: field !== length }
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
  return { ok: true, payload, end, groupOffset: h.groupOffset, padding: h.padding }
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
      // A length field (at most RECORD_BYTES_MAX, maybe with PADDING_FLAG) starts with a small
      // byte; most bytes of other data fail this at once. Zero-filled space is skipped a block at
      // a time.
      if ((chunk[i]! & 0x7f) > LENGTH_FIRST_BYTE_MAX) continue
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
