// The admin HTTP API's handlers (cli/adminApi.ts) through fastify's inject(), over the in-memory
// metadata and auto-recovery stores: status codes, JSON shapes, and every error as JSON with its
// QuireError code. Then the real server (cli/httpServer.ts) on a loopback port.

import net from 'node:net'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { FastifyInstance } from 'fastify'
import { registry } from '../../actors/metrics.ts'
import { type AdminDeps, type BookieStateReport } from '../../cli/adminApi.ts'
import { buildHttpApp, startHttpServer } from '../../cli/httpServer.ts'
import { AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { LogStore } from '../../storage/logStore.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { MetadataStore, type BookieRecord, type LedgerMetadata } from '../../storage/metadataStore.ts'

const NOW = 1_000_000

interface World {
  metadata: MetadataStore
  ledgersKv: MemoryKv
  autorecovery: AutorecoveryStore
  app: FastifyInstance
}

const md = (ledgerId: number, extra: Partial<LedgerMetadata> = {}): LedgerMetadata => ({
  ledgerId, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['bookie-1', 'bookie-2', 'bookie-3'] }], customMetadata: { app: 'test' }, createdAt: 5,
  passwordCheck: 'secret-check', ...extra,
})

const bookie = (id: string, extra: Partial<BookieRecord> = {}): BookieRecord => ({
  bookieId: id, state: 'writable', heartbeatAt: NOW - 100, heartbeatMs: 1000, startedAt: 1, host: 'h', pid: 42, ...extra,
})

async function world(extra: Partial<AdminDeps> & { token?: string } = {}): Promise<World> {
  const ledgersKv = new MemoryKv()
  const cluster = new MemoryKv()
  const metadata = new MetadataStore(ledgersKv, new MemoryKv(), cluster, new MemoryKv())
  const autorecovery = new AutorecoveryStore(cluster, () => NOW)
  const app = await buildHttpApp({ metadata, autorecovery, now: () => NOW, ...extra })
  return { metadata, ledgersKv, autorecovery, app }
}

async function get(app: FastifyInstance, url: string): Promise<{ status: number; type: string; body: unknown; text: string }> {
  const r = await app.inject({ method: 'GET', url })
  let body: unknown = null
  try {
    body = JSON.parse(r.body)
  } catch {
    body = null
  }
  return { status: r.statusCode, type: String(r.headers['content-type'] ?? ''), body, text: r.body }
}

function assertError(r: { status: number; type: string; body: unknown }, status: number, code: string): void {
  assert.is(r.status, status, JSON.stringify(r.body))
  assert.match(r.type, /^application\/json/)
  const b = r.body as { statusCode: number; code: string; message: string; error: string }
  assert.is(b.statusCode, status)
  assert.is(b.code, code)
  assert.type(b.message, 'string')
  assert.ok(b.message.length > 0)
  assert.type(b.error, 'string')
}

