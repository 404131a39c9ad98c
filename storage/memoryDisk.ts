// A bookie's disk in memory (storage/bookieDisk.ts BookieDisk) for the deterministic simulator and
// unit tests: a MemoryJournal and a MemoryEntryStore that outlive the bookie processes run on them,
// as a disk outlives a kill -9. The journal syncs a group `syncDelayMs()` after its first record
// (on the given clock: the disk's latency), one sync for every record waiting by then.
//
// Fault model (each on top of storage/memoryJournal.ts's and storage/memoryEntryStore.ts's):
// - crash(): the process dies (kill -9). Records not yet synced are lost (they were never
//   acknowledged); the entry store keeps every write (the OS still has RocksDB's WAL);
// - powerCut(tear): crash(), and the store loses every write since its last flush; with `tear`
//   the last synced journal record is torn too, so replay ends before it (the torn tail a disk
//   that lied about its sync leaves) and the start is unclean;
// - wipe(): a new, empty disk under the same bookie (journal, store and marker gone);
// - fill(usage): the usage the disk monitor measures (0 to 1), so a bookie turns read-only; at 1
//   the disk is full: journal appends and the store's writes fail with ENOSPC (nothing written).
// Each openStore() is its own handle on the one store, as RocksDB opens are: closing one (a
// read-only open replaced by a writable one) leaves the others working; a read-only handle's
// writes fail. A process is one `open()`: what it was handed stops working when it dies. A call it makes after
// a crash, power cut or wipe never settles (a dead process does nothing more), and a call it made
// before settles only if the process is still alive then, so nothing of a dead bookie's ever
// lands on the disk or reaches its successor.

import { assert } from '../machines/errors.ts'
import { withAppend, type BookieDisk, type BookieJournal, type DiskUsage } from './bookieDisk.ts'
import { MemoryEntryStore } from './memoryEntryStore.ts'
import { MemoryJournal } from './memoryJournal.ts'
import type { JournalPosition } from './types.ts'

export interface MemoryDiskOptions {
  /** The disk's clock (the simulator's world): when a journal group is synced. */
  clock: { setTimeout(fn: () => void, ms: number): unknown }
  /** The disk's latency for one group (virtual ms). Default 0.2. */
  syncDelayMs?: () => number
}

/** The store's writes, which fail on a full disk. */
const STORE_WRITES = new Set<PropertyKey>(['putEntries', 'putLedgerState', 'putLedgerStates', 'putMeta', 'flush', 'deleteLedger'])

function noSpace(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device (memory disk)'), { code: 'ENOSPC' })
}

/** What a dead process gets back for any call: a promise that never settles, an iteration that never yields. */
function never(): Promise<never> & AsyncIterable<never> {
  const p = new Promise<never>(() => {})
  return Object.assign(p, { [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<never>>(() => {}) }) })
}

export class MemoryDisk {
  journal = new MemoryJournal({ autoSync: false })
  store = new MemoryEntryStore()
  private cleanStop = false
  private usageNow = 0
  /** Bumped by every crash, power cut and wipe: a process's handles are live while it is current. */
  private incarnation = 0
  private syncScheduled = false

  constructor(private readonly opts: MemoryDiskOptions) {}

  /** The disk as one process sees it, until the next crash, power cut or wipe. */
  open(where: string): BookieDisk {
    const inc = ++this.incarnation
    const alive = (): boolean => inc === this.incarnation
    return {
      where,
      openStore: async ({ readOnly }) => {
        if (!alive()) return never()
        this.store.reopen()
        return this.guard(this.store, alive, STORE_WRITES, { closed: false, readOnly })
      },
      replayJournal: (from, ending) => (alive() ? this.journal.replay(from, ending) : never()),
      openJournal: async () => {
        if (!alive()) return never()
        this.journal.reopen()
        return this.journalHandle(alive)
      },
      // The memory journal keeps only synced records, whole: nothing to cut.
      cutJournalBack: async (_synced: JournalPosition) => {},
      hasCleanStopMarker: async () => (alive() ? this.cleanStop : never()),
      writeCleanStopMarker: async () => { if (alive()) this.cleanStop = true; else await never() },
      removeCleanStopMarker: async () => { if (alive()) this.cleanStop = false; else await never() },
      usage: async (): Promise<DiskUsage> => ({ usage: this.usageNow, usedBytes: Math.round(this.usageNow * 1e9), totalBytes: 1e9 }),
    }
  }

  /** kill -9: unsynced journal records are lost; the store keeps its writes. */
  crash(): void {
    this.incarnation++
    this.syncScheduled = false
    this.journal.crash()
  }

  /** crash(), the store back to its last flush, and with `tear` (when there is a record) the journal's last record torn. */
  powerCut(tear: boolean): void {
    this.crash()
    this.store.powerCut()
    if (tear && this.journal.lastRecord !== null) this.journal.tearTail()
  }

  /** A new, empty disk in the same slot (a replaced drive): nothing of the old one is left. */
  wipe(): void {
    this.crash()
    this.journal = new MemoryJournal({ autoSync: false })
    this.store = new MemoryEntryStore()
    this.cleanStop = false
  }

  /** What the disk monitor measures from now on (0 to 1). */
  fill(usage: number): void {
    this.usageNow = usage
  }

  private journalHandle(alive: () => boolean): BookieJournal {
    const j = this.journal
    const guarded = this.guard(j, alive)
    return withAppend(guarded, (record) => {
      if (this.usageNow >= 1 && alive()) return Promise.reject(noSpace())
      const p = guarded.append(record)
      if (alive()) this.scheduleSync(j)
      return p
    })
  }

  private scheduleSync(j: MemoryJournal): void {
    if (this.syncScheduled) return
    this.syncScheduled = true
    const inc = this.incarnation
    this.opts.clock.setTimeout(() => {
      if (inc !== this.incarnation) return
      this.syncScheduled = false
      j.sync()
    }, this.opts.syncDelayMs?.() ?? 0.2)
  }

  /**
   * `target` as the process sees it: methods called after its death never settle, and results of
   * calls made before settle only while it lives. Getters (stats, positions) read through.
   */
  private guard<T extends object>(
    target: T, alive: () => boolean, writes: ReadonlySet<PropertyKey> = new Set(), handle: { closed: boolean; readOnly: boolean } | null = null,
  ): T {
    const full = (): boolean => this.usageNow >= 1
    return new Proxy(target, {
      get(t, key) {
        const v = Reflect.get(t, key, t) as unknown
        if (typeof v !== 'function') return v
        return (...args: unknown[]) => {
          if (!alive()) return never()
          if (handle !== null) {
            if (handle.closed) {
              try { assert(false, 'entry store is closed') } catch (err) { return Promise.reject(err) }
            }
            if (key === 'close') {
              handle.closed = true
              return Promise.resolve()
            }
            if (handle.readOnly && writes.has(key)) return Promise.reject(new Error(`memory store opened read-only: ${String(key)} refused`))
          }
          if (writes.has(key) && full()) return Promise.reject(noSpace())
          const r = (v as (...a: unknown[]) => unknown).apply(t, args)
          if (!(r instanceof Promise)) return r
          return r.then((x) => (alive() ? x : never()), (err: unknown) => (alive() ? Promise.reject(err) : never()))
        }
      },
      set(t, key, value) {
        return Reflect.set(t, key, value, t)
      },
    })
  }
}
