// ReadHandleImpl (public as the ReadHandle interface of client/api.ts; the class and its deps
// constructor are internal): reads entries and the LAC of a ledger. Every entry's digest is verified; a replica
// that fails it, answers an error or times out is skipped for the next bookie of the write set
// (PROTOCOL.md "Entry on the wire", "Response classes"). An entry is reported missing
// (NO_SUCH_ENTRY) only when every bookie of its write set said so explicitly.
// A hung replica does not hold a read up: a request not answered within
// `speculativeReadTimeoutMs` has its entries asked of the next replica too (first valid copy
// wins), and bookies that were slow or timed out are asked last by every handle of the client for
// a while (client/slowBookies.ts). Rules per entry: machines/speculativeRead.ts. LAC reads and
// long polls likewise stop waiting on a replica once enough others answered.
// A read reply carries the LAC its bookie knows: the handle's LAC follows it (a confirmed LAC),
// so a tailing reader behind its writer reads on without a long poll.

import type { InspectSink } from '../transport/inspect.ts'
import { NO_CLIENT_METRICS, type ClientMetrics } from './telemetry.ts'
import { QuireError, isQuireError } from '../machines/errors.ts'
import { NO_INDICES, indexBit, isFenceCovered, writeSetIndices } from '../machines/quorum.ts'
import type { LedgerMetadata, MetadataStore, Segment } from '../storage/metadataStore.ts'
import { decodeEntry } from '../transport/entry.ts'
import { RC, entryAnswer, type EntryAnswer } from '../machines/responses.ts'
import type { Observable } from 'rxjs'
import type { BookieTransport, TailTransport } from './bookieClient.ts'
import { SlowBookies } from './slowBookies.ts'
import { HEALTHY, entryRead, stepRead, type EntryRead, type ReadEvent, type ReadFailure, type Reply } from '../machines/speculativeRead.ts'
import { realClock, type Clock } from '../transport/clock.ts'
import { observableOf } from './rx.ts'
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
  /** Time for forgetting slow bookies and timers for speculation; default the real clock. */
  clock?: Pick<Clock, 'now'> & Partial<Pick<Clock, 'setTimeout' | 'clearTimeout'>>
  /**
   * Ask the next replica when one has not answered a read within this many ms; 0 or absent: only
   * once it failed or timed out. The client passes its `speculativeReadTimeoutMs`.
   */
  speculativeReadTimeoutMs?: number
  /** The client's bookie health, shared by its handles; absent: one of the handle's own. */
  slowBookies?: SlowBookies
}

/** Entries asked of one bookie per request, and bytes per reply. */
const READ_CHUNK = 512
const READ_REPLY_BYTES = 4 * 1024 * 1024
/** Chunks of one read asked at once. */
export const READS_IN_FLIGHT = 4

export class ReadHandleImpl implements ReadHandle {
  protected md: LedgerMetadata
  protected lac: number
  /** Told each higher LAC a read reply carries, as it arrives (tailing readers: client/tail.ts). */
  private readonly lacWatchers = new Set<(lac: number) => void>()
  /** Bookies slow or failing lately: asked last (client/slowBookies.ts). */
  private readonly health: SlowBookies
  private readonly timers: Pick<Clock, 'setTimeout' | 'clearTimeout'>

