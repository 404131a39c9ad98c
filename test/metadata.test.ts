// The metadata store's rules over the in-memory KV (same CAS semantics as JetStream KV):
// unique ledger ids from CAS'd ranges, NO_SUCH_LEDGER, CAS conflicts on stale revisions,
// placement that never picks a bookie twice, dead, read-only or excluded.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition } from 'xstate'
import { isQuireError } from '../machines/errors.ts'
import { writerMachine } from '../machines/writer.ts'
import { MemoryKv } from '../storage/memoryKv.ts'
import { MetadataStore, pickBookies, type BookieRecord, type LedgerMetadata } from '../storage/metadataStore.ts'
import { KvConflict } from '../storage/types.ts'

const store = (): MetadataStore => new MetadataStore(new MemoryKv(), new MemoryKv(), new MemoryKv())
const md = (ledgerId: number): LedgerMetadata => ({
  ledgerId, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], customMetadata: {}, createdAt: 0, passwordCheck: 'x',
})
const bookie = (id: string, extra: Partial<BookieRecord> = {}): BookieRecord => ({
  bookieId: id, state: 'writable', heartbeatAt: 1000, heartbeatMs: 100, startedAt: 0, host: 'h', pid: 1, ...extra,
})

test('ledger ids are unique across stores sharing one counter, in ranges', async () => {
  const cluster = new MemoryKv()
  const a = new MetadataStore(new MemoryKv(), new MemoryKv(), cluster)
  const b = new MetadataStore(new MemoryKv(), new MemoryKv(), cluster)
  const ids = await Promise.all(Array.from({ length: 2500 }, (_, i) => (i % 2 ? a : b).allocateLedgerId()))
  assert.is(new Set(ids).size, 2500)
  assert.ok(ids.every((id) => Number.isSafeInteger(id) && id >= 1))
})

test('read of an unknown ledger is NO_SUCH_LEDGER; a stale revision is a KvConflict', async () => {
  const s = store()
  await s.readLedger(5).then(() => assert.unreachable(), (e) => assert.ok(isQuireError(e, 'NO_SUCH_LEDGER')))
  const created = await s.createLedger(md(5))
  const next = await s.writeLedger({ ...created.value, state: 'CLOSED' }, created.revision)
  assert.ok(next.revision > created.revision)
  await s.writeLedger({ ...created.value, lastEntryId: 9 }, created.revision).then(() => assert.unreachable(), (e) => assert.instance(e, KvConflict))
  assert.is((await s.readLedger(5)).value.state, 'CLOSED')
  await s.createLedger(md(5)).then(() => assert.unreachable(), (e) => assert.ok(isQuireError(e, 'METADATA_CONFLICT')))
})

test('listLedgers is ascending; deleteLedger removes one and refuses unknown ids', async () => {
  const s = store()
  for (const id of [30, 4, 12]) await s.createLedger(md(id))
  const ids: number[] = []
  for await (const id of s.listLedgers()) ids.push(id)
  assert.equal(ids, [4, 12, 30])
  await s.deleteLedger(12)
  await s.deleteLedger(12).then(() => assert.unreachable(), (e) => assert.ok(isQuireError(e, 'NO_SUCH_LEDGER')))
})

test('placement: distinct, live, writable, not excluded; duplicates in the listing never leak in', () => {
  const all = [bookie('a'), bookie('b'), bookie('b'), bookie('c', { state: 'readonly' }), bookie('d', { heartbeatAt: 0 }), bookie('e')]
  for (let seed = 0; seed < 200; seed++) {
    let x = seed
    const rnd = (): number => ((x = (x * 48271) % 2147483647) / 2147483647)
    const picked = pickBookies(all, 3, 1100, rnd)
    assert.is(new Set(picked).size, 3)
    assert.equal([...picked].sort(), ['a', 'b', 'e'])
  }
  assert.throws(() => pickBookies(all, 4, 1100, Math.random), (e: unknown) => isQuireError(e, 'NOT_ENOUGH_BOOKIES'))
  assert.throws(() => pickBookies(all, 3, 1100, Math.random, ['a']), (e: unknown) => isQuireError(e, 'NOT_ENOUGH_BOOKIES'))
})

test('a writer refuses an ensemble that names a bookie twice', () => {
  const input = { ledgerId: 1, quorum: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }, ensemble: ['a', 'b', 'a'], lastEntryId: -1, length: 0 }
  let message = ''
  try {
    const [snap] = initialTransition(writerMachine, input)
    assert.is(snap.status, 'error')
    message = String((snap as { error?: unknown }).error)
  } catch (err) {
    message = String(err)
  }
  assert.match(message, /distinct bookies/)
})

test.run()
