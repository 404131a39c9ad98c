// Tailing readers on real processes: every entry in order exactly once, following the writer;
// the last entry before an idle period arrives through the explicit LAC; the tail ends when the
// ledger is closed; unsubscribing stops it; it keeps going across a bookie's kill -9.

import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { firstValueFrom, lastValueFrom, map, of, range, take, toArray } from 'rxjs'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { isQuireError, type LedgerEntry } from '../../client/index.ts'
import { REPO_ROOT } from '../../cli/cluster.ts'
import type { BookieClient } from '../../client/bookieClient.ts'
import { decodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { decode } from '../../transport/wire.ts'
import { waitForBookies } from '../../cli/sandbox.ts'
import { payloadFor, sleep, startCluster, type TestCluster } from '../support/cluster.ts'

const run = promisify(execFile)
const t = suite<{ c: TestCluster }>('tail')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 4 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

t('eager LAC: the bookies learn each LAC as soon as the writer does, without the idle explicit LAC', async ({ c }) => {
  const eager = await (await c.client({ explicitLacIntervalMs: 0, eagerLac: true })).createLedger()
  const lazy = await (await c.client({ explicitLacIntervalMs: 0, eagerLac: false })).createLedger()
  const reader = await c.client()
  for (const w of [eager, lazy]) for (let i = 0; i < 3; i++) await w.append(payloadFor(i))
  const lacOf = async (id: number): Promise<number> => (await reader.openLedger(id)).readLac()
  const deadline = Date.now() + 5000
  while ((await lacOf(eager.ledgerId)) < 2 && Date.now() < deadline) await sleep(10)
  assert.is(await lacOf(eager.ledgerId), 2, 'the eager hint carries the last LAC')
  // Without it, the last entry's LAC travels in no entry: the bookies know 1.
  await sleep(200)
  assert.is(await lacOf(lazy.ledgerId), 1)
  // A tail sees entry 2 of the eager ledger, brought by its long poll.
  const tail = (await reader.openLedger(eager.ledgerId)).entries({ from: 2, pollMs: 2000 })
  const first = await tail.next()
  assert.is(first.value?.entryId, 2)
  await tail.return?.()
  await eager.close()
  await lazy.close()
})

t('a tail sees every entry once, in order, the last one before an idle period, and ends on close', async ({ c }) => {
  // No eager LAC here: the last entry must come through the idle writer's explicit LAC.
  const w = await (await c.client({ explicitLacIntervalMs: 50, eagerLac: false })).createLedger()
  const reader = await (await c.client()).openLedger(w.ledgerId)
  const got: LedgerEntry[] = []
  const done = (async () => { for await (const e of reader.entries({ from: 0, pollMs: 500 })) got.push(e) })()
  let rnd = 7
  for (let i = 0; i < 2000; i++) {
    void w.append(payloadFor(i))
    rnd = (rnd * 48271) % 2147483647
    if (rnd % 97 === 0) await sleep(rnd % 20)
  }
  await w.append(payloadFor(2000))
  // Idle: no entry carries LAC 2000, only the explicit LAC does.
  const deadline = Date.now() + 5000
  while (got.length < 2001 && Date.now() < deadline) await sleep(20)
  assert.is(got.length, 2001, 'the last entry arrives while the writer is idle')
  await w.close()
  await done
  assert.equal(got.map((e) => e.entryId), Array.from({ length: 2001 }, (_, i) => i))
  got.forEach((e, i) => assert.ok(e.payload.equals(payloadFor(i))))
})

t('tail$ from the middle; unsubscribing stops it', async ({ c }) => {
  const w = await (await c.client()).createLedger()
  for (let i = 0; i < 20; i++) await w.append(payloadFor(i))
  const reader = await (await c.client()).openLedger(w.ledgerId)
  const five = await firstValueFrom(reader.tail$({ from: 10, pollMs: 200 }).pipe(take(5), toArray()))
  assert.equal(five.map((e) => e.entryId), [10, 11, 12, 13, 14])
  await w.close()
})

t('a closed ledger tails to its end and completes', async ({ c }) => {
  const w = await (await c.client()).createLedger()
  for (let i = 0; i < 7; i++) await w.append(payloadFor(i))
  await w.close()
  const reader = await (await c.client()).openLedger(w.ledgerId)
  const all = await firstValueFrom(reader.tail$().pipe(toArray()))
  assert.equal(all.map((e) => e.entryId), [0, 1, 2, 3, 4, 5, 6])
})

t('a tail keeps going across kill -9 of a bookie and the ensemble change', async ({ c }) => {
  const w = await (await c.client({ addTimeoutMs: 1000, explicitLacIntervalMs: 50 })).createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  const reader = await (await c.client({ readTimeoutMs: 1000 })).openLedger(w.ledgerId)
  const got: number[] = []
  const done = (async () => { for await (const e of reader.entries({ pollMs: 300 })) got.push(e.entryId) })()
  for (let i = 0; i < 100; i++) await w.append(payloadFor(i))
  c.bookie(w.metadata.segments[0]!.ensemble[1]!).kill('SIGKILL')
  for (let i = 100; i < 200; i++) await w.append(payloadFor(i))
  assert.ok(w.metadata.segments.length >= 2, 'the writer changed ensemble')
  await w.close()
  await done
  assert.equal(got, Array.from({ length: 200 }, (_, i) => i))
})

t('append$ from an RxJS source with a tail$ consumer; FENCED after a recovery, LEDGER_CLOSED after close', async ({ c }) => {
  const w = await (await c.client()).createLedger({ password: 'p' })
  const reader = await (await c.client()).openLedger(w.ledgerId, { password: 'p' })
  const tailed = firstValueFrom(reader.tail$({ pollMs: 300 }).pipe(take(1000), toArray()))
  const acked = await lastValueFrom(w.append$(range(0, 1000).pipe(map((i) => payloadFor(i))), { maxInFlight: 64 }).pipe(toArray()))
  assert.equal(acked.map((a) => a.entryId), Array.from({ length: 1000 }, (_, i) => i))
  const seen = await tailed
  assert.ok(seen.every((e, i) => e.entryId === i && e.payload.equals(payloadFor(i))))
  await (await c.client()).openLedger(w.ledgerId, { password: 'p', recovery: true })
  const fenced = await lastValueFrom(w.append$(of('late'))).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(fenced, 'FENCED'), String(fenced))

  const w2 = await (await c.client()).createLedger()
  await w2.close()
  const closed = await lastValueFrom(w2.append$(of('late'))).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(closed, 'LEDGER_CLOSED'), String(closed))
})

