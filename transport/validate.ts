// Wire validation (PROTOCOL.md "Wire validation"): anyone on the NATS can publish on a bookie's
// subject or on a client's inbox, so every frame is checked against the schema of its type before
// anything acts on it. One hand-written check per frame type: the add path pays a few type tests
// per group and one header read per entry, nothing more.
//
// What passes keeps these invariants (the journal and RocksDB assert them, so nothing that fails
// them may ever reach a bookie's storage):
// - ledger and entry ids are integers in [0, 2^53); a LAC is -1 or such an id; so is a reqId
//   (a reply to a refused frame that carried none says -1);
// - a master key is 1..MASTER_KEY_BYTES_MAX bytes; a digest type is one of DIGEST_TYPES;
// - an add's entries are bytes whose header names the group's ledger and a valid entry id, LAC and
//   ledger length, and whose size matches the header's payload length and the digest type;
// - every array is bounded (LIMITS); an optional field is absent or of its type.
// A check returns null (valid) or a short reason, and never throws. Unknown extra fields are
// ignored (newer clients may add some). Binary add and ack frames (transport/addFrame.ts) are
// checked as they are decoded, by the same rules (entryProblem, LIMITS) plus their own sizes.

import {
  DIGEST_TYPES, HEADER_BYTES, digestBytes, headerEntryId, headerLac, headerLedgerId, headerLedgerLength, headerPayloadLength, readEntryHeader,
  type DigestType,
} from './entry.ts'
import { RC, type BookieReply, type BookieRequest, type WireMessage } from './wire.ts'

export const LIMITS = {
  /** Quire's master keys are 32 bytes (SHA-256); room for other clients' hashes. */
  masterKeyBytes: 64,
  /** Ledger groups in one add frame (a client sends one per ledger it writes). */
  groupsPerAdd: 65_536,
  /** Entries in one add frame, over all groups (a client flushes at 1 MiB, >= 40 bytes an entry). */
  entriesPerAdd: 1 << 20,
  /** Entry ids in one read (readers ask for 512 at a time). */
  idsPerRead: 65_536,
  /** Entries in one read answer. */
  entriesPerReply: 65_536,
  /** A bookie id or an error text in a reply. */
  textChars: 1024,
  /**
   * Ledgers in one writeLacs frame. A client splits larger batches (client/lacBatcher.ts); at
   * most 128 bytes an item with a 64-byte key, a full frame stays near 1 MiB, NATS's default max_payload.
   */
  lacsPerFrame: 8192,
} as const

type Fields = Record<string, unknown>

const isMap = (v: unknown): v is Fields =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
export const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
export const isLac = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= -1
export const isMasterKey = (v: unknown): v is Uint8Array =>
  v instanceof Uint8Array && v.byteLength >= 1 && v.byteLength <= LIMITS.masterKeyBytes
const DIGEST_TYPE_SET: ReadonlySet<string> = new Set(DIGEST_TYPES)
export const isDigestType = (v: unknown): v is DigestType => typeof v === 'string' && DIGEST_TYPE_SET.has(v)
const isText = (v: unknown): v is string => typeof v === 'string' && v.length >= 1 && v.length <= LIMITS.textChars
const isOptional = (v: unknown, check: (x: unknown) => boolean): boolean => v === undefined || check(v)
const isBool = (v: unknown): v is boolean => typeof v === 'boolean'
const isDuration = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0

/** A value for a log line or a reply: short, and never the bytes themselves. */
export function describe(v: unknown): string {
  if (v === undefined) return 'missing'
  if (v === null) return 'null'
  if (v instanceof Uint8Array) return `${v.byteLength} bytes`
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)
  if (typeof v === 'object') return 'a map'
  return `${typeof v} ${String(v)}`
}

const bad = (what: string, v: unknown): string => `${what} is ${describe(v)}`

function arrayProblem(what: string, v: unknown, min: number, max: number): string | null {
  if (!Array.isArray(v)) return bad(what, v)
  if (v.length < min || v.length > max) return `${what} has ${v.length} items, not ${min}..${max}`
  return null
}

/**
 * An encoded entry (transport/entry.ts) as a bookie may store it for `ledgerId`. Without a digest
 * type (journal replay: add records do not carry it) the size is not checked against the header.
 */
export function entryProblem(data: unknown, ledgerId: number, digestType: DigestType | null): string | null {
  if (!(data instanceof Uint8Array)) return bad('entry', data)
  const dlen = digestType === null ? 0 : digestBytes(digestType)
  if (data.byteLength < HEADER_BYTES + dlen) return `entry of ${data.byteLength} bytes is shorter than its header`
  // The header's fields read in place: no header object per entry on the add path.
  const named = headerLedgerId(data)
  const entryId = headerEntryId(data)
  if (named !== ledgerId) return `entry header names ledger ${named}, not ${ledgerId}`
  if (!isId(entryId)) return `entry id ${entryId} is out of range`
  const lac = headerLac(data)
  if (!isLac(lac)) return `entry ${entryId} carries LAC ${lac}, out of range`
  const ledgerLength = headerLedgerLength(data)
  if (!isId(ledgerLength)) return `entry ${entryId} carries ledger length ${ledgerLength}, out of range`
  const length = headerPayloadLength(data)
  if (digestType !== null && data.byteLength !== HEADER_BYTES + dlen + length) {
    return `entry ${entryId} is ${data.byteLength} bytes, its header and ${digestType} digest say ${HEADER_BYTES + dlen + length}`
  }
  return null
}

