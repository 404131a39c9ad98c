// A bookie's state for one ledger (PROTOCOL.md "Add path", "Bookie storage", fencing). One actor
// per ledger serialises add, fence and LAC reads through its mailbox, so a fence can never race
// an add. Pure: effects are named actions (`journal.add`, `journal.fence`, `journal.masterKey`,
// `store.put`, `reply.add`, `reply.lac`) bound by actors/bookie.ts; journal results come back as
// `journal.synced` / `journal.fenceSynced` events.
//
// Invariants:
// - an add is acknowledged only after `journal.synced` for its record (persist before ack);
// - the first add fixes the master key; any later add or fence with another key is UNAUTHORIZED;
// - once fenced, only recovery adds are accepted; a fence is answered only after its journal
//   record is synced, and the journal is FIFO, so every add accepted before it is on disk first.

import { setup } from 'xstate'

export const LEDGER_RC = { OK: 0, FENCED: 3, UNAUTHORIZED: 4 } as const

export interface BookieEntry {
  readonly entryId: number
  /** LAC piggybacked in the entry's header. */
  readonly lac: number
  readonly data: Uint8Array
}

export interface BookieLedgerInput {
  ledgerId: number
  masterKey: Uint8Array | null
  /** Digest type named by the first add, to verify stored entries on read; null before. */
  digestType: string | null
  fenced: boolean
  /** Highest LAC known from stored entries and explicit LACs; -1 when none. */
  lac: number
  lastEntryId: number
}

export interface BookieLedgerContext extends BookieLedgerInput {
  /** Fence record on disk: fence requests may be answered at once. */
  fenceSynced: boolean
  /** Fence requests waiting for the fence record to sync: LAC reads, or reads that fence. */
  fenceWaiters: ReadonlyArray<FenceWaiter>
}

export interface FenceWaiter { replyTo: string; reqId: number; kind: 'lac' | 'read' }

export type BookieLedgerEvent =
  | { type: 'add'; replyTo: string; masterKey: Uint8Array; digestType: string; recovery: boolean; entries: readonly BookieEntry[] }
  | { type: 'journal.synced'; replyTo: string; entries: readonly BookieEntry[] }
  | { type: 'fence'; replyTo: string; reqId: number; masterKey: Uint8Array; kind: 'lac' | 'read' }
  | { type: 'journal.fenceSynced' }
  | { type: 'readLac'; replyTo: string; reqId: number }
  /** An idle writer's explicit LAC: kept (journaled) so long polls and restarts see it. */
  /** `persist: false` is the writer's eager hint: it moves the LAC in memory, nothing is journaled. */
  | { type: 'explicitLac'; masterKey: Uint8Array; lac: number; persist: boolean }

export interface ReplyAddParams { replyTo: string; rc: number; entryIds: number[] }
export interface ReplyLacParams { replyTo: string; reqId: number; rc: number; lac: number; lastEntryId: number }
/** A fencing read may go ahead (rc OK: fenced and synced), or is refused with rc. */
export interface FencedReadParams { replyTo: string; reqId: number; rc: number }

export function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

const ledgerSetup = setup({
  types: {} as { context: BookieLedgerContext; events: BookieLedgerEvent; input: BookieLedgerInput },
  actions: {
    'journal.add': (_, _p: { replyTo: string; entries: readonly BookieEntry[] }) => {},
    'journal.masterKey': (_, _p: { masterKey: Uint8Array; digestType: string }) => {},
    'journal.fence': () => {},
    'store.put': (_, _p: { entries: readonly BookieEntry[] }) => {},
    'reply.add': (_, _p: ReplyAddParams) => {},
    'reply.lac': (_, _p: ReplyLacParams) => {},
    'read.fenced': (_, _p: FencedReadParams) => {},
    'journal.lac': (_, _p: { lac: number }) => {},
  },
})

const acceptAdd = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'add') return
  const entryIds = event.entries.map((e) => e.entryId)
  if (context.masterKey !== null && !sameKey(context.masterKey, event.masterKey)) {
    enqueue({ type: 'reply.add', params: { replyTo: event.replyTo, rc: LEDGER_RC.UNAUTHORIZED, entryIds } })
    return
  }
  if (context.fenced && !event.recovery) {
    enqueue({ type: 'reply.add', params: { replyTo: event.replyTo, rc: LEDGER_RC.FENCED, entryIds } })
    return
  }
  if (context.masterKey === null || context.digestType === null) {
    enqueue.assign({ masterKey: event.masterKey, digestType: event.digestType })
    enqueue({ type: 'journal.masterKey', params: { masterKey: event.masterKey, digestType: event.digestType } })
  }
  enqueue({ type: 'journal.add', params: { replyTo: event.replyTo, entries: event.entries } })
})

