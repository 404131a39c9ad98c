// Named logs on a real cluster (nats-server, three bookie processes): the namespace and its typed
// errors; records packed into entries with positions in order; segments rolling by record count
// with a reader tailing across the rolls; a second writer taking the log (the first gets FENCED,
// every record it had acknowledged stays at its position); two writers racing (one wins, the other
// LOG_WRITER_CONFLICT); transaction ids; truncation (TRUNCATED before it, ledgers deleted);
// cursors; 'latest'; and the end of stream ending readers.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Log, LogWriter, QuireClient } from '../../client/api.ts'
import type { LogRecord } from '../../client/logReader.ts'
import { isQuireError } from '../../machines/errors.ts'
import { comparePositions, formatPosition, type LogPosition } from '../../machines/logPosition.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'

const test = suite<{ c: TestCluster; client: QuireClient }>('named logs')
test.before(async (ctx) => {
  ctx.c = await startCluster({ bookies: 3, heartbeatMs: 300 })
  ctx.client = await ctx.c.client()
})
test.after(async (ctx) => { await ctx.c?.stop() })

const QUORUM = { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err), `expected a QuireError, got ${String(err)}`)
  return err.code
}

/** Read `n` records from the reader's start (then stop it). */
async function take(it: AsyncGenerator<LogRecord>, n: number): Promise<LogRecord[]> {
  const out: LogRecord[] = []
  if (n === 0) return out
  for await (const r of it) {
    out.push(r)
    if (out.length === n) break
  }
  return out
}

const text = (r: LogRecord): string => Buffer.from(r.payload).toString()

test('the namespace: create, exists, list by prefix, open, delete; typed errors for names, duplicates and unknown logs', async ({ client }) => {
  await client.logs.createLog('orders/eu', QUORUM)
  await client.logs.createLog('orders/us', QUORUM)
  await client.logs.createLog('audit', QUORUM)
  assert.is(await refusal(client.logs.createLog('audit')), 'LOG_EXISTS')
  for (const bad of ['', 'a b', 'a.b', '/x', 'x/', 'a//b', 'x'.repeat(201)]) assert.is(await refusal(client.logs.createLog(bad)), 'INVALID_LOG_NAME', bad)
  assert.is(await refusal(client.logs.openLog('nope')), 'NO_SUCH_LOG')
  assert.ok(await client.logs.logExists('orders/eu'))
  const listed: string[] = []
  for await (const n of client.logs.listLogs('orders/')) listed.push(n)
  assert.equal(listed, ['orders/eu', 'orders/us'])
  await client.logs.deleteLog('orders/us')
  assert.not.ok(await client.logs.logExists('orders/us'))
  assert.is(await refusal(client.logs.createLog('bad-options', { segmentRecordsMax: -1 })), 'INVALID_CONFIG')
})

test('records appended in one turn share entries; positions and txIds increase; a reader gets each once, in order; the end of stream ends it', async ({ client }) => {
  const log = await client.logs.createLog('packed', QUORUM)
  const w = await log.writer()
  const positions = await Promise.all(Array.from({ length: 500 }, (_, i) => w.append(`r${i}`)))
  for (let i = 1; i < positions.length; i++) assert.ok(comparePositions(positions[i - 1]!, positions[i]!) < 0, `${formatPosition(positions[i - 1]!)} < ${formatPosition(positions[i]!)}`)
  const entries = new Set(positions.map((p) => `${p.segmentSeq}:${p.entryId}`))
  assert.ok(entries.size < 50, `500 records in ${entries.size} entries`)
  await w.markEndOfStream()
  const got: LogRecord[] = []
  for await (const r of log.reader().records()) got.push(r)
  assert.equal(got.map(text), Array.from({ length: 500 }, (_, i) => `r${i}`))
  assert.equal(got.map((r) => r.txId), Array.from({ length: 500 }, (_, i) => i))
  assert.equal(got.map((r) => formatPosition(r.position)), positions.map(formatPosition))
  assert.is(await refusal(log.writer()), 'END_OF_STREAM')
  assert.is(await refusal(w.append('after the end')), 'LEDGER_CLOSED')
})

