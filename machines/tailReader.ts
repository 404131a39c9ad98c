// A tailing reader (issue: tailing readers): follows a ledger from `from` on, reading what is
// confirmed, long-polling the bookies for a higher LAC when caught up, and finishing once the
// ledger is closed and its last entry delivered. Pure: effects are named actions (`readBatch`,
// `longPoll`, `refreshMetadata`) bound by client/tail.ts; results come back as events.
// A caught-up reader's long poll may bring the next entry itself (no read at all). A reader
// behind its writer reads batch after batch and polls only once it has caught up: a poll sent
// alongside each read was tried, and answered at once every time (the bookies knew a higher
// LAC), tripling the messages per batch; on two cores that made tails several times slower.
// Each read reply carries the LAC its bookie knows (`read.done`'s `lac`): a reader behind its
// writer goes from read to read, one round trip per batch, without a long poll in between (a
// poll after every batch doubled the round trips and left a reader at 10,000 entries/s seconds
// behind, never catching up). A reader more than a batch behind keeps two reads in flight
// (READS_IN_FLIGHT), so a slow round trip (100-300 ms on a loaded machine) is paid once per two
// batches; the binding delivers their entries in the order they were asked for. A read asks
// several bookies, whose replies come back one by one: a LAC at least EARLY_READ_MIN_FRACTION of
// a batch past what is asked for (`lac.learned`) fills a free slot at once, rather than when the
// whole read is done. Otherwise a reader that fell less than a batch behind (a stall, a start)
// asked for what it knew, learned the next LAC only at the end of that read, and so read one
// batch at a time: on a loaded machine the writer appended more during each read than the read
// brought, and the reader stayed behind. Less than that: the reader is keeping up, and one read at
// a time costs fewer messages.
//
// Invariants: entries are delivered in order, each exactly once (`next` only moves forward, by
// what was delivered; `ahead` is where the next read starts, at most READS_IN_FLIGHT reads past
// `next`, and back at `next` whenever no read is out); nothing past a closed ledger's lastEntryId
// or past the LAC learned is ever read; no busy loop: when caught up it waits on a long poll
// (which the bookie parks) before asking again.

import { assign, setup } from 'xstate'

export interface TailInput {
  from: number
  /** Highest entry id known to be readable (the LAC, or lastEntryId when closed). */
  lac: number
  closed: boolean
  lastEntryId: number
  batch: number
}

export interface TailContext extends TailInput {
  /** Next entry to deliver. */
  next: number
  /** First entry not yet asked for (reads in flight cover next..ahead-1). */
  ahead: number
  /** Reads asked for whose `read.done` has not come back. */
  inFlight: number
  /** Consecutive transient failures (a bookie or the metadata store not answering). */
  failures: number
  error: { code: string; message: string } | null
}

/**
 * Transient failures in a row before the tail gives up. The wait between tries doubles from
 * TAIL_RETRY_DELAY_MS up to TAIL_RETRY_DELAY_MAX_MS, so a tail rides out about 75 s of a metadata
 * store or bookies not answering: a NATS server's failover, whose JetStream leader elections take
 * seconds (more on a loaded machine), must not end it; 40 tries 250 ms apart (10 s) did.
 */
export const TAIL_RETRIES_MAX = 40
/** Batch reads out at once while behind. */
export const READS_IN_FLIGHT = 2
/** A LAC learned while a read is out sends the next read at once when it confirms this much of a batch more. */
export const EARLY_READ_MIN_FRACTION = 1 / 4
export const TAIL_RETRY_DELAY_MS = 250
export const TAIL_RETRY_DELAY_MAX_MS = 2000

/** The wait before the try that follows the `failures`-th transient failure in a row. */
export const tailRetryDelayMs = (failures: number): number =>
  Math.min(TAIL_RETRY_DELAY_MAX_MS, TAIL_RETRY_DELAY_MS * 2 ** Math.max(0, Math.min(failures - 1, 16)))

export type TailEvent =
  /**
   * The oldest read in flight delivered `count` entries (reads complete in the order asked);
   * `lac`: the highest LAC its replies carried (a bookie's, so confirmed).
   */
  | { type: 'read.done'; count: number; lac?: number }
  /** A LAC a read reply carried while reads are out (a bookie's, so confirmed). */
  | { type: 'lac.learned'; lac: number }
  /** A long poll's answer; `delivered` is 1 when it brought entry `next` (= `lac`) and the binding passed it on. */
  | { type: 'lac'; lac: number; delivered: number }
  | { type: 'poll.timeout' }
  | { type: 'metadata'; closed: boolean; lastEntryId: number }
  | { type: 'failed'; code: string; message: string }
  /** A read or metadata refresh that may work later (TIMEOUT, BOOKIE_UNAVAILABLE, NATS down). */
  | { type: 'transient'; code: string; message: string }
  | { type: 'stop' }