  constructor(protected readonly deps: HandleDeps, metadata: LedgerMetadata) {
    this.md = metadata
    this.lac = metadata.state === 'CLOSED' ? metadata.lastEntryId : -1
    const clock = deps.clock
    this.health = deps.slowBookies ?? new SlowBookies(deps.readTimeoutMs, clock ? () => clock.now() : Date.now)
    this.timers = clock?.setTimeout && clock.clearTimeout ? clock as Pick<Clock, 'setTimeout' | 'clearTimeout'> : realClock
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
  read(firstEntryId: number, lastEntryId: number): Promise<LedgerEntry[]> {
    return this.readRange(firstEntryId, lastEntryId, true)
  }

  /** `read`; past the LAC too unless `confirmedOnly` (readUnconfirmed: the handle's LAC is left as it is). */
  private async readRange(firstEntryId: number, lastEntryId: number, confirmedOnly: boolean): Promise<LedgerEntry[]> {
    if (!Number.isInteger(firstEntryId) || !Number.isInteger(lastEntryId) || firstEntryId < 0 || lastEntryId < firstEntryId) {
      throw new QuireError('INVALID_CONFIG', `bad entry range ${firstEntryId}..${lastEntryId}`)
    }
    if (confirmedOnly && lastEntryId > this.lac) {
      throw new QuireError('NO_SUCH_ENTRY', `entry ${lastEntryId} of ledger ${this.ledgerId} is past the last add confirmed (${this.lac})`, {
        ledgerId: this.ledgerId, entryId: lastEntryId, lac: this.lac,
      })
    }
    // Chunks READS_IN_FLIGHT at a time: a batch of a few chunks costs one round trip, not one each.
    const chunks: Array<Promise<LedgerEntry[]>> = []
    const out: LedgerEntry[] = []
    for (let from = firstEntryId; from <= lastEntryId; from += READ_CHUNK) {
      if (chunks.length === READS_IN_FLIGHT) for (const e of await chunks.shift()!) out.push(e)
      const chunk = this.readChunk(from, Math.min(lastEntryId, from + READ_CHUNK - 1))
      chunk.catch(() => {}) // a failed chunk fails the read when awaited; not an unhandled rejection meanwhile
      chunks.push(chunk)
    }
    for (const c of chunks) for (const e of await c) out.push(e)
    return out
  }

  /** A LAC a bookie reported (in a read reply): confirmed, so readable up to it (PROTOCOL.md "Read LAC"). */
  private learnLac(lac: number | undefined): void {
    if (lac === undefined || this.md.state === 'CLOSED') return
    if (lac > this.lac) {
      this.lac = lac
      for (const w of this.lacWatchers) w(lac)
    }
  }

  /** Calls `fn` with each higher LAC a read reply brings, until the returned function is called. */
  private watchLac(fn: (lac: number) => void): () => void {
    this.lacWatchers.add(fn)
    return () => { this.lacWatchers.delete(fn) }
  }

  /**
   * Ask the last segment's bookies for their LAC and take the highest answer. Once the answers
   * cover every write set (PROTOCOL.md "Read LAC"), the others get the speculative delay more,
   * not the read timeout: a hung bookie does not hold up an open.
   */
  async readLac(): Promise<number> {
    if (this.md.state === 'CLOSED') return this.lac
    const seg = this.lastSegment()
    let mask = NO_INDICES
    let best = -1
    await this.askEach(seg.ensemble, (b) => this.deps.bookies.readLac(b, this.ledgerId, this.deps.readTimeoutMs), (i, r) => {
      if (r.rc === RC.OK || r.rc === RC.NO_SUCH_LEDGER) {
        mask |= indexBit(i)
        if (r.rc === RC.OK) best = Math.max(best, r.lac)
      }
      return false
    }, () => isFenceCovered(mask, this.md))
    if (!isFenceCovered(mask, this.md)) {
      throw new QuireError('BOOKIE_UNAVAILABLE', `too few bookies of ledger ${this.ledgerId} answered a LAC read`, { ledgerId: this.ledgerId })
    }
    if (best > this.lac) this.lac = best
    return this.lac
  }

  /**
   * Send `send(bookie)` to each bookie and feed the answers to `take` (by position in `bookies`);
   * resolves once all settled, once `take` returns true, or `speculativeReadTimeoutMs` after
   * `enough()` first held, with the bookies that had not answered by then (`late`: left behind
   * by that delay). Bookie health learns from every answer, also those after it resolved; a
   * rejection once `signal` is aborted is a cancel, not a failure.
   */
  private askEach<T>(bookies: readonly string[], send: (bookie: string) => Promise<T>, take: (index: number, answer: T) => boolean, enough: () => boolean, signal?: AbortSignal): Promise<{ late: string[] }> {
    const graceMs = this.deps.speculativeReadTimeoutMs ?? 0
    const metrics = this.deps.metrics ?? NO_CLIENT_METRICS
    return new Promise((resolve) => {
      let pending = bookies.length
      let done = false
      let grace: ReturnType<Clock['setTimeout']> | null = null
      const settled = new Set<string>()
      const finish = (byGrace: boolean): void => {
        if (done) return
        done = true
        if (grace !== null) this.timers.clearTimeout(grace)
        resolve({ late: byGrace ? bookies.filter((b) => !settled.has(b)) : [] })
      }
      if (pending === 0) finish(false)
      bookies.forEach((b, i) => {
        send(b).then((answer) => {
          settled.add(b)
          this.health.answered(b)
          if (!done && take(i, answer)) finish(false)
        }, (err) => {
          settled.add(b)
          if (signal?.aborted) return
          this.health.timedOut(b)
          if (!done && pending === 1 && isQuireError(err, 'TIMEOUT')) metrics.waitedOnTimeout?.()
        }).finally(() => {
          if (--pending === 0) finish(false)
          else if (!done && grace === null && graceMs > 0 && enough()) grace = this.timers.setTimeout(() => finish(true), graceMs)
        })
      })
    })
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

  /**
   * Long-polls the last segment's bookies that were neither slow nor failing lately (at least the
   * two best ranked). The first higher LAC wins (any bookie's LAC is a confirmed one); "nothing new" is
   * answered once every bookie asked said so, or `speculativeReadTimeoutMs` after the first did:
   * a poll parked on a hung bookie does not hold up the tail, and that bookie counts as slow (not
   * polled for a while); its poll is cancelled, here and at the bookie, so it does not wait out
   * its timeout.
   */
  private async poll(previousLac: number, pollMs: number, withEntry: boolean, signal?: AbortSignal): Promise<{ lac: number; entry: LedgerEntry | null }> {
    const longPoll = this.deps.bookies.longPollLac
    if (!longPoll) throw new QuireError('INVALID_CONFIG', 'this client cannot long-poll')
    // Best first (stable: ensemble order within a rank); every healthy one, and at least two.
    const ranked = [...this.lastSegment().ensemble].sort((a, b) => this.health.rank(a) - this.health.rank(b))
    const targets = ranked.filter((b, k) => k < 2 || this.health.rank(b) === HEALTHY)
    let best: { lac: number; data?: Uint8Array } = { lac: previousLac }
    let answered = false
    const polls = new AbortController()
    const stop = (): void => polls.abort()
    signal?.addEventListener('abort', stop, { once: true })
    if (signal?.aborted) polls.abort()
    try {
      const { late } = await this.askEach(targets,
        (b) => longPoll.call(this.deps.bookies, b, this.ledgerId, previousLac, pollMs, this.deps.readTimeoutMs, withEntry, polls.signal, this.deps.masterKey),
        (_, r) => {
          answered = true
          if (r.rc !== RC.OK || r.lac <= previousLac) return false
          best = { lac: r.lac, ...(r.entry ? { data: r.entry } : {}) }
          return true
        }, () => answered, polls.signal)
      for (const b of late) this.health.slow(b)
      // Only those left behind: after a higher LAC the others answer at once anyway, and a cancel
      // would be one more message each.
      if (late.length > 0) polls.abort()
    } finally {
      signal?.removeEventListener('abort', stop)
    }
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
    // The LAC is never raised for it: a tail on this handle meanwhile must not read past a
    // confirmed LAC (it once took a LAC lent for the read, until the read was done).
    return this.readRange(firstEntryId, lastEntryId, this.md.state === 'CLOSED')
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

  /**
   * One chunk of a read (machines/speculativeRead.ts decides per entry): each entry is asked of
   * its best-ranked replica; a failure asks the next at once, and a request not answered within
   * the speculative delay has its unread entries asked of the next replica too, the first valid
   * copy winning. Asks made together go to a bookie as one request.
   */
  private readChunk(first: number, last: number): Promise<LedgerEntry[]> {
    const n = last - first + 1
    const result: (LedgerEntry | null)[] = new Array(n).fill(null)
    const { ensembleSize: e, writeQuorum: w } = this.md
    const reads: EntryRead[] = Array.from({ length: n }, () => entryRead(w))
    const speculateMs = this.deps.speculativeReadTimeoutMs ?? 0
    const metrics = this.deps.metrics ?? NO_CLIENT_METRICS
    const bookieAt = (id: number, position: number): string => this.segmentOf(id).ensemble[writeSetIndices(id, e, w)[position]!]!
    return new Promise((resolve, reject) => {
      let left = n
      let settled = false
      let refusedBy: QuireError | null = null
      const toSend = new Map<string, number[]>()
      const queue = (bookie: string, id: number): void => {
        let ids = toSend.get(bookie)
        if (!ids) toSend.set(bookie, (ids = []))
        ids.push(id)
      }
      const step = (id: number, ev: ReadEvent): void => {
        const i = id - first
        const wasDone = reads[i]!.done
        const next = stepRead(reads[i]!, ev, (p) => this.health.rank(bookieAt(id, p)))
        reads[i] = next.state
        if (settled || wasDone) return
        if (next.step.kind === 'ask') queue(bookieAt(id, next.step.position), id)
        else if (next.step.kind === 'fail') {
          settled = true
          // No replica answered, and NATS refused some of the asks (this client's permissions): say so.
          const code = next.step.code
          reject(refusedBy && (code === 'BOOKIE_UNAVAILABLE' || code === 'TIMEOUT') ? refusedBy : this.readFailure(id, code))
        } else if (next.step.kind === 'done' && result[i] !== null && --left === 0) {
          settled = true
          resolve(result as LedgerEntry[])
        }
      }
      const sendQueued = (): void => {
        for (const [bookie, ids] of toSend) ask(bookie, ids)
        toSend.clear()
      }
      const ask = (bookie: string, ids: number[]): void => {
        let answered = false
        let speculated = false
        const timer = speculateMs > 0 ? this.timers.setTimeout(() => {
          if (answered || settled) return
          speculated = true
          this.health.slow(bookie)
          for (const id of ids) step(id, { type: 'speculate' })
          for (const _ of toSend.keys()) metrics.speculativeRead?.()
          sendQueued()
        }, speculateMs) : null
        const reply = (id: number, r: Reply): void => {
          if (r === 'timeout' && !reads[id - first]!.done && !settled) metrics.waitedOnTimeout?.()
          step(id, { type: 'reply', reply: r })
        }
        this.deps.bookies.read(bookie, this.ledgerId, ids, READ_REPLY_BYTES, this.deps.readTimeoutMs, undefined, this.deps.masterKey).then((resp) => {
          this.health.answered(bookie, !speculated)
          this.learnLac(resp.lac)
          if (resp.rc !== RC.OK) {
            const all = replyOf(entryAnswer(resp.rc, undefined))
            for (const id of ids) reply(id, all)
            return
          }
          resp.entries.forEach((answer, k) => {
            const id = ids[k]!
            const a = entryAnswer(resp.rc, answer)
            if (a === 'ok') {
              const entry = reads[id - first]!.done ? null : this.entryFrom(id, answer[1]!)
              if (entry) result[id - first] = entry
              reply(id, entry || reads[id - first]!.done ? 'ok' : 'corrupt')
            } else reply(id, replyOf(a))
          })
          // A reply stops short of `maxBytes`: the rest are asked of the same bookie again.
          for (const id of ids.slice(resp.entries.length)) if (!reads[id - first]!.done) queue(bookie, id)
        }, (err) => {
          if (isQuireError(err, 'NATS_AUTH')) refusedBy = err
          const timedOut = isQuireError(err, 'TIMEOUT')
          this.health.timedOut(bookie)
          for (const id of ids) reply(id, timedOut ? 'timeout' : 'error')
        }).catch((err: unknown) => {
          if (settled) return
          settled = true
          reject(err)
        }).finally(() => {
          answered = true
          if (timer !== null) this.timers.clearTimeout(timer)
          sendQueued()
        })
      }
      for (let id = first; id <= last; id++) step(id, { type: 'start' })
      sendQueued()
    })
  }

  private readFailure(entryId: number, code: ReadFailure): QuireError {
    const where = { ledgerId: this.ledgerId, entryId }
    const replicas = this.md.writeQuorum
    switch (code) {
      case 'NO_SUCH_ENTRY': return new QuireError(code, `no bookie holds entry ${entryId} of ledger ${this.ledgerId}`, where)
      case 'CORRUPT_ENTRY': return new QuireError(code, `entry ${entryId} of ledger ${this.ledgerId} fails its digest on every replica`, where)
      case 'TIMEOUT': return new QuireError(code, `no bookie of entry ${entryId} of ledger ${this.ledgerId} answered within ${this.deps.readTimeoutMs} ms`, where)
      case 'BOOKIE_UNAVAILABLE': return new QuireError(code, `could not read entry ${entryId} of ledger ${this.ledgerId} from any of its ${replicas} bookies`, where)
    }
  }

  /**
   * Every entry from `from` on, in order, exactly once, following the LAC as the writer appends
   * (long polls, no busy loop); ends after the last entry of a closed ledger. Pull-based: it reads
   * the next batch only when the consumer has taken the previous one.
   */
  entries(opts: TailOptions = {}): AsyncIterableIterator<LedgerEntry> {
    // A simulated clock runs the tail's retry delays too; the real one's timers do not keep the
    // process alive (realClock unrefs them), so a tail keeps xstate's own there.
    const clock = this.deps.clock
    const simulated = clock && clock !== realClock && clock.setTimeout && clock.clearTimeout ? { setTimeout: clock.setTimeout.bind(clock), clearTimeout: clock.clearTimeout.bind(clock) } : undefined
    return tailEntries(this, opts, this.deps.inspect ?? null, this.deps.metrics ?? NO_CLIENT_METRICS, (fn) => this.watchLac(fn), simulated)
  }

  /** `entries()` as an RxJS Observable; unsubscribing stops the tail. */
  tail$(opts: TailOptions = {}): Observable<LedgerEntry> {
    return observableOf(() => this.entries(opts))
  }

  /** Release the handle (a read handle holds no resources besides the client's). */
  async closeHandle(): Promise<void> {}
}

/** A reply's answer for one entry, as the read's machine takes it (machines/speculativeRead.ts); 'ok' before its digest is checked. */
function replyOf(a: EntryAnswer): Reply {
  return a === 'absent' ? 'missing' : a === 'corrupt' ? 'corrupt' : a === 'ok' ? 'ok' : 'error'
}
