// Adds coalesced per bookie while earlier adds to it are unanswered (client/bookieClient.ts): over a
// scripted NATS connection that records each message and hands the client the acks the test
// chooses, so every count here is exact. A bookie with nothing in flight or held gets a tick's
// adds at once; with adds in flight, the adds of later ticks wait (an answer does not send them)
// and go as one message when they reach lingerEntries or lingerBytes, or at lingerMs; any other
// message to the bookie sends its held adds first; an explicit flush sends everything; adds sent
// after a ledger's last writer unregistered are not tracked for a later writer. Then a real
// bookie: 200 ledgers written one entry per tick all come back acknowledged, in fewer messages.

import path from 'node:path'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import type { NatsConnection, Msg } from '@nats-io/transport-node'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieClient, WRITE_SET_GROUP_BYTES_MIN, type AddCoalescing } from '../../client/bookieClient.ts'
import { Bookie } from '../../actors/bookie.ts'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { decodeAddFrame, encodeAckFrame } from '../../transport/addFrame.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC, decode } from '../../transport/wire.ts'

const key = masterKeyOf('coalesce')

interface Sent { bookieId: string; subject: string; entries: Array<[number, number]>; op: string }

/** A NatsConnection that records what the client publishes and lets the test deliver acks. */
function scripted(): { nc: NatsConnection; sent: Sent[]; ack: (bookieId: string, ledgerId: number, ids: number[]) => void } {
  const sent: Sent[] = []
  let inbox: ((err: Error | null, msg: Msg) => void) | null = null
  const record = (subject: string, data: Uint8Array): void => {
    const bookieId = subject.split('.')[2]!
    const add = decodeAddFrame(data)
    if (add.ok) {
      sent.push({ bookieId, subject, op: 'add', entries: add.req.groups.flatMap((g) => g.entries.map((e): [number, number] => [g.ledgerId, Buffer.from(e).readUInt32BE(12)])) })
    } else sent.push({ bookieId, subject, op: (decode(data) as { op: string }).op, entries: [] })
  }
  const nc = {
    info: { max_payload: 8 * 1024 * 1024 },
    subscribe: (_: string, o: { callback: (err: Error | null, msg: Msg) => void }) => { inbox = o.callback; return { unsubscribe: () => {} } },
    status: async function* () {},
    isClosed: () => false,
    publish: (subject: string, data: Uint8Array) => record(subject, data),
    protocol: {
      outBytes: 0, outMsgs: 0,
      sendCommand(cmd: string, ...parts: Uint8Array[]) { record(cmd.split(' ')[1]!, Buffer.concat(parts.slice(0, -1))) },
    },
  } as unknown as NatsConnection
  const ack = (bookieId: string, ledgerId: number, ids: number[]): void => {
    inbox!(null, { data: encodeAckFrame(bookieId, [[ledgerId, RC.OK, ids]])! } as unknown as Msg)
  }
  return { nc, sent, ack }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))
const entry = (ledgerId: number, id: number, bytes = 16): Uint8Array => encodeEntry('crc32c', key, ledgerId, id, id - 1, 0, Buffer.alloc(bytes, id))
/** One entry of ledger `ledgerId` to `bookies`, through the writer's path (queueEntries). */
function append(client: BookieClient, ledgerId: number, id: number, bookies: string[], bytes = 16, writeSetSubjects = false): void {
  client.queueEntries(ledgerId, key, 'crc32c', id - 1, [{ entryId: id, ledgerLength: 0, payload: Buffer.alloc(bytes, id), bookies }], writeSetSubjects)
}

const SLOW: Partial<AddCoalescing> = { lingerMs: 60_000 }
const unit = suite('add coalescing (scripted connection)')

unit('one add at a time is sent at once: each add after the last one was answered is its own message', async () => {
  const { nc, sent, ack } = scripted()
  const client = new BookieClient(nc, undefined, SLOW)
  for (let id = 0; id < 5; id++) {
    append(client, 1, id, ['a', 'b'])
    await tick()
    assert.is(sent.length, 2 * (id + 1), `entry ${id} went to both bookies in its own tick`)
    ack('a', 1, [id])
    ack('b', 1, [id])
  }
  await client.close()
})

