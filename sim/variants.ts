// Known-broken versions of the protocol, for checking that the simulator's checkers catch them.
// The first two swap one rule of machines/recovery.ts through machine.provide; the product never does.
// - lac-fence-only: fencing by the LAC reads alone (recovery reads do not fence). A bookie left
//   unfenced can answer "no such entry" to a recovery read and then accept the old writer's copy,
//   which completes an ack quorum for an entry recovery has already ruled out.
// - start-below-segment: start reading right after the highest LAC reported, even below the first
//   entry of the last segment: such entries are read from the wrong ensemble, where they are
//   missing, and the ledger is closed too early.
// - no-limbo: bookies answer "no such entry" after an unclean stop, as before limbo existed. A
//   bookie whose power cut tore the journal record of an acked entry then denies having it, and
//   where Qw - Qa + 1 = 1 that one denial lets recovery close the ledger below the entry.
// - log-no-fence (log runs, --logs): a new log writer takes over without fencing what the old one
//   left open (an open without recovery): the old writer's acknowledged records past the end it
//   finds are never read.

import { assign } from 'xstate'
import type { RecoveryDeps } from '../client/internal.ts'
import type { ReadEntryParams, RecoveryContext } from '../machines/recovery.ts'
import type { SimOptions } from './simulate.ts'
import type { LogSimOptions } from './simulateLogs.ts'

export type Variant = Pick<SimOptions, 'recoveryLogic' | 'limbo'> & Pick<LogSimOptions, 'fence'>

export const VARIANTS = {
  'lac-fence-only': {
    recoveryLogic: ((m) => {
      const read = m.implementations.actions['readEntry'] as (a: unknown, p: ReadEntryParams) => void
      return m.provide({ actions: { readEntry: (a: unknown, p: ReadEntryParams) => read(a, { ...p, fence: false }) } })
    }) as NonNullable<RecoveryDeps['logic']>,
  },
  'start-below-segment': {
    recoveryLogic: ((m) => m.provide({
      actions: { chooseStart: assign(({ context }: { context: RecoveryContext }) => ({ entryId: context.maxLac + 1, lastEntryId: context.maxLac })) },
    })) as NonNullable<RecoveryDeps['logic']>,
  },
  'no-limbo': { limbo: false },
  'log-no-fence': { fence: false },
} satisfies Record<string, Variant>

export type VariantName = keyof typeof VARIANTS
