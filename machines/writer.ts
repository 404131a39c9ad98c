// The ledger writer (PROTOCOL.md "Add path", "Ensemble change", "Close"): assigns entry ids, sends
// each entry to its write set, counts acks, advances the LAC over the contiguous prefix of
// complete entries and resolves appends in entryId order; when a bookie fails it replaces it and
// re-sends what is incomplete. Pure: effects are named actions with params that
// client/writeHandle.ts binds, and their results come back as events:
// - the add path: `send`, `resend`, `resolve`, `reject`, `explicitLac` (the context, events and
//   pure helpers are in machines/writerState.ts);
// - the metadata compare-and-swap loops of ensemble change and close, as states (reading, picking,
//   writing; a conflict goes back to reading, at most METADATA_ATTEMPTS_MAX times): `readMetadata`
//   answered by `metadata.read`, `pickBookies` by `bookies.picked`, `writeMetadata` by
//   `metadata.written` or `metadata.conflict`, any of them by `metadata.failed`;
// - time, as delayed events on the clock the actor is given (createActor({clock})): a stalled
//   writer re-sends after `resendAfterMs` and then backs off (`resend.due`), fails the bookies
//   that hold up its oldest add after `addTimeoutMs` (`add.timedOut`), and an idle writer sends its
//   LAC on its own `idleLacMs` after it drained (`idleLac.due`). Each timer is restarted when the
//   writer makes progress and cancelled when nothing is pending.
//
// Invariants:
// - entry ids are assigned once, consecutively, from lastEntryId + 1;
// - `pending` holds exactly the entries lac+1 .. lastAddPushed, in order;
// - `resolve` is emitted for consecutive ranges only, never past an incomplete entry, and never
//   while an ensemble change is in flight;
// - an ack counts only from the bookie at that position of the current ensemble; the positions an
//   ensemble change replaces lose their acks and get the entry re-sent;
// - one metadata effect is outstanding at a time; each loop is bounded;
// - once fenced, closed or failed, nothing is sent, nothing more is resolved and no timer runs.

import { setup } from 'xstate'
import { assert, type ErrorCode } from './errors.ts'
import { indexMask } from './quorum.ts'
import { ensembleChangeRefusal, segmentsAfterChange, writerCloseDecision } from './ledgerRules.ts'
import {
  METADATA_ATTEMPTS_MAX, afterAcks, appended, complete, drains, headUnacked, targets, unackedTargets, writerTiming,
  type ReadMetadataParams, type ResendParams, type ResolveParams, type SendParams, type WriterContext, type WriterError,
  type WriterEvent, type WriterInput, type RejectParams, type ExplicitLacParams, type PickBookiesParams, type WriteMetadataParams,
} from './writerState.ts'

export { METADATA_ATTEMPTS_MAX, writerTiming }
export type {
  ExplicitLacParams, LedgerView, PendingEntry, PickBookiesParams, ReadMetadataParams, RejectParams, ResendParams, ResolveParams,
  SendParams, SendTarget, WriteMetadataParams, WriterContext, WriterError, WriterEvent, WriterInput, WriterTiming,
} from './writerState.ts'

