// The entry size a writer enforces is the smallest of the client's maxEntryBytes, the NATS
// server's max_payload less the add frame's framing, and the smallest maxEntryBytes the ledger's
// bookies publish in their registration (less the entry header and digest). Past it, append
// rejects with ENTRY_TOO_LARGE, nothing is thrown into the process, and the writer goes on taking
// smaller entries. Batches of adds never exceed max_payload. Real nats-server started with
// max_payload 1 MB from a config file, real bookie processes, one with --max-entry-bytes 200000.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { ADD_ENTRY_BYTES, ADD_FRAME_BYTES, ADD_FRAME_OVERHEAD_BYTES, ADD_GROUP_BYTES, READ_REPLY_ENTRY_BYTES, READ_REPLY_FRAME_BYTES } from '../../client/bookieClient.ts'
import { connectClient as connect, isQuireError, type QuireClientImpl as QuireClient } from '../../client/internal.ts'
import { REPO_ROOT, killChildrenOnSignals, startBookieProcess, startNatsServer, type BookieProcess, type NatsServer } from '../../cli/cluster.ts'
import { waitForBookies } from '../../cli/sandbox.ts'
import { encode } from '../../transport/wire.ts'
import { payloadFor } from '../support/cluster.ts'
import { within } from '../support/processes.ts'

killChildrenOnSignals()

const SMALL_BOOKIE_LIMIT = 200_000

interface Ctx { dir: string; nats: NatsServer; bookies: BookieProcess[]; clients: QuireClient[]; client(maxEntryBytes?: number): Promise<QuireClient> }

const t = suite<{ x: Ctx }>('entry limits')

t.before(async (ctx) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-limits-'))
  const conf = (await readFile(path.join(REPO_ROOT, 'nats.conf'), 'utf8')).replace(/^max_payload:.*$/m, 'max_payload: 1MB')
  assert.ok(conf.includes('max_payload: 1MB'))
  await writeFile(path.join(dir, 'nats.conf'), conf)
  const x: Ctx = ctx.x = {
    dir, bookies: [], clients: [],
    nats: await startNatsServer({ storeDir: path.join(dir, 'nats'), config: path.join(dir, 'nats.conf') }),
    async client(maxEntryBytes) {
      const c = await connect({ servers: x.nats.url, addTimeoutMs: 10_000, readTimeoutMs: 10_000, ...(maxEntryBytes ? { maxEntryBytes } : {}) })
      x.clients.push(c)
      return c
    },
  }
  for (let i = 1; i <= 3; i++) {
    x.bookies.push(startBookieProcess({ id: `bookie-${i}`, data: path.join(dir, `bookie-${i}`), nats: x.nats.url, extraArgs: ['--heartbeat-ms', '500'] }))
  }
  await waitForBookies(await x.client(), 3, 30_000)
})

t.after(async (ctx) => {
  const x = ctx.x
  if (!x) return
  await Promise.all(x.clients.splice(0).map((c) => c.close().catch(() => {})))
  for (const b of x.bookies) b.kill('SIGKILL')
  await Promise.all(x.bookies.map((b) => b.exited))
  await x.nats?.stop()
  await rm(x.dir, { recursive: true, force: true })
})

/** Errors thrown into the process (a publish failing in a microtask) while `fn` runs. */
async function uncaught<T>(fn: () => Promise<T>): Promise<{ result: T; thrown: unknown[] }> {
  const thrown: unknown[] = []
  const record = (err: unknown): void => { thrown.push(err) }
  process.on('uncaughtException', record)
  try {
    return { result: await fn(), thrown }
  } finally {
    process.off('uncaughtException', record)
  }
}

const rejection = (p: Promise<unknown>): Promise<unknown> => within(60_000, 'append', p.then(() => null, (e: unknown) => e))

t('the framing bounds hold for the largest frames the wire accepts', () => {
  const masterKey = Buffer.alloc(64, 1)
  const group = (ledgerId: number, entries: Buffer[]) => ({ ledgerId, masterKey, digestType: 'hmac-sha256' as const, recovery: true, entries })
  const one = encode({ op: 'add', groups: [group(Number.MAX_SAFE_INTEGER, [Buffer.alloc(70_000)])] })
  assert.ok(one.byteLength <= 70_000 + ADD_FRAME_OVERHEAD_BYTES, `${one.byteLength}`)
  const groups = Array.from({ length: 5 }, (_, i) => group(Number.MAX_SAFE_INTEGER - i, Array.from({ length: 7 }, () => Buffer.alloc(70_000))))
  const many = encode({ op: 'add', groups })
  const bound = ADD_FRAME_BYTES + 5 * (ADD_GROUP_BYTES + 64) + 35 * (ADD_ENTRY_BYTES + 70_000)
  assert.ok(many.byteLength <= bound, `${many.byteLength} > ${bound}`)
  const entries = Array.from({ length: 512 }, (_, i): [number, Uint8Array | null] => [i % 2 ? 0 : 1, i % 2 ? Buffer.alloc(300) : null])
  const reply = encode({ op: 'readResp', reqId: Number.MAX_SAFE_INTEGER, bookieId: 'b'.repeat(128), rc: 0, entries })
  const replyBound = READ_REPLY_FRAME_BYTES + 512 * READ_REPLY_ENTRY_BYTES + 256 * 300
  assert.ok(reply.byteLength <= replyBound, `${reply.byteLength} > ${replyBound}`)
})

