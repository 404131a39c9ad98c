// The ledger writer (PROTOCOL.md "Add path", "Close"): assigns entry ids, sends each entry to its
// write set, counts acks, advances the LAC over the contiguous prefix of complete entries and
// resolves appends in entryId order. Pure: effects are named actions with params (`send`,
// `resolve`, `reject`, `closeMetadata`) that actors/ binds with `machine.provide`.
//
// Invariants:
// - entry ids are assigned once, consecutively, from lastEntryId + 1;
// - `pending` holds exactly the entries lac+1 .. lastAddPushed, in order;
// - `resolve` is emitted for consecutive ranges only, never past an incomplete entry;
// - once fenced, closed or failed, nothing is sent and nothing more is resolved.

import { assign, enqueueActions, setup } from 'xstate'
import { assert, type ErrorCode } from './errors.ts'
import {
  type QuorumConfig, isAddComplete, isAddDoomed, writeSetMask,
} from './quorum.ts'

export interface PendingEntry {
  readonly entryId: number
  readonly payload: Uint8Array
  /** Write set over ensemble indices, and which of it acked / failed. */
  readonly writeMask: number
  readonly ackedMask: number
  readonly failedMask: number
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
  lac: number
  pending: readonly PendingEntry[]
  error: WriterError | null
}

export type WriterEvent =
  | { type: 'append'; payloads: readonly Uint8Array[] }
  | { type: 'acks'; bookieId: string; entryIds: readonly number[] }
  | { type: 'fenced'; bookieId: string }
  | { type: 'unauthorized'; bookieId: string }
  /** A bookie failed these adds (explicit error, read-only, timeout, gone). */
  | { type: 'bookie.failed'; bookieId: string; entryIds: readonly number[]; code: ErrorCode; reason: string }
  | { type: 'close' }
  | { type: 'metadata.closed' }
  | { type: 'metadata.closeFailed'; code: ErrorCode; message: string }

export interface SendParams {
  lac: number
  ensemble: readonly string[]
  entries: ReadonlyArray<{ entryId: number; payload: Uint8Array }>
}
export interface ResolveParams { firstEntryId: number; lastEntryId: number; lac: number }
/** `appended`: only the appends of the event being refused; `all`: every append not yet resolved. */
export interface RejectParams { code: ErrorCode; message: string; scope: 'all' | 'appended' }
export interface CloseMetadataParams { lastEntryId: number; length: number }

/** Apply one bookie's acks; returns the new pending list, LAC and length. */
export function applyAcks(
  ctx: WriterContext, bookieIndex: number, entryIds: readonly number[],
): { pending: PendingEntry[]; lac: number; length: number } {
  const bit = 1 << bookieIndex
  const base = ctx.lac + 1
  const pending = ctx.pending.slice()
  for (const id of entryIds) {
    const i = id - base
    const p = pending[i]
    if (p === undefined || p.entryId !== id || (p.writeMask & bit) === 0) continue
    pending[i] = { ...p, ackedMask: p.ackedMask | bit }
  }
  let done = 0
  let length = ctx.length
  for (const p of pending) {
    if (!isAddComplete(p.ackedMask, p.writeMask, ctx.quorum.ackQuorum)) break
    length += p.payload.byteLength
    done++
  }
  return { pending: done === 0 ? pending : pending.slice(done), lac: ctx.lac + done, length }
}

const writerSetup = setup({
  types: {} as { context: WriterContext; events: WriterEvent; input: WriterInput },
  actions: {
    send: (_, _params: SendParams) => {},
    resolve: (_, _params: ResolveParams) => {},
    reject: (_, _params: RejectParams) => {},
    closeMetadata: (_, _params: CloseMetadataParams) => {},
  },
  guards: {
    drained: ({ context }) => context.pending.length === 0,
  },
})

const recordAcks = writerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'acks') return
  const index = context.ensemble.indexOf(event.bookieId)
  if (index < 0) return
  const next = applyAcks(context, index, event.entryIds)
  enqueue.assign(next)
  if (next.lac > context.lac) {
    enqueue({ type: 'resolve', params: { firstEntryId: context.lac + 1, lastEntryId: next.lac, lac: next.lac } })
  }
})

