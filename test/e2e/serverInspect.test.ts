// Server processes publish inspection only when asked (the `inspect` setting: --inspect,
// QUIRE_INSPECT, "inspect" in the config file), on real node processes (bookie, auditor and
// replicator roles: real nats-server, fsync, RocksDB). Without it a node publishes nothing on
// `quire.inspect.>` while it serves creates, adds and reads of several ledgers, beacons included:
// with many ledgers, each ledger actor's snapshots and beacons were most of the NATS messages.
// With it, the bookie, its ledger actors, the auditor and the replicator show up as before.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connectClient as connect, type QuireClientImpl as QuireClient } from '../../client/internal.ts'
import { startBookieProcess, startNatsServer, type BookieProcess, type NatsServer } from '../../cli/cluster.ts'
import { waitForBookies } from '../../cli/sandbox.ts'
import { BEACON_MS } from '../../transport/inspect.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { payloadFor } from '../support/cluster.ts'
import { cleanEnv } from '../support/nodes.ts'

interface Ctx { dir: string; nats: NatsServer; nc: NatsConnection; client: QuireClient; nodes: BookieProcess[] }

const t = suite<Ctx>('serverInspect')
const NODES = 3

t.before(async (ctx) => {
  ctx.nodes = []
  ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'quire-server-inspect-'))
  ctx.nats = await startNatsServer({ storeDir: path.join(ctx.dir, 'nats') })
  ctx.nc = await connectNats(ctx.nats.url)
  // The client's own inspection is off (its default): only the nodes could publish.
  ctx.client = await connect({ servers: ctx.nats.url, addTimeoutMs: 10_000, readTimeoutMs: 5000 })
})

t.after(async (ctx) => {
  await ctx.client?.close().catch(() => {})
  await ctx.nc?.close().catch(() => {})
  for (const n of ctx.nodes ?? []) n.kill('SIGKILL')
  await Promise.all((ctx.nodes ?? []).map((n) => n.exited))
  await ctx.nats?.stop()
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true })
})

/** Start (or restart on the same data) the nodes, each a bookie, an auditor and a replicator. */
async function startNodes(ctx: Ctx, extraArgs: string[]): Promise<void> {
  for (let i = 1; i <= NODES; i++) {
    const id = `node-${i}`
    ctx.nodes.push(startBookieProcess({
      id, data: path.join(ctx.dir, id), nats: ctx.nats.url, roles: 'bookie,auditor,replicator',
      extraArgs: ['--heartbeat-ms', '200', ...extraArgs], env: cleanEnv() as Record<string, string>,
    }))
  }
  await waitForBookies(ctx.client, NODES, 30_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${ctx.nodes.map((n) => n.output()).join('\n')}`)
  })
}

async function stopNodes(ctx: Ctx): Promise<void> {
  const nodes = ctx.nodes.splice(0)
  for (const n of nodes) n.kill('SIGTERM')
  for (const n of nodes) assert.is(await n.exited, 0, n.output())
}

/** Create, append to, read and close a few ledgers; their ids. */
async function work(client: QuireClient): Promise<number[]> {
  const ids: number[] = []
  for (let l = 0; l < 4; l++) {
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
    ids.push(w.ledgerId)
    await Promise.all(Array.from({ length: 20 }, (_, i) => w.append(payloadFor(i))))
    const got = await w.read(0, 19)
    assert.is(got.length, 20)
    await w.close()
    const r = await client.openLedger(w.ledgerId)
    assert.is((await r.read(0, 19)).length, 20)
    await r.closeHandle()
  }
  return ids
}

/** Every message on quire.inspect.> from now on, as `<kind> <id>` (from the subject). */
async function watchInspection(nc: NatsConnection): Promise<{ seen: string[]; stop(): void }> {
  const seen: string[] = []
  const sub = nc.subscribe('quire.inspect.>', {
    callback: (_e, m) => {
      const [kind, ...id] = m.subject.split('.').slice(2)
      seen.push(`${kind} ${id.join('.')}`)
    },
  })
  await nc.flush()
  return { seen, stop: () => sub.unsubscribe() }
}

t('a node started without inspect publishes nothing on quire.inspect.> while it serves', async (ctx) => {
  await startNodes(ctx, [])
  const w = await watchInspection(ctx.nc)
  await work(ctx.client)
  // Beacons go out every BEACON_MS: wait past two of them, with the nodes busy no longer.
  await new Promise((r) => setTimeout(r, 2 * BEACON_MS + 1000))
  await ctx.nc.flush()
  w.stop()
  assert.equal(w.seen, [], `published: ${w.seen.slice(0, 10).join(', ')}`)
  await stopNodes(ctx)
})

t('a node started with --inspect publishes its bookie, ledgers, auditor and replicator', async (ctx) => {
  await startNodes(ctx, ['--inspect'])
  const w = await watchInspection(ctx.nc)
  const ids = await work(ctx.client)
  const kinds = (): Set<string> => new Set(w.seen.map((s) => s.split(' ')[0]!))
  const ledgerSeen = (): boolean => ids.some((l) => w.seen.some((s) => s.startsWith('bookie-ledger ') && s.endsWith(`.${l}`)))
  const deadline = Date.now() + 30_000
  while (!(['bookie', 'bookie-ledger', 'auditor', 'replicator'].every((k) => kinds().has(k)) && ledgerSeen())) {
    if (Date.now() > deadline) assert.unreachable(`inspection seen: ${[...kinds()].join(', ')}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  w.stop()
  await stopNodes(ctx)
})

t.run()
