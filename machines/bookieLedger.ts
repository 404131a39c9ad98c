// A bookie's state for one ledger (PROTOCOL.md "Add path", "Bookie storage", fencing). One actor
// per ledger serialises adds, fence and LAC reads through its mailbox, so a fence can never race
// an add. Pure: effects are named actions (`journal.add`, `journal.fence`, `journal.masterKey`,
// `store.put`, `reply.add`, `reply.lac`) bound by actors/bookie.ts; journal results come back as
// `journal.synced` / `journal.fenceSynced` / `journal.fenceFailed` events.
//
// Adds come as batches: every add request that reached the bookie for this ledger between two
// other events of its mailbox (a fence, a LAC read) is one `adds` event, decided at once by the
// pure `decideAdds` (the same rules as one request at a time, the state threaded from one request
// to the next), journaled as one record and acknowledged by one `journal.synced`. This keeps the
// common add off the mailbox's per-request cost (an xstate event, a context copy and the snapshot
// observers, twice per request) while fence, key and LAC transitions stay here.
//
// Invariants:
// - an add is acknowledged only after `journal.synced` for its record (persist before ack);
// - the first add fixes the master key; any later add or fence with another key is UNAUTHORIZED;
// - once fenced, only recovery adds are accepted; a fence is answered only after its journal
//   record is synced, and the journal is FIFO, so every add accepted before it is on disk first;
// - a fence whose journal write failed (a full disk) is answered with the failure, and the next
//   fence request journals it again: the ledger stays fenced in memory (refusing normal adds is
//   safe either way), but a fence is only ever answered OK once it is durable.

import { setup } from 'xstate'
import { RC, type DigestType } from './responses.ts'

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
  digestType: DigestType | null
  fenced: boolean
  /**
   * Highest LAC known: piggybacked on the adds accepted here (as they arrive, see `receivedLac`)
   * and from explicit LACs; -1 when none.
   */
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

/** One add request's entries for this ledger, as the bookie received them. */
export interface BookieAdd {
  readonly replyTo: string
  readonly masterKey: Uint8Array
  readonly digestType: DigestType
  readonly recovery: boolean
  readonly entries: readonly BookieEntry[]
}

/** What of a ledger's state the add rules read and change. */
export interface AddRulesState {
  readonly masterKey: Uint8Array | null
  readonly digestType: DigestType | null
  readonly fenced: boolean
}

/** An add refused at once (nothing journaled): answered with `rc`. */
export interface RefusedAdd { replyTo: string; rc: number; entryIds: number[] }

export interface AddsDecision {
  /** The state after the batch: the first accepted add fixes the master key and digest type. */
  next: AddRulesState
  /** To journal before the entries: the key this batch fixed; null when it was known. */
  fixKey: { masterKey: Uint8Array; digestType: DigestType } | null
  /** To journal (one record, in arrival order) and acknowledge once it is synced. */
  accepted: BookieAdd[]
  /** To answer now, in arrival order. */
  refused: RefusedAdd[]
}

/**
 * The add rules over a batch, one request after another in arrival order: another master key than
 * the ledger's is UNAUTHORIZED; a fenced ledger takes only recovery adds (else FENCED); the first
 * add accepted fixes the key and digest type. Pure: nothing here is journaled or answered.
 */
export function decideAdds(state: AddRulesState, adds: readonly BookieAdd[]): AddsDecision {
  let { masterKey, digestType } = state
  let fixKey: AddsDecision['fixKey'] = null
  const accepted: BookieAdd[] = []
  const refused: RefusedAdd[] = []
  for (const add of adds) {
    if (masterKey !== null && !sameKey(masterKey, add.masterKey)) {
      refused.push({ replyTo: add.replyTo, rc: RC.UNAUTHORIZED, entryIds: add.entries.map((e) => e.entryId) })
    } else if (state.fenced && !add.recovery) {
      refused.push({ replyTo: add.replyTo, rc: RC.FENCED, entryIds: add.entries.map((e) => e.entryId) })
    } else {
      if (masterKey === null || digestType === null) {
        masterKey = add.masterKey
        digestType = add.digestType
        fixKey = { masterKey, digestType }
      }
      accepted.push(add)
    }
  }
  return { next: { masterKey, digestType, fenced: state.fenced }, fixKey, accepted, refused }
}

/**
 * The LAC the accepted adds carry, known as they arrive, before their record is synced: a LAC is
 * the writer's word that every entry up to it has its ack quorum, whatever this bookie holds or
 * syncs (as BookKeeper's bookie, which updates the LAC its long polls wait on when the entry is
 * added, before the journal has it). A parked long poll is answered then, not one journal write
 * later. Only accepted adds count: a refused one (another key) may carry anything. Never moves back.
 */
export function receivedLac(lac: number, adds: readonly BookieAdd[]): number {
  for (const add of adds) for (const e of add.entries) if (e.lac > lac) lac = e.lac
  return lac
}

/** The LAC and last entry known once the adds' record is on disk: each only moves forward. */
export function syncedAdds(state: { lac: number; lastEntryId: number }, adds: readonly BookieAdd[]): { lac: number; lastEntryId: number } {
  let { lac, lastEntryId } = state
  for (const add of adds) {
    for (const e of add.entries) {
      if (e.lac > lac) lac = e.lac
      if (e.entryId > lastEntryId) lastEntryId = e.entryId
    }
  }
  return { lac, lastEntryId }
}

