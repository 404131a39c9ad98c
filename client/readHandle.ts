// ReadHandleImpl (public as the ReadHandle interface of client/api.ts; the class and its deps
// constructor are internal): reads entries and the LAC of a ledger. Every entry's digest is verified; a replica
// that fails it, answers an error or times out is skipped for the next bookie of the write set
// (PROTOCOL.md "Entry on the wire", "Response classes"). An entry is reported missing
// (NO_SUCH_ENTRY) only when every bookie of its write set said so explicitly.
// A bookie that timed out is asked last by this handle for a while (client/slowBookies.ts), so a
// long read of a ledger with a dead or hung bookie waits one read timeout, not one per chunk.

import type { InspectSink } from '../transport/inspect.ts'
import { NO_CLIENT_METRICS, type ClientMetrics } from './telemetry.ts'
import { QuireError, isQuireError } from '../machines/errors.ts'
import { NO_INDICES, indexBit, isFenceCovered, writeSetIndices } from '../machines/quorum.ts'
import type { LedgerMetadata, MetadataStore, Segment } from '../storage/metadataStore.ts'
import { decodeEntry } from '../transport/entry.ts'
import { RC, type ReadResponse } from '../transport/wire.ts'
import type { Observable } from 'rxjs'
import type { BookieTransport, TailTransport } from './bookieClient.ts'
import { SlowBookies } from './slowBookies.ts'
import { rxjs } from './rx.ts'
import { tailEntries, type TailOptions } from './tail.ts'
import type { ReadHandle } from './api.ts'

export interface LedgerEntry {
  ledgerId: number
  entryId: number
  payload: Buffer
  /** Payload bytes of the ledger's entries up to and including this one. */
  ledgerLength: number
}

export interface HandleDeps {
  bookies: Pick<BookieTransport, 'read' | 'readLac'> & Partial<TailTransport>
  /** For readers that follow an open ledger: re-read its metadata (close, ensemble changes). */
  metadata?: Pick<MetadataStore, 'readLedger'>
  masterKey: Buffer
  readTimeoutMs: number
  /** Where tailing readers publish their inspection (transport/inspect.ts); absent or null: nowhere. */
  inspect?: InspectSink | null
  /** Where tailing readers count delivered entries; absent: nowhere. */
  metrics?: ClientMetrics
  /** Time for forgetting slow bookies (client/slowBookies.ts); default Date.now. */
  clock?: { now(): number }
}

/** Entries asked of one bookie per request, and bytes per reply. */
const READ_CHUNK = 512
const READ_REPLY_BYTES = 4 * 1024 * 1024

export class ReadHandleImpl implements ReadHandle {
  protected md: LedgerMetadata
  protected lac: number
  /** Bookies that timed out on this handle's reads lately: asked last (client/slowBookies.ts). */
  private readonly slow: SlowBookies

  constructor(protected readonly deps: HandleDeps, metadata: LedgerMetadata) {
    this.md = metadata
    this.lac = metadata.state === 'CLOSED' ? metadata.lastEntryId : -1
    const clock = deps.clock
    this.slow = new SlowBookies(deps.readTimeoutMs, clock ? () => clock.now() : Date.now)
  }

  get ledgerId(): number {
    return this.md.ledgerId
  }

  get metadata(): Readonly<LedgerMetadata> {
    return this.md
  }

  /** Highest entry id known to be confirmed (the LAC), -1 when none. */
  get lastAddConfirmed(): number {
    return this.lac
  }

  get isClosed(): boolean {
    return this.md.state === 'CLOSED'
  }

  /** Read entries first..last inclusive; they must be at or below the LAC. */
  async read(firstEntryId: number, lastEntryId: number): Promise<LedgerEntry[]> {
    if (!Number.isInteger(firstEntryId) || !Number.isInteger(lastEntryId) || firstEntryId < 0 || lastEntryId < firstEntryId) {
      throw new QuireError('INVALID_CONFIG', `bad entry range ${firstEntryId}..${lastEntryId}`)
    }
    if (lastEntryId > this.lac) {
      throw new QuireError('NO_SUCH_ENTRY', `entry ${lastEntryId} of ledger ${this.ledgerId} is past the last add confirmed (${this.lac})`, {
        ledgerId: this.ledgerId, entryId: lastEntryId, lac: this.lac,
      })
    }
    const out: LedgerEntry[] = []
    for (let from = firstEntryId; from <= lastEntryId; from += READ_CHUNK) {
      const to = Math.min(lastEntryId, from + READ_CHUNK - 1)
      out.push(...(await this.readChunk(from, to)))
    }
    return out
  }

