// The bookie lifecycle machine (machines/bookieLifecycle.ts) stepped with transition().

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { bookieLifecycleMachine, type LifecycleEvent } from '../../machines/bookieLifecycle.ts'

type Snap = ReturnType<typeof initialTransition<typeof bookieLifecycleMachine>>[0]
function run(events: LifecycleEvent[]): { snap: Snap; actions: string[] } {
  let [snap, acts] = initialTransition(bookieLifecycleMachine, { bookieId: 'b1' })
  const actions = acts.map((a) => a.type)
  for (const e of events) {
    const [next, more] = transition(bookieLifecycleMachine, snap, e)
    snap = next
    actions.push(...more.map((a) => a.type))
  }
  return { snap, actions }
}

test('start-up: open storage, replay the journal, register, then serve writable', () => {
  const r = run([{ type: 'storage.opened' }, { type: 'journal.replayed', records: 3 }, { type: 'registered', readOnly: false }])
  assert.is(r.snap.value, 'writable')
  assert.equal(r.actions, ['storage.open', 'journal.replay', 'metadata.register', 'serve.start'])
})

test('no serving before the journal is replayed', () => {
  const r = run([{ type: 'storage.opened' }, { type: 'registered', readOnly: false }])
  assert.is(r.snap.value, 'replaying')
  assert.not.ok(r.actions.includes('serve.start'))
})

test('read-only and back, with the registration updated each time', () => {
  const r = run([{ type: 'storage.opened' }, { type: 'journal.replayed', records: 0 }, { type: 'registered', readOnly: false }, { type: 'disk.full' }])
  assert.is(r.snap.value, 'readonly')
  const back = transition(bookieLifecycleMachine, r.snap, { type: 'disk.ok' })
  assert.is(back[0].value, 'writable')
  assert.equal(back[1].map((a) => a.type), ['registration.update'])
})

test('drain: draining, then stopped (final) with shutdown', () => {
  const r = run([{ type: 'storage.opened' }, { type: 'journal.replayed', records: 0 }, { type: 'registered', readOnly: false }, { type: 'drain' }, { type: 'drained' }])
  assert.is(r.snap.value, 'stopped')
  assert.is(r.snap.status, 'done')
  assert.equal(r.actions.slice(-2), ['drain.start', 'shutdown'])
})

test('a failure at any step is final and shuts down, keeping the reason', () => {
  const r = run([{ type: 'storage.opened' }, { type: 'failed', error: 'CORRUPT_JOURNAL at byte 20' }])
  assert.is(r.snap.value, 'failed')
  assert.is(r.snap.context.error, 'CORRUPT_JOURNAL at byte 20')
  assert.equal(r.actions.slice(-1), ['shutdown'])
})

test.run()
