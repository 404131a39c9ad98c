// Quire on a three-server NATS cluster (real nats-servers routed together with JetStream
// clustered, real bookie processes, real fsync and RocksDB). Each bookie is homed on a different
// server; a writer on one server and a tailing reader on another. While the writer appends, kill -9
// a server that is neither the writer's nor the reader's, then (after it rejoins) the writer's own.
// Checked: the metadata buckets are replicated on every server, every acknowledged entry reads
// back (the tail sees each one once, in order), appends keep being acknowledged after each kill
// without an ensemble change, the ledger's metadata survives the loss of the server it was
// created through, and the ledger closes and reads fully from a client on a surviving server.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connectClient as connect, isQuireError, type QuireClientImpl as QuireClient, type WriteHandle } from '../../client/internal.ts'
import { startBookieProcess, type BookieProcess } from '../../cli/cluster.ts'
import { startNatsCluster, type NatsCluster } from '../../cli/natsCluster.ts'
import { waitForBookies } from '../../cli/sandbox.ts'
import { BUCKETS, clusterSizeOf, openMetadata } from '../../storage/openMetadata.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { payloadFor, sleep } from '../support/cluster.ts'
import { metadataLeaders, until } from '../support/natsCluster.ts'
import { within } from '../support/processes.ts'

interface Ctx {
  dir: string
  nats: NatsCluster
  bookies: BookieProcess[]
  clients: QuireClient[]
  conns: NatsConnection[]
}

const t = suite<Ctx>('natsCluster')

t.before(async (ctx) => {
  ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'quire-natscluster-'))
  ctx.bookies = []
  ctx.clients = []
  ctx.conns = []
  // A cluster name of its own: another test's cluster on this host (tests run side by side) that
  // reaches one of these ports after a kill must not be taken into this one.
  ctx.nats = await startNatsCluster({ dir: path.join(ctx.dir, 'nats'), size: 3, name: `e2e-${process.pid}` })
})

t.after(async (ctx) => {
  await Promise.all(ctx.clients.map((c) => c.close().catch(() => {})))
  await Promise.all(ctx.conns.map((c) => c.close().catch(() => {})))
  for (const b of ctx.bookies) b.kill('SIGKILL')
  await Promise.all(ctx.bookies.map((b) => b.exited))
  await ctx.nats?.stop()
  await rm(ctx.dir, { recursive: true, force: true })
})

