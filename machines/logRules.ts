// The rules of a named log's metadata (PROTOCOL.md "Logs on top of ledgers"), as pure functions
// from one metadata record to the next: a writer taking the log, a segment added or closed, when
// the open segment rolls, what a truncation removes, where a reader starts. The log writer and
// reader (client/logWriter.ts, client/logReader.ts) apply them inside compare-and-swap loops.
// Invariants kept here:
// - segments are in segmentSeq order, each number used once; at most the last one is open, and
//   only the current writer epoch adds one;
// - a writer whose epoch is not the log's is fenced: none of its changes applies;
// - truncation removes only whole segments that end before the position, never the open one.
// Pure: no IO, no clock (times are given).

import { QuireError, assert } from './errors.ts'
import { comparePositions, type LogPosition } from './logPosition.ts'
import type { QuorumConfig } from './quorum.ts'

export type SegmentState = 'open' | 'closed' | 'truncated'

export interface LogSegment {
  segmentSeq: number
  ledgerId: number
  state: SegmentState
  /** The writer epoch that made it. */
  epoch: number
  /** -1 until known: an open segment's are known when it closes. */
  firstTxId: number
  lastTxId: number
  /** -1 when empty or open. */
  lastEntryId: number
  recordCount: number
  bytes: number
  createdAt: number
  /** 0 while open. */
  closedAt: number
}

export interface LogOptions extends QuorumConfig {
  digestType: 'crc32c' | 'hmac-sha256' | 'none'
  /** Roll the open segment once it holds this many bytes of records (0: never by size). */
  segmentBytesMax: number
  /** Roll it once it is this old (0: never by age). */
  segmentAgeMs: number
  /** Roll it once it holds this many records (0: never by count). */
  segmentRecordsMax: number
  /** Truncate whole segments closed longer ago than this (0: keep). */
  retentionMs: number
  /** Truncate the oldest whole segments while the log holds more than this (0: no bound). */
  retentionBytes: number
}

export interface LogMetadata {
  name: string
  options: LogOptions
  createdAt: number
  /** Bumped by each writer that takes the log; a segment made by an older epoch is fenced. */
  epoch: number
  /** No more records: the writer marked the end of the stream. */
  sealed: boolean
  nextSegmentSeq: number
  /**
   * Every segment up to this one has its ledger closed. A roll closes a segment in the log before
   * its ledger (so that records wait for one swap only); the writer records here how far its
   * ledgers' closes have got, and a new writer recovers the segments after it.
   */
  ledgersClosedThrough: number
  segments: LogSegment[]
}

/** Why a writer may not change the log: a newer writer took it, or it is sealed. */
export function writerRefusal(md: LogMetadata, epoch: number): QuireError | null {
  if (md.epoch !== epoch) return new QuireError('FENCED', `log ${md.name} was taken by a newer writer (epoch ${md.epoch}, this writer's ${epoch})`, { log: md.name, epoch: md.epoch })
  if (md.sealed) return new QuireError('END_OF_STREAM', `log ${md.name} is sealed: its writer marked the end of the stream`, { log: md.name })
  return null
}

/** The log taken by a new writer: the next epoch. The segments are recovered after. */
export function claimed(md: LogMetadata): LogMetadata {
  if (md.sealed) throw new QuireError('END_OF_STREAM', `log ${md.name} is sealed: its writer marked the end of the stream`, { log: md.name })
  return { ...md, epoch: md.epoch + 1 }
}

/**
 * Segments whose ledger a writer may have left open: the open one, and those closed by a roll
 * after `ledgersClosedThrough` (their ledgers' closes may not have happened). A new writer
 * recovers those whose ledger is not CLOSED, and fixes their ends from what recovery found.
 */
export function segmentsToRecover(md: LogMetadata): LogSegment[] {
  return md.segments.filter((s) => s.state === 'open' || (s.state === 'closed' && s.segmentSeq > md.ledgersClosedThrough))
}

/** The log with every closed segment's ledger known closed up to `segmentSeq` (never moves back). */
export function withLedgersClosedThrough(md: LogMetadata, segmentSeq: number): LogMetadata {
  return segmentSeq > md.ledgersClosedThrough ? { ...md, ledgersClosedThrough: segmentSeq } : md
}

export interface SegmentEnd {
  lastEntryId: number
  firstTxId: number
  lastTxId: number
  recordCount: number
  bytes: number
}

/** `segmentSeq` closed at what its ledger holds (after recovery, or at a roll). */
export function withSegmentClosed(md: LogMetadata, segmentSeq: number, end: SegmentEnd, nowMs: number): LogMetadata {
  return {
    ...md,
    segments: md.segments.map((s) => (s.segmentSeq === segmentSeq ? { ...s, ...end, state: 'closed' as const, closedAt: nowMs } : s)),
  }
}

