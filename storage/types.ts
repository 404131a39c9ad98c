// Interfaces of a bookie's storage and of the metadata store. Each has a real implementation
// (journal files with fdatasync, RocksDB, JetStream KV) and an in-memory one with the same
// semantics for unit tests and the deterministic simulator.

import type { DigestType } from '../machines/responses.ts'

/**
 * Journal framing (formats 2 and 3, storage/journal.ts): each segment file opens with a header
 * of this size, and each record has a header of this size (length, group offset, payload and
 * header checksums). Here so the in-memory journal reports the same positions as the real one.
 */
export const JOURNAL_SEGMENT_HEADER_BYTES = 16
export const JOURNAL_RECORD_HEADER_BYTES = 16

/** Where a journal record sits: segment file number and byte offset of the record's end. */
export interface JournalPosition {
  readonly segment: number
  readonly offset: number
}

export interface Journal {
  /**
   * Append one record, given whole or as parts written one after another (not copied: they must
   * not change until the promise settles). Resolves after an fdatasync that covers it (group
   * commit: one sync for every record waiting at that moment). Rejects if the journal is closed
   * or the write fails.
   */
  append(record: Uint8Array | readonly Uint8Array[]): Promise<JournalPosition>
  /** Position just past the last record known to be on disk. */
  readonly syncedPosition: JournalPosition
  /** Bytes waiting for the next group commit (a gauge for the inspector). */
  readonly pendingBytes: number
  /** Delete segment files wholly before `position.segment`. */
  trimBefore(position: JournalPosition): Promise<void>
  /** Flush what is waiting, then close files. Further appends reject. */
  close(): Promise<void>
}

export interface JournalReplay {
  /** Each good record from `from` on, in order, with the position just past it. */
  records: AsyncIterable<{ record: Buffer; position: JournalPosition }>
}

export interface StoredLedgerState {
  /** Master key (one-way hash of the password); null before the first add. */
  masterKey: Uint8Array | null
  /** The ledger's digest type as the first add named it (to verify stored entries); null before. */
  digestType: DigestType | null
  fenced: boolean
  /** Explicit LAC a writer sent; -1 when none. */
  explicitLac: number
}

export interface EntryRef {
  readonly ledgerId: number
  readonly entryId: number
}

export interface StoredEntry extends EntryRef {
  readonly data: Uint8Array
}

/** The RocksDB-backed entry store. Ids are integers in [0, 2^53). */
export interface EntryStore {
  putEntries(entries: readonly StoredEntry[]): Promise<void>
  /** One batched read; null where the store has no such entry. */
  getEntries(refs: readonly EntryRef[]): Promise<(Buffer | null)[]>
  /** Highest stored entryId of the ledger, -1 when none. */
  lastEntryId(ledgerId: number): Promise<number>
  getLedgerState(ledgerId: number): Promise<StoredLedgerState | null>
  putLedgerState(ledgerId: number, state: StoredLedgerState): Promise<void>
  /** Ledger ids that have state or entries here, ascending. */
  listLedgers(): AsyncIterable<number>
  /** Remove a ledger's entries and state. */
  deleteLedger(ledgerId: number): Promise<void>
  /**
   * Compact the key ranges of ledgers `firstLedgerId..lastLedgerId` (inclusive), so the space of
   * deleted ledgers is reclaimed now rather than whenever background compaction gets there.
   */
  compactLedgers(firstLedgerId: number, lastLedgerId: number): Promise<void>
  /** Persist memtables (RocksDB flush) so the journal before this point can be dropped. */
  flush(): Promise<void>
  close(): Promise<void>
}

/** A versioned key/value map with compare-and-swap on revisions (JetStream KV semantics). */
export interface VersionedKv {
  get(key: string): Promise<{ value: Uint8Array; revision: number } | null>
  /** Create; throws QuireError METADATA_CONFLICT-free `KvConflict` if the key exists. */
  create(key: string, value: Uint8Array): Promise<number>
  /** Update if the key is at `revision`; throws `KvConflict` otherwise. */
  update(key: string, value: Uint8Array, revision: number): Promise<number>
  /** Unconditional write. */
  put(key: string, value: Uint8Array): Promise<number>
  delete(key: string): Promise<void>
  /** Keys (optionally under a prefix), any order. */
  keys(prefix?: string): AsyncIterable<string>
}

/** Thrown by VersionedKv when a CAS loses; callers re-read and retry. */
export class KvConflict extends Error {
  constructor(readonly key: string) {
    super(`revision conflict on ${key}`)
    this.name = 'KvConflict'
  }
}
