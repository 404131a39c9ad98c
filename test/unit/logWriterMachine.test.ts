// The log writer machine (machines/logWriter.ts) stepped with transition(): next state and the
// effects it asks for, for taking a log (claim, recovery, the first segment), rolling with and
// without a spare ready, finishing, and every way it ends: a racing writer (LOG_WRITER_CONFLICT),
// a newer writer (FENCED), a sealed log (END_OF_STREAM), an effect that failed (its ledger kept,
// the outcome being unknown).

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import type { LogMetadata, LogSegment, SegmentEnd } from '../../machines/logRules.ts'
import { logWriterMachine, type LogWriterEvent } from '../../machines/logWriter.ts'

const test = suite('log writer machine')
const machine = logWriterMachine({ name: 'l', nowMs: () => 1000 })
type Snap = ReturnType<typeof initialTransition<typeof machine>>[0]
type Action = { type: string; params?: Record<string, unknown> }

function step(snap: Snap, event: LogWriterEvent): { snap: Snap; actions: Action[] } {
  const [next, actions] = transition(machine, snap, event)
  return { snap: next, actions: actions as Action[] }
}
const types = (a: Action[]): string[] => a.map((x) => x.type).filter((t) => !t.startsWith('xstate.'))
const param = <T>(a: Action[], type: string): T => a.find((x) => x.type === type)!.params as T

function seg(segmentSeq: number, state: LogSegment['state'], ledgerId = 100 + segmentSeq, epoch = 1): LogSegment {
  return { segmentSeq, ledgerId, state, epoch, firstTxId: -1, lastTxId: -1, lastEntryId: -1, recordCount: 0, bytes: 0, createdAt: 0, closedAt: state === 'open' ? 0 : 1 }
}

function log(segments: LogSegment[], extra: Partial<LogMetadata> = {}): LogMetadata {
  return {
    name: 'l', createdAt: 0, epoch: 1, sealed: false, nextSegmentSeq: segments.length + 1, ledgersClosedThrough: 0, segments,
    options: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', segmentBytesMax: 0, segmentAgeMs: 0, segmentRecordsMax: 0, retentionMs: 0, retentionBytes: 0 },
    ...extra,
  }
}

const END: SegmentEnd = { lastEntryId: 4, firstTxId: 0, lastTxId: 9, recordCount: 10, bytes: 500 }

/** A writer that took `md` (epoch md.epoch + 1) and is open on a new segment with ledger 900. */
function opened(md: LogMetadata): Snap {
  let [snap] = initialTransition(machine)
  snap = step(snap, { type: 'log.read', md, revision: 1 }).snap
  const claimedMd = { ...md, epoch: md.epoch + 1 }
  snap = step(snap, { type: 'log.written', md: claimedMd, revision: 2 }).snap
  while (snap.value === 'recovering') snap = step(snap, { type: 'segment.recovered', segmentSeq: snap.context.toRecover[0]!.segmentSeq, end: END }).snap
  snap = step(snap, { type: 'ledger.created', ledgerId: 900 }).snap
  const withNew = log([...claimedMd.segments.map((s) => (s.state === 'open' ? { ...s, state: 'closed' as const } : s)), seg(claimedMd.nextSegmentSeq, 'open', 900, claimedMd.epoch)], { epoch: claimedMd.epoch })
  return step(snap, { type: 'log.written', md: withNew, revision: 3 }).snap
}