export const writerMachine = writerSetup.createMachine({
  id: 'writer',
  context: ({ input }) => {
    // An ensemble naming a bookie twice would count one bookie's acks for two positions.
    assert(new Set(input.ensemble).size === input.ensemble.length && input.ensemble.length === input.quorum.ensembleSize,
      `ensemble must hold ${input.quorum.ensembleSize} distinct bookies: ${input.ensemble.join(',')}`)
    return { ...input, lastAddPushed: input.lastEntryId, lac: input.lastEntryId, pending: [], error: null }
  },
  initial: 'open',
  states: {
    open: {
      on: {
        append: {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const { ensembleSize: e, writeQuorum: w } = context.quorum
            const added: PendingEntry[] = []
            let id = context.lastAddPushed
            for (const payload of event.payloads) {
              id++
              added.push({ entryId: id, payload, writeMask: writeSetMask(id, e, w), ackedMask: 0, failedMask: 0 })
            }
            enqueue.assign({ lastAddPushed: id, pending: [...context.pending, ...added] })
            enqueue({
              type: 'send',
              params: { lac: context.lac, ensemble: context.ensemble, entries: added.map(({ entryId, payload }) => ({ entryId, payload })) },
            })
          }),
        },
        acks: { actions: recordAcks },
        'bookie.failed': [
          {
            guard: ({ context, event }) => doomsAny(context, event.bookieId, event.entryIds),
            target: 'failed',
            actions: [
              assign({ error: ({ event }) => ({ code: event.code, message: `bookie ${event.bookieId} failed adds (${event.reason}) and the ack quorum can no longer be reached` }) }),
              { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'all' as const }) },
            ],
          },
          { actions: assign({ pending: ({ context, event }) => markFailed(context, event.bookieId, event.entryIds) }) },
        ],
        fenced: { target: 'fenced' },
        unauthorized: {
          target: 'failed',
          actions: [
            assign({ error: ({ event }) => ({ code: 'UNAUTHORIZED' as const, message: `bookie ${event.bookieId} rejected the ledger's master key` }) }),
            { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'all' as const }) },
          ],
        },
        close: { target: 'closing' },
      },
    },
    closing: {
      // Appends that arrive now are refused; in-flight ones finish first.
      always: { guard: 'drained', target: 'closingMetadata' },
      on: {
        append: { actions: { type: 'reject', params: { code: 'LEDGER_CLOSED', message: 'the ledger is closing', scope: 'appended' } } },
        acks: { actions: recordAcks },
        'bookie.failed': {
          guard: ({ context, event }) => doomsAny(context, event.bookieId, event.entryIds),
          target: 'failed',
          actions: [
            assign({ error: ({ event }) => ({ code: event.code, message: `bookie ${event.bookieId} failed adds while closing (${event.reason})` }) }),
            { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'all' as const }) },
          ],
        },
        fenced: { target: 'fenced' },
      },
    },
    closingMetadata: {
      entry: { type: 'closeMetadata', params: ({ context }) => ({ lastEntryId: context.lac, length: context.length }) },
      on: {
        append: { actions: { type: 'reject', params: { code: 'LEDGER_CLOSED', message: 'the ledger is closing', scope: 'appended' } } },
        'metadata.closed': { target: 'closed' },
        'metadata.closeFailed': [
          { guard: ({ event }) => event.code === 'FENCED', target: 'fenced' },
          {
            target: 'failed',
            actions: [
              assign({ error: ({ event }) => ({ code: event.code, message: event.message }) }),
              { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'all' as const }) },
            ],
          },
        ],
      },
    },
    closed: {
      on: { append: { actions: { type: 'reject', params: { code: 'LEDGER_CLOSED', message: 'the ledger is closed', scope: 'appended' } } } },
    },
    fenced: {
      entry: [
        assign({ error: { code: 'FENCED', message: 'the ledger was fenced by a recovery; this writer can add no more entries' } }),
        { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'all' as const }) },
      ],
      on: { append: { actions: { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'appended' as const }) } } },
    },
    failed: {
      on: { append: { actions: { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'appended' as const }) } } },
    },
  },
})

function markFailed(ctx: WriterContext, bookieId: string, entryIds: readonly number[]): PendingEntry[] {
  const index = ctx.ensemble.indexOf(bookieId)
  if (index < 0) return ctx.pending.slice()
  const bit = 1 << index
  const ids = new Set(entryIds)
  return ctx.pending.map((p) => (ids.has(p.entryId) && (p.writeMask & bit) !== 0 ? { ...p, failedMask: p.failedMask | bit } : p))
}

function doomsAny(ctx: WriterContext, bookieId: string, entryIds: readonly number[]): boolean {
  return markFailed(ctx, bookieId, entryIds).some((p) => isAddDoomed(p.failedMask, p.writeMask, ctx.quorum))
}
