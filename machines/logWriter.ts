// The writer of a named log (PROTOCOL.md "Logs on top of ledgers"): its metadata lifecycle as a
// machine. It takes the log (claims the next writer epoch by compare-and-swap, recovers what an
// earlier writer left open, adds a new segment), rolls segments (one compare-and-swap closing the
// current segment and adding the next, on a spare ledger made ahead), and closes or seals the log.
// Records, entries and their promises are the binding's (client/logWriter.ts): it tells the
// machine when to roll and what the segment holds.
// Pure: effects are named actions with params (`readLog`, `writeLog`, `recoverSegment`,
// `createLedger`, `deleteLedger`, `opened`, `switched`, `finished`, `fail`), results come back as
// events (`log.read`, `log.written`, `log.conflict`, `segment.recovered`, `ledger.created`,
// `error`).
// Invariants:
// - every change of the log's record is a compare-and-swap at the revision last read; a conflict
//   re-reads, and a log taken by a newer epoch (or sealed) ends the writer (FENCED, END_OF_STREAM)
//   without writing;
// - two writers claiming at once: the one whose swap lands wins; the other, seeing the epoch move
//   between its first read and its retry, fails with LOG_WRITER_CONFLICT;
// - a ledger made for a segment that never made it into the log is deleted;
// - a bounded number of conflicts in a row (CAS_ATTEMPTS), then METADATA_CONFLICT.

import { assign, enqueueActions, setup } from 'xstate'
import { assert, type ErrorCode } from './errors.ts'
import {
  claimed, segmentsToRecover, withLedgersClosedThrough, withSegmentAdded, withSegmentClosed, writerRefusal,
  type LogMetadata, type LogSegment, type SegmentEnd,
} from './logRules.ts'

export const CAS_ATTEMPTS = 50

export interface LogWriterError { code: ErrorCode; message: string }

export interface LogWriterContext {
  name: string
  /** Epoch this writer holds; 0 until it has claimed the log. */
  epoch: number
  /** Epoch of the log at this writer's first read (a move means another writer claimed it). */
  seenEpoch: number
  md: LogMetadata | null
  revision: number
  /** Segments still to recover, and the ends found so far. */
  toRecover: readonly LogSegment[]
  ends: ReadonlyArray<readonly [number, SegmentEnd]>
  /** The next segment's ledger, once made (taking: the first segment; open: the spare). */
  ledgerId: number | null
  /** The current segment's end, and how far ledgers are closed, given with a roll or the finish. */
  closingEnd: SegmentEnd | null
  closedThrough: number
  finish: 'close' | 'seal' | null
  conflicts: number
  error: LogWriterError | null
}

export type LogWriterEvent =
  | { type: 'log.read'; md: LogMetadata; revision: number }
  | { type: 'log.written'; md: LogMetadata; revision: number }
  | { type: 'log.conflict' }
  | { type: 'segment.recovered'; segmentSeq: number; end: SegmentEnd | null }
  | { type: 'ledger.created'; ledgerId: number }
  /**
   * The binding stopped handing records to the current segment: it ends at `end`; the ledgers of
   * segments up to `closedThrough` are closed.
   */
  | { type: 'roll'; end: SegmentEnd; closedThrough: number }
  /** Every record is acknowledged and the ledgers closed, the current one at `end`. */
  | { type: 'finish'; mode: 'close' | 'seal'; end: SegmentEnd; closedThrough: number }
  /** An effect failed, or a ledger of this writer was fenced. */
  | { type: 'error'; code: ErrorCode; message: string }

export interface LogWriterInput { name: string; nowMs: () => number }

/** The log as this writer's take leaves it: recovered segments closed at their ends, its own added. */
function taken(c: LogWriterContext, md: LogMetadata, nowMs: number): LogMetadata {
  let next = md
  for (const [seq, end] of c.ends) next = withSegmentClosed(next, seq, end, nowMs)
  // Every closed segment's ledger is closed now: the recovered ones by their recovery.
  const lastClosed = next.segments.reduce((n, s) => (s.state === 'closed' ? Math.max(n, s.segmentSeq) : n), 0)
  return withSegmentAdded(withLedgersClosedThrough(next, lastClosed), c.ledgerId!, c.epoch, nowMs)
}

