// `quire node` as real processes on a real nats-server: settings from a --config file, overridden
// by environment variables, overridden by flags (seen in the bookie's registration and in the
// node's "starting" log line); invalid settings and unwired roles refused with INVALID_CONFIG
// before anything starts; SIGTERM drains: an append in flight at the signal completes, the
// registration is removed, and the process exits 0; `quire bookie` is the same node.

import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connect, type QuireClient } from '../../client/index.ts'
import { startNodeProcess, type ManagedProcess } from '../../cli/cluster.ts'
import type { BookieRecord } from '../../storage/metadataStore.ts'
import { inspectSubject } from '../../transport/wire.ts'
import { cleanEnv, quire, show, startNodesFixture, stopNodesFixture, type NodesCtx } from '../support/nodes.ts'


interface Ctx extends NodesCtx { clients: QuireClient[] }
const t = suite<Ctx>('node')
t.before(async (ctx) => {
  await startNodesFixture(ctx, 'quire-node-')
  ctx.clients = []
})
t.after(async (ctx) => {
  await Promise.all((ctx.clients ?? []).map((c) => c.close().catch(() => {})))
  await stopNodesFixture(ctx)
})

async function registered(ctx: Ctx, node: ManagedProcess, bookieId: string): Promise<BookieRecord> {
  const deadline = Date.now() + 30_000
  for (;;) {
    if (node.proc.exitCode !== null) throw new Error(`node exited ${node.proc.exitCode}:\n${node.output()}`)
    if (Date.now() > deadline) throw new Error(`${bookieId} did not register:\n${node.output()}`)
    const rec = (await ctx.md.listBookies()).find((b) => b.bookieId === bookieId && b.pid === node.pid)
    if (rec) return rec
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The node's "starting" log line: the resolved settings and where each came from. */
function startingLine(node: ManagedProcess): { settings: Record<string, unknown>; sources: Record<string, string> } {
  const line = node.output().split('\n').find((l) => l.includes('"msg":"starting"'))
  assert.ok(line, node.output())
  return JSON.parse(line!) as { settings: Record<string, unknown>; sources: Record<string, string> }
}

async function stopNode(node: ManagedProcess): Promise<void> {
  node.kill('SIGTERM')
  assert.is(await node.exited, 0, node.output())
}

t('settings from --config, overridden by env vars, overridden by flags', async (ctx) => {
  const confDir = path.join(ctx.dir, 'conf')
  const config = path.join(ctx.dir, 'quire.json')
  await writeFile(config, JSON.stringify({
    nats: [ctx.nats.url], data: 'conf/disk', bookieId: 'cfg1', heartbeatMs: 300, checkpointMs: 3000, journalGroupBytes: 65536,
  }))
  // The config file alone.
  const a = startNodeProcess({ args: ['--config', config], env: cleanEnv() })
  ctx.nodes.push(a)
  const recA = await registered(ctx, a, 'cfg1')
  assert.is(recA.heartbeatMs, 300)
  const la = startingLine(a)
  assert.is(la.settings['data'], path.join(confDir, 'disk'), 'relative to the config file')
  assert.is(la.sources['heartbeatMs'], 'config')
  await stopNode(a)

  // QUIRE_CONFIG names the file; env beats the file; a flag beats both.
  const b = startNodeProcess({
    args: ['--heartbeat-ms', '200'],
    env: cleanEnv({ QUIRE_CONFIG: config, QUIRE_HEARTBEAT_MS: '250', QUIRE_CHECKPOINT_MS: '2500' }),
  })
  ctx.nodes.push(b)
  const recB = await registered(ctx, b, 'cfg1')
  assert.is(recB.heartbeatMs, 200)
  const lb = startingLine(b)
  assert.equal(lb.sources, { ...lb.sources, heartbeatMs: 'flag', checkpointMs: 'env', journalGroupBytes: 'config', journalGroupWaitMs: 'default', bookieId: 'config' })
  assert.equal([lb.settings['heartbeatMs'], lb.settings['checkpointMs'], lb.settings['journalGroupBytes']], [200, 2500, 65536])
  await stopNode(b)

  // Env alone beats the file.
  const c = startNodeProcess({ args: ['--config', config], env: cleanEnv({ QUIRE_HEARTBEAT_MS: '250' }) })
  ctx.nodes.push(c)
  assert.is((await registered(ctx, c, 'cfg1')).heartbeatMs, 250)
  await stopNode(c)
})

t('bad settings and unknown roles are refused before anything starts', async (ctx) => {
  const config = path.join(ctx.dir, 'bad.json')
  await writeFile(config, JSON.stringify({ heartbeatMS: 100 }))
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['node', '--config', config], cleanEnv(), /^error INVALID_CONFIG: unknown setting "heartbeatMS" in .*did you mean heartbeatMs/m],
    [['node', '--data', path.join(ctx.dir, 'x')], cleanEnv({ QUIRE_HEARTBEAT_MS: 'often' }), /^error INVALID_CONFIG: QUIRE_HEARTBEAT_MS must be a number/m],
    [['node', '--roles', 'bookie,janitor', '--data', 'x'], cleanEnv(), /^error INVALID_CONFIG: --roles names an unknown role "janitor"/m],
    [['node', '--nats', ctx.nats.url], cleanEnv(), /^error INVALID_CONFIG: the bookie role needs a data folder: --data/m],
  ]
  for (const [args, env, re] of cases) {
    const r = await quire(args, env)
    assert.is(r.code, 1, show(r))
    assert.match(r.stderr, re, show(r))
    assert.not.ok(r.stderr.includes('    at '), show(r))
  }
  assert.equal(await ctx.md.listBookies(), [], 'nothing registered')
})

