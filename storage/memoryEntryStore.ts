// In-memory EntryStore for unit tests and the deterministic simulator: the same contract as
// RocksEntryStore (storage/entryStore.ts), held to it by the shared cases in
// test/integration/entryStore.test.ts. Ids are asserted to be integers in [0, 2^53) as there; ledgers list
// in ascending order; lastEntryId is the highest stored entryId of the ledger.
// Invariants: it keeps private copies of what it is given and hands out fresh copies, so no
// caller can change stored bytes except through the fault hook; after close() every call throws.
// Fault model:
// - bit rot: corrupt(ledgerId, entryId) flips every bit of one byte of a stored entry, silently,
//   as a disk would: later reads return the damaged bytes with no error, and it is the reader's
//   digest check that must notice;
// - power cut: powerCut() loses every write since the last flush(), as RocksDB loses what its
//   unsynced WAL and memtable held (the worst case: none of it reached the disk). A bookie's
//   checkpoint flushes before it records a journal position, so journal replay restores what
//   was lost. A process crash loses nothing here (the OS still has RocksDB's WAL): do nothing.

import { assert } from '../machines/errors.ts'
import type { BookieEntryStore } from './bookieDisk.ts'
import type { CompactionResult } from './entryLogCompaction.ts'
import type { DamageEvent, StoreDamage } from './entryStore.ts'
import type { EntryRef, StoredEntry, StoredLedgerState } from './types.ts'

const ID_END = 2 ** 53

function assertId(id: number, what: string): void {
  assert(Number.isInteger(id) && id >= 0 && id < ID_END, `${what} must be an integer in [0, 2^53), got ${id}`)
}

interface LedgerEntries {
  readonly byId: Map<number, Buffer>
  /** Entries are only ever removed with their whole ledger, so the maximum only grows. */
  last: number
}

function copyState(state: StoredLedgerState): StoredLedgerState {
  return {
    masterKey: state.masterKey === null ? null : Uint8Array.from(state.masterKey),
    digestType: state.digestType,
    fenced: state.fenced,
    explicitLac: state.explicitLac,
  }
}

function snapshot(entries: Map<number, LedgerEntries>, states: Map<number, StoredLedgerState>, meta: Map<string, Buffer>) {
  return {
    entries: new Map([...entries].map(([id, l]) => [id, { byId: new Map(l.byId), last: l.last }])),
    states: new Map([...states].map(([id, st]) => [id, copyState(st)])),
    meta: new Map(meta),
  }
}

export class MemoryEntryStore implements BookieEntryStore {
  private entries = new Map<number, LedgerEntries>()
  private states = new Map<number, StoredLedgerState>()
  private meta = new Map<string, Buffer>()
  /** What survives a power cut: the state at the last flush(). Entry bytes are shared (bit rot hits the disk). */
  private flushed = snapshot(new Map(), new Map(), new Map())
  private closed = false
  /** No copy here is ever unreadable (bit rot reads back as other bytes, which digests catch), so no damage to report. */
  readonly damage: StoreDamage = { entries: 0, ledgers: [], repairs: 0, lastError: null }
  onDamage: (e: DamageEvent) => void = () => {}
  readonly migrated = null

  /** Open again after close() (a process start on the same disk). */
  reopen(): void {
    this.closed = false
  }

  async putEntries(entries: readonly StoredEntry[]): Promise<void> {
    this.assertOpen()
    for (const e of entries) {
      assertId(e.ledgerId, 'ledgerId')
      assertId(e.entryId, 'entryId')
    }
    for (const e of entries) {
      let ledger = this.entries.get(e.ledgerId)
      if (ledger === undefined) {
        ledger = { byId: new Map(), last: -1 }
        this.entries.set(e.ledgerId, ledger)
      }
      ledger.byId.set(e.entryId, Buffer.from(e.data))
      ledger.last = Math.max(ledger.last, e.entryId)
    }
  }

  async getEntries(refs: readonly EntryRef[]): Promise<(Buffer | null)[]> {
    this.assertOpen()
    for (const r of refs) {
      assertId(r.ledgerId, 'ledgerId')
      assertId(r.entryId, 'entryId')
    }
    return refs.map((r) => {
      const data = this.entries.get(r.ledgerId)?.byId.get(r.entryId)
      return data === undefined ? null : Buffer.from(data)
    })
  }

  /** As getEntries: a copy here is never 'damaged' (see `damage`). */
  readEntries(refs: readonly EntryRef[]): Promise<(Buffer | null | 'damaged')[]> {
    return this.getEntries(refs)
  }

  damagedOf(_ledgerId: number): number[] {
    return []
  }

  async forgetDamaged(_ledgerId: number, _entryIds: readonly number[]): Promise<void> {
    this.assertOpen()
  }

