// A bookie's data-integrity check (BookKeeper's DataIntegrityCheck): compares the ledgers the
// bookie cannot vouch for (in limbo, actors/bookieStorage.ts) with the metadata, and takes them
// out of limbo when that is safe (machines/integrityCheck.ts says which).
// - Unchecked (after an unclean stop or on a wiped disk): every metadata ledger is looked at, so
//   that a ledger placed here but unknown locally (lost whole) goes into limbo explicitly; then
//   the bookie is checked. The bookie runs this first pass before it serves, bounded in time.
// - A CLOSED ledger leaves limbo; the entries its segments place here are read locally first,
//   and if any is missing or damaged the ledger is marked under-replicated with this bookie as
//   `damaged`, so a replication worker re-copies it in place (actors/replicator.ts).
// - An OPEN or IN_RECOVERY ledger stays; the check runs again every `recheckMs` while anything is
//   in limbo (or the bookie is unchecked), and on demand (`quire shell bookieintegritycheck`,
//   over NATS on integrityCheckSubject). Runs never overlap: a request during a run gets its result.
// - A ledger whose metadata cannot be read stays in limbo (never released on a guess).
// Each run is logged, counted (quire_bookie_integrity_checks_total{result}) and kept as `last`.

import { realClock, type Clock, type TimerHandle } from '../transport/clock.ts'
import type { Network, NetworkSubscription } from '../transport/network.ts'
import { isQuireError } from '../machines/errors.ts'
import { checkResult, limboVerdict, placedEntryChunks } from '../machines/integrityCheck.ts'
import type { LedgerMetadata } from '../storage/metadataStore.ts'
import type { LimboState } from './bookieStorage.ts'
import { bookieMetrics } from './metrics.ts'

/** Where `quire shell bookieintegritycheck <bookieId>` asks a bookie for a check now. */
export const integrityCheckSubject = (bookieId: string): string => `quire.bookieadmin.${bookieId}.integritycheck`

const CHUNK_ENTRIES = 1000

export interface IntegrityCheckDeps {
  bookieId: string
  limbo(): LimboState
  setLimbo(state: LimboState): Promise<void>
  /** Per id: whether this bookie holds an intact copy. */
  holdsIntact(ledgerId: number, entryIds: number[]): Promise<boolean[]>
  listLedgers(): AsyncIterable<number>
  /** The ledger's metadata, null when it was deleted (NO_SUCH_LEDGER). */
  readLedger(ledgerId: number): Promise<LedgerMetadata | null>
  /** Mark the ledger for an in-place re-copy onto this bookie. */
  markLacking(ledgerId: number): Promise<void>
  log(msg: string, fields?: Record<string, unknown>): void
}

export interface IntegrityResult {
  result: 'clean' | 'limbo' | 'failed'
  /** Ledgers still in limbo, and whether the bookie is still unchecked. */
  limbo: number
  unchecked: boolean
  /** Ledgers that left limbo in this run. */
  released: number
  /** Closed ledgers marked for a re-copy because this bookie lacks (or holds damaged) entries of theirs. */
  marked: number
  /** Entries found missing or damaged here. */
  lackingEntries: number
  /** Ledgers whose metadata could not be read (kept in limbo). */
  unreadable: number
  error?: string
  ms: number
  at: number
}

export class IntegrityCheck {
  last: IntegrityResult | null = null
  private running: Promise<IntegrityResult> | null = null
  private timer: TimerHandle | null = null
  private sub: NetworkSubscription | null = null
  private stopped = false

  constructor(private readonly deps: IntegrityCheckDeps, private readonly recheckMs: number, private readonly clock: Clock = realClock) {}

  get inLimbo(): number {
    return this.deps.limbo().ledgers.length
  }

  /** Run now (or join the run under way). */
  run(reason: string): Promise<IntegrityResult> {
    this.running ??= this.check(reason).finally(() => {
      this.running = null
      this.schedule()
    })
    return this.running
  }

