// The writer machine (machines/writer.ts) stepped with transition(): next state and the
// emitted actions, for the add path, in-order resolution, failures, fencing and close; the
// compare-and-swap loops of ensemble change and close, each effect answered by an event; its
// timers (re-send, back-off, add timeout, idle LAC) as delayed events; ensembles past 32 bookies,
// and a property of the LAC against an oracle over every E up to 64.

import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { ENSEMBLE_SIZE_MAX } from '../../machines/quorum.ts'
import { METADATA_ATTEMPTS_MAX, writerMachine, type LedgerView, type WriterEvent } from '../../machines/writer.ts'

type Snap = ReturnType<typeof initialTransition<typeof writerMachine>>[0]
const input = { ledgerId: 7, quorum: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }, ensemble: ['a', 'b', 'c'], lastEntryId: -1, length: 0 }
const p = (s: string): Uint8Array => Buffer.from(s)

function step(snap: Snap, event: WriterEvent): { snap: Snap; actions: Array<{ type: string; params?: unknown }> } {
  const [next, actions] = transition(writerMachine, snap, event)
  return { snap: next, actions: actions.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params })) }
}
const named = (actions: Array<{ type: string; params?: unknown }>, type: string) => actions.filter((a) => a.type === type)

/** The metadata a change or close reads: OPEN, one segment over a, b, c. */
const view = (over: Partial<LedgerView> = {}): LedgerView => ({ state: 'OPEN', lastEntryId: -1, segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], ...over })

/** Answer an ensemble change's read, pick and write: each failed bookie replaced as `replacements` says. */
function changeTo(snap: Snap, replacements: Array<[string, string]>): { snap: Snap; actions: Array<{ type: string; params?: unknown }> } {
  const read = step(snap, { type: 'metadata.read', ledger: view() })
  const picked = step(read.snap, { type: 'bookies.picked', replacements })
  const written = step(picked.snap, { type: 'metadata.written' })
  return { snap: written.snap, actions: [...read.actions, ...picked.actions, ...written.actions] }
}

test('append assigns consecutive ids, sends them with the current LAC, and keeps them pending', () => {
  let [snap] = initialTransition(writerMachine, input)
  const r = step(snap, { type: 'append', payloads: [p('x'), p('y'), p('z')] })
  snap = r.snap
  assert.is(snap.value, 'open')
  assert.equal(snap.context.pending.map((e) => e.entryId), [0, 1, 2])
  const [send] = named(r.actions, 'send')
  assert.equal((send!.params as { lac: number }).lac, -1)
  assert.equal((send!.params as { entries: Array<{ entryId: number }> }).entries.map((e) => e.entryId), [0, 1, 2])
  assert.is(named(r.actions, 'resolve').length, 0)
})

test('an entry completes at Qa acks of its write set; LAC stops at the first incomplete entry', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0'), p('1'), p('2')] }).snap
  // entry 0 -> {a,b}; entry 1 -> {b,c}; entry 2 -> {c,a}
  let r = step(snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] })
  assert.is(named(r.actions, 'resolve').length, 0, 'one ack is not Qa=2')
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [1, 2] })
  assert.is(named(r.actions, 'resolve').length, 0, 'entry 1 done but entry 0 is not: nothing resolves out of order')
  assert.is(r.snap.context.lac, -1)
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0, 2] })
  assert.equal(named(r.actions, 'resolve')[0]!.params, { firstEntryId: 0, lastEntryId: 2, lac: 2 })
  assert.is(r.snap.context.pending.length, 0)
  assert.is(r.snap.context.length, 3)
})

test('an ack from a bookie outside the write set does not count', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  let r = step(snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [0] })
  assert.is(r.snap.context.lac, -1)
  r = step(r.snap, { type: 'acks', bookieId: 'zz', entryIds: [0] })
  assert.is(r.snap.context.lac, -1)
})

