// A reader of a named log: every record from a start on, once, in order, across segments,
// following the open segment with the ledger's long polls, ending only when the log is sealed
// (after its last record) or deleted (NO_SUCH_LOG). A start before the first record the log
// still holds is TRUNCATED, naming the first available position, never a silent skip.
// Memory: at most two batches of READ_BATCH_ENTRIES entries (the ledger tail's read-ahead).
// Which segment to read next, to where, and when to wait, end or fail is machines/logReader.ts;
// this performs its effects (log reads, segment reads through the ledger tail, waits) and answers
// each with an event. Starting points by txId or time are found here (a binary search).

import { QuireError, assert, isQuireError, type ErrorCode } from '../machines/errors.ts'
import { formatPosition, type LogPosition } from '../machines/logPosition.ts'
import { firstAvailable, type LogMetadata, type LogSegment } from '../machines/logRules.ts'
import { logReaderMachine, type LogReaderContext, type LogReaderEvent } from '../machines/logReader.ts'
import { initialTransition, transition } from 'xstate'
import type { LogStore } from '../storage/logStore.ts'
import type { Clock } from '../transport/clock.ts'
import { logActorId, steppedActor, watchActor, type InspectSink } from '../transport/inspect.ts'
import { unpackLogEntry } from '../transport/logEntry.ts'
import type { LogLedgers } from './logWriter.ts'

/** Entries per read of a segment: a reader holds at most two batches, each entry at most the writer's entryBytesMax. */
const READ_BATCH_ENTRIES = 32

export interface LogRecord {
  position: LogPosition
  txId: number
  /** When the writer took the record (ms since the epoch, its clock). */
  timeMs: number
  payload: Uint8Array
}

/** `{ txId }`: the first record with that txId or a later one; `{ timeMs }`: the first written at or after that time. */
export type ReadFrom = LogPosition | 'earliest' | 'latest' | { txId: number } | { timeMs: number }

export interface LogReaderDeps {
  ledgers: LogLedgers
  store: LogStore
  clock: Clock
  /** How often a reader waiting for the next segment looks at the log again. Default 200 ms. */
  pollMs?: number
  /** Publish each reader's machine on `quire.inspect.log-reader.<log>_<n>` for the inspector; none by default. */
  inspect?: InspectSink | null
}

let readersStarted = 0

/** `subscriber`: whose cursor the start came from (shown by the inspector). */
export async function* readLog(deps: LogReaderDeps, name: string, from: ReadFrom, opts: { signal?: AbortSignal; subscriber?: string } = {}): AsyncGenerator<LogRecord> {
  const { signal, subscriber } = opts
  const md = (await deps.store.read(name)).value
  const start = await startOf(deps, md, from)
  // A start by txId or time found past the LAC the bookies knew may land before records that were
  // acknowledged meanwhile: those below the target are skipped, up to the first that reaches it.
  let below: ((r: LogRecord) => boolean) | null = typeof from === 'object' && 'txId' in from ? (r) => r.txId < from.txId
    : typeof from === 'object' && 'timeMs' in from ? (r) => r.timeMs < from.timeMs : null
  // The machine (machines/logReader.ts) decides; this performs its effects and answers each.
  const machine = logReaderMachine({ name, from: start, pollMs: deps.pollMs ?? 200 })
  let [snap, actions] = initialTransition(machine)
  // Seen by the inspector: the machine's steps, and the records delivered (read at each publish).
  let delivered = 0
  let last: LogRecord | null = null
  let next: LogPosition | null = null
  const view = steppedActor(snap)
  const unwatch = watchActor(view, deps.inspect ?? null, 'log-reader', logActorId(name, ++readersStarted), {
    summarise: (ctx) => {
      const c = ctx as LogReaderContext
      return {
        log: name, subscriber: subscriber ?? null, at: formatPosition(next ?? c.pos), segment: c.segment?.segmentSeq ?? null,
        delivered, lastTxId: last?.txId ?? null, lastPosition: last ? formatPosition(last.position) : null, error: c.error,
      }
    },
  })
  try {
    while (!signal?.aborted) {
      let event: LogReaderEvent | null = null
      for (const a of actions as Array<{ type: string; params?: unknown }>) {
        if (a.type === 'readLog') event = { type: 'log.read', md: (await deps.store.read(name)).value }
        else if (a.type === 'wait') {
          await sleep(deps.clock, (a.params as { ms: number }).ms, signal)
          event = { type: 'waited' }
        } else if (a.type === 'end') return
        else if (a.type === 'fail') {
          const e = a.params as { code: ErrorCode; message: string }
          throw new QuireError(e.code, e.message, { log: name })
        } else if (a.type === 'readSegment') {
          const { segment, from: at, end } = a.params as { segment: LogSegment; from: LogPosition; end: number }
          let pos = at
          try {
            for await (const r of readSegment(deps, segment, pos, end, signal)) {
              pos = { segmentSeq: segment.segmentSeq, entryId: r.position.entryId, slot: r.position.slot + 1 }
              next = pos
              if (below?.(r)) continue
              below = null
              delivered++
              last = r
              yield r
            }
            event = { type: 'segment.ended', pos }
          } catch (err) {
            if (!isQuireError(err, 'NO_SUCH_LEDGER')) throw err
            event = { type: 'segment.missing', pos }
          }
        }
      }
      assert(event !== null, `log reader of ${name} in ${JSON.stringify(snap.value)} has nothing to do`)
      ;[snap, actions] = transition(machine, snap, event)
      next = null
      view.step(snap, event)
    }
  } finally {
    unwatch()
    view.done()
  }
}

