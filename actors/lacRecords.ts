// A bookie's explicit LACs, journaled together: every LAC its ledger machines ask to persist
// (machines/bookieLedger.ts `journal.lac`) in one turn of microtasks goes into one `lacs` journal
// record (actors/journalRecords.ts), not one `lac` record each. A writeLacs frame names every
// idle ledger of a client at once (1,000 ledgers: 1,000 items per interval); each item still goes
// through its ledger's machine, in order with that ledger's adds and fences, but they share one
// record, one framing pass and one promise.
//
// Invariants: a LAC counts as persisted (its `synced` runs) only once the record holding it is
// synced; a record holds at most LACS_PER_RECORD ledgers (more are split); a failed append is
// reported once per record and no `synced` of it runs.

import type { JournalRecord } from './journalRecords.ts'

/** Ledgers per `lacs` record: a writeLacs frame holds at most 8,192 (LIMITS.lacsPerFrame). */
export const LACS_PER_RECORD = 8192

interface PendingLac { ledgerId: number; lac: number; synced: () => void }

export class LacRecords {
  private pending: PendingLac[] = []
  private scheduled = false
  /** Records appended and LACs in them since start (tests count them). */
  readonly stats = { records: 0, lacs: 0 }

  constructor(
    private readonly append: (r: JournalRecord) => Promise<void>,
    private readonly failed: (err: unknown) => void,
  ) {}

  /** Persist `lac` for the ledger; `synced` runs once it is on disk. */
  queue(ledgerId: number, lac: number, synced: () => void): void {
    this.pending.push({ ledgerId, lac, synced })
    if (!this.scheduled) {
      this.scheduled = true
      // After the other items of the same frame: their machines run in the same microtask round.
      queueMicrotask(() => this.flush())
    }
  }

  private flush(): void {
    this.scheduled = false
    const all = this.pending
    this.pending = []
    for (let i = 0; i < all.length; i += LACS_PER_RECORD) {
      const part = all.length <= LACS_PER_RECORD ? all : all.slice(i, i + LACS_PER_RECORD)
      const x: number[] = []
      for (const p of part) x.push(p.ledgerId, p.lac)
      this.stats.records++
      this.stats.lacs += part.length
      this.append({ t: 'lacs', x }).then(() => { for (const p of part) p.synced() }, this.failed)
    }
  }
}
