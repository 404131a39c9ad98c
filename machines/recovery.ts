// Recovery of a ledger whose writer may have died (PROTOCOL.md "Recovery", steps 2-6; step 1, the
// OPEN → IN_RECOVERY CAS, happens before this machine starts). Pure: effects are named actions
// (`fence`, `readEntry`, `writeBack`, `changeEnsemble`; for the close `readLength`, `readMetadata`,
// `writeMetadata`) bound by client/recovery.ts; answers come back as events. The close is the
// compare-and-swap loop IN_RECOVERY → CLOSED as states: `measuring` (the ledger's length from the
// last entry's header, when no write-back told it), `reading`, `writing`; a conflict reads again,
// at most RECOVERY_CLOSE_ATTEMPTS_MAX times.
//
// Invariants:
// - reading starts only once every write set of the last segment has had at least Qw - Qa + 1 of
//   its bookies fenced (guard `fenceCovered`): then the old writer can get no more acks;
// - reading starts at max(maxLac, firstEntryIdOfLastSegment - 1) + 1 (action `chooseStart`);
// - an entry exists if any bookie returns it intact; it is absent only when Qw - Qa + 1 bookies
//   of its write set said "no such entry" (guard `entryAbsent`); timeouts, errors and corrupt
//   copies are unknown, and too many unknowns fail recovery (RECOVERY_INCOMPLETE), never a guess;
// - every entry found is written back to its write set (recovery adds) before the next is read,
//   and the ledger is closed at the last entry found;
// - entries are always read from the last segment's ensemble as recovery found it (`segment`:
//   where the old writer put them), and written back to the write ensemble (`ensemble`);
// - a write-back that can no longer reach Qa (more than Qw - Qa of its write set failed) changes
//   the write ensemble: the failed bookies are replaced by bookies never seen in it (so changes
//   are bounded by the cluster's size), positions kept keep their acks, and only the replaced
//   ones get the entry. The changes are kept here and written by the closing CAS only (as
//   BookKeeper's ReadOnlyLedgerHandle does): while the ledger is IN_RECOVERY its segments never
//   change, so a concurrent or later recoverer reads the same ensemble the old writer wrote to,
//   never a replacement whose "no such entry" says nothing about the old writer's acks.
// The guards and `chooseStart` are named so that tests can swap in a broken rule with
// `machine.provide` and check that the simulator catches it.

import { assign, setup } from 'xstate'
import { assert, type ErrorCode } from './errors.ts'
import { recoveryCloseDecision, segmentsAfterChange, type LedgerState, type SegmentLike } from './ledgerRules.ts'
import {
  type IndexMask, type QuorumConfig, NO_INDICES, fullMask, hasIndex, indexBit, isAddDoomed, isEntryAbsent, isFenceCovered, popcount,
  writeSetIndices, writeSetMask,
} from './quorum.ts'

export interface RecoveryInput {
  ledgerId: number
  quorum: QuorumConfig
  /** The last segment of the ledger: the only one whose entries can be unconfirmed. */
  segment: { firstEntryId: number; ensemble: readonly string[] }
}

/** A write ensemble recovery adopted from `firstEntryId` on; written by the closing CAS. */
export interface RecoveryEnsembleChange { firstEntryId: number; ensemble: readonly string[] }

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
  /** Positions of the write ensemble the entry being written back was sent to. */
  sentMask: IndexMask
  /** Where entries are written back: the segment's ensemble, with failed bookies replaced. */
  ensemble: readonly string[]
  ensembleChanges: readonly RecoveryEnsembleChange[]
  /** Last entry known to exist, and its running ledger length when known. */
  lastEntryId: number
  ledgerLength: number | null
  /** Metadata reads of the close so far. */
  closeAttempts: number
  /** The segments the close writes: those read, with the ensemble changes applied. */
  closeSegments: SegmentLike[] | null
  error: { code: ErrorCode; message: string } | null
}

/** Reads of the metadata the close makes before giving up on conflicts. */
export const RECOVERY_CLOSE_ATTEMPTS_MAX = 50

/** What the close reads of the ledger's metadata. */
export interface RecoveryLedgerView { state: LedgerState; lastEntryId: number; segments: readonly SegmentLike[] }

