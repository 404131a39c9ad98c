// The tailing reader's machine (machines/tailReader.ts) stepped with transition().

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { TAIL_RETRY_DELAY_MAX_MS, tailMachine, type TailEvent, type TailInput } from '../../machines/tailReader.ts'

function run(input: TailInput, events: TailEvent[]) {
  let [snap, acts] = initialTransition(tailMachine, input)
  const actions = acts.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params as Record<string, number> }))
  for (const e of events) {
    const [next, more] = transition(tailMachine, snap, e)
    snap = next
    actions.push(...more.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params as Record<string, number> })))
  }
  return { snap, actions }
}
const open = { from: 0, lac: 9, closed: false, lastEntryId: -1, batch: 4 }

test('reads confirmed entries in batches, in order', () => {
  const r = run(open, [{ type: 'read.done', count: 4 }, { type: 'read.done', count: 4 }])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 3], [4, 7], [8, 9]])
})

test('caught up: long-polls from the LAC (no busy loop); a higher LAC resumes reading from where it stopped', () => {
  const r = run({ ...open, lac: 1 }, [{ type: 'read.done', count: 2 }, { type: 'lac', lac: 5, delivered: 0 }])
  assert.equal(r.actions.filter((a) => a.type === 'longPoll').map((a) => a.params.previousLac), [1], 'no poll while reading')
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 1], [2, 5]])
})

test('a read that learned a higher LAC reads on with no long poll; never past the LAC learned', () => {
  const r = run({ ...open, lac: 3 }, [{ type: 'read.done', count: 4, lac: 6 }, { type: 'read.done', count: 3, lac: 5 }])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 3], [4, 6]])
  assert.equal(r.actions.filter((a) => a.type === 'longPoll').map((a) => a.params.previousLac), [6], 'a poll only once caught up, from the highest LAC')
  assert.is(r.snap.context.lac, 6, 'a lower LAC in a later reply does not lower it')
})

test('more than a batch behind: two reads in flight, no third until the oldest is done', () => {
  const r = run({ ...open, lac: 20 }, [])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 3], [4, 7]])
  assert.is(r.snap.context.inFlight, 2)
  const after = run({ ...open, lac: 20 }, [{ type: 'read.done', count: 4 }])
  assert.equal(after.actions.filter((a) => a.type === 'readBatch').map((a) => a.params.first), [0, 4, 8])
  assert.is(after.snap.context.next, 4)
})

test('a LAC a reply brings while a read is out fills the free slot at once, never past it; no third read', () => {
  // Less than a batch behind: the first read asks for all it knows, the slot beside it is free.
  const learned: TailEvent[] = [{ type: 'lac.learned', lac: 6 }, { type: 'lac.learned', lac: 5 }, { type: 'lac.learned', lac: 12 }]
  const r = run({ ...open, lac: 2 }, learned)
  // Before the first read is done (without lac.learned, only [0, 2] was out until then).
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 2], [3, 6]])
  assert.equal([r.snap.value, r.snap.context.lac, r.snap.context.inFlight, r.snap.context.ahead], ['reading', 12, 2, 7])
  const after = run({ ...open, lac: 2 }, [...learned, { type: 'read.done', count: 3, lac: 12 }])
  assert.equal(after.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 2], [3, 6], [7, 10]])
  assert.equal(after.actions.filter((a) => a.type === 'longPoll'), [], 'no long poll while reading')
})

test('a LAC learned mid-read that confirms less than a quarter batch more waits for the read to be done', () => {
  const r = run({ ...open, lac: 2, batch: 100 }, [{ type: 'lac.learned', lac: 26 }])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 2]])
  assert.is(r.snap.context.lac, 26, 'kept for the next read')
  const more = run({ ...open, lac: 2, batch: 100 }, [{ type: 'lac.learned', lac: 26 }, { type: 'lac.learned', lac: 27 }])
  assert.equal(more.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 2], [3, 27]])
  const done = run({ ...open, lac: 2, batch: 100 }, [{ type: 'lac.learned', lac: 26 }, { type: 'read.done', count: 3 }])
  assert.equal(done.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 2], [3, 26]])
})