unit('with adds in flight, the adds of later ticks wait, answers or not, and go as one message at lingerEntries', async () => {
  const { nc, sent, ack } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 60_000, lingerEntries: 100 })
  append(client, 1, 0, ['a'])
  await tick()
  assert.is(sent.length, 1)
  // 100 ledgers, one entry each, one per tick: the bookie has entry 0 of ledger 1 in flight.
  for (let l = 100; l < 200; l++) {
    append(client, l, 0, ['a'])
    await tick()
    if (l === 150) ack('a', 1, [0])
  }
  assert.is(sent.length, 2, 'held while adds were in flight, the answer did not send them, the 100th did')
  assert.equal(sent[1]!.entries, Array.from({ length: 100 }, (_, i): [number, number] => [100 + i, 0]))
  // Those 100 are in flight: while some of them are, the next add waits.
  append(client, 300, 0, ['a'])
  await tick()
  for (let l = 100; l < 200; l++) ack('a', l, [0])
  assert.is(sent.length, 2)
  client.flush()
  assert.equal(sent[2]!.entries, [[300, 0]])
  // Nothing in flight or held: the ledger's next add goes at once.
  ack('a', 300, [0])
  append(client, 300, 1, ['a'])
  await tick()
  assert.is(sent.length, 4)
  assert.is(client.stats.addMessages, 4)
  assert.is(client.stats.entriesSent, 103)
  await client.close()
})

unit('per bookie: a busy bookie holds its adds while an idle one of the same write set gets them at once', async () => {
  const { nc, sent, ack } = scripted()
  const client = new BookieClient(nc, undefined, SLOW)
  append(client, 1, 0, ['a', 'b'])
  await tick()
  ack('b', 1, [0])
  append(client, 1, 1, ['a', 'b'])
  await tick()
  const seen = (): string[] => sent.map((s) => `${s.bookieId}:${s.entries.map(([, e]) => e).join(',')}`)
  assert.equal(seen(), ['a:0', 'b:0', 'b:1'])
  append(client, 1, 2, ['a', 'b'])
  await tick()
  assert.equal(seen(), ['a:0', 'b:0', 'b:1'], 'b has entry 1 in flight now')
  client.flush()
  assert.equal(seen(), ['a:0', 'b:0', 'b:1', 'a:1,2', 'b:2'])
  await client.close()
})

unit('held adds go once they reach lingerEntries, without an answer', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 60_000, lingerEntries: 10, lingerBytes: 1 << 30 })
  append(client, 1, 0, ['a'])
  await tick()
  for (let id = 1; id <= 25; id++) {
    append(client, 1, id, ['a'])
    await tick()
  }
  assert.equal(sent.map((s) => s.entries.length), [1, 10, 10], 'the first alone, then every 10 held')
  await client.close()
})

unit('held adds reaching lingerBytes go at once', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 60_000, lingerEntries: 1 << 20, lingerBytes: 4096 })
  append(client, 1, 0, ['a'], 1000)
  await tick()
  for (let id = 1; id <= 8; id++) {
    append(client, 1, id, ['a'], 1000)
    await tick()
  }
  // Each entry takes a little over 1000 bytes in its frame: the fourth held one passes 4096.
  assert.equal(sent.map((s) => s.entries.length), [1, 4, 4])
  await client.close()
})

unit('held adds go after lingerMs without an answer', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 1 })
  append(client, 1, 0, ['a'])
  await tick()
  append(client, 1, 1, ['a'])
  append(client, 2, 0, ['a'])
  await tick()
  assert.is(sent.length, 1)
  while (sent.length < 2) await new Promise((r) => setTimeout(r, 5))
  assert.equal(sent[1]!.entries, [[1, 1], [2, 0]])
  assert.is(client.stats.heldMessages, 1)
  await client.close()
})

