// Adds and their acks as binary frames (docs/internals.md "Add path"): everything else between
// clients and bookies stays msgpack (transport/wire.ts).
//
// Why: with msgpack every add was copied once per bookie into that bookie's frame, and decoded
// through msgpack's generic parser on the bookie. Here an add frame is a sequence of *groups*, each
// self-contained (magic, version, ledger, flags, master key, entries) and holding the entries of one
// ledger for one write set. A client encodes each entry once, straight into its group, and sends
// that same group buffer to every bookie of the write set; a bookie's NATS message is its groups
// side by side (transport/gatheredPublish.ts hands them to nats.js without joining them first).
// Nothing in a group is per bookie, so sharing it never forces a copy.
//
// Group (all integers big-endian):
//   0  u8  MAGIC 0xC1: the one byte msgpack never uses, so no msgpack frame starts with it
//   1  u8  version (FRAME_VERSION)
//   2  u8  kind: KIND_ADD
//   3  u8  flags: bit 0 recovery; the others must be 0
//   4  u8  digest type (DIGEST_CODES)
//   5  u8  master key bytes k (1..LIMITS.masterKeyBytes)
//   6  u16 0
//   8  u32 entries n (>= 1)
//   12 u32 bytes of the whole group, this header included
//   16 u64 ledger id
//   24 master key (k bytes), then n times: u32 entry bytes, the encoded entry (transport/entry.ts)
// Ack frame (one per bookie journal group commit per client, as the msgpack addAck):
//   0 u8 MAGIC | 1 u8 version | 2 u8 KIND_ACK | 3 u8 bookie id bytes b | 4 u32 records r
//   8 bookie id (utf-8, b bytes), then r times: u64 ledger id | u8 rc | u32 runs m, then m times
//   u64 first entry id | u32 count (the acked ids as runs of consecutive ids)
//
// Invariants: what decodeAddFrame accepts passes the same checks as a msgpack add frame
// (transport/validate.ts: ids, master key, digest type, every entry's header and size, the
// LIMITS bounds), and decodes to the same AddRequest shape, its bytes views of the frame (no
// copy). A frame it refuses comes with a reason and the adds it could still read, so the bookie
// answers BAD_REQUEST for them. Decoders never throw on bad input.

import { GATHER_PART_BYTES_MIN } from './natsOutbound.ts'
import { DIGEST_TYPES, encodeEntryHeadInto, encodedEntryBytes, headerEntryId, readU32, readU64, writeU64, type DigestType } from './entry.ts'
import { LIMITS, entryProblem, isId } from './validate.ts'
import type { AddAck, AddGroup, AddRequest } from './wire.ts'

export const MAGIC = 0xc1
export const FRAME_VERSION = 1
export const KIND_ADD = 1
export const KIND_ACK = 2
export const GROUP_HEADER_BYTES = 24
/** Per entry in a group: its length. */
export const GROUP_ENTRY_BYTES = 4
const FLAG_RECOVERY = 1
const DIGEST_CODES: readonly DigestType[] = DIGEST_TYPES
const ACK_HEADER_BYTES = 8
const ACK_RECORD_BYTES = 13
const ACK_RUN_BYTES = 12
const BOOKIE_ID_BYTES_MAX = 255

/** A frame in this file's format (its first byte), as opposed to a msgpack one. */
export const isBinaryFrame = (data: Uint8Array): boolean => data.byteLength > 0 && data[0] === MAGIC

/** An entry for encodeAddGroup: encoded into the group, never on its own. */
export interface GroupEntry { entryId: number; ledgerLength: number; payload: Uint8Array }

/** Bytes of a group holding `payloadBytes` of entry payload over `entries` entries. */
export const addGroupBytes = (digestType: DigestType, masterKeyBytes: number, entries: number, payloadBytes: number): number =>
  GROUP_HEADER_BYTES + masterKeyBytes + entries * (GROUP_ENTRY_BYTES + encodedEntryBytes(digestType, 0)) + payloadBytes

function writeGroupHeader(out: Buffer, ledgerId: number, masterKey: Uint8Array, digestType: DigestType, recovery: boolean, n: number, bytes: number): void {
  out[0] = MAGIC
  out[1] = FRAME_VERSION
  out[2] = KIND_ADD
  out[3] = recovery ? FLAG_RECOVERY : 0
  out[4] = DIGEST_CODES.indexOf(digestType)
  out[5] = masterKey.byteLength
  out.writeUInt16BE(0, 6)
  out.writeUInt32BE(n, 8)
  out.writeUInt32BE(bytes, 12)
  writeU64(out, ledgerId, 16)
  out.set(masterKey, GROUP_HEADER_BYTES)
}