test('a failed bookie starts an ensemble change; nothing completes until it is done', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0'), p('1')] }).snap
  // 0 -> {a,b}, 1 -> {b,c}; b fails.
  let r = step(snap, { type: 'bookie.failed', bookieId: 'b', code: 'TIMEOUT', reason: 't' })
  assert.equal(r.snap.value, { changingEnsemble: 'reading' })
  assert.equal(named(r.actions, 'readMetadata')[0]!.params, { fresh: false }, 'the first attempt goes over the metadata the writer holds')
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [1] })
  assert.is(named(r.actions, 'resolve').length, 0)
  r = step(r.snap, { type: 'append', payloads: [p('2')] })
  assert.is(named(r.actions, 'send').length, 0, 'appends wait for the change')
  assert.equal(r.snap.context.pending.map((e) => e.entryId), [0, 1, 2])
  // b is replaced by d at index 1: entries 0 and 1 go to d only; entry 2 ({c,a}) was never sent.
  r = changeTo(r.snap, [['b', 'd']])
  assert.is(r.snap.value, 'open')
  const sent = (named(r.actions, 'send')[0]!.params as { entries: Array<{ entryId: number; bookies: string[] }> }).entries
  assert.equal(sent.map((e) => [e.entryId, e.bookies]), [[0, ['d']], [1, ['d']], [2, ['c', 'a']]])
  assert.is(named(r.actions, 'resolve').length, 0)
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] })
  assert.is(r.snap.context.lac, -1, 'the replaced bookie no longer counts')
  r = step(r.snap, { type: 'acks', bookieId: 'd', entryIds: [0, 1] })
  assert.equal(named(r.actions, 'resolve')[0]!.params, { firstEntryId: 0, lastEntryId: 1, lac: 1 })
})

test('acks gathered during the change complete entries right after it', () => {
  let [snap] = initialTransition(writerMachine, { ...input, quorum: { ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 } })
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  let r = step(snap, { type: 'bookie.failed', bookieId: 'c', code: 'BOOKIE_UNAVAILABLE', reason: 'x' })
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0] })
  assert.is(named(r.actions, 'resolve').length, 0)
  r = changeTo(r.snap, [['c', 'e']])
  assert.equal(named(r.actions, 'resolve')[0]!.params, { firstEntryId: 0, lastEntryId: 0, lac: 0 })
})

test('a second failure during a change is handled by another change', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  let r = step(snap, { type: 'bookie.failed', bookieId: 'a', code: 'TIMEOUT', reason: 't' })
  r = step(r.snap, { type: 'bookie.failed', bookieId: 'c', code: 'TIMEOUT', reason: 't' })
  r = step(r.snap, { type: 'metadata.read', ledger: view() })
  assert.equal(named(r.actions, 'pickBookies')[0]!.params, { failed: ['a', 'c'], exclude: ['a', 'b', 'c'] })
  // c failed after the pick was asked for: only a is replaced by this change.
  r = step(r.snap, { type: 'bookies.picked', replacements: [['a', 'x']] })
  r = step(r.snap, { type: 'metadata.written' })
  assert.equal(r.snap.value, { changingEnsemble: 'reading' })
  assert.equal(r.snap.context.ensemble, ['x', 'b', 'c'])
  assert.equal(r.snap.context.failed, ['c'])
  r = changeTo(r.snap, [['c', 'y']])
  assert.is(r.snap.value, 'open')
  assert.equal(r.snap.context.ensemble, ['x', 'b', 'y'])
})

/** One entry pending, bookie `a` failed: the writer is changing its ensemble. */
function changingAfterAFailed(): Snap {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  return step(snap, { type: 'bookie.failed', bookieId: 'a', code: 'TIMEOUT', reason: 't' }).snap
}

test('no replacement: NOT_ENOUGH_BOOKIES rejects every pending append', () => {
  const read = step(changingAfterAFailed(), { type: 'metadata.read', ledger: view() })
  const r = step(read.snap, { type: 'metadata.failed', code: 'NOT_ENOUGH_BOOKIES', message: 'none left' })
  assert.is(r.snap.value, 'failed')
  assert.equal(named(r.actions, 'reject')[0]!.params, { code: 'NOT_ENOUGH_BOOKIES', message: 'none left', scope: 'all' })
  const after = step(r.snap, { type: 'append', payloads: [p('late')] })
  assert.is(named(after.actions, 'send').length, 0)
})

test('an ensemble change that finds the ledger in recovery ends fenced; one that finds it closed fails LEDGER_CLOSED', () => {
  let r = step(changingAfterAFailed(), { type: 'metadata.read', ledger: view({ state: 'IN_RECOVERY' }) })
  assert.is(r.snap.value, 'fenced')
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string }).code, 'FENCED')
  assert.is(named(r.actions, 'pickBookies').length, 0)
  r = step(changingAfterAFailed(), { type: 'metadata.read', ledger: view({ state: 'CLOSED', lastEntryId: 0 }) })
  assert.is(r.snap.value, 'failed')
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string }).code, 'LEDGER_CLOSED')
})

