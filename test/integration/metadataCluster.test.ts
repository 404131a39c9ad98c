// The metadata store on a real three-server NATS cluster (nats-server 2.9, JetStream clustered,
// buckets with three replicas), in one cluster's life:
// 1. `quire node` started while the cluster has no quorum (fresh buckets cannot be created, let
//    alone elect leaders): it logs its retries and registers its bookie once the servers are back,
//    instead of exiting 1.
// 2. Read-your-writes: a get right after a write (same connection, another connection, through
//    MetadataStore after a CAS) always sees that write: counted over hundreds of writes, and
//    again while the bucket's leader is made to step down every 700 ms.
// 3. With one server of three killed, every key listing (bookies, ledgers, under-replication
//    marks) succeeds, fast, many times over: no listing depends on a consumer placed on a peer.
// 4. With two of three killed (no quorum): reads, listings and createLedger fail with TIMEOUT (a
//    typed error, whatever the server answered: 10008, no reply), and a node given a short
//    metadataStartTimeoutMs gives up with `error TIMEOUT` after logging its retries.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startNodeProcess, type ManagedProcess } from '../../cli/cluster.ts'
import { startNatsCluster, type NatsCluster } from '../../cli/natsCluster.ts'
import { isQuireError } from '../../machines/errors.ts'
import { AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { openKv } from '../../storage/kv.ts'
import type { LedgerMetadata, MetadataStore } from '../../storage/metadataStore.ts'
import { openMetadata } from '../../storage/openMetadata.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { metadataLeaders, until } from '../support/natsCluster.ts'
import { cleanEnv } from '../support/nodes.ts'

interface Ctx {
  dir: string
  nats: NatsCluster
  nodes: ManagedProcess[]
  conns: NatsConnection[]
}

const t = suite<Ctx>('metadataCluster')

t.before(async (ctx) => {
  ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'quire-mdcluster-'))
  ctx.nodes = []
  ctx.conns = []
  // A cluster name of its own: another test's cluster on this host (tests run side by side) that
  // reaches one of these ports after a kill must not be taken into this one.
  ctx.nats = await startNatsCluster({ dir: path.join(ctx.dir, 'nats'), size: 3, name: `mdcluster-${process.pid}` })
})

t.after(async (ctx) => {
  for (const n of ctx.nodes ?? []) n.kill('SIGKILL')
  await Promise.all((ctx.nodes ?? []).map((n) => n.exited))
  await Promise.all((ctx.conns ?? []).map((c) => c.close().catch(() => {})))
  await ctx.nats?.stop()
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true })
})

async function conn(ctx: Ctx, home: number, name: string): Promise<NatsConnection> {
  const nc = await connectNats(ctx.nats.urlsFrom(home), { name })
  ctx.conns.push(nc)
  return nc
}


const RETRY_LINE = 'metadata store not answering yet; retrying'
const retries = (node: ManagedProcess): number => node.output().split('\n').filter((l) => l.includes(RETRY_LINE)).length

const ledger = (ledgerId: number): LedgerMetadata => ({
  ledgerId, ensembleSize: 1, writeQuorum: 1, ackQuorum: 1, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['b1'] }], customMetadata: {}, createdAt: 0, passwordCheck: 'x',
})

t('quire node started while the cluster has no quorum retries, then registers its bookie once the servers are back', async (ctx) => {
  const { nats } = ctx
  await nats.kill(1)
  await nats.kill(2)
  const node = startNodeProcess({
    args: ['--roles', 'bookie', '--id', 'b1', '--data', path.join(ctx.dir, 'b1'), '--nats', nats.urlsFrom(0).join(','),
      '--heartbeat-ms', '500', '--metadata-replicas', '3'],
    env: cleanEnv(),
  })
  ctx.nodes.push(node)
  try {
    await until('the node to log a retry', 30_000, () => {
      if (node.proc.exitCode !== null) throw new Error(`node exited ${node.proc.exitCode} instead of retrying:\n${node.output()}`)
      return retries(node) >= 1
    })
  } finally {
    // Whole again, whatever happened, for the tests after this one.
    await nats.restart(1)
    await nats.restart(2)
  }
  const nc = await conn(ctx, 1, 'mdcluster-check')
  await until('the metadata buckets to have leaders', 30_000, () => metadataLeaders(nc))
  const md = await openMetadata(nc, { metadataReplicas: 3 })
  await until('bookie b1 to register', 60_000, async () => {
    if (node.proc.exitCode !== null) throw new Error(`node exited ${node.proc.exitCode}:\n${node.output()}`)
    return (await md.listBookies().catch(() => [])).some((b) => b.bookieId === 'b1' && b.pid === node.pid)
  })
  assert.ok(retries(node) >= 1)
  const line = node.output().split('\n').find((l) => l.includes(RETRY_LINE))!
  const logged = JSON.parse(line) as { attempt: number; retryInMs: number; code: string }
  assert.is(logged.code, 'TIMEOUT')
  assert.ok(logged.attempt >= 1 && logged.retryInMs > 0, line)
})