  /** Ask the last segment's bookies for their LAC and take the highest answer. */
  async readLac(): Promise<number> {
    if (this.md.state === 'CLOSED') return this.lac
    const seg = this.lastSegment()
    const answers = await Promise.allSettled(
      seg.ensemble.map((b) => this.deps.bookies.readLac(b, this.ledgerId, this.deps.readTimeoutMs)),
    )
    let mask = NO_INDICES
    let best = -1
    answers.forEach((a, i) => {
      if (a.status !== 'fulfilled') return
      if (a.value.rc === RC.OK || a.value.rc === RC.NO_SUCH_LEDGER) {
        mask |= indexBit(i)
        if (a.value.rc === RC.OK) best = Math.max(best, a.value.lac)
      }
    })
    if (!isFenceCovered(mask, this.md)) {
      throw new QuireError('BOOKIE_UNAVAILABLE', `too few bookies of ledger ${this.ledgerId} answered a LAC read`, { ledgerId: this.ledgerId })
    }
    if (best > this.lac) this.lac = best
    return this.lac
  }

  /**
   * Long poll: ask the last segment's bookies for a LAC past `previousLac`; each parks the request
   * until it learns one or `pollMs` passes. Resolves with the first higher LAC any of them reports
   * (and raises this handle's LAC), or with `previousLac` when none does.
   */
  async longPollLac(previousLac: number, pollMs: number, opts: { signal?: AbortSignal } = {}): Promise<number> {
    return (await this.poll(previousLac, pollMs, false, opts.signal)).lac
  }

  /**
   * The same long poll, asking each bookie for the entry at the LAC it answers with: when the LAC
   * moved by one (a reader keeping up with its writer), that entry arrives with it and no read
   * follows. `entry` is null when the answering bookie does not hold it (not in its write set, or
   * not yet synced there) or its copy fails the digest: read it then.
   */
  async readLacAndEntry(previousLac: number, pollMs: number, opts: { signal?: AbortSignal } = {}): Promise<{ lac: number; entry: LedgerEntry | null }> {
    return this.poll(previousLac, pollMs, true, opts.signal)
  }

  private async poll(previousLac: number, pollMs: number, withEntry: boolean, signal?: AbortSignal): Promise<{ lac: number; entry: LedgerEntry | null }> {
    const longPoll = this.deps.bookies.longPollLac
    if (!longPoll) throw new QuireError('INVALID_CONFIG', 'this client cannot long-poll')
    const seg = this.lastSegment()
    const best = await new Promise<{ lac: number; data?: Uint8Array }>((resolve) => {
      let pending = seg.ensemble.length
      let done = false
      for (const b of seg.ensemble) {
        longPoll.call(this.deps.bookies, b, this.ledgerId, previousLac, pollMs, this.deps.readTimeoutMs, withEntry, signal).then(
          (r) => {
            if (!done && r.rc === RC.OK && r.lac > previousLac) {
              done = true
              resolve({ lac: r.lac, ...(r.entry ? { data: r.entry } : {}) })
            }
          },
          () => {},
        ).finally(() => { if (--pending === 0 && !done) resolve({ lac: previousLac }) })
      }
    })
    if (best.lac > this.lac) this.lac = best.lac
    return { lac: this.lac, entry: best.data && best.lac === this.lac ? this.entryFrom(best.lac, best.data) : null }
  }

  /** A bookie's copy of one entry, or null when it fails its digest (another replica may not). */
  private entryFrom(entryId: number, data: Uint8Array): LedgerEntry | null {
    try {
      const { header, payload } = decodeEntry(this.md.digestType, this.deps.masterKey, data, { ledgerId: this.ledgerId, entryId })
      return { ledgerId: this.ledgerId, entryId, payload: Buffer.from(payload), ledgerLength: header.ledgerLength }
    } catch (err) {
      if (!isQuireError(err, 'CORRUPT_ENTRY')) throw err
      return null
    }
  }

  /** Re-read the ledger's metadata: a writer may have closed it or changed its ensemble. */
  async refreshMetadata(): Promise<Readonly<LedgerMetadata>> {
    if (!this.deps.metadata) return this.md
    const { value } = await this.deps.metadata.readLedger(this.ledgerId)
    this.md = value
    if (value.state === 'CLOSED') this.lac = value.lastEntryId
    return value
  }

  /** Read entries past the LAC that bookies already hold (not yet confirmed: they may never be). */
  async readUnconfirmed(firstEntryId: number, lastEntryId: number): Promise<LedgerEntry[]> {
    if (this.md.state === 'CLOSED') return this.read(firstEntryId, lastEntryId)
    const lac = this.lac
    this.lac = Math.max(lac, lastEntryId)
    try {
      return await this.read(firstEntryId, lastEntryId)
    } finally {
      this.lac = lac
    }
  }

  protected lastSegment(): Segment {
    const seg = this.md.segments[this.md.segments.length - 1]
    if (!seg) throw new Error(`ledger ${this.ledgerId} has no segments`)
    return seg
  }

  protected segmentOf(entryId: number): Segment {
    let found = this.md.segments[0]!
    for (const s of this.md.segments) if (s.firstEntryId <= entryId) found = s
    return found
  }