const writerSetup = setup({
  types: {} as { context: WriterContext; events: WriterEvent; input: WriterInput },
  actions: {
    send: (_, _params: SendParams) => {},
    resend: (_, _params: ResendParams) => {},
    resolve: (_, _params: ResolveParams) => {},
    reject: (_, _params: RejectParams) => {},
    explicitLac: (_, _params: ExplicitLacParams) => {},
    readMetadata: (_, _params: ReadMetadataParams) => {},
    pickBookies: (_, _params: PickBookiesParams) => {},
    writeMetadata: (_, _params: WriteMetadataParams) => {},
    /** The close found the ledger already closed at this writer's LAC: the metadata read is the ledger's. */
    adoptRead: () => {},
  },
  delays: {
    resendDelay: ({ context }) => Math.min(context.timing.addTimeoutMs, context.timing.resendAfterMs * 2 ** Math.max(0, context.resends - 1)),
    addTimeout: ({ context }) => context.timing.addTimeoutMs,
    idleLac: ({ context }) => context.timing.idleLacMs,
    /** Every target was behind: look again soon (a bookie that falls from behind to lost gets its re-send then). */
    behindRecheck: ({ context }) => Math.max(5, context.timing.resendAfterMs / 4),
  },
  guards: {
    drained: ({ context }) => context.pending.length === 0,
    closeRequested: ({ context }) => context.closeRequested,
    inEnsemble: ({ context, event }) => event.type === 'bookie.failed' && context.ensemble.includes(event.bookieId),
    /** The acks complete the oldest pending entry (so the LAC moves). */
    acksComplete: ({ context, event }) => (afterAcks(context, event, false).lac ?? context.lac) > context.lac,
    /** The acks complete every pending entry. */
    acksDrain: ({ context, event }) => drains(context, event),
    acksDrainIdleLac: ({ context, event }) => context.timing.idleLacMs > 0 && drains(context, event),
    idleLacDue: ({ context }) => context.pending.length === 0 && context.lac > context.lacPersisted,
    stalled: ({ context }) => context.pending.some((p) => p.sent),
    /** Bookies of the oldest add's write set have not acked it. */
    headUnacked: ({ context }) => headUnacked(context).length > 0,
    /** A failed bookie is still in the ensemble just written: another change follows. */
    stillFailed: ({ context }) => context.failed.some((b) => context.proposed!.includes(b)),
    attemptsLeft: ({ context }) => context.attempts + 1 < METADATA_ATTEMPTS_MAX,
  },
})

// Timers. A cancel comes before each raise: the scheduler keeps one timer per id and would
// otherwise leave the earlier one running.
const cancelTimers = [writerSetup.cancel('resend'), writerSetup.cancel('addTimeout'), writerSetup.cancel('idleLac')]
/** Progress, or the first add pending: the stall is counted from now. */
const startAddTimers = [
  writerSetup.cancel('resend'),
  writerSetup.cancel('addTimeout'),
  writerSetup.raise({ type: 'resend.due' }, { id: 'resend', delay: 'resendDelay' }),
  writerSetup.raise({ type: 'add.timedOut' }, { id: 'addTimeout', delay: 'addTimeout' }),
]
/** Nothing pending: no add timer (the idle LAC, when on, is idleLacTimer's). */
const drainedTimers = [writerSetup.cancel('resend'), writerSetup.cancel('addTimeout')]
const idleLacTimer = [writerSetup.cancel('idleLac'), writerSetup.raise({ type: 'idleLac.due' }, { id: 'idleLac', delay: 'idleLac' })]
/**
 * After an ensemble change: the add timers as if progress had been made or, once the entries
 * completed meanwhile leave nothing pending, none, and the idle LAC counted from now.
 */
const armAddTimers = writerSetup.enqueueActions(({ context, enqueue }) => {
  enqueue.assign({ resends: 0 })
  if (context.pending.length > 0) for (const a of startAddTimers) enqueue(a)
  else for (const a of [...drainedTimers, ...(context.timing.idleLacMs > 0 ? idleLacTimer : [])]) enqueue(a)
})

/**
 * New entries get ids; they are sent at once unless `hold` (an ensemble change is in flight). A
 * plain assign (and the send before it, which sees the context the ids start from) rather than
 * enqueueActions, which costs about as much again as the rest of the transition. The first entry
 * pending starts the add timers.
 */
function assignIds(hold: boolean) {
  return writerSetup.assign(({ context, event }) => {
    const added = appended(context, event, hold)
    const last = added[added.length - 1]
    if (!last) return {}
    const pending = [...context.pending, ...added]
    return hold
      ? { lastAddPushed: last.entryId, pushedLength: last.ledgerLength, pending }
      : { lastAddPushed: last.entryId, pushedLength: last.ledgerLength, pending, lacPersisted: Math.max(context.lacPersisted, context.lac) }
  })
}