test('taking a log: read, claim the next epoch, recover the open segment, make a ledger, add it; then a spare is made', () => {
  const [s0, a0] = initialTransition(machine)
  assert.is(s0.value, 'claiming')
  assert.equal(types(a0 as Action[]), ['readLog'])
  const md = log([seg(1, 'closed'), seg(2, 'open')])
  const r = step(s0, { type: 'log.read', md, revision: 7 })
  assert.is(r.snap.value, 'claimWriting')
  assert.equal(types(r.actions), ['writeLog'])
  assert.is(param<{ md: LogMetadata; revision: number }>(r.actions, 'writeLog').md.epoch, 2)
  assert.is(param<{ revision: number }>(r.actions, 'writeLog').revision, 7)
  const w = step(r.snap, { type: 'log.written', md: { ...md, epoch: 2 }, revision: 8 })
  assert.is(w.snap.value, 'recovering')
  assert.equal(param<{ segment: LogSegment }>(w.actions, 'recoverSegment').segment.segmentSeq, 1, 'the closed one a roll may have left open, first')
  const r1 = step(w.snap, { type: 'segment.recovered', segmentSeq: 1, end: null })
  assert.is(param<{ segment: LogSegment }>(r1.actions, 'recoverSegment').segment.segmentSeq, 2)
  const r2 = step(r1.snap, { type: 'segment.recovered', segmentSeq: 2, end: END })
  assert.is(r2.snap.value, 'creating')
  assert.equal(param(r2.actions, 'createLedger'), { segmentSeq: 3, epoch: 2 })
  const c = step(r2.snap, { type: 'ledger.created', ledgerId: 900 })
  assert.is(c.snap.value, 'adding')
  const written = param<{ md: LogMetadata; revision: number }>(c.actions, 'writeLog')
  assert.equal(written.md.segments.map((s) => [s.segmentSeq, s.state, s.ledgerId]), [[1, 'closed', 101], [2, 'closed', 102], [3, 'open', 900]])
  assert.is(written.md.segments[1]!.recordCount, 10, 'closed at what recovery found')
  assert.is(written.md.ledgersClosedThrough, 2, 'every closed segment\'s ledger is closed after the take')
  assert.is(written.revision, 8)
  const o = step(c.snap, { type: 'log.written', md: written.md, revision: 9 })
  assert.is(o.snap.value, 'open')
  assert.equal(types(o.actions), ['opened', 'createLedger'])
  assert.is(param<{ segment: LogSegment }>(o.actions, 'opened').segment.ledgerId, 900)
  assert.equal(param(o.actions, 'createLedger'), { segmentSeq: 4, epoch: 2 })
})

test('two writers claiming at once: after a conflict the epoch has moved, so this one fails LOG_WRITER_CONFLICT; a conflict of another kind retries', () => {
  let [snap] = initialTransition(machine)
  const md = log([seg(1, 'open')])
  snap = step(snap, { type: 'log.read', md, revision: 1 }).snap
  const c = step(snap, { type: 'log.conflict' })
  assert.is(c.snap.value, 'claiming')
  assert.equal(types(c.actions), ['readLog'])
  const retry = step(c.snap, { type: 'log.read', md: { ...md, segments: [seg(1, 'open')] }, revision: 2 })
  assert.is(retry.snap.value, 'claimWriting', 'same epoch (a truncation, say): claim again')
  const lost = step(step(retry.snap, { type: 'log.conflict' }).snap, { type: 'log.read', md: { ...md, epoch: 2 }, revision: 3 })
  assert.is(lost.snap.value, 'failed')
  assert.is(param<{ code: string }>(lost.actions, 'fail').code, 'LOG_WRITER_CONFLICT')
  assert.not.ok(types(lost.actions).includes('deleteLedger'), 'no ledger was made')
})

test('a sealed log cannot be taken: END_OF_STREAM', () => {
  const [s0] = initialTransition(machine)
  const r = step(s0, { type: 'log.read', md: log([seg(1, 'closed')], { sealed: true }), revision: 1 })
  assert.is(r.snap.value, 'failed')
  assert.is(param<{ code: string }>(r.actions, 'fail').code, 'END_OF_STREAM')
})

