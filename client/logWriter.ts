// The writer of a named log (PROTOCOL.md "Logs on top of ledgers"): one at a time per log.
// Taking the log: bump the log's writer epoch by compare-and-swap (two writers racing: the one
// whose swap lands wins, the other gets LOG_WRITER_CONFLICT), recover the segments a previous
// writer may have left open (ledger recovery fences it: none of its records is acknowledged
// after), close them in the log at what recovery found, and add a new open segment.
// Appending: the records given in one turn are packed into one ledger entry (bounded by
// entryBytesMax and entryRecordsMax); each record's promise resolves with its position once its
// entry is acknowledged, in order, across segments too.
// Rolling (size, count, age: machines/logRules.ts rollDue): the next segment's ledger is made as
// soon as a segment starts (a spare); at the roll one compare-and-swap closes the current segment
// at its last entry and adds the next, and only during that swap are new records held back. The
// old ledger is closed once its adds are acknowledged; an unused spare is deleted at the end.
// Fencing: a ledger fenced under this writer, or a log whose epoch moved on, fails every pending
// and later append with FENCED.

import { QuireError, assert, isQuireError } from '../machines/errors.ts'
import type { LogPosition } from '../machines/logPosition.ts'
import {
  claimed, lastTxIdOf, rollDue, segmentsToRecover, withSegmentAdded, withSegmentClosed, writerRefusal,
  type LogMetadata, type LogSegment, type SegmentEnd,
} from '../machines/logRules.ts'
import type { LogStore, Versioned } from '../storage/logStore.ts'
import { KvConflict } from '../storage/types.ts'
import type { Clock, TimerHandle } from '../transport/clock.ts'
import { LOG_ENTRY_HEADER_BYTES, packLogEntry, packedRecordBytes, unpackLogEntry, type LogRecordIn } from '../transport/logEntry.ts'
import type { LogWriter, ReadHandle, WriteHandle } from './api.ts'
import type { CreateLedgerOptions, OpenLedgerOptions } from './client.ts'
import type { LedgerMetadata } from '../storage/metadataStore.ts'

/** What a log writer needs of the client. */
export interface LogLedgers {
  createLedger(opts: CreateLedgerOptions): Promise<WriteHandle>
  openLedger(ledgerId: number, opts?: OpenLedgerOptions): Promise<ReadHandle>
  getLedgerMetadata(ledgerId: number): Promise<LedgerMetadata>
  deleteLedger(ledgerId: number): Promise<void>
}

export interface LogDeps {
  ledgers: LogLedgers
  store: LogStore
  clock: Clock
}

export interface LogWriterOptions {
  /** Largest record payload (RECORD_TOO_LARGE above). Default 1 MiB. */
  recordBytesMax?: number
  /** Records of one turn are packed into entries of at most this many bytes. Default 1 MiB. */
  entryBytesMax?: number
  /** ... and at most this many records. Default 10,000. */
  entryRecordsMax?: number
}

export interface AppendOptions {
  /** Strictly above every txId of the log; default the last one + 1. */
  txId?: number
}

interface Pending {
  record: LogRecordIn
  resolve: (p: LogPosition) => void
  reject: (e: unknown) => void
}

interface Current {
  segment: LogSegment
  handle: WriteHandle
  /** `entries`: handed to the ledger, which numbers them 0, 1, ... in that order. */
  stats: { bytes: number; records: number; entries: number; createdAt: number; firstTxId: number; lastTxId: number }
}

/** Compare-and-swap attempts before METADATA_CONFLICT. */
const CAS_ATTEMPTS = 50

export class LogWriterImpl implements LogWriter {
  private md: Versioned<LogMetadata>
  private current: Current
  private queued: Pending[] = []
  private flushQueued = false
  /**
   * The next segment's ledger, made as soon as a segment starts, so that a roll finds it ready and
   * records wait only for the compare-and-swap that switches segments.
   */
  private spare: Promise<WriteHandle> | null = null
  private rolling: Promise<void> | null = null
  /** Settles after the last entry handed to a ledger is acknowledged (or failed): keeps positions in order. */
  private acked: Promise<void> = Promise.resolve()
  private failure: QuireError | null = null
  private closed = false
  private lastTxId: number
  private ageTimer: TimerHandle | null = null
  private readonly recordBytesMax: number
  private readonly entryBytesMax: number
  private readonly entryRecordsMax: number

  private constructor(private readonly deps: LogDeps, md: Versioned<LogMetadata>, current: Current, readonly epoch: number, opts: LogWriterOptions) {
    this.md = md
    this.current = current
    this.lastTxId = Math.max(lastTxIdOf(md.value), -1)
    this.recordBytesMax = opts.recordBytesMax ?? 1024 * 1024
    this.entryBytesMax = opts.entryBytesMax ?? 1024 * 1024
    this.entryRecordsMax = opts.entryRecordsMax ?? 10_000
    this.armAgeTimer()
    this.prepareSpare()
  }

