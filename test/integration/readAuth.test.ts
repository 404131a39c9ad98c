// Reads of a ledger that has a password need its master key at the bookie (actors/bookieReads.ts),
// on real bookie processes: a raw read without a key, or with another one, is UNAUTHORIZED; with
// the ledger's key it returns the entry; a ledger without a password is read without any key; a
// long poll without the key gets the LAC but not the entry; a client that opened the ledger with
// its password reads and tails it as before.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connect as connectNats, type NatsConnection } from '@nats-io/transport-node'
import { BookieClient } from '../../client/bookieClient.ts'
import { mayRead } from '../../actors/bookieReads.ts'
import { masterKeyOf } from '../../transport/entry.ts'
import { RC } from '../../transport/wire.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'

const test = suite('reads need the master key of a ledger with a password')
let cluster: TestCluster | undefined
let nc: NatsConnection | undefined
let raw: BookieClient | undefined

test.before(async () => {
  cluster = await startCluster({ bookies: 3 })
  nc = await connectNats({ servers: cluster.nats.url })
  raw = new BookieClient(nc)
})

test.after(async () => {
  await nc?.close().catch(() => {})
  await cluster?.stop()
})

test('the rule: no stored key or the empty password\'s asks for nothing; any other asks for itself', () => {
  const pw = masterKeyOf('pw')
  assert.ok(mayRead(null, undefined))
  assert.ok(mayRead(masterKeyOf(''), undefined))
  assert.ok(mayRead(pw, masterKeyOf('pw')))
  assert.not.ok(mayRead(pw, undefined))
  assert.not.ok(mayRead(pw, masterKeyOf('other')))
  assert.not.ok(mayRead(pw, pw.subarray(0, 16)))
})

test('raw reads: no key or another key is UNAUTHORIZED, the ledger\'s key reads; no password needs no key', async () => {
  const client = await cluster!.client()
  const secret = await client.createLedger({ password: 'pw' })
  for (const p of ['one', 'two', 'three']) await secret.append(p)
  await secret.close()
  const open = await client.createLedger()
  await open.append('public')
  await open.close()
  const bookie = secret.metadata.segments[0]!.ensemble[0]!
  const read = (ledgerId: number, masterKey?: Uint8Array) => raw!.read(bookie, ledgerId, [0], 1 << 20, 10_000, undefined, masterKey)
  assert.is((await read(secret.ledgerId)).rc, RC.UNAUTHORIZED)
  const wrong = await read(secret.ledgerId, masterKeyOf('other'))
  assert.is(wrong.rc, RC.UNAUTHORIZED)
  assert.equal(wrong.entries, [], 'no entry goes with a refusal')
  const right = await read(secret.ledgerId, masterKeyOf('pw'))
  assert.is(right.rc, RC.OK)
  assert.is(right.entries[0]![0], RC.OK)
  assert.ok(Buffer.from(right.entries[0]![1]!).includes('one'))
  const publicBookie = open.metadata.segments[0]!.ensemble[0]!
  const free = await raw!.read(publicBookie, open.ledgerId, [0], 1 << 20, 10_000)
  assert.is(free.rc, RC.OK)
  assert.ok(Buffer.from(free.entries[0]![1]!).includes('public'))
  // A long poll past a known LAC is answered at once: with the key it brings the entry, without only the LAC.
  const pollWithout = await raw!.longPollLac(bookie, secret.ledgerId, -1, 1000, 10_000, true)
  assert.is(pollWithout.rc, RC.OK)
  assert.ok(pollWithout.lac >= 0)
  assert.is(pollWithout.entry, undefined)
  const pollWith = await raw!.longPollLac(bookie, secret.ledgerId, -1, 1000, 10_000, true, undefined, masterKeyOf('pw'))
  assert.ok(pollWith.entry !== undefined, 'the entry at the LAC, with the key')
  // The client with the password reads as before.
  const reader = await client.openLedger(secret.ledgerId, { password: 'pw' })
  assert.equal((await reader.read(0, 2)).map((e) => e.payload.toString()), ['one', 'two', 'three'])
})

test('a tailing reader of a ledger with a password follows it with the long polls and reads the key allows', async () => {
  const client = await cluster!.client()
  const w = await client.createLedger({ password: 'tail-pw' })
  const reader = await client.openLedger(w.ledgerId, { password: 'tail-pw' })
  const got: string[] = []
  const tailing = (async () => { for await (const e of reader.entries({ from: 0, pollMs: 500 })) got.push(e.payload.toString()) })()
  for (let i = 0; i < 20; i++) await w.append(`e${i}`)
  await w.close()
  await tailing
  assert.equal(got, Array.from({ length: 20 }, (_, i) => `e${i}`))
})

test.run()
