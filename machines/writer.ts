// The ledger writer (PROTOCOL.md "Add path", "Ensemble change", "Close"): assigns entry ids, sends
// each entry to its write set, counts acks, advances the LAC over the contiguous prefix of
// complete entries and resolves appends in entryId order; when a bookie fails it replaces it and
// re-sends what is incomplete. Pure: effects are named actions with params (`send`, `resolve`,
// `reject`, `changeEnsemble`, `closeMetadata`) that client/writeHandle.ts binds.
//
// Invariants:
// - entry ids are assigned once, consecutively, from lastEntryId + 1;
// - `pending` holds exactly the entries lac+1 .. lastAddPushed, in order;
// - `resolve` is emitted for consecutive ranges only, never past an incomplete entry, and never
//   while an ensemble change is in flight;
// - an ack counts only from the bookie at that position of the current ensemble; the positions an
//   ensemble change replaces lose their acks and get the entry re-sent;
// - once fenced, closed or failed, nothing is sent and nothing more is resolved.

import { setup } from 'xstate'
import { assert, type ErrorCode } from './errors.ts'
import {
  type IndexMask, type QuorumConfig, NO_INDICES, indexBit, indexMask, isAddComplete, writeSetIndices, writeSetMask,
} from './quorum.ts'

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

export interface WriterInput {
  ledgerId: number
  quorum: QuorumConfig
  /** Bookie ids of the ledger's last segment. */
  ensemble: readonly string[]
  lastEntryId: number
  length: number
}

export interface WriterError {
  code: ErrorCode
  message: string
}

export interface WriterContext extends WriterInput {
  lastAddPushed: number
  /** Payload bytes of entries 0..lastAddPushed. */
  pushedLength: number
  lac: number
  pending: readonly PendingEntry[]
  /** Bookies of the current ensemble that failed and are to be replaced. */
  failed: readonly string[]
  closeRequested: boolean
  error: WriterError | null
}

export type WriterEvent =
  | { type: 'append'; payloads: readonly Uint8Array[] }
  | { type: 'acks'; bookieId: string; entryIds: readonly number[] }
  | { type: 'fenced'; bookieId: string }
  | { type: 'unauthorized'; bookieId: string }
  /** A bookie failed adds (explicit error, read-only, timeout, gone): it will be replaced. */
  | { type: 'bookie.failed'; bookieId: string; code: ErrorCode; reason: string }
  | { type: 'ensemble.changed'; ensemble: readonly string[] }
  | { type: 'ensemble.failed'; code: ErrorCode; message: string }
  | { type: 'close' }
  | { type: 'metadata.closed' }
  | { type: 'metadata.closeFailed'; code: ErrorCode; message: string }

export interface SendTarget { entryId: number; payload: Uint8Array; ledgerLength: number; bookies: string[] }
export interface SendParams { lac: number; entries: readonly SendTarget[] }
export interface ResolveParams { firstEntryId: number; lastEntryId: number; lac: number }
/** `appended`: only the appends of the event being refused; `all`: every append not yet resolved. */
export interface RejectParams { code: ErrorCode; message: string; scope: 'all' | 'appended' }
export interface ChangeEnsembleParams { ensemble: readonly string[]; failed: readonly string[]; lac: number }
export interface CloseMetadataParams { lastEntryId: number; length: number }

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

