// Surviving failures with real processes (PROTOCOL.md "Ensemble change", "Recovery"): a bookie
// killed or hung under a writer, a writer killed and its ledger recovered from elsewhere, two
// recoverers at once, a fenced writer, and the typed errors when too much is gone.

import { execFile, spawn } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { isQuireError, type QuireClientImpl as QuireClient } from '../../client/internal.ts'
import { isBookieAlive } from '../../storage/metadataStore.ts'
import { QUIRE_BIN, REPO_ROOT } from '../../cli/cluster.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { payloadFor, sleep, startCluster, type TestCluster } from '../support/cluster.ts'

const run = promisify(execFile)
const t = suite<{ c: TestCluster }>('failures')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 4 }) })
t.after(async (ctx) => { await ctx.c?.stop() })
t.before.each(async ({ c }) => { await healAll(c) })

/** Make sure all four bookies run (a test may have killed or stopped some). */
async function healAll(c: TestCluster): Promise<void> {
  for (let i = 1; i <= 4; i++) {
    const b = c.bookie(`bookie-${i}`)
    b.kill('SIGCONT')
    if (b.proc.exitCode !== null || b.proc.signalCode !== null) await c.startBookie(i)
  }
}

async function readAll(client: QuireClient, ledgerId: number, password = ''): Promise<Buffer[]> {
  const r = await client.openLedger(ledgerId, { password })
  return r.lastAddConfirmed < 0 ? [] : (await r.read(0, r.lastAddConfirmed)).map((e) => e.payload)
}

/**
 * Appends `entries` payloads of `bytes` (E3/Qw2/Qa2), kills one bookie of the ensemble with
 * SIGKILL once `killAfter` are acknowledged, appends the rest, and checks: every append
 * acknowledged, in order, a new segment without the victim, every entry read back byte for byte.
 */
async function killUnderWriter(c: TestCluster, entries: number, killAfter: number, bytes: number, victimIndex: number): Promise<{ lastSegmentFirst: number }> {
  const client = await c.client({ addTimeoutMs: 2000 })
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  const victim = w.metadata.segments[0]!.ensemble[victimIndex]!
  const acked: number[] = []
  const appends: Promise<void>[] = []
  const append = (i: number): void => { appends.push(w.append(payloadFor(i, bytes)).then((id) => { acked.push(id) })) }
  for (let i = 0; i < killAfter; i++) append(i)
  await Promise.all(appends)
  c.bookie(victim).kill('SIGKILL')
  for (let i = killAfter; i < entries; i++) {
    append(i)
    if (i % 50 === 0) await sleep(5)
  }
  await Promise.all(appends)
  assert.is(acked.length, entries, 'the caller sees only latency')
  assert.equal(acked, [...acked].sort((a, b) => a - b))
  await w.close()
  const md = (await client.openLedger(w.ledgerId)).metadata
  assert.ok(md.segments.length >= 2, `segments: ${JSON.stringify(md.segments)}`)
  const last = md.segments[md.segments.length - 1]!
  assert.not.ok(last.ensemble.includes(victim))
  assert.is(new Set(last.ensemble).size, 3)
  const got = await readAll(await c.client(), w.ledgerId)
  assert.is(got.length, entries)
  got.forEach((p, i) => assert.ok(p.equals(payloadFor(i, bytes)), `entry ${i}`))
  return { lastSegmentFirst: last.firstEntryId }
}

t('kill -9 a bookie under a writer: ensemble change, every acked entry reads back', async ({ c }) => {
  const { lastSegmentFirst } = await killUnderWriter(c, 600, 200, 100, 1)
  assert.ok(lastSegmentFirst >= 200, 'the new segment starts after the entries acked before the kill')
})

t('kill -9 a bookie under a writer of 96 KiB entries (sent once on their write sets\' subjects): every acked entry reads back', async ({ c }) => {
  const client = await c.client()
  assert.ok((await client.listBookies()).every((r) => r.writeSetSubjects === true), 'the bookies take adds on write-set subjects')
  await killUnderWriter(c, 90, 30, 96 * 1024, 2)
})

