// Quorum maths of the replication protocol (PROTOCOL.md "Striping", "Add path", "Recovery").
// Pure functions over small integers; the fast-check properties in test/quorum.test.ts hold them
// against brute-force oracles.
//
// Invariants:
// - E >= Qw >= Qa >= 1, and an ensemble has exactly E distinct write sets.
// - The write set of entry e is ensemble indices (e + i) mod E for i in 0..Qw-1.
// - LAC is the end of the contiguous prefix of complete entries; it never moves backwards.

import { QuireError } from './errors.ts'

export interface QuorumConfig {
  readonly ensembleSize: number
  readonly writeQuorum: number
  readonly ackQuorum: number
}

export const DEFAULT_QUORUM: QuorumConfig = { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }

/** Quorum sizes must satisfy E >= Qw >= Qa >= 1; anything else is an INVALID_CONFIG. */
export function validateQuorum(q: QuorumConfig): QuorumConfig {
  const { ensembleSize: e, writeQuorum: w, ackQuorum: a } = q
  for (const [name, v] of [['ensembleSize', e], ['writeQuorum', w], ['ackQuorum', a]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 64) {
      throw new QuireError('INVALID_CONFIG', `${name} must be an integer from 1 to 64, got ${v}`, { [name]: v })
    }
  }
  if (w > e) throw new QuireError('INVALID_CONFIG', `write quorum (${w}) must not exceed ensemble size (${e})`, { ...q })
  if (a > w) throw new QuireError('INVALID_CONFIG', `ack quorum (${a}) must not exceed write quorum (${w})`, { ...q })
  return q
}

/** Ensemble indices that store entry `entryId`: B[(entryId + i) mod E] for i in 0..Qw-1. */
export function writeSetIndices(entryId: number, ensembleSize: number, writeQuorum: number): number[] {
  const out = new Array<number>(writeQuorum)
  const start = entryId % ensembleSize
  for (let i = 0; i < writeQuorum; i++) out[i] = (start + i) % ensembleSize
  return out
}

/** Bit mask of the write set of `entryId` over ensemble indices (E <= 31 for masks). */
export function writeSetMask(entryId: number, ensembleSize: number, writeQuorum: number): number {
  let mask = 0
  for (const i of writeSetIndices(entryId, ensembleSize, writeQuorum)) mask |= 1 << i
  return mask
}

export function popcount(mask: number): number {
  let n = 0
  for (let m = mask >>> 0; m !== 0; m &= m - 1) n++
  return n
}

/** An add completes once Qa bookies of its write set acknowledged it. */
export function isAddComplete(ackedMask: number, writeMask: number, ackQuorum: number): boolean {
  return popcount(ackedMask & writeMask) >= ackQuorum
}

/** An add can no longer complete when more than Qw - Qa of its write set failed it. */
export function isAddDoomed(failedMask: number, writeMask: number, q: QuorumConfig): boolean {
  return popcount(failedMask & writeMask) > q.writeQuorum - q.ackQuorum
}

/**
 * Recovery: an entry is absent only when at least Qw - Qa + 1 bookies of its write set answered
 * an explicit "no such entry". Timeouts and errors are unknown and never count.
 */
export function isEntryAbsent(noSuchEntryMask: number, writeMask: number, q: QuorumConfig): boolean {
  return popcount(noSuchEntryMask & writeMask) >= q.writeQuorum - q.ackQuorum + 1
}

/**
 * Fencing is effective once, for every one of the E write sets, at least Qw - Qa + 1 of its
 * bookies have answered: then no write set can still gather Qa acks from the old writer.
 */
export function isFenceCovered(answeredMask: number, q: QuorumConfig): boolean {
  const need = q.writeQuorum - q.ackQuorum + 1
  for (let first = 0; first < q.ensembleSize; first++) {
    const ws = writeSetMask(first, q.ensembleSize, q.writeQuorum)
    if (popcount(answeredMask & ws) < need) return false
  }
  return true
}

/**
 * Advance the LAC over the contiguous prefix of complete entries. `complete(id)` tells whether
 * entry `id` (> lac) is complete; stops at the first that is not or at `lastAddPushed`.
 */
export function advanceLac(lac: number, lastAddPushed: number, complete: (entryId: number) => boolean): number {
  let next = lac
  while (next < lastAddPushed && complete(next + 1)) next++
  return next
}
