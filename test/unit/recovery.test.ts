// The recovery machine (machines/recovery.ts) stepped with transition(): fence coverage before
// reading, the start point, found / absent / unknown, write-back, close (its compare-and-swap
// loop: the length read when unknown, conflicts read again and are bounded, another recoverer's
// CLOSED); a write-back that cannot reach Qa changes the write ensemble (kept for the closing
// CAS), and segmentsAfterRecovery.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { RECOVERY_CLOSE_ATTEMPTS_MAX, recoveryMachine, segmentsAfterRecovery, type RecoveryEvent, type RecoveryLedgerView } from '../../machines/recovery.ts'

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

const SEGMENT_0 = [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }]
/** The close's read answered: the ledger IN_RECOVERY over `segments` (or as `over` says). */
const read = (over: Partial<RecoveryLedgerView> = {}): RecoveryEvent =>
  ({ type: 'metadata.read', ledger: { state: 'IN_RECOVERY', lastEntryId: -1, segments: SEGMENT_0, ...over } })
/** What the close writes once its read is answered with `over`. */
const closeWrite = (events: RecoveryEvent[], inp = input, over: Partial<RecoveryLedgerView> = {}) => of(run([...events, read(over)], inp), 'writeMetadata')[0]?.params

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
  assert.equal(r.snap.value, { closing: 'reading' })
  assert.is(of(r, 'readMetadata').length, 1)
  assert.equal(closeWrite([...fenced, { type: 'read.found', entryId: 4, bookieId: 'b', data, ledgerLength: 50 },
    { type: 'write.acked', entryId: 4, bookieId: 'b' }, { type: 'write.acked', entryId: 4, bookieId: 'c' },
    { type: 'read.missing', entryId: 5, bookieId: 'c' }]), { lastEntryId: 4, ledgerLength: 50, segments: SEGMENT_0 })
})

test('unknown answers are never absence: with Qw=3 Qa=2, one "no" and two timeouts fail recovery', () => {
  const q = { ...input, quorum: { ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 } }
  const fenced: RecoveryEvent[] = [{ type: 'fence.ok', bookieId: 'a', lac: -1 }, { type: 'fence.ok', bookieId: 'b', lac: -1 }]
  let r = run([...fenced, { type: 'read.missing', entryId: 0, bookieId: 'a' }], q)
  assert.is(r.snap.value, 'reading', 'absence needs Qw-Qa+1 = 2 explicit answers')
  r = run([...fenced, { type: 'read.missing', entryId: 0, bookieId: 'a' }, { type: 'read.unknown', entryId: 0, bookieId: 'b' }, { type: 'read.unknown', entryId: 0, bookieId: 'c' }], q)
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'RECOVERY_INCOMPLETE')
  const none: RecoveryEvent[] = [...fenced, { type: 'read.missing', entryId: 0, bookieId: 'a' }, { type: 'read.missing', entryId: 0, bookieId: 'c' }]
  r = run(none, q)
  assert.equal(r.snap.value, { closing: 'reading' }, 'nothing to measure: an empty ledger is 0 bytes long')
  assert.equal(closeWrite(none, q), { lastEntryId: -1, ledgerLength: 0, segments: SEGMENT_0 })
})

// E=3 Qw=2 Qa=2 over a, b, c; c is gone for good. a and b are fenced (each write set has one),
// entry 0 is confirmed; entry 1 (write set {b, c}) reached b only before the writer died.
const cGone: RecoveryEvent[] = [
  { type: 'fence.ok', bookieId: 'a', lac: 0 }, { type: 'fence.ok', bookieId: 'b', lac: 0 },
  { type: 'read.found', entryId: 1, bookieId: 'b', data, ledgerLength: 20 },
  { type: 'write.acked', entryId: 1, bookieId: 'b' }, { type: 'write.failed', entryId: 1, bookieId: 'c' },
]

test('a write-back that cannot reach Qa replaces the failed bookie, never one the segment held', () => {
  const r = run(cGone)
  assert.is(r.snap.value, 'changingEnsemble')
  assert.equal(of(r, 'writeBack')[0]!.params.bookies, ['b', 'c'])
  assert.equal(of(r, 'changeEnsemble'), [{ type: 'changeEnsemble', params: { entryId: 1, ensemble: ['a', 'b', 'c'], failed: ['c'], exclude: ['a', 'b', 'c'] } }])
  assert.is(of(r, 'readMetadata').length, 0)
})