test('a LAC learned with nothing to read beside it changes nothing but the LAC', () => {
  const r = run({ ...open, lac: 20 }, [{ type: 'lac.learned', lac: 30 }])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').length, 2, 'both slots were taken already')
  assert.is(r.snap.context.lac, 30)
})

test('a failed read drops the reads in flight: the next try asks again from the next entry to deliver', () => {
  const r = run({ ...open, lac: 20 }, [{ type: 'read.done', count: 4 }, { type: 'transient', code: 'TIMEOUT', message: 'x' }])
  assert.is(r.snap.value, 'backoff')
  assert.equal([r.snap.context.next, r.snap.context.ahead, r.snap.context.inFlight], [4, 4, 0])
})

test('a long poll that brought the next entry moves on without a read, and polls again from there', () => {
  const r = run({ ...open, from: 2, lac: 1 }, [{ type: 'lac', lac: 2, delivered: 1 }, { type: 'lac', lac: 4, delivered: 0 }])
  assert.equal(r.actions.filter((a) => a.type === 'longPoll').map((a) => [a.params.previousLac, a.params.next]), [[1, 2], [2, 3]])
  // Entry 2 came with the poll: the only read starts at 3.
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[3, 4]])
  assert.is(r.snap.context.next, 3)
})

test('nothing new: checks the metadata; closed and fully delivered ends the tail, never reading past lastEntryId', () => {
  const r = run({ ...open, lac: 1 }, [{ type: 'read.done', count: 2 }, { type: 'poll.timeout' }, { type: 'metadata', closed: true, lastEntryId: 3 }, { type: 'read.done', count: 2 }])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[0, 1], [2, 3]])
  assert.is(r.snap.value, 'closed')
  assert.is(r.snap.status, 'done')
})

test('a closed ledger from the start reads to its end only', () => {
  const r = run({ from: 2, lac: 5, closed: true, lastEntryId: 5, batch: 10 }, [{ type: 'read.done', count: 4 }])
  assert.equal(r.actions.filter((a) => a.type === 'readBatch').map((a) => [a.params.first, a.params.last]), [[2, 5]])
  assert.is(r.snap.value, 'closed')
})

test('stop ends it; a failure ends it with the error', () => {
  assert.is(run({ ...open, lac: -1 }, [{ type: 'stop' }]).snap.value, 'closed')
  const f = run(open, [{ type: 'failed', code: 'TIMEOUT', message: 'x' }])
  assert.is(f.snap.value, 'failed')
  assert.equal(f.snap.context.error, { code: 'TIMEOUT', message: 'x' })
})

test('transient failures back off and retry (bounded); a later success resets the count', () => {
  let r = run(open, [{ type: 'transient', code: 'TIMEOUT', message: 'x' }])
  assert.is(r.snap.value, 'backoff')
  assert.is(r.snap.context.failures, 1)
  const many: TailEvent[] = Array.from({ length: 40 }, () => ({ type: 'transient', code: 'TIMEOUT', message: 'x' }))
  r = run(open, many)
  assert.is(r.snap.value, 'failed')
  assert.match(r.snap.context.error?.message ?? '', /gave up after 40 tries/)
})

test('the wait between tries doubles to a cap: 40 tries span over a minute (a NATS failover), not 10 s', () => {
  const delays: number[] = []
  let [snap] = initialTransition(tailMachine, open)
  for (let i = 0; i < 39; i++) {
    const [next, acts] = transition(tailMachine, snap, { type: 'transient', code: 'TIMEOUT', message: 'x' })
    snap = next
    const raise = acts.find((a) => a.type === 'xstate.raise') as { params?: { delay?: number } } | undefined
    delays.push(raise?.params?.delay ?? -1)
  }
  assert.equal(delays.slice(0, 5), [250, 500, 1000, 2000, 2000])
  assert.ok(delays.every((d) => d > 0 && d <= TAIL_RETRY_DELAY_MAX_MS), String(delays))
  assert.ok(delays.reduce((a, d) => a + d, 0) >= 60_000, `${delays.reduce((a, d) => a + d, 0)} ms in all`)
})

test.run()
