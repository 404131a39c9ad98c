// Which damaged copies a bookie must get back (pure). A bookie's entry store may name as damaged
// an entry it never held: the ids inside an unreadable block are guessed by point reads, which a
// Bloom filter's false positive turns into a read of that block (storage/entrySalvage.ts). Only
// the entries the ledger's metadata places on the bookie can be rewritten by autorecovery, so the
// others are dropped from the list, or it would never empty.

import { holdsEntry, segmentRange, type LedgerView } from './replicator.ts'

/** True when the ledger's metadata places a copy of `entryId` on `bookieId`. */
export function placedOn(md: LedgerView, bookieId: string, entryId: number): boolean {
  for (let i = md.segments.length - 1; i >= 0; i--) {
    const seg = md.segments[i]!
    if (entryId < seg.firstEntryId) continue
    // An open ledger's last segment has no end yet; a closed one ends at lastEntryId.
    const range = segmentRange(md, i)
    if (range !== null && entryId > range.last) return false
    const position = seg.ensemble.indexOf(bookieId)
    return position >= 0 && holdsEntry(entryId, position, md.ensembleSize, md.writeQuorum)
  }
  return false
}