test('/heartbeat answers 200 OK as text; /metrics is the registry in its content type', async () => {
  const { app } = await world()
  const hb = await get(app, '/heartbeat')
  assert.is(hb.status, 200)
  assert.is(hb.text, 'OK')
  assert.match(hb.type, /^text\/plain/)
  const m = await get(app, '/metrics')
  assert.is(m.status, 200)
  assert.is(m.type, registry.contentType)
  assert.match(m.text, /^# HELP quire_bookie_add_entries_total /m)
  assert.match(m.text, /^quire_bookie_add_entries_total\{result="ok"\} \d+$/m)
  assert.match(m.text, /^# TYPE quire_journal_sync_duration_seconds histogram$/m)
  await app.close()
})

test('list_bookies: every registration with liveness; ?type=rw|ro filters; a bad type is 400', async () => {
  const w = await world()
  await w.metadata.putBookie(bookie('bookie-1'))
  await w.metadata.putBookie(bookie('bookie-2', { state: 'readonly' }))
  await w.metadata.putBookie(bookie('bookie-3', { heartbeatAt: NOW - 60_000 }))
  const all = await get(w.app, '/api/v1/bookie/list_bookies')
  assert.is(all.status, 200)
  assert.match(all.type, /^application\/json/)
  const bookies = (all.body as { bookies: Array<BookieRecord & { alive: boolean }> }).bookies
  assert.equal(bookies.map((b) => [b.bookieId, b.state, b.alive]), [
    ['bookie-1', 'writable', true], ['bookie-2', 'readonly', true], ['bookie-3', 'writable', false],
  ])
  assert.equal(bookies[0], { ...bookie('bookie-1'), alive: true })
  const rw = (await get(w.app, '/api/v1/bookie/list_bookies?type=rw')).body as { bookies: BookieRecord[] }
  assert.equal(rw.bookies.map((b) => b.bookieId), ['bookie-1', 'bookie-3'])
  const ro = (await get(w.app, '/api/v1/bookie/list_bookies?type=ro')).body as { bookies: BookieRecord[] }
  assert.equal(ro.bookies.map((b) => b.bookieId), ['bookie-2'])
  assertError(await get(w.app, '/api/v1/bookie/list_bookies?type=all'), 400, 'INVALID_CONFIG')
  assertError(await get(w.app, '/api/v1/bookie/list_bookies?type=rw&type=ro'), 400, 'INVALID_CONFIG')
  await w.app.close()
})

test('list_bookies with none registered is an empty list', async () => {
  const w = await world()
  const r = await get(w.app, '/api/v1/bookie/list_bookies')
  assert.is(r.status, 200)
  assert.equal(r.body, { bookies: [] })
  await w.app.close()
})

test('ledger/list: ids ascending; ?print_metadata=true gives metadata without the password check', async () => {
  const w = await world()
  assert.equal((await get(w.app, '/api/v1/ledger/list')).body, { ledgers: [] })
  await w.metadata.createLedger(md(12, { state: 'CLOSED', lastEntryId: 9, length: 1000 }))
  await w.metadata.createLedger(md(3))
  const ids = await get(w.app, '/api/v1/ledger/list')
  assert.is(ids.status, 200)
  assert.equal(ids.body, { ledgers: [3, 12] })
  assert.equal((await get(w.app, '/api/v1/ledger/list?print_metadata=false')).body, { ledgers: [3, 12] })
  const full = await get(w.app, '/api/v1/ledger/list?print_metadata=true')
  assert.is(full.status, 200)
  const ledgers = (full.body as { ledgers: Array<Record<string, unknown>> }).ledgers
  assert.equal(ledgers.map((l) => [l['ledgerId'], l['state'], l['lastEntryId']]), [[3, 'OPEN', -1], [12, 'CLOSED', 9]])
  const { passwordCheck: _p, ...expected } = md(12, { state: 'CLOSED', lastEntryId: 9, length: 1000 })
  assert.equal(ledgers[1], expected)
  assert.not.ok(full.text.includes('secret-check'))
  assertError(await get(w.app, '/api/v1/ledger/list?print_metadata=yes'), 400, 'INVALID_CONFIG')
  await w.app.close()
})

test('ledger/metadata: the ledger; unknown is 404 NO_SUCH_LEDGER; a bad or missing id is 400', async () => {
  const w = await world()
  await w.metadata.createLedger(md(7))
  const r = await get(w.app, '/api/v1/ledger/metadata?ledger_id=7')
  assert.is(r.status, 200)
  const { passwordCheck: _p, ...expected } = md(7)
  assert.equal(r.body, expected)
  assert.not.ok(r.text.includes('passwordCheck'))
  const missing = await get(w.app, '/api/v1/ledger/metadata?ledger_id=8')
  assertError(missing, 404, 'NO_SUCH_LEDGER')
  assert.match((missing.body as { message: string }).message, /8/)
  for (const bad of ['abc', '-1', '1.5', '', '1e3', '99999999999999999', '7&ledger_id=8']) {
    assertError(await get(w.app, `/api/v1/ledger/metadata?ledger_id=${bad}`), 400, 'INVALID_CONFIG')
  }
  assertError(await get(w.app, '/api/v1/ledger/metadata'), 400, 'INVALID_CONFIG')
  await w.app.close()
})

test('list_under_replicated_ledger: the marks, by ledger id; ?missing_replica= filters', async () => {
  const w = await world()
  assert.equal((await get(w.app, '/api/v1/autorecovery/list_under_replicated_ledger')).body, { ledgers: [] })
  await w.autorecovery.mark(9, { missing: ['bookie-2'] }, 'auditor-a')
  await w.autorecovery.mark(4, { damaged: ['bookie-3'] }, 'auditor-a')
  await w.autorecovery.mark(9, { missing: ['bookie-1'] }, 'auditor-a')
  const r = await get(w.app, '/api/v1/autorecovery/list_under_replicated_ledger')
  assert.is(r.status, 200)
  assert.equal(r.body, {
    ledgers: [
      { ledgerId: 4, missing: [], damaged: ['bookie-3'], markedAt: NOW, updatedAt: NOW, by: 'auditor-a' },
      { ledgerId: 9, missing: ['bookie-1', 'bookie-2'], damaged: [], markedAt: NOW, updatedAt: NOW, by: 'auditor-a' },
    ],
  })
  const only = (await get(w.app, '/api/v1/autorecovery/list_under_replicated_ledger?missing_replica=bookie-3')).body as { ledgers: Array<{ ledgerId: number }> }
  assert.equal(only.ledgers.map((l) => l.ledgerId), [4])
  const none = (await get(w.app, '/api/v1/autorecovery/list_under_replicated_ledger?missing_replica=bookie-9')).body as { ledgers: unknown[] }
  assert.equal(none.ledgers, [])
  await w.app.close()
})

test('bookie/state: 404 NO_SUCH_BOOKIE on a node without a bookie, the report with one', async () => {
  const without = await world()
  assertError(await get(without.app, '/api/v1/bookie/state'), 404, 'NO_SUCH_BOOKIE')
  await without.app.close()
  const nullBookie = await world({ bookie: null })
  assertError(await get(nullBookie.app, '/api/v1/bookie/state'), 404, 'NO_SUCH_BOOKIE')
  await nullBookie.app.close()
  let readonly = false
  const report = (): BookieStateReport => ({
    bookieId: 'bookie-1', state: readonly ? 'readonly' : 'writable', writable: !readonly,
    disk: { usage: 0.5, usedBytes: 50, totalBytes: 100, threshold: 0.95, lwmThreshold: 0.9, full: readonly },
  })
  const w = await world({ bookie: report })
  const r = await get(w.app, '/api/v1/bookie/state')
  assert.is(r.status, 200)
  assert.equal(r.body, report())
  readonly = true
  const ro = (await get(w.app, '/api/v1/bookie/state')).body as BookieStateReport
  assert.is(ro.state, 'readonly')
  assert.is(ro.writable, false)
  await w.app.close()
})

test('a metadata store that times out is 503 TIMEOUT; an unknown route is a JSON 404', async () => {
  const w = await world()
  await w.metadata.createLedger(md(1))
  w.ledgersKv.failNext(1)
  assertError(await get(w.app, '/api/v1/ledger/metadata?ledger_id=1'), 503, 'TIMEOUT')
  w.ledgersKv.failNext(1)
  assertError(await get(w.app, '/api/v1/ledger/list'), 503, 'TIMEOUT')
  assert.is((await get(w.app, '/api/v1/ledger/metadata?ledger_id=1')).status, 200)
  const nf = await get(w.app, '/api/v1/nothing')
  assert.is(nf.status, 404)
  assert.match(nf.type, /^application\/json/)
  await w.app.close()
})

test('a store read that never ends is answered 503 TIMEOUT within requestTimeoutMs', async () => {
  const never = new Promise<never>(() => {})
  const stuck: AdminDeps['metadata'] = {
    listBookies: () => never,
    readLedger: () => never,
    async *listLedgers() { yield 1; await never },
    logsKv: new MemoryKv(),
  }
  const app = await buildHttpApp({ metadata: stuck, autorecovery: { listMarks: () => never }, requestTimeoutMs: 50 })
  for (const url of ['/api/v1/bookie/list_bookies', '/api/v1/ledger/list', '/api/v1/ledger/metadata?ledger_id=1', '/api/v1/autorecovery/list_under_replicated_ledger']) {
    const r = await get(app, url)
    assertError(r, 503, 'TIMEOUT')
    assert.match((r.body as { message: string }).message, /50 ms/)
  }
  await app.close()
})

test('startHttpServer listens on a loopback port; a port in use is INVALID_CONFIG naming it', async () => {
  const ledgersKv = new MemoryKv()
  const cluster = new MemoryKv()
  const metadata = new MetadataStore(ledgersKv, new MemoryKv(), cluster)
  const autorecovery = new AutorecoveryStore(cluster)
  const srv = await startHttpServer({ port: 0, host: '127.0.0.1', metadata, autorecovery })
  try {
    assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const hb = await fetch(`${srv.url}/heartbeat`)
    assert.is(hb.status, 200)
    assert.is(await hb.text(), 'OK')
    const m = await fetch(`${srv.url}/metrics`)
    assert.is(m.headers.get('content-type'), registry.contentType)
    // Default process metrics are on once a server runs.
    assert.match(await m.text(), /^process_cpu_user_seconds_total /m)
    const l = await fetch(`${srv.url}/api/v1/ledger/metadata?ledger_id=5`)
    assert.is(l.status, 404)
    assert.is(((await l.json()) as { code: string }).code, 'NO_SUCH_LEDGER')
    const err = await startHttpServer({ port: srv.port, host: '127.0.0.1', metadata, autorecovery }).then(() => null, (e: unknown) => e)
    assert.ok(err !== null, 'a second server on the same port must fail')
    assert.is((err as { code?: string }).code, 'INVALID_CONFIG')
    assert.match((err as Error).message, new RegExp(String(srv.port)))
  } finally {
    await srv.close()
    await srv.close()
  }
  // Closed: nothing listens there any more.
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(true))
  })
  assert.ok(refused, 'the port is closed after close()')
})