test('ensemble change: a new segment at LAC + 1 is written over the metadata read; a conflict reads again', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0'), p('1'), p('2')] }).snap
  snap = step(snap, { type: 'acks', bookieId: 'a', entryIds: [0] }).snap
  snap = step(snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] }).snap
  assert.is(snap.context.lac, 0)
  let r = step(snap, { type: 'bookie.failed', bookieId: 'c', code: 'BOOKIE_UNAVAILABLE', reason: 'x' })
  r = step(r.snap, { type: 'metadata.read', ledger: view() })
  assert.equal(r.snap.value, { changingEnsemble: 'picking' })
  r = step(r.snap, { type: 'bookies.picked', replacements: [['c', 'd']] })
  assert.equal(r.snap.value, { changingEnsemble: 'writing' })
  assert.equal(named(r.actions, 'writeMetadata')[0]!.params, {
    kind: 'ensemble', ensemble: ['a', 'b', 'd'],
    segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 1, ensemble: ['a', 'b', 'd'] }],
  })
  r = step(r.snap, { type: 'metadata.conflict' })
  assert.equal(r.snap.value, { changingEnsemble: 'reading' })
  assert.equal(named(r.actions, 'readMetadata')[0]!.params, { fresh: true }, 'after a conflict, the store is read again')
  // Someone else's update in the meantime (an earlier segment rewritten): the write goes over it.
  const theirs = [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 1, ensemble: ['a', 'b', 'c'] }]
  r = step(r.snap, { type: 'metadata.read', ledger: view({ segments: theirs }) })
  r = step(r.snap, { type: 'bookies.picked', replacements: [['c', 'e']] })
  assert.equal((named(r.actions, 'writeMetadata')[0]!.params as { segments: unknown }).segments,
    [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 1, ensemble: ['a', 'b', 'e'] }], 'the segment at LAC + 1 is rewritten, not added again')
  r = step(r.snap, { type: 'metadata.written' })
  assert.is(r.snap.value, 'open')
  assert.equal(r.snap.context.ensemble, ['a', 'b', 'e'])
})

test(`ensemble change: conflicts are bounded (${METADATA_ATTEMPTS_MAX} reads), then METADATA_CONFLICT`, () => {
  let snap = changingAfterAFailed()
  let reads = 0
  for (;;) {
    reads++
    snap = step(snap, { type: 'metadata.read', ledger: view() }).snap
    snap = step(snap, { type: 'bookies.picked', replacements: [['a', 'z']] }).snap
    const r = step(snap, { type: 'metadata.conflict' })
    snap = r.snap
    if (snap.value === 'failed') {
      assert.is((named(r.actions, 'reject')[0]!.params as { code: string }).code, 'METADATA_CONFLICT')
      break
    }
    assert.ok(reads < 1000)
  }
  assert.is(reads, METADATA_ATTEMPTS_MAX)
})

test('entries carry the running ledger length', () => {
  let [snap] = initialTransition(writerMachine, { ...input, lastEntryId: 4, length: 100 })
  const r = step(snap, { type: 'append', payloads: [p('abc'), p('de')] })
  const sent = (named(r.actions, 'send')[0]!.params as { entries: Array<{ entryId: number; ledgerLength: number }> }).entries
  assert.equal(sent.map((e) => [e.entryId, e.ledgerLength]), [[5, 103], [6, 105]])
})

test('fenced: rejects pending with FENCED, later acks resolve nothing, appends are refused', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  let r = step(snap, { type: 'fenced', bookieId: 'a' })
  assert.is(r.snap.value, 'fenced')
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string }).code, 'FENCED')
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0] })
  assert.is(named(r.actions, 'resolve').length, 0)
  r = step(r.snap, { type: 'append', payloads: [p('1')] })
  assert.is(named(r.actions, 'send').length, 0)
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string }).code, 'FENCED')
})

test('close waits for pending adds, then closes the metadata at the LAC with the length', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('ab'), p('cde')] }).snap
  let r = step(snap, { type: 'close' })
  assert.is(r.snap.value, 'closing')
  assert.is(named(r.actions, 'readMetadata').length, 0)
  r = step(r.snap, { type: 'append', payloads: [p('late')] })
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string; scope: string }).code, 'LEDGER_CLOSED')
  assert.is((named(r.actions, 'reject')[0]!.params as { scope: string }).scope, 'appended')
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] })
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [1] })
  assert.equal(r.snap.value, { closingMetadata: 'reading' })
  assert.equal(named(r.actions, 'explicitLac')[0]!.params, { lac: 1, idle: false }, 'the final LAC, for tailing readers')
  r = step(r.snap, { type: 'metadata.read', ledger: view() })
  assert.equal(named(r.actions, 'writeMetadata')[0]!.params, { kind: 'close', lastEntryId: 1, length: 5 })
  r = step(r.snap, { type: 'metadata.written' })
  assert.is(r.snap.value, 'closed')
})

