// Bit rot in a bookie's RocksDB SST files, on real processes (nats-server, three bookie
// processes, real RocksDB): bytes are flipped where one ledger's index entries (the payloads are
// in entry logs, storage/entryLog.ts) lie in bookie-1's SST files while it is stopped. After the
// restart:
// - a read of those entries from bookie-1 answers CORRUPT for each damaged one (never "no such
//   entry"), its other entries OK; a client still reads the whole ledger (from other replicas);
// - bookie-1 keeps taking adds and serving reads for other ledgers, and `bookiesanity` passes
//   (before the fix, a ledger's first add there failed: loading it seeks into the damaged block);
// - bookie-1 reports the damage: its registration lists the ledger (`damagedLedgers`), its
//   inspector state counts the damaged entries;
// - with the auditor and a replication worker running, the damaged copies are rewritten in place
//   from the other replicas, and bookie-1 serves them intact again.
// Store-level tests: writes after the damage make RocksDB compact the damaged file, and the store
// repairs itself instead of refusing every later write; a repair a crash interrupted is finished
// at the next open.

import { execFile } from 'node:child_process'
import { readdir, readFile, rm, writeFile, mkdtemp } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startAuditor, type AuditorHandle } from '../../actors/auditor.ts'
import { startReplicator, type ReplicatorHandle } from '../../actors/replicator.ts'
import { QUIRE_BIN, REPO_ROOT } from '../../cli/cluster.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { openEntryStore } from '../../storage/entryStore.ts'
import { entryKey } from '../../storage/entryLogIndex.ts'
import { COLUMN_FAMILIES } from '../../storage/entrySalvage.ts'
import RocksDB from 'rocksdb-native'
import { AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC } from '../../transport/wire.ts'
import type { InspectMessage } from '../../transport/inspect.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'

const run = promisify(execFile)
const t = suite<{ c: TestCluster }>('sst corruption')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3, heartbeatMs: 200, inspect: true }) })
t.after(async (ctx) => { await ctx.c?.stop() })

// Enough index entries per ledger that a damaged block of one ledger's leaves most of it whole.
const ENTRIES = 400
const payload = (ledger: string, k: number): Buffer => Buffer.from(`payload-${ledger}-entry-${String(k).padStart(4, '0')}-`.padEnd(1500, ledger))

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** The index values (as stored in the SST files) of a ledger's entries, read while the store is closed. */
async function indexValues(dir: string, ledgerId: number, entryIds: number[]): Promise<Buffer[]> {
  const db = new RocksDB(dir, { columnFamilies: [...COLUMN_FAMILIES] })
  await db.ready()
  try {
    const batch = db.columnFamily('entries').read({ autoDestroy: true, capacity: entryIds.length })
    const values = entryIds.map((e) => batch.get(entryKey(ledgerId, e)))
    const [, ...got] = await Promise.all([batch.flush(), ...values])
    return got.map((v, i) => {
      assert.ok(v, `entry ${entryIds[i]} of ledger ${ledgerId} is indexed`)
      return v!
    })
  } finally {
    await db.close()
  }
}

/** Flip 8 bytes a little after each marker found in the SST files under `dir`; how many were hit. */
async function flipSst(dir: string, markers: Buffer[]): Promise<number> {
  let hit = 0
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.sst'))) {
    const file = path.join(dir, f)
    const b = await readFile(file)
    let changed = false
    for (const m of markers) {
      const at = b.indexOf(m)
      if (at < 0) continue
      for (let k = 0; k < 8; k++) b[at + m.length + 40 + k]! ^= 0xff
      changed = true
      hit++
    }
    if (changed) await writeFile(file, b)
  }
  return hit
}

