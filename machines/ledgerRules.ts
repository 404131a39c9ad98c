// Metadata rules of the writer and of recovery (PROTOCOL.md "Ensemble change" step 2-3, "Close",
// "Recovery" step 6), as pure functions of the metadata last read: client/ applies them around
// its compare-and-swap loops, and test/unit/ledgerRules.test.ts pins each branch.

import type { ErrorCode } from './errors.ts'

export type LedgerState = 'OPEN' | 'IN_RECOVERY' | 'CLOSED'

export interface SegmentLike {
  firstEntryId: number
  ensemble: string[]
}

/** What to do about closing at `lastEntryId`, given the state just read. */
export type CloseDecision =
  | { kind: 'write' }
  | { kind: 'done' }
  | { kind: 'error'; code: ErrorCode; message: string }

/** The writer's close: OPEN → write; IN_RECOVERY → fenced; CLOSED → done if at the same entry. */
export function writerCloseDecision(md: { state: LedgerState; lastEntryId: number }, lastEntryId: number): CloseDecision {
  if (md.state === 'OPEN') return { kind: 'write' }
  if (md.state === 'IN_RECOVERY') return { kind: 'error', code: 'FENCED', message: 'the ledger is being recovered' }
  if (md.lastEntryId === lastEntryId) return { kind: 'done' }
  return { kind: 'error', code: 'METADATA_CONFLICT', message: `the ledger was closed at entry ${md.lastEntryId}, this writer has ${lastEntryId}` }
}

/** Recovery's close: IN_RECOVERY → write; CLOSED by another recoverer → done if it agrees. */
export function recoveryCloseDecision(md: { state: LedgerState; lastEntryId: number }, lastEntryId: number): CloseDecision {
  if (md.state === 'CLOSED') {
    return md.lastEntryId === lastEntryId
      ? { kind: 'done' }
      : { kind: 'error', code: 'METADATA_CONFLICT', message: `the ledger was closed at entry ${md.lastEntryId} while this recovery found ${lastEntryId}` }
  }
  return { kind: 'write' }
}

/** Only an OPEN ledger's ensemble may change: IN_RECOVERY means fenced, CLOSED means done. */
export function ensembleChangeRefusal(state: LedgerState): { code: ErrorCode; message: string } | null {
  if (state === 'IN_RECOVERY') return { code: 'FENCED', message: 'the ledger is being recovered' }
  if (state === 'CLOSED') return { code: 'LEDGER_CLOSED', message: 'the ledger was closed' }
  return null
}

/**
 * The segments after an ensemble change at `lac`: a new segment from lac + 1 with `ensemble`, or,
 * when the last segment already starts at lac + 1 (nothing in it is confirmed), that segment with
 * its ensemble replaced.
 */
export function segmentsAfterChange(segmentsBefore: readonly SegmentLike[], lac: number, ensemble: readonly string[]): SegmentLike[] {
  const segments = segmentsBefore.map((s) => ({ firstEntryId: s.firstEntryId, ensemble: [...s.ensemble] }))
  const last = segments[segments.length - 1]
  if (last && last.firstEntryId === lac + 1) last.ensemble = [...ensemble]
  else segments.push({ firstEntryId: lac + 1, ensemble: [...ensemble] })
  return segments
}
