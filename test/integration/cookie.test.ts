// Bookie identity (actors/cookie.ts, cli/shellCookie.ts).
// Suite `cookie` checks the rules on real temp folders and the in-memory KV: first start writes
// both cookies; a restart matches; a wiped folder, a swapped disk, another cluster's disk and
// another bookie's folder refuse with COOKIE_MISMATCH naming the fix; a crash between the two
// writes is completed; two first starts of one id on two disks let exactly one win.
// Suite `cookie processes` runs real `quire node` processes on a real nats-server: a wiped data
// folder is refused (exit 1, the message on stderr), a restart with the same disk keeps its identity
// when reached at another address, bookieformat lets it start afresh, updatecookie resolves a
// swapped-disk mismatch, and bookieinfo shows the registration and the cookie.

import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  COOKIE_FILE, cookieKey, deleteKvCookie, putKvCookie, readDataCookie, readKvCookie, resolveBookieId, verifyCookie,
} from '../../actors/cookie.ts'
import { hasCleanStopMarker } from '../../actors/bookieStorage.ts'
import { startNodeProcess, type ManagedProcess } from '../../cli/cluster.ts'
import { isQuireError } from '../../machines/errors.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { cleanEnv, quire, show, startNodesFixture, stopNodesFixture, type NodesCtx } from '../support/nodes.ts'

async function mismatch(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'COOKIE_MISMATCH'), `expected COOKIE_MISMATCH, got ${String(err)}`)
  return (err as Error).message
}

const u = suite<{ dir: string }>('cookie')
u.before.each(async (ctx) => { ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'quire-cookie-')) })
u.after.each(async (ctx) => { await rm(ctx.dir, { recursive: true, force: true }) })

u('first start writes the cookie in the folder and the KV; a restart matches it; no host in it', async ({ dir }) => {
  const kv = new MemoryKv()
  const first = await verifyCookie(kv, dir, 'b1')
  assert.is(first.outcome, 'created')
  assert.equal(Object.keys(first.cookie).sort(), ['bookieId', 'createdAt', 'dataDirId', 'instanceId'])
  assert.equal(await readDataCookie(dir), first.cookie)
  assert.equal(await readKvCookie(kv, 'b1'), first.cookie)
  assert.is((await readFile(path.join(dir, 'bookie-id'), 'utf8')).trim(), 'b1')
  const again = await verifyCookie(kv, dir, 'b1')
  assert.is(again.outcome, 'matched')
  assert.equal(again.cookie, first.cookie)
  // A second bookie of the same cluster shares the instance id, not the data dir id.
  const other = path.join(dir, 'b2')
  await mkdir(other)
  const b2 = await verifyCookie(kv, other, 'b2')
  assert.is(b2.cookie.instanceId, first.cookie.instanceId)
  assert.is.not(b2.cookie.dataDirId, first.cookie.dataDirId)
})

u('a wiped folder refuses, naming bookieformat with the bookie id', async ({ dir }) => {
  const kv = new MemoryKv()
  await verifyCookie(kv, dir, 'b1')
  for (const f of await readdir(dir)) await rm(path.join(dir, f), { recursive: true })
  const msg = await mismatch(verifyCookie(kv, dir, 'b1'))
  assert.match(msg, /holds a cookie for bookie b1 .* but .* has none: the data folder was wiped/)
  assert.ok(msg.includes(`quire shell bookieformat --data ${dir} --bookie b1`), msg)
  assert.equal(await readdir(dir), [], 'a refused start writes nothing')
})

u('another cluster\'s disk refuses, naming both instance ids', async ({ dir }) => {
  const { cookie } = await verifyCookie(new MemoryKv(), dir, 'b1')
  const elsewhere = new MemoryKv()
  const msg = await mismatch(verifyCookie(elsewhere, dir, 'b1'))
  assert.match(msg, /belongs to another Quire cluster/)
  assert.ok(msg.includes(cookie.instanceId), msg)
  assert.is(await readKvCookie(elsewhere, 'b1'), null, 'nothing written to the other cluster')
})

u('a swapped disk refuses until updatecookie makes it the bookie\'s; the other disk then refuses', async ({ dir }) => {
  const kv = new MemoryKv()
  const diskA = path.join(dir, 'a')
  const diskB = path.join(dir, 'b')
  await mkdir(diskA)
  await mkdir(diskB)
  const a = await verifyCookie(kv, diskA, 'b1')
  await deleteKvCookie(kv, 'b1')
  const b = await verifyCookie(kv, diskB, 'b1')
  assert.is(b.outcome, 'created')
  const msg = await mismatch(verifyCookie(kv, diskA, 'b1'))
  assert.ok(msg.includes(a.cookie.dataDirId) && msg.includes(b.cookie.dataDirId), msg)
  assert.ok(msg.includes(`quire shell updatecookie --bookie b1 --data ${diskA}`), msg)
  await putKvCookie(kv, a.cookie)
  assert.is((await verifyCookie(kv, diskA, 'b1')).outcome, 'matched')
  await mismatch(verifyCookie(kv, diskB, 'b1'))
})