test('segments roll by record count; a reader tailing from the start follows every roll', async ({ client }) => {
  const log = await client.logs.createLog('rolling', { ...QUORUM, segmentRecordsMax: 100 })
  const tail = take(log.reader().records(), 450)
  const w = await log.writer()
  // Batches of 150 in one turn: more than a segment holds.
  for (let b = 0; b < 3; b++) await Promise.all(Array.from({ length: 150 }, (_, i) => w.append(`b${b}.${i}`)))
  const got = await tail
  assert.equal(got.map(text), Array.from({ length: 450 }, (_, k) => `b${Math.floor(k / 150)}.${k % 150}`))
  await w.close()
  const md = await log.info()
  const closed = md.segments.filter((s) => s.state === 'closed')
  assert.ok(closed.length >= 4, `${closed.length} closed segments`)
  assert.is(closed.reduce((n, s) => n + s.recordCount, 0), 450)
  for (const s of closed.slice(0, -1)) assert.is(s.recordCount, 100, `segment ${s.segmentSeq} rolled at ${s.recordCount} records`)
  assert.equal(new Set(got.map((r) => r.position.segmentSeq)).size, closed.filter((s) => s.recordCount > 0).length)
})

test('a second writer takes the log: the first gets FENCED, and every record it had acknowledged is read at its position', async ({ client, c }) => {
  const log = await client.logs.createLog('handover', QUORUM)
  const a = await log.writer()
  const acked: Array<{ p: LogPosition; text: string }> = []
  for (let i = 0; i < 30; i++) acked.push({ p: await a.append(`a${i}`), text: `a${i}` })
  const other = await c.client()
  const b = await (await other.logs.openLog('handover')).writer()
  assert.ok(b.epoch > a.epoch)
  assert.is(await refusal(a.append('a-late')), 'FENCED')
  for (let i = 0; i < 10; i++) acked.push({ p: await b.append(`b${i}`), text: `b${i}` })
  await b.markEndOfStream()
  const got: LogRecord[] = []
  for await (const r of log.reader().records()) got.push(r)
  assert.equal(got.map((r) => `${formatPosition(r.position)} ${text(r)}`), acked.map((x) => `${formatPosition(x.p)} ${x.text}`))
  assert.equal(got.map((r) => r.txId), Array.from({ length: 40 }, (_, i) => i), 'the new writer resumes txIds after the last one')
})

test('two writers racing for the log: exactly one wins, the other gets LOG_WRITER_CONFLICT', async ({ client }) => {
  const log = await client.logs.createLog('race', QUORUM)
  const results = await Promise.allSettled([log.writer(), log.writer()])
  const won = results.filter((r) => r.status === 'fulfilled') as Array<PromiseFulfilledResult<LogWriter>>
  const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
  assert.is(won.length, 1, results.map((r) => r.status).join())
  assert.is((lost[0]!.reason as { code?: string }).code, 'LOG_WRITER_CONFLICT')
  await won[0]!.value.append('the winner writes')
  await won[0]!.value.close()
})

test('transaction ids: given ones must increase (INVALID_TXID), omitted ones follow; records over recordBytesMax are RECORD_TOO_LARGE', async ({ client }) => {
  const log = await client.logs.createLog('txids', QUORUM)
  const w = await log.writer({ recordBytesMax: 1000 })
  await w.append('x', { txId: 100 })
  assert.is(await refusal(w.append('y', { txId: 100 })), 'INVALID_TXID')
  assert.is(await refusal(w.append('y', { txId: 50 })), 'INVALID_TXID')
  await w.append('z')
  assert.is(await refusal(w.append(new Uint8Array(1001))), 'RECORD_TOO_LARGE')
  await w.markEndOfStream()
  const got: LogRecord[] = []
  for await (const r of log.reader().records()) got.push(r)
  assert.equal(got.map((r) => [r.txId, text(r)]), [[100, 'x'], [101, 'z']])
})

async function filled(client: QuireClient, name: string, batches: number): Promise<{ log: Log; w: LogWriter; positions: LogPosition[] }> {
  const log = await client.logs.createLog(name, { ...QUORUM, segmentRecordsMax: 20 })
  const w = await log.writer()
  const positions: LogPosition[] = []
  for (let b = 0; b < batches; b++) positions.push(...await Promise.all(Array.from({ length: 20 }, (_, i) => w.append(`${b}.${i}`))))
  return { log, w, positions }
}

