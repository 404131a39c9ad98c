// The bookie's per-ledger machine (machines/bookieLedger.ts) stepped with transition():
// persist before ack, master key checks, fencing.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { bookieLedgerMachine, type BookieLedgerEvent } from '../../machines/bookieLedger.ts'
import { RC } from '../../machines/responses.ts'

type Snap = ReturnType<typeof initialTransition<typeof bookieLedgerMachine>>[0]
const key = Buffer.from('k1')
const other = Buffer.from('k2')
const fresh = { ledgerId: 9, masterKey: null, digestType: null, fenced: false, lac: -1, lastEntryId: -1 }
const entries = [{ entryId: 0, lac: -1, data: Buffer.from('a') }, { entryId: 1, lac: 0, data: Buffer.from('b') }]
/** One add request, as a batch of one (test/integration/bookieBatch.test.ts steps larger batches). */
const one = { replyTo: 'c', masterKey: key, digestType: 'crc32c' as const, recovery: false, entries }
const addEvent = (over: Partial<typeof one> = {}): BookieLedgerEvent => ({ type: 'adds', adds: [{ ...one, ...over }] })
const syncedEvent: BookieLedgerEvent = { type: 'journal.synced', adds: [one] }

function step(snap: Snap, e: BookieLedgerEvent) {
  const [next, actions] = transition(bookieLedgerMachine, snap, e)
  return { snap: next, actions: actions.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params as Record<string, unknown> })) }
}
const types = (r: { actions: Array<{ type: string }> }): string[] => r.actions.map((a) => a.type)

test('an add is journaled first and acknowledged only on journal.synced', () => {
  const [s0] = initialTransition(bookieLedgerMachine, fresh)
  const r1 = step(s0, addEvent())
  assert.equal(types(r1), ['journal.masterKey', 'journal.add'])
  assert.not.ok(types(r1).includes('reply.add'))
  const r2 = step(r1.snap, syncedEvent)
  assert.equal(types(r2), ['store.put', 'reply.add'])
  assert.equal(r2.actions[1]!.params, { replyTo: 'c', rc: RC.OK, entryIds: [0, 1] })
  assert.is(r2.snap.context.lac, 0)
  assert.is(r2.snap.context.lastEntryId, 1)
})

test('the same add again (a writer re-sending after a lost message) is journaled and acknowledged again', () => {
  const [s0] = initialTransition(bookieLedgerMachine, fresh)
  const first = step(s0, addEvent())
  const synced = step(first.snap, syncedEvent)
  const again = step(synced.snap, addEvent())
  assert.equal(types(again), ['journal.add'])
  const resynced = step(again.snap, syncedEvent)
  assert.equal(resynced.actions.map((a) => a.type), ['store.put', 'reply.add'])
  assert.equal(resynced.actions[1]!.params, { replyTo: 'c', rc: RC.OK, entryIds: [0, 1] })
  assert.is(resynced.snap.context.lastEntryId, 1)
  assert.is(resynced.snap.context.lac, 0)
})

test('the LAC an accepted add carries is known as it arrives, before its record is synced; a refused add\'s is not', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c' })
  const arrived = step(s0, addEvent())
  assert.equal(types(arrived), ['journal.add'])
  assert.is(arrived.snap.context.lac, 0, 'entry 1 carries LAC 0')
  assert.is(arrived.snap.context.lastEntryId, -1, 'nothing is stored before the sync')
  const refused = step(s0, addEvent({ masterKey: other, entries: [{ entryId: 7, lac: 6, data: Buffer.from('x') }] }))
  assert.is(refused.snap.context.lac, -1)
  // A later add with an older LAC (a re-send) never moves it back; the sync keeps it.
  const older = step(arrived.snap, addEvent({ entries: [{ entryId: 0, lac: -1, data: Buffer.from('a') }] }))
  assert.is(older.snap.context.lac, 0)
  assert.is(step(arrived.snap, syncedEvent).snap.context.lac, 0)
})

test('another master key is UNAUTHORIZED and journals nothing', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c' })
  const r = step(s0, addEvent({ masterKey: other }))
  assert.equal(types(r), ['reply.add'])
  assert.is(r.actions[0]!.params.rc, RC.UNAUTHORIZED)
})