t('the producer/consumer example of docs/client.md runs as written', async ({ c }) => {
  const doc = await readFile(path.join(REPO_ROOT, 'docs/client.md'), 'utf8')
  const block = /```ts\n(\/\/ producer and consumer[\s\S]*?)```/.exec(doc)?.[1]
  assert.ok(block, 'the example is in docs/client.md')
  const file = path.join(REPO_ROOT, `.docs-example-${process.pid}.mts`)
  await writeFile(file, block.replace("'nats://127.0.0.1:4222'", JSON.stringify(c.nats.url)))
  try {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', file], { timeout: 60_000 })
    assert.match(stdout, /produced 100, consumed 100 entries, last "entry 99"/)
  } finally {
    await rm(file, { force: true })
  }
})

t('a tailing reader in another process sees all of 10,000 entries written with pauses, the last one before the close', async ({ c }) => {
  const w = await (await c.client({ explicitLacIntervalMs: 50 })).createLedger()
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/tailer.ts'), c.nats.url, String(w.ledgerId)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<number | null>((r) => child.once('exit', r))
  const hash = createHash('sha256')
  let rnd = 11
  let batch: Promise<number>[] = []
  for (let i = 0; i < 10_000; i++) {
    const p = payloadFor(i, 64)
    hash.update(p)
    batch.push(w.append(p))
    rnd = (rnd * 48271) % 2147483647
    if (batch.length >= 50 || rnd % 61 === 0) {
      await Promise.all(batch)
      batch = []
      if (rnd % 7 === 0) await sleep(rnd % 30)
    }
  }
  await Promise.all(batch)
  // Idle, not closed: the last entry reaches the other process through the explicit LAC.
  const deadline = Date.now() + 10_000
  while (!out.includes('entry 9999\n') && Date.now() < deadline) await sleep(50)
  assert.ok(out.includes('entry 9999\n'), `the tailer saw ${out.match(/entry \d+\n/g)?.length ?? 0} entries before the close; ${err}`)
  await w.close()
  assert.is(await exited, 0, err)
  assert.match(out, new RegExp(`done 10000 ${hash.digest('hex')}`))
})

t('a tail rides a NATS restart', async ({ c }) => {
  const wc = await c.client({ addTimeoutMs: 5000 })
  const w = await wc.createLedger()
  const reader = await (await c.client({ readTimeoutMs: 1000 })).openLedger(w.ledgerId)
  const got: number[] = []
  const done = (async () => { for await (const e of reader.entries({ pollMs: 300 })) got.push(e.entryId) })()
  done.catch(() => {})
  for (let i = 0; i < 50; i++) await w.append(payloadFor(i))
  const running = c.bookies.filter((b) => b.proc.exitCode === null && b.proc.signalCode === null).length
  await c.restartNats(500)
  // Clients and bookies reconnect on their own; the bookies register again on their next beat.
  await waitForBookies(await c.client(), running, 20_000)
  for (let k = 0; k < 100; k++) {
    if (await wc.nc!.flush().then(() => true, () => false)) break
    await sleep(100)
  }
  for (let i = 50; i < 100; i++) await w.append(payloadFor(i))
  await w.close()
  await done
  assert.equal(got, Array.from({ length: 100 }, (_, i) => i))
})