/**
 * A payload this large is not copied into its group: the group's message carries it as its own
 * part (the same size above which the NATS flush writes a part as it is, transport/natsOutbound.ts).
 */
export const PAYLOAD_PART_BYTES_MIN = GATHER_PART_BYTES_MIN

/** An add group as the parts of one message: its bytes are the parts side by side. */
export interface GroupParts { parts: Uint8Array[]; byteLength: number }

/**
 * A writer's group: each entry's header and digest computed once, straight into the group; a
 * payload under PAYLOAD_PART_BYTES_MIN is copied in after them, a larger one is a part of its own,
 * the caller's buffer as it is (the bytes on the wire are the same either way). Not copying a
 * 256 KiB payload saves the copy and, more, the page faults of a fresh buffer that size on every
 * group (measured: about 39 per 256 KiB entry in a writer, each costing microseconds here).
 */
export function encodeAddGroup(
  ledgerId: number, masterKey: Uint8Array, digestType: DigestType, lac: number, entries: readonly GroupEntry[],
): GroupParts {
  let copied = 0
  let payloadBytes = 0
  for (const e of entries) {
    payloadBytes += e.payload.byteLength
    if (e.payload.byteLength < PAYLOAD_PART_BYTES_MIN) copied += e.payload.byteLength
  }
  const byteLength = addGroupBytes(digestType, masterKey.byteLength, entries.length, payloadBytes)
  const head = Buffer.allocUnsafe(byteLength - payloadBytes + copied)
  writeGroupHeader(head, ledgerId, masterKey, digestType, false, entries.length, byteLength)
  const parts: Uint8Array[] = []
  let from = 0
  let o = GROUP_HEADER_BYTES + masterKey.byteLength
  for (const e of entries) {
    head.writeUInt32BE(encodedEntryBytes(digestType, e.payload.byteLength), o)
    o = encodeEntryHeadInto(head, o + GROUP_ENTRY_BYTES, digestType, masterKey, ledgerId, e.entryId, lac, e.ledgerLength, e.payload)
    if (e.payload.byteLength < PAYLOAD_PART_BYTES_MIN) {
      head.set(e.payload, o)
      o += e.payload.byteLength
    } else {
      parts.push(head.subarray(from, o), e.payload)
      from = o
    }
  }
  if (o > from) parts.push(head.subarray(from, o))
  return { parts, byteLength }
}

/** A group of entries already encoded (recovery adds, re-replication, re-sends): one copy each. */
export function encodeAddGroupOf(g: AddGroup): Buffer {
  let bytes = GROUP_HEADER_BYTES + g.masterKey.byteLength
  for (const e of g.entries) bytes += GROUP_ENTRY_BYTES + e.byteLength
  const out = Buffer.allocUnsafe(bytes)
  writeGroupHeader(out, g.ledgerId, g.masterKey, g.digestType as DigestType, g.recovery, g.entries.length, bytes)
  let o = GROUP_HEADER_BYTES + g.masterKey.byteLength
  for (const e of g.entries) {
    out.writeUInt32BE(e.byteLength, o)
    out.set(e, o + GROUP_ENTRY_BYTES)
    o += GROUP_ENTRY_BYTES + e.byteLength
  }
  return out
}

export type AddFrameResult =
  | { ok: true; req: AddRequest }
  /**
   * `readable`: the groups read before the problem, for the BAD_REQUEST answer (transport/validate.ts
   * badRequestReply); null when the frame does not even say it is an add (answered as any unreadable frame).
   */
  | { ok: false; reason: string; readable: AddRequest | null }

/** A frame's common prefix: magic, a version this code speaks, the kind wanted. */
function prefixProblem(data: Uint8Array, at: number, kind: number, what: string): string | null {
  if (data.byteLength - at < 3) return `${what} at byte ${at} is truncated (${data.byteLength - at} bytes)`
  if (data[at] !== MAGIC) return `${what} at byte ${at} does not start with 0x${MAGIC.toString(16)}`
  if (data[at + 1] !== FRAME_VERSION) return `${what} at byte ${at} has unknown version ${data[at + 1]}`
  if (data[at + 2] !== kind) return `${what} at byte ${at} is of kind ${data[at + 2]}, not ${kind}`
  return null
}