test('truncation removes whole segments before the position and their ledgers; a reader before it gets TRUNCATED naming the first available position', async ({ client }) => {
  const { log, w, positions } = await filled(client, 'truncate', 5)
  const third = positions.find((p) => p.segmentSeq === 3)!
  const before = (await log.info()).segments
  const removed = await log.truncate(third)
  assert.equal(removed, [1, 2])
  for (const s of before.filter((x) => x.segmentSeq < 3)) assert.is(await refusal(client.getLedgerMetadata(s.ledgerId)), 'NO_SUCH_LEDGER')
  assert.equal(await log.truncate(third), [], 'nothing more before the same position')
  const err = await take(log.reader({ from: '1:0:0' }).records(), 1).then(() => null, (e: unknown) => e)
  assert.is((err as { code?: string }).code, 'TRUNCATED')
  assert.match(String(err), /before 3:0:0/)
  const first = await take(log.reader().records(), 1)
  assert.equal(first.map((r) => formatPosition(r.position)), [formatPosition(third)])
  await w.close()
})

test('cursors: a subscriber resumes after what it committed; subscribers are listed and deleted; \'latest\' reads only what comes after', async ({ client }) => {
  const { log, w } = await filled(client, 'cursors', 2)
  const r1 = log.reader({ subscriber: 'billing' })
  const first = await take(r1.records(), 10)
  await r1.commit(first[9]!.position)
  await r1.commit(first[3]!.position) // never moves back
  const resumed = await take(log.reader({ subscriber: 'billing' }).records(), 5)
  assert.equal(resumed.map(text), ['0.10', '0.11', '0.12', '0.13', '0.14'])
  assert.equal(await log.listSubscribers(), ['billing'])
  await log.deleteSubscriber('billing')
  assert.equal(await log.listSubscribers(), [])
  const latest = take(log.reader({ from: 'latest' }).records(), 3)
  await new Promise((r) => setTimeout(r, 300))
  await Promise.all(['n1', 'n2', 'n3'].map((t) => w.append(t)))
  assert.equal((await latest).map(text), ['n1', 'n2', 'n3'])
  await w.close()
})

test('readers from a txId or a time start at the first record at or after it, in any segment; below a truncation they get TRUNCATED', async ({ client }) => {
  const log = await client.logs.createLog('seek', { ...QUORUM, segmentRecordsMax: 30 })
  const w = await log.writer()
  const times: number[] = []
  for (let b = 0; b < 5; b++) {
    times.push(Date.now())
    await Promise.all(Array.from({ length: 20 }, (_, i) => w.append(`${b}.${i}`, { txId: 1000 + b * 100 + i * 2 })))
    await new Promise((r) => setTimeout(r, 30))
  }
  const first = async (from: NonNullable<Parameters<Log['reader']>[0]>['from']): Promise<string> => text((await take(log.reader({ from }).records(), 1))[0]!)
  assert.is(await first({ txId: 0 }), '0.0')
  assert.is(await first({ txId: 1000 }), '0.0')
  assert.is(await first({ txId: 1001 }), '0.1', 'txIds step by 2: the next one')
  assert.is(await first({ txId: 1310 }), '3.5')
  assert.is(await first({ txId: 1438 }), '4.19')
  assert.is(await first({ timeMs: times[2]! }), '2.0')
  assert.is(await first({ timeMs: times[4]! }), '4.0')
  // At once, before the idle writer tells the bookies its last LAC: records below the txId are skipped.
  const past = take(log.reader({ from: { txId: 5000 } }).records(), 1)
  await w.append('next', { txId: 6000 })
  assert.equal((await past).map(text), ['next'])
  const md = await log.info()
  await log.truncate({ segmentSeq: md.segments[2]!.segmentSeq, entryId: 0, slot: 0 })
  const err = await take(log.reader({ from: { txId: 1001 } }).records(), 1).then(() => null, (e: unknown) => e)
  assert.is((err as { code?: string }).code, 'TRUNCATED', String(err))
  assert.is(await refusal(take(log.reader({ from: { txId: -1 } }).records(), 1)), 'INVALID_POSITION')
  assert.is(await refusal(take(log.reader({ from: { segmentSeq: 99, entryId: 0, slot: 0 } }).records(), 1)), 'INVALID_POSITION', 'a segment past the end')
  assert.is(await refusal(take(log.reader({ from: '3:99:0' }).records(), 1)), 'INVALID_POSITION', 'past the end of a closed segment')
  await w.close()
})