  get name(): string { return this.md.value.name }

  /** Take the log `name`: fence and close what an earlier writer left, start a new segment. */
  static async take(deps: LogDeps, name: string, opts: LogWriterOptions = {}): Promise<LogWriterImpl> {
    const { store } = deps
    let cur = await store.read(name)
    let mine: Versioned<LogMetadata> | null = null
    for (let attempt = 0; mine === null; attempt++) {
      const next = claimed(cur.value)
      try {
        mine = await store.write(next, cur.revision)
      } catch (err) {
        if (!(err instanceof KvConflict) || attempt >= CAS_ATTEMPTS) throw err
        const seen = cur.value.epoch
        cur = await store.read(name)
        if (cur.value.epoch !== seen) {
          throw new QuireError('LOG_WRITER_CONFLICT', `another writer took log ${name} while this one was taking it (epoch ${cur.value.epoch})`, { log: name, epoch: cur.value.epoch })
        }
      }
    }
    const epoch = mine.value.epoch
    const ends = new Map<number, SegmentEnd>()
    for (const seg of segmentsToRecover(mine.value)) {
      const end = await recoveredEnd(deps.ledgers, seg)
      if (end) ends.set(seg.segmentSeq, end)
    }
    const handle = await deps.ledgers.createLedger(ledgerOptions(mine.value, mine.value.nextSegmentSeq, epoch))
    try {
      const md = await casLoop(store, mine, epoch, (m) => {
        let next = m
        for (const [seq, end] of ends) next = withSegmentClosed(next, seq, end, deps.clock.now())
        return withSegmentAdded(next, handle.ledgerId, epoch, deps.clock.now())
      })
      const segment = md.value.segments.at(-1)!
      return new LogWriterImpl(deps, md, { segment, handle, stats: freshStats(segment.createdAt) }, epoch, opts)
    } catch (err) {
      await handle.close().catch(() => {})
      await deps.ledgers.deleteLedger(handle.ledgerId).catch(() => {})
      throw err
    }
  }

  /** Resolves with the record's position once its entry is acknowledged. */
  append(data: Uint8Array | string, opts: AppendOptions = {}): Promise<LogPosition> {
    const payload = typeof data === 'string' ? new TextEncoder().encode(data) : data
    if (!(payload instanceof Uint8Array)) return Promise.reject(new QuireError('INVALID_CONFIG', 'a log record is a Uint8Array or a string', {}))
    const refused = this.refusal()
    if (refused) return Promise.reject(refused)
    if (payload.length > this.recordBytesMax) {
      return Promise.reject(new QuireError('RECORD_TOO_LARGE', `a record of ${payload.length} bytes is over the log writer's recordBytesMax (${this.recordBytesMax})`, { bytes: payload.length, recordBytesMax: this.recordBytesMax }))
    }
    const txId = opts.txId ?? this.lastTxId + 1
    if (!Number.isSafeInteger(txId) || txId <= this.lastTxId) {
      return Promise.reject(new QuireError('INVALID_TXID', `txId ${String(txId)} is not above the log's last, ${this.lastTxId}`, { txId: String(txId), lastTxId: this.lastTxId }))
    }
    this.lastTxId = txId
    return new Promise<LogPosition>((resolve, reject) => {
      this.queued.push({ record: { txId, timeMs: this.deps.clock.now(), payload }, resolve, reject })
      this.scheduleFlush()
    })
  }

  /** Every record acknowledged so far, then no more: seal the log (readers end after its last record). */
  async markEndOfStream(): Promise<void> {
    await this.finish(true)
  }

  /** Wait for what was appended, close the segment; the next writer starts a new one. */
  async close(): Promise<void> {
    await this.finish(false)
  }

  private refusal(): QuireError | null {
    if (this.failure) return this.failure
    if (this.closed) return new QuireError('LEDGER_CLOSED', `the writer of log ${this.name} is closed`, { log: this.name })
    return null
  }

  private scheduleFlush(): void {
    if (this.flushQueued || this.rolling) return
    this.flushQueued = true
    this.deps.clock.defer(() => {
      this.flushQueued = false
      this.flush()
    })
  }

  /** Pack what is queued into entries of the current segment; roll when a policy says so. */
  private flush(): void {
    while (this.queued.length > 0 && !this.rolling && !this.failure) {
      const batch = this.takeBatch()
      this.send(batch)
      if (rollDue(this.md.value.options, this.current.stats, this.deps.clock.now())) this.roll()
    }
  }