const recordSynced = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'journal.synced') return
  let lac = context.lac
  let last = context.lastEntryId
  for (const e of event.entries) {
    if (e.lac > lac) lac = e.lac
    if (e.entryId > last) last = e.entryId
  }
  enqueue.assign({ lac, lastEntryId: last })
  enqueue({ type: 'store.put', params: { entries: event.entries } })
  enqueue({ type: 'reply.add', params: { replyTo: event.replyTo, rc: LEDGER_RC.OK, entryIds: event.entries.map((e) => e.entryId) } })
})

const answerLac = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'readLac') return
  enqueue({ type: 'reply.lac', params: { replyTo: event.replyTo, reqId: event.reqId, rc: LEDGER_RC.OK, lac: context.lac, lastEntryId: context.lastEntryId } })
})

/** Answer a fence request once the fence is on disk: the LAC, or leave to go on with the read. */
function fenceAnswer(context: BookieLedgerContext, w: FenceWaiter, rc: number) {
  return w.kind === 'lac'
    ? { type: 'reply.lac' as const, params: { replyTo: w.replyTo, reqId: w.reqId, rc, lac: rc === LEDGER_RC.OK ? context.lac : -1, lastEntryId: rc === LEDGER_RC.OK ? context.lastEntryId : -1 } }
    : { type: 'read.fenced' as const, params: { replyTo: w.replyTo, reqId: w.reqId, rc } }
}

const requestFence = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'fence') return
  const waiter = { replyTo: event.replyTo, reqId: event.reqId, kind: event.kind }
  if (context.masterKey !== null && !sameKey(context.masterKey, event.masterKey)) {
    enqueue(fenceAnswer(context, waiter, LEDGER_RC.UNAUTHORIZED))
    return
  }
  if (context.fenceSynced) {
    enqueue(fenceAnswer(context, waiter, LEDGER_RC.OK))
    return
  }
  const first = !context.fenced
  enqueue.assign({ fenced: true, fenceWaiters: [...context.fenceWaiters, waiter] })
  if (first) enqueue('journal.fence')
})

const answerFenceWaiters = ledgerSetup.enqueueActions(({ context, enqueue }) => {
  for (const w of context.fenceWaiters) enqueue(fenceAnswer(context, w, LEDGER_RC.OK))
  enqueue.assign({ fenceSynced: true, fenceWaiters: [] })
})

const acceptExplicitLac = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'explicitLac') return
  if (context.masterKey === null || !sameKey(context.masterKey, event.masterKey)) return
  // An idle writer persists the LAC an eager hint already moved here: journal it all the same.
  if (event.lac < context.lac || (event.lac === context.lac && !event.persist)) return
  if (event.lac > context.lac) enqueue.assign({ lac: event.lac })
  if (event.persist) enqueue({ type: 'journal.lac', params: { lac: event.lac } })
})

export const bookieLedgerMachine = ledgerSetup.createMachine({
  id: 'bookieLedger',
  context: ({ input }) => ({ ...input, fenceSynced: input.fenced, fenceWaiters: [] }),
  initial: 'routing',
  states: {
    routing: {
      always: [{ guard: ({ context }) => context.fenced, target: 'fenced' }, { target: 'open' }],
    },
    open: {
      on: {
        add: { actions: acceptAdd },
        fence: [
          {
            guard: ({ context, event }) => context.masterKey === null || sameKey(context.masterKey, event.masterKey),
            target: 'fenced',
            actions: requestFence,
          },
          { actions: requestFence },
        ],
      },
    },
    fenced: {
      on: {
        add: { actions: acceptAdd },
        fence: { actions: requestFence },
        'journal.fenceSynced': { actions: answerFenceWaiters },
      },
    },
  },
  on: {
    'journal.synced': { actions: recordSynced },
    readLac: { actions: answerLac },
    explicitLac: { actions: acceptExplicitLac },
  },
})