t('flipped bytes in one ledger\'s SST blocks: CORRUPT for those entries, every other ledger served, damage reported and repaired in place', async ({ c }) => {
  const client = await c.client()
  const write = async (tag: string): Promise<number> => {
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
    for (let k = 0; k < ENTRIES; k++) await w.append(payload(tag, k))
    await w.close()
    return w.ledgerId
  }
  const healthy = await write('a')
  const damagedLedger = await write('b') // the highest ledger id: a new ledger's first seek lands next to it
  // A graceful stop checkpoints: the entries are in SST files when the bytes are flipped.
  await c.bookie('bookie-1').stop(20_000)
  const entriesDir = path.join(c.dir, 'bookie-1', 'entries')
  const hit = await flipSst(entriesDir, await indexValues(entriesDir, damagedLedger, [ENTRIES - 5]))
  assert.ok(hit >= 1, 'the damaged ledger\'s index entries were found in the SST files')
  const httpPort = await freePort()
  await c.startBookie(1, ['--http-port', String(httpPort)])
  const damagedGauge = async (): Promise<number | null> => {
    const text = await fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text(), () => '')
    const m = /^quire_bookie_damaged_entries\{bookie="bookie-1"\} (\d+)/m.exec(text)
    return m ? Number(m[1]) : null
  }

  const nc = await connectNats(c.nats.url, { name: 'sst-corruption-test' })
  const bookies = new BookieClient(nc)
  const roles: Array<AuditorHandle | ReplicatorHandle> = []
  try {
    const ids = Array.from({ length: ENTRIES }, (_, k) => k)
    const readFrom = async (bookieId: string, ledgerId: number) => bookies.read(bookieId, ledgerId, ids, 16 * 1024 * 1024, 5000)

    // Explicit errors for the damaged entries only; never "no such entry".
    const r = await readFrom('bookie-1', damagedLedger)
    assert.is(r.rc, RC.OK, 'the read as a whole is answered')
    const rcs = r.entries.map(([rc]) => rc)
    assert.ok(rcs.includes(RC.CORRUPT), `some entries are CORRUPT (got ${JSON.stringify(rcs)})`)
    const absent = rcs.flatMap((rc, k) => (rc === RC.NO_SUCH_ENTRY ? [k] : []))
    if (absent.length > 0) console.log(c.bookie('bookie-1').output().slice(-6000))
    assert.equal(absent, [], `no damaged entry is "no such entry" (CORRUPT: ${JSON.stringify(rcs.flatMap((rc, k) => (rc === RC.CORRUPT ? [k] : [])))})`)
    assert.ok(rcs.filter((rc) => rc === RC.OK).length >= ENTRIES / 2, 'the entries outside the damaged blocks are served')
    const intact = await readFrom('bookie-2', damagedLedger)
    r.entries.forEach(([rc, data], k) => { if (rc === RC.OK) assert.ok(Buffer.from(data!).equals(Buffer.from(intact.entries[k]![1]!)), `entry ${k} served intact`) })

    // A client reads the whole damaged ledger (other replicas) and the healthy one.
    for (const [id, tag] of [[damagedLedger, 'b'], [healthy, 'a']] as const) {
      const h = await client.openLedger(id)
      const got = await h.read(0, ENTRIES - 1)
      got.forEach((e, k) => assert.ok(e.payload.equals(payload(tag, k)), `ledger ${id} entry ${k}`))
    }
    const healthyOn1 = await readFrom('bookie-1', healthy)
    assert.ok(healthyOn1.rc === RC.OK && healthyOn1.entries.every(([rc]) => rc === RC.OK), 'bookie-1 serves the healthy ledger')

    // New ledgers on bookie-1 (every ledger of a three-bookie cluster is): adds and reads.
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
    for (let k = 0; k < 20; k++) await w.append(payload('c', k))
    await w.close()
    const fresh = await bookies.read('bookie-1', w.ledgerId, Array.from({ length: 20 }, (_, k) => k), 16 * 1024 * 1024, 5000)
    assert.ok(fresh.rc === RC.OK && fresh.entries.every(([rc]) => rc === RC.OK), 'bookie-1 took and serves a new ledger')
    const sane = await run(process.execPath, [QUIRE_BIN, 'shell', 'bookiesanity', 'bookie-1', '--nats', c.nats.url], { cwd: REPO_ROOT, timeout: 60_000 })
    assert.match(sane.stdout + sane.stderr, /ok|passed|bookie-1/i)

    // The damage is reported: registration (for the auditor) and inspector state.
    await until('bookie-1 lists the damaged ledger in its registration', async () =>
      (await client.listBookies()).find((b) => b.bookieId === 'bookie-1')?.damagedLedgers?.includes(damagedLedger) ?? false)
    const state = await inspectBookie(nc, 'bookie-1', (s) => ((s.damage as { entries?: number } | undefined)?.entries ?? 0) > 0)
    assert.ok((state.damage as { ledgers: number[] }).ledgers.includes(damagedLedger), 'the inspector shows the damaged ledger')
    assert.ok((state.corruptReads as number) > 0, 'the inspector counts the CORRUPT answers')
    assert.ok(((await damagedGauge()) ?? 0) > 0, 'quire_bookie_damaged_entries counts them')

    // Autorecovery rewrites the damaged copies in place.
    const settings = {
      nats: c.nats.url, lostBookieRecoveryDelayMs: 800, auditorLeaseMs: 2000, auditIntervalMs: 60_000, checkIntervalMs: 200,
      replicationGraceMs: 800, claimLeaseMs: 4000, pollMs: 150, readTimeoutMs: 3000, addTimeoutMs: 5000,
    }
    roles.push(await startAuditor({ ...settings, nodeId: 'auditor-1' }))
    roles.push(await startReplicator({ ...settings, nodeId: 'worker-1' }))
    await until('bookie-1 serves every entry of the damaged ledger intact', async () => {
      const again = await readFrom('bookie-1', damagedLedger).catch(() => null)
      return again !== null && again.rc === RC.OK && again.entries.every(([rc, data], k) => rc === RC.OK && Buffer.from(data!).equals(Buffer.from(intact.entries[k]![1]!)))
    })
    await until('bookie-1 no longer reports damage', async () =>
      !(await client.listBookies()).find((b) => b.bookieId === 'bookie-1')?.damagedLedgers)
    assert.is(await damagedGauge(), 0, 'quire_bookie_damaged_entries is back to 0')
    const marks = new AutorecoveryStore(client.metadata.clusterKv)
    await until('no ledger is left marked', async () => (await marks.listMarks()).length === 0)
  } finally {
    await Promise.all(roles.map((r) => r.stop().catch(() => {})))
    await nc.close().catch(() => {})
  }
})

