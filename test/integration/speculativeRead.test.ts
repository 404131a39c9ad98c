// Reads that do not wait on a slow replica (client/readHandle.ts, machines/speculativeRead.ts,
// client/slowBookies.ts). First the per-entry read rules, stepped: which replica next, when a
// speculative read goes out, and that the PROTOCOL.md rules hold through it (first valid copy
// wins; NO_SUCH_ENTRY only when every replica said so; a timeout is unknown, never absent).
// Then a read handle over scripted bookies, one of them hung, its timers fired by hand: reads
// and long polls. Then real processes (nats-server and three bookie processes), one replica hung with SIGSTOP:
// single-entry reads of a closed ledger opened without recovery, a tail over a growing ledger and
// the open of that ledger go on without any of them waiting for a read timeout, counted through
// the client's metrics (speculative reads, waits on a timeout). Latencies are printed, not asserted.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { QuireClientImpl, ReadHandleImpl, type ClientMetrics } from '../../client/internal.ts'
import { QuireError, isQuireError } from '../../machines/errors.ts'
import type { LedgerMetadata } from '../../storage/metadataStore.ts'
import { realClock, type TimerHandle } from '../../transport/clock.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { RC, type ReadLacResponse, type ReadResponse } from '../../transport/wire.ts'
import { SlowBookies } from '../../client/slowBookies.ts'
import {
  FAILING, HEALTHY, SLOW, entryRead, nextPosition, stepRead, type EntryRead, type Rank, type ReadEvent, type Step,
} from '../../machines/speculativeRead.ts'
import { writeSetIndices } from '../../machines/quorum.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'
import { isStopped, waitFor, within } from '../support/processes.ts'

// --- the rules, stepped ------------------------------------------------------------------------

const r = suite('speculative read: rules')

/** Steps `events` from a fresh read of `replicas`, ranks fixed; returns every step and the last state. */
function run(replicas: number, ranks: Rank[], events: ReadEvent[]): { steps: Step[]; state: EntryRead } {
  let state = entryRead(replicas)
  const steps: Step[] = []
  for (const ev of events) {
    const next = stepRead(state, ev, (p) => ranks[p] ?? HEALTHY)
    state = next.state
    steps.push(next.step)
  }
  return { steps, state }
}
const ask = (position: number): Step => ({ kind: 'ask', position })
const WAIT: Step = { kind: 'wait' }
const reply = (x: 'ok' | 'missing' | 'corrupt' | 'timeout' | 'error'): ReadEvent => ({ type: 'reply', reply: x })
const START: ReadEvent = { type: 'start' }
const SPECULATE: ReadEvent = { type: 'speculate' }

r('replicas are asked healthy first, then slow, then failing; in write-set order within a rank', () => {
  assert.is(nextPosition(3, [], () => HEALTHY), 0)
  assert.is(nextPosition(3, [], (p) => (p === 0 ? SLOW : HEALTHY)), 1)
  assert.is(nextPosition(3, [], (p) => (p === 0 ? FAILING : p === 1 ? SLOW : HEALTHY)), 2)
  assert.is(nextPosition(3, [2], (p) => (p === 0 ? FAILING : p === 1 ? SLOW : HEALTHY)), 1)
  assert.is(nextPosition(3, [0, 1, 2], () => HEALTHY), -1)
})

r('no answer within the delay: the next replica is asked too, the first valid copy ends the read', () => {
  const { steps, state } = run(3, [], [START, SPECULATE, reply('ok'), reply('timeout'), SPECULATE])
  assert.equal(steps, [ask(0), ask(1), { kind: 'done' }, { kind: 'done' }, { kind: 'done' }])
  assert.ok(state.done)
  assert.is(state.timeouts, 0, 'a reply after the read ended changes nothing')
})

r('speculation cascades one replica per delay, and stops once every replica was asked', () => {
  const { steps } = run(3, [], [START, SPECULATE, SPECULATE, SPECULATE])
  assert.equal(steps, [ask(0), ask(1), ask(2), WAIT])
})

r('a failure asks the next replica at once; nothing outstanding means nothing to speculate on', () => {
  const { steps } = run(3, [], [START, reply('corrupt'), reply('error'), reply('timeout')])
  assert.equal(steps, [ask(0), ask(1), ask(2), { kind: 'fail', code: 'BOOKIE_UNAVAILABLE' }])
  const idle = run(2, [], [START, reply('missing'), reply('missing')])
  assert.equal(idle.steps, [ask(0), ask(1), { kind: 'fail', code: 'NO_SUCH_ENTRY' }])
  const none = run(2, [], [SPECULATE])
  assert.equal(none.steps, [WAIT], 'a speculation tick before any ask asks nothing')
})

