// The public types of the client and its ledger handles, as interfaces: what an application may
// call, and nothing of how it is built. The classes behind them (client/client.ts,
// readHandle.ts, writeHandle.ts) take the simulator's parts and hold the NATS connection and the
// raw metadata store; those are reachable only through client/internal.ts. A class exported as a
// public type would put its constructor and private fields in the declarations an application
// compiles against, and make every refactoring of them a breaking change.

import type { Observable, ObservableInput } from 'rxjs'
import type { BookieRecord, LedgerMetadata } from '../storage/metadataStore.ts'
import type { CreateLedgerOptions, OpenLedgerOptions } from './client.ts'
import type { Appended, ProducerOptions } from './producer.ts'
import type { LedgerEntry } from './readHandle.ts'
import type { TailOptions } from './tail.ts'
import type { LogPosition } from '../machines/logPosition.ts'
import type { LogMetadata } from '../machines/logRules.ts'
import type { CreateLogOptions, ReaderOptions } from './logs.ts'
import type { LogRecord } from './logReader.ts'
import type { AppendOptions, LogWriterOptions } from './logWriter.ts'

/** A connection to a Quire cluster (from `connect`). Close it when done. */
export interface QuireClient {
  /** Create a ledger on live, writable bookies and return its (only) writer. */
  createLedger(opts?: CreateLedgerOptions): Promise<WriteHandle>
  /**
   * Open a ledger to read it. Without `recovery` this never fences and never writes metadata;
   * with it, the ledger's writer is fenced and the ledger closed at its last entry.
   */
  openLedger(ledgerId: number, opts?: OpenLedgerOptions): Promise<ReadHandle>
  /** The ledger's metadata as stored now: state, segments, quorum sizes, length, custom metadata. */
  getLedgerMetadata(ledgerId: number): Promise<LedgerMetadata>
  /** Remove the ledger's metadata; bookies reclaim its entries later (garbage collection). */
  deleteLedger(ledgerId: number): Promise<void>
  /** Ledger ids, ascending. */
  listLedgers(): AsyncIterable<number>
  /** Registered bookies (live or not: see each record's heartbeat). */
  listBookies(): Promise<BookieRecord[]>
  /** Named logs: logs made of ledgers, with positions, one fenced writer, readers and cursors. */
  readonly logs: LogNamespace
  /** Flush and close this client's NATS connection; its handles can do nothing more. */
  close(): Promise<void>
}

/** Where named logs are created, opened, listed and deleted (`client.logs`). */
export interface LogNamespace {
  /** LOG_EXISTS when the name is taken; INVALID_LOG_NAME outside the alphabet. */
  createLog(name: string, opts?: CreateLogOptions): Promise<Log>
  /** NO_SUCH_LOG when there is none. */
  openLog(name: string): Promise<Log>
  /** The log's record, then its segments' ledgers and its cursors. */
  deleteLog(name: string): Promise<void>
  logExists(name: string): Promise<boolean>
  /** Names starting with `prefix`, ascending. */
  listLogs(prefix?: string): AsyncIterable<string>
}

/** One named log. */
export interface Log {
  readonly name: string
  /** Its metadata as stored now: options, writer epoch, segments. */
  info(): Promise<LogMetadata>
  /** Take the log for writing: an earlier writer is fenced (FENCED), a racing one loses (LOG_WRITER_CONFLICT). */
  writer(opts?: LogWriterOptions): Promise<LogWriter>
  /** A reader from a position, 'earliest' or 'latest', or from where a subscriber last committed. */
  reader(opts?: ReaderOptions): LogReader
  listSubscribers(): Promise<string[]>
  deleteSubscriber(subscriber: string): Promise<void>
  /** Remove whole segments that end before `position`; returns their numbers. Never a record at or after it. */
  truncate(position: LogPosition | string): Promise<number[]>
}

