// The recovery machine (machines/recovery.ts) stepped with transition(): fence coverage before
// reading, the start point, found / absent / unknown, write-back, close.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { recoveryMachine, type RecoveryEvent } from '../machines/recovery.ts'

type Snap = ReturnType<typeof initialTransition<typeof recoveryMachine>>[0]
const input = { ledgerId: 4, quorum: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }, segment: { firstEntryId: 0, ensemble: ['a', 'b', 'c'] } }
const data = Buffer.from('x')

function run(events: RecoveryEvent[], inp = input): { snap: Snap; actions: Array<{ type: string; params?: any }> } {
  let [snap, acts] = initialTransition(recoveryMachine, inp)
  const actions = acts.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params }))
  for (const e of events) {
    const [next, more] = transition(recoveryMachine, snap, e)
    snap = next
    actions.push(...more.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params })))
  }
  return { snap, actions }
}
const of = (r: { actions: Array<{ type: string; params?: any }> }, type: string) => r.actions.filter((a) => a.type === type)

test('fences every bookie of the last segment; waits for Qw-Qa+1 of each write set before reading', () => {
  let r = run([{ type: 'fence.ok', bookieId: 'a', lac: 3 }])
  assert.equal(of(r, 'fence')[0]!.params, { bookies: ['a', 'b', 'c'] })
  assert.is(r.snap.value, 'fencing', 'write set {b,c} has no fenced bookie yet')
  r = run([{ type: 'fence.ok', bookieId: 'a', lac: 3 }, { type: 'fence.ok', bookieId: 'c', lac: 5 }])
  // E=3 Qw=2 Qa=2: one bookie of each write set {a,b} {b,c} {c,a} suffices.
  assert.is(r.snap.value, 'reading')
  assert.equal(of(r, 'readEntry')[0]!.params, { entryId: 6, bookies: ['a', 'b'], fence: true })
})

test('reading starts no lower than the last segment', () => {
  const r = run([{ type: 'fence.ok', bookieId: 'a', lac: 3 }, { type: 'fence.ok', bookieId: 'c', lac: 2 }],
    { ...input, segment: { firstEntryId: 10, ensemble: ['a', 'b', 'c'] } })
  assert.equal(of(r, 'readEntry')[0]!.params.entryId, 10)
})

test('too few fenced after every answer: RECOVERY_INCOMPLETE, no reading', () => {
  const r = run([{ type: 'fence.ok', bookieId: 'a', lac: 3 }, { type: 'fence.failed', bookieId: 'b', code: 'TIMEOUT' }, { type: 'fence.failed', bookieId: 'c', code: 'TIMEOUT' }])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'RECOVERY_INCOMPLETE')
  assert.is(of(r, 'readEntry').length, 0)
})

test('found: write back to the write set, then read the next; absent: close at the previous', () => {
  const fenced: RecoveryEvent[] = [{ type: 'fence.ok', bookieId: 'a', lac: 3 }, { type: 'fence.ok', bookieId: 'c', lac: 3 }]
  let r = run([...fenced, { type: 'read.found', entryId: 4, bookieId: 'b', data, ledgerLength: 50 }])
  assert.is(r.snap.value, 'writingBack')
  assert.equal(of(r, 'writeBack')[0]!.params, { entryId: 4, data, bookies: ['b', 'c'] })
  r = run([...fenced, { type: 'read.found', entryId: 4, bookieId: 'b', data, ledgerLength: 50 },
    { type: 'write.acked', entryId: 4, bookieId: 'b' }, { type: 'write.acked', entryId: 4, bookieId: 'c' },
    // entry 5 -> {c, a}: one "no" is Qw-Qa+1 = 1: absent.
    { type: 'read.missing', entryId: 5, bookieId: 'c' }])
  assert.is(r.snap.value, 'closing')
  assert.equal(of(r, 'closeMetadata')[0]!.params, { lastEntryId: 4, ledgerLength: 50 })
})