r('missing only when every replica says so explicitly: a speculative "missing" waits for the hung one', () => {
  // Replica 0 hangs, 1 (speculative) says missing: 0 is still out, the entry is not absent.
  const hung = run(2, [], [START, SPECULATE, reply('missing')])
  assert.equal(hung.steps, [ask(0), ask(1), WAIT])
  // It times out: unknown, so the read fails as unavailable, never as NO_SUCH_ENTRY.
  const timedOut = run(2, [], [START, SPECULATE, reply('missing'), reply('timeout')])
  assert.equal(timedOut.steps.at(-1), { kind: 'fail', code: 'BOOKIE_UNAVAILABLE' })
  // It answers with the entry after all: read.
  const late = run(2, [], [START, SPECULATE, reply('missing'), reply('ok')])
  assert.equal(late.steps.at(-1), { kind: 'done' })
})

r('failure codes: all missing, digest failures with the rest missing, all timed out', () => {
  assert.equal(run(3, [], [START, reply('missing'), reply('missing'), reply('missing')]).steps.at(-1), { kind: 'fail', code: 'NO_SUCH_ENTRY' })
  assert.equal(run(3, [], [START, reply('corrupt'), reply('missing'), reply('missing')]).steps.at(-1), { kind: 'fail', code: 'CORRUPT_ENTRY' })
  assert.equal(run(2, [], [START, SPECULATE, reply('timeout'), reply('timeout')]).steps.at(-1), { kind: 'fail', code: 'TIMEOUT' })
  assert.equal(run(2, [], [START, reply('timeout'), reply('missing')]).steps.at(-1), { kind: 'fail', code: 'BOOKIE_UNAVAILABLE' })
})

r('a failing replica is still asked last, when the others do not have the entry', () => {
  const { steps } = run(3, [FAILING, HEALTHY, SLOW], [START, reply('missing'), reply('missing'), reply('ok')])
  assert.equal(steps, [ask(1), ask(2), ask(0), { kind: 'done' }])
})

r('bookie health: slow and failing ranks, forgotten in time or on an answer in time, not on a late one', () => {
  let now = 0
  const h = new SlowBookies(1000, () => now)
  h.slow('a')
  h.timedOut('b')
  assert.is(h.rank('a'), SLOW)
  assert.is(h.rank('b'), FAILING)
  h.slow('b')
  assert.is(h.rank('b'), FAILING, 'slow does not hide a failure')
  h.answered('a', false)
  assert.is(h.rank('a'), SLOW, 'a late answer leaves it slow')
  h.answered('a')
  assert.is(h.rank('a'), HEALTHY)
  now += h.forgetMs
  assert.is(h.rank('b'), HEALTHY, 'forgotten: asked first again')
})

r('speculativeReadTimeoutMs: 0 (off) or a positive number; anything else is INVALID_CONFIG', () => {
  const parts = { nc: null, bookies: {} as never, metadata: {} as never, clock: realClock, random: Math.random }
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    try {
      new QuireClientImpl(parts, { speculativeReadTimeoutMs: bad })
      assert.unreachable(`${bad} accepted`)
    } catch (err) {
      assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
    }
  }
  new QuireClientImpl(parts, { speculativeReadTimeoutMs: 0 })
})

r.run()

// --- a handle over scripted bookies, its timers stepped by hand -------------------------------

const h = suite('speculative read: a handle over scripted bookies')
const key = masterKeyOf('')
const md: LedgerMetadata = {
  ledgerId: 9, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], customMetadata: {}, createdAt: 0, passwordCheck: '',
}
const stored = (id: number): Buffer => encodeEntry('crc32c', key, 9, id, id - 1, 0, Buffer.from(`entry-${id}`))

/** A clock whose timers fire only when the test says so. */
function manualClock() {
  let next = 0
  const timers = new Map<number, () => void>()
  return {
    timers,
    now: () => 0,
    setTimeout: (fn: () => void): TimerHandle => { timers.set(++next, fn); return { id: next } },
    clearTimeout: (t: TimerHandle) => { timers.delete((t as { id: number }).id) },
    fireAll() { const due = [...timers.values()]; timers.clear(); for (const fn of due) fn() },
  }
}
const settle = () => new Promise((res) => setImmediate(res))