t('readUnconfirmed reads past the LAC what bookies already hold; the explicit LAC survives a bookie restart', async ({ c }) => {
  const wc = await c.client({ explicitLacIntervalMs: 30 })
  const w = await wc.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < 5; i++) await w.append(payloadFor(i))
  const early = await (await c.client()).openLedger(w.ledgerId)
  const unconfirmed = await early.readUnconfirmed(0, 4)
  assert.equal(unconfirmed.map((e) => e.entryId), [0, 1, 2, 3, 4])
  // Entry 4 carried LAC 3; only the explicit LAC says 4. Wait for it, then restart the bookies.
  const deadline = Date.now() + 5000
  while ((await early.readLac()) < 4 && Date.now() < deadline) await sleep(20)
  assert.is(early.lastAddConfirmed, 4)
  for (const id of w.metadata.segments[0]!.ensemble) {
    const b = c.bookie(id)
    b.kill('SIGKILL')
    await b.exited
    await c.startBookie(Number(id.split('-')[1]))
  }
  const later = await (await c.client()).openLedger(w.ledgerId)
  assert.is(later.lastAddConfirmed, 4, 'the bookies kept the explicit LAC through the journal')
  await w.close().catch(() => {})
})

t('a long poll parks until the LAC passes previousLac and can bring the entry at the new LAC', async ({ c }) => {
  const wc = await c.client({ explicitLacIntervalMs: 30 })
  const w = await wc.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  await w.append('zero')
  await w.append('one')
  await sleep(200) // the explicit LAC makes every bookie know LAC 1
  const rc = await c.client()
  const raw = (rc as unknown as { bookies: BookieClient }).bookies
  const bookie = w.metadata.segments[0]!.ensemble[0]!
  const started = Date.now()
  const parked = raw.longPollLac(bookie, w.ledgerId, 1, 5000, 2000, true)
  await sleep(300)
  await w.append('two')
  const answer = await parked
  assert.ok(Date.now() - started < 3000, 'answered when the LAC moved, not at the 5 s poll timeout')
  assert.ok(answer.lac >= 2)
  assert.ok(answer.entry, 'the entry at the new LAC came with the answer')
  const { payload } = decodeEntry('crc32c', masterKeyOf(''), answer.entry!, { ledgerId: w.ledgerId, entryId: answer.lac })
  assert.is(payload.toString(), 'two')
  await w.close()
})

t('stopping a tail cancels its long poll: the waiter goes at once and the bookie unparks it', async ({ c }) => {
  const w = await (await c.client({ explicitLacIntervalMs: 30 })).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  await w.append('zero')
  await sleep(200)
  const rc = await c.client()
  const raw = (rc as unknown as { bookies: BookieClient }).bookies
  // Another connection listening on the reader's inbox sees every answer a bookie sends it.
  const spy = await connectNats(c.nats.url)
  const answered: number[] = []
  spy.subscribe(raw.inbox, { callback: (_e, m) => { const d = decode(m.data); if (d.op === 'lacResp') answered.push(d.reqId) } })
  await spy.flush()
  try {
    const sub = (await rc.openLedger(w.ledgerId)).tail$({ from: 1, pollMs: 30_000 }).subscribe()
    const deadline = Date.now() + 5000
    while (raw.pendingRequests < 3 && Date.now() < deadline) await sleep(10)
    assert.is(raw.pendingRequests, 3, 'one long poll out to each bookie of the segment')
    sub.unsubscribe()
    assert.is(raw.pendingRequests, 0, 'unsubscribing drops the waiters at once')
    // Opening the ledger read its LAC; the spy's connection may still be receiving those answers:
    // a round trip to the server ensures it has everything the server sent it before.
    await spy.flush()
    answered.length = 0
    await sleep(200) // the cancels reach the bookies
    await w.append('one')
    // A control poll sent after the append answers at once; the cancelled ones never do.
    const control = await raw.longPollLac(w.metadata.segments[0]!.ensemble[0]!, w.ledgerId, 0, 5000, 2000, false)
    assert.ok(control.lac >= 1)
    await sleep(300)
    assert.equal(answered, [control.reqId], 'the bookies answered only the control poll')
  } finally {
    await spy.close()
  }
  await w.close()
})

t.run()