t('a client limit above max_payload: a 9 MiB append is ENTRY_TOO_LARGE, the process and the writer carry on', async ({ x }) => {
  const client = await x.client(16 * 1024 * 1024)
  const maxPayload = client.nc!.info!.max_payload
  assert.is(maxPayload, 1024 * 1024)
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
  const { result: err, thrown } = await uncaught(async () => {
    const e = await rejection(w.append(Buffer.alloc(9 * 1024 * 1024, 7)))
    await new Promise((r) => setTimeout(r, 200)) // a publish failing in a microtask would have thrown by now
    return e
  })
  assert.equal(thrown.map(String), [], 'nothing thrown into the process')
  assert.ok(isQuireError(err, 'ENTRY_TOO_LARGE'), String(err))
  const limit = (err as unknown as { info: { limit: number } }).info.limit
  assert.ok(limit < maxPayload && limit > maxPayload - 1024, `limit ${limit} just under max_payload ${maxPayload}`)
  assert.match((err as Error).message, /max_payload/)

  // The writer is still open: an entry of exactly the limit, then entries that each fit but not
  // together in one frame (three of 400 KB to each bookie in the same tick), then a small one.
  const payloads = [payloadFor(0, limit), payloadFor(1, 400_000), payloadFor(2, 400_000), payloadFor(3, 400_000), payloadFor(4, 10)]
  const ids = await uncaught(() => within(60_000, 'appends', Promise.all(payloads.map((p) => w.append(p)))))
  assert.equal(ids.thrown.map(String), [])
  assert.equal(ids.result, [0, 1, 2, 3, 4])
  assert.is(w.state, 'open')
  await w.close()
  const read = await (await x.client()).openLedger(w.ledgerId)
  const got = await read.read(0, 4)
  assert.ok(got.every((e, i) => e.payload.equals(payloads[i]!)), 'read back byte for byte')
})

t('a bookie with a smaller limit publishes it; a writer on it refuses larger entries and carries on', async ({ x }) => {
  x.bookies.push(startBookieProcess({
    id: 'bookie-4', data: path.join(x.dir, 'bookie-4'), nats: x.nats.url,
    extraArgs: ['--heartbeat-ms', '500', '--max-entry-bytes', String(SMALL_BOOKIE_LIMIT)],
  }))
  const client = await x.client()
  await waitForBookies(client, 4, 30_000)
  const rec = (await client.listBookies()).find((b) => b.bookieId === 'bookie-4')
  assert.is(rec?.maxEntryBytes, SMALL_BOOKIE_LIMIT)
  // All four bookies in the ensemble, so bookie-4 is in it and there is no spare to replace it.
  const w = await client.createLedger({ ensembleSize: 4, writeQuorum: 2, ackQuorum: 2 })
  assert.ok(w.metadata.segments[0]!.ensemble.includes('bookie-4'))
  const err = await rejection(w.append(Buffer.alloc(300_000, 1)))
  assert.ok(isQuireError(err, 'ENTRY_TOO_LARGE'), String(err))
  assert.match((err as Error).message, /bookie-4/)
  const limit = (err as unknown as { info: { limit: number } }).info.limit
  assert.ok(limit < SMALL_BOOKIE_LIMIT && limit > SMALL_BOOKIE_LIMIT - 100, `${limit}`)
  // Before: the entry went out, bookie-4 answered TOO_LARGE, and the writer failed NOT_ENOUGH_BOOKIES.
  const payloads = Array.from({ length: 8 }, (_, i) => payloadFor(i, i === 0 ? limit : 50_000))
  assert.equal(await within(60_000, 'appends', Promise.all(payloads.map((p) => w.append(p)))), [0, 1, 2, 3, 4, 5, 6, 7])
  await w.close()
  const got = await (await x.client()).openLedger(w.ledgerId).then((r) => r.read(0, 7))
  assert.ok(got.every((e, i) => e.payload.equals(payloads[i]!)))
})

t.run()
