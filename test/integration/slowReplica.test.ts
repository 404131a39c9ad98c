// A read of a ledger with one dead or hung bookie waits one read timeout, not one per 512-entry
// chunk (client/readHandle.ts, client/slowBookies.ts). Scripted bookies for the rules: the bookie
// that timed out is asked last for the rest of the read and for later reads of the handle, asked
// first again once forgotten, and still asked when it is the only replica left (a timeout orders
// replicas, it never makes an entry absent). Then real bookie processes: one SIGSTOPped (it hangs,
// it does not refuse), 5,000 entries read, counting the timeouts the read suffered.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { clientMetrics, registry } from '../../actors/metrics.ts'
import { READS_IN_FLIGHT, ReadHandleImpl as ReadHandle } from '../../client/readHandle.ts'
import { SLOW_BOOKIES_MAX, SlowBookies } from '../../client/slowBookies.ts'
import { QuireError } from '../../machines/errors.ts'
import type { LedgerMetadata } from '../../storage/metadataStore.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { RC, type ReadLacResponse, type ReadResponse } from '../../transport/wire.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'
import { isStopped, waitFor } from '../support/processes.ts'

const ENTRIES = 5000
const key = masterKeyOf('')
const md: LedgerMetadata = {
  ledgerId: 7, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'CLOSED', lastEntryId: ENTRIES - 1, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], customMetadata: {}, createdAt: 0, passwordCheck: '',
}
const stored = (id: number): Buffer => encodeEntry('crc32c', key, 7, id, id - 1, 0, Buffer.from(`entry-${id}`))

type Answer = 'good' | 'missing' | 'timeout'
/** Bookies that answer per `script`; a timeout is thrown at once (the wait is what is counted). */
function bookies(script: { fn: (bookie: string, id: number) => Answer }) {
  const requests = new Map<string, number>()
  return {
    requests,
    async read(bookieId: string, _l: number, ids: number[]): Promise<ReadResponse> {
      requests.set(bookieId, (requests.get(bookieId) ?? 0) + 1)
      if (ids.some((id) => script.fn(bookieId, id) === 'timeout')) throw new QuireError('TIMEOUT', 'scripted timeout', { bookieId })
      const entries = ids.map((id): [number, Uint8Array | null] => (script.fn(bookieId, id) === 'good' ? [RC.OK, stored(id)] : [RC.NO_SUCH_ENTRY, null]))
      return { op: 'readResp', reqId: 0, bookieId, rc: RC.OK, entries }
    },
    async readLac(): Promise<ReadLacResponse> {
      throw new Error('not used')
    },
  }
}

const u = suite('slow replica: rules')

u('a bookie that timed out is asked only by the first chunks of a 5,000-entry read, and not at all in the next', async () => {
  const script = { fn: (b: string): Answer => (b === 'b' ? 'timeout' : 'good') }
  const b = bookies(script)
  let now = 0
  const h = new ReadHandle({ bookies: b, masterKey: key, readTimeoutMs: 5000, clock: { now: () => now } }, md)
  const got = await h.read(0, ENTRIES - 1)
  assert.is(got.length, ENTRIES)
  assert.ok(got.every((e, i) => e.payload.toString() === `entry-${i}`))
  // Without the memory it is one timed-out request per chunk: 10. With it, only the chunks asked
  // together with the first (READS_IN_FLIGHT at a time, waiting side by side) ask it.
  const first = b.requests.get('b')!
  assert.ok(first >= 1 && first <= READS_IN_FLIGHT, `b asked ${first} times, only by the first chunks in flight`)
  await h.read(0, ENTRIES - 1)
  assert.is(b.requests.get('b'), first, 'the next read of the handle goes to the other replicas')
  // Forgotten after a while: asked first again (it may be back), then remembered again.
  now += new SlowBookies(5000).forgetMs
  await h.read(0, ENTRIES - 1)
  const again = b.requests.get('b')! - first
  assert.ok(again >= 1 && again <= READS_IN_FLIGHT, `asked again once forgotten (${again})`)
})

u('a slow bookie is still asked when no other replica has the entry, and is forgotten once it answers', async () => {
  const script: { fn: (bookie: string, id: number) => Answer } = { fn: (bk) => (bk === 'b' ? 'timeout' : 'good') }
  const b = bookies(script)
  const h = new ReadHandle({ bookies: b, masterKey: key, readTimeoutMs: 5000 }, md)
  await h.read(0, 10)
  // b is back; entry 1 (write set b, c) is missing on c: only b has it.
  script.fn = (bk, id) => (bk === 'c' && id === 1 ? 'missing' : 'good')
  const [e] = await h.read(1, 1)
  assert.is(e!.payload.toString(), 'entry-1')
  const before = b.requests.get('b')!
  await h.read(0, 10)
  assert.is(b.requests.get('b'), before + 1, 'answered: asked first again')
})

u('bounded: the oldest slow bookie is forgotten first', () => {
  const s = new SlowBookies(1000, () => 0)
  for (let i = 0; i <= SLOW_BOOKIES_MAX; i++) s.timedOut(`b${i}`)
  assert.is(s.size, SLOW_BOOKIES_MAX)
  assert.not.ok(s.isSlow('b0'))
  assert.ok(s.isSlow(`b${SLOW_BOOKIES_MAX}`))
})

u.run()

// --- real bookie processes ---------------------------------------------------------------------

const READ_TIMEOUT_MS = 5000

async function timeoutsSoFar(): Promise<number> {
  const m = registry.getSingleMetric('quire_client_bookie_timeouts_total')
  return (await m!.get()).values.reduce((sum, v) => sum + v.value, 0)
}

const t = suite<{ c: TestCluster }>('slow replica: real bookies')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => {
  for (const b of ctx.c?.bookies ?? []) b.kill('SIGCONT')
  await ctx.c?.stop()
})

t('5,000 entries with one bookie hung (SIGSTOP): one read timeout, not one per chunk', async ({ c }) => {
  const writer = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let from = 0; from < ENTRIES; from += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, k) => writer.append(payloadFor(from + k, 64))))
  }
  await writer.close()
  const hung = c.bookie(writer.metadata.segments[0]!.ensemble[1]!)
  hung.kill('SIGSTOP')
  await waitFor(() => isStopped(hung.pid), 10_000, () => `${hung.id} stopped`)

  const reader = await (await c.client({ readTimeoutMs: READ_TIMEOUT_MS, metrics: clientMetrics })).openLedger(writer.ledgerId)
  const before = await timeoutsSoFar()
  const started = performance.now()
  const got = await reader.read(0, ENTRIES - 1)
  const ms = performance.now() - started
  const timeouts = (await timeoutsSoFar()) - before
  assert.is(got.length, ENTRIES)
  assert.ok(got.every((e, i) => e.payload.equals(payloadFor(i, 64))), 'every entry byte for byte')
  // Before: 10 chunks, each waiting 5 s on the hung bookie (10 timeouts, ~50 s).
  assert.ok(timeouts <= 1, `the read suffered ${timeouts} timeouts (${Math.round(ms)} ms)`)
  assert.ok(ms < 2 * READ_TIMEOUT_MS, `read took ${Math.round(ms)} ms`)
  console.log(`  5,000 entries, one bookie hung: ${Math.round(ms)} ms, ${timeouts} timeout(s)`)

  const again = await timeoutsSoFar()
  await reader.read(0, ENTRIES - 1)
  assert.is((await timeoutsSoFar()) - again, 0, 'the next read of the handle waits on no timeout')
  hung.kill('SIGCONT')
})

t.run()
