// The writer of a named log (PROTOCOL.md "Logs on top of ledgers"): one at a time per log. Its
// metadata lifecycle is machines/logWriter.ts; this binds its effects to the log store and the
// client's ledgers, and keeps the records: packing, entries, promises, when to roll.
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

import { QuireError, asOperatingError, assert, isProgrammerError, isQuireError } from '../machines/errors.ts'
import type { LogPosition } from '../machines/logPosition.ts'
import { lastTxIdOf, rollDue, type LogMetadata, type LogSegment, type SegmentEnd } from '../machines/logRules.ts'
import { logWriterMachine, type LogWriterEvent } from '../machines/logWriter.ts'
import { createActor, type Actor } from 'xstate'
import type { LogStore } from '../storage/logStore.ts'
import { KvConflict } from '../storage/types.ts'
import type { Clock, TimerHandle } from '../transport/clock.ts'
import { logActorId, watchActor, type InspectSink } from '../transport/inspect.ts'
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
  /** Publish the writer's machine on `quire.inspect.log-writer.<log>` for the inspector; none by default. */
  inspect?: InspectSink | null
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

interface Settle { resolve: () => void; reject: (e: unknown) => void }

/** Writers started in this process, for a unique inspection id. */
let writersStarted = 0

export class LogWriterImpl implements LogWriter {
  private readonly actor: Actor<ReturnType<typeof logWriterMachine>>
  /** Ledgers the machine had made, until the log takes them (or they are deleted). */
  private readonly made = new Map<number, WriteHandle>()
  private current: Current | null = null
  private queued: Pending[] = []
  private flushQueued = false
  /** Records wait while the machine switches segments (one compare-and-swap). */
  private rolling = false
  /** Settles after the last entry handed to a ledger is acknowledged (or failed): keeps positions in order. */
  private acked: Promise<void> = Promise.resolve()
  private failure: QuireError | null = null
  private closed = false
  private lastTxId = -1
  private ageTimer: TimerHandle | null = null
  /** Closes of rolled segments' ledgers, by segment, until they succeed (a failed one stays). */
  private readonly closing = new Map<number, Promise<void>>()
  private taking: Settle | null = null
  private finishing: Settle | null = null
  private readonly recordBytesMax: number
  private readonly entryBytesMax: number
  private readonly entryRecordsMax: number

  private constructor(private readonly deps: LogDeps, readonly name: string, opts: LogWriterOptions) {
    this.recordBytesMax = opts.recordBytesMax ?? 1024 * 1024
    this.entryBytesMax = opts.entryBytesMax ?? 1024 * 1024
    this.entryRecordsMax = opts.entryRecordsMax ?? 10_000
    const send = (e: LogWriterEvent): void => { this.actor.send(e) }
    const failed = (err: unknown): void => { send(errorEvent(err)) }
    // Whole milliseconds: the log's record keeps integers (a simulated clock has fractions).
    const machine = logWriterMachine({ name, nowMs: () => Math.floor(deps.clock.now()) }).provide({
      actions: {
        readLog: (_, p) => { deps.store.read(p.name).then((v) => send({ type: 'log.read', md: v.value, revision: v.revision }), failed) },
        writeLog: (_, p) => {
          deps.store.write(p.md, p.revision).then((v) => send({ type: 'log.written', md: v.value, revision: v.revision }),
            (err: unknown) => (err instanceof KvConflict ? send({ type: 'log.conflict' }) : failed(err)))
        },
        recoverSegment: (_, p) => {
          recoveredEnd(deps.ledgers, p.segment).then((end) => send({ type: 'segment.recovered', segmentSeq: p.segment.segmentSeq, end }), failed)
        },
        createLedger: (_, p) => {
          const md = this.actor.getSnapshot().context.md!
          deps.ledgers.createLedger(ledgerOptions(md, p.segmentSeq, p.epoch)).then((h) => {
            if (this.actor.getSnapshot().status !== 'active') return void dropLedger(deps.ledgers, h)
            this.made.set(h.ledgerId, h)
            send({ type: 'ledger.created', ledgerId: h.ledgerId })
          }, failed)
        },
        deleteLedger: (_, p) => {
          const h = this.made.get(p.ledgerId)
          this.made.delete(p.ledgerId)
          if (h) void dropLedger(deps.ledgers, h)
        },
        opened: (_, p) => {
          this.lastTxId = lastTxIdOf(p.md)
          this.enter(p.segment)
          this.taking?.resolve()
        },
        switched: (_, p) => {
          const prev = this.current!
          this.enter(p.segment)
          this.rolling = false
          // The old segment's ledger is closed once its adds are in; the log already ends it at its last entry.
          const seq = prev.segment.segmentSeq
          const closing = this.acked.then(() => prev.handle.close())
          this.closing.set(seq, closing)
          closing.then(() => { this.closing.delete(seq) }, () => {})
          this.scheduleFlush()
        },
        finished: () => { this.finishing?.resolve() },
        fail: (_, p) => { this.fail(new QuireError(p.code, `log ${name}: ${p.message}`, { log: name })) },
      },
    })
    this.actor = createActor(machine)
    // Log names may hold `/`: the inspection id takes them as `.`-free tokens.
    const unwatch = watchActor(this.actor, deps.inspect ?? null, 'log-writer', logActorId(name, ++writersStarted))
    this.actor.subscribe({ complete: () => unwatch() })
  }

  get epoch(): number { return this.actor.getSnapshot().context.epoch }

