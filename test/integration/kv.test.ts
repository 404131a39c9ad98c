// The metadata store's contract, run against both VersionedKv implementations: memoryKv (what unit
// tests and the simulator use) and JetStreamKv on a real nats-server (what the product uses). If
// the double drifts from JetStream's CAS semantics, one of the two runs here fails.
// Also: the bounded NATS connect, racing bucket creation, the TIMEOUT mapping (server paused with
// SIGSTOP), memoryKv's injected faults and TTL, and a connection that survives a server restart.

import { spawn } from 'node:child_process'
import net from 'node:net'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { QuireError, isQuireError } from '../../machines/errors.ts'
import { JetStreamApiError, type StoredMsg } from '@nats-io/jetstream'
import { errors as natsErrors } from '@nats-io/transport-node'
import { JetStreamKv, mapKvError, openKv, splitRange, type StreamReader } from '../../storage/kv.ts'
import { MetadataStore } from '../../storage/metadataStore.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { KvConflict, type VersionedKv } from '../../storage/types.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { freePort, startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { isStopped, waitFor } from '../support/processes.ts'

let server: NatsServer | undefined
let storeRoot = ''
const connections: NatsConnection[] = []
let buckets = 0

test.before(async () => {
  storeRoot = await mkdtemp(path.join(os.tmpdir(), 'quire-kv-'))
  server = await startNatsServer({ storeDir: path.join(storeRoot, 'nats') })
})

test.after(async () => {
  await Promise.all(connections.map((nc) => nc.close().catch(() => {})))
  await server?.stop()
  await rm(storeRoot, { recursive: true, force: true })
})

/** Stop nats-server and start it again on the same port and store. */
async function restartNats(): Promise<void> {
  const old = nats()
  await old.stop()
  server = await startNatsServer({ port: old.port, storeDir: old.storeDir })
}

function nats(): NatsServer {
  if (server === undefined) throw new Error('nats-server did not start')
  return server
}

async function connect(): Promise<NatsConnection> {
  const nc = await connectNats(nats().url, { name: 'kv.test' })
  connections.push(nc)
  return nc
}

/** A fresh bucket per test keeps the JetStream runs as independent as the in-memory ones. */
async function freshJetStreamKv(): Promise<VersionedKv> {
  return openKv(await connect(), `kvtest_${process.pid}_${++buckets}`)
}

/** A test failing with a QuireError reports its code in the message. */
function t(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    try {
      await fn()
    } catch (err) {
      if (err instanceof QuireError) throw new Error(`${err.code}: ${err.message}`, { cause: err })
      throw err
    }
  })
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

async function waitForStatus(nc: NatsConnection, type: string, timeoutMs: number): Promise<void> {
  const statuses = nc.status()[Symbol.asyncIterator]()
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${type} status within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    for (;;) {
      const next = await Promise.race([statuses.next(), timedOut])
      if (next.done) throw new Error(`status stream ended before ${type}`)
      if (next.value.type === type) return
    }
  } finally {
    clearTimeout(timer)
    void statuses.return?.()
  }
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const k of it) out.push(k)
  return out.sort()
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection, but the promise fulfilled')
}

async function assertConflict(p: Promise<unknown>, key: string): Promise<void> {
  const err = await rejection(p)
  assert.instance(err, KvConflict)
  assert.is((err as KvConflict).key, key)
}

