// The read rules of a replication worker's copy step for one entry (PROTOCOL.md "Response
// classes"): which surviving replica to ask next, and when to give up. Pure: actors/entryCopy.ts
// keeps one CopyRead per entry of a batch, feeds it each answer and sends the asks it returns.
// Also the bound on re-sending copied entries a bookie has not acknowledged in time.
//
// Invariants:
// - The first intact copy ends the read (`done`).
// - An explicit "no such entry" (or "no such ledger") and a copy that fails its digest drop that
//   replica for the entry: asking it again would get the same answer.
// - No answer (a timeout, a transport error) and an unknown reply (limbo, an error, stopping) put
//   the replica at the back of the line: it is asked again once the others have been, so a single
//   lost request or reply does not fail the step.
// - An entry is asked at most `replicas + COPY_READ_RETRIES_MAX` times in all; it fails when its
//   replicas are all dropped or its asks are spent. A failure counts what each replica said and
//   never reads "no answer" as "absent".

import { assert } from './errors.ts'

/** Asks of one entry beyond one per replica, spent on replicas that did not answer. */
export const COPY_READ_RETRIES_MAX = 3
/** Times copied entries a bookie has not acknowledged within the add timeout are sent again. */
export const COPY_ADD_RESENDS_MAX = 3

/** What one replica said of one entry, its digest checked: entryAnswer's classes. */
export type CopyAnswer = 'ok' | 'absent' | 'corrupt' | 'unknown'

export interface CopyRead {
  /** Replicas still worth asking, the next one first. */
  readonly line: readonly string[]
  /** Asks made so far (answered or not). */
  readonly asks: number
  readonly asksMax: number
  readonly absent: number
  readonly corrupt: number
  readonly unknown: number
  readonly done: boolean
}

export type CopyStep =
  | { kind: 'ask'; bookieId: string }
  | { kind: 'done' }
  | { kind: 'fail' }

/** The read of an entry whose surviving replicas are `sources`, and its first ask (fail if none). */
export function copyRead(sources: readonly string[]): { state: CopyRead; step: CopyStep } {
  const s: CopyRead = { line: [...sources], asks: 0, asksMax: sources.length + COPY_READ_RETRIES_MAX, absent: 0, corrupt: 0, unknown: 0, done: false }
  return next(s)
}

/** The read after the asked replica (the head of the line) answered `answer`, and what to do. */
export function stepCopyRead(s: CopyRead, answer: CopyAnswer): { state: CopyRead; step: CopyStep } {
  if (s.done) return { state: s, step: { kind: 'done' } }
  const [head, ...rest] = s.line
  assert(head !== undefined && s.asks > 0, 'copyRead: an answer with nobody asked')
  if (answer === 'ok') return { state: { ...s, done: true }, step: { kind: 'done' } }
  if (answer === 'unknown') return next({ ...s, line: [...rest, head], unknown: s.unknown + 1 })
  return next({ ...s, line: rest, absent: s.absent + (answer === 'absent' ? 1 : 0), corrupt: s.corrupt + (answer === 'corrupt' ? 1 : 0) })
}

function next(s: CopyRead): { state: CopyRead; step: CopyStep } {
  const head = s.line[0]
  if (head === undefined || s.asks >= s.asksMax) return { state: { ...s, done: true }, step: { kind: 'fail' } }
  return { state: { ...s, asks: s.asks + 1 }, step: { kind: 'ask', bookieId: head } }
}

/** Why an entry's read failed, for its error message. */
export function copyReadFailure(s: CopyRead): string {
  return `${s.asks} asks: ${s.absent} no such entry, ${s.corrupt} corrupt, ${s.unknown} no answer or unknown`
}