/** Bookie a hangs (its requests wait for the test); b and c answer per `script`. */
function hungA(script: (bookie: string, id: number) => 'good' | 'missing') {
  const held: Array<{ ids: number[]; resolve: (r: ReadResponse) => void; reject: (e: unknown) => void }> = []
  const asked: string[] = []
  const polls: Array<{ bookie: string; signal?: AbortSignal; resolve: (r: ReadLacResponse) => void; reject: (e: unknown) => void }> = []
  return {
    held, asked, polls,
    read(bookieId: string, _l: number, ids: number[]): Promise<ReadResponse> {
      asked.push(`${bookieId}:${ids.join(',')}`)
      if (bookieId === 'a') return new Promise((resolve, reject) => held.push({ ids, resolve, reject }))
      const entries = ids.map((id): [number, Uint8Array | null] => (script(bookieId, id) === 'good' ? [RC.OK, stored(id)] : [RC.NO_SUCH_ENTRY, null]))
      return Promise.resolve({ op: 'readResp', reqId: 0, bookieId, rc: RC.OK, entries })
    },
    async readLac(): Promise<ReadLacResponse> {
      throw new Error('not used')
    },
    longPollLac(bookie: string, _l: number, _p: number, _ms: number, _t: number, _w: boolean, signal?: AbortSignal): Promise<ReadLacResponse> {
      return new Promise((resolve, reject) => {
        polls.push({ bookie, ...(signal ? { signal } : {}), resolve, reject })
        signal?.addEventListener('abort', () => reject(new QuireError('TIMEOUT', 'long poll cancelled')), { once: true })
      })
    },
    writeLac() {},
  }
}

h('a hung first replica: the entry comes from the next one once the speculative delay passes', async () => {
  const clock = manualClock()
  const b = hungA(() => 'good')
  const { n, metrics } = counting()
  const handle = new ReadHandleImpl({ bookies: b, masterKey: key, readTimeoutMs: 10_000, clock, speculativeReadTimeoutMs: 500, metrics }, { ...md, state: 'CLOSED', lastEntryId: 3 })
  const read = handle.read(0, 0)
  await settle()
  assert.equal(b.asked, ['a:0'])
  clock.fireAll()
  const [e] = await read
  assert.is(e!.payload.toString(), 'entry-0')
  assert.equal(b.asked, ['a:0', 'b:0'])
  assert.is(n.speculative, 1)
  // a is now slow: entry 2 (write set c, a) goes to c first, and no speculation is needed.
  await handle.read(2, 2)
  assert.equal(b.asked.at(-1), 'c:2')
  assert.is(n.speculative, 1)
  // a's late timeout changes nothing for a read that is done, and counts no wait.
  b.held[0]!.reject(new QuireError('TIMEOUT', 'scripted'))
  await settle()
  assert.is(n.waited, 0)
})

h('the speculative replica says missing while the hung one is out: not absent; its timeout makes it unavailable', async () => {
  const clock = manualClock()
  const b = hungA((bk, id) => (bk === 'b' && id === 0 ? 'missing' : 'good'))
  const { n, metrics } = counting()
  const handle = new ReadHandleImpl({ bookies: b, masterKey: key, readTimeoutMs: 10_000, clock, speculativeReadTimeoutMs: 500, metrics }, { ...md, state: 'CLOSED', lastEntryId: 3 })
  let outcome: unknown = 'pending'
  const read = handle.read(0, 0).then((v) => { outcome = v }, (err) => { outcome = err })
  await settle()
  clock.fireAll()
  await settle()
  assert.is(outcome, 'pending', 'one explicit "missing" and one request out: the read waits')
  b.held[0]!.reject(new QuireError('TIMEOUT', 'scripted'))
  await read
  assert.ok(isQuireError(outcome, 'BOOKIE_UNAVAILABLE'), `a timeout is unknown, never absent: ${String(outcome)}`)
  assert.is(n.waited, 1, 'that read did wait on the timeout')

  // The same, but the hung replica answers after all: the entry is read.
  const b2 = hungA((bk, id) => (bk === 'b' && id === 0 ? 'missing' : 'good'))
  const clock2 = manualClock()
  const handle2 = new ReadHandleImpl({ bookies: b2, masterKey: key, readTimeoutMs: 10_000, clock: clock2, speculativeReadTimeoutMs: 500 }, { ...md, state: 'CLOSED', lastEntryId: 3 })
  const read2 = handle2.read(0, 0)
  await settle()
  clock2.fireAll()
  await settle()
  b2.held[0]!.resolve({ op: 'readResp', reqId: 0, bookieId: 'a', rc: RC.OK, entries: [[RC.OK, stored(0)]] })
  assert.is((await read2)[0]!.payload.toString(), 'entry-0')
})