function addProblem(m: Fields): string | null {
  const groups = m.groups
  const p = arrayProblem('groups', groups, 1, LIMITS.groupsPerAdd)
  if (p) return p
  let total = 0
  for (let i = 0; i < (groups as unknown[]).length; i++) {
    const g = (groups as unknown[])[i]
    // Field names are built only for a reason: the add path allocates nothing for a valid frame.
    if (!isMap(g)) return bad(`groups[${i}]`, g)
    if (!isId(g.ledgerId)) return bad(`groups[${i}].ledgerId`, g.ledgerId)
    if (!isMasterKey(g.masterKey)) return bad(`groups[${i}].masterKey`, g.masterKey)
    if (!isDigestType(g.digestType)) return bad(`groups[${i}].digestType`, g.digestType)
    if (!isBool(g.recovery)) return bad(`groups[${i}].recovery`, g.recovery)
    const entries = g.entries
    if (!Array.isArray(entries) || entries.length === 0 || entries.length > LIMITS.entriesPerAdd) {
      return arrayProblem(`groups[${i}].entries`, entries, 1, LIMITS.entriesPerAdd)
    }
    total += entries.length
    if (total > LIMITS.entriesPerAdd) return `more than ${LIMITS.entriesPerAdd} entries in one add`
    for (let j = 0; j < entries.length; j++) {
      const e = entryProblem(entries[j], g.ledgerId, g.digestType)
      if (e) return `groups[${i}].entries[${j}]: ${e}`
    }
  }
  return null
}

/** The fields every read and LAC read shares; a fencing one may carry a master key. */
function ledgerRequestProblem(m: Fields): string | null {
  if (!isId(m.reqId)) return bad('reqId', m.reqId)
  if (!isId(m.ledgerId)) return bad('ledgerId', m.ledgerId)
  if (!isOptional(m.fence, isBool)) return bad('fence', m.fence)
  if (!isOptional(m.masterKey, isMasterKey)) return bad('masterKey', m.masterKey)
  return null
}

function readProblem(m: Fields): string | null {
  const p = ledgerRequestProblem(m) ?? arrayProblem('entryIds', m.entryIds, 0, LIMITS.idsPerRead)
  if (p) return p
  const ids = m.entryIds as unknown[]
  for (let i = 0; i < ids.length; i++) if (!isId(ids[i])) return bad(`entryIds[${i}]`, ids[i])
  if (!isId(m.maxBytes)) return bad('maxBytes', m.maxBytes)
  return null
}

function readLacProblem(m: Fields): string | null {
  const p = ledgerRequestProblem(m)
  if (p) return p
  if (!isOptional(m.previousLac, isLac)) return bad('previousLac', m.previousLac)
  if (!isOptional(m.timeoutMs, isDuration)) return bad('timeoutMs', m.timeoutMs)
  if (!isOptional(m.withEntry, isBool)) return bad('withEntry', m.withEntry)
  return null
}

function writeLacProblem(m: Fields): string | null {
  if (!isId(m.ledgerId)) return bad('ledgerId', m.ledgerId)
  if (!isMasterKey(m.masterKey)) return bad('masterKey', m.masterKey)
  if (!isLac(m.lac)) return bad('lac', m.lac)
  if (!isOptional(m.persist, isBool)) return bad('persist', m.persist)
  return null
}

/** Every item is checked as a writeLac is: one bad item refuses the whole frame. */
function writeLacsProblem(m: Fields): string | null {
  if (!isOptional(m.reqId, isId)) return bad('reqId', m.reqId)
  const items = m.items
  const p = arrayProblem('items', items, 1, LIMITS.lacsPerFrame)
  if (p) return p
  for (let i = 0; i < (items as unknown[]).length; i++) {
    const it = (items as unknown[])[i]
    if (!isMap(it)) return bad(`items[${i}]`, it)
    const q = writeLacProblem(it)
    if (q) return `items[${i}].${q}`
  }
  return null
}

/** Why a frame sent to a bookie is not a valid request; null when it is one. */
export function requestProblem(m: unknown): string | null {
  if (!isMap(m)) return `frame is ${describe(m)}, not a map`
  switch (m.op) {
    case 'add': return addProblem(m)
    case 'read': return readProblem(m)
    case 'readLac': return readLacProblem(m)
    case 'writeLac': return writeLacProblem(m)
    case 'writeLacs': return writeLacsProblem(m)
    case 'cancelPoll': return isId(m.reqId) ? null : bad('reqId', m.reqId)
    default: return `unknown op ${describe(m.op)}`
  }
}

/** Narrows a decoded frame to a request, or gives the reason it is none. */
export function checkRequest(m: unknown): { ok: true; req: BookieRequest } | { ok: false; reason: string } {
  const reason = requestProblem(m)
  return reason === null ? { ok: true, req: m as BookieRequest } : { ok: false, reason }
}

