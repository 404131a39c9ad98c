// Explicit LACs journaled together (actors/lacRecords.ts): the LACs of one writeLacs frame, one
// per idle ledger, are one `lacs` journal record on a real Bookie (real NATS, journal, RocksDB),
// not one record per ledger; replay after a crash restores each ledger's LAC from it, and a
// `lacs` record that fails validation is skipped like any other.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Bookie } from '../../actors/bookie.ts'
import { BookieStorage } from '../../actors/bookieStorage.ts'
import { recordProblem } from '../../actors/journalRecords.ts'
import { LACS_PER_RECORD, LacRecords } from '../../actors/lacRecords.ts'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC } from '../../transport/wire.ts'
import { until } from '../support/natsCluster.ts'

const LEDGERS = 20

test('a writeLacs frame for 20 ledgers is journaled as one record (20 before), and every LAC is taken', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bookie-lac-records-'))
  let nats: NatsServer | null = null
  let bookie: Bookie | null = null
  let nc: Awaited<ReturnType<typeof connectNats>> | null = null
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    const bookieId = 'lac-records'
    bookie = new Bookie({ bookieId, dataDir: path.join(dir, bookieId), nats: nats.url, heartbeatMs: 500, gcIntervalMs: 3_600_000 })
    await bookie.start()
    nc = await connectNats(nats.url, { name: 'bookie-lac-records-test' })
    const client = new BookieClient(nc)
    const key = masterKeyOf('')
    const ids = Array.from({ length: LEDGERS }, (_, i) => 9300 + i)
    const acked = new Set<number>()
    for (const l of ids) client.registerWriter(l, (_, rc) => { if (rc === RC.OK) acked.add(l) })
    for (const l of ids) client.queueAdd(bookieId, l, key, 'crc32c', false, encodeEntry('crc32c', key, l, 0, -1, 0, Buffer.from(`L${l}`)))
    client.flush()
    await until('entry 0 acknowledged on every ledger', 60_000, () => acked.size === LEDGERS)
    const storage = (bookie as unknown as { storage: BookieStorage }).storage
    await storage.quiesce()
    const before = storage.journalStats.records

    client.writeLacs(bookieId, ids.map((ledgerId) => ({ ledgerId, masterKey: key, lac: 0, persist: true })))
    for (const l of ids) await until(`ledger ${l} taking LAC 0`, 60_000, async () => (await client.readLac(bookieId, l, 30_000)).lac === 0)
    await until('the LAC record synced', 60_000, async () => { await storage.quiesce(); return storage.journalStats.records > before })
    await storage.quiesce()
    assert.is(storage.journalStats.records - before, 1, `${LEDGERS} explicit LACs of one frame in one journal record`)
    assert.equal(bookie.lacRecords.stats, { records: 1, lacs: LEDGERS })
    // Synced: each ledger's state takes the LAC at the next checkpoint.
    await storage.checkpoint()
    for (const l of ids) assert.is((await storage.store.getLedgerState(l))?.explicitLac, 0, `ledger ${l}`)
  } finally {
    await nc?.close().catch(() => {})
    await bookie?.stop().catch(() => {})
    await nats?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

/** Stop as a kill -9 would: no checkpoint, no close of the journal. */
async function crash(s: BookieStorage): Promise<void> {
  await s.store.close()
  await (s as unknown as { journal: { fh: { close(): Promise<void> } } }).journal.fh.close()
}

test('replay after a crash restores every ledger of a lacs record; an invalid one is skipped', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-lacs-replay-'))
  try {
    let s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    const synced: number[] = []
    const lacs = new LacRecords((r) => s.append(r), (err) => { throw err })
    lacs.queue(5, 3, () => synced.push(5))
    lacs.queue(6, 7, () => synced.push(6))
    lacs.queue(5, 2, () => synced.push(5))
    await until('the LACs synced', 10_000, () => synced.length === 3)
    assert.equal(lacs.stats, { records: 1, lacs: 3 })
    await s.append({ t: 'lacs', x: [8, 1e300] })
    await s.append({ t: 'lacs', x: [8] })
    await crash(s)
    s = await BookieStorage.open(dir)
    const skipped: string[] = []
    assert.is(await s.replayAndOpen({}, (reason) => skipped.push(reason)), 1)
    assert.equal(skipped, ['lacs record has LAC 1e+300 for ledger 8', 'lacs record without ledger and LAC pairs'])
    assert.is((await s.store.getLedgerState(5))?.explicitLac, 3, 'the highest of ledger 5')
    assert.is((await s.store.getLedgerState(6))?.explicitLac, 7)
    assert.is(await s.store.getLedgerState(8), null)
    await s.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('lacs records: validation, and a turn with more than LACS_PER_RECORD ledgers is split', async () => {
  assert.is(recordProblem({ t: 'lacs', x: [1, -1, 2 ** 52, 5] }), null)
  assert.match(recordProblem({ t: 'lacs', x: [] })!, /without ledger and LAC pairs/)
  assert.match(recordProblem({ t: 'lacs', x: [-1, 3] })!, /names ledger -1/)
  assert.match(recordProblem({ t: 'lacs', x: [1, 'x'] })!, /LAC x for ledger 1/)
  const records: number[][] = []
  const lacs = new LacRecords(async (r) => { if (r.t === 'lacs') records.push(r.x) }, () => {})
  let synced = 0
  for (let l = 0; l < LACS_PER_RECORD + 1; l++) lacs.queue(l, 0, () => synced++)
  await until('every LAC synced', 10_000, () => synced === LACS_PER_RECORD + 1)
  assert.equal(records.map((x) => x.length / 2), [LACS_PER_RECORD, 1])
})

test.run()