test('close: a conflict reads again; closed already at this LAC is done, at another entry a METADATA_CONFLICT', () => {
  let [snap] = initialTransition(writerMachine, { ...input, lastEntryId: 3, length: 9 })
  snap = step(snap, { type: 'close' }).snap
  snap = step(snap, { type: 'metadata.read', ledger: view({ lastEntryId: -1 }) }).snap
  let r = step(snap, { type: 'metadata.conflict' })
  assert.equal(named(r.actions, 'readMetadata')[0]!.params, { fresh: true })
  const conflicted = r.snap
  r = step(conflicted, { type: 'metadata.read', ledger: view({ state: 'CLOSED', lastEntryId: 3 }) })
  assert.is(r.snap.value, 'closed')
  assert.is(named(r.actions, 'adoptRead').length, 1, 'the metadata read is the ledger\'s')
  assert.is(named(r.actions, 'writeMetadata').length, 0)
  r = step(conflicted, { type: 'metadata.read', ledger: view({ state: 'CLOSED', lastEntryId: 5 }) })
  assert.is(r.snap.value, 'failed')
  assert.is((r.snap.context.error!).code, 'METADATA_CONFLICT')
})

test('a close that finds the ledger in recovery ends fenced', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'close' }).snap
  assert.equal(snap.value, { closingMetadata: 'reading' })
  let r = step(snap, { type: 'metadata.read', ledger: view({ state: 'IN_RECOVERY' }) })
  assert.is(r.snap.value, 'fenced')
  r = step(snap, { type: 'metadata.failed', code: 'FENCED', message: 'in recovery' })
  assert.is(r.snap.value, 'fenced')
})

test('a writer reopened after entries continues from lastEntryId + 1', () => {
  let [snap] = initialTransition(writerMachine, { ...input, lastEntryId: 41, length: 100 })
  const r = step(snap, { type: 'append', payloads: [p('x')] })
  assert.equal(r.snap.context.pending.map((e) => e.entryId), [42])
})

// Timers: delayed events on the actor's clock, each cancelled before it is set again.
const timed = { ...input, timing: { resendAfterMs: 100, addTimeoutMs: 1000, idleLacMs: 50 } }
/** The delayed events an action list sets, as [event, delay]; and the ids it cancels. */
const raised = (actions: Array<{ type: string; params?: unknown }>) =>
  named(actions, 'xstate.raise').map((a) => { const q = a.params as { event: { type: string }; delay: number }; return [q.event.type, q.delay] })
const cancelled = (actions: Array<{ type: string; params?: unknown }>) => named(actions, 'xstate.cancel').map((a) => (a.params as { sendId: string }).sendId)

test('timers: the first add pending starts the re-send and add timeout; progress restarts them; draining stops them and counts the idle LAC', () => {
  let [snap] = initialTransition(writerMachine, timed)
  let r = step(snap, { type: 'append', payloads: [p('0'), p('1')] })
  assert.equal(raised(r.actions), [['resend.due', 100], ['add.timedOut', 1000]])
  r = step(r.snap, { type: 'append', payloads: [p('2')] })
  assert.equal(raised(r.actions), [], 'adds already pending: the stall is still counted from the first')
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  assert.equal(raised(r.actions), [], 'no progress')
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] })
  assert.is(r.snap.context.lac, 0)
  assert.equal(cancelled(r.actions), ['resend', 'addTimeout'])
  assert.equal(raised(r.actions), [['resend.due', 100], ['add.timedOut', 1000]])
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [1, 2] })
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [2] })
  assert.is(r.snap.context.lac, 2)
  assert.equal(cancelled(r.actions), ['resend', 'addTimeout', 'idleLac'])
  assert.equal(raised(r.actions), [['idleLac.due', 50]])
  snap = r.snap
  r = step(snap, { type: 'idleLac.due' })
  assert.equal(named(r.actions, 'explicitLac')[0]!.params, { lac: 2, idle: true })
  r = step(r.snap, { type: 'idleLac.due' })
  assert.is(named(r.actions, 'explicitLac').length, 0, 'the bookies have it: nothing more')
  // An entry sent after the LAC moved carries it: no explicit LAC for it.
  r = step(step(snap, { type: 'append', payloads: [p('3')] }).snap, { type: 'idleLac.due' })
  assert.is(named(r.actions, 'explicitLac').length, 0)
})

