// Garbage collection of deleted ledgers (actors/gc.ts). Unit: the scan order (local ids, then
// metadata ids) against ledgers created while it runs, on the in-memory store and KV; the
// compaction ranges; coalesced triggers. Real processes: entries of a deleted ledger are gone
// from every bookie (the bookie answers NO_SUCH_LEDGER), stay gone after kill -9 and a restart
// (the journal still held their adds), the space is reclaimed on real RocksDB, and readjournal
// prints a stopped bookie's journal.

import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { GarbageCollector, collectGarbage, compactionRanges, type GcDeps } from '../../actors/gc.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { QUIRE_BIN } from '../../cli/cluster.ts'
import { directoryBytes } from '../../actors/diskMonitor.ts'
import { openEntryStore } from '../../storage/entryStore.ts'
import { MemoryEntryStore } from '../../storage/memoryEntryStore.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { MetadataStore, type LedgerMetadata } from '../../storage/metadataStore.ts'
import { RC } from '../../transport/wire.ts'
import { payloadFor, sleep, startCluster } from '../support/cluster.ts'

const run = promisify(execFile)

function ledgerMd(ledgerId: number): LedgerMetadata {
  return {
    ledgerId, ensembleSize: 1, writeQuorum: 1, ackQuorum: 1, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
    segments: [{ firstEntryId: 0, ensemble: ['b1'] }], customMetadata: {}, createdAt: 0, passwordCheck: 'x',
  }
}

/** A ledger as a writer makes it: metadata first, then its first entry reaches the bookie. */
async function createLedger(meta: MetadataStore, store: MemoryEntryStore, ledgerId: number): Promise<void> {
  await meta.createLedger(ledgerMd(ledgerId))
  await store.putLedgerState(ledgerId, { masterKey: Buffer.from('k'), digestType: 'crc32c', fenced: false, explicitLac: -1 })
  await store.putEntries([{ ledgerId, entryId: 0, data: Buffer.from(`ledger ${ledgerId}`) }])
}

function memoryDeps(meta: MetadataStore, store: MemoryEntryStore, calls: string[], hooks: { afterLocal?: () => Promise<void>; afterMetadata?: () => Promise<void> } = {}): GcDeps {
  return {
    async localLedgers() {
      calls.push('local')
      const ids: number[] = []
      for await (const id of store.listLedgers()) ids.push(id)
      await hooks.afterLocal?.()
      return ids
    },
    async *metadataLedgers() {
      calls.push('metadata')
      yield* meta.listLedgers()
      await hooks.afterMetadata?.()
    },
    async deleteLocal(ids, ranges) {
      calls.push(`delete ${ids.join(',')} ranges ${ranges.map(([a, b]) => `${a}-${b}`).join(',')}`)
      for (const id of ids) await store.deleteLedger(id)
      for (const [a, b] of ranges) await store.compactLedgers(a, b)
    },
  }
}

const newMeta = (): MetadataStore => new MetadataStore(new MemoryKv(), new MemoryKv(), new MemoryKv())

test('compaction ranges are runs of deleted ledgers that never span a kept one', () => {
  assert.equal(compactionRanges([1, 2, 3, 5, 8, 9, 10], new Set([2, 3, 5, 9, 10])), [[2, 5], [9, 10]])
  assert.equal(compactionRanges([1, 4], new Set([1])), [[1, 1]])
  assert.equal(compactionRanges([1, 4], new Set()), [])
})

test('gc deletes the entries and state of ledgers the metadata no longer names, and only those', async () => {
  const meta = newMeta()
  const store = new MemoryEntryStore()
  for (const id of [1, 2, 3, 4, 5]) await createLedger(meta, store, id)
  await meta.deleteLedger(2)
  await meta.deleteLedger(4)
  const calls: string[] = []
  const r = await collectGarbage(memoryDeps(meta, store, calls))
  assert.equal(r, { local: 5, deleted: [2, 4] })
  assert.equal(calls, ['local', 'metadata', 'delete 2,4 ranges 2-2,4-4'])
  for (const id of [2, 4]) {
    assert.is(await store.getLedgerState(id), null)
    assert.equal(await store.getEntries([{ ledgerId: id, entryId: 0 }]), [null])
  }
  for (const id of [1, 3, 5]) assert.ok((await store.getEntries([{ ledgerId: id, entryId: 0 }]))[0])
  // Nothing left to do: a second run deletes nothing.
  assert.equal((await collectGarbage(memoryDeps(meta, store, []))).deleted, [])
})

