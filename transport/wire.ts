// Messages between clients and bookies, msgpackr-encoded, over NATS core; adds and their acks
// travel as binary frames instead (transport/addFrame.ts), which decode to AddRequest and AddAck.
//
// Subjects: each bookie listens on `quire.bookie.<bookieId>`; each client listens on its own
// inbox and puts it in the NATS reply field. A bookie also listens on the subjects of the write
// sets that name it (`quire.ws.<bookieId>.<bookieId>...add`, the write set in order): a writer
// publishes a large add group once there and NATS hands it to each bookie of the write set, where
// a message per bookie would carry the group from the client to the server once per bookie. Adds are batched: one message carries many entries
// (grouped by ledger) and a bookie answers with one `addAck` message per journal group commit per
// client. Reads and LAC reads carry a `reqId` that the reply echoes.
//
// Response codes follow PROTOCOL.md "Response classes": OK, explicit negatives, and ERROR for a
// bookie-side failure (which the client treats as unknown, never as absent). BAD_REQUEST answers a
// frame that fails its schema (transport/validate.ts, checked on arrival before anything acts on
// it): an explicit error, never "absent" either; its reqId is -1 when the frame had none to echo.
// IN_LIMBO is unknown too: a bookie that may have lost acknowledged entries says so instead of
// "no such entry" (docs/protocol-notes.md).

import { Packr } from 'msgpackr'
import type { DigestType } from '../machines/responses.ts'

const packr = new Packr({ useRecords: false, int64AsType: 'number' } as ConstructorParameters<typeof Packr>[0])

export const encode = (msg: WireMessage): Buffer => packr.pack(msg)
export const decode = (buf: Uint8Array): WireMessage => packr.unpack(buf) as WireMessage

export const bookieSubject = (bookieId: string): string => `quire.bookie.${bookieId}`
/**
 * Write sets of up to this many bookies have a subject (a bookie subscribes once per position it
 * may hold in one); writers send the adds of larger ones to each bookie's own subject.
 */
export const WRITE_SET_SUBJECT_BOOKIES_MAX = 8
/** The subject of a write set (bookie ids are single NATS tokens: letters, digits, - and _). */
export const writeSetSubject = (bookies: readonly string[]): string => `quire.ws.${bookies.join('.')}.add`
/** The bookies an add subject addresses: its bookie, or the bookies of its write set; none for another subject. */
export function bookiesOfSubject(subject: string): string[] {
  const t = subject.split('.')
  if (t.length === 3 && t[0] === 'quire' && t[1] === 'bookie') return [t[2]!]
  if (t.length >= 4 && t[0] === 'quire' && t[1] === 'ws' && t.at(-1) === 'add') return t.slice(2, -1)
  return []
}
/** What a bookie subscribes to for the write sets naming it: one subject per position it may hold. */
export const writeSetSubscriptions = (bookieId: string): string[] =>
  Array.from({ length: WRITE_SET_SUBJECT_BOOKIES_MAX }, (_, i) => `quire.ws.${'*.'.repeat(i)}${bookieId}.>`)
/** Actors publish inspection events (state changes) here, for the inspector. */
export const inspectSubject = (kind: string, id: string): string => `quire.inspect.${kind}.${id}`

// Response codes and their classes are defined once, in machines/responses.ts.
export { RC, rcName, type ResponseCode } from '../machines/responses.ts'

/** Entries of one ledger inside an add message. */
export interface AddGroup {
  ledgerId: number
  masterKey: Uint8Array
  /** The ledger's digest type: the bookie keeps it to verify what it later reads back. */
  digestType: DigestType
  /** Recovery adds are accepted by fenced bookies. */
  recovery: boolean
  /** Encoded entries (transport/entry.ts). */
  entries: Uint8Array[]
}

export interface AddRequest {
  op: 'add'
  groups: AddGroup[]
}

export interface AddAck {
  op: 'addAck'
  bookieId: string
  /** [ledgerId, rc, entryIds] triples. */
  acks: Array<[number, number, number[]]>
  /** With BAD_REQUEST: what was wrong with the frame. */
  error?: string
}

export interface ReadRequest {
  op: 'read'
  reqId: number
  ledgerId: number
  /** Entries wanted, in order; the reply answers a prefix of them. */
  entryIds: number[]
  /** Bytes the reply may carry at most (at least one entry is always sent); the reader asks again for the rest. */
  maxBytes: number
  /** Recovery reads fence the ledger before they read; a master key is required then. */
  fence?: boolean
  /**
   * The ledger's master key: required to fence, and to read a ledger that has a password (the
   * bookie answers UNAUTHORIZED without it or with another); a ledger without one needs none.
   */
  masterKey?: Uint8Array
}