function onAppend() {
  const assign = assignIds(false)
  const send = {
    type: 'send' as const,
    params: ({ context, event }: { context: WriterContext; event: WriterEvent }): SendParams => {
      const added = appended(context, event, false)
      const next = { ...context, pending: added }
      return { lac: context.lac, entries: added.map((p) => ({ ...p, bookies: targets(next, p, null) })) }
    },
  }
  return [{ guard: 'drained' as const, actions: [send, assign, ...startAddTimers] }, { actions: [send, assign] }]
}

/**
 * Record acks and, unless `hold`, resolve whatever completed and restart the add timers (or, once
 * nothing is pending, stop them and, when `idleLac`, count the idle LAC from now). Guarded
 * transitions with plain assigns rather than one enqueueActions: the acks event is the most
 * frequent (one per bookie per ack message), and enqueueActions costs about as much again as the
 * rest of its transition.
 */
function onAcks(hold: boolean, idleLac = false) {
  const record = writerSetup.assign(({ context, event }) => afterAcks(context, event, hold))
  if (hold) return { actions: record }
  const progress = writerSetup.assign(({ context, event }) => ({ ...afterAcks(context, event, false), resends: 0 }))
  // Before the assign: its params see the LAC the entries resolve from.
  const resolve = {
    type: 'resolve' as const,
    params: ({ context, event }: { context: WriterContext; event: WriterEvent }): ResolveParams => {
      const lac = afterAcks(context, event, false).lac!
      return { firstEntryId: context.lac + 1, lastEntryId: lac, lac }
    },
  }
  const drain = [resolve, progress, ...drainedTimers]
  return [
    ...(idleLac ? [{ guard: 'acksDrainIdleLac' as const, actions: [...drain, ...idleLacTimer] }] : []),
    { guard: 'acksDrain' as const, actions: drain },
    { guard: 'acksComplete' as const, actions: [resolve, progress, ...startAddTimers] },
    { actions: record },
  ]
}

/** A stalled writer re-sends (the LAC piggybacked is the current one: still below each entry, and a true LAC), then backs off. */
const resendStalled = [
  { type: 'resend' as const, params: ({ context }: { context: WriterContext }): ResendParams => ({ lac: context.lac, entries: unackedTargets(context), stalled: true }) },
  writerSetup.assign({ resends: ({ context }) => context.resends + 1 }),
  writerSetup.raise({ type: 'resend.due' }, { id: 'resend', delay: 'resendDelay' }),
]
/** Nothing went out: the back-off does not grow, and the stall is looked at again soon. */
const resendSkipped = [
  writerSetup.assign({ resends: ({ context }) => Math.max(0, context.resends - 1) }),
  writerSetup.cancel('resend'),
  writerSetup.raise({ type: 'resend.due' }, { id: 'resend', delay: 'behindRecheck' }),
]
const resendAll = { type: 'resend' as const, params: ({ context }: { context: WriterContext }): ResendParams => ({ lac: context.lac, entries: unackedTargets(context), stalled: false }) }

const addFailed = writerSetup.assign({
  failed: ({ context, event }) =>
    event.type === 'bookie.failed' && !context.failed.includes(event.bookieId) ? [...context.failed, event.bookieId] : context.failed,
})

/** The oldest add timed out: every bookie of its write set that has not acked it is to be replaced. */
const headTimedOut = writerSetup.assign({
  failed: ({ context }) => [...context.failed, ...headUnacked(context).filter((b) => !context.failed.includes(b))],
})