test('a ledger created while the scan runs is never collected (local ids are listed before metadata ids)', async () => {
  const meta = newMeta()
  const store = new MemoryEntryStore()
  await createLedger(meta, store, 1)
  await createLedger(meta, store, 2)
  await meta.deleteLedger(2)
  const calls: string[] = []
  const r = await collectGarbage(memoryDeps(meta, store, calls, {
    // Created between the two listings, and after both: each is in metadata before its first entry.
    afterLocal: () => createLedger(meta, store, 10),
    afterMetadata: () => createLedger(meta, store, 11),
  }))
  assert.equal(calls, ['local', 'metadata', 'delete 2 ranges 2-2'])
  assert.equal(r.deleted, [2])
  for (const id of [1, 10, 11]) assert.ok((await store.getEntries([{ ledgerId: id, entryId: 0 }]))[0], `ledger ${id} kept`)

  // The other order is the bug the header warns about: metadata listed before the local scan
  // misses ledger 12, created in between, and would delete its entries.
  const metaFirst = new Set<number>()
  for await (const id of meta.listLedgers()) metaFirst.add(id)
  await createLedger(meta, store, 12)
  const localAfter: number[] = []
  for await (const id of store.listLedgers()) localAfter.push(id)
  assert.equal(localAfter.filter((id) => !metaFirst.has(id)), [12])
})

test('a metadata listing that never ends abandons the run: TIMEOUT, nothing deleted', async () => {
  const deleted: number[] = []
  try {
    await collectGarbage({
      localLedgers: async () => [1, 2],
      async *metadataLedgers() {
        yield 1
        await new Promise(() => {})
      },
      async deleteLocal(ids) { deleted.push(...ids) },
    }, { listTimeoutMs: 50 })
    assert.unreachable('the listing hangs')
  } catch (err) {
    assert.is((err as { code?: string }).code, 'TIMEOUT')
  }
  assert.equal(deleted, [])
})

test('triggers during a run coalesce into one more run; a failing run is reported and retried', async () => {
  let runs = 0
  let release: () => void = () => {}
  let fail = false
  const gc = new GarbageCollector({
    async localLedgers() {
      runs++
      if (fail) throw new Error('listing failed')
      await new Promise<void>((r) => { release = r })
      return [7]
    },
    async *metadataLedgers() { yield 7 },
    async deleteLocal() { throw new Error('nothing to delete') },
  }, { gcIntervalMs: 0 })
  const first = gc.trigger()
  const second = gc.trigger()
  const third = gc.trigger()
  assert.is(second, third, 'one pending run for every trigger made during a run')
  await sleep(10)
  release()
  assert.equal(await first, { local: 1, deleted: [] })
  await sleep(10)
  release()
  await second
  assert.is(runs, 2)
  fail = true
  try {
    await gc.trigger()
    assert.unreachable('the run failed')
  } catch (err) {
    assert.match(String(err), /listing failed/)
  }
  assert.equal(gc.stats, { runs: 2, failures: 1, deleted: 0 })
  await gc.stop()
})

