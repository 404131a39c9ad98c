// Every operating error code of the client, provoked on a real cluster: each is a QuireError
// with its stable code, and none loses what was already acknowledged.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connect, isQuireError, type ErrorCode } from '../../client/index.ts'
import { freePort } from '../../cli/cluster.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'

const t = suite<{ c: TestCluster }>('errors')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<Error> {
  const err = await p.then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, code), `expected ${code}, got ${err instanceof Error ? `${(err as { code?: string }).code ?? ''} ${err.message}` : String(err)}`)
  return err as Error
}

t('INVALID_CONFIG: impossible quorums and digest types', async ({ c }) => {
  const client = await c.client()
  await expectCode(client.createLedger({ ensembleSize: 2, writeQuorum: 3, ackQuorum: 2 }), 'INVALID_CONFIG')
  await expectCode(client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 3 }), 'INVALID_CONFIG')
  await expectCode(client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 0 }), 'INVALID_CONFIG')
  await expectCode(client.createLedger({ digestType: 'md5' as never }), 'INVALID_CONFIG')
})

t('NOT_ENOUGH_BOOKIES: an ensemble larger than the live bookies', async ({ c }) => {
  const err = await expectCode((await c.client()).createLedger({ ensembleSize: 4, writeQuorum: 2, ackQuorum: 2 }), 'NOT_ENOUGH_BOOKIES')
  assert.match(err.message, /need 4/)
})

t('UNAUTHORIZED: wrong password; the ledger stays readable with the right one', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger({ password: 'right', digestType: 'hmac-sha256' })
  await w.append('kept')
  await w.close()
  await expectCode(client.openLedger(w.ledgerId, { password: 'wrong' }), 'UNAUTHORIZED')
  const r = await client.openLedger(w.ledgerId, { password: 'right' })
  assert.is((await r.read(0, 0))[0]!.payload.toString(), 'kept')
})

t('NO_SUCH_LEDGER: open and delete an unknown ledger', async ({ c }) => {
  const client = await c.client()
  await expectCode(client.openLedger(987654321), 'NO_SUCH_LEDGER')
  await expectCode(client.deleteLedger(987654321), 'NO_SUCH_LEDGER')
})

t('NO_SUCH_ENTRY: reading past the last entry of a closed ledger', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger()
  await w.append('0')
  await w.close()
  const r = await client.openLedger(w.ledgerId)
  await expectCode(r.read(0, 1), 'NO_SUCH_ENTRY')
  assert.is((await r.read(0, 0)).length, 1)
})

t('ENTRY_TOO_LARGE: over the limit is refused, the ledger goes on', async ({ c }) => {
  const client = await c.client({ maxEntryBytes: 64 * 1024 })
  const w = await client.createLedger()
  await expectCode(w.append(Buffer.alloc(64 * 1024 + 1)), 'ENTRY_TOO_LARGE')
  assert.is(await w.append(Buffer.alloc(64 * 1024)), 0)
  await w.close()
  const big = await (await c.client()).createLedger()
  await expectCode(big.append(Buffer.alloc(5 * 1024 * 1024 + 1)), 'ENTRY_TOO_LARGE')
  await big.close()
})

t('LEDGER_CLOSED: append after close; acknowledged entries stay', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger()
  await w.append(payloadFor(0))
  await w.close()
  await expectCode(w.append(payloadFor(1)), 'LEDGER_CLOSED')
  const r = await client.openLedger(w.ledgerId)
  assert.is(r.lastAddConfirmed, 0)
})

t('TIMEOUT: every bookie of a write set hung; the read fails in bounded time, nothing is lost', async ({ c }) => {
  const client = await c.client({ readTimeoutMs: 500 })
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let i = 0; i < 3; i++) await w.append(payloadFor(i))
  await w.close()
  const r = await client.openLedger(w.ledgerId)
  // Entry 0 lives on ensemble[0] and ensemble[1].
  const hung = w.metadata.segments[0]!.ensemble.slice(0, 2).map((id) => c.bookie(id))
  for (const b of hung) b.kill('SIGSTOP')
  try {
    const started = Date.now()
    await expectCode(r.read(0, 0), 'TIMEOUT')
    assert.ok(Date.now() - started < 5000)
  } finally {
    for (const b of hung) b.kill('SIGCONT')
  }
  assert.ok((await r.read(0, 2)).every((e, i) => e.payload.equals(payloadFor(i))))
})

t('NATS_UNREACHABLE: a bounded connect that names the URL', async () => {
  const port = await freePort()
  const started = Date.now()
  const err = await expectCode(connect({ servers: `nats://127.0.0.1:${port}`, connectTimeoutMs: 1000 }), 'NATS_UNREACHABLE')
  assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`))
  assert.ok(Date.now() - started < 10_000)
})

t.run()
