// An entry on the wire and on disk (PROTOCOL.md "Entry on the wire and on disk"):
//   header (36 bytes): ledgerId u64 | entryId u64 | lac+1 u64 | ledger length u64 | payload length u32
//   (ledger length: bytes of all entries up to and including this one, so that a recoverer
//   learns the ledger's length from its last entry alone)
//   digest: crc32c (4 bytes) | hmac-sha256 keyed by the master key (32 bytes) | none (0 bytes)
//   payload
// The digest covers the header and the payload. Bookies store the encoded bytes as they are;
// readers verify the digest of every entry they read and treat a mismatch like a missing replica.
// The master key is a one-way hash of the password; the password itself is never kept.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { crc32c } from '@node-rs/crc32'
import { QuireError, assert } from '../machines/errors.ts'
import { DIGEST_TYPES, type DigestType } from '../machines/responses.ts'

export { DIGEST_TYPES, type DigestType }

export const HEADER_BYTES = 36
const MAX_ID = Number.MAX_SAFE_INTEGER
const TWO_32 = 2 ** 32

export function digestBytes(type: DigestType): number {
  return type === 'crc32c' ? 4 : type === 'hmac-sha256' ? 32 : 0
}

export function validateDigestType(type: unknown): DigestType {
  if (!DIGEST_TYPES.includes(type as DigestType)) {
    throw new QuireError('INVALID_CONFIG', `digestType must be one of ${DIGEST_TYPES.join(', ')}, got ${String(type)}`)
  }
  return type as DigestType
}

/** Master key: what bookies check on every add and what keys the HMAC digest. */
export function masterKeyOf(password: string | Uint8Array): Buffer {
  return createHash('sha256').update('quire/master-key/').update(password).digest()
}

/** The master key of the empty password: a ledger with it has no password (bookies then ask reads for no key). */
export const NO_PASSWORD_KEY = masterKeyOf('')

/** Stored in the ledger metadata to check a password without keeping it or the master key. */
export function passwordCheckOf(masterKey: Uint8Array): string {
  return createHash('sha256').update('quire/password-check/').update(masterKey).digest('base64')
}

export function writeU64(buf: Buffer, value: number, offset: number): void {
  assert(Number.isInteger(value) && value >= 0 && value <= MAX_ID, `id out of range: ${value}`)
  buf.writeUInt32BE(Math.floor(value / TWO_32), offset)
  buf.writeUInt32BE(value >>> 0, offset + 4)
}

// Reads without making a Buffer view: bookies read the header of every entry they receive.
export function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0
}

export function readU64(b: Uint8Array, offset: number): number {
  return readU32(b, offset) * TWO_32 + readU32(b, offset + 4)
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength))

function computeDigest(type: DigestType, masterKey: Uint8Array, header: Uint8Array, payload: Uint8Array): Buffer | null {
  if (type === 'crc32c') {
    const out = Buffer.allocUnsafe(4)
    out.writeUInt32BE(crc32c(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), crc32c(Buffer.from(header.buffer, header.byteOffset, header.byteLength))) >>> 0, 0)
    return out
  }
  if (type === 'hmac-sha256') return createHmac('sha256', masterKey).update(header).update(payload).digest()
  return null
}

export interface EntryHeader {
  ledgerId: number
  entryId: number
  /** LAC the writer knew when it sent this entry (-1 for none). */
  lac: number
  /** Total payload bytes of entries 0..entryId. */
  ledgerLength: number
  /** Payload bytes of this entry. */
  length: number
}

export function encodeEntry(
  type: DigestType, masterKey: Uint8Array, ledgerId: number, entryId: number, lac: number, ledgerLength: number, payload: Uint8Array,
): Buffer {
  const out = Buffer.allocUnsafe(encodedEntryBytes(type, payload.byteLength))
  encodeEntryInto(out, 0, type, masterKey, ledgerId, entryId, lac, ledgerLength, payload)
  return out
}

/** Bytes of an encoded entry carrying `payloadBytes`. */
export const encodedEntryBytes = (type: DigestType, payloadBytes: number): number => HEADER_BYTES + digestBytes(type) + payloadBytes

/**
 * encodeEntry into `out` at `offset` (an add frame: transport/addFrame.ts writes each entry once,
 * straight into the frame every bookie of its write set is sent). Returns the offset past it.
 */
export function encodeEntryInto(
  out: Buffer, offset: number,
  type: DigestType, masterKey: Uint8Array, ledgerId: number, entryId: number, lac: number, ledgerLength: number, payload: Uint8Array,
): number {
  const at = encodeEntryHeadInto(out, offset, type, masterKey, ledgerId, entryId, lac, ledgerLength, payload)
  out.set(payload, at)
  return at + payload.byteLength
}

/**
 * An entry's header and digest (of header and `payload`) into `out` at `offset`, without the
 * payload: returns the offset where the payload belongs. For a frame that sends a large payload
 * as its own part instead of copying it (transport/addFrame.ts encodeAddGroup).
 */
