// What a bookie writes in its journal (PROTOCOL.md "Bookie storage"): adds, master keys, fence
// marks and explicit LACs. The journal frames and checksums records; this file only gives them
// meaning.
//
// Encoding (journal formats 3 and 4): an add is a binary record whose entries are the bytes as received,
// handed to the journal as separate parts (no copy into a record buffer; the journal writes them
// with writev):
//   [u8 0xc1][3 bytes 0][u32 BE n][u64 BE ledgerId] n x [u64 BE entryId][u32 BE length]
//   then the n entries' bytes, in that order.
// Every other record is one msgpack map, as in format 2. 0xc1 is the one byte msgpack never uses,
// so a record's first byte tells the two apart; format 2 segments (msgpack adds) decode the same.
// Explicit LACs taken in one turn (a writeLacs frame names many ledgers) are one `lacs` record,
// `x` the ledger ids and LACs side by side, not one `lac` record each (actors/lacRecords.ts); a
// version without `lacs` skips such a record on replay (unknown type), losing only those LACs.
//
// Every record is built from a frame that passed transport/validate.ts, so it holds what RocksDB
// asserts (ids in [0, 2^53), LAC -1 or an id, master key bytes, a known digest type).
// `recordProblem` checks the same on replay: a record that fails it can only have been written
// by an older version that journaled frames unchecked, and replay skips it (actors/bookieStorage.ts)
// instead of refusing to start.

import { Packr } from 'msgpackr'
import type { DigestType } from '../machines/responses.ts'
import { entryProblem, isDigestType, isId, isLac, isMasterKey } from '../transport/validate.ts'

const packr = new Packr({ useRecords: false })

export type JournalRecord =
  | { t: 'add'; l: number; e: Uint8Array[] }
  | { t: 'key'; l: number; k: Uint8Array; d?: DigestType }
  | { t: 'fence'; l: number }
  | { t: 'lac'; l: number; lac: number }
  /** Explicit LACs of many ledgers: [ledgerId, lac, ledgerId, lac, ...]. */
  | { t: 'lacs'; x: number[] }

/** First byte of a binary add record: msgpack never uses 0xc1, so no msgpack record opens with it. */
export const BINARY_ADD_TAG = 0xc1
const ADD_HEAD_BYTES = 16
const ADD_ENTRY_BYTES = 12

/**
 * The record as the parts the journal writes one after another (storage/journal.ts appends
 * them without joining them): for an add, a small head then each entry's own bytes, which must
 * not change until the append settles.
 */
export function encodeRecordParts(r: JournalRecord): Uint8Array[] {
  if (r.t !== 'add') return [packr.pack(r)]
  const n = r.e.length
  const head = Buffer.allocUnsafe(ADD_HEAD_BYTES + ADD_ENTRY_BYTES * n)
  head.writeUInt32BE(BINARY_ADD_TAG * 2 ** 24, 0)
  head.writeUInt32BE(n, 4)
  writeU64(head, r.l, 8)
  const parts: Uint8Array[] = [head]
  for (let i = 0; i < n; i++) {
    const data = r.e[i]!
    const at = ADD_HEAD_BYTES + ADD_ENTRY_BYTES * i
    // Validated frames carry a full header; the id of anything shorter is written as 0 (replay
    // then names the short entry, as it would in a msgpack add).
    writeU64(head, entryIdOf(data) ?? 0, at)
    head.writeUInt32BE(data.byteLength, at + 8)
    parts.push(data)
  }
  return parts
}

/** The record as one buffer (tests, the simulator's in-memory journal). */
export function encodeRecord(r: JournalRecord): Buffer {
  const parts = encodeRecordParts(r)
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
}

/**
 * A record replayed from the journal (format 2 or 3). Throws on bytes that are no record; the
 * entries of a binary add are views of `b`.
 */
export function decodeRecord(b: Uint8Array): JournalRecord {
  return b[0] === BINARY_ADD_TAG ? decodeBinaryAdd(b) : (packr.unpack(b) as JournalRecord)
}

