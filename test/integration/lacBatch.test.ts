// Explicit LACs of many ledgers travel together (transport/wire.ts writeLacs, client/lacBatcher.ts).
// On real processes (nats-server, three bookie processes): 200 ledgers idle after a few appends
// each send, per explicit-LAC interval, at most one frame per bookie (counted by a subscription on
// the bookies' subjects), and every ledger's tailing reader still learns its last entry without
// another append; then nothing more goes out while they stay idle. A writeLacs frame answers per
// ledger (OK, UNAUTHORIZED, FENCED, NO_SUCH_LEDGER), its LACs survive a bookie restart, and an
// invalid one is refused BAD_REQUEST while the bookie goes on. The batcher itself is stepped on a
// manual clock: frames split at the wire's bound, the highest LAC per ledger kept.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import { createInbox } from '@nats-io/transport-node'
import { LacBatcher } from '../../client/lacBatcher.ts'
import type { BookieTransport, TailTransport } from '../../client/bookieClient.ts'
import { masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { LIMITS } from '../../transport/validate.ts'
import { RC, bookieSubject, decode, encode, type LacItem, type WireMessage, type WriteLacsResponse } from '../../transport/wire.ts'
import type { Clock } from '../../transport/clock.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'
import { waitFor, within } from '../support/processes.ts'

const BOOKIES = 3
const LEDGERS = 200
const INTERVAL_MS = 100
const KEY = masterKeyOf('')

interface LacFrame { at: number; bookie: string; op: string; items: number }

const t = suite<{ c: TestCluster; nc: NatsConnection; frames: LacFrame[]; spy: Subscription }>('lacBatch')

t.before(async (ctx) => {
  // Slow heartbeats: on a loaded machine a bookie late by 3 s of 1 s beats counts as dead.
  ctx.c = await startCluster({ bookies: BOOKIES, heartbeatMs: 3000 })
  ctx.nc = await connectNats(ctx.c.nats.url, { name: 'lac-spy' })
  ctx.frames = []
  // Every explicit-LAC frame any client sends to a bookie.
  ctx.spy = ctx.nc.subscribe('quire.bookie.>', {
    callback: (_err, m) => {
      let f: { op?: unknown; items?: unknown }
      try { f = decode(m.data) as typeof f } catch { return }
      if (f.op === 'writeLac' || f.op === 'writeLacs') {
        ctx.frames.push({ at: performance.now(), bookie: m.subject, op: f.op, items: Array.isArray(f.items) ? f.items.length : 1 })
      }
    },
  })
  await ctx.nc.flush()
})

t.after(async (ctx) => {
  ctx.spy?.unsubscribe()
  await ctx.nc?.close().catch(() => {})
  await ctx.c?.stop()
})

/** Most frames whose arrival falls within any window of `ms`. */
function mostInWindow(frames: LacFrame[], ms: number): number {
  const at = frames.map((f) => f.at).sort((a, b) => a - b)
  let best = 0
  for (let i = 0, j = 0; i < at.length; i++) {
    while (at[i]! - at[j]! >= ms) j++
    best = Math.max(best, i - j + 1)
  }
  return best
}

t('200 idle ledgers: at most one explicit-LAC frame per bookie per interval, and every tailing reader learns its last entry', async (ctx) => {
  const writer = await ctx.c.client({ explicitLacIntervalMs: INTERVAL_MS })
  const reader = await ctx.c.client()
  const ledgers = []
  for (let i = 0; i < LEDGERS; i += 20) ledgers.push(...await Promise.all(Array.from({ length: 20 }, () => writer.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }))))
  ctx.frames.length = 0
  const startedAt = performance.now()
  // Three appends each, one at a time: entry 2 carries LAC 1, so only an explicit LAC tells the
  // bookies (and the readers) that entry 2 is confirmed.
  await Promise.all(ledgers.map(async (w) => { for (let i = 0; i < 3; i++) await w.append(`entry ${i} of ${w.ledgerId}`) }))
  const readers = await Promise.all(ledgers.map((w) => reader.openLedger(w.ledgerId)))
  // Long polls, as a tailing reader waits: each returns once its bookies know LAC 2.
  await within(30_000, 'tailing readers learning entry 2', Promise.all(readers.map(async (r) => {
    let lac = r.lastAddConfirmed
    while (lac < 2) lac = Math.max(lac, await r.longPollLac(lac, 5000))
  })))
  const elapsedMs = performance.now() - startedAt
  // The bookies answered those polls after the frames reached them; the spy has its own
  // connection, which may not have handed it the same frames yet: a round trip on it (the server
  // sends in order) delivers every frame the bookies had.
  await ctx.nc.flush()
  const frames = [...ctx.frames]
  const items = frames.reduce((n, f) => n + f.items, 0)
  const intervals = Math.ceil(elapsedMs / INTERVAL_MS) + 2
  const detail = `${frames.length} frames (${frames.filter((f) => f.op === 'writeLac').length} single writeLac), ${items} LACs, in ${Math.round(elapsedMs)} ms`
  assert.ok(items >= LEDGERS * 3, `every ledger's LAC went to each of its bookies: ${detail}`)
  assert.ok(frames.length <= BOOKIES * intervals, `at most ${BOOKIES} explicit-LAC frames per ${INTERVAL_MS} ms interval over ${intervals} intervals: ${detail}`)
  // One tick's frames arrive together; two ticks can fall in one window with timer jitter.
  const burst = mostInWindow(frames, INTERVAL_MS)
  assert.ok(burst <= 2 * BOOKIES, `at most ${2 * BOOKIES} explicit-LAC frames in any ${INTERVAL_MS} ms, saw ${burst}: ${detail}`)
  // Idle ledgers whose LAC the bookies hold send nothing more.
  const before = ctx.frames.length
  await new Promise((r) => setTimeout(r, 5 * INTERVAL_MS))
  assert.is(ctx.frames.length - before, 0, 'no explicit-LAC frame while every ledger stays idle')
})