test('compacting a deleted ledger\'s range and the entry logs reclaims its space on real RocksDB and entry logs', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-gc-'))
  try {
    // Small entry logs, so ledger 1's entries fill logs of their own (payloads are in the logs).
    const store = await openEntryStore(path.join(dir, 'entries'), { logBytesMax: 1024 * 1024 })
    for (const ledgerId of [1, 2]) {
      for (let b = 0; b < 10; b++) {
        await store.putEntries(Array.from({ length: 100 }, (_, i) => ({ ledgerId, entryId: b * 100 + i, data: payloadFor(b * 100 + i, 4000) })))
      }
    }
    await store.flush()
    const full = await directoryBytes(dir)
    await store.deleteLedger(1)
    await store.flush()
    await store.compactLedgers(1, 1)
    const compaction = await store.compactEntryLogs(0.8)
    assert.ok(compaction.emptied + compaction.compacted > 0, JSON.stringify(compaction))
    const after = await directoryBytes(dir)
    assert.ok(after < full * 0.75, `space reclaimed: ${full} -> ${after} bytes`)
    assert.equal(await store.getEntries([{ ledgerId: 1, entryId: 5 }]), [null])
    assert.ok((await store.getEntries([{ ledgerId: 2, entryId: 999 }]))[0]?.equals(payloadFor(999, 4000)))
    await store.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('real bookies: a deleted ledger\'s entries are collected, stay gone after kill -9 and restart, and readjournal prints the journal', async () => {
  const c = await startCluster({ bookies: 0, heartbeatMs: 200 })
  try {
    const gcFast = ['--gc-interval-ms', '300']
    for (let i = 1; i <= 3; i++) await c.startBookie(i, gcFast)
    const client = await c.client()
    const doomed = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
    const kept = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
    for (let i = 0; i < 50; i++) await Promise.all([doomed.append(payloadFor(i, 500)), kept.append(payloadFor(i, 500))])
    await Promise.all([doomed.close(), kept.close()])
    const bookies = new BookieClient(client.nc!)
    const readFrom = (bookieId: string, ledgerId: number) => bookies.read(bookieId, ledgerId, [0, 49], 1 << 20, 5000)
    for (const b of ['bookie-1', 'bookie-2', 'bookie-3']) {
      const r = await readFrom(b, doomed.ledgerId)
      assert.is(r.rc, RC.OK, 'stored before the delete')
      assert.ok(r.entries.every(([rc]) => rc === RC.OK))
    }

    await client.deleteLedger(doomed.ledgerId)
    for (const b of ['bookie-1', 'bookie-2', 'bookie-3']) {
      const deadline = Date.now() + 30_000
      for (;;) {
        const r = await readFrom(b, doomed.ledgerId)
        if (r.rc === RC.NO_SUCH_LEDGER) break
        if (Date.now() > deadline) {
          const gcLines = c.bookie(b).output().split('\n').filter((l) => /"msg":"gc /.test(l))
          throw new Error(`${b} still holds ledger ${doomed.ledgerId}: rc ${r.rc}, entries ${JSON.stringify(r.entries.map(([rc]) => rc))}\n${gcLines.join('\n')}`)
        }
        await sleep(100)
      }
    }

    // kill -9 and restart with GC effectively off: only the journal replay could bring it back.
    c.bookie('bookie-1').kill('SIGKILL')
    await c.bookie('bookie-1').exited
    await c.startBookie(1, ['--gc-interval-ms', '3600000'])
    const after = await readFrom('bookie-1', doomed.ledgerId)
    assert.is(after.rc, RC.NO_SUCH_LEDGER, 'the journal replay did not resurrect the deleted ledger')
    const keptAfter = await readFrom('bookie-1', kept.ledgerId)
    assert.is(keptAfter.rc, RC.OK)
    assert.ok(keptAfter.entries.every(([rc, data], i) => rc === RC.OK && Buffer.from(data!).subarray(-500).equals(payloadFor(i * 49, 500))))
    const r = await (await c.client()).openLedger(kept.ledgerId)
    assert.is((await r.read(0, 49)).length, 50)
    await bookies.close()

    // readjournal on a stopped bookie: what was journaled since the last checkpoint.
    await c.bookie('bookie-2').stop()
    const w = await client.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 })
    for (let i = 0; i < 3; i++) await w.append(payloadFor(i, 123))
    await w.close()
    c.bookie('bookie-3').kill('SIGKILL')
    await c.bookie('bookie-3').exited
    const { stdout } = await run(process.execPath, [QUIRE_BIN, 'shell', 'readjournal', '--data', c.bookie('bookie-3').data])
    for (let i = 0; i < 3; i++) {
      assert.match(stdout, new RegExp(`\\tadd\\s*\\tledger=${w.ledgerId}\\tentry=${i}\\tlength=123\\t`), `entry ${i} listed`)
    }
    assert.match(stdout, new RegExp(`\\tkey\\s*\\tledger=${w.ledgerId}\\tdigest=crc32c`))
    assert.match(stdout, /\d+ add.* in \d+ segment file\(s\)\n$/)
    try {
      await run(process.execPath, [QUIRE_BIN, 'shell', 'readjournal', '--data', c.dir])
      assert.unreachable('not a data folder')
    } catch (err) {
      assert.match(String((err as { stderr?: string }).stderr), /^error INVALID_CONFIG: no journal folder/)
    }
  } finally {
    await c.stop()
  }
})

test.run()
