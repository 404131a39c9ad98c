// Recovery of a ledger whose writer may have died (PROTOCOL.md "Recovery", steps 2-6; step 1, the
// OPEN → IN_RECOVERY CAS, happens before this machine starts). Pure: effects are named actions
// (`fence`, `readEntry`, `writeBack`, `closeMetadata`) bound by client/recovery.ts; answers come
// back as events.
//
// Invariants:
// - reading starts only once every write set of the last segment has had at least Qw - Qa + 1 of
//   its bookies fenced (guard `fenceCovered`): then the old writer can get no more acks;
// - reading starts at max(maxLac, firstEntryIdOfLastSegment - 1) + 1 (action `chooseStart`);
// - an entry exists if any bookie returns it intact; it is absent only when Qw - Qa + 1 bookies
//   of its write set said "no such entry" (guard `entryAbsent`); timeouts, errors and corrupt
//   copies are unknown, and too many unknowns fail recovery (RECOVERY_INCOMPLETE), never a guess;
// - every entry found is written back to its write set (recovery adds) before the next is read,
//   and the ledger is closed at the last entry found.
// The guards and `chooseStart` are named so that tests can swap in a broken rule with
// `machine.provide` and check that the simulator catches it.

import { assign, setup } from 'xstate'
import type { ErrorCode } from './errors.ts'
import {
  type IndexMask, type QuorumConfig, NO_INDICES, fullMask, indexBit, isEntryAbsent, isFenceCovered, popcount, writeSetIndices,
  writeSetMask,
} from './quorum.ts'

export interface RecoveryInput {
  ledgerId: number
  quorum: QuorumConfig
  /** The last segment of the ledger: the only one whose entries can be unconfirmed. */
  segment: { firstEntryId: number; ensemble: readonly string[] }
}

export interface RecoveryContext extends RecoveryInput {
  fencedMask: IndexMask
  failedMask: IndexMask
  maxLac: number
  /** Entry being read or written back. */
  entryId: number
  missingMask: IndexMask
  unknownMask: IndexMask
  found: { data: Uint8Array; ledgerLength: number } | null
  ackedMask: IndexMask
  writeFailedMask: IndexMask
  /** Last entry known to exist, and its running ledger length when known. */
  lastEntryId: number
  ledgerLength: number | null
  error: { code: ErrorCode; message: string } | null
}

export type RecoveryEvent =
  | { type: 'fence.ok'; bookieId: string; lac: number }
  | { type: 'fence.failed'; bookieId: string; code: ErrorCode }
  | { type: 'read.found'; entryId: number; bookieId: string; data: Uint8Array; ledgerLength: number }
  | { type: 'read.missing'; entryId: number; bookieId: string }
  | { type: 'read.unknown'; entryId: number; bookieId: string }
  | { type: 'write.acked'; entryId: number; bookieId: string }
  | { type: 'write.failed'; entryId: number; bookieId: string }
  | { type: 'metadata.closed' }
  | { type: 'metadata.closeFailed'; code: ErrorCode; message: string }

/** `fence`: recovery reads fence too (PROTOCOL.md "Recovery" step 4). */
export interface ReadEntryParams { entryId: number; bookies: string[]; fence: boolean }
export interface WriteBackParams { entryId: number; data: Uint8Array; bookies: string[] }
export interface CloseParams { lastEntryId: number; ledgerLength: number | null }

const indexOf = (ctx: RecoveryContext, bookieId: string): number => ctx.segment.ensemble.indexOf(bookieId)
const bitOf = (ctx: RecoveryContext, bookieId: string): IndexMask => {
  const i = indexOf(ctx, bookieId)
  return i < 0 ? NO_INDICES : indexBit(i)
}
const writeMaskOf = (ctx: RecoveryContext): IndexMask => writeSetMask(ctx.entryId, ctx.quorum.ensembleSize, ctx.quorum.writeQuorum)
const writeSetOf = (ctx: RecoveryContext): string[] =>
  writeSetIndices(ctx.entryId, ctx.quorum.ensembleSize, ctx.quorum.writeQuorum).map((i) => ctx.segment.ensemble[i]!)
const allMask = (ctx: RecoveryContext): IndexMask => fullMask(ctx.segment.ensemble.length)

const recoverySetup = setup({
  types: {} as { context: RecoveryContext; events: RecoveryEvent; input: RecoveryInput },
  actions: {
    fence: (_, _p: { bookies: readonly string[] }) => {},
    readEntry: (_, _p: ReadEntryParams) => {},
    writeBack: (_, _p: WriteBackParams) => {},
    closeMetadata: (_, _p: CloseParams) => {},
    // The protocol's start rule (replaceable in tests, see the header): after the highest LAC a
    // fenced bookie reported, and never before the last segment.
    chooseStart: assign(({ context }) => {
      const start = Math.max(context.maxLac, context.segment.firstEntryId - 1) + 1
      return { entryId: start, lastEntryId: start - 1 }
    }),
  },
  guards: {
    fenceCovered: ({ context }) => isFenceCovered(context.fencedMask, context.quorum),
    entryAbsent: ({ context }) => isEntryAbsent(context.missingMask, writeMaskOf(context), context.quorum),
  },
})

const fail = (code: ErrorCode, message: (c: RecoveryContext) => string) =>
  recoverySetup.assign({ error: ({ context }) => ({ code, message: message(context) }) })