test('fence: persisted before it is answered; then normal adds get FENCED, recovery adds are accepted', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c', lac: 4, lastEntryId: 5 })
  const f = step(s0, { type: 'fence', replyTo: 'r', reqId: 1, masterKey: key, kind: 'lac' })
  assert.is(f.snap.value, 'fenced')
  assert.equal(types(f), ['journal.fence'])
  const again = step(f.snap, { type: 'fence', replyTo: 'r2', reqId: 2, masterKey: key, kind: 'lac' })
  assert.equal(types(again), [], 'a second fence waits for the same record')
  const synced = step(again.snap, { type: 'journal.fenceSynced' })
  assert.equal(synced.actions.map((a) => [a.type, a.params.reqId, a.params.lac]), [['reply.lac', 1, 4], ['reply.lac', 2, 4]])
  const add = step(synced.snap, addEvent())
  assert.equal(types(add), ['reply.add'])
  assert.is(add.actions[0]!.params.rc, RC.FENCED)
  const rec = step(synced.snap, addEvent({ recovery: true }))
  assert.equal(types(rec), ['journal.add'])
})

test('explicit LAC: an eager hint moves the LAC without journaling; the idle writer\'s is journaled, also at the same LAC', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c', lac: 3, lastEntryId: 5 })
  const eager = step(s0, { type: 'explicitLac', masterKey: key, lac: 5, persist: false })
  assert.equal(types(eager), [])
  assert.is(eager.snap.context.lac, 5)
  const persisted = step(eager.snap, { type: 'explicitLac', masterKey: key, lac: 5, persist: true })
  assert.equal(persisted.actions.map((a) => [a.type, a.params.lac]), [['journal.lac', 5]])
  assert.equal(types(step(persisted.snap, { type: 'explicitLac', masterKey: key, lac: 5, persist: false })), [], 'a repeated hint does nothing')
  assert.equal(types(step(persisted.snap, { type: 'explicitLac', masterKey: key, lac: 4, persist: true })), [], 'a LAC never goes back')
  const wrongKey = step(s0, { type: 'explicitLac', masterKey: other, lac: 5, persist: true })
  assert.equal(types(wrongKey), [])
  assert.is(wrongKey.snap.context.lac, 3)
})

test('a fence whose journal write failed is answered with the failure, and the next fence journals it again', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c', lac: 2, lastEntryId: 2 })
  const f = step(s0, { type: 'fence', replyTo: 'r', reqId: 1, masterKey: key, kind: 'lac' })
  const read = step(f.snap, { type: 'fence', replyTo: 'r', reqId: 2, masterKey: key, kind: 'read' })
  const failed = step(read.snap, { type: 'journal.fenceFailed', rc: RC.READ_ONLY })
  assert.equal(failed.actions.map((a) => [a.type, a.params.reqId, a.params.rc]), [['reply.lac', 1, RC.READ_ONLY], ['read.fenced', 2, RC.READ_ONLY]])
  assert.is(failed.snap.value, 'fenced', 'still refusing normal adds')
  assert.is(step(failed.snap, addEvent()).actions[0]!.params.rc, RC.FENCED)
  const retry = step(failed.snap, { type: 'fence', replyTo: 'r', reqId: 3, masterKey: key, kind: 'lac' })
  assert.equal(types(retry), ['journal.fence'], 'journaled again: never answered OK before it is durable')
  const ok = step(retry.snap, { type: 'journal.fenceSynced' })
  assert.equal(ok.actions.map((a) => [a.type, a.params.reqId, a.params.rc]), [['reply.lac', 3, RC.OK]])
})

test('a fence with the wrong master key is refused and does not fence', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c' })
  const r = step(s0, { type: 'fence', replyTo: 'r', reqId: 1, masterKey: other, kind: 'lac' })
  assert.is(r.snap.value, 'open')
  assert.is(r.actions[0]!.params.rc, RC.UNAUTHORIZED)
})

test('a ledger restored fenced starts fenced and answers fences at once', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c', fenced: true })
  assert.is(s0.value, 'fenced')
  const r = step(s0, { type: 'fence', replyTo: 'r', reqId: 3, masterKey: key, kind: 'lac' })
  assert.equal(types(r), ['reply.lac'])
})

test('a fencing read waits for the fence record, then goes ahead; a wrong key is refused', () => {
  const [s0] = initialTransition(bookieLedgerMachine, { ...fresh, masterKey: key, digestType: 'crc32c' })
  const f = step(s0, { type: 'fence', replyTo: 'r', reqId: 7, masterKey: key, kind: 'read' })
  assert.equal(types(f), ['journal.fence'])
  const done = step(f.snap, { type: 'journal.fenceSynced' })
  assert.equal(done.actions.map((a) => [a.type, a.params.reqId, a.params.rc]), [['read.fenced', 7, RC.OK]])
  const bad = step(done.snap, { type: 'fence', replyTo: 'r', reqId: 8, masterKey: other, kind: 'read' })
  assert.equal(bad.actions.map((a) => [a.type, a.params.rc]), [['read.fenced', RC.UNAUTHORIZED]])
})

test.run()