test('unknown answers are never absence: with Qw=3 Qa=2, one "no" and two timeouts fail recovery', () => {
  const q = { ...input, quorum: { ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 } }
  const fenced: RecoveryEvent[] = [{ type: 'fence.ok', bookieId: 'a', lac: -1 }, { type: 'fence.ok', bookieId: 'b', lac: -1 }]
  let r = run([...fenced, { type: 'read.missing', entryId: 0, bookieId: 'a' }], q)
  assert.is(r.snap.value, 'reading', 'absence needs Qw-Qa+1 = 2 explicit answers')
  r = run([...fenced, { type: 'read.missing', entryId: 0, bookieId: 'a' }, { type: 'read.unknown', entryId: 0, bookieId: 'b' }, { type: 'read.unknown', entryId: 0, bookieId: 'c' }], q)
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'RECOVERY_INCOMPLETE')
  r = run([...fenced, { type: 'read.missing', entryId: 0, bookieId: 'a' }, { type: 'read.missing', entryId: 0, bookieId: 'c' }], q)
  assert.is(r.snap.value, 'closing')
  assert.equal(of(r, 'closeMetadata')[0]!.params, { lastEntryId: -1, ledgerLength: null })
})

test('a write-back that cannot reach Qa fails recovery', () => {
  const r = run([{ type: 'fence.ok', bookieId: 'a', lac: -1 }, { type: 'fence.ok', bookieId: 'c', lac: -1 },
    { type: 'read.found', entryId: 0, bookieId: 'a', data, ledgerLength: 1 }, { type: 'write.failed', entryId: 0, bookieId: 'b' }])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'RECOVERY_INCOMPLETE')
})

test('stale answers for another entry are ignored', () => {
  const r = run([{ type: 'fence.ok', bookieId: 'a', lac: -1 }, { type: 'fence.ok', bookieId: 'c', lac: -1 },
    { type: 'read.missing', entryId: 7, bookieId: 'a' }])
  assert.is(r.snap.value, 'reading')
  assert.is(r.snap.context.missingMask, 0n)
})

// E=40: positions 32 and up must not alias 0 and up (as with a 32-bit `1 << i`).
const wide = { ...input, quorum: { ensembleSize: 40, writeQuorum: 3, ackQuorum: 2 }, segment: { firstEntryId: 0, ensemble: [...Array(40).keys()].map((i) => `b${i}`) } }
const fenceOk = (from: number, to: number, lac: number): RecoveryEvent[] =>
  [...Array(to - from + 1).keys()].map((i) => ({ type: 'fence.ok', bookieId: `b${from + i}`, lac }))

test('E=40: positions 0-31 fenced do not cover write set 32-34; with the rest failed, RECOVERY_INCOMPLETE', () => {
  let r = run(fenceOk(0, 31, 30), wide)
  assert.is(r.snap.value, 'fencing')
  r = run([...fenceOk(0, 31, 30), ...[...Array(8).keys()].map((i): RecoveryEvent => ({ type: 'fence.failed', bookieId: `b${32 + i}`, code: 'TIMEOUT' }))], wide)
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'RECOVERY_INCOMPLETE')
})

test('E=40: "no such entry" from positions 0 and 1 does not make entry 31 (write set 31-33) absent', () => {
  const fenced = fenceOk(0, 39, 30)
  const missing = (b: number): RecoveryEvent => ({ type: 'read.missing', entryId: 31, bookieId: `b${b}` })
  let r = run([...fenced, missing(0), missing(1), missing(31)], wide)
  assert.equal(of(r, 'readEntry')[0]!.params, { entryId: 31, bookies: ['b31', 'b32', 'b33'], fence: true })
  assert.is(r.snap.value, 'reading', 'one "no" of the write set is not Qw-Qa+1 = 2')
  r = run([...fenced, missing(0), missing(1), missing(31), missing(33)], wide)
  assert.is(r.snap.value, 'closing')
  assert.is(of(r, 'closeMetadata')[0]!.params.lastEntryId, 30)
})

test.run()