test('with an httpToken every route needs it as a bearer token: 401 UNAUTHORIZED without it or with another, never echoing either', async () => {
  const TOKEN = 'tok-5e21-admin'
  const w = await world({ token: TOKEN })
  await w.metadata.putBookie(bookie('b1'))
  for (const url of ['/api/v1/bookie/list_bookies', '/metrics', '/heartbeat']) {
    const none = await get(w.app, url)
    assertError(none, 401, 'UNAUTHORIZED')
    assert.match((none.body as { message: string }).message, /needs Authorization: Bearer <httpToken>/)
    const wrong = await w.app.inject({ method: 'GET', url, headers: { authorization: 'Bearer tok-nope' } })
    assert.is(wrong.statusCode, 401, url)
    assert.is(wrong.headers['www-authenticate'], 'Bearer')
    assert.not.ok(wrong.body.includes('tok-nope') || wrong.body.includes(TOKEN), wrong.body)
    const basic = await w.app.inject({ method: 'GET', url, headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } })
    assert.is(basic.statusCode, 401, 'only a bearer token counts')
    const right = await w.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TOKEN}` } })
    assert.is(right.statusCode, 200, `${url}: ${right.body}`)
  }
  const listed = await w.app.inject({ method: 'GET', url: '/api/v1/bookie/list_bookies', headers: { authorization: `bearer ${TOKEN}` } })
  assert.match(listed.body, /"b1"/)
  await w.app.close()
  // No token: nothing needed, as before.
  const open = await world()
  assert.is((await get(open.app, '/heartbeat')).status, 200)
  await open.app.close()
})

test('logs: /api/v1/log/list by prefix and /api/v1/log/info with its subscribers; an unknown log is 404 NO_SUCH_LOG, a bad name 400', async () => {
  const w = await world()
  const logs = new LogStore(w.metadata.logsKv)
  const options = { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c' as const, segmentBytesMax: 0, segmentAgeMs: 0, segmentRecordsMax: 0, retentionMs: 0, retentionBytes: 0 }
  for (const name of ['orders/eu', 'orders/us', 'audit']) await logs.create({ name, options, createdAt: 1, epoch: 0, sealed: false, nextSegmentSeq: 1, ledgersClosedThrough: 0, segments: [] })
  await logs.writeCursor('orders/eu', 'billing', { position: { segmentSeq: 1, entryId: 2, slot: 3 }, updatedAt: 5 }, null)
  assert.equal((await get(w.app, '/api/v1/log/list')).body, { logs: ['audit', 'orders/eu', 'orders/us'] })
  assert.equal((await get(w.app, '/api/v1/log/list?prefix=orders/')).body, { logs: ['orders/eu', 'orders/us'] })
  const info = await get(w.app, '/api/v1/log/info?name=orders/eu')
  assert.is(info.status, 200, info.text)
  assert.is((info.body as { name: string }).name, 'orders/eu')
  assert.equal((info.body as { subscribers: unknown }).subscribers, [{ subscriber: 'billing', position: { segmentSeq: 1, entryId: 2, slot: 3 }, updatedAt: 5 }])
  const missing = await get(w.app, '/api/v1/log/info?name=nope')
  assert.is(missing.status, 404)
  assert.is((missing.body as { code: string }).code, 'NO_SUCH_LOG')
  const bad = await get(w.app, '/api/v1/log/info?name=a%20b')
  assert.is(bad.status, 400)
  assert.is((bad.body as { code: string }).code, 'INVALID_LOG_NAME')
  await w.app.close()
})

test.run()
