// The writer machine's state and the pure functions over it (machines/writer.ts runs them): the
// context, events and effect params; acks recorded and the LAC moved over the complete prefix;
// the entries an append adds; who an entry goes to, first and again. Pure, and each answer of the
// functions asked several times per transition is kept for the next ask (afterAcks, appended).

import type { ErrorCode } from './errors.ts'
import {
  type IndexMask, type QuorumConfig, NO_INDICES, hasIndex, indexBit, isAddComplete, writeSetIndices, writeSetMask,
} from './quorum.ts'
import type { LedgerState, SegmentLike } from './ledgerRules.ts'

export interface PendingEntry {
  readonly entryId: number
  readonly payload: Uint8Array
  /** Payload bytes of entries 0..entryId (travels in the entry header). */
  readonly ledgerLength: number
  /** Write set over ensemble indices, and which of it acked. */
  readonly writeMask: IndexMask
  readonly ackedMask: IndexMask
  /** False for entries appended during an ensemble change: sent once it is done. */
  readonly sent: boolean
}

/** The writer's delays, in ms of the clock its actor runs on. */
export interface WriterTiming {
  /** A stalled writer re-sends after this long, again as long after, then twice as long each time (at most addTimeoutMs). */
  resendAfterMs: number
  /** The bookies that hold up the oldest add this long are failed (and replaced). */
  addTimeoutMs: number
  /** An idle writer sends its LAC on its own this long after its last entry completed; 0: never. */
  idleLacMs: number
}

/**
 * A writer's delays from the client's options: re-sends from a quarter of the add timeout (20 ms
 * to 1 s), so that an add or ack lost with a NATS server is made good long before the bookie is
 * given up; the idle LAC half an explicit-LAC interval after the last entry.
 */
export function writerTiming(addTimeoutMs: number, explicitLacIntervalMs: number): WriterTiming {
  return {
    resendAfterMs: Math.max(20, Math.min(1000, addTimeoutMs / 4)),
    addTimeoutMs,
    idleLacMs: explicitLacIntervalMs > 0 ? explicitLacIntervalMs / 2 : 0,
  }
}

/** Reads of the metadata one ensemble change or close makes before giving up on conflicts. */
export const METADATA_ATTEMPTS_MAX = 50

/** What the writer reads of its ledger's metadata. */
export interface LedgerView {
  state: LedgerState
  lastEntryId: number
  segments: readonly SegmentLike[]
}

export interface WriterInput {
  ledgerId: number
  quorum: QuorumConfig
  /** Bookie ids of the ledger's last segment. */
  ensemble: readonly string[]
  lastEntryId: number
  length: number
  /** Absent: writerTiming(10 s, no idle LAC). */
  timing?: WriterTiming
}

export interface WriterError {
  code: ErrorCode
  message: string
}

export interface WriterContext extends Omit<WriterInput, 'timing'> {
  timing: WriterTiming
  lastAddPushed: number
  /** Payload bytes of entries 0..lastAddPushed. */
  pushedLength: number
  lac: number
  /** Highest LAC the bookies journal: carried by an entry sent, or an explicit LAC. */
  lacPersisted: number
  pending: readonly PendingEntry[]
  /** Bookies of the current ensemble that failed and are to be replaced. */
  failed: readonly string[]
  closeRequested: boolean
  /** Re-sends since the writer last made progress (their back-off). */
  resends: number
  /** Metadata reads of the ensemble change or close under way. */
  attempts: number
  /** The metadata last read by the change or close under way. */
  read: LedgerView | null
  /** The ensemble the change under way writes. */
  proposed: readonly string[] | null
  error: WriterError | null
}

export type WriterEvent =
  | { type: 'append'; payloads: readonly Uint8Array[] }
  | { type: 'acks'; bookieId: string; entryIds: readonly number[] }
  | { type: 'fenced'; bookieId: string }
  | { type: 'unauthorized'; bookieId: string }
  /** A bookie failed adds (explicit error, read-only, refused by NATS): it will be replaced. */
  | { type: 'bookie.failed'; bookieId: string; code: ErrorCode; reason: string }
  | { type: 'close' }
  /** The connection came back: adds or acks in flight on the server that died are lost. */
  | { type: 'reconnected' }
  | { type: 'metadata.read'; ledger: LedgerView }
  /** Replacements for the failed bookies, as [failed, replacement] pairs. */
  | { type: 'bookies.picked'; replacements: ReadonlyArray<readonly [string, string]> }
  | { type: 'metadata.written' }
  | { type: 'metadata.conflict' }
  | { type: 'metadata.failed'; code: ErrorCode; message: string }
  | { type: 'resend.due' }
  /** The binding sent nothing for a timed re-send: every target is behind (answering older adds). */
  | { type: 'resend.skipped' }
  | { type: 'add.timedOut' }
  | { type: 'idleLac.due' }

export interface SendTarget { entryId: number; payload: Uint8Array; ledgerLength: number; bookies: string[] }
export interface SendParams { lac: number; entries: readonly SendTarget[] }
/** `stalled`: a timed re-send, which skips bookies the binding knows are behind; else every target. */
export interface ResendParams extends SendParams { stalled: boolean }
export interface ResolveParams { firstEntryId: number; lastEntryId: number; lac: number }
/** `appended`: only the appends of the event being refused; `all`: every append not yet resolved. */
export interface RejectParams { code: ErrorCode; message: string; scope: 'all' | 'appended' }
/** `fresh`: read the store; else the metadata the writer holds (a first attempt). */
export interface ReadMetadataParams { fresh: boolean }
export interface PickBookiesParams { failed: readonly string[]; exclude: readonly string[] }
/** Write over the metadata last read, at its revision. */
export type WriteMetadataParams =
  | { kind: 'ensemble'; segments: SegmentLike[]; ensemble: readonly string[] }
  | { kind: 'close'; lastEntryId: number; length: number }