  /** Take the log `name`: fence and close what an earlier writer left, start a new segment. */
  static async take(deps: LogDeps, name: string, opts: LogWriterOptions = {}): Promise<LogWriterImpl> {
    const w = new LogWriterImpl(deps, name, opts)
    await new Promise<void>((resolve, reject) => {
      w.taking = { resolve, reject }
      w.actor.start()
    })
    w.taking = null
    return w
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
      this.queued.push({ record: { txId, timeMs: Math.floor(this.deps.clock.now()), payload }, resolve, reject })
      this.scheduleFlush()
    })
  }

  /** Every record acknowledged so far, then no more: seal the log (readers end after its last record). */
  async markEndOfStream(): Promise<void> {
    await this.finish('seal')
  }

  /** Wait for what was appended, close the segment; the next writer starts a new one. */
  async close(): Promise<void> {
    await this.finish('close')
  }

  private enter(segment: LogSegment): void {
    const handle = this.made.get(segment.ledgerId)
    assert(handle !== undefined, `log ${this.name}: segment ${segment.segmentSeq} is on ledger ${segment.ledgerId}, which this writer did not make`)
    this.made.delete(segment.ledgerId)
    this.current = { segment, handle, stats: freshStats(segment.createdAt) }
    this.armAgeTimer()
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
    while (this.queued.length > 0 && !this.rolling && !this.failure && this.current) {
      this.send(this.takeBatch(this.current))
      if (rollDue(this.actor.getSnapshot().context.md!.options, this.current.stats, this.deps.clock.now())) this.roll()
    }
  }

  private takeBatch(cur: Current): Pending[] {
    let bytes = LOG_ENTRY_HEADER_BYTES
    let n = 0
    // A segment bounded by records rolls at exactly that many: an entry does not cross the bound.
    const countMax = this.actor.getSnapshot().context.md!.options.segmentRecordsMax
    const room = countMax > 0 ? Math.max(1, countMax - cur.stats.records) : Number.POSITIVE_INFINITY
    while (n < this.queued.length && n < this.entryRecordsMax && n < room) {
      const add = packedRecordBytes(this.queued[n]!.record.payload.length)
      if (n > 0 && bytes + add > this.entryBytesMax) break
      bytes += add
      n++
    }
    return this.queued.splice(0, n)
  }

  private send(batch: Pending[]): void {
    const { segment, handle, stats } = this.current!
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
        if (isQuireError(err, 'FENCED')) {
          const why = await this.fencedBy(segment.segmentSeq, handle.ledgerId)
          this.fail(why)
          this.actor.send({ type: 'error', code: why.code, message: why.message })
        } else {
          this.fail(err)
          if (isQuireError(err)) this.actor.send({ type: 'error', code: err.code, message: err.message })
        }
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

  /** Every queued and later append fails with `err`, and whoever waits on the take or the finish. */
  private fail(err: unknown): void {
    if (this.failure) return
    this.failure = asOperatingError(err, 'METADATA_ERROR', `log ${this.name}`, { log: this.name })
    for (const p of this.queued.splice(0)) p.reject(this.failure)
    this.disarmAgeTimer()
    this.taking?.reject(this.failure)
    this.finishing?.reject(this.failure)
  }

  /** Stop handing records to the current segment and have the machine switch to the next. */
  private roll(): void {
    if (this.rolling || this.failure || !this.current) return
    this.rolling = true
    this.actor.send({ type: 'roll', end: endOf(this.current), closedThrough: this.closedThrough(this.current.segment.segmentSeq - 1) })
  }

  private async finish(mode: 'close' | 'seal'): Promise<void> {
    const refused = this.refusal()
    if (refused) throw refused
    this.closed = true
    this.disarmAgeTimer()
    while (this.rolling || this.queued.length > 0 || this.flushQueued) {
      if (this.failure) throw this.failure
      if (!this.rolling) this.flush()
      await new Promise<void>((r) => this.deps.clock.setTimeout(r, this.rolling ? 1 : 0))
    }
    await this.acked
    if (this.failure) throw this.failure
    const cur = this.current!
    await cur.handle.close()
    await Promise.allSettled([...this.closing.values()])
    await new Promise<void>((resolve, reject) => {
      this.finishing = { resolve, reject }
      this.actor.send({ type: 'finish', mode, end: endOf(cur), closedThrough: this.closedThrough(cur.segment.segmentSeq) })
    })
  }

  /** Every segment up to the returned one has its ledger closed: `upTo`, or below the first close still pending. */
  private closedThrough(upTo: number): number {
    return Math.min(upTo, ...[...this.closing.keys()].map((s) => s - 1))
  }

  private armAgeTimer(): void {
    this.disarmAgeTimer()
    const ageMs = this.actor.getSnapshot().context.md?.options.segmentAgeMs ?? 0
    if (ageMs <= 0) return
    this.ageTimer = this.deps.clock.setTimeout(() => {
      this.ageTimer = null
      if (!this.failure && !this.closed && this.current && this.current.stats.records > 0) this.roll()
      else this.armAgeTimer()
    }, ageMs)
  }

  private disarmAgeTimer(): void {
    if (this.ageTimer !== null) this.deps.clock.clearTimeout(this.ageTimer)
    this.ageTimer = null
  }
}

/** An effect's failure as the machine's event; a programmer error crashes (thrown on the next turn). */
function errorEvent(err: unknown): LogWriterEvent {
  if (isProgrammerError(err)) {
    setImmediate(() => { throw err })
    return { type: 'error', code: 'METADATA_ERROR', message: `a bug stopped the log writer: ${String(err)}` }
  }
  const q = asOperatingError(err, 'METADATA_ERROR', 'the log writer')
  return { type: 'error', code: q.code, message: q.message }
}

async function dropLedger(ledgers: LogLedgers, h: WriteHandle): Promise<void> {
  await h.close().catch(() => {})
  await ledgers.deleteLedger(h.ledgerId).catch(() => {})
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
