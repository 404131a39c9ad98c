// Persist before you acknowledge, at the level of the bookie process: a real Bookie (real NATS,
// real journal files with O_DSYNC, real RocksDB) whose journal sync the test holds through the
// journal's `beforeSync` test hook. While a group's sync is held no addAck may leave the bookie;
// once released, every add of the group is acknowledged. The machine's own test
// (test/unit/bookieLedger.test.ts) checks the same rule on the pure machine; this one catches a bookie
// that wires the ack to the wrong event.
//
// "No ack while held" is checked with a barrier, not a sleep: after the held group reached its
// sync, a read to the same bookie is answered over the same connections. NATS keeps one
// publisher's messages in order to a subscriber, so an ack published before that answer arrives
// before it. Each ack also records whether the sync had been released when it arrived.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Bookie } from '../../actors/bookie.ts'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC } from '../../transport/wire.ts'

/** Holds every journal group at its sync while `held`; counts the groups that reached it. */
class SyncGate {
  held = false
  reached = 0
  private waiting: Array<() => void> = []

  readonly beforeSync = async (): Promise<void> => {
    this.reached++
    if (this.held) await new Promise<void>((r) => this.waiting.push(r))
  }

  get waitingGroups(): number {
    return this.waiting.length
  }

  release(): void {
    this.held = false
    for (const r of this.waiting.splice(0)) r()
  }
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

interface Ack { ledgerId: number; rc: number; entryIds: number[]; released: boolean }

test('a bookie sends no addAck while its journal sync is held, and acks every add once it completes', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-ack-after-sync-'))
  const gate = new SyncGate()
  let nats: NatsServer | null = null
  let bookie: Bookie | null = null
  let client: BookieClient | null = null
  let nc: Awaited<ReturnType<typeof connectNats>> | null = null
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    const bookieId = 'held-sync'
    bookie = new Bookie({
      bookieId, dataDir: path.join(dir, bookieId), nats: nats.url, heartbeatMs: 500, gcIntervalMs: 3_600_000,
      journal: { beforeSync: gate.beforeSync },
    })
    await bookie.start()
    nc = await connectNats(nats.url, { name: 'ack-after-sync-test' })
    client = new BookieClient(nc)
    const key = masterKeyOf('')
    const acks: Ack[] = []
    const ledgers = [7001, 7002]
    for (const l of ledgers) client.registerWriter(l, (_, rc, entryIds) => acks.push({ ledgerId: l, rc, entryIds, released: !gate.held }))
    const add = (l: number, from: number, n: number): void => {
      for (let e = from; e < from + n; e++) client!.queueAdd(bookieId, l, key, 'crc32c', false, encodeEntry('crc32c', key, l, e, e - 1, 0, Buffer.from(`L${l}E${e}`)))
    }
    /** Every ack the bookie published before this returns has arrived (see the file header). */
    const barrier = async (): Promise<void> => {
      const r = await client!.read(bookieId, 999_999, [0], 1024, 20_000)
      assert.is(r.rc, RC.NO_SUCH_LEDGER)
    }
    const acked = (l: number): number[] => acks.filter((a) => a.ledgerId === l && a.rc === RC.OK).flatMap((a) => a.entryIds).sort((a, b) => a - b)

    // Unheld: an add is acknowledged (the test sees acks at all).
    add(7001, 0, 1)
    await waitFor('the first ack', () => acked(7001).length === 1)

    // Hold the sync. Five adds reach it; none is acknowledged.
    gate.held = true
    add(7001, 1, 5)
    await waitFor('a group held at its sync', () => gate.waitingGroups === 1)
    await barrier()
    assert.equal(acked(7001), [0], 'no ack while the journal sync is held')
    // More adds, for another ledger too, queue behind the held group: still nothing.
    add(7001, 6, 2)
    add(7002, 0, 3)
    await barrier()
    assert.equal(acked(7001), [0])
    assert.equal(acked(7002), [])

    // Release: every add is acknowledged, and only after the release.
    gate.release()
    await waitFor('every ack', () => acked(7001).length === 8 && acked(7002).length === 3)
    assert.equal(acked(7001), [0, 1, 2, 3, 4, 5, 6, 7])
    assert.equal(acked(7002), [0, 1, 2])
    assert.ok(acks.every((a) => a.rc === RC.OK), `every ack is OK: ${JSON.stringify(acks)}`)
    assert.ok(acks.every((a) => a.released), 'no ack arrived before its sync was released')
    // And the acknowledged entries are readable.
    const r = await client.read(bookieId, 7001, [0, 7], 1 << 20, 20_000)
    assert.equal(r.entries.map(([rc]) => rc), [RC.OK, RC.OK])
  } finally {
    gate.release()
    await client?.close().catch(() => {})
    await nc?.close().catch(() => {})
    await bookie?.stop().catch(() => {})
    await nats?.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