export type BookieLedgerEvent =
  /** A batch of add requests, in arrival order (at least one). */
  | { type: 'adds'; adds: readonly BookieAdd[] }
  /** The record of a `journal.add` is on disk: its adds may be acknowledged. */
  | { type: 'journal.synced'; adds: readonly BookieAdd[] }
  | { type: 'fence'; replyTo: string; reqId: number; masterKey: Uint8Array; kind: 'lac' | 'read' }
  | { type: 'journal.fenceSynced' }
  /** The fence's journal write failed: its waiters get `rc` (READ_ONLY on a full disk, else ERROR). */
  | { type: 'journal.fenceFailed'; rc: number }
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
    /** One journal record holding every entry of `adds`, in order. */
    'journal.add': (_, _p: { adds: readonly BookieAdd[] }) => {},
    'journal.masterKey': (_, _p: { masterKey: Uint8Array; digestType: DigestType }) => {},
    'journal.fence': () => {},
    'store.put': (_, _p: { entries: readonly BookieEntry[] }) => {},
    'reply.add': (_, _p: ReplyAddParams) => {},
    'reply.lac': (_, _p: ReplyLacParams) => {},
    'read.fenced': (_, _p: FencedReadParams) => {},
    'journal.lac': (_, _p: { lac: number }) => {},
  },
})

const acceptAdds = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'adds') return
  const d = decideAdds(context, event.adds)
  for (const r of d.refused) enqueue({ type: 'reply.add', params: r })
  if (d.fixKey !== null) {
    enqueue.assign({ masterKey: d.fixKey.masterKey, digestType: d.fixKey.digestType })
    enqueue({ type: 'journal.masterKey', params: d.fixKey })
  }
  const lac = receivedLac(context.lac, d.accepted)
  if (lac > context.lac) enqueue.assign({ lac })
  if (d.accepted.length > 0) enqueue({ type: 'journal.add', params: { adds: d.accepted } })
})

const recordSynced = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'journal.synced') return
  const next = syncedAdds(context, event.adds)
  if (next.lac !== context.lac || next.lastEntryId !== context.lastEntryId) enqueue.assign(next)
  enqueue({ type: 'store.put', params: { entries: event.adds.flatMap((a) => a.entries) } })
  for (const a of event.adds) {
    enqueue({ type: 'reply.add', params: { replyTo: a.replyTo, rc: RC.OK, entryIds: a.entries.map((e) => e.entryId) } })
  }
})

const answerLac = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'readLac') return
  enqueue({ type: 'reply.lac', params: { replyTo: event.replyTo, reqId: event.reqId, rc: RC.OK, lac: context.lac, lastEntryId: context.lastEntryId } })
})

/** Answer a fence request once the fence is on disk: the LAC, or leave to go on with the read. */
function fenceAnswer(context: BookieLedgerContext, w: FenceWaiter, rc: number) {
  return w.kind === 'lac'
    ? { type: 'reply.lac' as const, params: { replyTo: w.replyTo, reqId: w.reqId, rc, lac: rc === RC.OK ? context.lac : -1, lastEntryId: rc === RC.OK ? context.lastEntryId : -1 } }
    : { type: 'read.fenced' as const, params: { replyTo: w.replyTo, reqId: w.reqId, rc } }
}

const requestFence = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'fence') return
  const waiter = { replyTo: event.replyTo, reqId: event.reqId, kind: event.kind }
  if (context.masterKey !== null && !sameKey(context.masterKey, event.masterKey)) {
    enqueue(fenceAnswer(context, waiter, RC.UNAUTHORIZED))
    return
  }
  if (context.fenceSynced) {
    enqueue(fenceAnswer(context, waiter, RC.OK))
    return
  }
  // No fence record in flight (none yet, or the last one failed): journal one.
  const first = context.fenceWaiters.length === 0
  enqueue.assign({ fenced: true, fenceWaiters: [...context.fenceWaiters, waiter] })
  if (first) enqueue('journal.fence')
})

const failFenceWaiters = ledgerSetup.enqueueActions(({ context, event, enqueue }) => {
  if (event.type !== 'journal.fenceFailed') return
  for (const w of context.fenceWaiters) enqueue(fenceAnswer(context, w, event.rc))
  enqueue.assign({ fenceWaiters: [] })
})

const answerFenceWaiters = ledgerSetup.enqueueActions(({ context, enqueue }) => {
  for (const w of context.fenceWaiters) enqueue(fenceAnswer(context, w, RC.OK))
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
        adds: { actions: acceptAdds },
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
        adds: { actions: acceptAdds },
        fence: { actions: requestFence },
        'journal.fenceSynced': { actions: answerFenceWaiters },
        'journal.fenceFailed': { actions: failFenceWaiters },
      },
    },
  },
  on: {
    'journal.synced': { actions: recordSynced },
    readLac: { actions: answerLac },
    explicitLac: { actions: acceptExplicitLac },
  },
})