t('store level: compaction that meets the damaged block repairs the store; writes go on', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-sst-'))
  try {
    const mk = (l: number, e: number): Buffer => Buffer.from(`L${l}E${e}-`.padEnd(2000, String(l)))
    let s = await openEntryStore(dir)
    await s.putEntries([1, 2].flatMap((l) => Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: l, entryId: e, data: mk(l, e) }))))
    await s.flush()
    await s.close()
    assert.ok((await flipSst(dir, await indexValues(dir, 2, [200, ENTRIES - 2]))) >= 1)
    s = await openEntryStore(dir)
    const events: string[] = []
    s.onDamage = (e) => events.push(e.kind)
    try {
      // Flushes make RocksDB compact level 0 (from 4 files on), the damaged file included: a
      // background error that refused every later write before. Every write must succeed.
      let rounds = 0
      for (; rounds < 100 && !events.includes('repaired'); rounds++) {
        // Ledger 1's new entries fall inside the damaged file's key range: compactions take it in.
        await s.putEntries([1, 2].map((l) => ({ ledgerId: l, entryId: 1000 + rounds, data: mk(l, 1000 + rounds) })).concat({ ledgerId: 3, entryId: rounds, data: mk(3, rounds) }))
        await s.flush()
        await new Promise((r) => setTimeout(r, 100))
      }
      assert.ok(events.includes('repaired'), `the store repaired itself (${events.join(',')})`)
      await s.compactLedgers(0, 10)
      assert.is(await s.lastEntryId(3), rounds - 1)
      assert.is(await s.lastEntryId(4), -1)
      const two = await s.readEntries(Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: 2, entryId: e })))
      assert.ok(two.includes('damaged'), 'the damaged entries are named')
      assert.not.ok(two.includes(null), 'no damaged entry reads as absent')
      two.forEach((v, e) => { if (v !== 'damaged') assert.ok(v !== null && v.equals(mk(2, e)), `entry ${e} copied intact`) })
      const one = await s.readEntries(Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: 1, entryId: e })))
      one.forEach((v, e) => assert.ok(Buffer.isBuffer(v) && v.equals(mk(1, e)), `ledger 1 entry ${e}`))
      assert.equal(s.damage.ledgers, [2])
      // A new copy heals an entry.
      const lost = two.flatMap((v, e) => (v === 'damaged' ? [e] : []))
      await s.putEntries(lost.map((e) => ({ ledgerId: 2, entryId: e, data: mk(2, e) })))
      assert.is(s.damage.entries, 0)
    } finally {
      await s.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    await rm(`${dir}.logs`, { recursive: true, force: true })
  }
})