function targets(ctx: WriterContext, p: PendingEntry, indices: ReadonlySet<number> | null): string[] {
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
function afterAcks(ctx: WriterContext, e: WriterEvent, hold: boolean): Partial<WriterContext> {
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

const writerSetup = setup({
  types: {} as { context: WriterContext; events: WriterEvent; input: WriterInput },
  actions: {
    send: (_, _params: SendParams) => {},
    resolve: (_, _params: ResolveParams) => {},
    reject: (_, _params: RejectParams) => {},
    changeEnsemble: (_, _params: ChangeEnsembleParams) => {},
    closeMetadata: (_, _params: CloseMetadataParams) => {},
  },
  guards: {
    drained: ({ context }) => context.pending.length === 0,
    closeRequested: ({ context }) => context.closeRequested,
    inEnsemble: ({ context, event }) => event.type === 'bookie.failed' && context.ensemble.includes(event.bookieId),
    stillFailed: ({ context }) => context.failed.length > 0,
    /** The acks complete the oldest pending entry (so the LAC moves). */
    acksComplete: ({ context, event }) => (afterAcks(context, event, false).lac ?? context.lac) > context.lac,
  },
})

/**
 * The entries an append event adds to `pending` (sent unless `hold`: an ensemble change is in
 * flight). Pure; the last answer is kept, as for afterAcks (asked by the send params and the assign).
 */
function appended(ctx: WriterContext, e: WriterEvent, hold: boolean): PendingEntry[] {
  const last = lastAppended
  if (last !== null && last.ctx === ctx && last.e === e && last.hold === hold) return last.out
  const out = newEntries(ctx, e, hold)
  lastAppended = { ctx, e, hold, out }
  return out
}
let lastAppended: { ctx: WriterContext; e: WriterEvent; hold: boolean; out: PendingEntry[] } | null = null

function newEntries(ctx: WriterContext, e: WriterEvent, hold: boolean): PendingEntry[] {
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

/**
 * New entries get ids; they are sent at once unless `hold` (an ensemble change is in flight). A
 * plain assign (and the send before it, which sees the context the ids start from) rather than
 * enqueueActions, which costs about as much again as the rest of the transition.
 */
function assignIds(hold: boolean) {
  const assign = writerSetup.assign(({ context, event }) => {
    const added = appended(context, event, hold)
    const last = added[added.length - 1]
    if (!last) return {}
    return { lastAddPushed: last.entryId, pushedLength: last.ledgerLength, pending: [...context.pending, ...added] }
  })
  if (hold) return [assign]
  const send = {
    type: 'send' as const,
    params: ({ context, event }: { context: WriterContext; event: WriterEvent }): SendParams => {
      const added = appended(context, event, false)
      const next = { ...context, pending: added }
      return { lac: context.lac, entries: added.map((p) => ({ ...p, bookies: targets(next, p, null) })) }
    },
  }
  return [send, assign]
}

/**
 * Record acks and, unless `hold`, resolve whatever completed. Guarded transitions with plain
 * assigns rather than one enqueueActions: the acks event is the most frequent (one per bookie per
 * ack message), and enqueueActions costs about as much again as the rest of its transition.
 */
function onAcks(hold: boolean) {
  const record = writerSetup.assign(({ context, event }) => afterAcks(context, event, hold))
  if (hold) return { actions: record }
  return [
    {
      guard: 'acksComplete' as const,
      actions: [
        // Before the assign: its params see the LAC the entries resolve from.
        { type: 'resolve' as const, params: ({ context, event }: { context: WriterContext; event: WriterEvent }): ResolveParams => {
          const lac = afterAcks(context, event, false).lac!
          return { firstEntryId: context.lac + 1, lastEntryId: lac, lac }
        } },
        record,
      ],
    },
    { actions: record },
  ]
}

const addFailed = writerSetup.assign({
  failed: ({ context, event }) =>
    event.type === 'bookie.failed' && !context.failed.includes(event.bookieId) ? [...context.failed, event.bookieId] : context.failed,
})

/** Adopt the new ensemble: replaced positions lose their acks and get the entries re-sent. */
const adoptEnsemble = writerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'ensemble.changed') return
  assert(event.ensemble.length === context.ensemble.length, 'an ensemble change keeps the ensemble size')
  assert(new Set(event.ensemble).size === event.ensemble.length, `ensemble must hold distinct bookies: ${event.ensemble.join(',')}`)
  const replaced = new Set<number>()
  context.ensemble.forEach((b, i) => { if (event.ensemble[i] !== b) replaced.add(i) })
  const lost = indexMask(replaced)
  const next: WriterContext = {
    ...context,
    ensemble: event.ensemble,
    // Failures reported during the change for bookies still in the new ensemble stay queued.
    failed: context.failed.filter((b) => event.ensemble.includes(b)),
    pending: context.pending.map((p) => ({ ...p, ackedMask: p.ackedMask & ~lost })),
  }
  const resend = next.pending
    .map((p) => ({ ...p, bookies: targets(next, p, replaced) }))
    .filter((p) => p.bookies.length > 0)
  enqueue.assign({ ensemble: next.ensemble, failed: next.failed, pending: next.pending.map((p) => ({ ...p, sent: true })) })
  if (resend.length > 0) enqueue({ type: 'send', params: { lac: context.lac, entries: resend } })
})

/** After a change: resolve what completed meanwhile. */
const resolveCompleted = writerSetup.enqueueActions(({ context, enqueue }) => {
  const next = complete(context, context.pending)
  if (next.lac === context.lac) return
  enqueue.assign(next)
  enqueue({ type: 'resolve', params: { firstEntryId: context.lac + 1, lastEntryId: next.lac, lac: next.lac } })
})

