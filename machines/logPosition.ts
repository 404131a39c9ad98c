// Positions of records in a named log (BookKeeper DistributedLog's DLSN): the segment's sequence
// number, the entry of that segment's ledger, and the record's slot in the entry. Totally ordered
// by (segmentSeq, entryId, slot); printed and parsed as `<segmentSeq>:<entryId>:<slot>`.
// Names of logs and subscribers are checked here too: what the metadata keys can hold.
// Pure: no IO.

import { QuireError } from './errors.ts'

export interface LogPosition {
  readonly segmentSeq: number
  readonly entryId: number
  readonly slot: number
}

/** Before every record of any log. */
export const POSITION_MIN: LogPosition = Object.freeze({ segmentSeq: 0, entryId: 0, slot: 0 })

export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.segmentSeq - b.segmentSeq || a.entryId - b.entryId || a.slot - b.slot
}

export function formatPosition(p: LogPosition): string {
  return `${p.segmentSeq}:${p.entryId}:${p.slot}`
}

const POSITION = /^(\d{1,15}):(\d{1,15}):(\d{1,9})$/

/** A position from its printed form; INVALID_POSITION for anything else. */
export function parsePosition(text: string): LogPosition {
  const m = POSITION.exec(text)
  if (!m) throw new QuireError('INVALID_POSITION', `not a log position: ${JSON.stringify(text.slice(0, 64))} (expected <segmentSeq>:<entryId>:<slot>, e.g. 3:120:7)`, { position: text.slice(0, 64) })
  return { segmentSeq: Number(m[1]), entryId: Number(m[2]), slot: Number(m[3]) }
}

/** A position given as an object: each part a non-negative safe integer. */
export function checkPosition(p: unknown): LogPosition {
  const o = p as Partial<LogPosition> | null
  const ok = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
  if (o === null || typeof o !== 'object' || !ok(o.segmentSeq) || !ok(o.entryId) || !ok(o.slot)) {
    throw new QuireError('INVALID_POSITION', `not a log position: ${JSON.stringify(p)?.slice(0, 80)}`, {})
  }
  return { segmentSeq: o.segmentSeq, entryId: o.entryId, slot: o.slot }
}

/** Longest log name. */
export const LOG_NAME_MAX = 200
/** Letters, digits, `_` and `-`, in parts joined by `/` (a hierarchy that listLogs lists by prefix). */
const LOG_NAME = /^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*$/
/** A subscriber (cursor) name: one part. */
export const SUBSCRIBER_MAX = 100
const SUBSCRIBER = /^[A-Za-z0-9_-]+$/

export function checkLogName(name: unknown): string {
  if (typeof name !== 'string' || name.length > LOG_NAME_MAX || !LOG_NAME.test(name)) {
    throw new QuireError('INVALID_LOG_NAME', `not a log name: ${JSON.stringify(name)?.slice(0, 80)} (1 to ${LOG_NAME_MAX} characters: letters, digits, _ and -, in parts joined by /)`, {})
  }
  return name
}

export function checkSubscriber(name: unknown): string {
  if (typeof name !== 'string' || name.length > SUBSCRIBER_MAX || !SUBSCRIBER.test(name)) {
    throw new QuireError('INVALID_LOG_NAME', `not a subscriber name: ${JSON.stringify(name)?.slice(0, 80)} (1 to ${SUBSCRIBER_MAX} characters: letters, digits, _ and -)`, {})
  }
  return name
}