/** Highest entry id that may be read: the LAC learned, or lastEntryId once closed. */
const readableEnd = (c: TailContext): number => (c.closed ? c.lastEntryId : c.lac)

/** A failed try drops the reads in flight (the binding ignores their results): start again at `next`. */
const dropReads = { ahead: ({ context }: { context: TailContext }) => context.next, inFlight: 0 }

const tailSetup = setup({
  types: {} as { context: TailContext; events: TailEvent; input: TailInput },
  actions: {
    readBatch: (_, _p: { first: number; last: number }) => {},
    longPoll: (_, _p: { previousLac: number; next: number }) => {},
    refreshMetadata: () => {},
  },
  guards: {
    /** Another read may go out: something confirmed past what is asked for, and a slot free. */
    readable: ({ context }) => context.inFlight < READS_IN_FLIGHT && context.ahead <= readableEnd(context),
    reading: ({ context }) => context.inFlight > 0,
    finished: ({ context }) => context.closed && context.next > context.lastEntryId,
  },
  delays: {
    retryDelay: ({ context }) => tailRetryDelayMs(context.failures),
  },
})

export const tailMachine = tailSetup.createMachine({
  id: 'tail',
  context: ({ input }) => ({ ...input, next: Math.max(0, input.from), ahead: Math.max(0, input.from), inFlight: 0, failures: 0, error: null }),
  initial: 'deciding',
  on: {
    failed: { target: '.failed', actions: assign({ error: ({ event }) => ({ code: event.code, message: event.message }) }) },
    transient: [
      {
        guard: ({ context }) => context.failures + 1 >= TAIL_RETRIES_MAX,
        target: '.failed',
        actions: assign({ error: ({ event }) => ({ code: event.code, message: `gave up after ${TAIL_RETRIES_MAX} tries: ${event.message}` }) }),
      },
      { target: '.backoff', actions: assign({ failures: ({ context }) => context.failures + 1, ...dropReads }) },
    ],
    stop: { target: '.closed' },
  },
  states: {
    deciding: {
      always: [
        { guard: 'finished', target: 'closed' },
        { guard: 'readable', target: 'asking' },
        { guard: 'reading', target: 'reading' },
        { target: 'caughtUp' },
      ],
    },
    asking: {
      // A free slot and something to read (guard `readable`): ask for the next batch, then
      // decide again (a second read may be worth asking for while the first is out).
      entry: [
        {
          type: 'readBatch',
          params: ({ context }) => ({ first: context.ahead, last: Math.min(readableEnd(context), context.ahead + context.batch - 1) }),
        },
        assign({
          ahead: ({ context }) => Math.min(readableEnd(context), context.ahead + context.batch - 1) + 1,
          inFlight: ({ context }) => context.inFlight + 1,
        }),
      ],
      always: { target: 'deciding' },
    },
    reading: {
      // Reads are out (and no slot free, or nothing more to ask for): wait for the oldest, or for
      // a reply that carries a LAC past what is asked for.
      on: {
        'lac.learned': [
          {
            guard: ({ context, event }) => event.lac - context.ahead + 1 >= Math.ceil(context.batch * EARLY_READ_MIN_FRACTION),
            target: 'deciding',
            actions: assign({ lac: ({ context, event }) => Math.max(context.lac, event.lac) }),
          },
          { actions: assign({ lac: ({ context, event }) => Math.max(context.lac, event.lac) }) },
        ],
        'read.done': {
          target: 'deciding',
          actions: assign({
            next: ({ context, event }) => context.next + event.count,
            lac: ({ context, event }) => Math.max(context.lac, event.lac ?? -1),
            inFlight: ({ context }) => context.inFlight - 1,
            failures: 0,
          }),
        },
      },
    },
    caughtUp: {
      // Long poll: the bookies answer as soon as they learn a LAC past ours, or at the timeout.
      // When the LAC moved by one, the answer may bring that entry: then nothing is left to read.
      entry: { type: 'longPoll', params: ({ context }) => ({ previousLac: context.lac, next: context.next }) },
      on: {
        lac: [
          {
            guard: ({ context, event }) => event.lac > context.lac,
            target: 'deciding',
            actions: assign({
              lac: ({ event }) => event.lac,
              next: ({ context, event }) => context.next + event.delivered,
              ahead: ({ context, event }) => context.next + event.delivered,
              failures: 0,
            }),
          },
          { target: 'checking' },
        ],
        'poll.timeout': { target: 'checking' },
      },
    },
    checking: {
      // Nothing new: was the ledger closed (or its ensemble changed) meanwhile?
      entry: 'refreshMetadata',
      on: {
        metadata: {
          target: 'deciding',
          actions: assign({ closed: ({ event }) => event.closed, lastEntryId: ({ event }) => event.lastEntryId, failures: 0 }),
        },
      },
    },
    backoff: {
      after: { retryDelay: { target: 'checking' } },
    },
    closed: { type: 'final' },
    failed: { type: 'final' },
  },
})
