// Named logs over ledgers (the DistributedLog API): the namespace a client opens logs in, and the
// handle of one log (its writer, readers, cursors, truncation). Log metadata lives in the
// quire_logs bucket (storage/logStore.ts); each segment is a ledger made with the log's options.
// Deleting a log deletes its segments' ledgers after its record, so a crash between the two
// leaves ledgers for the bookies' garbage collection, never a log naming deleted ledgers.

import { QuireError } from '../machines/errors.ts'
import { checkLogName, checkPosition, comparePositions, checkSubscriber, parsePosition, type LogPosition } from '../machines/logPosition.ts'
import { segmentsToRecover, segmentsToTruncate, withTruncated, type LogMetadata, type LogOptions, type LogSegment } from '../machines/logRules.ts'
import { DEFAULT_QUORUM, validateQuorum } from '../machines/quorum.ts'
import type { LogStore, Versioned } from '../storage/logStore.ts'
import { KvConflict } from '../storage/types.ts'
import type { Clock } from '../transport/clock.ts'
import type { InspectSink } from '../transport/inspect.ts'
import { readLog, type LogRecord, type ReadFrom } from './logReader.ts'
import { LogWriterImpl, type LogLedgers, type LogWriterOptions } from './logWriter.ts'
import { observableOf } from './rx.ts'
import type { Observable } from 'rxjs'
import type { Log, LogNamespace, LogReader } from './api.ts'

export const LOG_OPTIONS_DEFAULT: Readonly<Omit<LogOptions, 'ensembleSize' | 'writeQuorum' | 'ackQuorum'>> = Object.freeze({
  digestType: 'crc32c',
  segmentBytesMax: 256 * 1024 * 1024,
  segmentAgeMs: 0,
  segmentRecordsMax: 0,
  retentionMs: 0,
  retentionBytes: 0,
})

export type CreateLogOptions = Partial<LogOptions>

export interface ReaderOptions {
  /**
   * A position (object or `seg:entry:slot`), 'earliest' (default), 'latest', `{ txId }` (the first
   * record with that txId or a later one) or `{ timeMs }` (the first written at or after it).
   */
  from?: LogPosition | string | 'earliest' | 'latest' | { txId: number } | { timeMs: number }
  /** Start after the position this subscriber last committed (else at `from`). */
  subscriber?: string
}

interface LogParts {
  ledgers: LogLedgers
  store: LogStore
  clock: Clock
  inspect?: InspectSink | null
}

export class LogNamespaceImpl implements LogNamespace {
  constructor(private readonly p: LogParts) {}

  async createLog(name: string, opts: CreateLogOptions = {}): Promise<LogHandleImpl> {
    checkLogName(name)
    const options = logOptions(opts)
    await this.p.store.create({ name, options, createdAt: Math.floor(this.p.clock.now()), epoch: 0, sealed: false, nextSegmentSeq: 1, ledgersClosedThrough: 0, segments: [] })
    return new LogHandleImpl(this.p, name)
  }

  /** NO_SUCH_LOG when there is none. */
  async openLog(name: string): Promise<LogHandleImpl> {
    await this.p.store.read(name)
    return new LogHandleImpl(this.p, name)
  }

  logExists(name: string): Promise<boolean> {
    return this.p.store.exists(name)
  }

  listLogs(prefix = ''): AsyncIterable<string> {
    return this.p.store.list(prefix)
  }

  /**
   * Delete a log: first fence its writer (recover the ledgers it may still write: its appends fail
   * from then on, with NO_SUCH_LOG), then delete the log's record, its segments' ledgers and its
   * cursors. Readers end with NO_SUCH_LOG.
   */
  async deleteLog(name: string): Promise<void> {
    const { value } = await this.p.store.read(name)
    for (const s of segmentsToRecover(value)) {
      const lmd = await this.p.ledgers.getLedgerMetadata(s.ledgerId).catch(() => null)
      if (lmd && lmd.state !== 'CLOSED') await (await this.p.ledgers.openLedger(s.ledgerId, { recovery: true })).closeHandle()
    }
    const subscribers = await this.p.store.listSubscribers(name)
    await this.p.store.delete(name)
    for (const s of value.segments) if (s.state !== 'truncated') await this.p.ledgers.deleteLedger(s.ledgerId).catch(() => {})
    for (const s of subscribers) await this.p.store.deleteCursor(name, s)
  }
}

export class LogHandleImpl implements Log {
  constructor(private readonly p: LogParts, readonly name: string) {}

  async info(): Promise<LogMetadata> {
    return (await this.p.store.read(this.name)).value
  }

  /** Take the log for writing (fencing any earlier writer). */
  writer(opts: LogWriterOptions = {}): Promise<LogWriterImpl> {
    return LogWriterImpl.take(this.p, this.name, opts)
  }

  reader(opts: ReaderOptions = {}): LogReaderImpl {
    if (opts.subscriber !== undefined) checkSubscriber(opts.subscriber)
    return new LogReaderImpl(this, opts)
  }

  /** Records from a start on, once each, in order, until the log is sealed. */
  async *records(opts: ReaderOptions = {}): AsyncGenerator<LogRecord> {
    let from: ReadFrom = toReadFrom(opts.from ?? 'earliest')
    if (opts.subscriber !== undefined) {
      const c = await this.p.store.readCursor(this.name, opts.subscriber)
      if (c) from = { ...c.value.position, slot: c.value.position.slot + 1 }
    }
    yield* readLog(this.p, this.name, from, { subscriber: opts.subscriber })
  }

