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
// - audit-no-delay (autorecovery runs, --autorecovery): the auditor marks a lost bookie's ledgers
//   as soon as it sees it lost, without waiting lostBookieRecoveryDelayMs.
// - copy-unacked (--autorecovery): a replication worker takes its copy as done when it has sent
//   it, before the target acknowledged (synced) it, and clears the mark: a copy the network or a
//   crash loses is never made again.
// - replace-in-ensemble (--autorecovery): a worker picks as replacement a bookie already in the
//   segment (the ensemble update then refuses it), so the lost bookie is never replaced.
// - log-no-fence (log runs, --logs): a new log writer takes over without fencing what the old one
//   left open (an open without recovery): the old writer's acknowledged records past the end it
//   finds are never read.

import { assign } from 'xstate'
import type { RecoveryDeps } from '../client/internal.ts'
import type { ReadEntryParams, RecoveryContext } from '../machines/recovery.ts'
import type { SendParams, writerMachine } from '../machines/writer.ts'
import { dueForMarking, type AuditorContext } from '../machines/auditor.ts'
import { isBookieAlive } from '../storage/metadataStore.ts'
import type { SimOptions } from './simulate.ts'
import type { AutorecoverySimOptions } from './simulateAutorecovery.ts'
import type { LogSimOptions } from './simulateLogs.ts'

export type Variant = Pick<SimOptions, 'recoveryLogic' | 'limbo' | 'ackBeforeSync' | 'writerLogic'> & Pick<LogSimOptions, 'fence'>
  & Pick<AutorecoverySimOptions, 'auditorLogic' | 'copyUnacked' | 'pickReplacement'>

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
            const entries = a.event.type === 'metadata.written' ? p.entries.filter((e) => e.entryId > sentMax) : p.entries
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
  'audit-no-delay': {
    auditorLogic: (m) => {
      const mark = m.implementations.actions['mark.lost'] as (a: { context: AuditorContext }, p: { bookieIds: string[] }) => void
      return m.provide({
        guards: {
          marksDue: ({ context, event }: { context: AuditorContext; event: { type: string } }) =>
            event.type === 'bookies.checked' && dueForMarking(context.known, Number.MAX_SAFE_INTEGER, 0).length > 0,
        },
        actions: {
          'mark.lost': (a: { context: AuditorContext }) => mark(a, { bookieIds: dueForMarking(a.context.known, Number.MAX_SAFE_INTEGER, 0) }),
        },
      })
    },
  },
  'copy-unacked': { copyUnacked: true },
  'replace-in-ensemble': {
    // A live bookie of the segment itself, where a live one outside it belongs.
    pickReplacement: ({ ensemble, registered, now }) =>
      ensemble.find((b) => registered.some((r) => r.bookieId === b && isBookieAlive(r, now))) ?? ensemble[0]!,
  },
} satisfies Record<string, Variant>

export type VariantName = keyof typeof VARIANTS