unit('bookies holding adds share one linger timer: at lingerMs every held add goes, in the same turn', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 20 })
  const realSetTimeout = globalThis.setTimeout
  let timers = 0
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => { timers++; return realSetTimeout(...args) }) as typeof setTimeout
  try {
    // Each bookie gets an add and has it in flight; then adds are held, one bookie a tick.
    for (const b of ['a', 'b', 'c']) append(client, 1, 0, [b])
    await tick()
    assert.is(sent.length, 3)
    let id = 1
    for (const b of ['a', 'b', 'c']) {
      append(client, 2, id++, [b])
      await tick()
    }
    assert.is(sent.length, 3, 'held')
    assert.is(timers, 1, 'one timer for the three bookies holding adds (one per bookie before)')
    // Messages recorded in one synchronous run (no microtask checkpoint between them) share a mark.
    let mark = 0
    let marking = false
    const marks: number[] = []
    const push = sent.push.bind(sent)
    sent.push = (...items: Sent[]): number => {
      if (!marking) {
        marking = true
        queueMicrotask(() => { marking = false; mark++ })
      }
      for (let i = 0; i < items.length; i++) marks.push(mark)
      return push(...items)
    }
    while (sent.length < 6) await new Promise((r) => realSetTimeout(r, 2))
    assert.equal(sent.slice(3).map((s) => s.bookieId).sort(), ['a', 'b', 'c'])
    assert.is(new Set(marks).size, 1, 'the three held messages went in one callback, so one socket write')
  } finally {
    globalThis.setTimeout = realSetTimeout
    await client.close()
  }
})

unit('addState: an add is silent until its bookie answers, behind while it answers only older adds (silent again when it stops for a second), lost once it answers a later one', async () => {
  const { nc, ack } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 0 })
  client.registerWriter(1, () => {})
  client.registerWriter(2, () => {})
  append(client, 2, 0, ['a'])
  await tick()
  await new Promise((r) => setTimeout(r, 2))
  append(client, 1, 0, ['a'])
  await tick()
  await new Promise((r) => setTimeout(r, 2))
  append(client, 2, 1, ['a'])
  await tick()
  assert.is(client.addState('a', 1, 0), 'silent', 'nothing answered since it was sent')
  // Ledger 2's entry 0 went before ledger 1's entry 0: its answer leaves ledger 1's waiting its turn.
  await new Promise((r) => setTimeout(r, 2))
  ack('a', 2, [0])
  assert.is(client.addState('a', 1, 0), 'behind')
  // Answers that stop for a second may have stopped with it lost: silent again.
  await new Promise((r) => setTimeout(r, 1100))
  assert.is(client.addState('a', 1, 0), 'silent')
  // Ledger 2's entry 1 went after it: the bookie got past ledger 1's entry 0 without answering it.
  ack('a', 2, [1])
  assert.is(client.addState('a', 1, 0), 'lost')
  await client.close()
})

unit('adds sent after the ledger\'s last writer unregistered are not tracked: a later writer of the ledger does not inherit them', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, { lingerMs: 0 })
  const unregister = client.registerWriter(1, () => {})
  append(client, 1, 0, ['a'])
  // The writer goes (failed, say) with its add queued: the add is still sent at the end of the tick.
  unregister()
  await tick()
  assert.is(sent.length, 1)
  // A new writer of the same ledger (a recovery in this process): no message of its carried entry 0.
  client.registerWriter(1, () => {})
  assert.is(client.addState('a', 1, 0), 'lost')
  await client.close()
})

unit('adds a bookie never answered stop counting as in flight after a second: its next add goes at once', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, SLOW)
  append(client, 1, 0, ['a'])
  await tick()
  append(client, 1, 1, ['a'])
  await tick()
  assert.is(sent.length, 1, 'entry 1 held behind the unanswered entry 0')
  client.flush()
  // No answer ever comes (lost with a NATS server, say): past IN_FLIGHT_STALE_MS (1 s) of silence
  // the bookie counts as idle. Waiting longer than that only makes it surer.
  await new Promise((r) => setTimeout(r, 1100))
  append(client, 1, 2, ['a'])
  await tick()
  assert.is(sent.length, 3)
  await client.close()
})

unit('any other message to a bookie sends its held adds first; an explicit flush sends everything; lingerMs 0 holds nothing', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, SLOW)
  append(client, 1, 0, ['a', 'b'])
  await tick()
  append(client, 1, 1, ['a', 'b'])
  await tick()
  client.writeLac('a', 1, key, 0, true)
  assert.equal(sent.map((s) => `${s.bookieId}:${s.op}`), ['a:add', 'b:add', 'a:add', 'a:writeLac'])
  client.flush()
  assert.equal(sent.map((s) => `${s.bookieId}:${s.op}`), ['a:add', 'b:add', 'a:add', 'a:writeLac', 'b:add'])
  await client.close()

  const off = scripted()
  const eager = new BookieClient(off.nc, undefined, { lingerMs: 0 })
  for (let id = 0; id < 3; id++) {
    append(eager, 1, id, ['a'])
    await tick()
  }
  assert.is(off.sent.length, 3)
  await eager.close()
})