/** Adopt the ensemble just written: replaced positions lose their acks and get the entries re-sent. */
const adoptEnsemble = writerSetup.enqueueActions(({ context, enqueue }) => {
  const ensemble = context.proposed
  assert(ensemble !== null && ensemble.length === context.ensemble.length, 'an ensemble change keeps the ensemble size')
  assert(new Set(ensemble).size === ensemble.length, `ensemble must hold distinct bookies: ${ensemble.join(',')}`)
  const replaced = new Set<number>()
  context.ensemble.forEach((b, i) => { if (ensemble[i] !== b) replaced.add(i) })
  const lost = indexMask(replaced)
  const next: WriterContext = {
    ...context,
    ensemble,
    // Failures reported during the change for bookies still in the new ensemble stay queued.
    failed: context.failed.filter((b) => ensemble.includes(b)),
    pending: context.pending.map((p) => ({ ...p, ackedMask: p.ackedMask & ~lost })),
  }
  const resend = next.pending
    .map((p) => ({ ...p, bookies: targets(next, p, replaced) }))
    .filter((p) => p.bookies.length > 0)
  enqueue.assign({ ensemble: next.ensemble, failed: next.failed, pending: next.pending.map((p) => ({ ...p, sent: true })), proposed: null, read: null })
  if (resend.length > 0) {
    enqueue({ type: 'send', params: { lac: context.lac, entries: resend } })
    enqueue.assign({ lacPersisted: Math.max(context.lacPersisted, context.lac) })
  }
})

/** After a change: resolve what completed meanwhile. */
const resolveCompleted = writerSetup.enqueueActions(({ context, enqueue }) => {
  const next = complete(context, context.pending)
  if (next.lac === context.lac) return
  enqueue.assign(next)
  enqueue({ type: 'resolve', params: { firstEntryId: context.lac + 1, lastEntryId: next.lac, lac: next.lac } })
})

/** Fail the writer: keep the error, reject every append not yet resolved. */
const failWith = (error: (args: { context: WriterContext; event: WriterEvent }) => WriterError) =>
  writerSetup.enqueueActions(({ context, event, enqueue }) => {
    const e = error({ context, event })
    enqueue.assign({ error: e })
    enqueue({ type: 'reject', params: { ...e, scope: 'all' } })
  })

const refuse = (code: ErrorCode, message: string) =>
  ({ type: 'reject' as const, params: { code, message, scope: 'appended' as const } })

/** A metadata effect failed: FENCED ends fenced, anything else fails the writer with its error. */
const onMetadataFailed = [
  { guard: ({ event }: { event: WriterEvent }) => event.type === 'metadata.failed' && event.code === 'FENCED', target: '#writer.fenced' },
  {
    target: '#writer.failed',
    actions: failWith(({ event }) => {
      assert(event.type === 'metadata.failed', `metadata.failed handled for ${event.type}`)
      return { code: event.code, message: event.message }
    }),
  },
]

/** A conflicting write: read again, up to METADATA_ATTEMPTS_MAX reads in all. */
const onConflict = (what: string) => [
  { guard: 'attemptsLeft' as const, target: 'reading', actions: writerSetup.assign({ attempts: ({ context }) => context.attempts + 1 }) },
  {
    target: '#writer.failed',
    actions: failWith(({ context }) => ({ code: 'METADATA_CONFLICT', message: `could not ${what} ledger ${context.ledgerId}: too many concurrent metadata updates` })),
  },
]

const readMetadata = { type: 'readMetadata' as const, params: ({ context }: { context: WriterContext }): ReadMetadataParams => ({ fresh: context.attempts > 0 }) }

const ensembleRefusal = (event: WriterEvent) => (event.type === 'metadata.read' ? ensembleChangeRefusal(event.ledger.state) : null)
const closeDecision = (context: WriterContext, event: WriterEvent) =>
  (event.type === 'metadata.read' ? writerCloseDecision(event.ledger, context.lac) : { kind: 'write' as const })

