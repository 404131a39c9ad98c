// Recovery with a hung replica (real processes: nats-server and three bookie processes, one
// SIGSTOPped): recovery's reads speculate like any read (machines/speculativeRead.ts), so a
// recovery waits on no read timeout; an answer counts only as the evidence of the bookie that gave
// it, and a speculative request still out is never "absent". Counted (requests sent to the hung
// bookie, waits on a timeout), with a bound on the time far under what the timeouts add up to.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { ClientMetrics } from '../../client/internal.ts'
import { writeSetIndices } from '../../machines/quorum.ts'
import { connectNats } from '../../transport/nats.ts'
import { bookieSubject, decode, type WireMessage } from '../../transport/wire.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'
import { isStopped, waitFor, within } from '../support/processes.ts'
import { waitForBookies } from '../../cli/sandbox.ts'

const SPECULATE_MS = 300
const READ_TIMEOUT_MS = 10_000

const t = suite<{ c: TestCluster }>('recovery with a hung replica (real processes)')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => {
  for (const b of ctx.c?.bookies ?? []) {
    try { process.kill(b.pid, 'SIGCONT') } catch { /* gone */ }
  }
  await ctx.c?.stop()
})

function counting() {
  const n = { speculative: 0, waited: 0 }
  const metrics: ClientMetrics = {
    addResolved() {}, tailDelivered() {}, bookieTimeout() {},
    speculativeRead() { n.speculative++ },
    waitedOnTimeout() { n.waited++ },
  }
  return { n, metrics }
}

/** SIGSTOP `hung`, recover ledger `ledgerId` through a new client that counts, SIGCONT `hung`. */
async function recoverWithHung(c: TestCluster, ledgerId: number, hung: string) {
  process.kill(c.bookie(hung).pid, 'SIGSTOP')
  try {
    await waitFor(() => isStopped(c.bookie(hung).pid), 10_000, () => `${hung} stopped`)
    const { n, metrics } = counting()
    const rc = await c.client({ readTimeoutMs: READ_TIMEOUT_MS, speculativeReadTimeoutMs: SPECULATE_MS, metrics })
    const started = performance.now()
    const r = await within(20 * READ_TIMEOUT_MS, 'recovery', rc.openLedger(ledgerId, { recovery: true }))
    const ms = performance.now() - started
    assert.is(r.metadata.state, 'CLOSED')
    return { r, ms, n }
  } finally {
    process.kill(c.bookie(hung).pid, 'SIGCONT')
  }
}

t('a recovery with one replica SIGSTOPped completes without waiting on read timeouts', async ({ c }) => {
  // Qw 3, Qa 2: every entry's write set holds the hung bookie, and recovery can still write back.
  const wc = await c.client({ explicitLacIntervalMs: 0 })
  const w = await wc.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
  const ENTRIES = 100
  const appends: Promise<number>[] = []
  for (let i = 0; i < ENTRIES; i++) appends.push(w.append(payloadFor(i, 512)))
  await Promise.all(appends)
  // The writer goes silent (never closes); its pipelined entries carried LACs well behind the last
  // one, so recovery reads many entries back.
  const ensemble = w.metadata.segments[0]!.ensemble
  const hung = ensemble[writeSetIndices(ENTRIES - 1, 3, 3)[0]!]!
  const spy = await connectNats(c.nats.url)
  const toHung: WireMessage[] = []
  spy.subscribe(bookieSubject(hung), { callback: (_e, m) => { try { toHung.push(decode(m.data)) } catch { /* binary add frame */ } } })
  await spy.flush()
  try {
    const { r, ms, n } = await recoverWithHung(c, w.ledgerId, hung)
    assert.is(r.metadata.lastEntryId, ENTRIES - 1, 'every acknowledged entry kept')
    const all = await r.read(0, ENTRIES - 1)
    assert.ok(all.every((e, i) => e.payload.equals(payloadFor(i, 512))))
    await spy.flush()
    const reads = toHung.filter((m) => m.op === 'read').length
    console.log(`  recovery with ${hung} stopped: ${ms.toFixed(0)} ms, ${reads} read request(s) to it, ${n.speculative} speculative, ${n.waited} wait(s) on a timeout`)
    assert.is(n.waited, 0, 'no read of the recovery waited for a read timeout')
    // Waiting on the hung replica would cost a read timeout (10 s) per entry; a loaded machine
    // takes a few seconds for the whole recovery (a read and a write-back per entry).
    assert.ok(ms < 5 * READ_TIMEOUT_MS, `recovery took ${ms.toFixed(0)} ms`)
  } finally {
    await spy.close()
  }
})

t('a recovery that finds nothing past the LAC reads the last entry for its length without waiting on the hung replica', async ({ c }) => {
  // Every entry confirmed and the bookies told so (the idle writer's explicit LAC): recovery finds
  // nothing past the LAC and reads the last entry only for the ledger's length.
  const wc = await c.client({ explicitLacIntervalMs: 30 })
  // A bookie stopped by the test before counts as live again once its heartbeat is seen.
  await waitForBookies(wc, 3, 30_000)
  const w = await wc.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
  const ENTRIES = 20
  for (let i = 0; i < ENTRIES; i++) await w.append(payloadFor(i, 512))
  const probe = await c.client()
  await waitFor(async () => (await (await probe.openLedger(w.ledgerId)).readLac()) === ENTRIES - 1, 10_000, () => 'the bookies to learn the last LAC')
  // The hung bookie is the first replica of the last entry's write set: the one a read asks first.
  const hung = w.metadata.segments[0]!.ensemble[writeSetIndices(ENTRIES - 1, 3, 3)[0]!]!
  const { r, ms, n } = await recoverWithHung(c, w.ledgerId, hung)
  assert.is(r.metadata.lastEntryId, ENTRIES - 1)
  assert.is(r.metadata.length, ENTRIES * 512, 'the length from the last entry')
  console.log(`  recovery (nothing past the LAC) with ${hung} stopped: ${ms.toFixed(0)} ms, ${n.speculative} speculative, ${n.waited} wait(s) on a timeout`)
  assert.ok(n.speculative >= 1, 'the read of the last entry went to another replica')
  assert.is(n.waited, 0, 'no read of the recovery waited for a read timeout')
  // Without the speculative read it waited one whole read timeout (10 s).
  assert.ok(ms < READ_TIMEOUT_MS, `recovery took ${ms.toFixed(0)} ms`)
})

t.run()