  private takeBatch(): Pending[] {
    let bytes = LOG_ENTRY_HEADER_BYTES
    let n = 0
    // A segment bounded by records rolls at exactly that many: an entry does not cross the bound.
    const countMax = this.md.value.options.segmentRecordsMax
    const room = countMax > 0 ? Math.max(1, countMax - this.current.stats.records) : Number.POSITIVE_INFINITY
    while (n < this.queued.length && n < this.entryRecordsMax && n < room) {
      const add = packedRecordBytes(this.queued[n]!.record.payload.length)
      if (n > 0 && bytes + add > this.entryBytesMax) break
      bytes += add
      n++
    }
    return this.queued.splice(0, n)
  }

  private send(batch: Pending[]): void {
    const { segment, handle, stats } = this.current
    const entry = packLogEntry({ recordsBefore: stats.records, records: batch.map((p) => p.record) })
    stats.records += batch.length
    stats.bytes += entry.length
    if (stats.firstTxId < 0) stats.firstTxId = batch[0]!.record.txId
    stats.lastTxId = batch.at(-1)!.record.txId
    const expected = stats.entries++
    const appended = handle.append(entry)
    const before = this.acked
    this.acked = Promise.allSettled([before, appended]).then(async () => {
      try {
        const entryId = await appended
        assert(entryId === expected, `log ${this.name}: entry ${entryId} of ledger ${handle.ledgerId} where ${expected} was due`)
        batch.forEach((p, slot) => p.resolve({ segmentSeq: segment.segmentSeq, entryId, slot }))
      } catch (err) {
        this.fail(isQuireError(err, 'FENCED') ? await this.fencedBy(segment.segmentSeq, handle.ledgerId) : err)
        for (const p of batch) p.reject(this.failure)
      }
    })
  }

  /** Why this writer's ledger was fenced: a newer writer (FENCED), or the log was deleted (NO_SUCH_LOG). */
  private async fencedBy(segmentSeq: number, ledgerId: number): Promise<QuireError> {
    if (this.failure) return this.failure
    const exists = await this.deps.store.exists(this.name).catch(() => true)
    return exists
      ? new QuireError('FENCED', `log ${this.name}: segment ${segmentSeq} (ledger ${ledgerId}) was fenced by a newer writer`, { log: this.name })
      : new QuireError('NO_SUCH_LOG', `log ${this.name} was deleted while this writer held it`, { log: this.name })
  }

  /** Every queued and later append fails with `err`. */
  private fail(err: unknown): void {
    if (this.failure) return
    this.failure = err instanceof QuireError ? err : new QuireError('TIMEOUT', `log ${this.name}: ${String(err)}`, { log: this.name })
    for (const p of this.queued.splice(0)) p.reject(this.failure)
    this.disarmAgeTimer()
    void this.dropSpare()
  }

  /** The next segment's ledger, made now if none is being made; a failure to make it shows at the roll. */
  private prepareSpare(): void {
    if (this.spare || this.failure || this.closed) return
    this.spare = this.deps.ledgers.createLedger(ledgerOptions(this.md.value, this.md.value.nextSegmentSeq, this.epoch))
    this.spare.catch(() => {})
  }

  /** Switch to the next segment; records wait until the switch is done. */
  private roll(): void {
    if (this.rolling || this.failure) return
    this.prepareSpare()
    const spare = this.spare!
    this.spare = null
    this.rolling = spare.then((handle) => this.switchTo(handle)).catch((err: unknown) => this.fail(err)).finally(() => {
      this.rolling = null
      if (!this.failure) {
        this.prepareSpare()
        this.scheduleFlush()
      }
    })
  }

  /** One compare-and-swap: the current segment closed at its last entry handed over, `handle`'s added. */
  private async switchTo(handle: WriteHandle): Promise<void> {
    const prev = this.current
    try {
      const md = await casLoop(this.deps.store, this.md, this.epoch, (m) =>
        withSegmentAdded(withSegmentClosed(m, prev.segment.segmentSeq, endOf(prev), this.deps.clock.now()), handle.ledgerId, this.epoch, this.deps.clock.now()))
      this.md = md
      const segment = md.value.segments.at(-1)!
      this.current = { segment, handle, stats: freshStats(segment.createdAt) }
      this.armAgeTimer()
    } catch (err) {
      await handle.close().catch(() => {})
      await this.deps.ledgers.deleteLedger(handle.ledgerId).catch(() => {})
      throw err
    }
    // The old segment's ledger is closed once its adds are in; the log already ends it at its last entry.
    void this.acked.then(() => prev.handle.close()).catch(() => {})
  }