/** The one writer of a log. */
export interface LogWriter {
  readonly name: string
  /** This writer's epoch: a later writer's is higher, and fences this one. */
  readonly epoch: number
  /** Resolves with the record's position once it is acknowledged; in order. */
  append(data: Uint8Array | string, opts?: AppendOptions): Promise<LogPosition>
  /** Seal the log after every record appended so far: readers end there, no writer may append again. */
  markEndOfStream(): Promise<void>
  /** Finish what was appended and close the segment; the log stays open for a next writer. */
  close(): Promise<void>
}

/** Reads a log's records once each, in order, across segments, following the writer. */
export interface LogReader {
  /** Every record from the start on; ends after the last record of a sealed log. */
  records(): AsyncGenerator<LogRecord>
  /** `records()` as an RxJS Observable. */
  tail$(): Observable<LogRecord>
  /** Record `position` as processed by this reader's subscriber (never moves back). */
  commit(position: LogPosition): Promise<void>
}

/** Reads a ledger's entries and its last add confirmed (LAC). */
export interface ReadHandle {
  readonly ledgerId: number
  /** The metadata this handle last read (see refreshMetadata). */
  readonly metadata: Readonly<LedgerMetadata>
  /** Highest entry id known to be confirmed (the LAC), -1 when none. */
  readonly lastAddConfirmed: number
  readonly isClosed: boolean
  /** Read entries first..last inclusive; they must be at or below the LAC. */
  read(firstEntryId: number, lastEntryId: number): Promise<LedgerEntry[]>
  /** Ask the last segment's bookies for their LAC and take the highest answer. */
  readLac(): Promise<number>
  /** Wait (up to pollMs at the bookies) for a LAC past previousLac; resolves with the LAC then known. */
  longPollLac(previousLac: number, pollMs: number, opts?: { signal?: AbortSignal }): Promise<number>
  /** longPollLac that also brings the entry at the new LAC when a bookie holds it (else entry is null). */
  readLacAndEntry(previousLac: number, pollMs: number, opts?: { signal?: AbortSignal }): Promise<{ lac: number; entry: LedgerEntry | null }>
  /** Re-read the ledger's metadata: a writer may have closed it or changed its ensemble. */
  refreshMetadata(): Promise<Readonly<LedgerMetadata>>
  /** Read entries past the LAC that bookies already hold (not yet confirmed: they may never be). */
  readUnconfirmed(firstEntryId: number, lastEntryId: number): Promise<LedgerEntry[]>
  /** Every entry from `from` on, in order, following the writer; ends after a closed ledger's last. */
  entries(opts?: TailOptions): AsyncIterableIterator<LedgerEntry>
  /** `entries()` as an RxJS Observable; unsubscribing stops the tail. */
  tail$(opts?: TailOptions): Observable<LedgerEntry>
  /** Release the handle. */
  closeHandle(): Promise<void>
}

/** The single writer of a ledger; also reads what it wrote. */
export interface WriteHandle extends ReadHandle {
  /** State of the writer: open, closing, closed, fenced, failed, ... */
  readonly state: string
  /** Highest entry id given to an append (sent or about to be), confirmed or not. */
  readonly lastAddPushed: number
  /**
   * Append one entry; resolves with its entryId once an ack quorum of its write set has it on disk.
   * `data` is not copied: it must not change until the promise settles (as a buffer given to a
   * socket's write), since it is sent, and re-sent after an ensemble change, from that buffer.
   */
  append(data: Uint8Array | string): Promise<number>
  /** Append every payload of an RxJS source; emits each as it is acknowledged, in order. */
  append$(source: ObservableInput<Uint8Array | string>, opts?: ProducerOptions): Observable<Appended>
  /** Append every payload of an (async) iterable, pulling only while under the in-flight bounds. */
  appendAll(source: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>, opts?: ProducerOptions): AsyncGenerator<Appended>
  /** Finish in-flight appends, then close the ledger at its LAC. */
  close(): Promise<void>
}
