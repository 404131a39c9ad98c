// End to end on real processes: create, append, read, close, reopen, list, delete, with every
// digest type; appends resolve in entry order; readers verify every byte.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startCluster, payloadFor, type TestCluster } from '../support/cluster.ts'

const t = suite<{ c: TestCluster }>('ledger')
// The bookies publish their ledger actors (--inspect): the inspection tests below look for them.
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3, inspect: true }) })
t.after(async (ctx) => { await ctx.c?.stop() })

for (const digestType of ['crc32c', 'hmac-sha256', 'none'] as const) {
  t(`append 500 entries (${digestType}), close, reopen and read back byte for byte`, async ({ c }) => {
    const client = await c.client()
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType, password: 'pw', customMetadata: { app: 'test' } })
    const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => w.append(payloadFor(i, 1 + (i % 300)))))
    assert.equal(ids, Array.from({ length: 500 }, (_, i) => i))
    assert.is(w.lastAddConfirmed, 499)
    await w.close()
    const r = await client.openLedger(w.ledgerId, { password: 'pw' })
    assert.is(r.metadata.state, 'CLOSED')
    assert.is(r.metadata.lastEntryId, 499)
    assert.is(r.metadata.digestType, digestType)
    assert.equal(r.metadata.customMetadata, { app: 'test' })
    assert.is(r.metadata.length, Array.from({ length: 500 }, (_, i) => 1 + (i % 300)).reduce((a, b) => a + b, 0))
    const got = await r.read(0, 499)
    assert.is(got.length, 500)
    got.forEach((e, i) => {
      assert.is(e.entryId, i)
      assert.ok(e.payload.equals(payloadFor(i, 1 + (i % 300))), `entry ${i} differs`)
    })
  })
}

t('append promises resolve in entry id order', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger()
  const order: number[] = []
  await Promise.all(Array.from({ length: 300 }, (_, i) => w.append(payloadFor(i)).then((id) => { order.push(id) })))
  assert.equal(order, [...order].sort((a, b) => a - b))
  await w.close()
})

t('a reader of an open ledger learns the LAC from the bookies and reads up to it', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
  for (let i = 0; i < 20; i++) await w.append(payloadFor(i))
  const other = await c.client()
  const r = await other.openLedger(w.ledgerId)
  // The LAC travels in the next entry: bookies know at least 18 after 20 sequential appends.
  assert.ok(r.lastAddConfirmed >= 18 && r.lastAddConfirmed <= 19, `lac ${r.lastAddConfirmed}`)
  const got = await r.read(0, r.lastAddConfirmed)
  assert.ok(got.every((e, i) => e.payload.equals(payloadFor(i))))
  assert.is(r.metadata.state, 'OPEN', 'open without recovery does not change metadata')
  await w.close()
  const closed = await other.openLedger(w.ledgerId)
  assert.is(closed.metadata.state, 'CLOSED')
  assert.is(closed.lastAddConfirmed, 19)
})

t('listLedgers and deleteLedger', async ({ c }) => {
  const client = await c.client()
  const a = await client.createLedger()
  const b = await client.createLedger()
  await a.close()
  await b.close()
  const before: number[] = []
  for await (const id of client.listLedgers()) before.push(id)
  assert.ok(before.includes(a.ledgerId) && before.includes(b.ledgerId))
  assert.equal(before, [...before].sort((x, y) => x - y))
  await client.deleteLedger(a.ledgerId)
  const after: number[] = []
  for await (const id of client.listLedgers()) after.push(id)
  assert.not.ok(after.includes(a.ledgerId))
  assert.ok(after.includes(b.ledgerId))
})

t('ledger ids are unique across clients allocating at once', async ({ c }) => {
  const c1 = await c.client()
  const c2 = await c.client()
  const ws = await Promise.all([...Array(6)].map((_, i) => (i % 2 ? c1 : c2).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 1 })))
  assert.is(new Set(ws.map((w) => w.ledgerId)).size, 6)
  await Promise.all(ws.map((w) => w.close()))
})

