// The writer machine (machines/writer.ts) stepped with transition(): next state and the
// emitted actions, for the add path, in-order resolution, failures, fencing and close; ensembles
// past 32 bookies, and a property of the LAC against an oracle over every E up to 64.

import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { ENSEMBLE_SIZE_MAX } from '../../machines/quorum.ts'
import { writerMachine, type WriterEvent } from '../../machines/writer.ts'

type Snap = ReturnType<typeof initialTransition<typeof writerMachine>>[0]
const input = { ledgerId: 7, quorum: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }, ensemble: ['a', 'b', 'c'], lastEntryId: -1, length: 0 }
const p = (s: string): Uint8Array => Buffer.from(s)

function step(snap: Snap, event: WriterEvent): { snap: Snap; actions: Array<{ type: string; params?: unknown }> } {
  const [next, actions] = transition(writerMachine, snap, event)
  return { snap: next, actions: actions.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params })) }
}
const named = (actions: Array<{ type: string; params?: unknown }>, type: string) => actions.filter((a) => a.type === type)

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
  assert.is(r.snap.value, 'changingEnsemble')
  assert.equal(named(r.actions, 'changeEnsemble')[0]!.params, { ensemble: ['a', 'b', 'c'], failed: ['b'], lac: -1 })
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [1] })
  assert.is(named(r.actions, 'resolve').length, 0)
  r = step(r.snap, { type: 'append', payloads: [p('2')] })
  assert.is(named(r.actions, 'send').length, 0, 'appends wait for the change')
  assert.equal(r.snap.context.pending.map((e) => e.entryId), [0, 1, 2])
  // b is replaced by d at index 1: entries 0 and 1 go to d only; entry 2 ({c,a}) was never sent.
  r = step(r.snap, { type: 'ensemble.changed', ensemble: ['a', 'd', 'c'] })
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
  r = step(r.snap, { type: 'ensemble.changed', ensemble: ['a', 'b', 'e'] })
  assert.equal(named(r.actions, 'resolve')[0]!.params, { firstEntryId: 0, lastEntryId: 0, lac: 0 })
})

test('a second failure during a change is handled by another change', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  let r = step(snap, { type: 'bookie.failed', bookieId: 'a', code: 'TIMEOUT', reason: 't' })
  r = step(r.snap, { type: 'bookie.failed', bookieId: 'c', code: 'TIMEOUT', reason: 't' })
  r = step(r.snap, { type: 'ensemble.changed', ensemble: ['x', 'b', 'c'] })
  assert.is(r.snap.value, 'changingEnsemble')
  assert.equal((named(r.actions, 'changeEnsemble')[0]!.params as { failed: string[] }).failed, ['c'])
  r = step(r.snap, { type: 'ensemble.changed', ensemble: ['x', 'b', 'y'] })
  assert.is(r.snap.value, 'open')
})

/** One entry pending, bookie `a` failed: the writer is changing its ensemble. */
function changingAfterAFailed(): Snap {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'append', payloads: [p('0')] }).snap
  return step(snap, { type: 'bookie.failed', bookieId: 'a', code: 'TIMEOUT', reason: 't' }).snap
}

test('no replacement: NOT_ENOUGH_BOOKIES rejects every pending append', () => {
  const r = step(changingAfterAFailed(), { type: 'ensemble.failed', code: 'NOT_ENOUGH_BOOKIES', message: 'none left' })
  assert.is(r.snap.value, 'failed')
  assert.equal(named(r.actions, 'reject')[0]!.params, { code: 'NOT_ENOUGH_BOOKIES', message: 'none left', scope: 'all' })
  const after = step(r.snap, { type: 'append', payloads: [p('late')] })
  assert.is(named(after.actions, 'send').length, 0)
})

test('an ensemble change that finds the ledger in recovery ends fenced', () => {
  const r = step(changingAfterAFailed(), { type: 'ensemble.failed', code: 'FENCED', message: 'in recovery' })
  assert.is(r.snap.value, 'fenced')
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string }).code, 'FENCED')
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
  assert.is(named(r.actions, 'closeMetadata').length, 0)
  r = step(r.snap, { type: 'append', payloads: [p('late')] })
  assert.is((named(r.actions, 'reject')[0]!.params as { code: string; scope: string }).code, 'LEDGER_CLOSED')
  assert.is((named(r.actions, 'reject')[0]!.params as { scope: string }).scope, 'appended')
  r = step(r.snap, { type: 'acks', bookieId: 'b', entryIds: [0, 1] })
  r = step(r.snap, { type: 'acks', bookieId: 'a', entryIds: [0] })
  r = step(r.snap, { type: 'acks', bookieId: 'c', entryIds: [1] })
  assert.is(r.snap.value, 'closingMetadata')
  assert.equal(named(r.actions, 'closeMetadata')[0]!.params, { lastEntryId: 1, length: 5 })
  r = step(r.snap, { type: 'metadata.closed' })
  assert.is(r.snap.value, 'closed')
})

test('a close that finds the ledger in recovery ends fenced', () => {
  let [snap] = initialTransition(writerMachine, input)
  snap = step(snap, { type: 'close' }).snap
  assert.is(snap.value, 'closingMetadata')
  const r = step(snap, { type: 'metadata.closeFailed', code: 'FENCED', message: 'in recovery' })
  assert.is(r.snap.value, 'fenced')
})

test('a writer reopened after entries continues from lastEntryId + 1', () => {
  let [snap] = initialTransition(writerMachine, { ...input, lastEntryId: 41, length: 100 })
  const r = step(snap, { type: 'append', payloads: [p('x')] })
  assert.equal(r.snap.context.pending.map((e) => e.entryId), [42])
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
  const ensemble = snap.context.ensemble.map((b) => (b === 'b2' ? 'x2' : b))
  let r = step(snap, { type: 'ensemble.changed', ensemble })
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
