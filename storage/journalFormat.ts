// The journal's on-disk format (journal format 4; storage/journal.ts's header describes it whole):
// the sizes and magic of segment and record headers, padding records, segment file names, and
// the segment header itself. Shared by the writer (storage/journal.ts) and replay
// (storage/journalReplay.ts).

import { readdir } from 'node:fs/promises'
import { crc32c } from '@node-rs/crc32'
import { assert } from '../machines/errors.ts'
import { BLOCK_BYTES } from './directIo.ts'
import { JOURNAL_RECORD_HEADER_BYTES, JOURNAL_SEGMENT_HEADER_BYTES } from './types.ts'

export const RECORD_HEADER_BYTES = JOURNAL_RECORD_HEADER_BYTES
export const SEGMENT_HEADER_BYTES = JOURNAL_SEGMENT_HEADER_BYTES
/** The format this code writes. */
export const JOURNAL_FORMAT_VERSION = 4
/**
 * The formats it replays: 2 differs from 3 only in its add records (msgpack, which
 * actors/journalRecords.ts still decodes), 3 from 4 only in having no padding records, so a
 * bookie upgraded in place replays its old journal.
 */
export const JOURNAL_FORMATS_READ: readonly number[] = [2, 3, 4]
/**
 * Set in a record header's length field: the record is padding (zeros up to a block boundary,
 * written so that every group write ends on one), skipped by replay. Lengths are at most
 * RECORD_BYTES_MAX, far below this bit.
 */
export const PADDING_FLAG = 0x8000_0000
export const SEGMENT_MAGIC = Buffer.from('QJNL', 'latin1')
/** No record is larger; a bigger length field is corruption, not a record. */
export const RECORD_BYTES_MAX = 64 * 1024 * 1024
export const SEGMENT_NAME = /^journal-(\d{12})\.log$/

const PADDING_ZEROS = Buffer.alloc(2 * BLOCK_BYTES)

/**
 * Bytes of the padding record that takes a group ending `gap` bytes before a block boundary to
 * one: 0 when it ends on one, else the gap, or the gap and one block more when the gap cannot
 * hold a record header and a byte.
 */
export function paddingBytes(gap: number): number {
  assert(gap >= 0 && gap < BLOCK_BYTES, `a gap of ${gap} bytes to a block boundary`)
  if (gap === 0) return 0
  return gap > RECORD_HEADER_BYTES ? gap : gap + BLOCK_BYTES
}

/** Writes a padding record of `bytes` (from paddingBytes) at `at` of `target`: its header, then zeros. */
export function writePadding(target: Buffer, at: number, bytes: number, groupOffset: number): void {
  const length = bytes - RECORD_HEADER_BYTES
  assert(length > 0 && length < PADDING_ZEROS.length, `a padding record of ${bytes} bytes`)
  target.writeUInt32BE((length | PADDING_FLAG) >>> 0, at)
  target.writeUInt32BE(groupOffset, at + 4)
  target.writeUInt32BE(crc32c(PADDING_ZEROS.subarray(0, length)), at + 8)
  target.writeUInt32BE(crc32c(target.subarray(at, at + 12)), at + 12)
  target.fill(0, at + RECORD_HEADER_BYTES, at + bytes)
}

/**
 * The first block of every format 4 segment, into `target` (BLOCK_BYTES): the segment header,
 * then a padding record to the block's end (format 4 writes whole blocks). The same bytes for
 * every segment.
 */
export function writeHeaderBlock(target: Buffer): Buffer {
  segmentHeader().copy(target, 0)
  writePadding(target, SEGMENT_HEADER_BYTES, BLOCK_BYTES - SEGMENT_HEADER_BYTES, 0)
  return target
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

/** The 16 bytes a segment file opens with: magic, format version, reserved, crc32c of the 12 before. */
export function segmentHeader(): Buffer {
  const header = Buffer.alloc(SEGMENT_HEADER_BYTES)
  SEGMENT_MAGIC.copy(header, 0)
  header.writeUInt32BE(JOURNAL_FORMAT_VERSION, 4)
  header.writeUInt32BE(crc32c(header.subarray(0, 12)), 12)
  return header
}

export function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code
}
