// machines/damage.ts: which entries the metadata places on a bookie (a damaged entry outside them
// is dropped from the bookie's list), against a brute-force oracle over the write sets.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { placedOn } from '../../machines/damage.ts'
import type { LedgerView } from '../../machines/replicator.ts'

/** The write set of `entryId`, straight from PROTOCOL.md "Striping". */
function writeSet(md: LedgerView, entryId: number): string[] {
  let seg = null
  for (const s of md.segments) if (s.firstEntryId <= entryId) seg = s
  if (!seg || (md.state === 'CLOSED' && entryId > md.lastEntryId)) return []
  return Array.from({ length: md.writeQuorum }, (_, i) => seg.ensemble[(entryId + i) % md.ensembleSize]!)
}

test('placedOn agrees with the write sets of every segment, open or closed', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.array(fc.integer({ min: 1, max: 20 }), { maxLength: 3 }),
    fc.boolean(), fc.integer({ min: 0, max: 80 }), fc.integer({ min: 0, max: 2 ** 31 }),
    (e, qwRaw, gaps, closed, lastEntryId, seed) => {
      const qw = Math.min(qwRaw, e)
      const bookies = Array.from({ length: e + 3 }, (_, i) => `b${i}`)
      let first = 0
      const segments = [0, ...gaps].map((g, k) => {
        first += k === 0 ? 0 : g
        const rot = (seed + k * 7) % bookies.length
        return { firstEntryId: first, ensemble: Array.from({ length: e }, (_, i) => bookies[(rot + i) % bookies.length]!) }
      })
      const md: LedgerView = { state: closed ? 'CLOSED' : 'OPEN', lastEntryId: closed ? first + lastEntryId : -1, ensembleSize: e, writeQuorum: qw, segments }
      for (let id = 0; id <= first + 90; id++) {
        const ws = writeSet(md, id)
        for (const b of bookies) assert.is(placedOn(md, b, id), ws.includes(b), `entry ${id} on ${b}`)
      }
    },
  ), { numRuns: 200 })
})

test.run()