test('after the change only the replacement gets the entry; b\'s ack stands; reads stay on the old ensemble; the change rides on the close', () => {
  const r = run([...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'd'] },
    // The dead bookie's late failure is for a position it no longer has: ignored.
    { type: 'write.failed', entryId: 1, bookieId: 'c' }])
  assert.is(r.snap.value, 'writingBack')
  const writes = of(r, 'writeBack')
  assert.is(writes.length, 2)
  assert.equal(writes[1]!.params, { entryId: 1, data, bookies: ['d'] })
  assert.is(r.snap.context.ackedMask, 2n, 'b (position 1) keeps its ack')
  assert.is(r.snap.context.writeFailedMask, 0n)
  const done = run([...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'd'] }, { type: 'write.acked', entryId: 1, bookieId: 'd' },
    // Entry 2 is read where the old writer would have put it: {c, a}; a's "no" is Qw-Qa+1 = 1.
    { type: 'read.missing', entryId: 2, bookieId: 'a' }])
  assert.equal(of(done, 'readEntry').map((a) => a.params.bookies), [['b', 'c'], ['c', 'a']])
  assert.equal(done.snap.value, { closing: 'reading' })
  assert.equal(closeWrite([...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'd'] }, { type: 'write.acked', entryId: 1, bookieId: 'd' },
    { type: 'read.missing', entryId: 2, bookieId: 'a' }]), {
    lastEntryId: 1, ledgerLength: 20, segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 1, ensemble: ['a', 'b', 'd'] }],
  })
})

test('a replacement that fails too is replaced again (the change at that entry is rewritten); later entries add their own', () => {
  const r = run([...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'd'] }, { type: 'write.failed', entryId: 1, bookieId: 'd' }])
  assert.is(r.snap.value, 'changingEnsemble')
  assert.equal(of(r, 'changeEnsemble')[1]!.params, { entryId: 1, ensemble: ['a', 'b', 'd'], failed: ['d'], exclude: ['a', 'b', 'c', 'd'] })
  const events: RecoveryEvent[] = [...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'd'] }, { type: 'write.failed', entryId: 1, bookieId: 'd' },
    { type: 'ensemble.changed', ensemble: ['a', 'b', 'e'] }, { type: 'write.acked', entryId: 1, bookieId: 'e' },
    // Entry 2: read from {c, a} (a has it), written back to {e, a}; a fails, so a is replaced from entry 2.
    { type: 'read.found', entryId: 2, bookieId: 'a', data, ledgerLength: 40 },
    { type: 'write.acked', entryId: 2, bookieId: 'e' }, { type: 'write.failed', entryId: 2, bookieId: 'a' },
    { type: 'ensemble.changed', ensemble: ['f', 'b', 'e'] }, { type: 'write.acked', entryId: 2, bookieId: 'f' },
    { type: 'read.missing', entryId: 3, bookieId: 'a' }]
  const again = run(events)
  assert.equal(of(again, 'writeBack').map((a) => a.params.bookies), [['b', 'c'], ['d'], ['e'], ['e', 'a'], ['f']])
  assert.equal(again.snap.value, { closing: 'reading' })
  assert.equal(closeWrite(events).segments, [
    { firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 1, ensemble: ['a', 'b', 'e'] }, { firstEntryId: 2, ensemble: ['f', 'b', 'e'] },
  ])
})

test('no bookie to replace the failed one: recovery fails with that code and closes nothing', () => {
  const r = run([...cGone, { type: 'ensemble.failed', code: 'NOT_ENOUGH_BOOKIES', message: 'need 1 writable bookies, 0 available' }])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'NOT_ENOUGH_BOOKIES')
  assert.match(r.snap.context.error!.message, /entry 1 of ledger 4 cannot reach an ack quorum/)
  assert.is(of(r, 'readMetadata').length, 0)
})

// Fenced at LAC 3; entry 4 is absent: the ledger closes at 3, whose length no write-back told.
const absentAt4: RecoveryEvent[] = [{ type: 'fence.ok', bookieId: 'a', lac: 3 }, { type: 'fence.ok', bookieId: 'c', lac: 3 }, { type: 'read.missing', entryId: 4, bookieId: 'b' }]

