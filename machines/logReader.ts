// A reader of a named log following its segments (PROTOCOL.md "Logs on top of ledgers"), as a
// machine stepped by its binding (client/logReader.ts), which performs each effect and answers
// with an event: `readLog` (→ `log.read`), `readSegment` (records delivered, then
// `segment.ended` with the position reached, or `segment.missing` when its ledger is gone),
// `wait` (→ `waited`), and the outcomes `end` (the log is sealed and read to its end) and `fail`.
// Rules:
// - a position before the first record the log holds is TRUNCATED, naming that first position;
// - the segment read next is the first one not truncated at or after the position; a closed
//   segment ends at the last entry the log gives it, an open one when its ledger is closed;
// - after a segment ends: if the log still calls it open (its ledger was closed by a new writer's
//   recovery, not yet recorded), wait and look again; else go on at the next segment;
// - nothing left to read: end when the log is sealed, else wait for the writer;
// - a segment whose ledger is gone: if the log no longer holds it, the position rule above applies
//   (TRUNCATED); if it still does, that is NO_SUCH_LEDGER, never a silent skip.
// Pure.

import { assign, enqueueActions, setup } from 'xstate'
import type { ErrorCode } from './errors.ts'
import { comparePositions, formatPosition, type LogPosition } from './logPosition.ts'
import { firstAvailable, type LogMetadata, type LogSegment } from './logRules.ts'

export interface LogReaderInput { name: string; from: LogPosition; pollMs: number }

export interface LogReaderContext {
  name: string
  pos: LogPosition
  pollMs: number
  /** The segment being read, or just read. */
  segment: LogSegment | null
  /** Set when the segment's ledger was found missing: decided on the next read of the log. */
  missing: boolean
  /** The log is sealed and read to its end. */
  done: boolean
  error: { code: ErrorCode; message: string } | null
}

export type LogReaderEvent =
  | { type: 'log.read'; md: LogMetadata }
  | { type: 'segment.ended'; pos: LogPosition }
  | { type: 'segment.missing'; pos: LogPosition }
  | { type: 'waited' }

type Next =
  | { kind: 'truncated'; first: LogPosition }
  | { kind: 'read'; segment: LogSegment; from: LogPosition }
  | { kind: 'wait' }
  | { kind: 'end' }

/** Where a reader at `pos` goes with the log as `md` says. */
export function nextRead(md: LogMetadata, pos: LogPosition): Next {
  const first = firstAvailable(md)
  if (comparePositions(pos, first) < 0) return { kind: 'truncated', first }
  const segment = md.segments.find((s) => s.state !== 'truncated' && s.segmentSeq >= pos.segmentSeq)
  if (!segment) return md.sealed ? { kind: 'end' } : { kind: 'wait' }
  return { kind: 'read', segment, from: segment.segmentSeq > pos.segmentSeq ? { segmentSeq: segment.segmentSeq, entryId: 0, slot: 0 } : pos }
}

/** The last entry of a segment a reader reads to: a closed one's, or none yet (follow the ledger). */
export const segmentEnd = (s: LogSegment): number => (s.state === 'closed' ? s.lastEntryId : Number.POSITIVE_INFINITY)

export function logReaderMachine(input: LogReaderInput) {
  return setup({
    types: {} as { context: LogReaderContext; events: LogReaderEvent },
    actions: {
      readLog: (_, _p: { name: string }) => {},
      readSegment: (_, _p: { segment: LogSegment; from: LogPosition; end: number }) => {},
      wait: (_, _p: { ms: number }) => {},
      end: () => {},
      fail: (_, _p: { code: ErrorCode; message: string }) => {},
    },
  }).createMachine({
    id: 'logReader',
    context: { name: input.name, pos: input.from, pollMs: input.pollMs, segment: null, missing: false, done: false, error: null },
    initial: 'locating',
    states: {
      locating: {
        entry: { type: 'readLog', params: ({ context }) => ({ name: context.name }) },
        on: {
          'log.read': [
            {
              // Its ledger is gone, yet the log still holds the segment: not a truncation.
              guard: ({ context, event }) => context.missing && event.md.segments.some((s) => s.segmentSeq === context.segment!.segmentSeq && s.state !== 'truncated'),
              target: 'failed',
              actions: assign({ error: ({ context }) => ({ code: 'NO_SUCH_LEDGER' as const, message: `log ${context.name}: segment ${context.segment!.segmentSeq}'s ledger ${context.segment!.ledgerId} is gone` }) }),
            },
            {
              // The segment just read is still open in the log: a new writer closed its ledger and has not recorded it yet.
              guard: ({ context, event }) => !context.missing && context.segment !== null && context.pos.segmentSeq === context.segment.segmentSeq &&
                event.md.segments.some((s) => s.segmentSeq === context.segment!.segmentSeq && s.state === 'open'),
              target: 'waiting',
            },
            {
              target: 'deciding',
              actions: assign(({ context }) => (context.segment !== null && !context.missing && context.pos.segmentSeq === context.segment.segmentSeq
                ? { pos: { segmentSeq: context.segment.segmentSeq + 1, entryId: 0, slot: 0 } } : {})),
            },
          ],
        },
      },
      deciding: {
        entry: enqueueActions(({ context, event, enqueue }) => {
          const md = (event as { md: LogMetadata }).md
          const next = nextRead(md, context.pos)
          if (next.kind === 'truncated') {
            enqueue.assign({ error: { code: 'TRUNCATED', message: `log ${context.name} no longer holds records before ${formatPosition(next.first)} (the reader is at ${formatPosition(context.pos)})` } })
          } else if (next.kind === 'read') {
            enqueue.assign({ segment: next.segment, pos: next.from, missing: false })
            enqueue({ type: 'readSegment', params: { segment: next.segment, from: next.from, end: segmentEnd(next.segment) } })
          } else if (next.kind === 'wait') {
            enqueue.assign({ segment: null, missing: false })
            enqueue({ type: 'wait', params: { ms: context.pollMs } })
          } else {
            enqueue.assign({ segment: null, done: true })
          }
        }),
        always: [
          { guard: ({ context }) => context.error !== null, target: 'failed' },
          { guard: ({ context }) => context.done, target: 'ended' },
        ],
        on: {
          'segment.ended': { target: 'locating', actions: assign({ pos: ({ event }) => event.pos }) },
          'segment.missing': { target: 'locating', actions: assign({ pos: ({ event }) => event.pos, missing: true }) },
          waited: { target: 'locating' },
        },
      },
      waiting: {
        entry: { type: 'wait', params: ({ context }) => ({ ms: context.pollMs }) },
        on: { waited: { target: 'locating' } },
      },
      ended: { type: 'final', entry: 'end' },
      failed: { type: 'final', entry: { type: 'fail', params: ({ context }) => context.error! } },
    },
  })
}