/** Every entry is acknowledged: tell the bookies the final LAC, so that tailing readers parked on a long poll get the last entries at once. */
const finalLac = writerSetup.enqueueActions(({ context, enqueue }) => {
  if (context.lac <= context.lacPersisted) return
  enqueue({ type: 'explicitLac', params: { lac: context.lac, idle: false } })
  enqueue.assign({ lacPersisted: context.lac })
})

export const writerMachine = writerSetup.createMachine({
  id: 'writer',
  context: ({ input }) => {
    // An ensemble naming a bookie twice would count one bookie's acks for two positions.
    assert(new Set(input.ensemble).size === input.ensemble.length && input.ensemble.length === input.quorum.ensembleSize,
      `ensemble must hold ${input.quorum.ensembleSize} distinct bookies: ${input.ensemble.join(',')}`)
    const { timing, ...rest } = input
    return {
      ...rest, timing: timing ?? writerTiming(10_000, 0), lastAddPushed: input.lastEntryId, pushedLength: input.length,
      lac: input.lastEntryId, lacPersisted: input.lastEntryId, pending: [], failed: [], closeRequested: false,
      resends: 0, attempts: 0, read: null, proposed: null, error: null,
    }
  },
  initial: 'open',
  on: {
    fenced: { target: '.fenced' },
  },
  states: {
    open: {
      on: {
        append: onAppend(),
        acks: onAcks(false, true),
        'bookie.failed': { guard: 'inEnsemble', target: 'changingEnsemble', actions: addFailed },
        unauthorized: {
          target: 'failed',
          actions: failWith(({ event }) => ({ code: 'UNAUTHORIZED', message: `bookie ${'bookieId' in event ? event.bookieId : '?'} rejected the ledger's master key` })),
        },
        close: { target: 'closing', actions: writerSetup.assign({ closeRequested: true }) },
        'resend.due': { guard: 'stalled', actions: resendStalled },
        'resend.skipped': { actions: resendSkipped },
        reconnected: { actions: resendAll },
        'add.timedOut': { guard: 'headUnacked', target: 'changingEnsemble', actions: headTimedOut },
        'idleLac.due': { guard: 'idleLacDue', actions: [{ type: 'explicitLac', params: ({ context }) => ({ lac: context.lac, idle: true }) }, writerSetup.assign({ lacPersisted: ({ context }) => context.lac })] },
      },
    },
    changingEnsemble: {
      // No add completes while the change is in flight; appends get ids but wait to be sent. The
      // add timers may fire meanwhile and are ignored: they start again once the change is done.
      entry: writerSetup.assign({ attempts: 0, read: null, proposed: null }),
      initial: 'reading',
      on: {
        append: [
          { guard: 'closeRequested', actions: refuse('LEDGER_CLOSED', 'the ledger is closing') },
          { actions: assignIds(true) },
        ],
        acks: onAcks(true),
        'bookie.failed': { guard: 'inEnsemble', actions: addFailed },
        close: { actions: writerSetup.assign({ closeRequested: true }) },
        'metadata.failed': onMetadataFailed,
      },
      states: {
        reading: {
          entry: readMetadata,
          on: {
            'metadata.read': [
              // IN_RECOVERY: this writer was fenced; CLOSED: it is done.
              { guard: ({ event }) => ensembleRefusal(event)?.code === 'FENCED', target: '#writer.fenced' },
              {
                guard: ({ event }) => ensembleRefusal(event) !== null,
                target: '#writer.failed',
                actions: failWith(({ context, event }) => {
                  const r = ensembleRefusal(event)!
                  return { code: r.code, message: `ledger ${context.ledgerId}: ${r.message}` }
                }),
              },
              { target: 'picking', actions: writerSetup.assign({ read: ({ event }) => (event.type === 'metadata.read' ? event.ledger : null) }) },
            ],
          },
        },
        picking: {
          entry: { type: 'pickBookies', params: ({ context }) => ({ failed: context.failed, exclude: context.ensemble }) },
          on: {
            'bookies.picked': {
              target: 'writing',
              actions: writerSetup.assign({
                proposed: ({ context, event }) => {
                  const by = new Map(event.type === 'bookies.picked' ? event.replacements : [])
                  return context.ensemble.map((b) => by.get(b) ?? b)
                },
              }),
            },
          },
        },
        writing: {
          entry: {
            type: 'writeMetadata',
            params: ({ context }) => ({ kind: 'ensemble' as const, segments: segmentsAfterChange(context.read!.segments, context.lac, context.proposed!), ensemble: context.proposed! }),
          },
          on: {
            'metadata.written': [
              { guard: 'stillFailed', target: '#writer.changingEnsemble', reenter: true, actions: adoptEnsemble },
              { guard: 'closeRequested', target: '#writer.closing', actions: [adoptEnsemble, resolveCompleted, armAddTimers] },
              { target: '#writer.open', actions: [adoptEnsemble, resolveCompleted, armAddTimers] },
            ],
            'metadata.conflict': onConflict('change the ensemble of'),
          },
        },
      },
    },
    closing: {
      // Appends that arrive now are refused; in-flight ones finish first.
      always: { guard: 'drained', target: 'closingMetadata' },
      on: {
        append: { actions: refuse('LEDGER_CLOSED', 'the ledger is closing') },
        acks: onAcks(false),
        'bookie.failed': { guard: 'inEnsemble', target: 'changingEnsemble', actions: addFailed },
        'resend.due': { guard: 'stalled', actions: resendStalled },
        'resend.skipped': { actions: resendSkipped },
        reconnected: { actions: resendAll },
        'add.timedOut': { guard: 'headUnacked', target: 'changingEnsemble', actions: headTimedOut },
      },
    },
    closingMetadata: {
      entry: [finalLac, writerSetup.assign({ attempts: 0, read: null })],
      initial: 'reading',
      on: {
        append: { actions: refuse('LEDGER_CLOSED', 'the ledger is closing') },
        'metadata.failed': onMetadataFailed,
      },
      states: {
        reading: {
          entry: readMetadata,
          on: {
            'metadata.read': [
              // Closed already at this writer's LAC (by itself, an earlier attempt whose answer was lost).
              { guard: ({ context, event }) => closeDecision(context, event).kind === 'done', target: '#writer.closed', actions: 'adoptRead' },
              { guard: ({ context, event }) => { const d = closeDecision(context, event); return d.kind === 'error' && d.code === 'FENCED' }, target: '#writer.fenced' },
              {
                guard: ({ context, event }) => closeDecision(context, event).kind === 'error',
                target: '#writer.failed',
                actions: failWith(({ context, event }) => {
                  const d = closeDecision(context, event) as { code: ErrorCode; message: string }
                  return { code: d.code, message: `ledger ${context.ledgerId}: ${d.message}` }
                }),
              },
              { target: 'writing', actions: writerSetup.assign({ read: ({ event }) => (event.type === 'metadata.read' ? event.ledger : null) }) },
            ],
          },
        },
        writing: {
          entry: { type: 'writeMetadata', params: ({ context }) => ({ kind: 'close' as const, lastEntryId: context.lac, length: context.length }) },
          on: {
            'metadata.written': { target: '#writer.closed' },
            'metadata.conflict': onConflict('close'),
          },
        },
      },
    },
    closed: {
      entry: cancelTimers,
      on: {
        append: { actions: refuse('LEDGER_CLOSED', 'the ledger is closed') },
        fenced: {},
      },
    },
    fenced: {
      entry: [...cancelTimers, failWith(() => ({ code: 'FENCED', message: 'the ledger was fenced by a recovery; this writer can add no more entries' }))],
      on: {
        append: { actions: { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'appended' as const }) } },
        fenced: {},
      },
    },
    failed: {
      entry: cancelTimers,
      on: {
        append: { actions: { type: 'reject', params: ({ context }) => ({ ...context.error!, scope: 'appended' as const }) } },
        fenced: {},
      },
    },
  },
})