u('a folder of another bookie refuses; resolveBookieId keeps the folder\'s id', async ({ dir }) => {
  const kv = new MemoryKv()
  await verifyCookie(kv, dir, 'b1')
  assert.is(await resolveBookieId(dir, undefined), 'b1')
  const err = await resolveBookieId(dir, 'b2').then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
  // Even with the bookie-id file gone, the cookie still says whose folder it is.
  await rm(path.join(dir, 'bookie-id'))
  assert.is(await resolveBookieId(dir, undefined), 'b1')
  assert.match(await mismatch(verifyCookie(kv, dir, 'b2')), /holds the cookie of bookie b1, not b2/)
})

u('a crash between the folder write and the KV write is completed on the next start', async ({ dir }) => {
  const kv = new MemoryKv()
  const { cookie } = await verifyCookie(kv, dir, 'b1')
  await kv.delete(cookieKey('b1'))
  const again = await verifyCookie(kv, dir, 'b1')
  assert.is(again.outcome, 'completed')
  assert.equal(await readKvCookie(kv, 'b1'), cookie)
})

u('a corrupt cookie file refuses', async ({ dir }) => {
  await writeFile(path.join(dir, COOKIE_FILE), '{"instanceId": 3')
  await mismatch(verifyCookie(new MemoryKv(), dir, 'b1'))
})

u('two first starts of one bookie id on two disks: exactly one wins', async ({ dir }) => {
  const kv = new MemoryKv()
  const disks = [path.join(dir, 'x'), path.join(dir, 'y')]
  for (const d of disks) await mkdir(d)
  const results = await Promise.allSettled(disks.map((d) => verifyCookie(kv, d, 'b1')))
  const won = results.filter((r) => r.status === 'fulfilled')
  assert.is(won.length, 1, JSON.stringify(results.map((r) => r.status)))
  const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
  assert.ok(isQuireError(lost.reason, 'COOKIE_MISMATCH'), String(lost.reason))
  const winner = (won[0] as PromiseFulfilledResult<{ cookie: { dataDirId: string } }>).value.cookie
  assert.is((await readKvCookie(kv, 'b1'))!.dataDirId, winner.dataDirId)
})

u.run()

// --- real processes --------------------------------------------------------------------------

const p = suite<NodesCtx>('cookie processes')
p.before((ctx) => startNodesFixture(ctx, 'quire-cookie-proc-'))
p.after((ctx) => stopNodesFixture(ctx))