unit('an idle bookie holds the add of another ledger than its last add message within lingerMs, not the same ledger\'s', async () => {
  const { nc, sent, ack } = scripted()
  const lingerMs = 200
  const client = new BookieClient(nc, undefined, { lingerMs })
  append(client, 1, 0, ['a'])
  await tick()
  ack('a', 1, [0])
  // The same writer, one add at a time: never held.
  append(client, 1, 1, ['a'])
  await tick()
  assert.is(sent.length, 2)
  ack('a', 1, [1])
  // Another ledger right after: held though the bookie answered everything, and joined by a third.
  const heldAt = performance.now()
  append(client, 2, 0, ['a'])
  await tick()
  append(client, 3, 0, ['a'])
  await tick()
  assert.is(sent.length, 2, 'held: another writer shares the bookie')
  while (sent.length === 2 && performance.now() - heldAt < 5_000) await new Promise((r) => setTimeout(r, 5))
  assert.equal(sent[2]!.entries, [[2, 0], [3, 0]], 'both went together at lingerMs')
  assert.ok(performance.now() - heldAt >= lingerMs - 5, `sent after ${performance.now() - heldAt} ms`)
  ack('a', 2, [0])
  ack('a', 3, [0])
  // lingerMs after the last message: another ledger's add goes at once.
  await new Promise((r) => setTimeout(r, lingerMs + 20))
  append(client, 4, 0, ['a'])
  await tick()
  assert.is(sent.length, 4)
  await client.close()
})

unit('a large group goes once on its write set\'s subject, after what its bookies had queued; then both are busy', async () => {
  const { nc, sent, ack } = scripted()
  const client = new BookieClient(nc, undefined, SLOW)
  client.registerWriter(1, () => {})
  append(client, 2, 0, ['a'], 16, true)
  append(client, 1, 0, ['a', 'b'], WRITE_SET_GROUP_BYTES_MIN, true)
  assert.equal(sent.map((m) => `${m.subject}:${m.entries.map(([l, e]) => `${l}/${e}`).join(',')}`), ['quire.bookie.a:2/0', 'quire.ws.a.b.add:1/0'],
    'bookie a\'s queued add first, then the large entry once for both')
  assert.is(client.stats.addMessages, 2)
  assert.is(client.stats.entriesSent, 3)
  // Both bookies have the large entry in flight: a small add to either is held.
  append(client, 3, 0, ['b'])
  await tick()
  assert.is(sent.length, 2, 'held: b has the large entry in flight')
  assert.is(client.addState('b', 1, 0), 'silent', 'the write-set message counts as sent to b')
  ack('a', 1, [0])
  ack('b', 1, [0])
  ack('a', 2, [0])
  // Each bookie answered what it was sent: an entry of the write-set message counts as sent to both.
  assert.is(client.addState('a', 1, 0), 'lost', 'answered by a, so not pending there')
  client.flush()
  assert.equal(sent[2]!.subject, 'quire.bookie.b')
  await client.close()
})

unit('below WRITE_SET_GROUP_BYTES_MIN, or with a bookie that does not take them, each bookie gets its own message', async () => {
  const { nc, sent } = scripted()
  const client = new BookieClient(nc, undefined, SLOW)
  append(client, 1, 0, ['a', 'b'], WRITE_SET_GROUP_BYTES_MIN - 1024, true)
  await tick()
  append(client, 2, 0, ['a', 'b'], WRITE_SET_GROUP_BYTES_MIN, false)
  client.flush()
  assert.equal(sent.map((m) => m.subject), ['quire.bookie.a', 'quire.bookie.b', 'quire.bookie.a', 'quire.bookie.b'])
  await client.close()
})

unit.run()

// --- a real bookie --------------------------------------------------------------------------

const real = suite('add coalescing with a bookie')