export type RecoveryEvent =
  | { type: 'fence.ok'; bookieId: string; lac: number }
  | { type: 'fence.failed'; bookieId: string; code: ErrorCode }
  | { type: 'read.found'; entryId: number; bookieId: string; data: Uint8Array; ledgerLength: number }
  | { type: 'read.missing'; entryId: number; bookieId: string }
  | { type: 'read.unknown'; entryId: number; bookieId: string }
  | { type: 'write.acked'; entryId: number; bookieId: string }
  | { type: 'write.failed'; entryId: number; bookieId: string }
  | { type: 'ensemble.changed'; ensemble: readonly string[] }
  | { type: 'ensemble.failed'; code: ErrorCode; message: string }
  | { type: 'length.read'; ledgerLength: number }
  | { type: 'metadata.read'; ledger: RecoveryLedgerView }
  | { type: 'metadata.written' }
  | { type: 'metadata.conflict' }
  /** A close effect failed: reading the length, the metadata, or writing it. */
  | { type: 'metadata.failed'; code: ErrorCode; message: string }

/** `fence`: recovery reads fence too (PROTOCOL.md "Recovery" step 4). */
export interface ReadEntryParams { entryId: number; bookies: string[]; fence: boolean }
export interface WriteBackParams { entryId: number; data: Uint8Array; bookies: string[] }
/**
 * Replace `failed` in `ensemble` with as many live, writable bookies, none of `exclude` (every
 * bookie the segment or an earlier change held); answered by `ensemble.changed`/`ensemble.failed`.
 */
export interface RecoveryChangeParams { entryId: number; ensemble: readonly string[]; failed: string[]; exclude: string[] }
/** Write CLOSED over the metadata last read, at its revision. */
export interface CloseParams { lastEntryId: number; ledgerLength: number; segments: SegmentLike[] }

/** The bit of `bookieId`'s position in `ensemble` (the read ensemble unless told otherwise); 0 when absent. */
const bitOf = (ctx: RecoveryContext, bookieId: string, ensemble: readonly string[] = ctx.segment.ensemble): IndexMask => {
  const i = ensemble.indexOf(bookieId)
  return i < 0 ? NO_INDICES : indexBit(i)
}
const writeMaskOf = (ctx: RecoveryContext): IndexMask => writeSetMask(ctx.entryId, ctx.quorum.ensembleSize, ctx.quorum.writeQuorum)
/** The bookies of the entry's write set in `ensemble` whose bit is in `mask`. */
const writeSetOf = (ctx: RecoveryContext, ensemble: readonly string[] = ctx.segment.ensemble, mask: IndexMask = fullMask(ensemble.length)): string[] =>
  writeSetIndices(ctx.entryId, ctx.quorum.ensembleSize, ctx.quorum.writeQuorum).filter((i) => hasIndex(mask, i)).map((i) => ensemble[i]!)
const allMask = (ctx: RecoveryContext): IndexMask => fullMask(ctx.segment.ensemble.length)

