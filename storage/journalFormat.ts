// The journal's on-disk format (journal format 3; storage/journal.ts's header describes it whole):
// the sizes and magic of segment and record headers, segment file names, and the segment header
// itself. Shared by the writer (storage/journal.ts) and replay (storage/journalReplay.ts).

import { readdir } from 'node:fs/promises'
import { crc32c } from '@node-rs/crc32'
import { JOURNAL_RECORD_HEADER_BYTES, JOURNAL_SEGMENT_HEADER_BYTES } from './types.ts'

export const RECORD_HEADER_BYTES = JOURNAL_RECORD_HEADER_BYTES
export const SEGMENT_HEADER_BYTES = JOURNAL_SEGMENT_HEADER_BYTES
/** The format this code writes. */
export const JOURNAL_FORMAT_VERSION = 3
/**
 * The formats it replays: 2 differs from 3 only in its add records (msgpack, which
 * actors/journalRecords.ts still decodes), so a bookie upgraded in place replays its old journal.
 */
export const JOURNAL_FORMATS_READ: readonly number[] = [2, 3]
export const SEGMENT_MAGIC = Buffer.from('QJNL', 'latin1')
/** No record is larger; a bigger length field is corruption, not a record. */
export const RECORD_BYTES_MAX = 64 * 1024 * 1024
export const SEGMENT_NAME = /^journal-(\d{12})\.log$/

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