export interface ReadResponse {
  op: 'readResp'
  reqId: number
  bookieId: string
  rc: number
  /** [rc, entry] for a prefix of the requested ids, in order; entry is null unless rc is OK. */
  entries: Array<[number, Uint8Array | null]>
  /** The LAC the bookie knows for the ledger, when it holds it (a confirmed LAC: readers may read up to it). */
  lac?: number
  /** With BAD_REQUEST: what was wrong with the frame. */
  error?: string
}

export interface ReadLacRequest {
  op: 'readLac'
  reqId: number
  ledgerId: number
  fence?: boolean
  masterKey?: Uint8Array
  /**
   * Long poll: the bookie parks the request until it knows a LAC above `previousLac` or
   * `timeoutMs` passes (then it answers with what it has); with `withEntry`, the answer carries
   * the entry at the new LAC when the bookie holds it.
   */
  previousLac?: number
  timeoutMs?: number
  withEntry?: boolean
}

/**
 * Explicit LAC: the writer tells the bookies its LAC so tailing readers see an entry without
 * waiting for the next one to carry it. An idle writer's is persisted (journaled); the eager one
 * sent as soon as the LAC moves (`persist: false`) is a hint kept in memory only.
 */
export interface WriteLacRequest {
  op: 'writeLac'
  ledgerId: number
  masterKey: Uint8Array
  lac: number
  persist?: boolean
}

/** One ledger's explicit LAC inside a `writeLacs` frame: what a single `writeLac` carries. */
export interface LacItem {
  ledgerId: number
  masterKey: Uint8Array
  lac: number
  persist?: boolean
}

/**
 * Explicit LACs of many ledgers in one frame: a client sends one per bookie per explicit-LAC
 * interval for all its ledgers that need one (client/lacBatcher.ts), instead of one `writeLac`
 * per ledger. Each item is handled as a `writeLac` is (master key checked, persisted LACs
 * journaled), except that a fenced ledger's is refused. With a reply subject the bookie answers
 * one `writeLacsResp` once every item is decided; clients send it without one.
 */
export interface WriteLacsRequest {
  op: 'writeLacs'
  /** Echoed in the answer; -1 there when absent. */
  reqId?: number
  items: LacItem[]
}

/** The answer to a `writeLacs` with a reply subject: one [ledgerId, rc] per item, in order. */
export interface WriteLacsResponse {
  op: 'writeLacsResp'
  reqId: number
  bookieId: string
  /** OK when the items were decided one by one; BAD_REQUEST (and no results) for an invalid frame. */
  rc: number
  /** Per item: OK (accepted), UNAUTHORIZED, FENCED, NO_SUCH_LEDGER, IN_LIMBO or ERROR. */
  results: Array<[number, number]>
  /** With BAD_REQUEST: what was wrong with the frame. */
  error?: string
}

export interface ReadLacResponse {
  op: 'lacResp'
  reqId: number
  bookieId: string
  rc: number
  lac: number
  lastEntryId: number
  /** With `withEntry`: the encoded entry at `lac`, if the bookie holds it. */
  entry?: Uint8Array
  /** With BAD_REQUEST: what was wrong with the frame. */
  error?: string
}

/** A reader no longer wants the long poll `reqId` it sent from the same reply subject: unpark it. */
export interface CancelPollRequest {
  op: 'cancelPoll'
  reqId: number
}

/** What a bookie takes on its subject. */
export type BookieRequest = AddRequest | ReadRequest | ReadLacRequest | WriteLacRequest | WriteLacsRequest | CancelPollRequest
/** What a bookie sends to a client's inbox. */
export type BookieReply = AddAck | ReadResponse | ReadLacResponse

export type WireMessage = AddRequest | AddAck | ReadRequest | ReadResponse | ReadLacRequest | ReadLacResponse | WriteLacRequest
  | WriteLacsRequest | WriteLacsResponse | CancelPollRequest

/**
 * A read; with `fence`, the bookie fences the ledger (persisted) before it reads. `masterKey`: the
 * proof a ledger with a password asks for (a fencing read carries its fence's key anyway).
 */
export function readRequest(reqId: number, ledgerId: number, entryIds: number[], maxBytes: number, fence?: { masterKey: Uint8Array }, masterKey?: Uint8Array): ReadRequest {
  if (fence) return { op: 'read', reqId, ledgerId, entryIds, maxBytes, fence: true, masterKey: fence.masterKey }
  return masterKey ? { op: 'read', reqId, ledgerId, entryIds, maxBytes, masterKey } : { op: 'read', reqId, ledgerId, entryIds, maxBytes }
}

/** A LAC read; with `fence`, a fencing LAC read (recovery). */
export function readLacRequest(reqId: number, ledgerId: number, fence?: { masterKey: Uint8Array }): ReadLacRequest {
  return fence ? { op: 'readLac', reqId, ledgerId, fence: true, masterKey: fence.masterKey } : { op: 'readLac', reqId, ledgerId }
}