type AnswerMask = 'missingMask' | 'unknownMask' | 'ackedMask' | 'writeFailedMask'

/** A bookie's answer about the entry being read or written back: set its bit in `mask`. */
const answer = (mask: AnswerMask) => ({
  guard: ({ context, event }: { context: RecoveryContext; event: RecoveryEvent }) => 'entryId' in event && event.entryId === context.entryId,
  actions: recoverySetup.assign(({ context, event }) => ({
    [mask]: context[mask] | ('bookieId' in event ? bitOf(context, event.bookieId) : NO_INDICES),
  })),
})

const startEntry = (next: (c: RecoveryContext) => number) =>
  recoverySetup.assign(({ context }) => ({
    entryId: next(context), missingMask: NO_INDICES, unknownMask: NO_INDICES, found: null, ackedMask: NO_INDICES, writeFailedMask: NO_INDICES,
  }))

export const recoveryMachine = recoverySetup.createMachine({
  id: 'recovery',
  context: ({ input }) => ({
    ...input, fencedMask: NO_INDICES, failedMask: NO_INDICES, maxLac: -1, entryId: -1, missingMask: NO_INDICES, unknownMask: NO_INDICES,
    found: null, ackedMask: NO_INDICES, writeFailedMask: NO_INDICES, lastEntryId: -1, ledgerLength: null, error: null,
  }),
  initial: 'fencing',
  states: {
    fencing: {
      entry: { type: 'fence', params: ({ context }) => ({ bookies: context.segment.ensemble }) },
      always: [
        { guard: 'fenceCovered', target: 'reading', actions: 'chooseStart' },
        {
          guard: ({ context }) => fenceHopeless(context),
          target: 'failed',
          actions: fail('RECOVERY_INCOMPLETE', (c) =>
            `too few bookies of ledger ${c.ledgerId}'s last segment could be fenced (${popcount(c.fencedMask)} of ${c.segment.ensemble.length}); retry later`),
        },
      ],
      on: {
        'fence.ok': {
          actions: assign(({ context, event }) => ({
            fencedMask: context.fencedMask | bitOf(context, event.bookieId),
            maxLac: Math.max(context.maxLac, event.lac),
          })),
        },
        'fence.failed': [
          {
            guard: ({ event }) => event.code === 'UNAUTHORIZED',
            target: 'failed',
            actions: fail('UNAUTHORIZED', (c) => `a bookie rejected the master key of ledger ${c.ledgerId}`),
          },
          { actions: assign(({ context, event }) => ({ failedMask: context.failedMask | bitOf(context, event.bookieId) })) },
        ],
      },
    },
    reading: {
      entry: { type: 'readEntry', params: ({ context }) => ({ entryId: context.entryId, bookies: writeSetOf(context), fence: true }) },
      always: [
        { guard: 'entryAbsent', target: 'closing' },
        {
          guard: ({ context }) => popcount((context.missingMask | context.unknownMask) & writeMaskOf(context)) >= context.quorum.writeQuorum,
          target: 'failed',
          actions: fail('RECOVERY_INCOMPLETE', (c) =>
            `entry ${c.entryId} of ledger ${c.ledgerId}: ${popcount(c.unknownMask)} of its bookies gave no usable answer, so it can be neither found nor ruled out; retry later`),
        },
      ],
      on: {
        'read.found': {
          guard: ({ context, event }) => event.entryId === context.entryId,
          target: 'writingBack',
          actions: assign(({ event }) => ({ found: { data: event.data, ledgerLength: event.ledgerLength } })),
        },
        'read.missing': answer('missingMask'),
        'read.unknown': answer('unknownMask'),
      },
    },
    writingBack: {
      entry: {
        type: 'writeBack',
        params: ({ context }) => ({ entryId: context.entryId, data: context.found!.data, bookies: writeSetOf(context) }),
      },
      always: [
        {
          guard: ({ context }) => popcount(context.ackedMask & writeMaskOf(context)) >= context.quorum.ackQuorum,
          target: 'reading',
          actions: [
            recoverySetup.assign(({ context }) => ({ lastEntryId: context.entryId, ledgerLength: context.found!.ledgerLength })),
            startEntry((c) => c.entryId + 1),
          ],
        },
        {
          guard: ({ context }) => popcount(context.writeFailedMask & writeMaskOf(context)) > context.quorum.writeQuorum - context.quorum.ackQuorum,
          target: 'failed',
          actions: fail('RECOVERY_INCOMPLETE', (c) => `could not write entry ${c.entryId} of ledger ${c.ledgerId} back to an ack quorum; retry later`),
        },
      ],
      on: {
        'write.acked': answer('ackedMask'),
        'write.failed': answer('writeFailedMask'),
      },
    },
    closing: {
      entry: { type: 'closeMetadata', params: ({ context }) => ({ lastEntryId: context.lastEntryId, ledgerLength: context.ledgerLength }) },
      on: {
        'metadata.closed': { target: 'done' },
        'metadata.closeFailed': {
          target: 'failed',
          actions: assign({ error: ({ event }) => ({ code: event.code, message: event.message }) }),
        },
      },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
  },
})

/** Every bookie of the last segment answered or failed, and the fence is still not covered. */
export function fenceHopeless(ctx: RecoveryContext): boolean {
  return ((ctx.fencedMask | ctx.failedMask) & allMask(ctx)) === allMask(ctx) && !isFenceCovered(ctx.fencedMask, ctx.quorum)
}