t('store level: a repair started by a seek, not a read: the first reads of its copy answer the damaged entries damaged, never absent', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-sst-'))
  try {
    const mk = (e: number): Buffer => Buffer.from(`E${e}-`.padEnd(2000, 'x'))
    let s = await openEntryStore(dir)
    await s.putEntries(Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: 1, entryId: e, data: mk(e) })))
    await s.flush()
    await s.close()
    assert.ok((await flipSst(dir, await indexValues(dir, 1, [ENTRIES - 5]))) >= 1)
    s = await openEntryStore(dir)
    const refs = Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: 1, entryId: e }))
    // Read as soon as reads go to the copy: the store knows the damaged entries only from the copy.
    let first: Array<Buffer | null | 'damaged'> | null = null
    s.onRepairSwapped = async () => { first = await s.readEntries(refs) }
    try {
      // A new ledger's last entry id: a reverse seek that lands in ledger 1's last (damaged) block.
      assert.is(await s.lastEntryId(2), -1)
      assert.ok(first !== null, 'the repair ran')
      const got = first as unknown as Array<Buffer | null | 'damaged'>
      const damaged = got.flatMap((v, e) => (v === 'damaged' ? [e] : []))
      assert.ok(damaged.length > 0, 'the copy names the damaged entries')
      assert.equal(got.flatMap((v, e) => (v === null ? [e] : [])), [], 'no entry reads as absent')
      assert.equal(s.damagedOf(1), damaged)
    } finally {
      await s.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    await rm(`${dir}.logs`, { recursive: true, force: true })
  }
})

t('store level: a repair a crash interrupted is finished at the next open', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'quire-sst-'))
  const dir = path.join(root, 'entries')
  try {
    // One folder of entry logs for all three: a repair copies the index, the logs stay.
    const put = async (where: string, tag: string): Promise<void> => {
      const s = await openEntryStore(where, { logDir: `${dir}.logs` })
      await s.putEntries([{ ledgerId: 1, entryId: 0, data: Buffer.from(tag) }])
      await s.close()
    }
    await put(dir, 'old')
    await put(`${dir}.salvaged`, 'copied') // a complete copy, renamed before the crash
    await put(`${dir}.salvage`, 'partial') // and a partial one of a later repair
    const s = await openEntryStore(dir)
    try {
      assert.equal(await s.getEntries([{ ledgerId: 1, entryId: 0 }]), [Buffer.from('copied')])
    } finally {
      await s.close()
    }
    assert.equal((await readdir(root)).sort(), ['entries', 'entries.logs'])
  } finally {
    await rm(root, { recursive: true, force: true })
  }
})

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** The bookie's inspected state (transport/inspect.ts: JSON on quire.inspect.bookie.<id>) once `ok` holds for it. */
async function inspectBookie(nc: Awaited<ReturnType<typeof connectNats>>, bookieId: string, ok: (s: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const sub = nc.subscribe(`quire.inspect.bookie.${bookieId}`)
  const timer = setTimeout(() => sub.unsubscribe(), 30_000)
  try {
    for await (const m of sub) {
      const msg = JSON.parse(Buffer.from(m.data).toString('utf8')) as InspectMessage
      if (ok(msg.context)) return msg.context
    }
    throw new Error(`the inspector never showed ${bookieId}'s damage within 30 s`)
  } finally {
    clearTimeout(timer)
    sub.unsubscribe()
  }
}

t.run()