t('a hung bookie (SIGSTOP) does not stop the writer', async ({ c }) => {
  const client = await c.client({ addTimeoutMs: 1000 })
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  await w.append('before')
  const hung = c.bookie(w.metadata.segments[0]!.ensemble[0]!)
  hung.kill('SIGSTOP')
  try {
    const started = Date.now()
    const ids = await Promise.all([w.append('during-1'), w.append('during-2')])
    assert.equal(ids, [1, 2])
    assert.ok(Date.now() - started < 8000)
    await w.close()
  } finally {
    hung.kill('SIGCONT')
  }
  const got = await readAll(client, w.ledgerId)
  assert.equal(got.map(String), ['before', 'during-1', 'during-2'])
})

t('kill -9 the writer process; recover from another: every acked entry, nothing after lastEntryId', async ({ c }) => {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/appender.ts'), c.nats.url, '8'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const deadline = Date.now() + 20_000
  while ((out.match(/^acked /gm)?.length ?? 0) < 300 && Date.now() < deadline) await sleep(20)
  child.kill('SIGKILL')
  await new Promise((r) => child.once('exit', r))
  const ledgerId = Number(/^ledger (\d+)$/m.exec(out)?.[1])
  const acked = [...out.matchAll(/^acked (\d+)$/gm)].map((m) => Number(m[1]))
  assert.ok(acked.length >= 300, `acked ${acked.length}`)
  const client = await c.client()
  const r = await client.openLedger(ledgerId, { password: 'pw', recovery: true })
  const last = r.metadata.lastEntryId
  assert.is(r.metadata.state, 'CLOSED')
  assert.ok(last >= Math.max(...acked), `closed at ${last}, acked up to ${Math.max(...acked)}`)
  const got = await r.read(0, last)
  got.forEach((e, i) => assert.is(e.payload.toString().split('-')[0], 'entry', `entry ${i}`))
  for (const id of acked) assert.ok(got[id], `acked entry ${id} present`)
  const past = await r.read(last + 1, last + 1).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(past, 'NO_SUCH_ENTRY'))
  // The length in the metadata is the sum of what was recovered.
  assert.is(r.metadata.length, got.reduce((a, e) => a + e.payload.byteLength, 0))
})

t('after a recovery the old writer is FENCED and gets nothing more acknowledged', async ({ c }) => {
  const writer = await c.client()
  const w = await writer.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, password: 'pw' })
  for (let i = 0; i < 10; i++) await w.append(payloadFor(i))
  const recovered = await (await c.client()).openLedger(w.ledgerId, { password: 'pw', recovery: true })
  assert.is(recovered.metadata.state, 'CLOSED')
  const lastEntryId = recovered.metadata.lastEntryId
  assert.is(lastEntryId, 9)
  const err = await w.append(payloadFor(10)).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'FENCED'), String(err))
  await w.close().catch(() => {})
  const again = await (await c.client()).openLedger(w.ledgerId, { password: 'pw' })
  assert.is(again.metadata.lastEntryId, lastEntryId, 'the fenced writer changed nothing')
})

t('open without recovery never fences and never writes metadata', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger({ password: 'pw' })
  await w.append('a')
  const before = await client.metadata.readLedger(w.ledgerId)
  await (await c.client()).openLedger(w.ledgerId, { password: 'pw' })
  const after = await client.metadata.readLedger(w.ledgerId)
  assert.is(after.revision, before.revision)
  assert.is(await w.append('b'), 1, 'the writer is not fenced')
  await w.close()
})

t('two recoverers in two processes at once agree on lastEntryId', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  await Promise.all(Array.from({ length: 57 }, (_, i) => w.append(payloadFor(i))))
  const recover = () => run(process.execPath, [QUIRE_BIN, 'shell', 'recover', String(w.ledgerId), '--nats', c.nats.url], { timeout: 60_000 })
  const [a, b] = await Promise.all([recover(), recover()])
  const at = (s: string) => /CLOSED at entry (-?\d+)/.exec(s)?.[1]
  assert.ok(at(a.stdout) !== undefined, a.stdout + a.stderr)
  assert.is(at(a.stdout), at(b.stdout))
  assert.is(at(a.stdout), '56')
  const md = (await client.metadata.readLedger(w.ledgerId)).value
  assert.is(md.state, 'CLOSED')
  assert.is(md.lastEntryId, 56)
})

