// Recovery and autorecovery that finish on their own, on real processes (nats-server, bookie
// processes with real fsync and RocksDB, a writer process killed with kill -9):
// - a dead writer's last entry reached one bookie of its write set (E=3 Qw=2 Qa=2), and the other
//   is killed for good: open with recovery writes the entry back to a replacement bookie (an
//   ensemble change carried by the closing CAS) and closes the ledger, instead of failing with
//   RECOVERY_INCOMPLETE until the lost bookie returns;
// - the same case left to autorecovery (auditor + replication worker): the ledger ends CLOSED and
//   every entry on every bookie of its write set, all of them live;
// - `quire shell recover <bookieId>` when no live bookie can replace the lost one: exits at once
//   with NOT_ENOUGH_BOOKIES instead of sitting at 0/N until --timeout-s.

import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startAuditor } from '../../actors/auditor.ts'
import { startReplicator } from '../../actors/replicator.ts'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { writeSetIndices } from '../../machines/quorum.ts'
import { segmentRange } from '../../machines/replicator.ts'
import { AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { isBookieAlive, type LedgerMetadata } from '../../storage/metadataStore.ts'
import { decodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { RC } from '../../transport/wire.ts'
import { cleanEnv, quire, show } from '../support/nodes.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'

const t = suite<{ c: TestCluster; writers: ChildProcess[] }>('recovery ensemble change')
t.before(async (ctx) => {
  ctx.writers = []
  ctx.c = await startCluster({ bookies: 4, heartbeatMs: 200 })
})
t.after(async (ctx) => {
  for (const w of ctx.writers ?? []) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL')
  await ctx.c?.stop()
})

const ENTRIES = 5
const settings = {
  lostBookieRecoveryDelayMs: 500, auditorLeaseMs: 2000, auditIntervalMs: 60_000, checkIntervalMs: 200,
  replicationGraceMs: 500, claimLeaseMs: 4000, pollMs: 150, readTimeoutMs: 1500, addTimeoutMs: 3000,
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 60_000, logs: string[] = []): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}; last logs:\n${logs.slice(-40).join('\n')}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface InFlight { ledgerId: number; ensemble: string[]; entryId: number; has: string; lost: string }

/**
 * A writer process appends ENTRIES entries, sends the next to one bookie of its write set only,
 * and is killed with kill -9; then the other bookie of that write set is killed for good.
 */
async function writerDiesWithEntryInFlight(ctx: { c: TestCluster; writers: ChildProcess[] }): Promise<InFlight> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/inflightWriter.ts'), ctx.c.nats.url, String(ENTRIES)], {
    stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT,
  })
  ctx.writers.push(child)
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  await until('the writer has an entry in flight', () => /^inflight /m.test(out) || child.exitCode !== null, 30_000)
  child.kill('SIGKILL')
  const ledger = /^ledger (\d+) (\S+)$/m.exec(out)
  const inflight = /^inflight (\d+) (\S+) (\S+)$/m.exec(out)
  assert.ok(ledger && inflight, `writer output:\n${out}`)
  const f: InFlight = { ledgerId: Number(ledger[1]), ensemble: ledger[2]!.split(','), entryId: Number(inflight[1]), has: inflight[2]!, lost: inflight[3]! }
  assert.is(f.entryId, ENTRIES)
  ctx.c.bookie(f.lost).kill('SIGKILL')
  await ctx.c.bookie(f.lost).exited
  return f
}

/** Every entry of the closed ledger is intact on every bookie of its write set, and each of them is live. */
async function assertFullyReplicated(c: TestCluster, md: LedgerMetadata): Promise<void> {
  const client = c.clients[0]!
  const live = new Set((await client.listBookies()).filter((b) => isBookieAlive(b, Date.now())).map((b) => b.bookieId))
  const bookies = new BookieClient(client.nc!)
  const key = masterKeyOf('pw')
  for (let i = 0; i < md.segments.length; i++) {
    const seg = md.segments[i]!
    const range = segmentRange(md, i)!
    for (let id = range.first; id <= range.last; id++) {
      for (const b of writeSetIndices(id, md.ensembleSize, md.writeQuorum).map((k) => seg.ensemble[k]!)) {
        assert.ok(live.has(b), `entry ${id} is on ${b}, which is live`)
        const r = await bookies.read(b, md.ledgerId, [id], 1 << 20, 5000, undefined, key)
        const [rc, data] = r.entries[0] ?? [r.rc, null]
        assert.is(rc, RC.OK, `entry ${id} on ${b}`)
        const { payload } = decodeEntry(md.digestType, key, data!, { ledgerId: md.ledgerId, entryId: id })
        assert.ok(Buffer.from(payload).equals(payloadFor(md.ledgerId * 1000 + id)), `entry ${id} on ${b} is the one written`)
      }
    }
  }
}

/** The ledger reads back whole through a fresh client: entries 0..ENTRIES (the in-flight one too). */
async function assertReadsBack(c: TestCluster, ledgerId: number): Promise<void> {
  const h = await (await c.client()).openLedger(ledgerId, { password: 'pw' })
  const got = await h.read(0, ENTRIES)
  got.forEach((e, k) => assert.ok(e.payload.equals(payloadFor(ledgerId * 1000 + k)), `entry ${k}`))
}

