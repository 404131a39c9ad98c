// Properties of the quorum maths (machines/quorum.ts) against brute-force oracles in which a set of
// ensemble positions is a plain array of indices, over every accepted E (1 to ENSEMBLE_SIZE_MAX,
// with the top value and the 32-bit edges drawn often); exhaustively over every fenced set for
// E <= 7; and the concrete E=40 case of positions 31-33 aliasing 0-1 in a 32-bit mask.

import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { isQuireError } from '../../machines/errors.ts'
import {
  ENSEMBLE_SIZE_MAX, advanceLac, fullMask, hasIndex, indexBit, indexMask, indicesOf, isAddComplete, isAddDoomed,
  isEntryAbsent, isFenceCovered, popcount, validateQuorum, writeSetIndices, writeSetMask,
} from '../../machines/quorum.ts'

const positions = (e: number): number[] => [...Array(e).keys()]

// E over the whole accepted range; the edges of a 32-bit word and the top value come up often.
const ensembleSize = fc.oneof(
  fc.integer({ min: 1, max: ENSEMBLE_SIZE_MAX }),
  fc.constantFrom(1, 2, 31, 32, 33, 40, ENSEMBLE_SIZE_MAX - 1, ENSEMBLE_SIZE_MAX),
)
const quorum = ensembleSize.chain((e) =>
  fc.integer({ min: 1, max: e }).chain((w) =>
    fc.integer({ min: 1, max: w }).map((a) => ({ ensembleSize: e, writeQuorum: w, ackQuorum: a }))))

/** A quorum, an entry (its write set wraps round the top of the ensemble often) and its write set. */
const entryOf = quorum.chain((q) => fc.nat(3 * q.ensembleSize).map((entryId) => ({
  q, entryId, ws: writeSetIndices(entryId, q.ensembleSize, q.writeQuorum),
})))

/** A set of positions of an ensemble of `e`, with about as many members of `ws` as not. */
const positionsAround = (e: number, ws: number[]) =>
  fc.tuple(fc.subarray(ws), fc.subarray(positions(e))).map(([inSet, any]) => [...new Set([...inSet, ...any])])

/** An entry and a set of positions around its write set (acked, failed or denied). */
const entryWithSet = entryOf.chain((x) => fc.tuple(fc.constant(x), positionsAround(x.q.ensembleSize, x.ws)))

const inSet = (set: number[], ws: number[]): number => ws.filter((b) => set.includes(b)).length

test('index masks: every position has its own bit, and a mask holds exactly the positions put in it', () => {
  for (let i = 0; i < ENSEMBLE_SIZE_MAX; i++) {
    for (let j = 0; j < ENSEMBLE_SIZE_MAX; j++) assert.is((indexBit(i) & indexBit(j)) !== 0n, i === j, `positions ${i} and ${j}`)
  }
  fc.assert(fc.property(ensembleSize.chain((e) => fc.tuple(fc.constant(e), fc.subarray(positions(e)))), ([e, set]) => {
    const mask = indexMask(set)
    assert.equal(indicesOf(mask), [...set].sort((x, y) => x - y))
    assert.is(popcount(mask), set.length)
    for (let i = 0; i < e + 2; i++) assert.is(hasIndex(mask, i), set.includes(i))
    assert.equal(indicesOf(fullMask(e)), positions(e))
    assert.is(popcount(fullMask(e) & ~mask), e - set.length)
  }))
})

test('write sets: Qw distinct bookies, B[(e+i) mod E], exactly E distinct (ordered) write sets', () => {
  fc.assert(fc.property(quorum, fc.nat(1_000_000), (q, entryId) => {
    const ws = writeSetIndices(entryId, q.ensembleSize, q.writeQuorum)
    assert.is(new Set(ws).size, q.writeQuorum)
    ws.forEach((b, i) => assert.is(b, (entryId + i) % q.ensembleSize))
    assert.equal(indicesOf(writeSetMask(entryId, q.ensembleSize, q.writeQuorum)), [...ws].sort((x, y) => x - y))
    const sets = new Set([...Array(3 * q.ensembleSize).keys()].map((e) => writeSetIndices(e, q.ensembleSize, q.writeQuorum).join()))
    assert.is(sets.size, q.ensembleSize)
  }))
})

test('add complete iff at least Qa of its write set acked (oracle: count members)', () => {
  fc.assert(fc.property(entryWithSet, ([{ q, entryId, ws }, acked]) => {
    const complete = isAddComplete(indexMask(acked), writeSetMask(entryId, q.ensembleSize, q.writeQuorum), q.ackQuorum)
    assert.is(complete, inSet(acked, ws) >= q.ackQuorum)
  }))
})

test('doomed iff the bookies that did not fail cannot reach Qa', () => {
  fc.assert(fc.property(entryWithSet, ([{ q, entryId, ws }, failed]) => {
    const left = ws.length - inSet(failed, ws)
    assert.is(isAddDoomed(indexMask(failed), writeSetMask(entryId, q.ensembleSize, q.writeQuorum), q), left < q.ackQuorum)
  }))
})

test('absent iff the bookies that did not deny it could not have acked it (Qa of them)', () => {
  fc.assert(fc.property(entryWithSet, ([{ q, entryId, ws }, denied]) => {
    const others = ws.length - inSet(denied, ws)
    assert.is(isEntryAbsent(indexMask(denied), writeSetMask(entryId, q.ensembleSize, q.writeQuorum), q), others < q.ackQuorum)
  }))
})

