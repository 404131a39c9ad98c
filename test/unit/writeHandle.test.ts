// The write handle (client/writeHandle.ts) over the simulated cluster (sim/cluster.ts: the real
// client, the product's bookies over simulated disks and network, on a simulated clock): what it
// keeps beside its machine, the promises, against the machine's states.
// - close() during an ensemble change is kept and carried out once the change is done (it was
//   dropped: the close promise never settled);
// - the add timeout is a delay on the client's clock: a stopped bookie is replaced after
//   addTimeoutMs of simulated time, and the writer's appends complete on the new ensemble.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { runUntil, simCluster } from '../../sim/cluster.ts'
import { World } from '../../sim/world.ts'

const test = suite('write handle')

async function writer(addTimeoutMs: number) {
  const world = new World(11)
  const cluster = simCluster(world, { limbo: true })
  await world.run(200)
  const { client } = cluster.newClient({ addTimeoutMs, readTimeoutMs: 40 })
  const w = await runUntil(world, client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 }))
  await runUntil(world, w.append(Buffer.from('first')))
  return { world, cluster, client, w }
}

test('close() during an ensemble change closes the ledger once the change is done', async () => {
  const { world, cluster, client, w } = await writer(40)
  // Hold the change at its first metadata step.
  let release = (): void => {}
  const gate = new Promise<void>((r) => { release = r })
  const listBookies = cluster.metadata.listBookies.bind(cluster.metadata)
  cluster.metadata.listBookies = async () => { await gate; return listBookies() }
  const lost = w.metadata.segments[0]!.ensemble[0]!
  cluster.bookies.get(lost)!.stop()
  const second = w.append(Buffer.from('second'))
  for (let i = 0; i < 100 && w.state !== 'changingEnsemble'; i++) await world.run(world.now() + 5)
  assert.is(w.state, 'changingEnsemble')
  let closed: unknown = 'pending'
  const closing = w.close().then(() => { closed = 'closed' }, (e: unknown) => { closed = e })
  release()
  assert.is(await runUntil(world, second), 1)
  await runUntil(world, closing)
  assert.is(closed, 'closed')
  const md = await runUntil(world, client.getLedgerMetadata(w.ledgerId))
  assert.is(md.state, 'CLOSED')
  assert.is(md.lastEntryId, 1)
  assert.not.ok(md.segments[md.segments.length - 1]!.ensemble.includes(lost), 'the stopped bookie was replaced')
})

test('the add timeout runs on the client\'s clock: a stopped bookie is replaced after addTimeoutMs of simulated time', async () => {
  const ADD_TIMEOUT_MS = 400
  const { world, cluster, w } = await writer(ADD_TIMEOUT_MS)
  const lost = w.metadata.segments[0]!.ensemble[1]!
  cluster.bookies.get(lost)!.stop()
  const startedAt = world.now()
  const second = w.append(Buffer.from('second'))
  while (w.state === 'open' && world.now() - startedAt < 5 * ADD_TIMEOUT_MS) await world.run(world.now() + 5)
  const changedAfterMs = world.now() - startedAt
  assert.ok(changedAfterMs >= ADD_TIMEOUT_MS, `not before the add timeout (${changedAfterMs} ms)`)
  // At the first add tick (a quarter of the timeout) after it, and a step of this loop.
  assert.ok(changedAfterMs <= ADD_TIMEOUT_MS * 1.25 + 10, `at the first tick after it (${changedAfterMs} ms)`)
  assert.is(await runUntil(world, second), 1)
  assert.not.ok(w.metadata.segments[w.metadata.segments.length - 1]!.ensemble.includes(lost))
})

test.run()
