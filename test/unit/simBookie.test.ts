// The product's bookie (actors/bookie.ts) over the simulator's parts: a memory disk, the simulated
// network and metadata, a process clock (sim/). Defects the simulator found, each held here:
// - a fence whose ledger-state write failed (a full store, after the fence's journal record had
//   synced) was never answered, and the ledger could not be fenced on that bookie again until a
//   restart, so recovery could not cover the fence (seed 1565 of the mixed runs): the fence is
//   answered once journaled, its state goes to the store with the next checkpoint that succeeds,
//   and it holds across a crash and restart after the journal moved past it.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Bookie } from '../../actors/bookie.ts'
import { RC } from '../../machines/responses.ts'
import type { BookieDisk, BookieEntryStore } from '../../storage/bookieDisk.ts'
import { MemoryDisk } from '../../storage/memoryDisk.ts'
import { MetadataStore } from '../../storage/metadataStore.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { SimKv } from '../../sim/kv.ts'
import { ProcessClock, SimNetwork } from '../../sim/network.ts'
import { SimTransport } from '../../sim/transport.ts'
import { World } from '../../sim/world.ts'

const LEDGER = 7
const KEY = masterKeyOf('pw')

test('a fence whose state write fails is answered, and holds after a crash and restart', async () => {
  const world = new World(5)
  const net = new SimNetwork(world)
  const buckets = [new SimKv(world), new SimKv(world), new SimKv(world), new SimKv(world)] as const
  const disk = new MemoryDisk({ clock: world })
  // The store refuses ledger-state writes while `full` (the journal still takes records).
  let full = false
  const refusing = (d: BookieDisk): BookieDisk => ({
    ...d,
    openStore: async (o) => {
      const s = await d.openStore(o)
      const enospc = (): Promise<never> => Promise.reject(Object.assign(new Error('ENOSPC (test)'), { code: 'ENOSPC' }))
      return new Proxy(s, {
        get: (t, k) => ((k === 'putLedgerState' || k === 'putLedgerStates') && full ? enospc : Reflect.get(t, k)),
      }) as BookieEntryStore
    },
  })
  let kill = (): void => {}
  const start = (): void => {
    const clock = new ProcessClock(world)
    const endpoint = net.endpoint('b1')
    const metadata = new MetadataStore(...buckets)
    const bookie = new Bookie({
      bookieId: 'b1', dataDir: 'memory:b1', nats: [], heartbeatMs: 50, checkpointIntervalMs: 40, gcIntervalMs: 0, diskCheckIntervalMs: 60_000,
      parts: { disk: refusing(disk.open('b1')), clock, connect: async () => ({ network: endpoint, metadata }) },
    })
    void bookie.start()
    kill = () => { clock.kill(); endpoint.kill(); disk.crash() }
  }
  start()
  await world.run(100)
  const client = new SimTransport('c1', world, net)
  const acks: Array<[number, number[]]> = []
  client.registerWriter(LEDGER, (_b, rc, ids) => { acks.push([rc, ids]) })
  const add = (entryId: number): void => client.queueAdd('b1', LEDGER, KEY, 'crc32c', false, encodeEntry('crc32c', KEY, LEDGER, entryId, entryId - 1, entryId + 1, Buffer.from(`e${entryId}`)))

  add(0)
  await world.run(world.now() + 20)
  assert.equal(acks, [[RC.OK, [0]]])

  full = true
  const fence = client.readLac('b1', LEDGER, 100, { masterKey: KEY }).then((r) => r.rc, (err: unknown) => String(err))
  await world.run(world.now() + 150)
  assert.is(await fence, RC.OK, 'the fence is answered once journaled, whatever the store says')
  add(1)
  await world.run(world.now() + 20)
  assert.equal(acks.at(-1), [RC.FENCED, [1]])

  // Space back: a checkpoint writes the fence's state, and the journal moves past its record.
  full = false
  await world.run(world.now() + 200)
  kill()
  start()
  await world.run(world.now() + 200)
  add(1)
  await world.run(world.now() + 20)
  assert.equal(acks.at(-1), [RC.FENCED, [1]], 'still fenced after the restart')
})

test.run()