/** `idle`: an idle writer's, sent with the other writers' at the client's next idle tick; else (the final LAC of a close) at once. */
export interface ExplicitLacParams { lac: number; idle: boolean }

/** Record one bookie's acks in the pending entries (no completion). */
export function recordAcks(ctx: WriterContext, bookieIndex: number, entryIds: readonly number[]): PendingEntry[] {
  const bit = indexBit(bookieIndex)
  const base = ctx.lac + 1
  const pending = ctx.pending.slice()
  for (const id of entryIds) {
    const i = id - base
    const p = pending[i]
    if (p === undefined || p.entryId !== id || !p.sent || (p.writeMask & bit) === NO_INDICES) continue
    pending[i] = { ...p, ackedMask: p.ackedMask | bit }
  }
  return pending
}

/** Move the LAC over the complete prefix of `pending`. */
export function complete(ctx: WriterContext, pending: readonly PendingEntry[]): { pending: readonly PendingEntry[]; lac: number; length: number } {
  let done = 0
  let length = ctx.length
  for (const p of pending) {
    if (!isAddComplete(p.ackedMask, p.writeMask, ctx.quorum.ackQuorum)) break
    length += p.payload.byteLength
    done++
  }
  return { pending: done === 0 ? pending : pending.slice(done), lac: ctx.lac + done, length }
}

export function targets(ctx: WriterContext, p: PendingEntry, indices: ReadonlySet<number> | null): string[] {
  return writeSetIndices(p.entryId, ctx.quorum.ensembleSize, ctx.quorum.writeQuorum)
    .filter((i) => indices === null || !p.sent || indices.has(i))
    .map((i) => ctx.ensemble[i]!)
}

/**
 * What an acks event makes of the context: its acks recorded and, unless `hold`, the LAC moved
 * over what completed. A pure function of its arguments; the last answer is kept, because one
 * transition asks it up to three times (its guard, the resolve params, the assign) with the same
 * context and event objects.
 */
export function afterAcks(ctx: WriterContext, e: WriterEvent, hold: boolean): Partial<WriterContext> {
  const last = lastAcks
  if (last !== null && last.ctx === ctx && last.e === e && last.hold === hold) return last.out
  const index = e.type === 'acks' ? ctx.ensemble.indexOf(e.bookieId) : -1
  let out: Partial<WriterContext> = {}
  if (index >= 0 && e.type === 'acks') {
    const pending = recordAcks(ctx, index, e.entryIds)
    out = hold ? { pending } : complete(ctx, pending)
  }
  lastAcks = { ctx, e, hold, out }
  return out
}
let lastAcks: { ctx: WriterContext; e: WriterEvent; hold: boolean; out: Partial<WriterContext> } | null = null

/** The acks complete every pending entry (and so move the LAC). */
export function drains(ctx: WriterContext, e: WriterEvent): boolean {
  const after = afterAcks(ctx, e, false)
  return after.lac !== undefined && after.lac > ctx.lac && after.pending!.length === 0
}

/** The bookies of the oldest pending add's write set that have not acked it. */
export function headUnacked(ctx: WriterContext): string[] {
  const head = ctx.pending[0]
  if (!head || !head.sent) return []
  return ctx.ensemble.filter((_, i) => hasIndex(head.writeMask, i) && !hasIndex(head.ackedMask, i))
}

/**
 * The entries an append event adds to `pending` (sent unless `hold`: an ensemble change is in
 * flight). Pure; the last answer is kept, as for afterAcks (asked by the send params and the assign).
 */
export function appended(ctx: WriterContext, e: WriterEvent, hold: boolean): PendingEntry[] {
  const last = lastAppended
  if (last !== null && last.ctx === ctx && last.e === e && last.hold === hold) return last.out
  const out = newEntries(ctx, e, hold)
  lastAppended = { ctx, e, hold, out }
  return out
}
let lastAppended: { ctx: WriterContext; e: WriterEvent; hold: boolean; out: PendingEntry[] } | null = null

export function newEntries(ctx: WriterContext, e: WriterEvent, hold: boolean): PendingEntry[] {
  if (e.type !== 'append') return []
  const { ensembleSize: size, writeQuorum: w } = ctx.quorum
  const added: PendingEntry[] = []
  let id = ctx.lastAddPushed
  let length = ctx.pushedLength
  for (const payload of e.payloads) {
    id++
    length += payload.byteLength
    added.push({ entryId: id, payload, ledgerLength: length, writeMask: writeSetMask(id, size, w), ackedMask: NO_INDICES, sent: !hold })
  }
  return added
}

/** Each sent entry to the bookies of its write set that have not acked it. */
export function unackedTargets(ctx: WriterContext): SendTarget[] {
  const out: SendTarget[] = []
  for (const p of ctx.pending) {
    if (!p.sent) continue
    const bookies = ctx.ensemble.filter((_, i) => hasIndex(p.writeMask, i) && !hasIndex(p.ackedMask, i))
    if (bookies.length > 0) out.push({ entryId: p.entryId, payload: p.payload, ledgerLength: p.ledgerLength, bookies })
  }
  return out
}
