// The payload of a named log's ledger entry: many records packed into one entry, so that small
// records cost one add, not one each. Layout (integers big-endian):
//   0  'Q' 'L' version(1) flags(0)
//   4  u32 record count (>= 1)
//   8  u64 records of this segment before this entry (the first record's index in the segment)
//  16  per record: u64 txId, u64 time (ms since the epoch), u32 length, then `length` bytes
// Invariants: txIds strictly increase within an entry (and, by the writer, within a log); a
// payload that does not parse exactly (magic, version, counts, lengths to the last byte) is
// CORRUPT_ENTRY, never a partial list. Records decode as views of the entry's bytes.

import { QuireError } from '../machines/errors.ts'

export const LOG_ENTRY_VERSION = 1
const HEADER_BYTES = 16
const RECORD_HEADER_BYTES = 20

export interface LogRecordIn {
  txId: number
  timeMs: number
  payload: Uint8Array
}

export interface LogEntryContent {
  /** Records of the segment before this entry's first. */
  recordsBefore: number
  records: LogRecordIn[]
}

/** Bytes a record adds to an entry. */
export const packedRecordBytes = (payloadBytes: number): number => RECORD_HEADER_BYTES + payloadBytes
/** Bytes of an entry holding no record yet. */
export const LOG_ENTRY_HEADER_BYTES = HEADER_BYTES

function writeU64(view: DataView, at: number, v: number): void {
  view.setUint32(at, Math.floor(v / 2 ** 32))
  view.setUint32(at + 4, v >>> 0)
}

function readU64(view: DataView, at: number): number {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4)
}

export function packLogEntry(c: LogEntryContent): Uint8Array {
  let bytes = HEADER_BYTES
  for (const r of c.records) bytes += packedRecordBytes(r.payload.length)
  const out = new Uint8Array(bytes)
  const view = new DataView(out.buffer)
  out[0] = 0x51
  out[1] = 0x4c
  out[2] = LOG_ENTRY_VERSION
  view.setUint32(4, c.records.length)
  writeU64(view, 8, c.recordsBefore)
  let at = HEADER_BYTES
  for (const r of c.records) {
    writeU64(view, at, r.txId)
    writeU64(view, at + 8, r.timeMs)
    view.setUint32(at + 16, r.payload.length)
    out.set(r.payload, at + RECORD_HEADER_BYTES)
    at += packedRecordBytes(r.payload.length)
  }
  return out
}

/** The records of a log entry, or CORRUPT_ENTRY naming what does not hold (`where`: ledger and entry). */
export function unpackLogEntry(data: Uint8Array, where: string): LogEntryContent {
  const bad = (why: string): never => { throw new QuireError('CORRUPT_ENTRY', `${where} is not a log entry: ${why}`, { bytes: data.length }) }
  if (data.length < HEADER_BYTES) bad(`${data.length} bytes`)
  if (data[0] !== 0x51 || data[1] !== 0x4c) bad('no log entry magic')
  if (data[2] !== LOG_ENTRY_VERSION) bad(`format version ${data[2]}`)
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const count = view.getUint32(4)
  const recordsBefore = readU64(view, 8)
  if (count === 0) bad('no record')
  const records: LogRecordIn[] = []
  let at = HEADER_BYTES
  let lastTx = -1
  for (let i = 0; i < count; i++) {
    if (at + RECORD_HEADER_BYTES > data.length) bad(`record ${i} of ${count} is cut off`)
    const txId = readU64(view, at)
    const timeMs = readU64(view, at + 8)
    const len = view.getUint32(at + 16)
    if (at + RECORD_HEADER_BYTES + len > data.length) bad(`record ${i} of ${count} is cut off`)
    if (!Number.isSafeInteger(txId) || txId <= lastTx) bad(`txId ${txId} of record ${i} does not increase`)
    lastTx = txId
    records.push({ txId, timeMs, payload: data.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len) })
    at += RECORD_HEADER_BYTES + len
  }
  if (at !== data.length) bad(`${data.length - at} bytes after the last record`)
  return { recordsBefore, records }
}
