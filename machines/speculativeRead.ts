// The read rules for one entry (PROTOCOL.md "Entry on the wire", "Response classes"): which
// replica of its write set to ask next, when to ask another before the first has answered (a
// speculative read, BookKeeper's speculativeReadTimeout), and when to give up with which error.
// Pure: client/readHandle.ts keeps one EntryRead per entry of a read, feeds it the bookies'
// replies and its speculation timer, and sends the asks it returns.
//
// Invariants:
// - Each write-set position is asked at most once per read; the next one is the best-ranked not
//   yet asked (rank from the client's bookie health: healthy, then slow, then failing), in
//   write-set order within a rank. Ranks only order replicas: every replica is still asked when
//   the others fail.
// - The first valid copy ends the read (`ok`); later replies for it change nothing.
// - A failure (digest mismatch, error, timeout) asks the next replica at once; speculation asks
//   it while a request is still out, and only then (nothing is outstanding: nothing to hedge).
// - NO_SUCH_ENTRY only when every replica of the write set said so explicitly; a timeout is
//   unknown, never absent. The read fails only once every replica was asked and none is out.

/** Rank of a bookie for reads: lower is asked first. */
export const HEALTHY = 0
/** It needed a speculative read lately (it did not answer within the speculative delay). */
export const SLOW = 1
/** It timed out or failed a request lately. */
export const FAILING = 2
export type Rank = typeof HEALTHY | typeof SLOW | typeof FAILING

/** A replica's answer for one entry. */
export type Reply = 'ok' | 'missing' | 'corrupt' | 'timeout' | 'error'

export interface EntryRead {
  /** Replicas in the write set (Qw). */
  readonly replicas: number
  /** Write-set positions asked, in the order asked. */
  readonly asked: readonly number[]
  /** Requests asked and not yet answered. */
  readonly outstanding: number
  readonly missing: number
  readonly corrupt: number
  readonly timeouts: number
  readonly done: boolean
}

export type ReadFailure = 'NO_SUCH_ENTRY' | 'CORRUPT_ENTRY' | 'TIMEOUT' | 'BOOKIE_UNAVAILABLE'

/** What to do after an event: ask write-set position `position`, nothing yet, or stop. */
export type Step =
  | { kind: 'ask'; position: number }
  | { kind: 'wait' }
  | { kind: 'done' }
  | { kind: 'fail'; code: ReadFailure }

export type ReadEvent =
  | { type: 'start' }
  | { type: 'reply'; reply: Reply }
  /** The speculative delay passed since the last ask and no request answered. */
  | { type: 'speculate' }

export function entryRead(replicas: number): EntryRead {
  return { replicas, asked: [], outstanding: 0, missing: 0, corrupt: 0, timeouts: 0, done: false }
}

/** The best-ranked write-set position not asked yet (write-set order within a rank), or -1. */
export function nextPosition(replicas: number, asked: readonly number[], rank: (position: number) => Rank): number {
  let best = -1
  let bestRank = Infinity
  for (let p = 0; p < replicas; p++) {
    if (asked.includes(p)) continue
    const r = rank(p)
    if (r < bestRank) {
      best = p
      bestRank = r
    }
  }
  return best
}

/** The read after `ev`, and what to do. */
export function stepRead(s: EntryRead, ev: ReadEvent, rank: (position: number) => Rank): { state: EntryRead; step: Step } {
  if (s.done) return { state: s, step: { kind: 'done' } }
  switch (ev.type) {
    case 'start':
      return s.asked.length === 0 ? ask(s, rank) : { state: s, step: { kind: 'wait' } }
    case 'speculate':
      return s.outstanding > 0 && s.asked.length < s.replicas ? ask(s, rank) : { state: s, step: { kind: 'wait' } }
    case 'reply': {
      if (ev.reply === 'ok') return { state: { ...s, outstanding: s.outstanding - 1, done: true }, step: { kind: 'done' } }
      const failed: EntryRead = {
        ...s,
        outstanding: s.outstanding - 1,
        missing: s.missing + (ev.reply === 'missing' ? 1 : 0),
        corrupt: s.corrupt + (ev.reply === 'corrupt' ? 1 : 0),
        timeouts: s.timeouts + (ev.reply === 'timeout' ? 1 : 0),
      }
      if (failed.asked.length < failed.replicas) return ask(failed, rank)
      if (failed.outstanding > 0) return { state: failed, step: { kind: 'wait' } }
      return { state: { ...failed, done: true }, step: { kind: 'fail', code: failure(failed) } }
    }
  }
}

function ask(s: EntryRead, rank: (position: number) => Rank): { state: EntryRead; step: Step } {
  const position = nextPosition(s.replicas, s.asked, rank)
  return { state: { ...s, asked: [...s.asked, position], outstanding: s.outstanding + 1 }, step: { kind: 'ask', position } }
}

/** Every replica answered without a valid copy: why. Absent only if all said so explicitly. */
function failure(s: EntryRead): ReadFailure {
  if (s.missing === s.replicas) return 'NO_SUCH_ENTRY'
  if (s.corrupt > 0 && s.corrupt + s.missing === s.replicas) return 'CORRUPT_ENTRY'
  if (s.timeouts === s.replicas) return 'TIMEOUT'
  return 'BOOKIE_UNAVAILABLE'
}