/** Send a writeLacs frame (any shape) to a bookie and wait for its answer. */
async function writeLacs(nc: NatsConnection, bookieId: string, frame: unknown): Promise<WriteLacsResponse> {
  const inbox = createInbox()
  const sub = nc.subscribe(inbox, { max: 1 })
  nc.publish(bookieSubject(bookieId), encode(frame as WireMessage), { reply: inbox })
  for await (const m of sub) return decode(m.data) as WriteLacsResponse
  throw new Error('no answer')
}

t('writeLacs answers per ledger (OK, UNAUTHORIZED, FENCED, NO_SUCH_LEDGER) and the LACs it took survive a restart', async (ctx) => {
  const w = await ctx.c.client({ explicitLacIntervalMs: 0 })
  const open = await w.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  const fenced = await w.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < 4; i++) await open.append(`e${i}`)
  for (let i = 0; i < 2; i++) await fenced.append(`f${i}`)
  await (await ctx.c.client()).openLedger(fenced.ledgerId, { recovery: true })
  const raw = (await ctx.c.client()).nc!
  const unknown = 987_654_321
  const answer = await within(10_000, 'writeLacs answer', writeLacs(raw, 'bookie-1', {
    op: 'writeLacs', reqId: 7,
    items: [
      { ledgerId: open.ledgerId, masterKey: KEY, lac: 3, persist: true },
      { ledgerId: open.ledgerId, masterKey: masterKeyOf('not the password'), lac: 3 },
      { ledgerId: fenced.ledgerId, masterKey: KEY, lac: 1 },
      { ledgerId: unknown, masterKey: KEY, lac: 5 },
    ],
  }))
  assert.is(answer.op, 'writeLacsResp')
  assert.is(answer.reqId, 7)
  assert.is(answer.rc, RC.OK)
  assert.equal(answer.results, [[open.ledgerId, RC.OK], [open.ledgerId, RC.UNAUTHORIZED], [fenced.ledgerId, RC.FENCED], [unknown, RC.NO_SUCH_LEDGER]])
  // Entry 3 carried LAC 2: only bookie-1, from the frame, knows 3; an open takes the highest.
  const reader = await ctx.c.client()
  await waitFor(async () => (await reader.openLedger(open.ledgerId)).lastAddConfirmed === 3, 10_000, () => 'LAC 3 of the writeLacs frame readable')
  // Persisted as a writeLac's: a clean restart of every bookie keeps LAC 3.
  for (const b of [...ctx.c.bookies]) {
    b.kill('SIGTERM')
    await b.exited
  }
  for (let i = 1; i <= BOOKIES; i++) await ctx.c.startBookie(i)
  const after = await (await ctx.c.client()).openLedger(open.ledgerId)
  assert.is(after.lastAddConfirmed, 3, 'the LAC taken from writeLacs after the bookies restarted')
})