function current(md: LogMetadata): LogSegment {
  const s = md.segments.at(-1)
  assert(s !== undefined && s.state === 'open', `log ${md.name} has no open segment`)
  return s
}

export function logWriterMachine(input: LogWriterInput) {
  const now = input.nowMs
  /** What the next compare-and-swap writes, from the log as last read. */
  const change = (c: LogWriterContext, state: 'claim' | 'take' | 'roll' | 'finish'): LogMetadata => {
    const md = c.md!
    if (state === 'claim') return claimed(md)
    if (state === 'take') return taken(c, md, now())
    const seq = current(md).segmentSeq
    const closed = withLedgersClosedThrough(withSegmentClosed(md, seq, c.closingEnd!, now()), c.closedThrough)
    if (state === 'roll') return withSegmentAdded(closed, c.ledgerId!, c.epoch, now())
    return c.finish === 'seal' ? { ...closed, sealed: true } : closed
  }
  const tooMany = (c: LogWriterContext): boolean => c.conflicts + 1 >= CAS_ATTEMPTS

  return setup({
    types: {} as { context: LogWriterContext; events: LogWriterEvent },
    actions: {
      readLog: (_, _p: { name: string }) => {},
      writeLog: (_, _p: { md: LogMetadata; revision: number }) => {},
      recoverSegment: (_, _p: { segment: LogSegment }) => {},
      createLedger: (_, _p: { segmentSeq: number; epoch: number }) => {},
      deleteLedger: (_, _p: { ledgerId: number }) => {},
      opened: (_, _p: { md: LogMetadata; segment: LogSegment }) => {},
      switched: (_, _p: { md: LogMetadata; segment: LogSegment }) => {},
      finished: (_, _p: { md: LogMetadata }) => {},
      fail: (_, _p: LogWriterError) => {},
      setError: assign({ error: (_, p: LogWriterError) => p }),
    },
    guards: {
      sealed: ({ event }) => event.type === 'log.read' && event.md.sealed,
      refused: ({ context, event }) => event.type === 'log.read' && writerRefusal(event.md, context.epoch) !== null,
      nothingToRecover: ({ context }) => context.toRecover.length === 0,
      tooManyConflicts: ({ context }) => tooMany(context),
      hasSpare: ({ context }) => context.ledgerId !== null,
    },
  }).createMachine({
    id: 'logWriter',
    context: {
      name: input.name, epoch: 0, seenEpoch: -1, md: null, revision: 0, toRecover: [], ends: [], ledgerId: null,
      closingEnd: null, closedThrough: 0, finish: null, conflicts: 0, error: null,
    },
    on: {
      // An effect's outcome may be unknown (a metadata timeout): the ledger made for this writer may be
      // in the log, so it is kept, never deleted on this path.
      error: { target: '.failed', actions: assign({ error: ({ event }) => ({ code: event.code, message: event.message }), ledgerId: null }) },
    },
    initial: 'claiming',
    states: {
      claiming: {
        entry: { type: 'readLog', params: ({ context }) => ({ name: context.name }) },
        on: {
          'log.read': [
            { guard: 'sealed', target: 'failed', actions: { type: 'setError' as const, params: { code: 'END_OF_STREAM' as const, message: 'the log is sealed: its writer marked the end of the stream' } } },
            {
              guard: ({ context, event }) => context.seenEpoch >= 0 && event.md.epoch !== context.seenEpoch,
              target: 'failed',
              actions: assign({ error: ({ event }) => ({ code: 'LOG_WRITER_CONFLICT' as const, message: `another writer took the log while this one was taking it (epoch ${event.md.epoch})` }) }),
            },
            {
              target: 'claimWriting',
              actions: [
                assign(({ context, event }) => ({ md: event.md, revision: event.revision, seenEpoch: context.seenEpoch >= 0 ? context.seenEpoch : event.md.epoch })),
                { type: 'writeLog', params: ({ context }) => ({ md: change(context, 'claim'), revision: context.revision }) },
              ],
            },
          ],
        },
      },
      claimWriting: {
        on: {
          'log.written': {
            target: 'recovering',
            actions: assign(({ event }) => ({ md: event.md, revision: event.revision, epoch: event.md.epoch, toRecover: segmentsToRecover(event.md), conflicts: 0 })),
          },
          'log.conflict': [
            { guard: 'tooManyConflicts', target: 'failed', actions: { type: 'setError' as const, params: { code: 'METADATA_CONFLICT' as const, message: 'too many concurrent metadata updates' } } },
            { target: 'claiming', actions: assign({ conflicts: ({ context }) => context.conflicts + 1 }) },
          ],
        },
      },
      recovering: {
        always: { guard: 'nothingToRecover', target: 'creating' },
        entry: enqueueActions(({ context, enqueue }) => {
          const segment = context.toRecover[0]
          if (segment) enqueue({ type: 'recoverSegment', params: { segment } })
        }),
        on: {
          'segment.recovered': {
            target: 'recovering',
            reenter: true,
            actions: assign(({ context, event }) => ({
              toRecover: context.toRecover.slice(1),
              ends: event.end === null ? context.ends : [...context.ends, [event.segmentSeq, event.end] as const],
            })),
          },
        },
      },
      creating: {
        entry: { type: 'createLedger', params: ({ context }) => ({ segmentSeq: context.md!.nextSegmentSeq, epoch: context.epoch }) },
        on: {
          'ledger.created': {
            target: 'adding',
            actions: assign({ ledgerId: ({ event }) => event.ledgerId }),
          },
        },
      },
      adding: {
        entry: { type: 'writeLog', params: ({ context }) => ({ md: change(context, 'take'), revision: context.revision }) },
        on: {
          'log.written': {
            target: 'open',
            actions: [
              assign(({ event }) => ({ md: event.md, revision: event.revision, ledgerId: null, ends: [], conflicts: 0 })),
              { type: 'opened', params: ({ event }) => ({ md: (event as { md: LogMetadata }).md, segment: current((event as { md: LogMetadata }).md) }) },
            ],
          },
          'log.conflict': [
            { guard: 'tooManyConflicts', target: 'failed', actions: { type: 'setError' as const, params: { code: 'METADATA_CONFLICT' as const, message: 'too many concurrent metadata updates' } } },
            { target: 'addingReread', actions: [assign({ conflicts: ({ context }) => context.conflicts + 1 }), { type: 'readLog', params: ({ context }) => ({ name: context.name }) }] },
          ],
        },
      },
      addingReread: {
        on: {
          'log.read': [
            { guard: 'refused', target: 'failed', actions: assign({ error: ({ context, event }) => refusalOf(event, context.epoch) }) },
            { target: 'adding', actions: assign(({ event }) => ({ md: event.md, revision: event.revision })) },
          ],
        },
      },
      open: {
        entry: { type: 'createLedger', params: ({ context }) => ({ segmentSeq: context.md!.nextSegmentSeq, epoch: context.epoch }) },
        on: {
          'ledger.created': { actions: assign({ ledgerId: ({ event }) => event.ledgerId }) },
          roll: [
            { guard: 'hasSpare', target: 'switching', actions: assign(({ event }) => ({ closingEnd: event.end, closedThrough: event.closedThrough })) },
            { target: 'awaitingSpare', actions: assign(({ event }) => ({ closingEnd: event.end, closedThrough: event.closedThrough })) },
          ],
          finish: { target: 'finishing', actions: assign(({ event }) => ({ finish: event.mode, closingEnd: event.end, closedThrough: event.closedThrough })) },
        },
      },
      awaitingSpare: {
        on: {
          'ledger.created': { target: 'switching', actions: assign({ ledgerId: ({ event }) => event.ledgerId }) },
          finish: { target: 'finishing', actions: assign(({ event }) => ({ finish: event.mode, closingEnd: event.end, closedThrough: event.closedThrough })) },
        },
      },
      switching: {
        entry: { type: 'writeLog', params: ({ context }) => ({ md: change(context, 'roll'), revision: context.revision }) },
        on: {
          'log.written': {
            target: 'open',
            actions: [
              assign(({ event }) => ({ md: event.md, revision: event.revision, ledgerId: null, closingEnd: null, conflicts: 0 })),
              { type: 'switched', params: ({ event }) => ({ md: (event as { md: LogMetadata }).md, segment: current((event as { md: LogMetadata }).md) }) },
            ],
          },
          'log.conflict': [
            { guard: 'tooManyConflicts', target: 'failed', actions: { type: 'setError' as const, params: { code: 'METADATA_CONFLICT' as const, message: 'too many concurrent metadata updates' } } },
            { target: 'switchReread', actions: [assign({ conflicts: ({ context }) => context.conflicts + 1 }), { type: 'readLog', params: ({ context }) => ({ name: context.name }) }] },
          ],
        },
      },
      switchReread: {
        on: {
          'log.read': [
            { guard: 'refused', target: 'failed', actions: assign({ error: ({ context, event }) => refusalOf(event, context.epoch) }) },
            { target: 'switching', actions: assign(({ event }) => ({ md: event.md, revision: event.revision })) },
          ],
        },
      },
      finishing: {
        entry: { type: 'writeLog', params: ({ context }) => ({ md: change(context, 'finish'), revision: context.revision }) },
        on: {
          'ledger.created': { actions: assign({ ledgerId: ({ event }) => event.ledgerId }) },
          'log.written': [
            { guard: ({ context }) => context.finish === 'seal', target: 'sealed', actions: assign(({ event }) => ({ md: event.md, revision: event.revision })) },
            { target: 'closed', actions: assign(({ event }) => ({ md: event.md, revision: event.revision })) },
          ],
          'log.conflict': [
            { guard: 'tooManyConflicts', target: 'failed', actions: { type: 'setError' as const, params: { code: 'METADATA_CONFLICT' as const, message: 'too many concurrent metadata updates' } } },
            { target: 'finishReread', actions: [assign({ conflicts: ({ context }) => context.conflicts + 1 }), { type: 'readLog', params: ({ context }) => ({ name: context.name }) }] },
          ],
        },
      },
      finishReread: {
        on: {
          'ledger.created': { actions: assign({ ledgerId: ({ event }) => event.ledgerId }) },
          'log.read': [
            { guard: 'refused', target: 'failed', actions: assign({ error: ({ context, event }) => refusalOf(event, context.epoch) }) },
            { target: 'finishing', actions: assign(({ event }) => ({ md: event.md, revision: event.revision })) },
          ],
        },
      },
      // The spare (or a ledger the log never took) is deleted; the binding deletes one made after.
      closed: { type: 'final', entry: enqueueActions(({ context, enqueue }) => { ends(context, enqueue, 'finished') }) },
      sealed: { type: 'final', entry: enqueueActions(({ context, enqueue }) => { ends(context, enqueue, 'finished') }) },
      failed: { type: 'final', entry: enqueueActions(({ context, enqueue }) => { ends(context, enqueue, 'fail') }) },
    },
  })
}

/** A final state's effects: the ledger the log did not take deleted, then the outcome told. */
function ends(context: LogWriterContext, enqueue: (a: never) => void, outcome: 'finished' | 'fail'): void {
  if (context.ledgerId !== null) enqueue({ type: 'deleteLedger', params: { ledgerId: context.ledgerId } } as never)
  if (outcome === 'finished') enqueue({ type: 'finished', params: { md: context.md! } } as never)
  else enqueue({ type: 'fail', params: context.error! } as never)
}

function refusalOf(event: LogWriterEvent, epoch: number): LogWriterError {
  const r = writerRefusal((event as { md: LogMetadata }).md, epoch)!
  return { code: r.code, message: r.message }
}