t('RECOVERY_INCOMPLETE when too few bookies answer; a later retry succeeds', async ({ c }) => {
  const client = await c.client({ readTimeoutMs: 500 })
  const w = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let i = 0; i < 5; i++) await w.append(payloadFor(i))
  const stopped = w.metadata.segments[0]!.ensemble.slice(0, 2).map((id) => c.bookie(id))
  for (const b of stopped) b.kill('SIGSTOP')
  try {
    const err = await client.openLedger(w.ledgerId, { recovery: true }).then(() => null, (e: unknown) => e)
    assert.ok(isQuireError(err, 'RECOVERY_INCOMPLETE'), String(err))
    assert.is((await client.metadata.readLedger(w.ledgerId)).value.state, 'IN_RECOVERY', 'nothing guessed, nothing closed')
  } finally {
    for (const b of stopped) b.kill('SIGCONT')
  }
  const r = await client.openLedger(w.ledgerId, { recovery: true })
  assert.is(r.metadata.lastEntryId, 4)
})

t('NOT_ENOUGH_BOOKIES when no replacement is left; acknowledged entries stay readable', async ({ c }) => {
  const client = await c.client({ addTimeoutMs: 1000 })
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < 5; i++) await w.append(payloadFor(i))
  const spare = ['bookie-1', 'bookie-2', 'bookie-3', 'bookie-4'].find((b) => !w.metadata.segments[0]!.ensemble.includes(b))!
  c.bookie(spare).kill('SIGKILL')
  c.bookie(w.metadata.segments[0]!.ensemble[2]!).kill('SIGKILL')
  // Wait until the spare's registration is seen as dead (missed heartbeats).
  const deadline = Date.now() + 15_000
  while ((await client.listBookies()).some((b) => b.bookieId === spare && isBookieAlive(b, Date.now())) && Date.now() < deadline) await sleep(200)
  const err = await w.append(payloadFor(5)).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'NOT_ENOUGH_BOOKIES'), String(err))
  // Entry 5 carried LAC 4 to the two live bookies: a reader sees every acknowledged entry.
  const r = await (await c.client()).openLedger(w.ledgerId)
  assert.is(r.lastAddConfirmed, 4)
  const got = await r.read(0, 4)
  got.forEach((e, i) => assert.ok(e.payload.equals(payloadFor(i))))
  // With Qw = Qa = 3, a bookie gone for good and no spare to replace it, recovery cannot write
  // entry 5 back: it says so.
  const rec = await (await c.client({ addTimeoutMs: 1000 })).openLedger(w.ledgerId, { recovery: true }).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(rec, 'NOT_ENOUGH_BOOKIES'), String(rec))
})

t('a bookie that finds its stored copy corrupt answers an error; the reader uses the other replica', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  await w.append('good')
  const [first, second] = w.metadata.segments[0]!.ensemble
  // Overwrite entry 0 on its first bookie with a copy whose digest is wrong (as bit rot would).
  const bad = encodeEntry('crc32c', masterKeyOf(''), w.ledgerId, 0, -1, 4, Buffer.from('good'))
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 0x01
  const raw = (client as unknown as { bookies: { queueAdd: (...a: unknown[]) => void } }).bookies
  raw.queueAdd(first!, w.ledgerId, masterKeyOf(''), 'crc32c', false, bad)
  await sleep(200)
  const direct = await (client as unknown as { bookies: { read: (b: string, l: number, ids: number[], max: number, t: number) => Promise<{ rc: number; entries: Array<[number, unknown]> }> } }).bookies
    .read(first!, w.ledgerId, [0], 1 << 20, 2000)
  assert.is(direct.entries[0]![0], 6, 'RC.CORRUPT, never NO_SUCH_ENTRY')
  await w.close()
  const got = await (await c.client()).openLedger(w.ledgerId)
  assert.is((await got.read(0, 0))[0]!.payload.toString(), 'good')
  assert.ok(second)
})

t.run()