function contract(impl: string, open: () => Promise<VersionedKv>): void {
  t(`${impl}: create on an existing key conflicts and leaves it as it was`, async () => {
    const kv = await open()
    const r1 = await kv.create('ledgers.1', enc('a'))
    assert.ok(r1 > 0)
    await assertConflict(kv.create('ledgers.1', enc('b')), 'ledgers.1')
    const got = await kv.get('ledgers.1')
    assert.equal(got && { value: dec(got.value), revision: got.revision }, { value: 'a', revision: r1 })
  })

  t(`${impl}: update at the current revision wins, at a stale one conflicts`, async () => {
    const kv = await open()
    const r1 = await kv.create('ledgers.2', enc('a'))
    const r2 = await kv.update('ledgers.2', enc('b'), r1)
    assert.ok(r2 > r1, `revision ${r2} should be above ${r1}`)
    await assertConflict(kv.update('ledgers.2', enc('c'), r1), 'ledgers.2')
    const got = await kv.get('ledgers.2')
    assert.equal(got && { value: dec(got.value), revision: got.revision }, { value: 'b', revision: r2 })
  })

  t(`${impl}: update of a key that was never written conflicts`, async () => {
    const kv = await open()
    await kv.put('other', enc('x')) // so that revision 1 exists in the bucket
    await assertConflict(kv.update('ledgers.3', enc('a'), 1), 'ledgers.3')
    assert.is(await kv.get('ledgers.3'), null)
  })

  t(`${impl}: get of a missing key is null`, async () => {
    const kv = await open()
    assert.is(await kv.get('ledgers.404'), null)
  })

  t(`${impl}: delete hides the key; create works again, at a higher revision`, async () => {
    const kv = await open()
    const r1 = await kv.create('ledgers.5', enc('a'))
    await kv.delete('ledgers.5')
    assert.is(await kv.get('ledgers.5'), null)
    await assertConflict(kv.update('ledgers.5', enc('b'), r1), 'ledgers.5')
    const r3 = await kv.create('ledgers.5', enc('c'))
    assert.ok(r3 > r1)
    const got = await kv.get('ledgers.5')
    assert.equal(got && { value: dec(got.value), revision: got.revision }, { value: 'c', revision: r3 })
    await kv.delete('never.written') // a no-op for callers, as on the server
    assert.is(await kv.get('never.written'), null)
  })

  t(`${impl}: put writes unconditionally; revisions rise across the whole bucket`, async () => {
    const kv = await open()
    const ra = await kv.put('a', enc('1'))
    const rb = await kv.create('b', enc('1'))
    const ra2 = await kv.put('a', enc('2'))
    const rb2 = await kv.update('b', enc('2'), rb)
    assert.ok(ra < rb && rb < ra2 && ra2 < rb2, `${ra} < ${rb} < ${ra2} < ${rb2}`)
    const got = await kv.get('a')
    assert.is(got && dec(got.value), '2')
  })

  t(`${impl}: stored bytes are not aliased by the caller's buffer`, async () => {
    const kv = await open()
    const buf = enc('abc')
    await kv.put('k', buf)
    buf[0] = 0x7a
    const got = await kv.get('k')
    assert.is(got && dec(got.value), 'abc')
  })

  t(`${impl}: keys lists live keys under a prefix; keys contain dots`, async () => {
    const kv = await open()
    for (const k of ['ledgers.1', 'ledgers.42', 'ledgers.42.segments', 'ledgersx', 'bookies.b1', 'ledgers.7']) {
      await kv.put(k, enc(k))
    }
    await kv.delete('ledgers.7')
    assert.equal(await collect(kv.keys('ledgers.')), ['ledgers.1', 'ledgers.42', 'ledgers.42.segments'])
    assert.equal(await collect(kv.keys('ledgers.4')), ['ledgers.42', 'ledgers.42.segments'])
    assert.equal(await collect(kv.keys('ledgers')), ['ledgers.1', 'ledgers.42', 'ledgers.42.segments', 'ledgersx'])
    assert.equal(await collect(kv.keys('bookies.b1')), ['bookies.b1'])
    assert.equal(await collect(kv.keys()), ['bookies.b1', 'ledgers.1', 'ledgers.42', 'ledgers.42.segments', 'ledgersx'])
    assert.equal(await collect(kv.keys('nothing.')), [])
    assert.equal(await collect(kv.keys('no such prefix.')), [])
  })

  t(`${impl}: breaking out of keys early is fine`, async () => {
    const kv = await open()
    for (let i = 0; i < 5; i++) await kv.put(`ledgers.${i}`, enc('x'))
    let seen = 0
    for await (const _ of kv.keys('ledgers.')) if (++seen === 2) break
    assert.is(seen, 2)
  })

  t(`${impl}: concurrent updates at one revision: exactly one wins`, async () => {
    const kv = await open()
    const r1 = await kv.create('ledgers.9', enc('start'))
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => kv.update('ledgers.9', enc(`w${i}`), r1)))
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, revision: r.value }] : []))
    const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []))
    assert.is(won.length, 1)
    assert.is(lost.length, 4)
    for (const err of lost) assert.instance(err, KvConflict)
    const got = await kv.get('ledgers.9')
    assert.equal(got && { value: dec(got.value), revision: got.revision }, {
      value: `w${won[0]?.i}`,
      revision: won[0]?.revision,
    })
  })

  t(`${impl}: concurrent creates of one key: exactly one wins`, async () => {
    const kv = await open()
    const results = await Promise.allSettled([0, 1, 2, 3].map((i) => kv.create('ledgers.10', enc(`c${i}`))))
    assert.is(results.filter((r) => r.status === 'fulfilled').length, 1)
    for (const r of results) if (r.status === 'rejected') assert.instance(r.reason, KvConflict)
  })
}

