// The log reader machine (machines/logReader.ts) stepped with transition(): which segment it reads
// and to where, going on across closed segments, waiting while a segment whose ledger was closed by
// a new writer is still open in the log, ending at a sealed log's end, and failing with TRUNCATED
// (before the first record held) or NO_SUCH_LEDGER (a segment's ledger gone while the log holds it).

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import type { LogPosition } from '../../machines/logPosition.ts'
import { logReaderMachine, type LogReaderEvent } from '../../machines/logReader.ts'
import type { LogMetadata, LogSegment } from '../../machines/logRules.ts'

const test = suite('log reader machine')
type Action = { type: string; params?: Record<string, unknown> }
const pos = (segmentSeq: number, entryId = 0, slot = 0): LogPosition => ({ segmentSeq, entryId, slot })

function seg(segmentSeq: number, state: LogSegment['state'], lastEntryId = -1): LogSegment {
  return { segmentSeq, ledgerId: 100 + segmentSeq, state, epoch: 1, firstTxId: -1, lastTxId: -1, lastEntryId, recordCount: 0, bytes: 0, createdAt: 0, closedAt: state === 'open' ? 0 : 1 }
}
function log(segments: LogSegment[], extra: Partial<LogMetadata> = {}): LogMetadata {
  return {
    name: 'l', createdAt: 0, epoch: 1, sealed: false, nextSegmentSeq: segments.length + 1, ledgersClosedThrough: 0, segments,
    options: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', segmentBytesMax: 0, segmentAgeMs: 0, segmentRecordsMax: 0, retentionMs: 0, retentionBytes: 0 },
    ...extra,
  }
}

function reader(from: LogPosition) {
  const machine = logReaderMachine({ name: 'l', from, pollMs: 200 })
  let [snap, actions] = initialTransition(machine)
  return {
    get actions(): Action[] { return (actions as Action[]).filter((a) => !a.type.startsWith('xstate.')) },
    get state(): unknown { return snap.value },
    send(e: LogReaderEvent): Action[] {
      ;[snap, actions] = transition(machine, snap, e)
      return this.actions
    },
  }
}

const only = (a: Action[], type: string): Record<string, unknown> => {
  assert.equal(a.map((x) => x.type), [type])
  return a[0]!.params ?? {}
}

test('reads a closed segment to its last entry, then the open one to its ledger\'s close, then waits while the log still calls it open', () => {
  const r = reader(pos(1))
  assert.equal(r.actions.map((a) => a.type), ['readLog'])
  const md = log([seg(1, 'closed', 4), seg(2, 'open')])
  const first = only(r.send({ type: 'log.read', md }), 'readSegment')
  assert.equal([(first['segment'] as LogSegment).segmentSeq, first['from'], first['end']], [1, pos(1), 4])
  only(r.send({ type: 'segment.ended', pos: pos(1, 4, 3) }), 'readLog')
  const second = only(r.send({ type: 'log.read', md }), 'readSegment')
  assert.equal([(second['segment'] as LogSegment).segmentSeq, second['from'], second['end']], [2, pos(2), Number.POSITIVE_INFINITY])
  only(r.send({ type: 'segment.ended', pos: pos(2, 7, 1) }), 'readLog')
  assert.equal(only(r.send({ type: 'log.read', md }), 'wait'), { ms: 200 }, 'segment 2 is still open in the log: wait')
  assert.is(r.state, 'waiting')
  only(r.send({ type: 'waited' }), 'readLog')
  const third = only(r.send({ type: 'log.read', md: log([seg(1, 'closed', 4), seg(2, 'closed', 7), seg(3, 'open')]) }), 'readSegment')
  assert.equal([(third['segment'] as LogSegment).segmentSeq, third['from']], [3, pos(3)])
})

test('a position inside a segment starts there; past every segment it waits for the writer, or ends when the log is sealed', () => {
  const r = reader(pos(2, 5, 1))
  const s = only(r.send({ type: 'log.read', md: log([seg(1, 'closed', 4), seg(2, 'open')]) }), 'readSegment')
  assert.equal(s['from'], pos(2, 5, 1))
  const past = reader(pos(3))
  only(past.send({ type: 'log.read', md: log([seg(1, 'closed', 4), seg(2, 'closed', 3)]) }), 'wait')
  only(past.send({ type: 'waited' }), 'readLog')
  assert.equal(past.send({ type: 'log.read', md: log([seg(1, 'closed', 4), seg(2, 'closed', 3)], { sealed: true }) }).map((a) => a.type), ['end'])
  assert.is(past.state, 'ended')
})

test('before the first record held: TRUNCATED naming it', () => {
  const r = reader(pos(1))
  const f = only(r.send({ type: 'log.read', md: log([seg(2, 'truncated', 9), seg(3, 'closed', 4)]) }), 'fail')
  assert.is(f['code'], 'TRUNCATED')
  assert.match(String(f['message']), /before 3:0:0 \(the reader is at 1:0:0\)/)
  assert.is(r.state, 'failed')
})

test('a segment\'s ledger gone: TRUNCATED when the log no longer holds it, NO_SUCH_LEDGER when it still does', () => {
  const md = log([seg(1, 'closed', 4), seg(2, 'open')])
  const r = reader(pos(1))
  r.send({ type: 'log.read', md })
  only(r.send({ type: 'segment.missing', pos: pos(1, 2, 0) }), 'readLog')
  assert.is(only(r.send({ type: 'log.read', md: log([seg(1, 'truncated', 4), seg(2, 'open')]) }), 'fail')['code'], 'TRUNCATED')
  const s = reader(pos(1))
  s.send({ type: 'log.read', md })
  s.send({ type: 'segment.missing', pos: pos(1, 2, 0) })
  const f = only(s.send({ type: 'log.read', md }), 'fail')
  assert.is(f['code'], 'NO_SUCH_LEDGER')
  assert.match(String(f['message']), /segment 1's ledger 101 is gone/)
})

test.run()
