// A bookie's RocksDB work per ledger once its actor is loaded (actors/bookie.ts loadLedger,
// actors/bookieStorage.ts putLedgerStateAtCheckpoint). Many ledgers written at once each get an
// add and then an idle writer's explicit LAC per round: neither may read the ledger's state, seek
// its last entry, or write its state (the LAC is journaled and synced; the checkpoint writes the
// states in one batch before it records its position, and replay restores them until then).
// Counted on a real Bookie (real NATS, journal and RocksDB), with the store's calls wrapped.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Bookie } from '../../actors/bookie.ts'
import type { BookieStorage } from '../../actors/bookieStorage.ts'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC } from '../../transport/wire.ts'
import { until } from '../support/natsCluster.ts'

const LEDGERS = 20
const ROUNDS = 5

test('adds and explicit LACs of loaded ledgers read no ledger state, seek no last entry and write no state until the checkpoint, which writes them in one batch', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bookie-state-writes-'))
  let nats: NatsServer | null = null
  let bookie: Bookie | null = null
  let nc: Awaited<ReturnType<typeof connectNats>> | null = null
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    const bookieId = 'state-writes'
    const dataDir = path.join(dir, bookieId)
    bookie = new Bookie({ bookieId, dataDir, nats: nats.url, heartbeatMs: 500, gcIntervalMs: 3_600_000 })
    await bookie.start()
    nc = await connectNats(nats.url, { name: 'bookie-state-writes-test' })
    const client = new BookieClient(nc)
    const key = masterKeyOf('')
    const ids = Array.from({ length: LEDGERS }, (_, i) => 9100 + i)
    const acked = new Map<number, number>(ids.map((l) => [l, 0]))
    for (const l of ids) {
      client.registerWriter(l, (_, rc, entryIds) => {
        if (rc === RC.OK) acked.set(l, acked.get(l)! + entryIds.length)
      })
    }
    const round = (e: number): void => {
      for (const l of ids) client.queueAdd(bookieId, l, key, 'crc32c', false, encodeEntry('crc32c', key, l, e, e - 1, 0, Buffer.from(`L${l}E${e}`)))
      client.flush()
    }
    const storage = (bookie as unknown as { storage: BookieStorage }).storage
    // Entry 0 loads each ledger's actor (one state read and one last-entry seek each) and fixes its key.
    round(0)
    await until('entry 0 acknowledged on every ledger', 60_000, () => ids.every((l) => acked.get(l) === 1))
    // The keys' state writes wait behind the entry store's writes: a checkpoint waits for them.
    await storage.checkpoint()

    const calls = { getLedgerState: 0, putLedgerState: 0, putLedgerStates: 0, statesInBatches: 0, lastEntryId: 0 }
    const store = storage.store
    const count = <K extends 'getLedgerState' | 'putLedgerState' | 'lastEntryId'>(name: K): void => {
      const orig = store[name].bind(store) as (...a: unknown[]) => unknown
      ;(store as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => { calls[name]++; return orig(...a) }
    }
    count('getLedgerState')
    count('putLedgerState')
    count('lastEntryId')
    const putStates = store.putLedgerStates.bind(store)
    store.putLedgerStates = (states) => { calls.putLedgerStates++; calls.statesInBatches += states.size; return putStates(states) }

    for (let e = 1; e <= ROUNDS; e++) {
      round(e)
      await until(`entry ${e} acknowledged on every ledger`, 60_000, () => ids.every((l) => acked.get(l) === e + 1))
      // The idle writers' explicit LACs: entry e carries LAC e-1, this one says e.
      client.writeLacs(bookieId, ids.map((ledgerId) => ({ ledgerId, masterKey: key, lac: e, persist: true })))
      for (const l of ids) await until(`ledger ${l} taking LAC ${e}`, 60_000, async () => (await client.readLac(bookieId, l, 30_000)).lac === e)
      // Every LAC record synced, and what runs after its sync has run.
      await storage.quiesce()
      await new Promise((r) => setImmediate(r))
    }
    assert.equal({ get: calls.getLedgerState, put: calls.putLedgerState, seek: calls.lastEntryId }, { get: 0, put: 0, seek: 0 },
      `${LEDGERS} ledgers x ${ROUNDS} rounds of an add and an explicit LAC touch no ledger state in RocksDB`)

    await storage.checkpoint()
    assert.is(calls.putLedgerStates, 1, 'the checkpoint writes the deferred states in one batch')
    assert.is(calls.statesInBatches, LEDGERS)
    for (const l of ids) assert.is((await store.getLedgerState(l))?.explicitLac, ROUNDS, `ledger ${l}'s explicit LAC is in RocksDB once checkpointed`)
  } finally {
    await nc?.close().catch(() => {})
    await bookie?.stop().catch(() => {})
    await nats?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