t('read-your-writes: a get right after a write or a CAS sees it, from the same and from another connection', async (ctx) => {
  const [w, r] = [await conn(ctx, 0, 'ryw-writer'), await conn(ctx, 1, 'ryw-reader')]
  const bucket = `ryw_${process.pid}`
  const kvw = await openKv(w, bucket, { replicas: 3 })
  const kvr = await openKv(r, bucket, { replicas: 3 })
  let stale = 0
  const N = 300
  for (let i = 0; i < N; i++) {
    const key = `k${i % 10}`
    const revision = await kvw.put(key, Buffer.from(String(i)))
    const [same, other] = await Promise.all([kvw.get(key), kvr.get(key)])
    if ((same?.revision ?? 0) < revision) stale++
    if ((other?.revision ?? 0) < revision) stale++
  }
  // Ledger metadata: each CAS, then a read (what recovery and the shell used to do).
  const mdw = await openMetadata(w, { metadataReplicas: 3 })
  const mdr = await openMetadata(r, { metadataReplicas: 3 })
  const id = await mdw.allocateLedgerId()
  let cur = await mdw.createLedger(ledger(id))
  for (let i = 0; i < 100; i++) {
    cur = await mdw.writeLedger({ ...cur.value, length: i + 1 }, cur.revision)
    const [a, b] = await Promise.all([mdw.readLedger(id), mdr.readLedger(id)])
    if (a.revision !== cur.revision || a.value.length !== i + 1) stale++
    if (b.revision !== cur.revision || b.value.length !== i + 1) stale++
  }
  assert.is(stale, 0, `${stale} of ${2 * N + 200} reads after a write saw an older revision`)
})

t('read-your-writes holds across stream leader changes; what fails meanwhile fails with TIMEOUT', async (ctx) => {
  const [w, r] = [await conn(ctx, 0, 'ryw-stepdown-writer'), await conn(ctx, 1, 'ryw-stepdown-reader')]
  const bucket = `ryw_stepdown_${process.pid}`
  const kvw = await openKv(w, bucket, { replicas: 3 })
  const kvr = await openKv(r, bucket, { replicas: 3 })
  let stop = false
  let stepdowns = 0
  // The bucket's leader is asked to step down every 700 ms: a new one is elected each time.
  const stepping = (async () => {
    while (!stop) {
      await new Promise((res) => setTimeout(res, 700))
      await w.request(`$JS.API.STREAM.LEADER.STEPDOWN.KV_${bucket}`, undefined, { timeout: 2000 }).then(() => { stepdowns++ }, () => {})
    }
  })()
  let stale = 0
  let checked = 0
  const failures = new Map<string, number>()
  const t0 = Date.now()
  try {
    for (let i = 0; Date.now() - t0 < 8000; i++) {
      const key = `k${i % 5}`
      try {
        const revision = await kvw.put(key, Buffer.from(String(i)))
        const [a, b] = await Promise.all([kvw.get(key), kvr.get(key)])
        checked++
        if ((a?.revision ?? 0) < revision || (b?.revision ?? 0) < revision) stale++
      } catch (err) {
        const code = isQuireError(err) ? err.code : `raw ${String(err)}`
        failures.set(code, (failures.get(code) ?? 0) + 1)
      }
    }
  } finally {
    stop = true
    await stepping
  }
  assert.ok(stepdowns >= 3, `${stepdowns} leader changes`)
  assert.ok(checked >= 100, `${checked} writes read back`)
  assert.is(stale, 0, `${stale} of ${checked} writes read back older, across ${stepdowns} leader changes`)
  assert.equal([...failures.keys()].filter((c) => c !== 'TIMEOUT'), [], 'every failure is TIMEOUT')
})

/** Time each of `runs` calls of `list`; all must succeed. */
async function timedListings(runs: number, list: () => Promise<unknown>): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const t0 = Date.now()
    await list()
    times.push(Date.now() - t0)
  }
  return times
}