/** Fail the writer: keep the error, reject every append not yet resolved. */
const failWith = (code: ErrorCode | null, message: (e: WriterEvent) => string) =>
  writerSetup.enqueueActions(({ event, enqueue }) => {
    const error: WriterError = { code: code ?? ('code' in event ? event.code : 'BOOKIE_UNAVAILABLE'), message: message(event) }
    enqueue.assign({ error })
    enqueue({ type: 'reject', params: { ...error, scope: 'all' } })
  })

const refuse = (code: ErrorCode, message: string) =>
  ({ type: 'reject' as const, params: { code, message, scope: 'appended' as const } })

export const writerMachine = writerSetup.createMachine({
  id: 'writer',
  context: ({ input }) => {
    // An ensemble naming a bookie twice would count one bookie's acks for two positions.
    assert(new Set(input.ensemble).size === input.ensemble.length && input.ensemble.length === input.quorum.ensembleSize,
      `ensemble must hold ${input.quorum.ensembleSize} distinct bookies: ${input.ensemble.join(',')}`)
    return {
      ...input, lastAddPushed: input.lastEntryId, pushedLength: input.length, lac: input.lastEntryId,
      pending: [], failed: [], closeRequested: false, error: null,
    }
  },
  initial: 'open',
  on: {
    fenced: { target: '.fenced' },
  },
  states: {
    open: {
      on: {
        append: { actions: assignIds(false) },
        acks: onAcks(false),
        'bookie.failed': { guard: 'inEnsemble', target: 'changingEnsemble', actions: addFailed },
        unauthorized: {
          target: 'failed',
          actions: failWith('UNAUTHORIZED', (e) => `bookie ${'bookieId' in e ? e.bookieId : '?'} rejected the ledger's master key`),
        },
        close: { target: 'closing', actions: writerSetup.assign({ closeRequested: true }) },
      },
    },
    changingEnsemble: {
      // No add completes while the change is in flight; appends get ids but wait to be sent.
      entry: {
        type: 'changeEnsemble',
        params: ({ context }) => ({ ensemble: context.ensemble, failed: context.failed, lac: context.lac }),
      },
      on: {
        append: [
          { guard: 'closeRequested', actions: refuse('LEDGER_CLOSED', 'the ledger is closing') },
          { actions: assignIds(true) },
        ],
        acks: onAcks(true),
        'bookie.failed': { guard: 'inEnsemble', actions: addFailed },
        close: { actions: writerSetup.assign({ closeRequested: true }) },
        'ensemble.changed': [
          { guard: ({ context, event }) => context.failed.some((b) => event.ensemble.includes(b)), target: 'changingEnsemble', reenter: true, actions: adoptEnsemble },
          { guard: 'closeRequested', target: 'closing', actions: [adoptEnsemble, resolveCompleted] },
          { target: 'open', actions: [adoptEnsemble, resolveCompleted] },
        ],
        'ensemble.failed': [
          { guard: ({ event }) => event.code === 'FENCED', target: 'fenced' },
          { target: 'failed', actions: failWith(null, (e) => ('message' in e ? e.message : 'ensemble change failed')) },
        ],
      },
    },
    closing: {
      // Appends that arrive now are refused; in-flight ones finish first.
      always: { guard: 'drained', target: 'closingMetadata' },
      on: {
        append: { actions: refuse('LEDGER_CLOSED', 'the ledger is closing') },
        acks: onAcks(false),
        'bookie.failed': { guard: 'inEnsemble', target: 'changingEnsemble', actions: addFailed },
      },
    },
    closingMetadata: {
      entry: { type: 'closeMetadata', params: ({ context }) => ({ lastEntryId: context.lac, length: context.length }) },
      on: {
        append: { actions: refuse('LEDGER_CLOSED', 'the ledger is closing') },
        'metadata.closed': { target: 'closed' },
        'metadata.closeFailed': [
          { guard: ({ event }) => event.code === 'FENCED', target: 'fenced' },
          { target: 'failed', actions: failWith(null, (e) => ('message' in e ? e.message : 'close failed')) },
        ],
      },
    },
    closed: {
      on: {
        append: { actions: refuse('LEDGER_CLOSED', 'the ledger is closed') },
        fenced: {},
      },
    },
    fenced: {
      entry: failWith('FENCED', () => 'the ledger was fenced by a recovery; this writer can add no more entries'),
      on: {
        append: { actions: { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'appended' as const }) } },
        fenced: {},
      },
    },
    failed: {
      on: {
        append: { actions: { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'appended' as const }) } },
        fenced: {},
      },
    },
  },
})
