// A bookie's lifecycle: starting → replaying the journal → registering → writable ⇄ read-only →
// draining → stopped (or failed). Pure: the actor (actors/bookie.ts) performs the named effects
// and reports back with events. Only `writable` and `readonly` serve requests; only `writable`
// accepts normal adds.

import { assign, setup } from 'xstate'

export interface LifecycleContext {
  bookieId: string
  error: string | null
}

export type LifecycleEvent =
  | { type: 'storage.opened' }
  | { type: 'journal.replayed'; records: number }
  | { type: 'registered'; readOnly: boolean }
  | { type: 'disk.full' }
  | { type: 'disk.ok' }
  | { type: 'drain' }
  | { type: 'drained' }
  | { type: 'failed'; error: string }

export const bookieLifecycleMachine = setup({
  types: {} as { context: LifecycleContext; events: LifecycleEvent; input: { bookieId: string } },
  actions: {
    'storage.open': () => {},
    'journal.replay': () => {},
    'metadata.register': () => {},
    'serve.start': () => {},
    'registration.update': (_, _p: { state: 'writable' | 'readonly' }) => {},
    'drain.start': () => {},
    'shutdown': () => {},
  },
}).createMachine({
  id: 'bookie',
  context: ({ input }) => ({ bookieId: input.bookieId, error: null }),
  initial: 'starting',
  on: {
    failed: { target: '.failed', actions: assign({ error: ({ event }) => event.error }) },
  },
  states: {
    starting: {
      entry: 'storage.open',
      on: { 'storage.opened': 'replaying', drain: 'stopped' },
    },
    replaying: {
      entry: 'journal.replay',
      on: { 'journal.replayed': 'registering', drain: 'stopped' },
    },
    registering: {
      entry: 'metadata.register',
      on: {
        registered: [
          { guard: ({ event }) => event.readOnly, target: 'readonly', actions: 'serve.start' },
          { target: 'writable', actions: 'serve.start' },
        ],
        drain: 'stopped',
      },
    },
    writable: {
      on: {
        'disk.full': { target: 'readonly', actions: { type: 'registration.update', params: { state: 'readonly' } } },
        drain: 'draining',
      },
    },
    readonly: {
      on: {
        'disk.ok': { target: 'writable', actions: { type: 'registration.update', params: { state: 'writable' } } },
        drain: 'draining',
      },
    },
    draining: {
      entry: 'drain.start',
      on: { drained: 'stopped' },
    },
    stopped: { type: 'final', entry: 'shutdown' },
    failed: { type: 'final', entry: 'shutdown' },
  },
})