t('SIGTERM drains: an append in flight completes, the registration goes, exit 0', async (ctx) => {
  const data = path.join(ctx.dir, 'drain')
  // `quire bookie` is `quire node --roles bookie`; a wide group commit window keeps the add in flight.
  const node = startNodeProcess({ args: ['--nats', ctx.nats.url, '--data', data, '--id', 'dr1', '--heartbeat-ms', '200', '--journal-group-wait-ms', '400', '--inspect'], env: cleanEnv() })
  ctx.nodes.push(node)
  await registered(ctx, node, 'dr1')
  const client = await connect({ servers: ctx.nats.url, addTimeoutMs: 20_000 })
  ctx.clients.push(client)
  const warm = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
  assert.is(await warm.append('warm'), 0)
  // The bookie starts a ledger's actor, which publishes its state, when the ledger's first add
  // reaches it: from then on that add is in the bookie, waiting for its group commit.
  const w = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
  const sub = ctx.nc.subscribe(inspectSubject('bookie-ledger', `dr1.${w.ledgerId}`), { max: 1 })
  await ctx.nc.flush()
  const arrived = (async () => { for await (const _ of sub) return true; return false })()
  const inFlight = w.append('in flight')
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((r) => { timer = setTimeout(() => r(false), 20_000) })
  assert.ok(await Promise.race([arrived, timeout]), 'the add reached the bookie')
  clearTimeout(timer)
  node.kill('SIGTERM')
  assert.is(await inFlight, 0, 'the append in flight at SIGTERM is acknowledged')
  assert.is(await node.exited, 0, node.output())
  assert.not.ok((await ctx.md.listBookies()).some((b) => b.bookieId === 'dr1'), 'registration removed')
  const out = node.output()
  assert.match(out, /"role":"node".*"signal":"SIGTERM","msg":"draining"/)
  assert.match(out, /"role":"bookie".*"msg":"stopped"/)
})

t('quire bookie keeps its flags and runs the bookie role', async (ctx) => {
  const data = path.join(ctx.dir, 'alias')
  const node = startNodeProcess({ command: 'bookie', args: ['--nats', ctx.nats.url, '--data', data, '--id', 'al1'], env: cleanEnv({ QUIRE_HEARTBEAT_MS: '220' }) })
  ctx.nodes.push(node)
  assert.is((await registered(ctx, node, 'al1')).heartbeatMs, 220)
  assert.match(node.output(), /"roles":\["bookie"\]/)
  await stopNode(node)
})

t.run()
