// The entry store's list of damaged entries (storage/entryStore.ts): entries whose stored copy was
// found unreadable (an SST block failing its checksum, a torn or missing entry log record). Kept
// under the meta key `damaged` as JSON [[ledgerId, entryId], ...] so that a lost copy is still
// answered 'damaged' after a restart, never "no such entry"; an entry leaves the list when a new
// copy is written, its ledger is deleted, or the bookie learns it was never placed here.

import { assert } from '../machines/errors.ts'
import { assertId } from './entryLogIndex.ts'

export const DAMAGED_KEY = 'damaged'

export class DamagedEntries {
  private readonly byLedger = new Map<number, Set<number>>()

  has(ledgerId: number, entryId: number): boolean {
    return this.byLedger.get(ledgerId)?.has(entryId) ?? false
  }

  get count(): number {
    let n = 0
    for (const ids of this.byLedger.values()) n += ids.size
    return n
  }

  ledgers(): number[] {
    return [...this.byLedger.keys()].sort((a, b) => a - b)
  }

  /** Damaged entry ids of a ledger, ascending. */
  of(ledgerId: number): number[] {
    return [...(this.byLedger.get(ledgerId) ?? [])].sort((a, b) => a - b)
  }

  /** Highest damaged entry id of the ledger, or -1. */
  last(ledgerId: number): number {
    let last = -1
    for (const id of this.byLedger.get(ledgerId) ?? []) if (id > last) last = id
    return last
  }

  /** Adds the ids; returns those not listed before. */
  add(ledgerId: number, entryIds: readonly number[]): number[] {
    let known = this.byLedger.get(ledgerId)
    if (!known) this.byLedger.set(ledgerId, (known = new Set()))
    const fresh = entryIds.filter((id) => !known.has(id))
    for (const id of fresh) known.add(id)
    return fresh
  }

  /** True when (ledgerId, entryId) was listed (it is not any more). */
  forget(ledgerId: number, entryId: number): boolean {
    const ids = this.byLedger.get(ledgerId)
    if (!ids?.delete(entryId)) return false
    if (ids.size === 0) this.byLedger.delete(ledgerId)
    return true
  }

  forgetLedger(ledgerId: number): boolean {
    return this.byLedger.delete(ledgerId)
  }

  list(): Array<[number, number]> {
    return [...this.byLedger].flatMap(([l, ids]) => [...ids].map((e): [number, number] => [l, e]))
  }

  encode(): Buffer {
    return Buffer.from(JSON.stringify(this.list()))
  }

  /** Replaces the list with the stored one (null: empty). */
  load(raw: Buffer | null): void {
    this.byLedger.clear()
    if (raw === null) return
    const list = JSON.parse(raw.toString('utf8')) as unknown
    assert(Array.isArray(list), 'the damaged entries list is an array')
    for (const item of list) {
      assert(Array.isArray(item) && item.length === 2, 'a damaged entry is [ledgerId, entryId]')
      const [l, e] = item as [number, number]
      assertId(l, 'damaged ledgerId')
      assertId(e, 'damaged entryId')
      this.add(l, [e])
    }
  }
}