h('a long poll answers "nothing new" a speculative delay after the first bookie did, and cancels the hung one', async () => {
  const clock = manualClock()
  const b = hungA(() => 'good')
  const handle = new ReadHandleImpl({ bookies: b, masterKey: key, readTimeoutMs: 10_000, clock, speculativeReadTimeoutMs: 500 }, md)
  let lac: number | null = null
  const poll = handle.longPollLac(4, 1000).then((v) => { lac = v })
  await settle()
  assert.equal(b.polls.map((p) => p.bookie), ['a', 'b', 'c'])
  for (const p of b.polls.filter((x) => x.bookie !== 'a')) p.resolve({ op: 'lacResp', reqId: 0, bookieId: p.bookie, rc: RC.OK, lac: 4, lastEntryId: 4 })
  await settle()
  assert.is(lac, null, 'the hung bookie gets the speculative delay')
  clock.fireAll()
  await poll
  assert.is(lac, 4)
  assert.ok(b.polls[0]!.signal?.aborted, 'the poll parked on a is cancelled')
  // a is remembered as slow: the next poll asks b and c only.
  const next = handle.longPollLac(4, 1000)
  await settle()
  assert.equal(b.polls.slice(3).map((p) => p.bookie), ['b', 'c'])
  b.polls[3]!.resolve({ op: 'lacResp', reqId: 0, bookieId: 'b', rc: RC.OK, lac: 7, lastEntryId: 7 })
  assert.is(await next, 7, 'the first higher LAC wins')
})

h.run()

// --- real processes: one replica SIGSTOPped --------------------------------------------------

/** Speculative delay under test; 0 would turn speculation off (and these tests fail). */
const SPECULATE_MS = 500
const READ_TIMEOUT_MS = 10_000
const ENTRIES = 60

/** A ClientMetrics that counts. */
function counting() {
  const n = { speculative: 0, waited: 0, timeouts: 0, delivered: 0 }
  const metrics: ClientMetrics = {
    addResolved() {},
    tailDelivered() { n.delivered++ },
    bookieTimeout() { n.timeouts++ },
    speculativeRead() { n.speculative++ },
    waitedOnTimeout() { n.waited++ },
  }
  return { n, metrics }
}

function percentiles(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b)
  const at = (q: number): string => (s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN).toFixed(1)
  return `p50 ${at(0.5)} ms, p99 ${at(0.99)} ms (${s.length})`
}

async function stop(c: TestCluster, bookieId: string): Promise<void> {
  const b = c.bookie(bookieId)
  process.kill(b.pid, 'SIGSTOP')
  await waitFor(() => isStopped(b.pid), 10_000, () => `${bookieId} stopped`)
}

/** SIGCONT every bookie (a stopped one would keep the cluster from stopping). */
function resumeAll(c: TestCluster | undefined): void {
  for (const b of c?.bookies ?? []) {
    try {
      process.kill(b.pid, 'SIGCONT')
    } catch {
      // already gone
    }
  }
}

const t = suite<{ c: TestCluster }>('speculative read: a hung replica (real processes)')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => {
  resumeAll(ctx.c)
  await ctx.c?.stop()
})

t('single-entry reads of a closed ledger, opened without recovery, wait on no timeout', async ({ c }) => {
  const writer = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let i = 0; i < ENTRIES; i++) await writer.append(payloadFor(i, 1024))
  await writer.close()
  const ensemble = writer.metadata.segments[0]!.ensemble
  const hung = ensemble[1]!
  const touching = [...Array(ENTRIES).keys()].filter((id) => writeSetIndices(id, 3, 2).some((i) => ensemble[i] === hung))
  const readAll = async (opts: { speculativeReadTimeoutMs: number }) => {
    const { n, metrics } = counting()
    const reader = await (await c.client({ readTimeoutMs: READ_TIMEOUT_MS, metrics, ...opts })).openLedger(writer.ledgerId)
    assert.ok(reader.isClosed, 'a closed ledger opens without recovery')
    const ms: number[] = []
    for (const id of touching) {
      const started = performance.now()
      const [e] = await within(4 * READ_TIMEOUT_MS, `read of entry ${id}`, reader.read(id, id))
      ms.push(performance.now() - started)
      assert.ok(e!.payload.equals(payloadFor(id, 1024)), `entry ${id} byte for byte`)
    }
    return { n, ms }
  }

  const healthy = await readAll({ speculativeReadTimeoutMs: SPECULATE_MS })
  try {
    await stop(c, hung)
    const slow = await readAll({ speculativeReadTimeoutMs: SPECULATE_MS })
    console.log(`  ${touching.length} single-entry reads of entries on the hung bookie's write sets:`)
    console.log(`    all replicas up:    ${percentiles(healthy.ms)}`)
    console.log(`    ${hung} stopped: ${percentiles(slow.ms)}; ${slow.n.speculative} speculative read(s), ${slow.n.waited} wait(s) on a timeout`)
    // Without speculation the first read to meet the hung bookie waits the whole read timeout.
    assert.is(slow.n.waited, 0, 'no read waited for a read timeout')
    assert.ok(slow.n.speculative >= 1, 'a speculative read went to another replica')
    // The client remembers the hung bookie: it is asked last, so later reads need no speculation.
    assert.ok(slow.n.speculative <= 2, `${slow.n.speculative} speculative reads for ${touching.length} reads`)
  } finally {
    process.kill(c.bookie(hung).pid, 'SIGCONT')
  }
})