  private async readChunk(first: number, last: number): Promise<LedgerEntry[]> {
    const n = last - first + 1
    const result: (LedgerEntry | null)[] = new Array(n).fill(null)
    const attempt = new Array<number>(n).fill(0)
    const negatives = new Array<number>(n).fill(0)
    const corrupt = new Array<number>(n).fill(0)
    const timeouts = new Array<number>(n).fill(0)
    /** Per entry, the write-set positions in the order asked: order[i][attempt[i]] is the current one. */
    const order = Array.from({ length: n }, (): number[] => [])
    const { ensembleSize: e, writeQuorum: w } = this.md
    for (;;) {
      const byBookie = new Map<string, number[]>()
      for (let i = 0; i < n; i++) {
        if (result[i] !== null) continue
        const id = first + i
        if (attempt[i]! >= w) this.giveUp(id, negatives[i]!, corrupt[i]!, timeouts[i]!, w)
        const ws = writeSetIndices(id, e, w)
        const ensemble = this.segmentOf(id).ensemble
        const asked = order[i]!
        if (asked.length <= attempt[i]!) asked.push(this.nextReplica(ws, asked, ensemble))
        const bookie = ensemble[ws[asked[attempt[i]!]!]!]!
        let list = byBookie.get(bookie)
        if (!list) byBookie.set(bookie, (list = []))
        list.push(id)
      }
      if (byBookie.size === 0) return result as LedgerEntry[]
      await Promise.all([...byBookie].map(async ([bookie, ids]) => {
        let resp: ReadResponse
        try {
          resp = await this.deps.bookies.read(bookie, this.ledgerId, ids, READ_REPLY_BYTES, this.deps.readTimeoutMs)
          this.slow.answered(bookie)
        } catch (err) {
          if (isQuireError(err, 'TIMEOUT')) this.slow.timedOut(bookie)
          for (const id of ids) {
            if (isQuireError(err, 'TIMEOUT')) timeouts[id - first]!++
            attempt[id - first]!++
          }
          return
        }
        if (resp.rc !== RC.OK) {
          for (const id of ids) {
            if (resp.rc === RC.NO_SUCH_LEDGER) negatives[id - first]!++
            attempt[id - first]!++
          }
          return
        }
        resp.entries.forEach(([rc, data], k) => {
          const id = ids[k]!
          const i = id - first
          if (rc === RC.OK && data) {
            const entry = this.entryFrom(id, data)
            if (entry) {
              result[i] = entry
              return
            }
            corrupt[i]!++
          } else if (rc === RC.NO_SUCH_ENTRY || rc === RC.NO_SUCH_LEDGER) negatives[i]!++
          else if (rc === RC.CORRUPT) corrupt[i]!++
          attempt[i]!++
        })
      }))
    }
  }

  /**
   * The next write-set position to ask for an entry, after those in `asked` (all failed): the
   * first in write-set order whose bookie has not timed out lately, else the first left.
   */
  private nextReplica(ws: readonly number[], asked: readonly number[], ensemble: readonly string[]): number {
    let fallback = -1
    for (let k = 0; k < ws.length; k++) {
      if (asked.includes(k)) continue
      if (!this.slow.isSlow(ensemble[ws[k]!]!)) return k
      if (fallback < 0) fallback = k
    }
    return fallback
  }

  private giveUp(entryId: number, negatives: number, corrupt: number, timeouts: number, replicas: number): never {
    const where = { ledgerId: this.ledgerId, entryId }
    if (negatives === replicas) {
      throw new QuireError('NO_SUCH_ENTRY', `no bookie holds entry ${entryId} of ledger ${this.ledgerId}`, where)
    }
    if (corrupt > 0 && corrupt + negatives === replicas) {
      throw new QuireError('CORRUPT_ENTRY', `entry ${entryId} of ledger ${this.ledgerId} fails its digest on every replica`, where)
    }
    if (timeouts === replicas) {
      throw new QuireError('TIMEOUT', `no bookie of entry ${entryId} of ledger ${this.ledgerId} answered within ${this.deps.readTimeoutMs} ms`, where)
    }
    throw new QuireError('BOOKIE_UNAVAILABLE', `could not read entry ${entryId} of ledger ${this.ledgerId} from any of its ${replicas} bookies`, where)
  }

  /**
   * Every entry from `from` on, in order, exactly once, following the LAC as the writer appends
   * (long polls, no busy loop); ends after the last entry of a closed ledger. Pull-based: it reads
   * the next batch only when the consumer has taken the previous one.
   */
  entries(opts: TailOptions = {}): AsyncIterableIterator<LedgerEntry> {
    return tailEntries(this, opts, this.deps.inspect ?? null, this.deps.metrics ?? NO_CLIENT_METRICS)
  }

  /** `entries()` as an RxJS Observable; unsubscribing stops the tail. */
  tail$(opts: TailOptions = {}): Observable<LedgerEntry> {
    return new (rxjs().Observable)<LedgerEntry>((subscriber) => {
      const it = this.entries(opts)
      let stopped = false
      void (async () => {
        try {
          for (;;) {
            const r = await it.next()
            if (stopped) return
            if (r.done) return subscriber.complete()
            subscriber.next(r.value)
          }
        } catch (err) {
          if (!stopped) subscriber.error(err)
        }
      })()
      return () => {
        stopped = true
        void it.return?.()
      }
    })
  }

  /** Release the handle (a read handle holds no resources besides the client's). */
  async closeHandle(): Promise<void> {}
}
