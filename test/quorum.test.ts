// Properties of the quorum maths (machines/quorum.ts) against brute-force oracles, over every
// E/Qw/Qa up to 7.

import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { isQuireError } from '../machines/errors.ts'
import {
  advanceLac, isAddComplete, isAddDoomed, isEntryAbsent, isFenceCovered, validateQuorum, writeSetIndices, writeSetMask,
} from '../machines/quorum.ts'

const quorum = fc.integer({ min: 1, max: 7 }).chain((e) =>
  fc.integer({ min: 1, max: e }).chain((w) =>
    fc.integer({ min: 1, max: w }).map((a) => ({ ensembleSize: e, writeQuorum: w, ackQuorum: a }))))

const bits = (mask: number, e: number): number[] => [...Array(e).keys()].filter((i) => (mask & (1 << i)) !== 0)

test('write sets: Qw distinct bookies, B[(e+i) mod E], exactly E distinct (ordered) write sets', () => {
  fc.assert(fc.property(quorum, fc.nat(1_000_000), (q, entryId) => {
    const ws = writeSetIndices(entryId, q.ensembleSize, q.writeQuorum)
    assert.is(new Set(ws).size, q.writeQuorum)
    ws.forEach((b, i) => assert.is(b, (entryId + i) % q.ensembleSize))
    const sets = new Set([...Array(3 * q.ensembleSize).keys()].map((e) => writeSetIndices(e, q.ensembleSize, q.writeQuorum).join()))
    assert.is(sets.size, q.ensembleSize)
  }))
})

test('add complete iff at least Qa of its write set acked (oracle: count members)', () => {
  fc.assert(fc.property(quorum, fc.nat(100), fc.nat(127), (q, entryId, acked) => {
    const ws = writeSetIndices(entryId, q.ensembleSize, q.writeQuorum)
    const count = ws.filter((b) => (acked & (1 << b)) !== 0).length
    assert.is(isAddComplete(acked, writeSetMask(entryId, q.ensembleSize, q.writeQuorum), q.ackQuorum), count >= q.ackQuorum)
  }))
})

test('doomed iff the bookies that did not fail cannot reach Qa', () => {
  fc.assert(fc.property(quorum, fc.nat(100), fc.nat(127), (q, entryId, failed) => {
    const ws = writeSetIndices(entryId, q.ensembleSize, q.writeQuorum)
    const left = ws.filter((b) => (failed & (1 << b)) === 0).length
    assert.is(isAddDoomed(failed, writeSetMask(entryId, q.ensembleSize, q.writeQuorum), q), left < q.ackQuorum)
  }))
})

test('absent iff the bookies that did not deny it could not have acked it (Qa of them)', () => {
  fc.assert(fc.property(quorum, fc.nat(100), fc.nat(127), (q, entryId, denied) => {
    const ws = writeSetIndices(entryId, q.ensembleSize, q.writeQuorum)
    const others = ws.filter((b) => (denied & (1 << b)) === 0).length
    assert.is(isEntryAbsent(denied, writeSetMask(entryId, q.ensembleSize, q.writeQuorum), q), others < q.ackQuorum)
  }))
})

test('fence covered iff no write set can still gather Qa acks from unfenced bookies (brute force)', () => {
  for (let e = 1; e <= 7; e++) for (let w = 1; w <= e; w++) for (let a = 1; a <= w; a++) {
    const q = { ensembleSize: e, writeQuorum: w, ackQuorum: a }
    for (let answered = 0; answered < 1 << e; answered++) {
      let someSetCanAck = false
      for (let first = 0; first < e; first++) {
        const unfenced = writeSetIndices(first, e, w).filter((b) => (answered & (1 << b)) === 0).length
        if (unfenced >= a) someSetCanAck = true
      }
      assert.is(isFenceCovered(answered, q), !someSetCanAck, `E=${e} Qw=${w} Qa=${a} answered=${bits(answered, e)}`)
    }
  }
})

test('LAC advances over the contiguous prefix of complete entries only', () => {
  fc.assert(fc.property(fc.array(fc.boolean(), { maxLength: 50 }), (complete) => {
    const lac = advanceLac(-1, complete.length - 1, (id) => complete[id] === true)
    const firstGap = complete.indexOf(false)
    assert.is(lac, firstGap === -1 ? complete.length - 1 : firstGap - 1)
  }))
})

test('validateQuorum accepts E >= Qw >= Qa >= 1 and refuses the rest with INVALID_CONFIG', () => {
  fc.assert(fc.property(fc.integer({ min: -2, max: 9 }), fc.integer({ min: -2, max: 9 }), fc.integer({ min: -2, max: 9 }), (e, w, a) => {
    const ok = e >= w && w >= a && a >= 1
    try {
      validateQuorum({ ensembleSize: e, writeQuorum: w, ackQuorum: a })
      assert.ok(ok)
    } catch (err) {
      assert.ok(!ok && isQuireError(err, 'INVALID_CONFIG'))
    }
  }))
})

test.run()