real('200 ledgers written one entry per tick: every entry acknowledged, in fewer add messages than entries', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-coalesce-'))
  let nats: NatsServer | undefined
  let bookie: Bookie | undefined
  let nc: NatsConnection | undefined
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    bookie = new Bookie({ bookieId: 'co', dataDir: path.join(dir, 'co'), nats: nats.url, heartbeatMs: 500, gcIntervalMs: 3_600_000 })
    await bookie.start()
    nc = await connectNats(nats.url, { name: 'coalescing-test' })
    // No time bound: held adds go once 50 are held (and the rest at the flush after the last).
    const client = new BookieClient(nc, undefined, { lingerMs: 600_000, lingerEntries: 50 })
    const acked = new Map<number, number[]>()
    const ledgers = 200
    for (let l = 1; l <= ledgers; l++) client.registerWriter(l, (_, rc, ids) => { if (rc === RC.OK) acked.set(l, [...(acked.get(l) ?? []), ...ids]) })
    for (let round = 0; round < 2; round++) {
      for (let l = 1; l <= ledgers; l++) {
        client.queueAdd('co', l, key, 'crc32c', false, entry(l, round))
        await tick()
      }
    }
    client.flush()
    const deadline = Date.now() + 60_000
    while ([...acked.values()].reduce((n, ids) => n + ids.length, 0) < 2 * ledgers && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    for (let l = 1; l <= ledgers; l++) assert.equal(acked.get(l)?.sort(), [0, 1], `ledger ${l}`)
    assert.is(client.stats.entriesSent, 2 * ledgers)
    assert.ok(client.stats.addMessages < 2 * ledgers, `${client.stats.addMessages} add messages for ${2 * ledgers} entries`)
    await client.close()
  } finally {
    await nc?.close().catch(() => {})
    await bookie?.stop().catch(() => {})
    await nats?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

real('large entries on their write sets\' subjects: acknowledged by both bookies of each, and readable from each', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-writeset-'))
  let nats: NatsServer | undefined
  const bookies: Bookie[] = []
  let nc: NatsConnection | undefined
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    for (const id of ['w1', 'w2', 'w3']) {
      const b = new Bookie({ bookieId: id, dataDir: path.join(dir, id), nats: nats.url, heartbeatMs: 500, gcIntervalMs: 3_600_000 })
      bookies.push(b)
      await b.start()
    }
    nc = await connectNats(nats.url, { name: 'writeset-test' })
    const client = new BookieClient(nc)
    const acked = new Map<string, number[]>()
    client.registerWriter(7, (bookieId, rc, ids) => { if (rc === RC.OK) acked.set(bookieId, [...(acked.get(bookieId) ?? []), ...ids]) })
    // Striped as E3/Qw2: entry e to w[e % 3] and w[(e + 1) % 3].
    const ids = ['w1', 'w2', 'w3']
    const entries = Array.from({ length: 6 }, (_, e) => ({
      entryId: e, ledgerLength: 0, payload: Buffer.alloc(WRITE_SET_GROUP_BYTES_MIN + 1000 * e, e + 1), bookies: [ids[e % 3]!, ids[(e + 1) % 3]!],
    }))
    client.queueEntries(7, key, 'crc32c', -1, entries, true)
    assert.is(client.stats.addMessages, 3, 'one message per write set (its two entries in one group), not one per bookie')
    const deadline = Date.now() + 30_000
    while ([...acked.values()].reduce((n, a) => n + a.length, 0) < 12 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    for (const [i, id] of ids.entries()) {
      const mine = entries.filter((e) => e.bookies.includes(id)).map((e) => e.entryId)
      assert.equal(acked.get(id)?.sort(), mine, `${id} acknowledged its entries`)
      // The ledger's key is not the empty password's: a read carries it.
      const read = await client.read(id, 7, mine, 8 * 1024 * 1024, 10_000, undefined, key)
      assert.is(read.rc, RC.OK, `read from ${id}`)
      assert.equal(read.entries.map(([rc, data]) => [rc, (data?.byteLength ?? 0) > WRITE_SET_GROUP_BYTES_MIN]), mine.map(() => [RC.OK, true]), `bookie ${i + 1}`)
    }
    await client.close()
  } finally {
    await nc?.close().catch(() => {})
    for (const b of bookies) await b.stop().catch(() => {})
    await nats?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

real.run()