/** The records of `seg` from `pos` to entry `end` (machines/logReader.ts segmentEnd), or to its ledger's close. */
async function* readSegment(deps: LogReaderDeps, seg: LogSegment, pos: LogPosition, end: number, signal?: AbortSignal): AsyncGenerator<LogRecord> {
  if (pos.entryId > end) return
  const h = await deps.ledgers.openLedger(seg.ledgerId)
  try {
    for await (const e of h.entries({ from: pos.entryId, batch: READ_BATCH_ENTRIES })) {
      if (signal?.aborted) return
      const { records } = unpackLogEntry(e.payload, `log segment ${seg.segmentSeq} entry ${e.entryId} (ledger ${seg.ledgerId})`)
      for (let slot = e.entryId === pos.entryId ? pos.slot : 0; slot < records.length; slot++) {
        const r = records[slot]!
        yield { position: { segmentSeq: seg.segmentSeq, entryId: e.entryId, slot }, txId: r.txId, timeMs: r.timeMs, payload: r.payload }
      }
      if (e.entryId >= end) return
    }
  } finally {
    await h.closeHandle().catch(() => {})
  }
}

/** Where a reader starts: a position as given; 'earliest', the first record held; 'latest', past the last acknowledged one. */
async function startOf(deps: LogReaderDeps, md: LogMetadata, from: ReadFrom): Promise<LogPosition> {
  if (from === 'earliest') return firstAvailable(md)
  if (typeof from === 'object' && 'txId' in from) return seek(deps, md, from.txId, txIdOf, (s) => s.lastTxId)
  if (typeof from === 'object' && 'timeMs' in from) return seek(deps, md, from.timeMs, (r) => r.timeMs, (s) => (s.closedAt > 0 ? s.closedAt : -1))
  if (from !== 'latest') return checkedStart(md, from)
  const last = md.segments.at(-1)
  if (!last || last.state === 'truncated') return { segmentSeq: md.nextSegmentSeq, entryId: 0, slot: 0 }
  if (last.state === 'closed') return { segmentSeq: last.segmentSeq + 1, entryId: 0, slot: 0 }
  const h = await deps.ledgers.openLedger(last.ledgerId)
  try {
    return { segmentSeq: last.segmentSeq, entryId: (await h.readLac()) + 1, slot: 0 }
  } finally {
    await h.closeHandle().catch(() => {})
  }
}

/**
 * A position given by the caller, or INVALID_POSITION when it lies past the end: in a segment the
 * log has not begun (beyond the next one), or past the end of a closed segment.
 */
function checkedStart(md: LogMetadata, pos: LogPosition): LogPosition {
  const past = (why: string): never => {
    throw new QuireError('INVALID_POSITION', `log ${md.name} has no position ${formatPosition(pos)}: ${why}`, { log: md.name, position: formatPosition(pos) })
  }
  if (pos.segmentSeq > md.nextSegmentSeq) past(`its next segment is ${md.nextSegmentSeq}`)
  const seg = md.segments.find((s) => s.segmentSeq === pos.segmentSeq)
  if (seg?.state === 'closed' && pos.entryId > seg.lastEntryId + 1) past(`segment ${seg.segmentSeq} ends at entry ${seg.lastEntryId}`)
  return pos
}

/**
 * The position of the first record whose key (txId or time, both increasing along the log) is at
 * least `target`: the first segment that may hold it (a closed one whose last key is below it does
 * not), then a binary search over its entries. Past every record: where the next one will go. A
 * target inside truncated segments is TRUNCATED.
 */
async function seek(deps: LogReaderDeps, md: LogMetadata, target: number, key: (r: { txId: number; timeMs: number }) => number, lastKey: (s: LogSegment) => number): Promise<LogPosition> {
  const marker = md.segments.find((s) => s.state === 'truncated')
  if (marker && lastKey(marker) >= target) {
    const first = firstAvailable(md)
    throw new QuireError('TRUNCATED', `log ${md.name} no longer holds records before ${first.segmentSeq}:0:0, where ${key === txIdOf ? 'txId' : 'time'} ${target} lies`, { log: md.name, firstAvailable: first })
  }
  for (const seg of md.segments) {
    if (seg.state === 'truncated') continue
    if (seg.state === 'closed' && (seg.lastEntryId < 0 || lastKey(seg) < target)) continue
    const h = await deps.ledgers.openLedger(seg.ledgerId)
    try {
      const last = seg.state === 'closed' ? seg.lastEntryId : await h.readLac()
      const recordsOf = async (e: number) => unpackLogEntry((await h.read(e, e))[0]!.payload, `log segment ${seg.segmentSeq} entry ${e} (ledger ${seg.ledgerId})`).records
      let lo = 0
      let hi = last + 1 // first entry whose last record's key reaches the target; last + 1: none
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2)
        if (key((await recordsOf(mid)).at(-1)!) >= target) hi = mid
        else lo = mid + 1
      }
      if (lo <= last) {
        const slot = (await recordsOf(lo)).findIndex((r) => key(r) >= target)
        return { segmentSeq: seg.segmentSeq, entryId: lo, slot }
      }
      if (seg.state === 'open') return { segmentSeq: seg.segmentSeq, entryId: last + 1, slot: 0 }
    } finally {
      await h.closeHandle().catch(() => {})
    }
  }
  return { segmentSeq: md.nextSegmentSeq, entryId: 0, slot: 0 }
}

const txIdOf = (r: { txId: number }): number => r.txId

function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clock.clearTimeout(t); resolve() }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