/** A new open segment on `ledgerId`, by `epoch`. The previous one must be closed. */
export function withSegmentAdded(md: LogMetadata, ledgerId: number, epoch: number, nowMs: number): LogMetadata {
  const last = md.segments.at(-1)
  assert(last?.state !== 'open', `log ${md.name} segment ${last?.segmentSeq} is still open`)
  const seg: LogSegment = {
    segmentSeq: md.nextSegmentSeq, ledgerId, state: 'open', epoch, firstTxId: -1, lastTxId: -1, lastEntryId: -1,
    recordCount: 0, bytes: 0, createdAt: nowMs, closedAt: 0,
  }
  return { ...md, nextSegmentSeq: md.nextSegmentSeq + 1, segments: [...md.segments, seg] }
}

/** The last txId the log holds in closed segments; -1 when none. */
export function lastTxIdOf(md: LogMetadata): number {
  for (let i = md.segments.length - 1; i >= 0; i--) {
    const s = md.segments[i]!
    if (s.state !== 'open' && s.lastTxId >= 0) return s.lastTxId
  }
  return -1
}

export interface OpenSegmentStats { bytes: number; records: number; createdAt: number }

/** Whether the open segment must roll now, and by which policy. */
export function rollDue(o: LogOptions, s: OpenSegmentStats, nowMs: number): 'size' | 'count' | 'age' | null {
  if (s.records === 0) return null
  if (o.segmentBytesMax > 0 && s.bytes >= o.segmentBytesMax) return 'size'
  if (o.segmentRecordsMax > 0 && s.records >= o.segmentRecordsMax) return 'count'
  if (o.segmentAgeMs > 0 && nowMs - s.createdAt >= o.segmentAgeMs) return 'age'
  return null
}

/** The position just past a closed segment's last record. */
function endOf(s: LogSegment): LogPosition {
  return { segmentSeq: s.segmentSeq + 1, entryId: 0, slot: 0 }
}

/**
 * Segments a truncation at `position` removes: closed ones wholly before it. Never the open one,
 * nor one holding a record at or after the position.
 */
export function segmentsToTruncate(md: LogMetadata, position: LogPosition): LogSegment[] {
  return md.segments.filter((s) => s.state === 'closed' && comparePositions(endOf(s), position) <= 0)
}

/** The first position a reader may read from: the first segment not truncated. */
export function firstAvailable(md: LogMetadata): LogPosition {
  const first = md.segments.find((s) => s.state !== 'truncated')
  return { segmentSeq: first?.segmentSeq ?? md.nextSegmentSeq, entryId: 0, slot: 0 }
}

/** The log with `removed` marked truncated; only the newest truncated segment is kept as a marker. */
export function withTruncated(md: LogMetadata, removed: readonly number[]): LogMetadata {
  const marked = md.segments.map((s) => (removed.includes(s.segmentSeq) ? { ...s, state: 'truncated' as const } : s))
  const lastTruncated = marked.reduce((n, s, i) => (s.state === 'truncated' ? i : n), -1)
  return { ...md, segments: marked.filter((s, i) => s.state !== 'truncated' || i === lastTruncated) }
}

/**
 * Segments retention removes now: from the oldest on, closed ones closed longer ago than
 * retentionMs, or while the log holds more than retentionBytes. Whole segments in order: a gap
 * would remove records before a kept one.
 */
export function retentionDue(md: LogMetadata, nowMs: number): LogSegment[] {
  const { retentionMs, retentionBytes } = md.options
  let total = md.segments.filter((s) => s.state !== 'truncated').reduce((n, s) => n + s.bytes, 0)
  const out: LogSegment[] = []
  for (const s of md.segments) {
    if (s.state === 'truncated') continue
    if (s.state !== 'closed') break
    const old = retentionMs > 0 && nowMs - s.closedAt > retentionMs
    const over = retentionBytes > 0 && total > retentionBytes
    if (!old && !over) break
    out.push(s)
    total -= s.bytes
  }
  return out
}

/** How far a committed position is behind the log's end (machines/logRules.ts subscriberLag). */
export interface SubscriberLag {
  /** Segments after the position's own, the open one included: none when it is in the last one. */
  segments: number
  /**
   * Records of the closed segments among them: a lower bound of the records behind (the rest of
   * the position's own segment and the open segment's records are not in the metadata).
   */
  records: number
  /** The open segment is among those after the position. */
  open: boolean
}

/** The lag of a subscriber whose last committed record is at `committed`. */
export function subscriberLag(md: LogMetadata, committed: LogPosition): SubscriberLag {
  const after = md.segments.filter((s) => s.state !== 'truncated' && s.segmentSeq > committed.segmentSeq)
  return {
    segments: after.length,
    records: after.reduce((n, s) => n + (s.state === 'closed' ? s.recordCount : 0), 0),
    open: after.some((s) => s.state === 'open'),
  }
}
