// PROTOCOL.md's metadata rules for close and ensemble change (machines/ledgerRules.ts), branch by branch.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ensembleChangeRefusal, recoveryCloseDecision, segmentsAfterChange, writerCloseDecision } from '../../machines/ledgerRules.ts'

test('writer close: OPEN writes; IN_RECOVERY is FENCED; CLOSED at the same entry is success, else an error', () => {
  assert.equal(writerCloseDecision({ state: 'OPEN', lastEntryId: -1 }, 9), { kind: 'write' })
  assert.is((writerCloseDecision({ state: 'IN_RECOVERY', lastEntryId: -1 }, 9) as { code: string }).code, 'FENCED')
  assert.equal(writerCloseDecision({ state: 'CLOSED', lastEntryId: 9 }, 9), { kind: 'done' })
  assert.is((writerCloseDecision({ state: 'CLOSED', lastEntryId: 7 }, 9) as { code: string }).code, 'METADATA_CONFLICT')
})

test('recovery close: writes unless another recoverer closed it; agreeing is success', () => {
  assert.equal(recoveryCloseDecision({ state: 'IN_RECOVERY', lastEntryId: -1 }, 4), { kind: 'write' })
  assert.equal(recoveryCloseDecision({ state: 'CLOSED', lastEntryId: 4 }, 4), { kind: 'done' })
  assert.is((recoveryCloseDecision({ state: 'CLOSED', lastEntryId: 3 }, 4) as { code: string }).code, 'METADATA_CONFLICT')
})

test('ensemble change: a new segment at LAC + 1, or the last one replaced when it starts there', () => {
  const md = { state: 'OPEN' as const, segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }] }
  const grown = segmentsAfterChange(md.segments, 41, ['a', 'd', 'c'])
  assert.equal(grown, [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 42, ensemble: ['a', 'd', 'c'] }])
  const replaced = segmentsAfterChange([{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 42, ensemble: ['a', 'd', 'c'] }], 41, ['a', 'd', 'e'])
  assert.equal(replaced, [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 42, ensemble: ['a', 'd', 'e'] }])
  const fromEmpty = segmentsAfterChange(md.segments, -1, ['x', 'b', 'c'])
  assert.equal(fromEmpty, [{ firstEntryId: 0, ensemble: ['x', 'b', 'c'] }])
  assert.equal(md.segments, [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], 'the input is not modified')
})

test('ensemble change only while OPEN: IN_RECOVERY is FENCED, CLOSED is LEDGER_CLOSED', () => {
  assert.is(ensembleChangeRefusal('OPEN'), null)
  assert.is(ensembleChangeRefusal('IN_RECOVERY')?.code, 'FENCED')
  assert.is(ensembleChangeRefusal('CLOSED')?.code, 'LEDGER_CLOSED')
})

test.run()