/** Oracle: some write set of the ensemble still has Qa bookies outside `answered`. */
function someSetCanAck(answered: number[], q: { ensembleSize: number; writeQuorum: number; ackQuorum: number }): boolean {
  return positions(q.ensembleSize).some((first) =>
    writeSetIndices(first, q.ensembleSize, q.writeQuorum).filter((b) => !answered.includes(b)).length >= q.ackQuorum)
}

test('fence covered iff no write set can still gather Qa acks from unfenced bookies (every E, random answers)', () => {
  // Coverage needs most of the ensemble answered: draw the few that did not.
  const unanswered = quorum.chain((q) => fc.tuple(fc.constant(q), fc.subarray(positions(q.ensembleSize), { maxLength: Math.min(4, q.ensembleSize) })))
  fc.assert(fc.property(unanswered, ([q, silent]) => {
    const answered = positions(q.ensembleSize).filter((i) => !silent.includes(i))
    assert.is(isFenceCovered(indexMask(answered), q), !someSetCanAck(answered, q), `E=${q.ensembleSize} Qw=${q.writeQuorum} Qa=${q.ackQuorum} silent=${silent}`)
  }))
  fc.assert(fc.property(quorum.chain((q) => fc.tuple(fc.constant(q), fc.subarray(positions(q.ensembleSize)))), ([q, answered]) => {
    assert.is(isFenceCovered(indexMask(answered), q), !someSetCanAck(answered, q))
  }))
})

test('fence covered iff no write set can still gather Qa acks from unfenced bookies (E <= 7, every answered set)', () => {
  for (let e = 1; e <= 7; e++) for (let w = 1; w <= e; w++) for (let a = 1; a <= w; a++) {
    const q = { ensembleSize: e, writeQuorum: w, ackQuorum: a }
    for (let set = 0; set < 2 ** e; set++) {
      const answered = positions(e).filter((i) => Math.floor(set / 2 ** i) % 2 === 1)
      assert.is(isFenceCovered(indexMask(answered), q), !someSetCanAck(answered, q), `E=${e} Qw=${w} Qa=${a} answered=${answered}`)
    }
  }
})

test('E=40: acks from positions 0 and 31 do not complete entry 31 (write set 31-33); 31 and 33 do', () => {
  const q = { ensembleSize: 40, writeQuorum: 3, ackQuorum: 2 }
  const ws = writeSetMask(31, 40, 3)
  assert.equal(indicesOf(ws), [31, 32, 33])
  assert.not.ok(isAddComplete(indexMask([0, 31]), ws, q.ackQuorum))
  assert.not.ok(isAddComplete(indexMask([0, 1, 31]), ws, q.ackQuorum))
  assert.ok(isAddComplete(indexMask([31, 33]), ws, q.ackQuorum))
  assert.not.ok(isEntryAbsent(indexMask([0, 1]), ws, q), '"no such entry" from outside the write set says nothing')
  // Positions 0-31 answered: write set 32-34 has no fenced bookie, so fencing is not effective.
  assert.not.ok(isFenceCovered(indexMask(positions(32)), q))
  // Top of the range: entry 63 of E=64 wraps to {63, 0, 1}.
  assert.equal(indicesOf(writeSetMask(63, 64, 3)), [0, 1, 63])
  assert.ok(isFenceCovered(fullMask(64), { ensembleSize: 64, writeQuorum: 64, ackQuorum: 1 }))
  assert.not.ok(isFenceCovered(fullMask(63), { ensembleSize: 64, writeQuorum: 64, ackQuorum: 1 }))
})

test('LAC advances over the contiguous prefix of complete entries only', () => {
  fc.assert(fc.property(fc.array(fc.boolean(), { maxLength: 50 }), (complete) => {
    const lac = advanceLac(-1, complete.length - 1, (id) => complete[id] === true)
    const firstGap = complete.indexOf(false)
    assert.is(lac, firstGap === -1 ? complete.length - 1 : firstGap - 1)
  }))
})

test(`validateQuorum accepts ${ENSEMBLE_SIZE_MAX} >= E >= Qw >= Qa >= 1 and refuses the rest with INVALID_CONFIG`, () => {
  const size = fc.oneof(fc.integer({ min: -2, max: ENSEMBLE_SIZE_MAX + 3 }), fc.constantFrom(0.5, NaN, Infinity, ENSEMBLE_SIZE_MAX, ENSEMBLE_SIZE_MAX + 1))
  fc.assert(fc.property(size, size, size, (e, w, a) => {
    const ok = [e, w, a].every((v) => Number.isInteger(v) && v <= ENSEMBLE_SIZE_MAX) && e >= w && w >= a && a >= 1
    try {
      validateQuorum({ ensembleSize: e, writeQuorum: w, ackQuorum: a })
      assert.ok(ok, `accepted E=${e} Qw=${w} Qa=${a}`)
    } catch (err) {
      assert.ok(!ok && isQuireError(err, 'INVALID_CONFIG'), `refused E=${e} Qw=${w} Qa=${a}: ${err}`)
    }
  }))
  assert.equal(validateQuorum({ ensembleSize: ENSEMBLE_SIZE_MAX, writeQuorum: ENSEMBLE_SIZE_MAX, ackQuorum: ENSEMBLE_SIZE_MAX }).ensembleSize, ENSEMBLE_SIZE_MAX)
})

test.run()