test('close: the length is read from the last entry when no write-back told it, then the metadata', () => {
  let r = run(absentAt4)
  assert.equal(r.snap.value, { closing: 'measuring' })
  assert.equal(of(r, 'readLength')[0]!.params, { entryId: 3 })
  r = run([...absentAt4, { type: 'length.read', ledgerLength: 33 }, read()])
  assert.equal(of(r, 'writeMetadata')[0]!.params, { lastEntryId: 3, ledgerLength: 33, segments: SEGMENT_0 })
  r = run([...absentAt4, { type: 'metadata.failed', code: 'RECOVERY_INCOMPLETE', message: 'could not read entry 3' }])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'RECOVERY_INCOMPLETE')
})

test('close: a conflict reads again, at most RECOVERY_CLOSE_ATTEMPTS_MAX times; another recoverer\'s CLOSED at the same entry is success', () => {
  const measured: RecoveryEvent[] = [...absentAt4, { type: 'length.read', ledgerLength: 33 }]
  let r = run([...measured, read(), { type: 'metadata.conflict' }])
  assert.equal(r.snap.value, { closing: 'reading' })
  assert.is(of(r, 'readMetadata').length, 2)
  r = run([...measured, read(), { type: 'metadata.conflict' }, read({ state: 'CLOSED', lastEntryId: 3 })])
  assert.is(r.snap.value, 'done')
  assert.is(of(r, 'adoptRead').length, 1)
  assert.is(of(r, 'writeMetadata').length, 1, 'nothing written again')
  r = run([...measured, read({ state: 'CLOSED', lastEntryId: 5 })])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'METADATA_CONFLICT')
  // A segment added while IN_RECOVERY cannot happen (no writer may change it); with a change of
  // this recovery's own below it, the close refuses to write rather than reorder segments.
  const withChange: RecoveryEvent[] = [...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'd'] }, { type: 'write.acked', entryId: 1, bookieId: 'd' },
    { type: 'read.missing', entryId: 2, bookieId: 'a' }]
  r = run([...withChange, read({ segments: [...SEGMENT_0, { firstEntryId: 9, ensemble: ['a', 'b', 'e'] }] })])
  assert.is(r.snap.value, 'failed')
  assert.match(r.snap.context.error!.message, /a segment was added while it was being recovered/)
  const conflicts: RecoveryEvent[] = []
  for (let i = 0; i < RECOVERY_CLOSE_ATTEMPTS_MAX; i++) conflicts.push(read(), { type: 'metadata.conflict' })
  r = run([...measured, ...conflicts])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error?.code, 'METADATA_CONFLICT')
  assert.is(of(r, 'readMetadata').length, RECOVERY_CLOSE_ATTEMPTS_MAX)
})

test('an ensemble change that brings back a bookie the segment held, or replaces a live one, is a programmer error', () => {
  assert.throws(() => run([...cGone, { type: 'ensemble.changed', ensemble: ['a', 'b', 'a'] }]))
  assert.throws(() => run([...cGone, { type: 'ensemble.changed', ensemble: ['d', 'b', 'e'] }]))
})

test('segmentsAfterRecovery: a change at the last segment\'s first entry replaces it, a later one appends; a segment past a change is refused', () => {
  const segs = [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 5, ensemble: ['a', 'b', 'x'] }]
  assert.equal(segmentsAfterRecovery(segs, []), segs)
  assert.equal(segmentsAfterRecovery(segs, [{ firstEntryId: 5, ensemble: ['a', 'b', 'y'] }, { firstEntryId: 7, ensemble: ['z', 'b', 'y'] }]), [
    { firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 5, ensemble: ['a', 'b', 'y'] }, { firstEntryId: 7, ensemble: ['z', 'b', 'y'] },
  ])
  assert.is(segmentsAfterRecovery(segs, [{ firstEntryId: 3, ensemble: ['a', 'b', 'y'] }]), null)
  assert.equal(segs[1]!.ensemble, ['a', 'b', 'x'], 'the input is not modified')
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
  assert.equal(r.snap.value, { closing: 'measuring' })
  assert.is(of(r, 'readLength')[0]!.params.entryId, 30)
})

test.run()
