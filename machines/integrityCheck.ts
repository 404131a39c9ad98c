// What a bookie's integrity check does with one ledger it cannot vouch for (pure; the IO is in
// actors/integrityCheck.ts). A ledger is in limbo after an unclean stop or a wiped disk: the
// bookie may have lost entries it acknowledged, so it must not answer "no such entry" for them
// while recovery could still count that answer as absence (PROTOCOL.md "Recovery", step 4).
// - deleted from the metadata: nothing can read it any more: it leaves limbo;
// - CLOSED: never recovered again, so a "no such entry" cannot cut it short (a reader tries
//   another replica): it leaves limbo, once the entries its segments place here have been
//   verified (and the ledger marked for an in-place re-copy when some are missing or damaged);
// - OPEN or IN_RECOVERY and placed here (any segment): recovery may still ask: it stays in limbo
//   until its metadata says CLOSED;
// - not placed here in any segment: no reader or recoverer asks this bookie: it leaves limbo.

import { heldEntries, segmentRange, type LedgerView } from './replicator.ts'

export type LimboVerdict = 'leave' | 'verify' | 'keep'

export function limboVerdict(md: LedgerView | null, bookieId: string): LimboVerdict {
  if (md === null) return 'leave'
  const placed = md.segments.some((s) => s.ensemble.includes(bookieId))
  if (!placed) return 'leave'
  return md.state === 'CLOSED' ? 'verify' : 'keep'
}

/**
 * The entries a CLOSED ledger places on `bookieId`, in ascending chunks of at most `chunk` ids
 * (a ledger may hold millions: never one array of them all).
 */
export function* placedEntryChunks(md: LedgerView, bookieId: string, chunk: number): Generator<number[]> {
  for (let i = 0; i < md.segments.length; i++) {
    const range = segmentRange(md, i)
    const position = md.segments[i]!.ensemble.indexOf(bookieId)
    if (range === null || position < 0) continue
    for (let from = range.first; from <= range.last;) {
      const ids = heldEntries(from, range.last, position, md.ensembleSize, md.writeQuorum, chunk)
      if (ids.length === 0) break
      yield ids
      from = ids[ids.length - 1]! + 1
    }
  }
}

/** The limbo state after a check: what stays, and whether the bookie is checked now. */
export interface CheckOutcome {
  /** Ledgers left in limbo (kept, or whose metadata could not be read). */
  limbo: number[]
  /** True when the metadata's ledger list could not be read (the bookie stays unchecked). */
  unchecked: boolean
}

/** 'clean' when nothing is left in limbo and the bookie is checked, else 'limbo'. */
export function checkResult(o: CheckOutcome): 'clean' | 'limbo' {
  return o.limbo.length === 0 && !o.unchecked ? 'clean' : 'limbo'
}
