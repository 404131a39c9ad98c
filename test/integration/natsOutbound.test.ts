// transport/natsOutbound.ts: the patched flush writes the bytes the queue held, in order, passing
// large parts to the socket as they are (no join) inside one cork; without a large part it is the
// flush nats-core ships. Then over a real nats-server: messages of every size from one connection
// arrive whole and in order at another.

import path from 'node:path'
import os from 'node:os'
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { DataBuffer, Parser } from '@nats-io/nats-core/internal'
import { connect as connectStock } from '@nats-io/transport-node'
import { GATHER_PART_BYTES_MIN, gatheredFlush } from '../../transport/natsOutbound.ts'
import { connectNats } from '../../transport/nats.ts'
import { startNatsServer } from '../../cli/cluster.ts'


interface FakeHandler {
  connected: boolean
  infoReceived: boolean
  outbound: DataBuffer
  transport: { send(frame: Uint8Array): void; socket: { cork(): void; uncork(): void } }
}

/** A handler as flushPending sees it, its transport recording each send and the cork depth at it. */
function fakeHandler(parts: readonly Uint8Array[]): { h: FakeHandler; sent: Array<{ frame: Uint8Array; corked: number }>; corks: () => number } {
  const sent: Array<{ frame: Uint8Array; corked: number }> = []
  let corked = 0
  const outbound = new DataBuffer()
  for (const p of parts) outbound.fill(p)
  const h: FakeHandler = {
    connected: true, infoReceived: true, outbound,
    transport: { send: (frame) => sent.push({ frame, corked }), socket: { cork: () => { corked++ }, uncork: () => { corked-- } } },
  }
  return { h, sent, corks: () => corked }
}

const flush = (h: FakeHandler): void => gatheredFlush.call(h as unknown as ThisParameterType<typeof gatheredFlush>)

const sizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: GATHER_PART_BYTES_MIN - 2, max: 3 * GATHER_PART_BYTES_MIN })), { minLength: 1, maxLength: 12 })

test('the bytes written are the queue\'s, in order; large parts go as they are, corked; the queue is empty after', () => {
  fc.assert(fc.property(sizes, (lengths) => {
    const parts = lengths.map((n, i) => Buffer.alloc(n, i + 1))
    const { h, sent, corks } = fakeHandler(parts)
    flush(h)
    assert.equal(Buffer.concat(sent.map((s) => s.frame)), Buffer.concat(parts))
    assert.is(h.outbound.size(), 0)
    assert.is(corks(), 0, 'every cork uncorked')
    const large = new Set<Uint8Array>(parts.filter((p) => p.byteLength >= GATHER_PART_BYTES_MIN))
    if (large.size === 0) {
      assert.is(sent.length, 1, 'no large part: one joined write, as nats-core does')
      return
    }
    for (const p of large) assert.ok(sent.some((s) => s.frame === p), 'a large part is written as it is, not copied')
    assert.ok(sent.every((s) => s.corked === 1), 'every write inside the cork')
    // Small neighbours are joined: never two writes of small parts in a row.
    for (let i = 1; i < sent.length; i++) {
      assert.not.ok(!large.has(sent[i]!.frame) && !large.has(sent[i - 1]!.frame), 'two runs of small parts written apart')
    }
  }))
})

test('not connected yet: nothing is written and the queue is kept, as nats-core does', () => {
  const { h, sent } = fakeHandler([Buffer.alloc(GATHER_PART_BYTES_MIN, 1)])
  h.connected = false
  flush(h)
  assert.is(sent.length, 0)
  assert.is(h.outbound.size(), GATHER_PART_BYTES_MIN)
})

test('connectNats patches its own connections only: a connection made with nats.js directly keeps the shipped flush and parser', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-outbound-'))
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  const ours = await connectNats(nats.url, { name: 'outbound-ours' })
  const stock = await connectStock({ servers: nats.url, name: 'outbound-stock' })
  try {
    type Handler = { flushPending: unknown; parser: Parser }
    const mine = (ours as unknown as { protocol: Handler }).protocol
    const theirs = (stock as unknown as { protocol: Handler }).protocol
    assert.is(mine.flushPending, gatheredFlush)
    assert.ok(Object.hasOwn(mine.parser, 'parse'), 'our parser is patched')
    assert.is.not(theirs.flushPending, gatheredFlush)
    assert.not.ok(Object.hasOwn(theirs.parser, 'parse'), 'theirs is nats-core\'s')
  } finally {
    await ours.close()
    await stock.close()
    await nats.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('over a real server: messages of every size arrive whole and in order', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-outbound-'))
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  const pub = await connectNats(nats.url, { name: 'outbound-pub' })
  const sub = await connectNats(nats.url, { name: 'outbound-sub' })
  try {
    const lengths = [10, 300_000, 5, 70_000, 16_384, 16_383, 1, 1_000_000, 64, 200_000]
    const payloads = Array.from({ length: 40 }, (_, i) => randomBytes(lengths[i % lengths.length]!))
    const got: Buffer[] = []
    const done = new Promise<void>((resolve) => {
      sub.subscribe('outbound.test', { callback: (_, m) => { got.push(Buffer.from(m.data)); if (got.length === payloads.length) resolve() } })
    })
    await sub.flush()
    // Bursts in one tick, so that one flush holds small and large parts together.
    for (let i = 0; i < payloads.length; i += 5) {
      for (const p of payloads.slice(i, i + 5)) pub.publish('outbound.test', p)
      await new Promise((r) => setImmediate(r))
    }
    await done
    assert.is(got.length, payloads.length)
    for (const [i, p] of payloads.entries()) assert.ok(got[i]!.equals(p), `message ${i} (${p.byteLength} bytes)`)
  } finally {
    await pub.close()
    await sub.close()
    await nats.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