contract('memoryKv', async () => new MemoryKv())
contract('JetStreamKv', freshJetStreamKv)

// ---- memoryKv's fault hooks and TTL ----

t('memoryKv: failNext(n) times out the next n calls without applying them', async () => {
  const kv = new MemoryKv()
  kv.failNext(2)
  assert.ok(isQuireError(await rejection(kv.put('a', enc('1'))), 'TIMEOUT'))
  assert.ok(isQuireError(await rejection(kv.get('a')), 'TIMEOUT'))
  assert.is(await kv.get('a'), null)
  assert.is(kv.lastRevision, 0)
})

t("memoryKv: failNext(1, 'after') applies the write and loses the reply", async () => {
  const kv = new MemoryKv()
  const r1 = await kv.create('a', enc('1'))
  kv.failNext(1, 'after')
  assert.ok(isQuireError(await rejection(kv.update('a', enc('2'), r1)), 'TIMEOUT'))
  const got = await kv.get('a')
  assert.is(got && dec(got.value), '2')
  // The writer's blind retry meets its own write as a conflict: it must re-read, not assume.
  await assertConflict(kv.update('a', enc('2'), r1), 'a')
})

t('memoryKv: a failing keys() call throws when iterated', async () => {
  const kv = new MemoryKv()
  await kv.put('a', enc('1'))
  kv.failNext(1)
  const it = kv.keys()
  assert.equal(await collect(kv.keys()), ['a']) // the fault went to the earlier call
  assert.ok(isQuireError(await rejection(collect(it)), 'TIMEOUT'))
})

t('memoryKv: bucket TTL drops a key its TTL after its last write', async () => {
  let now = 1000
  const kv = new MemoryKv({ ttlMs: 100, now: () => now })
  const r1 = await kv.create('bookies.b1', enc('up'))
  now = 1099
  assert.ok(await kv.get('bookies.b1'))
  const r2 = await kv.update('bookies.b1', enc('up'), r1) // a heartbeat renews it
  now = 1198
  assert.equal(await collect(kv.keys('bookies.')), ['bookies.b1'])
  now = 1199
  assert.is(await kv.get('bookies.b1'), null)
  assert.equal(await collect(kv.keys('bookies.')), [])
  assert.ok((await kv.create('bookies.b1', enc('back'))) > r2)
})