  private async finish(seal: boolean): Promise<void> {
    const refused = this.refusal()
    if (refused) throw refused
    this.closed = true
    this.disarmAgeTimer()
    while (this.rolling || this.queued.length > 0 || this.flushQueued) {
      if (this.rolling) await this.rolling
      else this.flush()
      await new Promise<void>((r) => this.deps.clock.defer(r))
    }
    await this.acked
    await this.dropSpare()
    if (this.failure) throw this.failure
    const cur = this.current
    await cur.handle.close()
    this.md = await casLoop(this.deps.store, this.md, this.epoch, (m) => {
      const next = withSegmentClosed(m, cur.segment.segmentSeq, endOf(cur), this.deps.clock.now())
      return seal ? { ...next, sealed: true } : next
    })
  }

  /** The spare ledger, unused at the end: deleted (it holds no entry). */
  private async dropSpare(): Promise<void> {
    const spare = this.spare
    this.spare = null
    const handle = await spare?.catch(() => null)
    if (!handle) return
    await handle.close().catch(() => {})
    await this.deps.ledgers.deleteLedger(handle.ledgerId).catch(() => {})
  }

  private armAgeTimer(): void {
    this.disarmAgeTimer()
    const ageMs = this.md.value.options.segmentAgeMs
    if (ageMs <= 0) return
    this.ageTimer = this.deps.clock.setTimeout(() => {
      this.ageTimer = null
      if (!this.failure && !this.closed && this.current.stats.records > 0) this.roll()
      else this.armAgeTimer()
    }, ageMs)
  }

  private disarmAgeTimer(): void {
    if (this.ageTimer !== null) this.deps.clock.clearTimeout(this.ageTimer)
    this.ageTimer = null
  }
}

function freshStats(createdAt: number): Current['stats'] {
  return { bytes: 0, records: 0, entries: 0, createdAt, firstTxId: -1, lastTxId: -1 }
}

function endOf(c: Current): SegmentEnd {
  const s = c.stats
  return { lastEntryId: s.entries - 1, firstTxId: s.firstTxId, lastTxId: s.lastTxId, recordCount: s.records, bytes: s.bytes }
}

function ledgerOptions(md: LogMetadata, segmentSeq: number, epoch: number): CreateLedgerOptions {
  const o = md.options
  return {
    ensembleSize: o.ensembleSize, writeQuorum: o.writeQuorum, ackQuorum: o.ackQuorum, digestType: o.digestType,
    customMetadata: { log: md.name, segment: String(segmentSeq), epoch: String(epoch) },
  }
}

/**
 * Apply `change` to the log at `from` by compare-and-swap, re-reading on conflicts; FENCED (or
 * END_OF_STREAM) when the log was taken by a newer writer meanwhile, without writing.
 */
async function casLoop(store: LogStore, from: Versioned<LogMetadata>, epoch: number, change: (m: LogMetadata) => LogMetadata): Promise<Versioned<LogMetadata>> {
  let cur = from
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const refused = writerRefusal(cur.value, epoch)
    if (refused) throw refused
    try {
      return await store.write(change(cur.value), cur.revision)
    } catch (err) {
      if (!(err instanceof KvConflict)) throw err
      cur = await store.read(cur.value.name)
    }
  }
  throw new QuireError('METADATA_CONFLICT', `could not change log ${from.value.name}: too many concurrent metadata updates`, { log: from.value.name })
}

/**
 * A segment's end as its ledger holds it, after recovering the ledger if a writer left it open
 * (that fences the writer). Null when the ledger was closed already and the log knows its end.
 */
async function recoveredEnd(ledgers: LogLedgers, seg: LogSegment): Promise<SegmentEnd | null> {
  const lmd = await ledgers.getLedgerMetadata(seg.ledgerId)
  if (lmd.state === 'CLOSED' && seg.state === 'closed' && seg.lastEntryId === lmd.lastEntryId) return null
  const h = await ledgers.openLedger(seg.ledgerId, lmd.state === 'CLOSED' ? {} : { recovery: true })
  try {
    const last = h.metadata.lastEntryId
    if (last < 0) return { lastEntryId: -1, firstTxId: -1, lastTxId: -1, recordCount: 0, bytes: 0 }
    const where = (e: number): string => `log ${seg.segmentSeq} entry ${e} (ledger ${seg.ledgerId})`
    const [first] = await h.read(0, 0)
    const [tail] = await h.read(last, last)
    assert(first !== undefined && tail !== undefined, 'a read of an entry at or below the LAC returns it')
    const head = unpackLogEntry(first.payload, where(0))
    const end = unpackLogEntry(tail.payload, where(last))
    return {
      lastEntryId: last, firstTxId: head.records[0]!.txId, lastTxId: end.records.at(-1)!.txId,
      recordCount: end.recordsBefore + end.records.length, bytes: h.metadata.length,
    }
  } finally {
    await h.closeHandle()
  }
}
