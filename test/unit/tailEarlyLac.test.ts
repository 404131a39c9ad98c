// A tailing reader (client/tail.ts over ReadHandleImpl) learns a LAC from each read reply as it
// arrives: a read asks three bookies, and the first reply that carries a LAC a quarter batch or
// more past what is asked for sends the next read out at once, beside the one still waiting for
// the other two. Before, the
// next read went out only once all three had answered, so a reader less than a batch behind (after
// a stall, at its start) read one batch at a time and, on a loaded machine, stayed behind. In-memory
// bookies whose replies the test releases one by one: what is asked, and when, is counted.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ReadHandleImpl } from '../../client/readHandle.ts'
import type { LedgerMetadata } from '../../storage/metadataStore.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { RC, type ReadResponse } from '../../transport/wire.ts'

const key = masterKeyOf('early-lac')
const LEDGER = 7

interface Asked {
  bookie: string
  ids: number[]
  answer: (lac: number) => void
}

function scriptedBookies() {
  const asked: Asked[] = []
  const bookies = {
    read(bookie: string, ledgerId: number, ids: number[]): Promise<ReadResponse> {
      return new Promise((resolve) => {
        asked.push({
          bookie, ids,
          answer: (lac) => resolve({
            op: 'readResp', reqId: 0, bookieId: bookie, rc: RC.OK, lac,
            entries: ids.map((id) => [RC.OK, encodeEntry('crc32c', key, ledgerId, id, id - 1, (id + 1) * 8, Buffer.from(`entry ${id}`.padEnd(8)))]),
          }),
        })
      })
    },
    readLac: async () => ({ op: 'lacResp' as const, reqId: 0, bookieId: 'b1', rc: RC.OK, lac: 5, lastEntryId: 5 }),
    /** Parked for good: the LAC never moves past what the test answers. */
    longPollLac: (): Promise<never> => new Promise(() => {}),
  }
  return { asked, bookies }
}

const md: LedgerMetadata = {
  ledgerId: LEDGER, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2,
  segments: [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], customMetadata: {}, createdAt: 0, passwordCheck: '',
}

/** Lets queued promise callbacks and microtasks run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r))

/** A tail of batch 100 from entry 0 whose handle knows LAC 5, its first read asked (entries 0..5). */
async function tailFromLac5() {
  const { asked, bookies } = scriptedBookies()
  const h = new ReadHandleImpl({ bookies, masterKey: key, readTimeoutMs: 60_000 }, md)
  await h.readLac()
  const it = h.entries({ from: 0, batch: 100 })
  const first = it.next()
  await settle()
  return { asked, it, first, h }
}

test('the first reply with a higher LAC sends the next read while the other replies of the first are out', async () => {
  const { asked, it, first } = await tailFromLac5()
  // Entries 0..5, each asked of the first bookie of its write set.
  assert.equal(asked.map((a) => [a.bookie, a.ids]), [['b1', [0, 3]], ['b2', [1, 4]], ['b3', [2, 5]]])
  asked[0]!.answer(50)
  await settle()
  const second = asked.slice(3)
  assert.ok(second.length > 0, 'a read of what LAC 50 confirms is out before b2 and b3 answered')
  assert.equal(second.flatMap((a) => a.ids).sort((x, y) => x - y), Array.from({ length: 45 }, (_, i) => 6 + i), 'entries 6..50, none past the LAC learned')
  for (const a of asked.slice(1)) a.answer(50)
  const got = [(await first).value?.entryId]
  for (let i = 1; i <= 50; i++) got.push((await it.next()).value?.entryId)
  assert.equal(got, Array.from({ length: 51 }, (_, i) => i), 'delivered in order, each once')
  await it.return?.()
})

test('a reply whose LAC confirms less than a quarter batch more sends no read before the first is done', async () => {
  const { asked, it, first } = await tailFromLac5()
  asked[0]!.answer(29)
  await settle()
  assert.is(asked.length, 3, 'still only the first read (24 more entries, a quarter batch is 25)')
  for (const a of asked.slice(1)) a.answer(29)
  assert.is((await first).value?.entryId, 0)
  await settle()
  assert.equal(asked.slice(3).flatMap((a) => a.ids).sort((x, y) => x - y), Array.from({ length: 24 }, (_, i) => 6 + i), 'then entries 6..29')
  await it.return?.()
})

test('readUnconfirmed on the same handle never lets its tail read past the confirmed LAC', async () => {
  const { asked, it, first, h } = await tailFromLac5()
  const unconfirmed = h.readUnconfirmed(0, 40)
  await settle()
  assert.is(h.lastAddConfirmed, 5, 'the LAC is not raised for readUnconfirmed')
  const tailAsks = asked.slice(0, 3)
  const beside = asked.length
  for (const a of tailAsks) a.answer(5)
  assert.is((await first).value?.entryId, 0)
  await settle()
  // Caught up at 5 (it long-polls); it once read 6..40 on the LAC lent to readUnconfirmed.
  assert.equal(asked.slice(beside).flatMap((a) => a.ids), [], 'the tail asked for nothing past 5')
  for (const a of asked.slice(3, beside)) a.answer(5)
  assert.is((await unconfirmed).length, 41)
  assert.is(h.lastAddConfirmed, 5)
  await it.return?.()
})

test.run()