t('memoryKv: invalid keys and revisions are programmer errors', async () => {
  const kv = new MemoryKv()
  for (const bad of ['', '.a', 'a.', 'a..b', 'a b', 'a*', 'a>']) {
    const err = await rejection(kv.put(bad, enc('x')))
    assert.ok(err instanceof Error && /assertion failed/.test(err.message), `key ${JSON.stringify(bad)}`)
  }
  const err = await rejection(kv.update('a', enc('x'), 0))
  assert.ok(err instanceof Error && /assertion failed/.test(err.message))
})

// ---- the real thing: connect, bucket creation, timeouts, restart ----

t('connectNats: nobody listening → NATS_UNREACHABLE within the bound, naming the URL', async () => {
  const url = `nats://127.0.0.1:${await freePort()}`
  const started = Date.now()
  const err = await rejection(connectNats(url, { timeoutMs: 800 }))
  const elapsedMs = Date.now() - started
  assert.ok(isQuireError(err, 'NATS_UNREACHABLE'), String(err))
  assert.ok((err as Error).message.includes(url), (err as Error).message)
  assert.ok(elapsedMs < 800 + 400, `took ${elapsedMs} ms`)
})

t('connectNats: a peer that accepts TCP but never speaks NATS → NATS_UNREACHABLE in time', async () => {
  const sockets: net.Socket[] = []
  const silent = net.createServer((s) => sockets.push(s))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const address = silent.address() as net.AddressInfo
  try {
    const started = Date.now()
    const err = await rejection(connectNats(`127.0.0.1:${address.port}`, { timeoutMs: 600 }))
    assert.ok(isQuireError(err, 'NATS_UNREACHABLE'), String(err))
    assert.ok(Date.now() - started < 600 + 400, `took ${Date.now() - started} ms`)
  } finally {
    // nats.js leaves the abandoned socket open; closing our end frees it.
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => silent.close(resolve))
  }
})

t('connectNats: a comma-separated list connects to the server that answers', async () => {
  const dead = `nats://127.0.0.1:${await freePort()}`
  const nc = await connectNats(`${dead}, ${nats().url}`, { timeoutMs: 3000 })
  connections.push(nc)
  await nc.flush()
})

t('openKv: two processes racing to create one bucket both succeed and share it', async () => {
  const [ncA, ncB] = await Promise.all([connect(), connect()])
  const bucket = `kvtest_race_${process.pid}`
  const [a, b] = await Promise.all([openKv(ncA, bucket), openKv(ncB, bucket)])
  const revision = await a.create('ledgers.1', enc('from a'))
  const got = await b.get('ledgers.1')
  assert.equal(got && { value: dec(got.value), revision: got.revision }, { value: 'from a', revision })
})

t('openKv: racing creators with different options: both open the winner bucket', async () => {
  const [ncA, ncB] = await Promise.all([connect(), connect()])
  const bucket = `kvtest_race_opts_${process.pid}`
  const [a, b] = await Promise.all([openKv(ncA, bucket, { history: 1 }), openKv(ncB, bucket, { history: 5 })])
  await a.put('k', enc('v'))
  assert.equal(await collect(b.keys()), ['k'])
})

t('openKv: out-of-range options are INVALID_CONFIG', async () => {
  const nc = await connect()
  for (const opts of [{ history: 0 }, { history: 65 }, { replicas: 7 }, { ttlMs: -1 }]) {
    assert.ok(isQuireError(await rejection(openKv(nc, 'kvtest_bad', opts)), 'INVALID_CONFIG'), JSON.stringify(opts))
  }
})

/** A stream of KV messages for a StreamReader double: seq → [key, operation]. */
function fakeStream(bucket: string, msgs: Map<number, [string, 'PUT' | 'DEL']>, onGet: (seq: number) => void = () => {}): StreamReader {
  const stored = (seq: number, key: string, op: string): StoredMsg => ({
    subject: `$KV.${bucket}.${key}`, seq, header: { get: (h: string) => (h === 'KV-Operation' && op !== 'PUT' ? op : '') },
  }) as unknown as StoredMsg
  return {
    async info() {
      const seqs = [...msgs.keys()]
      return { state: { first_seq: Math.min(...seqs, 1), last_seq: Math.max(...seqs, 0) } }
    },
    async getMessage(_stream, q) {
      onGet(q.seq ?? 1)
      const next = [...msgs.keys()].sort((a, b) => a - b).find((seq) => seq >= (q.seq ?? 1))
      if (next === undefined) return null
      const [key, op] = msgs.get(next)!
      return stored(next, key, op)
    },
  }
}