test('timers: a stalled writer re-sends what is unacknowledged after 1, 2, 4 and 8 intervals, at most the add timeout apart', () => {
  let [snap] = initialTransition(writerMachine, timed)
  snap = step(snap, { type: 'append', payloads: [p('0'), p('1')] }).snap
  snap = step(snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] }).snap
  const delays: number[] = []
  for (let i = 0; i < 6; i++) {
    const r = step(snap, { type: 'resend.due' })
    snap = r.snap
    const resend = named(r.actions, 'resend')[0]!.params as { stalled: boolean; entries: Array<{ entryId: number; bookies: string[] }> }
    assert.ok(resend.stalled)
    assert.equal(resend.entries.map((e) => [e.entryId, e.bookies]), [[0, ['a']], [1, ['c']]])
    delays.push(raised(r.actions)[0]![1] as number)
  }
  assert.equal(delays, [100, 200, 400, 800, 1000, 1000])
  const r = step(snap, { type: 'reconnected' })
  assert.is((named(r.actions, 'resend')[0]!.params as { stalled: boolean }).stalled, false, 'after a reconnect every target, behind or not')
})

test('timers: an add timeout fails the bookies that hold up the oldest add, and starts one ensemble change for all', () => {
  const wide3 = { ...timed, quorum: { ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 } }
  let [snap] = initialTransition(writerMachine, wide3)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  snap = step(snap, { type: 'acks', bookieId: 'b', entryIds: [0] }).snap
  let r = step(snap, { type: 'add.timedOut' })
  assert.equal(r.snap.value, { changingEnsemble: 'reading' })
  assert.equal(r.snap.context.failed, ['a', 'c'])
  // Ignored while the change is in flight; started again once it is done.
  r = step(r.snap, { type: 'add.timedOut' })
  r = step(r.snap, { type: 'resend.due' })
  assert.equal(r.snap.context.failed, ['a', 'c'])
  assert.is(named(r.actions, 'resend').length, 0)
  r = changeTo(r.snap, [['a', 'd'], ['c', 'e']])
  assert.is(r.snap.value, 'open')
  assert.equal(raised(r.actions), [['resend.due', 100], ['add.timedOut', 1000]])
})

test('timers: entries completed during an ensemble change leave nothing pending: the idle LAC is counted from the change', () => {
  let [snap] = initialTransition(writerMachine, { ...timed, quorum: { ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 } })
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  let r = step(snap, { type: 'bookie.failed', bookieId: 'c', code: 'BOOKIE_UNAVAILABLE', reason: 'x' })
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0] })
  r = changeTo(r.snap, [['c', 'e']])
  assert.is(r.snap.context.lac, 0)
  assert.equal(raised(r.actions), [['idleLac.due', 50]])
  r = step(r.snap, { type: 'idleLac.due' })
  assert.equal(named(r.actions, 'explicitLac')[0]!.params, { lac: 0, idle: true })
})

test('timers: none is left running once the writer is closed, fenced or failed', () => {
  let [snap] = initialTransition(writerMachine, timed)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  const fenced = step(snap, { type: 'fenced', bookieId: 'a' })
  assert.equal(cancelled(fenced.actions), ['resend', 'addTimeout', 'idleLac'])
  assert.is(step(fenced.snap, { type: 'resend.due' }).actions.length, 0)
  const failed = step(snap, { type: 'unauthorized', bookieId: 'a' })
  assert.equal(cancelled(failed.actions), ['resend', 'addTimeout', 'idleLac'])
})

// Ensembles past 32 bookies: positions 32 and up must not alias 0 and up (a 32-bit `1 << i`).
const wide = (e: number, w: number, a: number) =>
  ({ ...input, quorum: { ensembleSize: e, writeQuorum: w, ackQuorum: a }, ensemble: [...Array(e).keys()].map((i) => `b${i}`) })