t('open with recovery: the write-back of the in-flight entry replaces the lost bookie, and the ledger closes', async (ctx) => {
  const { c } = ctx
  const f = await writerDiesWithEntryInFlight(ctx)
  const spare = c.bookies.map((b) => b.id).filter((id) => !f.ensemble.includes(id))
  assert.is(spare.length, 1)
  const client = await c.client({ addTimeoutMs: 3000, readTimeoutMs: 1500 })
  const other = await c.client({ addTimeoutMs: 3000, readTimeoutMs: 1500 })
  const started = Date.now()
  // Two recoverers at once: both change the ensemble on their own, one closing CAS wins, and the
  // other finds the ledger closed at the entry it found too.
  const [h, h2] = await Promise.all([
    client.openLedger(f.ledgerId, { password: 'pw', recovery: true }),
    other.openLedger(f.ledgerId, { password: 'pw', recovery: true }),
  ])
  const tookMs = Date.now() - started
  const md = h.metadata
  assert.equal(h2.metadata, md, 'concurrent recoverers converge')
  assert.is(md.state, 'CLOSED')
  assert.is(md.lastEntryId, f.entryId, 'the entry one bookie had is kept')
  assert.is(md.length, (ENTRIES + 1) * 100)
  // The write-back needed a new segment from the in-flight entry on, with the spare for the lost bookie.
  assert.equal(md.segments[0], { firstEntryId: 0, ensemble: f.ensemble })
  assert.equal(md.segments[1], { firstEntryId: f.entryId, ensemble: f.ensemble.map((b) => (b === f.lost ? spare[0]! : b)) })
  assert.is(md.segments.length, 2)
  // What the closing CAS wrote is what the store holds.
  assert.equal((await client.metadata.readLedger(f.ledgerId)).value, md)
  await assertReadsBack(c, f.ledgerId)
  // The in-flight entry is on both bookies of its new write set.
  const seg = md.segments[1]!
  const bookies = new BookieClient(client.nc!)
  for (const b of writeSetIndices(f.entryId, 3, 2).map((k) => seg.ensemble[k]!)) {
    const r = await bookies.read(b, f.ledgerId, [f.entryId], 1 << 20, 5000, undefined, masterKeyOf('pw'))
    assert.is(r.entries[0]?.[0], RC.OK, `entry ${f.entryId} on ${b}`)
  }
  assert.ok(tookMs < 30_000, `recovery took ${tookMs} ms`)
})

t('autorecovery: the open ledger is recovered through an ensemble change, then fully re-replicated on live bookies', async (ctx) => {
  const { c } = ctx
  // The bookie lost in the previous test comes back: four live bookies again.
  for (const b of c.bookies) if (b.proc.exitCode !== null || b.proc.signalCode !== null) await c.startBookie(Number(b.id.slice('bookie-'.length)))
  const f = await writerDiesWithEntryInFlight(ctx)
  const client = c.clients[0]!
  const store = new AutorecoveryStore(client.metadata.clusterKv)
  const logs: string[] = []
  const log = (who: string) => (msg: string, fields?: Record<string, unknown>): void => {
    logs.push(`${new Date().toISOString().slice(11, 23)} ${who} ${msg} ${JSON.stringify(fields ?? {})}`)
  }
  const auditor = await startAuditor({ ...settings, nats: c.nats.url, nodeId: 'auditor-e', log: log('auditor') })
  const worker = await startReplicator({ ...settings, nats: c.nats.url, nodeId: 'worker-e', passwords: ['pw'], log: log('worker') })
  try {
    await until(`ledger ${f.ledgerId} is closed, off ${f.lost}, and no mark is left`, async () => {
      const md = (await client.metadata.readLedger(f.ledgerId)).value
      return md.state === 'CLOSED' && !md.segments.some((s) => s.ensemble.includes(f.lost)) && (await store.listMarks()).length === 0
    }, 60_000, logs)
    assert.ok(worker.stats.ledgersRecovered >= 1, 'the worker recovered the open ledger')
  } finally {
    await worker.stop()
    await auditor.stop()
  }
  const md = (await client.metadata.readLedger(f.ledgerId)).value
  assert.is(md.lastEntryId, f.entryId)
  assert.is(md.segments[md.segments.length - 1]!.firstEntryId, f.entryId, 'recovery wrote the in-flight entry to a new segment')
  await assertReadsBack(c, f.ledgerId)
  await assertFullyReplicated(c, md)
})

t('shell: recover <bookieId> with no live bookie to replace it fails at once with NOT_ENOUGH_BOOKIES', async ({ c }) => {
  // Three live bookies now; a ledger on all three, then one of them killed for good: two left,
  // both in the ensemble.
  const client = c.clients[0]!
  const live = (await client.listBookies()).filter((b) => isBookieAlive(b, Date.now()))
  assert.is(live.length, 3)
  const w = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let k = 0; k < 4; k++) await w.append(payloadFor(k))
  await w.close()
  const victim = w.metadata.segments[0]!.ensemble[0]!
  c.bookie(victim).kill('SIGKILL')
  await until(`${victim} counts as dead`, async () => {
    const rec = (await client.listBookies()).find((b) => b.bookieId === victim)
    return rec === undefined || !isBookieAlive(rec, Date.now())
  })
  const started = Date.now()
  const r = await quire(['shell', 'recover', victim, '--nats', c.nats.url, '--timeout-s', '600'], cleanEnv(), 60_000)
  const tookMs = Date.now() - started
  assert.is(r.code, 1, show(r))
  assert.match(r.stderr, /^error NOT_ENOUGH_BOOKIES: /, show(r))
  assert.match(r.stderr, new RegExp(`ledger\\(s\\)[^\\n]*${w.ledgerId}`), show(r))
  assert.ok(tookMs < 30_000, `took ${tookMs} ms (process start-up included)`)
  // Nothing was marked: the cluster's workers are not sent after what cannot be done.
  const marks = await new AutorecoveryStore(client.metadata.clusterKv).listMarks()
  assert.not.ok(marks.some((m) => m.value.ledgerId === w.ledgerId), 'the ledger was not marked')
})

t.run()