t('JetStreamKv: a listing walks the stream; a key rewritten or deleted while it runs counts as its last message', async () => {
  // b1 sits at seq 2 until the walk has passed seq 3, then it is rewritten to seq 900 (a heartbeat
  // landing mid-listing); b2 is deleted at seq 901 after the walk saw it live; b3 was deleted before.
  const msgs = new Map<number, [string, 'PUT' | 'DEL']>([[1, ['b0', 'PUT']], [2, ['b1', 'PUT']], [3, ['b2', 'PUT']], [5, ['b3', 'DEL']], [7, ['b4', 'PUT']]])
  let moved = false
  const reader = fakeStream('fake', msgs, (seq) => {
    if (!moved && seq > 3) {
      moved = true
      msgs.delete(2)
      msgs.set(900, ['b1', 'PUT'])
      msgs.delete(3)
      msgs.set(901, ['b2', 'DEL'])
    }
  })
  const kv = new JetStreamKv('fake', {} as ConstructorParameters<typeof JetStreamKv>[1], reader)
  assert.equal(await collect(kv.keys()), ['b0', 'b1', 'b4'])
  assert.ok(moved)
})

t('JetStreamKv: a listing that never reaches the end (keys written faster than it walks) fails with TIMEOUT in bounded time', async () => {
  // Every request finds one more message past the last: the walk never meets the end.
  const endless: StreamReader = {
    async info() { return { state: { first_seq: 1, last_seq: 1 } } },
    async getMessage(_stream, q) {
      await new Promise((r) => setTimeout(r, 1))
      const seq = q.seq ?? 1
      return { subject: `$KV.endless.k${seq}`, seq, header: { get: () => '' } } as unknown as StoredMsg
    },
  }
  const kv = new JetStreamKv('endless', {} as ConstructorParameters<typeof JetStreamKv>[1], endless, 20)
  const t0 = Date.now()
  const err = await rejection(collect(kv.keys()))
  assert.ok(isQuireError(err, 'TIMEOUT'), String(err))
  assert.ok(Date.now() - t0 < 5000, `gave up after ${Date.now() - t0} ms`)
})

t('splitRange: contiguous pieces covering the range, at most 8', async () => {
  assert.equal(splitRange(5, 4), [])
  assert.equal(splitRange(1, 10), [[1, 10]])
  for (const [a, b] of [[1, 100_000], [7, 7 + 256 * 3], [3, 1000]] as const) {
    const parts = splitRange(a, b)
    assert.ok(parts.length >= 1 && parts.length <= 8)
    assert.is(parts[0]![0], a)
    assert.is(parts[parts.length - 1]![1], b)
    for (let i = 1; i < parts.length; i++) assert.is(parts[i]![0], parts[i - 1]![1] + 1)
  }
})

t('JetStreamKv: reads and listings go to the stream leader only (STREAM.MSG.GET): no direct get, no consumer', async () => {
  const nc = await connect()
  const kv = await openKv(nc, `kvtest_leader_${process.pid}`)
  // A second connection watches the JetStream API subjects the first one uses.
  const spy = await connect()
  const seen: string[] = []
  for (const subject of ['$JS.API.DIRECT.GET.>', '$JS.API.CONSUMER.>', '$JS.API.STREAM.MSG.GET.>']) {
    spy.subscribe(subject, { callback: (_err, m) => { seen.push(m.subject) } })
  }
  await spy.flush()
  const r1 = await kv.create('ledgers.1', enc('a'))
  await kv.put('ledgers.2', enc('b'))
  await kv.delete('ledgers.2')
  assert.is((await kv.get('ledgers.1'))?.revision, r1)
  assert.is(await kv.get('ledgers.2'), null)
  assert.equal(await collect(kv.keys('ledgers.')), ['ledgers.1'])
  await kv.create('ledgers.2', enc('c')) // create over a delete marker re-reads it
  await nc.flush()
  await spy.flush()
  assert.equal(seen.filter((s) => !s.startsWith('$JS.API.STREAM.MSG.GET.')), [], 'no direct get, no listing consumer')
  assert.ok(seen.length >= 4, `gets and the listing walk went through STREAM.MSG.GET: ${seen.join(', ')}`)
})