const REQUEST_OPS = new Set(['add', 'read', 'readLac', 'writeLac', 'writeLacs', 'cancelPoll'])

/** A metric label for a frame's op: one of the request ops or `other` (bounded cardinality). */
export function opLabel(m: unknown): string {
  const op = isMap(m) ? m.op : undefined
  return typeof op === 'string' && REQUEST_OPS.has(op) ? op : 'other'
}

/**
 * The BAD_REQUEST answer to an invalid frame, in the shape its sender waits for: an addAck naming
 * the entries of every group whose ledger and entry ids can be read (so a writer learns which
 * adds failed), a lacResp for LAC frames, a writeLacsResp for writeLacs, a readResp otherwise;
 * reqId echoed when it is valid.
 */
export function badRequestReply(m: unknown, bookieId: string, reason: string): WireMessage {
  const f = isMap(m) ? m : {}
  const error = reason.slice(0, LIMITS.textChars)
  const reqId = isId(f.reqId) ? f.reqId : -1
  if (f.op === 'add') return { op: 'addAck', bookieId, acks: readableAdds(f.groups), error }
  if (f.op === 'readLac' || f.op === 'writeLac') return { op: 'lacResp', reqId, bookieId, rc: RC.BAD_REQUEST, lac: -1, lastEntryId: -1, error }
  if (f.op === 'writeLacs') return { op: 'writeLacsResp', reqId, bookieId, rc: RC.BAD_REQUEST, results: [], error }
  return { op: 'readResp', reqId, bookieId, rc: RC.BAD_REQUEST, entries: [], error }
}

function readableAdds(groups: unknown): Array<[number, number, number[]]> {
  const acks: Array<[number, number, number[]]> = []
  if (!Array.isArray(groups) || groups.length > LIMITS.groupsPerAdd) return acks
  for (const g of groups) {
    if (!isMap(g) || !isId(g.ledgerId) || !Array.isArray(g.entries) || g.entries.length > LIMITS.entriesPerAdd) continue
    const ids: number[] = []
    for (const e of g.entries) {
      if (!(e instanceof Uint8Array) || e.byteLength < HEADER_BYTES) continue
      const h = readEntryHeader(e)
      if (h.ledgerId === g.ledgerId && isId(h.entryId)) ids.push(h.entryId)
    }
    if (ids.length > 0) acks.push([g.ledgerId, RC.BAD_REQUEST, ids])
  }
  return acks
}

// --- replies, checked by the client on its inbox -------------------------------------------

const isRc = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

function addAckProblem(m: Fields): string | null {
  const p = arrayProblem('acks', m.acks, 0, LIMITS.groupsPerAdd)
  if (p) return p
  for (const a of m.acks as unknown[]) {
    if (!Array.isArray(a) || a.length !== 3) return bad('ack', a)
    const [ledgerId, rc, ids] = a as [unknown, unknown, unknown]
    if (!isId(ledgerId) || !isRc(rc)) return `ack [${describe(ledgerId)}, ${describe(rc)}, ...] is out of range`
    const ip = arrayProblem('ack entry ids', ids, 0, LIMITS.entriesPerAdd)
    if (ip) return ip
    for (const id of ids as unknown[]) if (!isId(id)) return bad('acked entry id', id)
  }
  return null
}

function readRespProblem(m: Fields): string | null {
  const p = arrayProblem('entries', m.entries, 0, LIMITS.entriesPerReply)
  if (p) return p
  if (!isOptional(m.lac, isLac)) return bad('lac', m.lac)
  for (const e of m.entries as unknown[]) {
    if (!Array.isArray(e) || e.length !== 2 || !isRc(e[0]) || !(e[1] === null || e[1] instanceof Uint8Array)) return bad('read answer', e)
  }
  return null
}

function lacRespProblem(m: Fields): string | null {
  if (!isLac(m.lac)) return bad('lac', m.lac)
  if (!isLac(m.lastEntryId)) return bad('lastEntryId', m.lastEntryId)
  if (!isOptional(m.entry, (v) => v instanceof Uint8Array)) return bad('entry', m.entry)
  return null
}

/** Why a frame on a client's inbox is not a valid bookie reply; null when it is one. */
export function replyProblem(m: unknown): string | null {
  if (!isMap(m)) return `frame is ${describe(m)}, not a map`
  if (!isText(m.bookieId)) return bad('bookieId', m.bookieId)
  if (!isOptional(m.error, (v) => typeof v === 'string')) return bad('error', m.error)
  if (m.op === 'addAck') return addAckProblem(m)
  if (m.op !== 'readResp' && m.op !== 'lacResp') return `unknown op ${describe(m.op)}`
  if (!isLac(m.reqId)) return bad('reqId', m.reqId)
  if (!isRc(m.rc)) return bad('rc', m.rc)
  return m.op === 'readResp' ? readRespProblem(m) : lacRespProblem(m)
}

/** Narrows a decoded inbox frame to a bookie reply, or null. */
export function asReply(m: unknown): BookieReply | null {
  return replyProblem(m) === null ? (m as BookieReply) : null
}