function decodeBinaryAdd(b: Uint8Array): JournalRecord {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  if (buf.length < ADD_HEAD_BYTES || buf.readUInt32BE(0) !== BINARY_ADD_TAG * 2 ** 24) {
    throw new Error(`binary add record of ${buf.length} bytes has no valid head`)
  }
  const n = buf.readUInt32BE(4)
  const l = readU64(buf, 8)
  let offset = ADD_HEAD_BYTES + ADD_ENTRY_BYTES * n
  if (offset > buf.length) throw new Error(`binary add record of ${buf.length} bytes cannot list ${n} entries`)
  const e: Buffer[] = []
  for (let i = 0; i < n; i++) {
    const at = ADD_HEAD_BYTES + ADD_ENTRY_BYTES * i
    const entryId = readU64(buf, at)
    const length = buf.readUInt32BE(at + 8)
    if (offset + length > buf.length) throw new Error(`binary add record of ${buf.length} bytes: entry ${i} runs past its end`)
    const data = buf.subarray(offset, offset + length)
    // The entry's own header names its id too; they differ only in a record that is not ours.
    if ((entryIdOf(data) ?? 0) !== entryId) throw new Error(`binary add record lists entry ${entryId}, its entry's header says ${entryIdOf(data)}`)
    e.push(data)
    offset += length
  }
  if (offset !== buf.length) throw new Error(`binary add record has ${buf.length - offset} bytes after its entries`)
  return { t: 'add', l, e }
}

/** The entry id in an entry's header (bytes 8-15), or null when the entry is shorter than that. */
function entryIdOf(data: Uint8Array): number | null {
  if (data.byteLength < 16) return null
  return readU64(Buffer.from(data.buffer, data.byteOffset, 16), 8)
}

// Ids are below 2^53 (validated before they are journaled), so two u32 halves hold them exactly.
function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / 2 ** 32), at)
  buf.writeUInt32BE(value >>> 0, at + 4)
}

function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * 2 ** 32 + buf.readUInt32BE(at + 4)
}

function lacsProblem(x: unknown): string | null {
  if (!Array.isArray(x) || x.length === 0 || x.length % 2 !== 0) return 'lacs record without ledger and LAC pairs'
  for (let i = 0; i < x.length; i += 2) {
    if (!isId(x[i])) return `lacs record names ledger ${String(x[i])}`
    if (!isLac(x[i + 1])) return `lacs record has LAC ${String(x[i + 1])} for ledger ${String(x[i])}`
  }
  return null
}

/** Why a decoded record cannot be applied; null when it can. Never throws. */
export function recordProblem(r: unknown): string | null {
  if (typeof r !== 'object' || r === null) return `record is ${r === null ? 'null' : typeof r}, not a map`
  const f = r as Record<string, unknown>
  if (typeof f.t !== 'string') return 'record without a type'
  if (f.t === 'lacs') return lacsProblem(f.x)
  if (!isId(f.l)) return `record ${String(f.t)} names ledger ${String(f.l)}`
  switch (f.t) {
    case 'add': {
      if (!Array.isArray(f.e)) return 'add record without entries'
      for (const data of f.e as unknown[]) {
        // Add records do not carry the digest type: the header, not the size, is checked.
        const p = entryProblem(data, f.l, null)
        if (p) return `add record of ledger ${f.l}: ${p}`
      }
      return null
    }
    case 'key':
      if (!isMasterKey(f.k)) return `key record of ledger ${f.l} has no valid master key`
      // Records of older versions may lack the digest type; one they name must be known.
      if (f.d !== undefined && f.d !== null && !isDigestType(f.d)) return `key record of ledger ${f.l} names digest type ${String(f.d)}`
      return null
    case 'fence':
      return null
    case 'lac':
      return isLac(f.lac) ? null : `lac record of ledger ${f.l} has LAC ${String(f.lac)}`
    default:
      return `unknown record type ${String(f.t)}`
  }
}