t('mapKvError: 10008 and other unavailability are TIMEOUT; every other JetStream or NATS failure is METADATA_ERROR', async () => {
  const api = (err_code: number, code: number, description: string) => new JetStreamApiError({ err_code, code, description })
  const cases: Array<[unknown, string]> = [
    [api(10008, 503, 'JetStream system temporarily unavailable'), 'TIMEOUT'],
    [api(10009, 500, 'JetStream cluster can not handle request'), 'TIMEOUT'],
    [new natsErrors.TimeoutError(), 'TIMEOUT'],
    [new natsErrors.NoRespondersError('$JS.API.STREAM.MSG.GET.KV_x'), 'TIMEOUT'],
    [api(10023, 500, 'insufficient resources'), 'METADATA_ERROR'],
    [api(10059, 404, 'stream not found'), 'METADATA_ERROR'],
    [new natsErrors.ClosedConnectionError(), 'METADATA_ERROR'],
    [new natsErrors.DrainingConnectionError(), 'METADATA_ERROR'],
  ]
  for (const [err, code] of cases) {
    const mapped = mapKvError(err, 'get quire_ledgers/L1', { bucket: 'quire_ledgers' }, 'bucket')
    assert.ok(isQuireError(mapped) && mapped.code === code, `${String(err)} → ${String(mapped)}`)
    assert.is((mapped as QuireError).info['cause'], err)
  }
  const e10008 = mapKvError(api(10008, 503, 'JetStream system temporarily unavailable'), 'x', {}) as QuireError
  assert.match(e10008.message, /10008/)
  assert.is(e10008.info['apiCode'], 10008)
  // No JetStream at all while opening a bucket: a configuration error, said so.
  const open = mapKvError(new natsErrors.NoRespondersError('$JS.API.INFO'), 'open bucket b', {}, 'open')
  assert.ok(isQuireError(open, 'INVALID_CONFIG') && /JetStream/.test(open.message), String(open))
  // Programmer errors, QuireErrors and conflicts pass through untouched.
  const bug = new TypeError('x is not a function')
  assert.is(mapKvError(bug, 'x', {}), bug)
  const conflict = new KvConflict('k')
  assert.is(mapKvError(conflict, 'x', {}), conflict)
})

t('JetStreamKv and MetadataStore: a 10008 from the server surfaces as TIMEOUT from createLedger and listLedgers', async () => {
  const unavailable = () => Promise.reject(new JetStreamApiError({ err_code: 10008, code: 503, description: 'JetStream system temporarily unavailable' }))
  const kv = new JetStreamKv('quire_ledgers', { create: unavailable, get: unavailable } as unknown as ConstructorParameters<typeof JetStreamKv>[1],
    { info: unavailable, getMessage: unavailable })
  const md = new MetadataStore(kv, new MemoryKv(), new MemoryKv())
  const created = await rejection(md.createLedger({
    ledgerId: 1, ensembleSize: 1, writeQuorum: 1, ackQuorum: 1, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
    segments: [{ firstEntryId: 0, ensemble: ['b1'] }], customMetadata: {}, createdAt: 0, passwordCheck: 'x',
  }))
  assert.ok(isQuireError(created, 'TIMEOUT') && /10008/.test(created.message), String(created))
  const listed = await rejection((async () => { for await (const _ of md.listLedgers()) { /* drain */ } })())
  assert.ok(isQuireError(listed, 'TIMEOUT') && /10008/.test(listed.message), String(listed))
})