  /** Nothing to compact: entries are not packed into logs. */
  async compactEntryLogs(_threshold: number): Promise<CompactionResult> {
    this.assertOpen()
    return { compacted: 0, emptied: 0, skipped: 0, entriesMoved: 0, bytesFreed: 0, liveEntriesHeldMax: 0 }
  }

  async putLedgerStates(states: ReadonlyMap<number, StoredLedgerState>): Promise<void> {
    for (const [ledgerId, state] of states) await this.putLedgerState(ledgerId, state)
  }

  async lastEntryId(ledgerId: number): Promise<number> {
    this.assertOpen()
    assertId(ledgerId, 'ledgerId')
    return this.entries.get(ledgerId)?.last ?? -1
  }

  async getLedgerState(ledgerId: number): Promise<StoredLedgerState | null> {
    this.assertOpen()
    assertId(ledgerId, 'ledgerId')
    const state = this.states.get(ledgerId)
    return state === undefined ? null : copyState(state)
  }

  async putLedgerState(ledgerId: number, state: StoredLedgerState): Promise<void> {
    this.assertOpen()
    assertId(ledgerId, 'ledgerId')
    assert(Number.isInteger(state.explicitLac) && state.explicitLac >= -1 && state.explicitLac < ID_END,
      `explicitLac is -1 or an entry id, got ${state.explicitLac}`)
    this.states.set(ledgerId, copyState(state))
  }

  /** A sorted snapshot taken at the first step, like the real store's seeks, but never torn. */
  async *listLedgers(): AsyncIterable<number> {
    this.assertOpen()
    const ids = new Set([...this.entries.keys(), ...this.states.keys()])
    yield* [...ids].sort((a, b) => a - b)
  }

  async deleteLedger(ledgerId: number): Promise<void> {
    this.assertOpen()
    assertId(ledgerId, 'ledgerId')
    this.entries.delete(ledgerId)
    this.states.delete(ledgerId)
  }

  /** Nothing to reclaim: deleteLedger already dropped the ledger's maps. */
  async compactLedgers(firstLedgerId: number, lastLedgerId: number): Promise<void> {
    this.assertOpen()
    assertId(firstLedgerId, 'firstLedgerId')
    assertId(lastLedgerId, 'lastLedgerId')
    assert(firstLedgerId <= lastLedgerId, `compact range ${firstLedgerId}..${lastLedgerId} is empty`)
  }

  async getMeta(key: string): Promise<Buffer | null> {
    this.assertOpen()
    const value = this.meta.get(key)
    return value === undefined ? null : Buffer.from(value)
  }

  async putMeta(key: string, value: Uint8Array): Promise<void> {
    this.assertOpen()
    this.meta.set(key, Buffer.from(value))
  }

  /** Makes every write so far survive a power cut. */
  async flush(): Promise<void> {
    this.assertOpen()
    this.flushed = snapshot(this.entries, this.states, this.meta)
  }

  /** Fault hook (power cut): back to the last flush(); the writes since are gone. */
  powerCut(): void {
    const { entries, states, meta } = snapshot(this.flushed.entries, this.flushed.states, this.flushed.meta)
    this.entries = entries
    this.states = states
    this.meta = meta
  }

  async close(): Promise<void> {
    this.closed = true
  }

  /** Inspection for a simulator's checkers (no side effect): whether a copy of the entry is stored, rotted or not. */
  holds(ledgerId: number, entryId: number): boolean {
    return this.entries.get(ledgerId)?.byId.has(entryId) ?? false
  }

  /** Inspection: every stored copy's ledger and entry id. */
  *storedEntries(): Iterable<[number, number]> {
    for (const [ledgerId, l] of this.entries) for (const entryId of l.byId.keys()) yield [ledgerId, entryId]
  }

  /** Inspection: the stored state of a ledger, or null. */
  stateOf(ledgerId: number): StoredLedgerState | null {
    return this.states.get(ledgerId) ?? null
  }

  /** Inspection: a meta value, or null. */
  metaOf(key: string): Buffer | null {
    return this.meta.get(key) ?? null
  }

  /**
   * Fault hook (bit rot): XOR 0xff into byte `byteIndex` (default: the middle byte) of a stored
   * entry. Returns false when there is no such entry or it is empty, so a simulator may aim at
   * random refs. Buffers already handed out are copies and stay as they were.
   */
  corrupt(ledgerId: number, entryId: number, byteIndex?: number): boolean {
    const data = this.entries.get(ledgerId)?.byId.get(entryId)
    if (data === undefined || data.length === 0) return false
    const at = byteIndex ?? Math.floor(data.length / 2)
    assert(Number.isInteger(at) && at >= 0 && at < data.length, `byteIndex ${at} outside 0..${data.length - 1}`)
    data[at] = (data[at] ?? 0) ^ 0xff
    return true
  }

  private assertOpen(): void {
    assert(!this.closed, 'entry store is closed')
  }
}