  /** Re-check while anything is in limbo; answer requests on the admin subject. */
  start(network: Network | null): void {
    this.stopped = false
    if (network) {
      this.sub = network.subscribe(integrityCheckSubject(this.deps.bookieId), (_data, replyTo) => { void this.answer(network, replyTo) })
    }
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) this.clock.clearTimeout(this.timer)
    this.timer = null
    this.sub?.unsubscribe()
    this.sub = null
    await this.running?.catch(() => {})
  }

  private schedule(): void {
    if (this.stopped || this.timer || this.running) return
    const l = this.deps.limbo()
    if (l.ledgers.length === 0 && !l.unchecked) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = null
      void this.run('re-check')
    }, this.recheckMs)
  }

  private async answer(network: Network, replyTo: string | null): Promise<void> {
    const r = await this.run('requested')
    // Without a reply subject the asker only wanted the run; publish never throws (a gone asker is fine).
    if (replyTo !== null) network.publish(replyTo, Buffer.from(JSON.stringify({ bookieId: this.deps.bookieId, ...r })))
  }

  private async check(reason: string): Promise<IntegrityResult> {
    const started = this.clock.now()
    const before = this.deps.limbo()
    const r: IntegrityResult = { result: 'failed', limbo: before.ledgers.length, unchecked: before.unchecked, released: 0, marked: 0, lackingEntries: 0, unreadable: 0, ms: 0, at: started }
    try {
      const ids = new Set(before.ledgers)
      if (before.unchecked) for await (const id of this.deps.listLedgers()) ids.add(id)
      const wasInLimbo = new Set(before.ledgers)
      const keep: number[] = []
      for (const id of [...ids].sort((a, b) => a - b)) {
        if (this.stopped) {
          keep.push(id)
          continue
        }
        const stays = await this.checkLedger(id, r)
        if (stays) keep.push(id)
        else if (wasInLimbo.has(id)) r.released++
      }
      // A ledger put into limbo meanwhile (none is today, but a set replaced blindly would drop it).
      for (const id of this.deps.limbo().ledgers) if (!ids.has(id)) keep.push(id)
      const unchecked = this.stopped && before.unchecked
      await this.deps.setLimbo({ unchecked, ledgers: keep })
      r.result = checkResult({ limbo: keep, unchecked })
      r.limbo = keep.length
      r.unchecked = unchecked
    } catch (err) {
      r.error = err instanceof Error ? err.message : String(err)
    }
    r.ms = this.clock.now() - started
    this.last = r
    bookieMetrics.integrityChecked(r.result)
    this.deps.log(`integrity check (${reason}): ${r.result}`, { ...r })
    return r
  }

  /** True when the ledger stays in limbo. */
  private async checkLedger(id: number, r: IntegrityResult): Promise<boolean> {
    let md: LedgerMetadata | null
    try {
      md = await this.deps.readLedger(id)
    } catch (err) {
      if (!isQuireError(err, 'NO_SUCH_LEDGER')) {
        r.unreadable++
        return true
      }
      md = null
    }
    const verdict = limboVerdict(md, this.deps.bookieId)
    if (verdict === 'keep') return true
    if (verdict === 'leave' || md === null) return false
    let lacking = 0
    for (const chunk of placedEntryChunks(md, this.deps.bookieId, CHUNK_ENTRIES)) {
      const held = await this.deps.holdsIntact(id, chunk)
      lacking += held.filter((h) => !h).length
    }
    if (lacking === 0) return false
    try {
      await this.deps.markLacking(id)
    } catch (err) {
      // Unmarked, it must stay in limbo: the next run marks it.
      this.deps.log('integrity check: marking a ledger for re-copy failed', { ledgerId: id, error: String(err) })
      r.unreadable++
      return true
    }
    r.marked++
    r.lackingEntries += lacking
    return false
  }
}