t('an invalid writeLacs frame is refused BAD_REQUEST, nothing of it is taken, and the bookie goes on; a single writeLac still works', async (ctx) => {
  const w = await ctx.c.client({ explicitLacIntervalMs: 0 })
  const h = await w.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < 3; i++) await h.append(`e${i}`)
  const nc = (await ctx.c.client()).nc!
  const good = { ledgerId: h.ledgerId, masterKey: KEY, lac: 2 }
  const cases: Array<[string, unknown, RegExp]> = [
    ['items missing', { op: 'writeLacs' }, /items is missing/],
    ['no items', { op: 'writeLacs', items: [] }, /items has 0 items/],
    ['too many items', { op: 'writeLacs', items: Array.from({ length: LIMITS.lacsPerFrame + 1 }, () => good) }, /items has 8193 items/],
    ['an item not a map', { op: 'writeLacs', items: [good, 3] }, /items\[1\] is number 3/],
    ['a bad master key, the first item good', { op: 'writeLacs', items: [good, { ...good, masterKey: null }] }, /items\[1\]\.masterKey is null/],
    ['a LAC out of range', { op: 'writeLacs', items: [{ ...good, lac: 1e300 }] }, /items\[0\]\.lac/],
    ['a negative ledger id', { op: 'writeLacs', items: [{ ...good, ledgerId: -4 }] }, /items\[0\]\.ledgerId/],
    ['a bad reqId', { op: 'writeLacs', reqId: 'x', items: [good] }, /reqId/],
  ]
  for (const [name, frame, why] of cases) {
    const a = await within(10_000, name, writeLacs(nc, 'bookie-2', frame))
    assert.is(a.op, 'writeLacsResp', name)
    assert.is(a.rc, RC.BAD_REQUEST, name)
    assert.equal(a.results, [], name)
    assert.match(a.error ?? '', why, `${name}: ${a.error}`)
  }
  // The good item of the refused frames was not taken: bookie-2 still says LAC 1.
  const raw = (await ctx.c.client()).nc!
  assert.is(await lacOf(raw, 'bookie-2', h.ledgerId), 1, 'no item of a refused frame was applied')
  // The bookie goes on: a valid frame is answered, adds are acknowledged.
  const ok = await within(10_000, 'valid writeLacs', writeLacs(nc, 'bookie-2', { op: 'writeLacs', items: [good] }))
  assert.equal([ok.rc, ok.results, ok.reqId], [RC.OK, [[h.ledgerId, RC.OK]], -1])
  assert.is(await within(10_000, 'append after the bad frames', h.append('after')), 3)
  // An older client's single writeLac (no reply subject) still moves the LAC.
  nc.publish(bookieSubject('bookie-2'), encode({ op: 'writeLac', ledgerId: h.ledgerId, masterKey: KEY, lac: 3, persist: true }))
  await waitFor(async () => (await lacOf(raw, 'bookie-2', h.ledgerId)) === 3, 10_000, () => 'LAC 3 from a single writeLac')
})