async function drain(it: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = []
  for await (const x of it) out.push(x)
  return out
}

t('with one server of three killed, every key listing succeeds, each in under the 5 s API timeout', async (ctx) => {
  const nc = await conn(ctx, 0, 'listings')
  const md: MetadataStore = await openMetadata(nc, { metadataReplicas: 3 })
  const marks = new AutorecoveryStore(md.clusterKv)
  for (let i = 0; i < 20; i++) {
    const id = await md.allocateLedgerId()
    await md.createLedger(ledger(id))
    if (i % 4 === 0) await marks.mark(id, { missing: ['b9'] }, 'test')
  }
  const ledgersBefore = await drain(md.listLedgers())
  await ctx.nats.kill(2)
  await until('metadata leaders after server 2 died', 30_000, () => metadataLeaders(nc))
  // The node's bookie keeps heartbeating (its key rewritten during the listings).
  const times = [
    ...(await timedListings(15, async () => assert.ok((await md.listBookies()).some((b) => b.bookieId === 'b1')))),
    ...(await timedListings(15, async () => assert.equal(await drain(md.listLedgers()), ledgersBefore))),
    ...(await timedListings(15, async () => assert.is((await marks.listMarks()).length, 5))),
  ]
  const slowest = Math.max(...times)
  console.log(`  listings with one server down: ${times.length}, slowest ${slowest} ms, median ${times.sort((x, y) => x - y)[times.length >> 1]} ms`)
  assert.ok(slowest < 4000, `slowest of ${times.length} listings took ${slowest} ms: ${times.join(', ')}`)
})

t('without a quorum: reads, listings and createLedger fail with TIMEOUT; a node gives up after metadataStartTimeoutMs', async (ctx) => {
  const nc = await conn(ctx, 0, 'no-quorum')
  const md = await openMetadata(nc, { metadataReplicas: 3 })
  const id = await md.allocateLedgerId()
  await md.createLedger(ledger(id))
  await ctx.nats.kill(1) // server 2 is down since the test before
  // A stream leader cut off from its peers goes on answering reads until it steps down (the
  // other buckets' leaders each in their own time: only the ledgers bucket is checked here).
  await until('a read to fail', 60_000, () => md.readLedger(id).then(() => false, (e: unknown) => {
    if (!isQuireError(e, 'TIMEOUT')) throw e
    return true
  }))
  const failures = await Promise.all([
    drain(md.listLedgers()).then(() => null, (e: unknown) => e),
    md.createLedger(ledger(id + 1)).then(() => null, (e: unknown) => e),
  ])
  for (const err of failures) assert.ok(isQuireError(err, 'TIMEOUT'), `expected TIMEOUT, got ${String(err)}`)
  console.log(`  without a quorum: ${failures.map((e) => (e as Error).message).join(' | ')}`)

  // 8 s: an attempt may wait out the JetStream API timeout (5 s) instead of failing at once, and
  // a retry must still be logged before the node gives up.
  const startTimeoutMs = 8000
  const node = startNodeProcess({
    args: ['--roles', 'bookie', '--id', 'b2', '--data', path.join(ctx.dir, 'b2'), '--nats', ctx.nats.urlsFrom(0).join(','),
      '--metadata-replicas', '3', '--metadata-start-timeout-ms', String(startTimeoutMs)],
    env: cleanEnv(),
  })
  ctx.nodes.push(node)
  assert.is(await node.exited, 1, node.output())
  assert.ok(/error TIMEOUT: the metadata store did not answer within 8000 ms/.test(node.output()), node.output())
  assert.ok(retries(node) >= 1, node.output())
  // It gives up at its deadline, not an API timeout after it (an attempt is cut there).
  const gaveUpMs = logTime(node, 'start-up refused') - logTime(node, 'starting')
  console.log(`  node gave up ${gaveUpMs} ms after starting, after ${retries(node)} logged retries`)
  assert.ok(gaveUpMs >= startTimeoutMs && gaveUpMs < startTimeoutMs + 1000, `gave up ${gaveUpMs} ms after starting`)
})

/** `time` of the node's first log line with message `msg`. */
function logTime(node: ManagedProcess, msg: string): number {
  for (const line of node.output().split('\n')) {
    if (!line.startsWith('{')) continue
    const rec = JSON.parse(line) as { msg?: string; time?: number }
    if (rec.msg === msg && typeof rec.time === 'number') return rec.time
  }
  throw new Error(`no log line '${msg}' in: ${node.output()}`)
}

t.run()