export function encodeEntryHeadInto(
  out: Buffer, offset: number,
  type: DigestType, masterKey: Uint8Array, ledgerId: number, entryId: number, lac: number, ledgerLength: number, payload: Uint8Array,
): number {
  const dlen = digestBytes(type)
  writeU64(out, ledgerId, offset)
  writeU64(out, entryId, offset + 8)
  writeU64(out, lac + 1, offset + 16)
  writeU64(out, ledgerLength, offset + 24)
  out.writeUInt32BE(payload.byteLength, offset + 32)
  const header = out.subarray(offset, offset + HEADER_BYTES)
  // crc32c written in place: no 4-byte Buffer per entry on the add path.
  if (type === 'crc32c') out.writeUInt32BE(crc32c(asBuffer(payload), crc32c(header)) >>> 0, offset + HEADER_BYTES)
  else computeDigest(type, masterKey, header, payload)?.copy(out, offset + HEADER_BYTES)
  return offset + HEADER_BYTES + dlen
}

/**
 * The LAC an entry carries, if the entry can be trusted: verified against the ledger's digest when
 * the bookie knows it. A copy that fails (bit rot) is no evidence: null. A bookie must never report
 * a LAC read from a corrupt header (recovery starts reading after the highest LAC it hears).
 */
export function trustedLac(
  entry: Uint8Array, ledgerId: number, entryId: number, digestType: string | null, masterKey: Uint8Array | null,
): number | null {
  if (!storedCopyIntact(entry, ledgerId, entryId, digestType, masterKey)) return null
  try {
    const h = readEntryHeader(entry)
    return h.ledgerId === ledgerId && h.entryId === entryId ? h.lac : null
  } catch {
    return null
  }
}

/**
 * A bookie's check of a copy it stores: false when it fails the digest of the ledger's digest
 * type and master key; true when it passes, or when the bookie lacks what it needs to check it
 * (no master key or digest type known yet: only readers can tell then). A digest type it does not
 * know fails closed: the copy cannot be shown intact, so it is not.
 */
export function storedCopyIntact(
  entry: Uint8Array, ledgerId: number, entryId: number, digestType: string | null, masterKey: Uint8Array | null,
): boolean {
  if (masterKey === null || digestType === null) return true
  if (!DIGEST_TYPES.includes(digestType as DigestType)) return false
  try {
    decodeEntry(digestType as DigestType, masterKey, entry, { ledgerId, entryId })
    return true
  } catch {
    return false
  }
}

/** Header fields without verifying anything (bookies route by them). */
export function readEntryHeader(entry: Uint8Array): EntryHeader {
  if (entry.byteLength < HEADER_BYTES) {
    throw new QuireError('CORRUPT_ENTRY', `entry of ${entry.byteLength} bytes is shorter than its header`)
  }
  return {
    ledgerId: headerLedgerId(entry),
    entryId: headerEntryId(entry),
    lac: headerLac(entry),
    ledgerLength: headerLedgerLength(entry),
    length: headerPayloadLength(entry),
  }
}

// One header field each, read in place (no header object: the add path reads them per entry).
// The caller has checked that `entry` holds a whole header (HEADER_BYTES).
export const headerLedgerId = (entry: Uint8Array): number => readU64(entry, 0)
export const headerEntryId = (entry: Uint8Array): number => readU64(entry, 8)
/** The header stores LAC + 1, so that -1 (no entry confirmed) is 0. */
export const headerLac = (entry: Uint8Array): number => readU64(entry, 16) - 1
export const headerLedgerLength = (entry: Uint8Array): number => readU64(entry, 24)
export const headerPayloadLength = (entry: Uint8Array): number => readU32(entry, 32)

/**
 * Verify an entry read from a bookie and return its payload (a view, not a copy). Throws
 * CORRUPT_ENTRY on a short buffer, a header that names another ledger/entry, or a bad digest.
 */
export function decodeEntry(
  type: DigestType, masterKey: Uint8Array, entry: Uint8Array, expect: { ledgerId: number; entryId: number },
): { header: EntryHeader; payload: Buffer } {
  const header = readEntryHeader(entry)
  const dlen = digestBytes(type)
  const where = `ledger ${expect.ledgerId} entry ${expect.entryId}`
  if (header.ledgerId !== expect.ledgerId || header.entryId !== expect.entryId) {
    throw new QuireError('CORRUPT_ENTRY', `${where}: header names ledger ${header.ledgerId} entry ${header.entryId}`)
  }
  if (entry.byteLength !== HEADER_BYTES + dlen + header.length) {
    throw new QuireError('CORRUPT_ENTRY', `${where}: length ${entry.byteLength} does not match its header`)
  }
  const buf = Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength)
  const payload = buf.subarray(HEADER_BYTES + dlen)
  const want = computeDigest(type, masterKey, buf.subarray(0, HEADER_BYTES), payload)
  if (want && !timingSafeEqual(want, buf.subarray(HEADER_BYTES, HEADER_BYTES + dlen))) {
    throw new QuireError('CORRUPT_ENTRY', `${where}: digest mismatch`)
  }
  return { header, payload }
}