/** A bookie's LAC of a ledger, asked directly. */
function lacOf(nc: NatsConnection, bookieId: string, ledgerId: number): Promise<number> {
  return within(10_000, 'readLac', new Promise<number>((resolve) => {
    const inbox = createInbox()
    nc.subscribe(inbox, { max: 1, callback: (_e, m) => resolve((decode(m.data) as { lac: number }).lac) })
    nc.publish(bookieSubject(bookieId), encode({ op: 'readLac', reqId: 1, ledgerId }), { reply: inbox })
  }))
}

// --- the batcher on a manual clock ---------------------------------------------------------------

function manualClock(): Clock & { advance(ms: number): void; runDeferred(): void; timers: number } {
  let now = 0
  let nextId = 1
  const timers = new Map<number, { at: number; fn: () => void }>()
  const deferred: Array<() => void> = []
  return {
    now: () => now,
    setTimeout: (fn, ms) => { const id = nextId++; timers.set(id, { at: now + ms, fn }); return { id } },
    clearTimeout: (h) => { timers.delete((h as { id: number }).id) },
    defer: (fn) => { deferred.push(fn) },
    advance(ms) {
      now += ms
      for (const [id, tm] of [...timers].sort((a, b) => a[1].at - b[1].at)) if (tm.at <= now) { timers.delete(id); tm.fn() }
    },
    runDeferred() { for (const fn of deferred.splice(0)) fn() },
    get timers() { return timers.size },
  }
}

function recordingTransport(): { t: BookieTransport & Partial<TailTransport>; sent: Array<[string, LacItem[]]> } {
  const sent: Array<[string, LacItem[]]> = []
  const t = { writeLacs: (b: string, items: LacItem[]) => { sent.push([b, items]) } } as unknown as BookieTransport & Partial<TailTransport>
  return { t, sent }
}

t('batcher: idle LACs wait for the next tick, one frame per bookie, split at perFrame, highest LAC per ledger, no timer while none waits', () => {
  const clock = manualClock()
  const { t: transport, sent } = recordingTransport()
  const b = new LacBatcher(transport, clock, 100, 4)
  assert.is(clock.timers, 0)
  clock.advance(30)
  for (let l = 1; l <= 10; l++) {
    b.queueIdle(['b1', 'b2'], { ledgerId: l, masterKey: KEY, lac: 5, persist: true })
    b.queueIdle(['b1'], { ledgerId: l, masterKey: KEY, lac: 4, persist: true })
  }
  assert.is(clock.timers, 1, 'one timer for every idle LAC waiting')
  clock.runDeferred()
  clock.advance(50)
  assert.is(sent.length, 0, 'nothing goes out before the tick')
  clock.advance(50)
  assert.equal(sent.map(([bk, items]) => [bk, items.length]), [['b1', 4], ['b1', 4], ['b1', 2], ['b2', 4], ['b2', 4], ['b2', 2]])
  assert.ok(sent.every(([, items]) => items.every((i) => i.lac === 5)), 'the highest LAC queued per ledger')
  assert.is(clock.timers, 0, 'the tick stops once no LAC waits')
  // A queue outside a tick goes out in the next deferred turn, with the others of that turn.
  sent.length = 0
  b.queue(['b3'], { ledgerId: 1, masterKey: KEY, lac: 6, persist: false })
  b.queue(['b3'], { ledgerId: 2, masterKey: KEY, lac: 6, persist: true })
  assert.is(sent.length, 0)
  clock.runDeferred()
  assert.equal(sent.map(([bk, items]) => [bk, items.map((i) => i.ledgerId)]), [['b3', [1, 2]]])
  assert.throws(() => new LacBatcher(transport, clock, 100, LIMITS.lacsPerFrame + 1), /perFrame/)
})

t.run()