test('rolling: with the spare ready, one swap closes the segment at the given end and adds the spare; without it, it waits for the spare', () => {
  let snap = opened(log([seg(1, 'closed')]))
  snap = step(snap, { type: 'ledger.created', ledgerId: 901 }).snap
  const r = step(snap, { type: 'roll', end: END, closedThrough: 1 })
  assert.is(r.snap.value, 'switching')
  const md = param<{ md: LogMetadata }>(r.actions, 'writeLog').md
  assert.equal(md.segments.slice(-2).map((s) => [s.segmentSeq, s.state, s.ledgerId, s.recordCount]), [[2, 'closed', 900, 10], [3, 'open', 901, 0]])
  assert.is(md.ledgersClosedThrough, 1, 'segment 2\'s ledger is not closed yet')
  const o = step(r.snap, { type: 'log.written', md, revision: 10 })
  assert.is(o.snap.value, 'open')
  assert.equal(types(o.actions), ['switched', 'createLedger'])
  assert.is(param<{ segment: LogSegment }>(o.actions, 'switched').segment.ledgerId, 901)
  const wait = step(o.snap, { type: 'roll', end: END, closedThrough: 1 })
  assert.is(wait.snap.value, 'awaitingSpare')
  assert.equal(types(wait.actions), [])
  assert.is(step(wait.snap, { type: 'ledger.created', ledgerId: 902 }).snap.value, 'switching')
})

test('a newer writer took the log during a roll: FENCED, and the spare the log never took is deleted', () => {
  let snap = opened(log([seg(1, 'closed')]))
  snap = step(snap, { type: 'ledger.created', ledgerId: 901 }).snap
  snap = step(snap, { type: 'roll', end: END, closedThrough: 1 }).snap
  const c = step(snap, { type: 'log.conflict' })
  assert.is(c.snap.value, 'switchReread')
  const f = step(c.snap, { type: 'log.read', md: log([seg(1, 'closed')], { epoch: 9 }), revision: 11 })
  assert.is(f.snap.value, 'failed')
  assert.equal(types(f.actions), ['deleteLedger', 'fail'])
  assert.equal(param(f.actions, 'deleteLedger'), { ledgerId: 901 })
  assert.is(param<{ code: string }>(f.actions, 'fail').code, 'FENCED')
})

test('finishing: sealed or closed by one swap at the given end; the unused spare is deleted', () => {
  let snap = opened(log([seg(1, 'closed')]))
  snap = step(snap, { type: 'ledger.created', ledgerId: 901 }).snap
  const f = step(snap, { type: 'finish', mode: 'seal', end: END, closedThrough: 2 })
  assert.is(f.snap.value, 'finishing')
  const md = param<{ md: LogMetadata }>(f.actions, 'writeLog').md
  assert.is(md.sealed, true)
  assert.is(md.ledgersClosedThrough, 2)
  assert.equal(md.segments.map((s) => s.state), ['closed', 'closed'])
  const done = step(f.snap, { type: 'log.written', md, revision: 12 })
  assert.is(done.snap.value, 'sealed')
  assert.equal(types(done.actions), ['deleteLedger', 'finished'])
  const closing = step(opened(log([])), { type: 'finish', mode: 'close', end: END, closedThrough: 0 })
  assert.is(param<{ md: LogMetadata }>(closing.actions, 'writeLog').md.sealed, false)
})

test('an effect that failed ends the writer with its error; a ledger whose write outcome is unknown is not deleted', () => {
  let [snap] = initialTransition(machine)
  snap = step(snap, { type: 'log.read', md: log([]), revision: 1 }).snap
  const claimed = step(snap, { type: 'log.written', md: log([], { epoch: 2 }), revision: 2 })
  assert.equal(types(claimed.actions), ['createLedger'], 'nothing to recover: straight to the first segment\'s ledger')
  snap = step(claimed.snap, { type: 'ledger.created', ledgerId: 900 }).snap
  assert.is(snap.value, 'adding')
  const e = step(snap, { type: 'error', code: 'TIMEOUT', message: 'metadata store did not answer; outcome unknown' })
  assert.is(e.snap.value, 'failed')
  assert.equal(types(e.actions), ['fail'])
  assert.is(param<{ code: string }>(e.actions, 'fail').code, 'TIMEOUT')
})

test.run()
