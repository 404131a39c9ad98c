// The writers' add tick (client/ticker.ts, client/writeHandle.ts checkTimeouts): one timer per
// client for every writer's add timeouts and re-sends, polling only writers with adds pending, and
// re-sends that back off. Counted on the simulator's virtual clock (sim/world.ts) with the bookies
// run by the simulator (sim/bookieNode.ts), so the counts do not depend on how loaded the machine is: timers the client arms
// while its writers are idle (none) and while 50 writers wait on hung bookies (one per tick, not
// one per writer per tick), and how often a stalled add is re-sent to a bookie that does not
// answer (1, 2, 4, 8, 16 s after it stalled, not every second).

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MetadataStore, QuireClientImpl } from '../../client/internal.ts'
import type { AddState } from '../../client/bookieClient.ts'
import type { Clock } from '../../transport/clock.ts'
import { SimBookieNode } from '../../sim/bookieNode.ts'
import { SimKv } from '../../sim/kv.ts'
import { SimNetwork } from '../../sim/network.ts'
import { SimTransport } from '../../sim/transport.ts'
import { World } from '../../sim/world.ts'

const HEARTBEAT_MS = 50
const BOOKIES = ['b1', 'b2', 'b3']

interface Sim {
  world: World
  client: QuireClientImpl
  transport: SimTransport
  /** Timers the client has armed so far (its clock's setTimeout). */
  timers: () => number
  /** Drive the world until `p` settles (or `ms` of virtual time pass). */
  until: <T>(p: Promise<T>, ms?: number) => Promise<T>
}

async function sim(addTimeoutMs: number): Promise<Sim> {
  const world = new World(7)
  world.faults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.05, maxDelayMs: 0.5, stallRate: 0, stallMaxMs: 0 }
  const buckets = [new SimKv(world), new SimKv(world), new SimKv(world), new SimKv(world)] as const
  const metadata = new MetadataStore(...buckets)
  const network = new SimNetwork(world)
  for (const id of BOOKIES) new SimBookieNode(id, world, network, { limbo: true, heartbeatMs: HEARTBEAT_MS, buckets }).restart()
  const transport = new SimTransport('c1', world, network)
  let timers = 0
  const clock: Clock = {
    now: () => world.now(),
    setTimeout: (fn, ms) => { timers++; return world.setTimeout(fn, ms) },
    clearTimeout: (h) => world.clearTimeout(h),
    defer: (fn) => world.defer(fn),
  }
  const client = new QuireClientImpl({ nc: null, bookies: transport, metadata, clock, random: world.random }, { addTimeoutMs })
  await world.run(3 * HEARTBEAT_MS)
  const until = async <T>(p: Promise<T>, ms = 60_000): Promise<T> => {
    let done = false
    const settled = p.finally(() => { done = true })
    settled.catch(() => {})
    const end = world.now() + ms
    while (!done && world.now() < end) await world.run(world.now() + 5)
    if (!done) throw new Error(`not settled within ${ms} virtual ms`)
    return settled
  }
  return { world, client, transport, timers: () => timers, until }
}

test('idle writers arm no timer; 50 writers with adds pending share one tick', async () => {
  const s = await sim(10_000)
  const writers = await s.until(Promise.all(Array.from({ length: 50 }, () => s.client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }))))
  await s.until(Promise.all(writers.flatMap((w) => [w.append('a'), w.append('b'), w.append('c')])))
  // The explicit LACs of the last entries go out within an interval or two; then nothing is due.
  await s.world.run(s.world.now() + 1000)
  let before = s.timers()
  await s.world.run(s.world.now() + 10_000)
  assert.is(s.timers() - before, 0, 'idle writers: no timer (a timer per writer every 250 ms before)')

  // Every bookie hung: each writer has an add pending for 5 s. One tick per 250 ms for all 50.
  for (const b of BOOKIES) s.world.hang(b)
  const pending = writers.map((w) => w.append('d'))
  before = s.timers()
  await s.world.run(s.world.now() + 5000)
  const ticks = s.timers() - before
  assert.ok(ticks <= 5000 / 250 + 2, `50 writers with adds pending armed ${ticks} timers in 5 s (one tick every 250 ms is 20)`)
  for (const b of BOOKIES) s.world.unhang(b)
  await s.until(Promise.all(pending))
})

/**
 * A ledger E3/Qw2/Qa2 whose entry 0 is appended while the bookie at position 0 of its ensemble
 * (one of entry 0's write set) is hung; `sentAt` collects when adds went to that bookie (virtual ms
 * after the append). `addState`, when given, is what the transport says of that bookie's adds.
 */
async function stalled(addState?: () => AddState) {
  const s = await sim(60_000)
  const w = await s.until(s.client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }))
  const md = await s.until(s.client.getLedgerMetadata(w.ledgerId))
  const hung = md.segments[0]!.ensemble[0]!
  // The simulated network cannot tell how a bookie's adds stand; this one says what the test sets.
  if (addState) (s.transport as SimTransport & { addState?: (b: string) => AddState }).addState = (b) => (b === hung ? addState() : 'silent')
  const sentAt: number[] = []
  const queueAdd = s.transport.queueAdd.bind(s.transport)
  s.transport.queueAdd = (bookieId, ...rest) => {
    if (bookieId === hung) sentAt.push(s.world.now() - start)
    queueAdd(bookieId, ...rest)
  }
  s.world.hang(hung)
  const start = s.world.now()
  const added = w.append('x')
  const runFor = (ms: number): Promise<void> => s.world.run(start + ms)
  const finish = async (): Promise<number> => {
    s.world.unhang(hung)
    return s.until(added)
  }
  return { hung, sentAt, runFor, finish }
}

test('an add stalled on a bookie that does not answer is re-sent 1, 2, 4, 8 and 16 s after it stalled', async () => {
  const { hung, sentAt, runFor, finish } = await stalled()
  await runFor(20_000)
  assert.is(sentAt.length, 6, `sent to ${hung} at ${sentAt.join(', ')} ms: once, then 5 re-sends in 20 s (19 before)`)
  assert.equal(sentAt.slice(1).map((t) => Math.round(t / 1000)), [1, 2, 4, 8, 16])
  assert.is(await finish(), 0)
})

test('a stalled add is not sent again to a bookie that is answering older adds (behind), and is once that bookie is past it (lost)', async () => {
  let state: AddState = 'behind'
  const { hung, sentAt, runFor, finish } = await stalled(() => state)
  await runFor(20_000)
  assert.is(sentAt.length, 1, `sent to ${hung} at ${sentAt.join(', ')} ms: once, none again while it is behind (5 re-sends before)`)
  state = 'lost'
  await runFor(20_500)
  assert.is(sentAt.length, 2, 'sent again at the next tick once lost')
  assert.is(await finish(), 0)
})

test.run()