t('entries of 1 MiB and of 0 bytes round-trip', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger()
  const big = Buffer.alloc(1024 * 1024, 7)
  await w.append(big)
  await w.append(new Uint8Array(0))
  await w.append('hello')
  await w.close()
  const r = await client.openLedger(w.ledgerId)
  const [e0, e1, e2] = await r.read(0, 2)
  assert.ok(e0!.payload.equals(big))
  assert.is(e1!.payload.byteLength, 0)
  assert.is(e2!.payload.toString(), 'hello')
})

t('actors publish their state changes on quire.inspect.<kind>.<id>', async ({ c }) => {
  const client = await c.client({ inspect: true })
  const seen: Array<{ kind: string; id: string; state: unknown; reason: string }> = []
  const sub = client.nc!.subscribe('quire.inspect.>', { callback: (_e, m) => { seen.push(JSON.parse(Buffer.from(m.data).toString())) } })
  await client.nc!.flush()
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  await w.append('x')
  await w.close()
  await client.nc!.flush()
  await new Promise((r) => setTimeout(r, 200))
  sub.unsubscribe()
  // State changes (besides sampled context changes, beacons and the final message: transport/inspect.ts).
  const writer = seen.filter((m) => m.kind === 'writer' && m.id === String(w.ledgerId) && m.reason === 'state').map((m) => m.state)
  assert.equal(writer, ['open', { closingMetadata: 'reading' }, { closingMetadata: 'writing' }, 'closed'])
  assert.ok(seen.some((m) => m.kind === 'writer' && m.reason === 'final'), 'the closed writer\'s watch ends with a final message')
  const ledgerActors = seen.filter((m) => m.kind === 'bookie-ledger' && m.id.endsWith(`.${w.ledgerId}`))
  assert.is(new Set(ledgerActors.map((m) => m.id)).size, 3, 'one per bookie of the ensemble')
  assert.ok(ledgerActors.every((m) => m.state === 'open'))
})

/** What a client of this process publishes on quire.inspect.> about a ledger it creates, appends to, tails and closes. */
async function ownInspection(c: TestCluster, inspect: boolean | undefined): Promise<Array<{ kind: string; id: string }>> {
  const watcher = await c.client()
  const client = await c.client(inspect === undefined ? {} : { inspect })
  const seen: Array<{ kind: string; id: string; pid: number }> = []
  const sub = watcher.nc!.subscribe('quire.inspect.>', { callback: (_e, m) => { seen.push(JSON.parse(Buffer.from(m.data).toString())) } })
  await watcher.nc!.flush()
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  await w.append('x')
  await w.close()
  const r = await client.openLedger(w.ledgerId)
  for await (const e of r.entries({ from: 0 })) assert.is(e.payload.toString(), 'x')
  // The server relays what the client published before its PONG, and the watcher's PONG comes
  // after those messages: after both flushes the watcher has everything the client sent.
  await client.nc!.flush()
  await watcher.nc!.flush()
  sub.unsubscribe()
  const id = String(w.ledgerId)
  return seen.filter((m) => m.pid === process.pid && (m.id === id || m.id.startsWith(`${id}.`))).map(({ kind, id }) => ({ kind, id }))
}

t('a client connected without inspect publishes nothing on quire.inspect.>', async ({ c }) => {
  assert.equal(await ownInspection(c, undefined), [])
  assert.equal(await ownInspection(c, false), [])
})

t('a client connected with inspect: true publishes its writer and readers', async ({ c }) => {
  const kinds = new Set((await ownInspection(c, true)).map((m) => m.kind))
  assert.ok(kinds.has('writer'), `writer published: ${[...kinds].join(', ')}`)
  assert.ok(kinds.has('reader'), `tailing reader published: ${[...kinds].join(', ')}`)
})

t.run()