test('E=40: acks from positions 0 and 31 do not complete entry 31 (write set 31-33); one from 33 does', () => {
  let [snap] = initialTransition(writerMachine, wide(40, 3, 2))
  snap = step(snap, { type: 'append', payloads: [...Array(32)].map(() => p('x')) }).snap
  // Complete entries 0..30 through bookies 0..32 so that entry 31 is the head.
  for (let b = 0; b <= 32; b++) snap = step(snap, { type: 'acks', bookieId: `b${b}`, entryIds: [...Array(31).keys()] }).snap
  assert.is(snap.context.lac, 30)
  let r = step(snap, { type: 'acks', bookieId: 'b0', entryIds: [31] })
  r = step(r.snap, { type: 'acks', bookieId: 'b31', entryIds: [31] })
  assert.is(r.snap.context.lac, 30, 'b0 is not in the write set of entry 31')
  assert.is(named(r.actions, 'resolve').length, 0)
  r = step(r.snap, { type: 'acks', bookieId: 'b33', entryIds: [31] })
  assert.equal(named(r.actions, 'resolve')[0]!.params, { firstEntryId: 31, lastEntryId: 31, lac: 31 })
})

test('E=40: an ensemble change replacing position 2 keeps the ack of position 34', () => {
  let [snap] = initialTransition(writerMachine, wide(40, 3, 2))
  snap = step(snap, { type: 'append', payloads: [...Array(34)].map(() => p('x')) }).snap
  for (let b = 0; b <= 34; b++) snap = step(snap, { type: 'acks', bookieId: `b${b}`, entryIds: [...Array(33).keys()] }).snap
  assert.is(snap.context.lac, 32)
  // Entry 33 -> positions 33, 34, 35; b34 acks it, then b2 (not in its write set) is replaced.
  snap = step(snap, { type: 'acks', bookieId: 'b34', entryIds: [33] }).snap
  snap = step(snap, { type: 'bookie.failed', bookieId: 'b2', code: 'TIMEOUT', reason: 't' }).snap
  let r = changeTo(snap, [['b2', 'x2']])
  assert.is(r.snap.value, 'open')
  assert.is(named(r.actions, 'send').length, 0, 'no pending entry is written to position 2')
  r = step(r.snap, { type: 'acks', bookieId: 'b35', entryIds: [33] })
  assert.equal(named(r.actions, 'resolve')[0]!.params, { firstEntryId: 33, lastEntryId: 33, lac: 33 })
})

test('property: the LAC is the prefix of entries acked by Qa bookies of their write set, for every E up to 64', () => {
  const ensembleSize = fc.oneof(fc.integer({ min: 1, max: ENSEMBLE_SIZE_MAX }), fc.constantFrom(31, 32, 33, 40, ENSEMBLE_SIZE_MAX))
  const scenario = ensembleSize.chain((e) => fc.integer({ min: 1, max: e }).chain((w) => fc.integer({ min: 1, max: w }).chain((a) =>
    fc.integer({ min: 1, max: 2 * e + 2 }).chain((n) => fc.record({
      q: fc.constant({ e, w, a }),
      n: fc.constant(n),
      acks: fc.array(fc.record({ bookie: fc.nat(e - 1), entryIds: fc.subarray([...Array(n).keys()]) }), { maxLength: 3 * e }),
    })))))
  fc.assert(fc.property(scenario, ({ q, n, acks }) => {
    let [snap] = initialTransition(writerMachine, wide(q.e, q.w, q.a))
    snap = step(snap, { type: 'append', payloads: [...Array(n)].map(() => p('x')) }).snap
    // Oracle: a write set is an array of positions; an entry's ackers, a set of positions in it.
    const ackers = [...Array(n)].map(() => new Set<number>())
    const resolved: number[] = []
    for (const { bookie, entryIds } of acks) {
      const r = step(snap, { type: 'acks', bookieId: `b${bookie}`, entryIds })
      snap = r.snap
      for (const { params } of named(r.actions, 'resolve')) {
        const { firstEntryId, lastEntryId } = params as { firstEntryId: number; lastEntryId: number }
        for (let id = firstEntryId; id <= lastEntryId; id++) resolved.push(id)
      }
      for (const id of entryIds) {
        const writeSet = [...Array(q.w).keys()].map((i) => (id + i) % q.e)
        if (writeSet.includes(bookie)) ackers[id]!.add(bookie)
      }
    }
    const firstIncomplete = ackers.findIndex((s) => s.size < q.a)
    const lac = firstIncomplete === -1 ? n - 1 : firstIncomplete - 1
    assert.is(snap.context.lac, lac, `E=${q.e} Qw=${q.w} Qa=${q.a}`)
    assert.equal(resolved, [...Array(lac + 1).keys()])
  }), { numRuns: 200 })
})

test.run()