/** Start a node; resolves once `bookieId` (or, when undefined, any new bookie) is registered by it. */
async function startBookieNode(ctx: NodesCtx, args: string[], bookieId?: string): Promise<{ node: ManagedProcess; bookieId: string }> {
  const node = startNodeProcess({ args: ['--heartbeat-ms', '200', ...args], env: cleanEnv() })
  ctx.nodes.push(node)
  const deadline = Date.now() + 30_000
  for (;;) {
    if (node.proc.exitCode !== null) throw new Error(`node exited ${node.proc.exitCode}:\n${node.output()}`)
    if (Date.now() > deadline) throw new Error(`node did not register:\n${node.output()}`)
    const rec = (await ctx.md.listBookies()).find((b) => b.pid === node.pid && (bookieId === undefined || b.bookieId === bookieId))
    if (rec) return { node, bookieId: rec.bookieId }
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function stopNode(node: ManagedProcess): Promise<void> {
  node.kill('SIGTERM')
  assert.is(await node.exited, 0, node.output())
}

p('a restart with the same disk keeps its identity, also reached at another address', async (ctx) => {
  const data = path.join(ctx.dir, 'keep')
  const first = await startBookieNode(ctx, ['--nats', ctx.nats.url, '--data', data])
  const cookie = await readDataCookie(data)
  assert.ok(cookie, 'cookie.json written')
  assert.is(cookie!.bookieId, first.bookieId)
  assert.equal(await readKvCookie(ctx.md.clusterKv, first.bookieId), cookie)
  await stopNode(first.node)
  // No --id, another URL for the same server: same bookie id, same cookie.
  const again = await startBookieNode(ctx, ['--nats', `nats://localhost:${ctx.nats.port}`, '--data', data], first.bookieId)
  assert.match(again.node.output(), /"outcome":"matched"/)
  assert.equal(await readDataCookie(data), cookie)
  assert.equal(await readKvCookie(ctx.md.clusterKv, first.bookieId), cookie)
  await stopNode(again.node)
})

p('a wiped data folder is refused with the cookie message; bookieformat then lets it start', async (ctx) => {
  const data = path.join(ctx.dir, 'wiped')
  const first = await startBookieNode(ctx, ['--nats', ctx.nats.url, '--data', data, '--id', 'wb1'], 'wb1')
  const before = await readDataCookie(data)
  await stopNode(first.node)
  for (const f of await readdir(data)) await rm(path.join(data, f), { recursive: true })

  const refused = await quire(['node', '--nats', ctx.nats.url, '--data', data, '--id', 'wb1'])
  assert.is(refused.code, 1, show(refused))
  assert.match(refused.stderr, /^error COOKIE_MISMATCH: bookie wb1 refused to start: .*the data folder was wiped/m, show(refused))
  assert.ok(refused.stderr.includes(`quire shell bookieformat --data ${data} --bookie wb1`), show(refused))
  assert.not.ok(refused.stderr.includes('    at '), show(refused))
  assert.not.ok((await ctx.md.listBookies()).some((b) => b.bookieId === 'wb1'), 'never registered')

  const formatted = await quire(['shell', 'bookieformat', '--nats', ctx.nats.url, '--data', data, '--bookie', 'wb1'])
  assert.is(formatted.code, 0, show(formatted))
  assert.match(formatted.stdout, /bookie wb1 formatted: .* its cookie removed from the metadata store/)
  assert.is(await readKvCookie(ctx.md.clusterKv, 'wb1'), null)

  const fresh = await startBookieNode(ctx, ['--nats', ctx.nats.url, '--data', data, '--id', 'wb1'], 'wb1')
  const after = await readDataCookie(data)
  assert.is.not(after!.dataDirId, before!.dataDirId, 'a new disk identity')
  assert.equal(await readKvCookie(ctx.md.clusterKv, 'wb1'), after)

  // While it is alive, bookieformat refuses (without --force) and leaves everything in place.
  const busy = await quire(['shell', 'bookieformat', '--nats', ctx.nats.url, '--data', data])
  assert.is(busy.code, 1, show(busy))
  assert.match(busy.stderr, /error BOOKIE_RUNNING: bookie wb1 is alive/, show(busy))
  assert.equal(await readDataCookie(data), after)
  await stopNode(fresh.node)
})

p('updatecookie resolves a swapped-disk mismatch', async (ctx) => {
  const diskA = path.join(ctx.dir, 'disk-a')
  const diskB = path.join(ctx.dir, 'disk-b')
  const a = await startBookieNode(ctx, ['--nats', ctx.nats.url, '--data', diskA, '--id', 'sb1'], 'sb1')
  await stopNode(a.node)
  assert.ok(await hasCleanStopMarker(diskA), 'a clean stop leaves its marker')
  const cookieA = await readDataCookie(diskA)
  // The KV cookie is lost and the bookie first comes back on another disk, B, which it adopts.
  await deleteKvCookie(ctx.md.clusterKv, 'sb1')
  const b = await startBookieNode(ctx, ['--nats', ctx.nats.url, '--data', diskB, '--id', 'sb1'], 'sb1')
  await stopNode(b.node)
  // Disk A, the one with the data, is back: refused, with the fix named.
  const refused = await quire(['node', '--nats', ctx.nats.url, '--data', diskA, '--id', 'sb1'])
  assert.is(refused.code, 1, show(refused))
  assert.match(refused.stderr, /error COOKIE_MISMATCH: .*is not the disk the metadata store knows for bookie sb1/, show(refused))
  assert.ok(refused.stderr.includes(`quire shell updatecookie --bookie sb1 --data ${diskA}`), show(refused))

  const updated = await quire(['shell', 'updatecookie', '--nats', ctx.nats.url, '--bookie', 'sb1', '--data', diskA])
  assert.is(updated.code, 0, show(updated))
  assert.match(updated.stdout, new RegExp(`cookie of bookie sb1 updated .*data dir id ${cookieA!.dataDirId}`))
  assert.equal(await readKvCookie(ctx.md.clusterKv, 'sb1'), cookieA)
  // The disk taken on may lack what the bookie acknowledged since: it starts unchecked (limbo).
  assert.not.ok(await hasCleanStopMarker(diskA), 'updatecookie removes the clean-stop marker')

  const back = await startBookieNode(ctx, ['--nats', ctx.nats.url, '--data', diskA, '--id', 'sb1'], 'sb1')
  const info = await quire(['shell', 'bookieinfo', 'sb1', '--nats', ctx.nats.url, '--ledgers'])
  assert.is(info.code, 0, show(info))
  assert.match(info.stdout, /^registration: writable, alive .*pid \d+/m, show(info))
  assert.ok(info.stdout.includes(`data dir id ${cookieA!.dataDirId}`), show(info))
  assert.match(info.stdout, /^ledgers: 0 /m, show(info))
  await stopNode(back.node)
  const gone = await quire(['shell', 'bookieinfo', 'sb1', '--nats', ctx.nats.url])
  assert.match(gone.stdout, /^registration: none/m, show(gone))
})

p.run()