/** Checks and decodes an add frame a bookie received; entries and keys are views of `data`. */
export function decodeAddFrame(data: Uint8Array): AddFrameResult {
  const groups: AddGroup[] = []
  const saysAdd = data.byteLength >= 3 && data[2] === KIND_ADD
  const fail = (reason: string): AddFrameResult => ({ ok: false, reason, readable: saysAdd ? { op: 'add', groups } : null })
  // A bookie gets a ledger's entries in one group per write set it is in: they are joined into one
  // group per ledger, as a msgpack frame has them, so the bookie handles one batch per ledger.
  const byLedger = new Map<number, AddGroup>()
  let joined = false
  let at = 0
  let total = 0
  while (at < data.byteLength) {
    if (groups.length >= LIMITS.groupsPerAdd) return fail(`more than ${LIMITS.groupsPerAdd} groups in one add`)
    const p = prefixProblem(data, at, KIND_ADD, `group ${groups.length}`) ?? groupHeaderProblem(data, at)
    if (p) return fail(p)
    // A truncated group: its whole entries are still read, to be named in the BAD_REQUEST answer.
    const bytes = readU32(data, at + 12)
    const truncated = bytes > data.byteLength - at
      ? `group at byte ${at} is truncated: it says ${bytes} bytes, ${data.byteLength - at} arrived` : null
    const g = readGroup(data, at, Math.min(at + bytes, data.byteLength), groups.length)
    if (g.entries.length > 0) joined = join(groups, byLedger, g.group) || joined
    total += g.entries.length
    if (g.problem ?? truncated) return fail((truncated ?? g.problem)!)
    if (total > LIMITS.entriesPerAdd) return fail(`more than ${LIMITS.entriesPerAdd} entries in one add`)
    at += readU32(data, at + 12)
  }
  if (groups.length === 0) return fail('add frame holds no group')
  if (joined) for (const g of groups) inIdOrder(g.entries)
  return { ok: true, req: { op: 'add', groups } }
}

/** Adds `g` to `groups`, or its entries to an earlier group of the same ledger (returns true then). */
function join(groups: AddGroup[], byLedger: Map<number, AddGroup>, g: AddGroup): boolean {
  const same = byLedger.get(g.ledgerId)
  if (same && same.recovery === g.recovery && same.digestType === g.digestType && sameBytes(same.masterKey, g.masterKey)) {
    for (const e of g.entries) same.entries.push(e)
    return true
  }
  groups.push(g)
  if (!same) byLedger.set(g.ledgerId, g)
  return false
}

/**
 * Joined groups hold the write sets' runs one after the other (0, 3, 6, 2, 5, 8): put back in id
 * order, as a msgpack frame has them, so storage takes them in key order.
 */
