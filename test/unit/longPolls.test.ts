// Parked long-poll LAC reads on a bookie (actors/longPolls.ts): answered when the LAC passes
// the reader's previousLac, at the timeout, or early when the cap is hit (oldest first).

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { LongPolls } from '../../actors/longPolls.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('answered as soon as the LAC passes previousLac, not before', () => {
  const answers: Array<[number, number]> = []
  const polls = new LongPolls((_l, p, lac) => answers.push([p.reqId, lac]))
  polls.park(1, { replyTo: 'r', reqId: 1, withEntry: false }, 5, 10_000, () => ({ lac: 5, lastEntryId: 6 }))
  polls.park(1, { replyTo: 'r', reqId: 2, withEntry: false }, 7, 10_000, () => ({ lac: 5, lastEntryId: 6 }))
  polls.park(2, { replyTo: 'r', reqId: 3, withEntry: false }, 5, 10_000, () => ({ lac: 5, lastEntryId: 6 }))
  polls.wake(1, 6, 7)
  assert.equal(answers, [[1, 6]])
  polls.wake(1, 8, 9)
  assert.equal(answers, [[1, 6], [2, 8]])
  assert.is(polls.size, 1, 'ledger 2 still waits')
  polls.answerAll()
  assert.is(polls.size, 0)
})

test('a cancelled request is dropped without an answer; cancelling an unknown one is a no-op', () => {
  const answers: number[] = []
  const polls = new LongPolls((_l, p) => answers.push(p.reqId))
  polls.park(1, { replyTo: 'r', reqId: 1, withEntry: false }, 5, 10_000, () => ({ lac: 5, lastEntryId: 6 }))
  polls.park(1, { replyTo: 'r2', reqId: 1, withEntry: false }, 5, 10_000, () => ({ lac: 5, lastEntryId: 6 }))
  assert.ok(polls.cancel('r', 1))
  assert.not.ok(polls.cancel('r', 1))
  assert.not.ok(polls.cancel('r', 99))
  polls.wake(1, 6, 7)
  assert.equal(answers, [1], 'only the other reader\'s request (r2#1) was answered')
  assert.is(polls.size, 0)
  // A cancel that overtook its request (r#99 above): the request is dropped when it comes.
  polls.park(1, { replyTo: 'r', reqId: 99, withEntry: false }, 7, 10_000, () => ({ lac: 7, lastEntryId: 7 }))
  assert.is(polls.size, 0)
})

test('the timeout answers with what the bookie knows', async () => {
  const answers: number[] = []
  const polls = new LongPolls((_l, _p, lac) => answers.push(lac))
  polls.park(1, { replyTo: 'r', reqId: 1, withEntry: false }, 3, 30, () => ({ lac: 3, lastEntryId: 4 }))
  await sleep(60)
  assert.equal(answers, [3])
})

test('bounded: over the cap the oldest is answered early', () => {
  const answered: number[] = []
  const polls = new LongPolls((_l, p) => answered.push(p.reqId), 2)
  for (let i = 1; i <= 4; i++) polls.park(1, { replyTo: 'r', reqId: i, withEntry: false }, 0, 10_000, () => ({ lac: 0, lastEntryId: 0 }))
  assert.equal(answered, [1, 2])
  assert.is(polls.size, 2)
  polls.answerAll()
})

test.run()