t('a tail over a growing ledger delivers every entry in order, and a new reader opens it, with a replica hung', async ({ c }) => {
  // Qw 3, Qa 2: the writer goes on with one bookie stopped, and every entry's write set holds it.
  const writer = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
  const hung = writer.metadata.segments[0]!.ensemble[0]!
  const { n, metrics } = counting()
  const reader = await (await c.client({ readTimeoutMs: READ_TIMEOUT_MS, speculativeReadTimeoutMs: SPECULATE_MS, metrics })).openLedger(writer.ledgerId)
  const seen: number[] = []
  const deliveredAt = new Map<number, number>()
  const tail = reader.entries({ from: 0, pollMs: 1000 })
  const consuming = (async () => {
    for await (const e of tail) {
      assert.ok(e.payload.equals(payloadFor(e.entryId, 256)), `entry ${e.entryId} byte for byte`)
      seen.push(e.entryId)
      deliveredAt.set(e.entryId, performance.now())
      if (e.entryId === 2 * ENTRIES - 1) return
    }
  })()
  /** Append one entry and wait until the tail delivered it: each goes through a caught-up long poll. */
  const lag: number[] = []
  const appendAndSee = async (id: number): Promise<void> => {
    assert.is(await writer.append(payloadFor(id, 256)), id)
    const acked = performance.now()
    await waitFor(() => seen.length > id, 4 * READ_TIMEOUT_MS, () => `tail delivered ${seen.length} of ${id + 1}`, 5)
    lag.push(deliveredAt.get(id)! - acked)
  }
  try {
    for (let id = 0; id < ENTRIES; id++) await appendAndSee(id)
    const healthyLag = lag.splice(0)
    await stop(c, hung)
    for (let id = ENTRIES; id < 2 * ENTRIES; id++) {
      await appendAndSee(id)
      // Some polls find nothing new: the tail parks again, with the hung bookie's poll still out.
      if (id % 20 === 0) await new Promise((res) => setTimeout(res, 1500))
    }
    await within(4 * READ_TIMEOUT_MS, 'tail', consuming)
    assert.equal(seen, [...Array(2 * ENTRIES).keys()], 'every entry once, in order')
    console.log(`  tail, append acked -> delivered, all replicas up: ${percentiles(healthyLag)}`)
    console.log(`  tail, append acked -> delivered, ${hung} stopped: ${percentiles(lag)}; ${n.speculative} speculative read(s), ${n.waited} wait(s) on a timeout`)

    // A new reader opens the open ledger (a LAC read, the hung bookie among those asked) and reads it.
    const opener = counting()
    const started = performance.now()
    const late = await (await c.client({ readTimeoutMs: READ_TIMEOUT_MS, speculativeReadTimeoutMs: SPECULATE_MS, metrics: opener.metrics })).openLedger(writer.ledgerId)
    const openMs = performance.now() - started
    assert.ok(late.lastAddConfirmed >= 2 * ENTRIES - 2, `LAC ${late.lastAddConfirmed}`)
    const all = await late.read(0, late.lastAddConfirmed)
    assert.ok(all.every((e, i) => e.payload.equals(payloadFor(i, 256))))
    console.log(`  open of the growing ledger with ${hung} stopped: ${openMs.toFixed(1)} ms; read of ${all.length}: ${opener.n.speculative} speculative read(s), ${opener.n.waited} wait(s) on a timeout`)
    assert.is(n.waited, 0, 'the tail never waited for a read or long-poll timeout')
    assert.is(opener.n.waited, 0, 'the open and read never waited for a timeout')
  } finally {
    process.kill(c.bookie(hung).pid, 'SIGCONT')
    await tail.return?.()
  }
})

t.run()