  /** Record `position` as the last one `subscriber` has processed (compare-and-swap, never backwards). */
  async commit(subscriber: string, position: LogPosition): Promise<void> {
    checkSubscriber(subscriber)
    const pos = checkPosition(position)
    for (let attempt = 0; attempt < 50; attempt++) {
      const cur = await this.p.store.readCursor(this.name, subscriber)
      if (cur && comparePositions(cur.value.position, pos) >= 0) return
      try {
        await this.p.store.writeCursor(this.name, subscriber, { position: pos, updatedAt: Math.floor(this.p.clock.now()) }, cur?.revision ?? null)
        return
      } catch (err) {
        if (!(err instanceof KvConflict)) throw err
      }
    }
    throw new QuireError('METADATA_CONFLICT', `could not commit the cursor of ${subscriber} on log ${this.name}`, { log: this.name, subscriber })
  }

  listSubscribers(): Promise<string[]> {
    return this.p.store.listSubscribers(this.name)
  }

  deleteSubscriber(subscriber: string): Promise<void> {
    return this.p.store.deleteCursor(this.name, subscriber)
  }

  /**
   * Remove the whole segments that end before `position` (their ledgers deleted); never a record
   * at or after it. Returns the segment numbers removed.
   */
  async truncate(position: LogPosition | string): Promise<number[]> {
    const pos = typeof position === 'string' ? parsePosition(position) : checkPosition(position)
    return truncateLog(this.p.store, (id) => this.p.ledgers.deleteLedger(id), this.name, (md) => segmentsToTruncate(md, pos))
  }
}

/**
 * Truncate the segments `pick` chooses from the log as it is now, by compare-and-swap (re-read and
 * chosen again on a conflict, so two truncations, or a truncation and retention, never remove a
 * segment twice or one the other kept), then delete their ledgers. Returns the segment numbers.
 */
export async function truncateLog(store: LogStore, deleteLedger: (ledgerId: number) => Promise<void>, name: string, pick: (md: LogMetadata) => LogSegment[]): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const cur: Versioned<LogMetadata> = await store.read(name)
    const removed = pick(cur.value)
    if (removed.length === 0) return []
    try {
      await store.write(withTruncated(cur.value, removed.map((s) => s.segmentSeq)), cur.revision)
    } catch (err) {
      if (err instanceof KvConflict) continue
      throw err
    }
    // A ledger already gone (a crash between the swap and here, last time) is no loss.
    for (const s of removed) await deleteLedger(s.ledgerId).catch(() => {})
    return removed.map((s) => s.segmentSeq)
  }
  throw new QuireError('METADATA_CONFLICT', `could not truncate log ${name}: too many concurrent metadata updates`, { log: name })
}

export class LogReaderImpl implements LogReader {
  constructor(private readonly log: LogHandleImpl, private readonly opts: ReaderOptions) {}

  records(): AsyncGenerator<LogRecord> {
    return this.log.records(this.opts)
  }

  tail$(): Observable<LogRecord> {
    return observableOf(() => this.records())
  }

  commit(position: LogPosition): Promise<void> {
    if (this.opts.subscriber === undefined) return Promise.reject(new QuireError('INVALID_CONFIG', 'commit needs a reader opened with a subscriber', {}))
    return this.log.commit(this.opts.subscriber, position)
  }
}

function toReadFrom(from: NonNullable<ReaderOptions['from']>): ReadFrom {
  if (from === 'earliest' || from === 'latest') return from
  if (typeof from === 'string') return parsePosition(from)
  const o = from as { txId?: unknown; timeMs?: unknown }
  for (const k of ['txId', 'timeMs'] as const) {
    if (k in o) {
      const v = o[k]
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new QuireError('INVALID_POSITION', `a reader's from.${k} is a non-negative integer, got ${String(v)}`, {})
      return k === 'txId' ? { txId: v } : { timeMs: v }
    }
  }
  return checkPosition(from)
}

const NON_NEGATIVE = ['segmentBytesMax', 'segmentAgeMs', 'segmentRecordsMax', 'retentionMs', 'retentionBytes'] as const

function logOptions(o: CreateLogOptions): LogOptions {
  const quorum = validateQuorum({
    ensembleSize: o.ensembleSize ?? DEFAULT_QUORUM.ensembleSize,
    writeQuorum: o.writeQuorum ?? DEFAULT_QUORUM.writeQuorum,
    ackQuorum: o.ackQuorum ?? DEFAULT_QUORUM.ackQuorum,
  })
  const out: LogOptions = { ...LOG_OPTIONS_DEFAULT, ...quorum }
  for (const k of NON_NEGATIVE) {
    const v = o[k] ?? LOG_OPTIONS_DEFAULT[k]
    if (!Number.isSafeInteger(v) || v < 0) throw new QuireError('INVALID_CONFIG', `log option ${k} must be a non-negative integer, got ${String(v)}`, { [k]: String(v) })
    out[k] = v
  }
  if (o.digestType !== undefined) {
    if (!['crc32c', 'hmac-sha256', 'none'].includes(o.digestType)) throw new QuireError('INVALID_CONFIG', `unknown digestType ${String(o.digestType)}`, {})
    out.digestType = o.digestType
  }
  return out
}