/** Client names connected to server i, from its monitoring endpoint. */
async function connectedTo(ctx: Ctx, i: number): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${ctx.nats.servers[i]!.monitorPort}/connz?limit=1024`)
  const body = (await res.json()) as { connections?: Array<{ name?: string }> }
  return (body.connections ?? []).map((c) => c.name ?? '')
}



t('metadata buckets get one replica per server (at most 3); an existing R1 bucket is scaled up', async (ctx) => {
  const nc = await connectNats(ctx.nats.urlsFrom(0), { name: 'natsCluster.test-admin' })
  ctx.conns.push(nc)
  assert.is(clusterSizeOf(nc.info), 3)
  // As if created before the cluster grew: one replica each.
  await openMetadata(nc, { metadataReplicas: 1 })
  const jsm = await jetstreamManager(nc)
  for (const b of Object.values(BUCKETS)) assert.is((await jsm.streams.info(`KV_${b}`)).config.num_replicas, 1, b)
  await openMetadata(nc)
  for (const b of Object.values(BUCKETS)) {
    const info = await jsm.streams.info(`KV_${b}`)
    assert.is(info.config.num_replicas, 3, b)
    const peers = new Set([info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)])
    assert.equal([...peers].sort(), ['n1', 'n2', 'n3'], `${b} is placed on every server`)
  }
  // Asking for more replicas than the cluster has servers is refused, naming the bucket.
  try {
    await openMetadata(nc, { metadataReplicas: 5 })
    assert.unreachable('5 replicas on 3 servers')
  } catch (err) {
    assert.ok(isQuireError(err) && err.code === 'INVALID_CONFIG', String(err))
    assert.match(String(err), /quire_/)
  }
  try {
    await openMetadata(nc, { metadataReplicas: 0 })
    assert.unreachable('0 replicas')
  } catch (err) {
    assert.ok(isQuireError(err) && err.code === 'INVALID_CONFIG', String(err))
  }
})

t('writes ride out kill -9 of a NATS server, then of the writer\'s own; every acked entry reads back', async (ctx) => {
  const { nats } = ctx
  // Bookie i is homed on server i (its URL list starts there).
  for (let i = 0; i < 3; i++) {
    const id = `bookie-${i + 1}`
    ctx.bookies.push(startBookieProcess({
      id, data: path.join(ctx.dir, id), nats: nats.urlsFrom(i).join(','), extraArgs: ['--heartbeat-ms', '1000'],
    }))
  }
  const client = async (home: number, name: string): Promise<QuireClient> => {
    const c = await connect({ servers: nats.urlsFrom(home), name, addTimeoutMs: 10_000, readTimeoutMs: 3000 })
    ctx.clients.push(c)
    return c
  }
  const writerClient = await client(0, 'writer')
  const readerClient = await client(1, 'reader')
  await waitForBookies(writerClient, 3, 30_000)
  for (let i = 0; i < 3; i++) {
    const names = await connectedTo(ctx, i)
    assert.ok(names.includes(`quire-bookie-bookie-${i + 1}`), `bookie-${i + 1} on server ${i}: ${names.join(', ')}`)
  }
  assert.ok((await connectedTo(ctx, 0)).includes('writer'))
  assert.ok((await connectedTo(ctx, 1)).includes('reader'))

  const writer: WriteHandle = await writerClient.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  const ledgerId = writer.ledgerId
  const createdMd = writer.metadata

  // The tailing reader, on server 1 (never killed): each entry once, in order.
  const reader = await readerClient.openLedger(ledgerId)
  const seen: number[] = []
  let tailError: unknown = null
  const tail = (async () => {
    try {
      for await (const e of reader.entries({ from: 0, pollMs: 1000 })) {
        assert.ok(Buffer.from(payloadFor(e.entryId)).equals(e.payload), `payload of entry ${e.entryId}`)
        seen.push(e.entryId)
      }
    } catch (err) {
      tailError = err
    }
  })()

  // Append continuously, at most 16 in flight; entry i carries payloadFor(i).
  let lastAcked = -1
  let writeError: unknown = null
  let stopWriting = false
  const writing = (async () => {
    const inflight = new Set<Promise<void>>()
    for (let i = 0; !stopWriting && writeError === null; i++) {
      const want = i
      const p: Promise<void> = writer.append(payloadFor(i)).then(
        (id) => {
          if (id !== want) writeError ??= new Error(`append ${want} got entry id ${id}`)
          if (id !== lastAcked + 1) writeError ??= new Error(`entry ${id} acked after ${lastAcked}`)
          lastAcked = id
        },
        (err: unknown) => { writeError ??= err },
      ).finally(() => inflight.delete(p))
      inflight.add(p)
      if (inflight.size >= 16) await Promise.race(inflight)
      await sleep(2)
    }
    await Promise.all(inflight)
  })()
  const ackedPast = (mark: number, what: string) => until(what, 30_000, () => {
    if (writeError !== null) throw writeError
    return lastAcked >= mark
  })

  await ackedPast(100, 'the first 100 entries')
  // Phase 1: server 2 dies (bookie-3's home; neither the writer's nor the reader's).
  const killed1At = lastAcked
  await nats.kill(2)
  await ackedPast(killed1At + 200, '200 entries acknowledged after server 2 died')
  assert.ok((await connectedTo(ctx, 0)).concat(await connectedTo(ctx, 1)).includes('quire-bookie-bookie-3'), 'bookie-3 moved to a live server')

  // Server 2 rejoins (its store kept); then the writer's own server dies.
  await nats.restart(2)
  await until('metadata leaders after server 2 rejoined', 30_000, () => metadataLeaders(readerClient.nc!))
  const killed2At = lastAcked
  await nats.kill(0)
  await ackedPast(killed2At + 200, '200 entries acknowledged after the writer\'s server died')
  assert.is.not(writerClient.nc!.info?.server_name, 'n1', 'the writer reconnected to another server')
  assert.is(writer.lastAddPushed >= killed2At + 200, true)

  stopWriting = true
  // Bounded: appends still in flight must settle (acked or failed) within the add timeout and a
  // re-send or two; a hang here fails the test instead of stalling the run.
  await within(60_000, 'the appends in flight to settle after the last server kill', writing)
  assert.is(writeError, null, String(writeError))
  assert.is(writer.state, 'open')
  // No ensemble change was needed: the adds lost with each server were re-sent to the same bookies.
  assert.equal(writer.metadata.segments, createdMd.segments)

  // The metadata, written through server 0 (now dead), is still there, from a client on server 1.
  await until('metadata leaders after server 0 died', 30_000, () => metadataLeaders(readerClient.nc!))
  const before = await readerClient.metadata.readLedger(ledgerId)
  assert.is(before.value.state, 'OPEN')
  assert.equal(before.value.segments, createdMd.segments)
  assert.is(before.value.createdAt, createdMd.createdAt)

  await writer.close()
  const closed = await readerClient.metadata.readLedger(ledgerId)
  assert.is(closed.value.state, 'CLOSED')
  assert.is(closed.value.lastEntryId, lastAcked)

  // The tail ends at the close, having seen every entry once, in order.
  await until('the tail to end', 30_000, () => seen.length > lastAcked || tailError !== null)
  await within(30_000, 'the tail to return after the close', tail)
  assert.is(tailError, null, String(tailError))
  assert.equal(seen, Array.from({ length: lastAcked + 1 }, (_, i) => i))

  // A new client homed on a surviving server reads the whole ledger, byte for byte.
  const late = await client(2, 'late-reader')
  const h = await late.openLedger(ledgerId)
  assert.is(h.lastAddConfirmed, lastAcked)
  for (let first = 0; first <= lastAcked; first += 500) {
    const last = Math.min(lastAcked, first + 499)
    const entries = await h.read(first, last)
    assert.is(entries.length, last - first + 1)
    for (const e of entries) assert.ok(Buffer.from(payloadFor(e.entryId)).equals(e.payload), `entry ${e.entryId}`)
  }
})

t.run()