const recoverySetup = setup({
  types: {} as { context: RecoveryContext; events: RecoveryEvent; input: RecoveryInput },
  actions: {
    fence: (_, _p: { bookies: readonly string[] }) => {},
    readEntry: (_, _p: ReadEntryParams) => {},
    writeBack: (_, _p: WriteBackParams) => {},
    changeEnsemble: (_, _p: RecoveryChangeParams) => {},
    readLength: (_, _p: { entryId: number }) => {},
    readMetadata: () => {},
    writeMetadata: (_, _p: CloseParams) => {},
    /** The ledger was found CLOSED at the entry this recovery found: the metadata read is the outcome. */
    adoptRead: () => {},
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

/**
 * A bookie's answer about the entry being read or written back: set its bit in `mask`. Read
 * answers are positions of the read ensemble, write answers of the write ensemble (a bookie
 * replaced meanwhile has no position there: its late answer is ignored).
 */
const answer = (mask: AnswerMask) => ({
  guard: ({ context, event }: { context: RecoveryContext; event: RecoveryEvent }) => 'entryId' in event && event.entryId === context.entryId,
  actions: recoverySetup.assign(({ context, event }) => {
    const ensemble = mask === 'ackedMask' || mask === 'writeFailedMask' ? context.ensemble : context.segment.ensemble
    return { [mask]: context[mask] | ('bookieId' in event ? bitOf(context, event.bookieId, ensemble) : NO_INDICES) }
  }),
})

const startEntry = (next: (c: RecoveryContext) => number) =>
  recoverySetup.assign(({ context }) => ({
    entryId: next(context), missingMask: NO_INDICES, unknownMask: NO_INDICES, found: null, ackedMask: NO_INDICES, writeFailedMask: NO_INDICES, sentMask: NO_INDICES,
  }))

/** Positions of the entry's write set whose write-back failed: the bookies to replace. */
const failedInWriteSet = (ctx: RecoveryContext): IndexMask => ctx.writeFailedMask & writeMaskOf(ctx)

/** Every bookie the segment or a change held: never picked as a replacement. */
const seenBookies = (ctx: RecoveryContext): string[] =>
  [...new Set([...ctx.segment.ensemble, ...ctx.ensembleChanges.flatMap((c) => c.ensemble)])]

/**
 * Adopt the write ensemble of `ensemble.changed`: record the change at the entry being written
 * back (replacing one recorded at the same entry), and forget the answers of replaced positions.
 */
const adoptEnsemble = recoverySetup.assign(({ context, event }) => {
  if (event.type !== 'ensemble.changed') return {}
  const next = event.ensemble
  assert(next.length === context.ensemble.length && new Set(next).size === next.length,
    `a recovery ensemble change keeps ${context.ensemble.length} distinct bookies: ${next.join(',')}`)
  let replaced = NO_INDICES
  context.ensemble.forEach((b, i) => {
    if (next[i] === b) return
    assert(hasIndex(failedInWriteSet(context), i), `only failed bookies of the write set are replaced (position ${i}: ${b})`)
    assert(!seenBookies(context).includes(next[i]!), `a replacement is a bookie the segment never held: ${next[i]}`)
    replaced |= indexBit(i)
  })
  // A bookie that failed during the change may still be in it: the next round replaces it.
  assert(replaced !== NO_INDICES, `a recovery ensemble change replaces a bookie: ${next.join(',')}`)
  const earlier = context.ensembleChanges.filter((c) => c.firstEntryId !== context.entryId)
  return {
    ensemble: next,
    ensembleChanges: [...earlier, { firstEntryId: context.entryId, ensemble: next }],
    ackedMask: context.ackedMask & ~replaced,
    writeFailedMask: context.writeFailedMask & ~replaced,
    sentMask: context.sentMask & ~replaced,
  }
})

export const recoveryMachine = recoverySetup.createMachine({
  id: 'recovery',
  context: ({ input }) => ({
    ...input, fencedMask: NO_INDICES, failedMask: NO_INDICES, maxLac: -1, entryId: -1, missingMask: NO_INDICES, unknownMask: NO_INDICES,
    found: null, ackedMask: NO_INDICES, writeFailedMask: NO_INDICES, sentMask: NO_INDICES, ensemble: input.segment.ensemble, ensembleChanges: [],
    lastEntryId: -1, ledgerLength: null, closeAttempts: 0, closeSegments: null, error: null,
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
      // Sent to the positions of the write set it was not sent to yet: all of them at first,
      // the replaced ones after an ensemble change.
      entry: [
        {
          type: 'writeBack',
          params: ({ context }) => ({ entryId: context.entryId, data: context.found!.data, bookies: writeSetOf(context, context.ensemble, fullMask(context.ensemble.length) & ~context.sentMask) }),
        },
        recoverySetup.assign({ sentMask: ({ context }) => context.sentMask | writeMaskOf(context) }),
      ],
      always: [
        {
          guard: ({ context }) => popcount(context.ackedMask & writeMaskOf(context)) >= context.quorum.ackQuorum,
          target: 'reading',
          actions: [
            recoverySetup.assign(({ context }) => ({ lastEntryId: context.entryId, ledgerLength: context.found!.ledgerLength })),
            startEntry((c) => c.entryId + 1),
          ],
        },
        { guard: ({ context }) => isAddDoomed(context.writeFailedMask, writeMaskOf(context), context.quorum), target: 'changingEnsemble' },
      ],
      on: {
        'write.acked': answer('ackedMask'),
        'write.failed': answer('writeFailedMask'),
      },
    },
    changingEnsemble: {
      entry: {
        type: 'changeEnsemble',
        params: ({ context }) => ({
          entryId: context.entryId,
          ensemble: context.ensemble,
          failed: writeSetOf(context, context.ensemble, failedInWriteSet(context)),
          exclude: seenBookies(context),
        }),
      },
      on: {
        // Answers of bookies that stay count; failures of others are replaced on the next round.
        'write.acked': answer('ackedMask'),
        'write.failed': answer('writeFailedMask'),
        'ensemble.changed': { target: 'writingBack', actions: adoptEnsemble },
        'ensemble.failed': {
          target: 'failed',
          actions: assign({
            error: ({ context, event }) => ({
              code: event.code,
              message: `entry ${context.entryId} of ledger ${context.ledgerId} cannot reach an ack quorum and its failed bookies cannot be replaced: ${event.message}`,
            }),
          }),
        },
      },
    },
    closing: {
      entry: recoverySetup.assign({ closeAttempts: 0, closeSegments: null }),
      initial: 'deciding',
      on: {
        'metadata.failed': { target: 'failed', actions: assign({ error: ({ event }) => ({ code: event.code, message: event.message }) }) },
      },
      states: {
        deciding: {
          always: [
            { guard: ({ context }) => context.ledgerLength === null && context.lastEntryId >= 0, target: 'measuring' },
            { target: 'reading' },
          ],
        },
        measuring: {
          entry: { type: 'readLength', params: ({ context }) => ({ entryId: context.lastEntryId }) },
          on: { 'length.read': { target: 'reading', actions: assign({ ledgerLength: ({ event }) => event.ledgerLength }) } },
        },
        reading: {
          entry: 'readMetadata',
          on: {
            'metadata.read': [
              // Closed by another recoverer at the same entry: success, its segments stand.
              { guard: ({ context, event }) => recoveryCloseDecision(event.ledger, context.lastEntryId).kind === 'done', target: '#recovery.done', actions: 'adoptRead' },
              {
                guard: ({ context, event }) => recoveryCloseDecision(event.ledger, context.lastEntryId).kind === 'error',
                target: '#recovery.failed',
                actions: assign({
                  error: ({ context, event }) => {
                    const d = recoveryCloseDecision(event.ledger, context.lastEntryId) as { code: ErrorCode; message: string }
                    return { code: d.code, message: `ledger ${context.ledgerId}: ${d.message}` }
                  },
                }),
              },
              {
                guard: ({ context, event }) => segmentsAfterRecovery(event.ledger.segments, context.ensembleChanges) === null,
                target: '#recovery.failed',
                actions: fail('METADATA_CONFLICT', (c) => `ledger ${c.ledgerId}: a segment was added while it was being recovered`),
              },
              { target: 'writing', actions: assign({ closeSegments: ({ context, event }) => segmentsAfterRecovery(event.ledger.segments, context.ensembleChanges) }) },
            ],
          },
        },
        writing: {
          entry: {
            type: 'writeMetadata',
            params: ({ context }) => ({ lastEntryId: context.lastEntryId, ledgerLength: context.ledgerLength ?? 0, segments: context.closeSegments! }),
          },
          on: {
            'metadata.written': { target: '#recovery.done' },
            'metadata.conflict': [
              { guard: ({ context }) => context.closeAttempts + 1 < RECOVERY_CLOSE_ATTEMPTS_MAX, target: 'reading', actions: assign({ closeAttempts: ({ context }) => context.closeAttempts + 1 }) },
              { target: '#recovery.failed', actions: fail('METADATA_CONFLICT', (c) => `could not close ledger ${c.ledgerId} after recovery: too many concurrent updates`) },
            ],
          },
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

/**
 * The segments a recovery closes with: those just read, with its ensemble changes applied in
 * order. Null when the ledger grew a segment past a change meanwhile, which cannot happen while it
 * is IN_RECOVERY (no writer may change it) unless something broke that rule.
 */
export function segmentsAfterRecovery(segments: readonly SegmentLike[], changes: readonly RecoveryEnsembleChange[]): SegmentLike[] | null {
  let out = segments.map((s) => ({ firstEntryId: s.firstEntryId, ensemble: [...s.ensemble] }))
  for (const c of changes) {
    const last = out[out.length - 1]
    if (last && last.firstEntryId > c.firstEntryId) return null
    out = segmentsAfterChange(out, c.firstEntryId - 1, c.ensemble)
  }
  return out
}