test('deleting a log while a writer holds it: the writer is fenced first (NO_SUCH_LOG), a tailing reader ends with NO_SUCH_LOG, the ledgers go', async ({ client }) => {
  const log = await client.logs.createLog('doomed', QUORUM)
  const w = await log.writer()
  for (let i = 0; i < 10; i++) await w.append(`d${i}`)
  const tail = take(log.reader().records(), 1000).then(() => null, (e: unknown) => e)
  await new Promise((r) => setTimeout(r, 300))
  const ledgers = (await log.info()).segments.map((s) => s.ledgerId)
  await client.logs.deleteLog('doomed')
  assert.is(await refusal(w.append('after the delete')), 'NO_SUCH_LOG')
  assert.is(((await tail) as { code?: string } | null)?.code, 'NO_SUCH_LOG')
  for (const id of ledgers) assert.is(await refusal(client.getLedgerMetadata(id)), 'NO_SUCH_LEDGER')
  assert.is(await refusal(client.logs.openLog('doomed')), 'NO_SUCH_LOG')
})

test('retention runs without an operator: the elected auditor truncates the segments a log\'s retentionBytes no longer keeps, once', async ({ client, c }) => {
  const log = await client.logs.createLog('retained', { ...QUORUM, segmentRecordsMax: 10, retentionBytes: 1 })
  const w = await log.writer()
  for (let b = 0; b < 4; b++) await Promise.all(Array.from({ length: 10 }, (_, i) => w.append(`${b}.${i}`)))
  const { startAuditor } = await import('../../actors/auditor.ts')
  const auditors = await Promise.all(['ret-a', 'ret-b'].map((nodeId) => startAuditor({ nats: c.nats.url, nodeId, auditIntervalMs: 200, auditorLeaseMs: 1000, log: () => {} })))
  try {
    const deadline = Date.now() + 20_000
    let md = await log.info()
    while (md.segments.filter((s) => s.state === 'closed').length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      md = await log.info()
    }
    // Every closed segment went (the log holds more than 1 byte while any does); the open one stays.
    assert.equal(md.segments.map((s) => s.state), ['truncated', 'open'])
    assert.is(md.segments[0]!.segmentSeq, 4, 'segments 1 to 4 truncated, 4 kept as the marker')
    await w.append('after')
    assert.equal((await take(log.reader().records(), 1)).map((r) => `${r.position.segmentSeq} ${text(r)}`), ['5 after'])
  } finally {
    for (const a of auditors) await a.stop()
  }
  await w.close()
})

test('segments roll by size and by age too; a reader behind a truncation gets TRUNCATED, naming the first available position', async ({ client }) => {
  const bySize = await client.logs.createLog('by-size', { ...QUORUM, segmentBytesMax: 2000 })
  const ws = await bySize.writer()
  for (let b = 0; b < 6; b++) await Promise.all(Array.from({ length: 5 }, () => ws.append(new Uint8Array(100))))
  await ws.close()
  const sized = (await bySize.info()).segments.filter((s) => s.recordCount > 0)
  assert.ok(sized.length >= 2, `${sized.length} segments`)
  for (const s of sized.slice(0, -1)) assert.ok(s.bytes >= 2000 && s.bytes < 2000 + 5 * 120 + 16, `segment ${s.segmentSeq} rolled at ${s.bytes} bytes`)
  assert.is(sized.reduce((n, s) => n + s.recordCount, 0), 30)

  const byAge = await client.logs.createLog('by-age', { ...QUORUM, segmentAgeMs: 200 })
  const wa = await byAge.writer()
  await wa.append('first')
  await new Promise((r) => setTimeout(r, 500))
  await wa.append('second')
  await wa.close()
  const aged = (await byAge.info()).segments.filter((s) => s.recordCount > 0)
  assert.equal(aged.map((s) => s.recordCount), [1, 1], 'the first segment rolled by age before the second record')

  const behind = await filled(client, 'behind', 4)
  const reader = behind.log.reader().records()
  assert.equal((await reader.next()).value?.position.segmentSeq, 1)
  await behind.log.truncate('3:0:0')
  let err: unknown = null
  try {
    for (let i = 0; i < 100; i++) await reader.next()
  } catch (e) {
    err = e
  }
  assert.is((err as { code?: string } | null)?.code, 'TRUNCATED', String(err))
  assert.match(String(err), /before 3:0:0/)
  await behind.w.close()
})

test.run()
