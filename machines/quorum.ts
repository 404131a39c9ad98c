// Quorum maths of the replication protocol (PROTOCOL.md "Striping", "Add path", "Recovery").
// Pure functions over small integers and sets of ensemble indices; the fast-check properties in
// test/unit/quorum.test.ts hold them against brute-force oracles over every accepted E.
//
// Invariants:
// - 1 <= Qa <= Qw <= E <= ENSEMBLE_SIZE_MAX, and an ensemble has exactly E distinct write sets.
// - The write set of entry e is ensemble indices (e + i) mod E for i in 0..Qw-1.
// - A set of ensemble indices (write set, acks, fenced, ...) is an IndexMask: bit i is position i,
//   for every i the ensemble has; no position ever aliases another.
// - LAC is the end of the contiguous prefix of complete entries; it never moves backwards.
//
// Why IndexMask is a bigint: JavaScript's bit operators work on 32-bit signed integers, so with
// `1 << i` position 32 aliases position 0 and `1 << 31` is negative; an ensemble of 40 once let
// acks from positions 0 and 31 complete entry 31 (write set 31-33), which only one of its bookies
// had. A bigint mask is exact for any E, with no sign or width edge to check at a cap (capping E
// at 31 instead would need that check in every expression, and a refusal wherever a quorum comes
// in: createLedger, metadata read from KV, recovery). The writer's hot path pays a few bigint
// operations per ack, about 15 ns against some 10 us for the machine's transition: measured per
// entry through the writer actor, within noise of the 32-bit masks. ENSEMBLE_SIZE_MAX bounds
// sane configuration, not what the arithmetic can hold.

import { QuireError, assert } from './errors.ts'

export interface QuorumConfig {
  readonly ensembleSize: number
  readonly writeQuorum: number
  readonly ackQuorum: number
}

export const DEFAULT_QUORUM: QuorumConfig = { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }

/** The largest ensemble (and so write and ack quorum) a ledger may have. */
export const ENSEMBLE_SIZE_MAX = 64

/** Quorum sizes must satisfy 1 <= Qa <= Qw <= E <= ENSEMBLE_SIZE_MAX; anything else is INVALID_CONFIG. */
export function validateQuorum(q: QuorumConfig): QuorumConfig {
  const { ensembleSize: e, writeQuorum: w, ackQuorum: a } = q
  for (const [name, v] of [['ensembleSize', e], ['writeQuorum', w], ['ackQuorum', a]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > ENSEMBLE_SIZE_MAX) {
      throw new QuireError('INVALID_CONFIG', `${name} must be an integer from 1 to ${ENSEMBLE_SIZE_MAX}, got ${v}`, { [name]: v })
    }
  }
  if (w > e) throw new QuireError('INVALID_CONFIG', `write quorum (${w}) must not exceed ensemble size (${e})`, { ...q })
  if (a > w) throw new QuireError('INVALID_CONFIG', `ack quorum (${a}) must not exceed write quorum (${w})`, { ...q })
  return q
}

// ---- sets of ensemble indices ----

/** A set of ensemble indices: bit i stands for ensemble position i (see the header for why bigint). */
export type IndexMask = bigint

export const NO_INDICES: IndexMask = 0n

// Precomputed so that the writer's per-ack bit costs no shift and no BigInt() conversion.
const BITS: readonly IndexMask[] = Array.from({ length: ENSEMBLE_SIZE_MAX }, (_, i) => 1n << BigInt(i))

/** The set holding only ensemble position `i`. */
export function indexBit(i: number): IndexMask {
  const bit = BITS[i]
  if (bit !== undefined) return bit
  assert(Number.isInteger(i) && i >= 0, `an ensemble index is a non-negative integer, got ${i}`)
  return 1n << BigInt(i)
}

/** The set of the given ensemble positions. */
export function indexMask(indices: Iterable<number>): IndexMask {
  let mask = NO_INDICES
  for (const i of indices) mask |= indexBit(i)
  return mask
}

/** Every position of an ensemble of `ensembleSize`. */
export function fullMask(ensembleSize: number): IndexMask {
  assert(Number.isInteger(ensembleSize) && ensembleSize >= 0, `an ensemble size is a non-negative integer, got ${ensembleSize}`)
  return (1n << BigInt(ensembleSize)) - 1n
}

export function hasIndex(mask: IndexMask, i: number): boolean {
  return (mask & indexBit(i)) !== NO_INDICES
}

/** The positions in `mask`, ascending. */
export function indicesOf(mask: IndexMask): number[] {
  assert(mask >= NO_INDICES, 'an index mask is never negative')
  const out: number[] = []
  for (let i = 0, m = mask; m !== NO_INDICES; i++, m >>= 1n) if ((m & 1n) !== NO_INDICES) out.push(i)
  return out
}

/** How many positions `mask` holds. */
export function popcount(mask: IndexMask): number {
  // A negative bigint (a complement left unmasked) has infinitely many bits set: a bug, not a count.
  assert(mask >= NO_INDICES, 'an index mask is never negative')
  let n = 0
  for (let m = mask; m !== NO_INDICES; m &= m - 1n) n++
  return n
}

// ---- write sets and quorums ----

/** Ensemble indices that store entry `entryId`: B[(entryId + i) mod E] for i in 0..Qw-1. */
export function writeSetIndices(entryId: number, ensembleSize: number, writeQuorum: number): number[] {
  const out = new Array<number>(writeQuorum)
  const start = entryId % ensembleSize
  for (let i = 0; i < writeQuorum; i++) out[i] = (start + i) % ensembleSize
  return out
}

/** The write set of `entryId` as a set of ensemble indices. */
export function writeSetMask(entryId: number, ensembleSize: number, writeQuorum: number): IndexMask {
  return indexMask(writeSetIndices(entryId, ensembleSize, writeQuorum))
}

/** An add completes once Qa bookies of its write set acknowledged it. */
export function isAddComplete(ackedMask: IndexMask, writeMask: IndexMask, ackQuorum: number): boolean {
  return popcount(ackedMask & writeMask) >= ackQuorum
}

/** An add can no longer complete when more than Qw - Qa of its write set failed it. */
export function isAddDoomed(failedMask: IndexMask, writeMask: IndexMask, q: QuorumConfig): boolean {
  return popcount(failedMask & writeMask) > q.writeQuorum - q.ackQuorum
}

/**
 * Recovery: an entry is absent only when at least Qw - Qa + 1 bookies of its write set answered
 * an explicit "no such entry". Timeouts and errors are unknown and never count.
 */
export function isEntryAbsent(noSuchEntryMask: IndexMask, writeMask: IndexMask, q: QuorumConfig): boolean {
  return popcount(noSuchEntryMask & writeMask) >= q.writeQuorum - q.ackQuorum + 1
}

/**
 * Fencing is effective once, for every one of the E write sets, at least Qw - Qa + 1 of its
 * bookies have answered: then no write set can still gather Qa acks from the old writer.
 */
export function isFenceCovered(answeredMask: IndexMask, q: QuorumConfig): boolean {
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
