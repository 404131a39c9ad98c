// Auto-recovery on real processes (PROTOCOL.md "Auto-recovery"): nats-server and four bookie
// processes; the auditor and replication workers run in this process with short settings.
// - a bookie killed for good (kill -9): every ledger (closed ones, and open ones, which are
//   fenced and closed after the grace period) returns to full replication without it, every
//   entry reads back, and `listunderreplicated` ends empty;
// - a worker crashing mid-copy leaves its claim to expire; another takes it over and finishes;
// - the auditor crashing: another node takes the lease over once it has expired;
// - the shell: `recover <bookieId>` after a kill -9 and `decommissionbookie` after a drain, with
//   their progress lines; `autorecovery --disable/--enable`, and the errors BOOKIE_RUNNING and
//   NO_AUDITOR.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startAuditor, type AuditorHandle } from '../../actors/auditor.ts'
import { startReplicator, type ReplicatorHandle, type ReplicatorOptions } from '../../actors/replicator.ts'
import { QUIRE_BIN, REPO_ROOT, startNodeProcess } from '../../cli/cluster.ts'
import type { QuireClientImpl as QuireClient, WriteHandle } from '../../client/internal.ts'
import { AUDITOR_KEY, AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { isBookieAlive } from '../../storage/metadataStore.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'

const run = promisify(execFile)
const t = suite<{ c: TestCluster }>('autorecovery')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 4, heartbeatMs: 200 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

const settings = {
  lostBookieRecoveryDelayMs: 800, auditorLeaseMs: 2000, auditIntervalMs: 5000, checkIntervalMs: 200,
  replicationGraceMs: 800, claimLeaseMs: 2000, pollMs: 150, readTimeoutMs: 1500, addTimeoutMs: 5000,
}

/** What the roles logged, shown when a wait times out. */
const logs: string[] = []
const logTo = (who: string) => (msg: string, fields?: Record<string, unknown>): void => {
  logs.push(`${new Date().toISOString().slice(11, 23)} ${who} ${msg} ${JSON.stringify(fields ?? {})}`)
  if (logs.length > 400) logs.splice(0, logs.length - 400)
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}; last logs:\n${logs.slice(-60).join('\n')}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function shell(c: TestCluster, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [QUIRE_BIN, 'shell', ...args, '--nats', c.nats.url], { cwd: REPO_ROOT, timeout: 90_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

interface Written { ledgerId: number; entries: number; writer: WriteHandle }

/** `count` ledgers (E=3 Qw=2 Qa=2) of `entries(i)` entries each; the first `open` are left open. */
async function writeLedgers(client: QuireClient, count: number, entries: (i: number) => number, open = 0): Promise<Written[]> {
  const out: Written[] = []
  for (let i = 0; i < count; i++) {
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
    const n = entries(i)
    await Promise.all(Array.from({ length: n }, (_, k) => w.append(payloadFor(w.ledgerId * 1000 + k))))
    if (i >= open) await w.close()
    out.push({ ledgerId: w.ledgerId, entries: n, writer: w })
  }
  // Idle writers send their LAC on their own (explicit LAC): bookies know every entry is confirmed.
  if (open > 0) await new Promise((r) => setTimeout(r, 300))
  return out
}

/** The bookie in the most of these ledgers' ensembles. */
async function busiest(client: QuireClient, ledgers: Written[]): Promise<string> {
  const count = new Map<string, number>()
  for (const l of ledgers) {
    const md = (await client.metadata.readLedger(l.ledgerId)).value
    for (const b of new Set(md.segments.flatMap((s) => s.ensemble))) count.set(b, (count.get(b) ?? 0) + 1)
  }
  return [...count].sort((a, b) => b[1] - a[1])[0]![0]
}

/** Ledgers (of `ledgers`, or of the whole cluster) with a segment on `bookieId`. */
async function referencing(client: QuireClient, ledgers: Written[] | 'all', bookieId: string): Promise<number[]> {
  const ids: number[] = []
  if (ledgers === 'all') for await (const id of client.listLedgers()) ids.push(id)
  else ids.push(...ledgers.map((l) => l.ledgerId))
  const out: number[] = []
  for (const id of ids) {
    const md = (await client.metadata.readLedger(id)).value
    if (md.segments.some((s) => s.ensemble.includes(bookieId))) out.push(id)
  }
  return out
}

async function waitDead(c: TestCluster, client: QuireClient, bookieId: string): Promise<void> {
  await until(`${bookieId} counts as dead`, async () => {
    const rec = (await client.listBookies()).find((b) => b.bookieId === bookieId)
    return rec === undefined || !isBookieAlive(rec, Date.now())
  })
}

/**
 * Every entry of every ledger reads back byte for byte, with a reader that never saw the old
 * ensembles; the ledgers in `stillOpen` are open (their writers never lost a bookie), the rest closed.
 */
async function readBack(c: TestCluster, ledgers: Written[], stillOpen: readonly number[] = []): Promise<void> {
  const reader = await c.client({ readTimeoutMs: 3000 })
  for (const l of ledgers) {
    const h = await reader.openLedger(l.ledgerId)
    assert.is(h.metadata.state, stillOpen.includes(l.ledgerId) ? 'OPEN' : 'CLOSED', `ledger ${l.ledgerId}`)
    assert.is(h.lastAddConfirmed, l.entries - 1, `ledger ${l.ledgerId} ends at its last acknowledged entry`)
    const got = await h.read(0, l.entries - 1)
    got.forEach((e, k) => assert.ok(e.payload.equals(payloadFor(l.ledgerId * 1000 + k)), `ledger ${l.ledgerId} entry ${k}`))
  }
}

const bookieIndex = (id: string): number => Number(id.slice('bookie-'.length))

async function restartDead(c: TestCluster): Promise<void> {
  for (const b of c.bookies) if (b.proc.exitCode !== null || b.proc.signalCode !== null) await c.startBookie(bookieIndex(b.id))
}

async function marks(c: TestCluster): Promise<number> {
  const client = c.clients[0]!
  return (await new AutorecoveryStore(client.metadata.clusterKv).listMarks()).length
}

t('kill -9 a bookie for good: every ledger is re-replicated without it, open ones fenced and closed first; all reads back', async ({ c }) => {
  const client = await c.client()
  const ledgers = await writeLedgers(client, 50, (i) => 10 + (i % 5) * 15, 5)
  const victim = await busiest(client, ledgers)
  const affected = await referencing(client, ledgers, victim)
  const roles: Array<AuditorHandle | ReplicatorHandle> = []
  try {
    roles.push(await startAuditor({ ...settings, nats: c.nats.url, nodeId: 'auditor-1', log: logTo('auditor-1') }))
    roles.push(await startReplicator({ ...settings, nats: c.nats.url, nodeId: 'worker-1', log: logTo('worker-1') }))
    roles.push(await startReplicator({ ...settings, nats: c.nats.url, nodeId: 'worker-2', log: logTo('worker-2') }))
    c.bookie(victim).kill('SIGKILL')
    await until(`no ledger uses ${victim} and no mark is left`, async () =>
      (await referencing(client, ledgers, victim)).length === 0 && (await marks(c)) === 0, 45_000)
    // Open ledgers that used the victim were fenced and closed; the others are left to their writers.
    const open = ledgers.slice(0, 5).map((l) => l.ledgerId)
    await readBack(c, ledgers, open.filter((id) => !affected.includes(id)))
    const who = await shell(c, 'whoisauditor')
    assert.match(who.stdout, /^auditor: auditor-1 /)
    const list = await shell(c, 'listunderreplicated')
    assert.is(list.code, 0, list.stderr)
    assert.is(list.stdout.trim(), 'no under-replicated ledgers')
    const stats = roles.slice(1).map((r) => (r as ReplicatorHandle).stats)
    assert.is(stats.reduce((n, s) => n + s.ledgersDone, 0), affected.length, 'each affected ledger replicated once')
    assert.is(stats.reduce((n, s) => n + s.ledgersRecovered, 0), open.filter((id) => affected.includes(id)).length)
  } finally {
    for (const r of roles) await r.stop()
    for (const l of ledgers.slice(0, 5)) await l.writer.close().catch(() => {})
  }
})

t('ledgers with a password, closed and open, are re-replicated with no password configured: the worker gets their master key from a surviving bookie', async ({ c }) => {
  await restartDead(c)
  const client = await c.client()
  const PASSWORD = 'auto-pw-61d0'
  const ledgers: Written[] = []
  for (let i = 0; i < 6; i++) {
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, password: PASSWORD })
    const n = 20 + i * 5
    await Promise.all(Array.from({ length: n }, (_, k) => w.append(payloadFor(w.ledgerId * 1000 + k))))
    if (i > 0) await w.close()
    ledgers.push({ ledgerId: w.ledgerId, entries: n, writer: w })
  }
  await new Promise((r) => setTimeout(r, 300)) // the open one's explicit LAC
  const victim = await busiest(client, ledgers)
  const affected = await referencing(client, ledgers, victim)
  assert.ok(affected.length > 0)
  const roles: Array<AuditorHandle | ReplicatorHandle> = []
  try {
    roles.push(await startAuditor({ ...settings, nats: c.nats.url, nodeId: 'auditor-pw', log: logTo('auditor-pw') }))
    // No `passwords`: only the empty password, which none of these ledgers has.
    const worker = await startReplicator({ ...settings, nats: c.nats.url, nodeId: 'worker-pw', log: logTo('worker-pw') })
    roles.push(worker)
    c.bookie(victim).kill('SIGKILL')
    await until(`no password ledger uses ${victim} and no mark is left`, async () =>
      (await referencing(client, ledgers, victim)).length === 0 && (await marks(c)) === 0, 45_000)
    assert.ok(worker.stats.ledgersDone >= affected.length, `${worker.stats.ledgersDone} ledger(s) done, ${affected.length} affected`)
    const reader = await c.client({ readTimeoutMs: 3000 })
    for (const l of ledgers) {
      const h = await reader.openLedger(l.ledgerId, { password: PASSWORD })
      assert.not.ok(h.metadata.segments.some((seg) => seg.ensemble.includes(victim)), `ledger ${l.ledgerId} left ${victim}`)
      const got = await h.read(0, l.entries - 1)
      got.forEach((e, k) => assert.ok(e.payload.equals(payloadFor(l.ledgerId * 1000 + k)), `ledger ${l.ledgerId} entry ${k}`))
    }
  } finally {
    for (const r of roles) await r.stop()
    await ledgers[0]!.writer.close().catch(() => {})
  }
})

t('a worker killed mid-copy leaves its claim to expire; another takes it over and finishes', async ({ c }) => {
  await restartDead(c)
  const client = await c.client()
  const ledgers = await writeLedgers(client, 3, () => 300)
  const victim = await busiest(client, ledgers)
  // Ledgers of earlier tests may use the victim too: the auditor marks them all.
  const affected = await referencing(client, 'all', victim)
  const claims: Array<{ ledgerId: number; nodeId: string; now: number; previousHolder: string | null; previousExpiresAt: number | null }> = []
  let crashed: { ledgerId: number; at: number } | null = null
  const common: ReplicatorOptions = { ...settings, nats: c.nats.url, copyBatchEntries: 20, hooks: { onClaimed: (x) => claims.push(x) } }
  const auditor = await startAuditor({ ...settings, nats: c.nats.url, nodeId: 'auditor-2', log: logTo('auditor-2') })
  let b: ReplicatorHandle | null = null
  const a: ReplicatorHandle = await startReplicator({
    ...common, nodeId: 'worker-a', log: logTo('worker-a'),
    hooks: {
      ...common.hooks,
      afterCopyBatch: async (x) => {
        if (crashed === null && x.copied < x.total) {
          crashed = { ledgerId: x.ledgerId, at: Date.now() }
          await a.crash()
        }
      },
    },
  })
  try {
    c.bookie(victim).kill('SIGKILL')
    await until('worker-a crashed mid-copy', () => crashed !== null)
    b = await startReplicator({ ...common, nodeId: 'worker-b', log: logTo('worker-b') })
    await until(`no ledger uses ${victim} and no mark is left`, async () =>
      (await referencing(client, 'all', victim)).length === 0 && (await marks(c)) === 0, 45_000)
    const cr = crashed as { ledgerId: number; at: number } | null
    assert.ok(cr !== null && affected.includes(cr.ledgerId))
    const takeover = claims.find((x) => x.nodeId === 'worker-b' && x.ledgerId === cr.ledgerId)
    assert.ok(takeover, 'worker-b claimed the ledger worker-a was copying')
    assert.is(takeover.previousHolder, 'worker-a')
    assert.ok(takeover.now > takeover.previousExpiresAt!, 'only once worker-a\'s claim had expired')
    assert.is(claims.filter((x) => x.ledgerId === cr.ledgerId).length, 2, 'claimed by worker-a, then by worker-b only')
    await readBack(c, ledgers)
  } finally {
    await a.stop()
    await b?.stop()
    await auditor.stop()
  }
})

t('the auditor crashes: another node takes the lease over once it has expired', async ({ c }) => {
  const store = new AutorecoveryStore((await c.client()).metadata.clusterKv)
  const opts = { ...settings, nats: c.nats.url, auditorLeaseMs: 1500 }
  const one = await startAuditor({ ...opts, nodeId: 'auditor-x', log: logTo('auditor-x') })
  const two = await startAuditor({ ...opts, nodeId: 'auditor-y', log: logTo('auditor-y') })
  try {
    await until('one of them leads', () => one.isLeader || two.isLeader)
    const [leader, other] = one.isLeader ? [one, two] : [two, one]
    assert.not.ok(other.isLeader)
    await leader.crash()
    const before = await store.readLease(AUDITOR_KEY)
    await until('the other leads', () => other.isLeader)
    const after = await store.readLease(AUDITOR_KEY)
    assert.is.not(after!.value.holder, before!.value.holder)
    assert.ok(after!.value.acquiredAt > before!.value.expiresAt, 'not before the crashed leader\'s lease ran out')
    const who = await shell(c, 'whoisauditor')
    assert.ok(who.stdout.startsWith(`auditor: ${after!.value.holder} `), who.stdout)
  } finally {
    await one.stop()
    await two.stop()
  }
})

t('quire node processes: kill -9 of the auditor\'s process, and another node takes over within the lease', async ({ c }) => {
  const store = new AutorecoveryStore((await c.client()).metadata.clusterKv)
  const leaseMs = 1500
  const args = ['--roles', 'auditor,replicator', '--nats', c.nats.url, '--auditor-lease-ms', String(leaseMs), '--lost-bookie-recovery-delay-ms', '800']
  const nodes = [startNodeProcess({ args }), startNodeProcess({ args })]
  try {
    let lease = await store.readLease(AUDITOR_KEY)
    const holderPid = (): number => Number(lease?.value.holder.split('-').pop())
    await until('a node process leads', async () => {
      lease = await store.readLease(AUDITOR_KEY)
      return lease !== null && lease.value.expiresAt > Date.now() && nodes.some((n) => n.pid === holderPid())
    })
    const leader = nodes.find((n) => n.pid === holderPid())!
    const other = nodes.find((n) => n !== leader)!
    const killedAt = Date.now()
    leader.proc.kill('SIGKILL')
    await until('the other node leads', async () => {
      lease = await store.readLease(AUDITOR_KEY)
      return lease !== null && holderPid() === other.pid
    })
    const tookMs = lease!.value.acquiredAt - killedAt
    // The lease had up to leaseMs left at the kill, and is taken over after a skew margin of a fifth of it.
    assert.ok(tookMs <= 2 * leaseMs + 1000, `took over ${tookMs} ms after the kill`)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
  }
})

t('shell: recover <bookieId> after kill -9, with a progress line; errors BOOKIE_RUNNING and NO_AUDITOR; the switch', async ({ c }) => {
  await restartDead(c)
  const client = await c.client()
  const ledgers = await writeLedgers(client, 8, () => 30)
  const victim = await busiest(client, ledgers)
  const running = await shell(c, 'recover', victim)
  assert.is(running.code, 1)
  assert.match(running.stderr, /^error BOOKIE_RUNNING: /)
  const off = await shell(c, 'autorecovery', '--disable')
  assert.match(off.stdout, /^autorecovery is disabled \(since /)
  const status = await shell(c, 'autorecovery')
  assert.match(status.stdout, /^autorecovery is disabled/)
  c.bookie(victim).kill('SIGKILL')
  await waitDead(c, client, victim)
  // Every ledger of the cluster that used the bookie, this test's and earlier ones'.
  const affected = await referencing(client, 'all', victim)
  // An operator's recover works even while autorecovery is disabled.
  const r = await shell(c, 'recover', victim, '--timeout-s', '60')
  assert.is(r.code, 0, r.stderr + r.stdout)
  assert.match(r.stdout, new RegExp(`recover ${victim} \\[#+\\] ${affected.length}/${affected.length} ledgers`))
  assert.match(r.stdout, new RegExp(`bookie ${victim} recovered: ${affected.length} ledger\\(s\\) re-replicated`))
  assert.equal(await referencing(client, 'all', victim), [])
  await readBack(c, ledgers)
  assert.match((await shell(c, 'autorecovery', '--enable')).stdout, /^autorecovery is enabled/)
  const audit = await shell(c, 'triggeraudit', '--timeout-ms', '5000')
  assert.is(audit.code, 1)
  assert.match(audit.stderr, /^error NO_AUDITOR: /)
})

t('shell: decommissionbookie after a drain re-replicates its ledgers and removes the registration; triggeraudit', async ({ c }) => {
  await restartDead(c)
  const client = await c.client()
  const ledgers = await writeLedgers(client, 6, () => 20)
  const leaving = await busiest(client, ledgers)
  const affected = await referencing(client, 'all', leaving)
  await c.bookie(leaving).stop()
  assert.not.ok((await client.listBookies()).some((b) => b.bookieId === leaving), 'a drained bookie removes its registration')
  const r = await shell(c, 'decommissionbookie', leaving, '--timeout-s', '60')
  assert.is(r.code, 0, r.stderr + r.stdout)
  assert.match(r.stdout, new RegExp(`decommission ${leaving} \\[#+\\] ${affected.length}/${affected.length} ledgers`))
  assert.match(r.stdout, new RegExp(`bookie ${leaving} decommissioned: ${affected.length} ledger\\(s\\) re-replicated`))
  assert.equal(await referencing(client, 'all', leaving), [])
  await readBack(c, ledgers)
  const auditor = await startAuditor({ ...settings, nats: c.nats.url, nodeId: 'auditor-z', log: logTo('auditor-z') })
  try {
    await until('auditor-z leads', () => auditor.isLeader)
    const audit = await shell(c, 'triggeraudit')
    assert.is(audit.code, 0, audit.stderr)
    assert.match(audit.stdout, /^audit by auditor-z: \d+ ledger\(s\) checked, 0 marked under-replicated, \d+ scanned for missing entries, 0 with missing entries/)
  } finally {
    await auditor.stop()
  }
})

t.run()
