// A reader of a named log: every record from a start on, once, in order, across segments,
// following the open segment with the ledger's long polls, ending only when the log is sealed
// (after its last record) or deleted (NO_SUCH_LOG). A start before the first record the log
// still holds is TRUNCATED, naming the first available position, never a silent skip.
// Memory: one ledger entry's records at a time (the ledger tail reads ahead by its own bound).
// Segment ends: a closed segment ends at the last entry the log gives it (a roll closes it in the
// log before its ledger is closed); an open one at its ledger's close, when a new writer recovered
// it; the reader then waits for the log to name the next segment.

import { QuireError } from '../machines/errors.ts'
import { comparePositions, type LogPosition } from '../machines/logPosition.ts'
import { firstAvailable, type LogMetadata, type LogSegment } from '../machines/logRules.ts'
import type { LogStore } from '../storage/logStore.ts'
import type { Clock } from '../transport/clock.ts'
import { unpackLogEntry } from '../transport/logEntry.ts'
import type { LogLedgers } from './logWriter.ts'

export interface LogRecord {
  position: LogPosition
  txId: number
  /** When the writer took the record (ms since the epoch, its clock). */
  timeMs: number
  payload: Uint8Array
}

export type ReadFrom = LogPosition | 'earliest' | 'latest'

export interface LogReaderDeps {
  ledgers: LogLedgers
  store: LogStore
  clock: Clock
  /** How often a reader waiting for the next segment looks at the log again. Default 200 ms. */
  pollMs?: number
}

export async function* readLog(deps: LogReaderDeps, name: string, from: ReadFrom, signal?: AbortSignal): AsyncGenerator<LogRecord> {
  let md = (await deps.store.read(name)).value
  let pos = await startOf(deps, md, from)
  const pollMs = deps.pollMs ?? 200
  while (!signal?.aborted) {
    md = await readOrEnd(deps.store, name)
    const first = firstAvailable(md)
    if (comparePositions(pos, first) < 0) {
      throw new QuireError('TRUNCATED', `log ${name} no longer holds records before ${first.segmentSeq}:0:0 (the reader is at ${pos.segmentSeq}:${pos.entryId}:${pos.slot})`, { log: name, firstAvailable: first })
    }
    const seg = md.segments.find((s) => s.state !== 'truncated' && s.segmentSeq >= pos.segmentSeq)
    if (!seg) {
      if (md.sealed) return
      await sleep(deps.clock, pollMs, signal)
      continue
    }
    if (seg.segmentSeq > pos.segmentSeq) pos = { segmentSeq: seg.segmentSeq, entryId: 0, slot: 0 }
    for await (const r of readSegment(deps, seg, pos, signal)) {
      yield r
      pos = { segmentSeq: seg.segmentSeq, entryId: r.position.entryId, slot: r.position.slot + 1 }
    }
    // The segment ended (closed in the log, or its ledger closed by a new writer): the next one.
    const now = (await readOrEnd(deps.store, name)).segments.find((s) => s.segmentSeq === seg.segmentSeq)
    if (now && now.state === 'open') {
      // Its ledger was closed by recovery before the log says so: wait for the writer that recovered it.
      await sleep(deps.clock, pollMs, signal)
      continue
    }
    pos = { segmentSeq: seg.segmentSeq + 1, entryId: 0, slot: 0 }
  }
}

async function readOrEnd(store: LogStore, name: string): Promise<LogMetadata> {
  return (await store.read(name)).value
}

/** The records of `seg` from `pos` to its end (a closed segment's last entry, or its ledger's close). */
async function* readSegment(deps: LogReaderDeps, seg: LogSegment, pos: LogPosition, signal?: AbortSignal): AsyncGenerator<LogRecord> {
  const end = seg.state === 'closed' ? seg.lastEntryId : Number.POSITIVE_INFINITY
  if (pos.entryId > end) return
  const h = await deps.ledgers.openLedger(seg.ledgerId)
  try {
    for await (const e of h.entries({ from: pos.entryId })) {
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
  if (from !== 'latest') return from
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

function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clock.clearTimeout(t); resolve() }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
