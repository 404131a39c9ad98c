// Bookie garbage collection (PROTOCOL.md "Auto-recovery": ledgers deleted from the metadata are
// garbage-collected by bookies, scan and compare). One run: list the ledger ids stored here,
// THEN list the ledger ids in the metadata store, delete the local ledgers the metadata does not
// name (entries and per-ledger state, so that journal replay cannot bring them back), then
// compact the freed key ranges.
//
// Why this order is safe against a ledger created while the scan runs: a ledger's metadata is
// created (a KV create) before its ensemble is known to any writer, so before its first entry
// can reach a bookie. A ledger whose entries were in the local listing therefore had metadata
// before the metadata listing began; unless it was deleted, that listing names it and it is
// kept. A ledger created after the local listing is not in it, so it cannot be picked. Listing
// the metadata first would be wrong: a ledger created between the two listings would be local
// but not in the (older) metadata listing, and its acknowledged entries would be deleted.
//
// Invariants: at most one run at a time (a trigger during a run asks for one more run after it,
// coalesced); a failed run deletes nothing more and is retried at the next interval; the
// metadata listing must be complete (an error aborts the run: a partial listing would doom live
// ledgers), and is bounded in time: a KV listing that never ends abandons the run (it deletes
// nothing, even if the listing ends later) rather than wedge every later run behind it.

import { QuireError } from '../machines/errors.ts'
import { every, keepAliveClock, realClock, type Clock, type TimerHandle } from '../transport/clock.ts'

export interface GcDeps {
  /** Ledger ids stored on this bookie (entries or state), ascending. */
  localLedgers(): Promise<readonly number[]>
  /** Every ledger id in the metadata store; throws rather than return a partial list. */
  metadataLedgers(): AsyncIterable<number>
  /**
   * Delete these local ledgers so that neither reads nor journal replay can bring them back,
   * then compact `ranges` (inclusive ledger-id ranges holding only deleted ledgers).
   */
  deleteLocal(ledgerIds: readonly number[], ranges: ReadonlyArray<readonly [number, number]>): Promise<void>
}

export interface GcResult {
  /** Ledgers found locally. */
  local: number
  /** Ledgers deleted, ascending. */
  deleted: number[]
}

/** Runs of consecutive doomed ids in the sorted local listing: compaction never spans a kept ledger. */
export function compactionRanges(local: readonly number[], doomed: ReadonlySet<number>): Array<[number, number]> {
  const ranges: Array<[number, number]> = []
  let run: [number, number] | null = null
  for (const id of local) {
    if (!doomed.has(id)) {
      run = null
      continue
    }
    if (run === null) ranges.push((run = [id, id]))
    else run[1] = id
  }
  return ranges
}

async function listAll(ids: AsyncIterable<number>): Promise<Set<number>> {
  const all = new Set<number>()
  for await (const id of ids) all.add(id)
  return all
}

/** One garbage collection run (see the header for why local ids are listed first). */
export async function collectGarbage(deps: GcDeps, opts: { listTimeoutMs?: number; clock?: Clock } = {}): Promise<GcResult> {
  const local = await deps.localLedgers()
  if (local.length === 0) return { local: 0, deleted: [] }
  const listTimeoutMs = opts.listTimeoutMs ?? 30_000
  const clock = opts.clock ?? keepAliveClock
  let timer: TimerHandle | undefined
  const known = await Promise.race([
    listAll(deps.metadataLedgers()),
    new Promise<never>((_, reject) => {
      timer = clock.setTimeout(() => reject(new QuireError('TIMEOUT', `listing the ledgers in the metadata store took over ${listTimeoutMs} ms`)), listTimeoutMs)
    }),
  ]).finally(() => { if (timer !== undefined) clock.clearTimeout(timer) })
  const deleted = local.filter((id) => !known.has(id))
  if (deleted.length > 0) await deps.deleteLocal(deleted, compactionRanges(local, new Set(deleted)))
  return { local: local.length, deleted }
}

export interface GarbageCollectorOptions {
  /** Interval between runs; 0: only when triggered. */
  gcIntervalMs: number
  /** A run whose metadata listing takes longer is abandoned. Default 30000. */
  listTimeoutMs?: number
  log?: (msg: string, fields?: Record<string, unknown>) => void
  /** Default the real clock. */
  clock?: Clock
}

/** Periodic runs of collectGarbage, one at a time, plus runs on demand (entering read-only). */
export class GarbageCollector {
  private stopTimer: (() => void) | null = null
  private running: Promise<GcResult> | null = null
  private again: Promise<GcResult> | null = null
  private stopped = false
  readonly stats = { runs: 0, failures: 0, deleted: 0 }

  constructor(private readonly deps: GcDeps, private readonly opts: GarbageCollectorOptions) {}

  start(): void {
    if (this.opts.gcIntervalMs <= 0 || this.stopTimer !== null) return
    this.stopTimer = every(this.opts.clock ?? realClock, this.opts.gcIntervalMs, () => { this.trigger().catch(() => {}) })
  }

  /** Run now, or right after the run under way (its listing may predate the caller's reason). */
  trigger(): Promise<GcResult> {
    if (this.stopped) return Promise.resolve({ local: 0, deleted: [] })
    if (this.running === null) return (this.running = this.run())
    this.again ??= this.running.catch(() => {}).then(() => {
      this.again = null
      return this.trigger()
    })
    return this.again
  }

  /** No more runs; waits for the one under way. */
  async stop(): Promise<void> {
    this.stopped = true
    this.stopTimer?.()
    this.stopTimer = null
    await this.running?.catch(() => {})
    await this.again?.catch(() => {})
  }

  private async run(): Promise<GcResult> {
    const log = this.opts.log ?? (() => {})
    try {
      const r = await collectGarbage(this.deps, { listTimeoutMs: this.opts.listTimeoutMs, clock: this.opts.clock })
      this.stats.runs++
      this.stats.deleted += r.deleted.length
      if (r.deleted.length > 0) log('gc deleted ledgers', { ledgers: r.deleted, local: r.local })
      return r
    } catch (err) {
      this.stats.failures++
      log('gc failed', { error: err instanceof Error ? err.message : String(err) })
      throw err
    } finally {
      this.running = null
    }
  }
}
