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
// - no-resend: an ensemble change does not re-send the entries in flight to the replacement (only
//   appends held during the change go out). An entry completes on the ack quorum of the bookies
//   that stayed, and the replacement never gets its copy: caught by the replication checker of
//   the runs that take one bookie of a writer's ensemble away (sim/simulate.ts).
// - ack-before-sync: bookies acknowledge an add before their journal has synced it (their
//   journal's appends resolve at once). A kill -9 or power cut then takes a copy that counted
//   toward an ack quorum, and an acknowledged entry is on fewer than Qa bookies of its write set.
// - log-no-fence (log runs, --logs): a new log writer takes over without fencing what the old one
//   left open (an open without recovery): the old writer's acknowledged records past the end it
//   finds are never read.

import { assign } from 'xstate'
import type { RecoveryDeps } from '../client/internal.ts'
import type { ReadEntryParams, RecoveryContext } from '../machines/recovery.ts'
import type { SendParams, writerMachine } from '../machines/writer.ts'
import type { SimOptions } from './simulate.ts'
import type { LogSimOptions } from './simulateLogs.ts'

export type Variant = Pick<SimOptions, 'recoveryLogic' | 'limbo' | 'ackBeforeSync' | 'writerLogic'> & Pick<LogSimOptions, 'fence'>

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
  'no-resend': {
    writerLogic: (m: typeof writerMachine) => {
      const send = m.implementations.actions['send'] as (a: { event: { type: string } }, p: SendParams) => void
      // The highest entry this writer has sent; what an ensemble change would re-send up to it is dropped.
      let sentMax = -1
      return m.provide({
        actions: {
          send: (a: { event: { type: string } }, p: SendParams) => {
            const entries = a.event.type === 'ensemble.changed' ? p.entries.filter((e) => e.entryId > sentMax) : p.entries
            for (const e of entries) sentMax = Math.max(sentMax, e.entryId)
            if (entries.length > 0) send(a, { ...p, entries })
          },
        },
      })
    },
  },
  'no-limbo': { limbo: false },
  'ack-before-sync': { ackBeforeSync: true },
  'log-no-fence': { fence: false },
} satisfies Record<string, Variant>

export type VariantName = keyof typeof VARIANTS
