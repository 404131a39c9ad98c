// Keys and values of the entry store's RocksDB index (storage/entryStore.ts).
//   CF `entries`: key = ledgerId u64 BE | entryId u64 BE (16 bytes),
//                 value = where the entry's bytes are: an index value (below), or, in a store not
//                 yet migrated from the format before entry logs, the entry's bytes themselves.
//   CF `ledgers`: key = ledgerId u64 BE (8 bytes), value = msgpack {masterKey, fenced, explicitLac}.
// Index value (20 bytes): [u8 0xE1][u8 'L'][u16 0][u32 log id][u64 offset of the record][u32 length]
// Invariants:
// - Big-endian fixed-width keys make RocksDB's byte order equal (ledgerId, entryId) order.
// - Ids are integers in [0, 2^53) (asserted): they round-trip through a JS number exactly.
// - An index value can never be mistaken for an entry of the old format: a stored entry opens with
//   its ledger id (u64 BE < 2^53, so first byte 0x00) and is at least 36 bytes long.

import { Packr } from 'msgpackr'
import { assert } from '../machines/errors.ts'
import { DIGEST_TYPES, type DigestType } from '../machines/responses.ts'
import type { StoredLedgerState } from './types.ts'

export const ID_END = 2 ** 53
const TWO_32 = 2 ** 32
export const INDEX_VALUE_BYTES = 20
const TAG0 = 0xe1
const TAG1 = 0x4c // 'L'

/** Where an entry's record sits in the entry logs. */
export interface EntryLocation {
  logId: number
  /** Byte offset of the record (its header) in the log file. */
  offset: number
  /** Payload bytes (the record adds its header). */
  length: number
}

// useRecords off: records would make a value depend on structure definitions kept elsewhere.
const packr = new Packr({ useRecords: false })

export function assertId(id: number, what: string): void {
  assert(Number.isInteger(id) && id >= 0 && id < ID_END, `${what} must be an integer in [0, 2^53), got ${id}`)
}

/** Writes `n` as u64 BE. `n` may be 2^53 itself: the exclusive end of the last ledger's range. */
export function writeU64(buf: Buffer, offset: number, n: number): void {
  buf.writeUInt32BE(Math.floor(n / TWO_32), offset)
  buf.writeUInt32BE(n % TWO_32, offset + 4)
}

export function readU64(buf: Uint8Array, offset: number): number {
  const b = buf as Buffer
  return b.readUInt32BE(offset) * TWO_32 + b.readUInt32BE(offset + 4)
}

export const ENTRY_KEY_BYTES = 16

export function entryKey(ledgerId: number, entryId: number): Buffer {
  const key = Buffer.allocUnsafe(ENTRY_KEY_BYTES)
  writeU64(key, 0, ledgerId)
  writeU64(key, 8, entryId)
  return key
}

export function ledgerKey(ledgerId: number): Buffer {
  const key = Buffer.allocUnsafe(8)
  writeU64(key, 0, ledgerId)
  return key
}

export function encodeLocation(loc: EntryLocation): Buffer {
  const v = Buffer.allocUnsafe(INDEX_VALUE_BYTES)
  writeLocation(v, 0, loc)
  return v
}

/** The index value of `loc` into `buf` at `offset` (INDEX_VALUE_BYTES bytes). */
function writeLocation(buf: Buffer, offset: number, loc: EntryLocation): void {
  buf[offset] = TAG0
  buf[offset + 1] = TAG1
  buf.writeUInt16BE(0, offset + 2)
  buf.writeUInt32BE(loc.logId, offset + 4)
  writeU64(buf, offset + 8, loc.offset)
  buf.writeUInt32BE(loc.length, offset + 16)
}

/**
 * The index puts of a batch of entries, every key and value a view of one buffer: a put costs
 * no allocation of its own (a Buffer.alloc per value was an ArrayBuffer per entry).
 */
export function indexPuts(
  entries: ReadonlyArray<{ readonly ledgerId: number; readonly entryId: number }>, locs: readonly EntryLocation[],
  put: (key: Buffer, value: Buffer) => void,
): void {
  const stride = ENTRY_KEY_BYTES + INDEX_VALUE_BYTES
  const buf = Buffer.allocUnsafe(stride * entries.length)
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    const at = i * stride
    writeU64(buf, at, e.ledgerId)
    writeU64(buf, at + 8, e.entryId)
    writeLocation(buf, at + ENTRY_KEY_BYTES, locs[i]!)
    put(buf.subarray(at, at + ENTRY_KEY_BYTES), buf.subarray(at + ENTRY_KEY_BYTES, at + stride))
  }
}

/** True for an index value; false for an entry stored whole (the format before entry logs). */
export function isLocation(value: Uint8Array): boolean {
  return value.byteLength === INDEX_VALUE_BYTES && value[0] === TAG0 && value[1] === TAG1
}

export function decodeLocation(value: Uint8Array): EntryLocation {
  assert(isLocation(value), 'an index value')
  const b = value as Buffer
  return { logId: b.readUInt32BE(4), offset: readU64(b, 8), length: b.readUInt32BE(16) }
}

export function sameLocation(a: EntryLocation, b: EntryLocation): boolean {
  return a.logId === b.logId && a.offset === b.offset && a.length === b.length
}

export function encodeState(state: StoredLedgerState): Buffer {
  assert(state.masterKey === null || state.masterKey instanceof Uint8Array, 'masterKey is bytes or null')
  assert(typeof state.fenced === 'boolean', 'fenced is a boolean')
  assert(Number.isInteger(state.explicitLac) && state.explicitLac >= -1 && state.explicitLac < ID_END,
    `explicitLac is -1 or an entry id, got ${state.explicitLac}`)
  assert(state.digestType === null || typeof state.digestType === 'string', 'digestType is a string or null')
  return packr.pack({ masterKey: state.masterKey, digestType: state.digestType, fenced: state.fenced, explicitLac: state.explicitLac })
}

export function decodeState(ledgerId: number, value: Buffer): StoredLedgerState {
  const raw: unknown = packr.unpack(value)
  const r = raw as { masterKey?: unknown; digestType?: unknown; fenced?: unknown; explicitLac?: unknown } | null
  // A record that does not decode is disk corruption or a foreign format; refuse to guess.
  assert(typeof r === 'object' && r !== null, `ledger ${ledgerId} state is not a map`)
  assert(r.masterKey === null || r.masterKey instanceof Uint8Array, `ledger ${ledgerId} masterKey`)
  assert(typeof r.fenced === 'boolean', `ledger ${ledgerId} fenced`)
  assert(typeof r.explicitLac === 'number' && Number.isInteger(r.explicitLac) && r.explicitLac >= -1,
    `ledger ${ledgerId} explicitLac`)
  // A plain copy: msgpackr hands back a view into `value`, and callers compare and keep keys.
  const masterKey = r.masterKey === null ? null : Uint8Array.from(r.masterKey)
  assert(r.digestType === undefined || r.digestType === null || DIGEST_TYPES.includes(r.digestType as DigestType), `ledger ${ledgerId} digestType`)
  const digestType = (r.digestType ?? null) as DigestType | null
  return { masterKey, digestType, fenced: r.fenced, explicitLac: r.explicitLac }
}