function inIdOrder(entries: Uint8Array[]): void {
  let sorted = true
  for (let i = 1; i < entries.length && sorted; i++) sorted = headerEntryId(entries[i - 1]!) < headerEntryId(entries[i]!)
  if (!sorted) entries.sort((a, b) => headerEntryId(a) - headerEntryId(b))
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

function groupHeaderProblem(data: Uint8Array, at: number): string | null {
  const where = `group at byte ${at}`
  if (data.byteLength - at < GROUP_HEADER_BYTES) return `${where} is truncated: ${data.byteLength - at} bytes, its header takes ${GROUP_HEADER_BYTES}`
  if ((data[at + 3]! & ~FLAG_RECOVERY) !== 0) return `${where} has unknown flags 0x${data[at + 3]!.toString(16)}`
  if (data[at + 4]! >= DIGEST_CODES.length) return `${where} has unknown digest type ${data[at + 4]}`
  const k = data[at + 5]!
  if (k < 1 || k > LIMITS.masterKeyBytes) return `${where} has a master key of ${k} bytes, not 1..${LIMITS.masterKeyBytes}`
  const n = readU32(data, at + 8)
  if (n < 1 || n > LIMITS.entriesPerAdd) return `${where} has ${n} entries, not 1..${LIMITS.entriesPerAdd}`
  const bytes = readU32(data, at + 12)
  if (bytes < GROUP_HEADER_BYTES + k + n * GROUP_ENTRY_BYTES) return `${where} says ${bytes} bytes, too few for its ${n} entries`
  const ledgerId = readU64(data, at + 16)
  if (!isId(ledgerId)) return `${where} names ledger ${ledgerId}, out of range`
  return null
}

/** The group at `at` (its header checked): its entries, each checked as validate.ts checks them. */
function readGroup(data: Uint8Array, at: number, end: number, index: number): { group: AddGroup; entries: Uint8Array[]; problem: string | null } {
  const k = data[at + 5]!
  const n = readU32(data, at + 8)
  if (end - at < GROUP_HEADER_BYTES + k) return { group: { ledgerId: 0, masterKey: new Uint8Array(0), digestType: 'none', recovery: false, entries: [] }, entries: [], problem: null }
  const ledgerId = readU64(data, at + 16)
  const digestType = DIGEST_CODES[data[at + 4]!]!
  const entries: Uint8Array[] = []
  const group: AddGroup = { ledgerId, masterKey: data.subarray(at + GROUP_HEADER_BYTES, at + GROUP_HEADER_BYTES + k), digestType, recovery: (data[at + 3]! & FLAG_RECOVERY) !== 0, entries }
  let o = at + GROUP_HEADER_BYTES + k
  for (let j = 0; j < n; j++) {
    const where = `groups[${index}].entries[${j}]`
    if (end - o < GROUP_ENTRY_BYTES) return { group, entries, problem: `${where} is truncated` }
    const len = readU32(data, o)
    if (len > end - o - GROUP_ENTRY_BYTES) return { group, entries, problem: `${where} says ${len} bytes, ${end - o - GROUP_ENTRY_BYTES} are left in its group` }
    const e = data.subarray(o + GROUP_ENTRY_BYTES, o + GROUP_ENTRY_BYTES + len)
    const bad = entryProblem(e, ledgerId, digestType)
    if (bad) return { group, entries, problem: `${where}: ${bad}` }
    entries.push(e)
    o += GROUP_ENTRY_BYTES + len
  }
  if (o !== end) return { group, entries, problem: `groups[${index}] has ${end - o} bytes after its ${n} entries` }
  return { group, entries, problem: null }
}

// --- acks -----------------------------------------------------------------------------------

/**
 * Ack frame for `acks`; null when the bookie id does not fit its length byte (then msgpack). A
 * bookie passes its id as UTF-8 bytes made once.
 */
export function encodeAckFrame(bookieId: string | Uint8Array, acks: ReadonlyArray<readonly [number, number, readonly number[]]>): Buffer | null {
  const id = typeof bookieId === 'string' ? Buffer.from(bookieId) : bookieId
  if (id.byteLength < 1 || id.byteLength > BOOKIE_ID_BYTES_MAX) return null
  const runs = acks.map(([, , ids]) => runsOf(ids))
  let bytes = ACK_HEADER_BYTES + id.byteLength
  for (const r of runs) bytes += ACK_RECORD_BYTES + (r.length / 2) * ACK_RUN_BYTES
  const out = Buffer.allocUnsafe(bytes)
  out[0] = MAGIC
  out[1] = FRAME_VERSION
  out[2] = KIND_ACK
  out[3] = id.byteLength
  out.writeUInt32BE(acks.length, 4)
  out.set(id, ACK_HEADER_BYTES)
  let o = ACK_HEADER_BYTES + id.byteLength
  acks.forEach(([ledgerId, rc], i) => {
    const r = runs[i]!
    writeU64(out, ledgerId, o)
    out[o + 8] = rc
    out.writeUInt32BE(r.length / 2, o + 9)
    o += ACK_RECORD_BYTES
    for (let j = 0; j < r.length; j += 2) {
      writeU64(out, r[j]!, o)
      out.writeUInt32BE(r[j + 1]!, o + 8)
      o += ACK_RUN_BYTES
    }
  })
  return out
}

/** [first, count, first, count, ...] of the ids in the order given. */
function runsOf(ids: readonly number[]): number[] {
  const out: number[] = []
  for (const id of ids) {
    const last = out.length - 2
    if (last >= 0 && out[last]! + out[last + 1]! === id) out[last + 1]!++
    else out.push(id, 1)
  }
  return out
}

/** Checks and decodes an ack frame on a client's inbox; null for anything invalid (dropped, as msgpack replies). */
export function decodeAckFrame(data: Uint8Array): AddAck | null {
  if (prefixProblem(data, 0, KIND_ACK, 'ack frame') || data.byteLength < ACK_HEADER_BYTES) return null
  const b = data[3]!
  const r = readU32(data, 4)
  if (b < 1 || r > LIMITS.groupsPerAdd || data.byteLength < ACK_HEADER_BYTES + b + r * ACK_RECORD_BYTES) return null
  const bookieId = Buffer.from(data.buffer, data.byteOffset + ACK_HEADER_BYTES, b).toString()
  const acks: Array<[number, number, number[]]> = []
  let o = ACK_HEADER_BYTES + b
  let total = 0
  for (let i = 0; i < r; i++) {
    if (data.byteLength - o < ACK_RECORD_BYTES) return null
    const ledgerId = readU64(data, o)
    const rc = data[o + 8]!
    const m = readU32(data, o + 9)
    o += ACK_RECORD_BYTES
    if (!isId(ledgerId) || m > (data.byteLength - o) / ACK_RUN_BYTES) return null
    const ids: number[] = []
    for (let j = 0; j < m; j++) {
      const first = readU64(data, o)
      const count = readU32(data, o + 8)
      o += ACK_RUN_BYTES
      total += count
      if (total > LIMITS.entriesPerAdd || !isId(first) || !isId(first + count)) return null
      for (let id = first; id < first + count; id++) ids.push(id)
    }
    acks.push([ledgerId, rc, ids])
  }
  return o === data.byteLength ? { op: 'addAck', bookieId, acks } : null
}