t('JetStreamKv: a server that stops answering → TIMEOUT, not null or conflict', async () => {
  // Only the paused server meets the 300 ms bound: setting up runs on the default one, and a
  // running server that a busy machine slows past 300 ms is waited for (TIMEOUT, asked again).
  const nc = await connect()
  const bucket = `kvtest_timeout_${process.pid}`
  const revision = await (await openKv(nc, bucket)).create('ledgers.1', enc('a'))
  const kv = await untilAnswered(() => openKv(nc, bucket, { timeoutMs: 300 }))
  const pid = nats().pid
  nats().kill('SIGSTOP')
  try {
    // A signal is delivered asynchronously: until every thread has stopped, one may still answer.
    await waitFor(() => isStopped(pid), 10_000, () => `nats-server ${pid} not stopped`)
    assert.ok(isQuireError(await rejection(kv.get('ledgers.1')), 'TIMEOUT'))
    assert.ok(isQuireError(await rejection(kv.update('ledgers.1', enc('b'), revision)), 'TIMEOUT'))
    assert.ok(isQuireError(await rejection(collect(kv.keys())), 'TIMEOUT'))
  } finally {
    nats().kill('SIGCONT')
  }
  const got = await untilAnswered(() => kv.get('ledgers.1'))
  // TIMEOUT is "unknown", not "failed": the update sat in the paused server's socket and may have
  // been applied once it resumed.
  const after = got && { value: dec(got.value), revision: got.revision }
  assert.ok([JSON.stringify({ value: 'a', revision }), JSON.stringify({ value: 'b', revision: revision + 1 })].includes(JSON.stringify(after)),
    `the server answers again after SIGCONT, with the value before or after the timed-out update: ${JSON.stringify(after)}`)
})

/** Asks again while the answer is TIMEOUT (a slow, not a stopped, server), for at most 30 s. */
async function untilAnswered<T>(ask: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000
  for (;;) {
    try {
      return await ask()
    } catch (err) {
      if (!isQuireError(err, 'TIMEOUT') || Date.now() > deadline) throw err
    }
  }
}

t('a connection and its data survive a nats-server restart', async () => {
  const nc = await connect()
  const kv = await openKv(nc, `kvtest_restart_${process.pid}`)
  const revision = await kv.create('ledgers.1', enc('kept'))
  const reconnected = waitForStatus(nc, 'reconnect', 10_000)
  await restartNats()
  // The client reconnects by itself. nats.js drops what was sent while disconnected (those
  // requests time out), so wait for the reconnect rather than racing it.
  await reconnected
  const got = await kv.get('ledgers.1')
  assert.equal(got && { value: dec(got.value), revision: got.revision }, { value: 'kept', revision })
  assert.ok((await kv.update('ledgers.1', enc('after'), revision)) > revision)
})

test('an open bucket whose stream has no leader (here: a server without JetStream) answers TIMEOUT, not a raw error', async () => {
  const nc = await connect()
  const kv = await openKv(nc, `kvtest_noleader_${process.pid}`)
  await kv.create('ledgers.1', enc('x'))
  const old = nats()
  await old.stop()
  const bare = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(old.port)], { stdio: 'ignore' })
  try {
    await waitForStatus(nc, 'reconnect', 10_000)
    let err: unknown = null
    await kv.get('ledgers.1').catch((e: unknown) => { err = e })
    assert.ok(isQuireError(err, 'TIMEOUT'), `got ${String(err)}`)
  } finally {
    bare.kill('SIGKILL')
    await new Promise((r) => bare.once('exit', r))
    server = await startNatsServer({ port: old.port, storeDir: old.storeDir })
  }
})

test.run()
