// Programmer errors are never reported as operating errors (STYLE.md "Two kinds of failure"), on
// the simulated cluster (sim/cluster.ts: the real client over simulated bookies, network and
// metadata, on a simulated clock): a writer whose ensemble change meets
// - a failure of the metadata store that is no QuireError (a closed connection, say) fails its
//   appends with METADATA_ERROR naming it, not TIMEOUT;
// - a bug (a TypeError thrown while it picks the replacement) does not fail them at all: the
//   TypeError escapes as an unhandled rejection, which stops a process, loudly;
// - and a ledger tail whose read meets a bug lets it escape the same way, instead of retrying it
//   forever as if it were a transient failure.
// Also: assert() throws an AssertionError, which isProgrammerError knows.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { AssertionError, assert as check, asOperatingError, isProgrammerError, isQuireError, QuireError } from '../../machines/errors.ts'
import type { ReadHandle } from '../../client/api.ts'
import { tailEntries } from '../../client/tail.ts'
import { NO_CLIENT_METRICS } from '../../client/telemetry.ts'
import { runUntil, simCluster } from '../../sim/cluster.ts'
import { World } from '../../sim/world.ts'

const test = suite('programmer errors')

/** A writer on a simulated cluster, one of its ensemble stopped, its metadata's listBookies replaced by `fail`. */
async function ensembleChangeMeets(fail: () => Promise<never>): Promise<{ world: World; append: Promise<unknown> }> {
  const world = new World(7)
  const cluster = simCluster(world, { limbo: true })
  await world.run(200)
  const { client } = cluster.newClient({ addTimeoutMs: 40, readTimeoutMs: 40 })
  const w = await runUntil(world, client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 }))
  await runUntil(world, w.append(Buffer.from('first')))
  cluster.metadata.listBookies = fail
  cluster.bookies.get(w.metadata.segments[0]!.ensemble[0]!)!.stop()
  const append = w.append(Buffer.from('second'))
  append.catch(() => {})
  return { world, append }
}

test('a metadata failure that is no QuireError fails the appends with METADATA_ERROR, not TIMEOUT', async () => {
  const { world, append } = await ensembleChangeMeets(async () => { throw new Error('connection closed') })
  const err = await runUntil(world, append.then(() => null, (e: unknown) => e))
  assert.ok(isQuireError(err, 'METADATA_ERROR'), `METADATA_ERROR, got ${String(err)}`)
  assert.match((err as QuireError).message, /changing the ensemble of ledger \d+: connection closed/)
})

test('a TypeError in the ensemble change escapes as an unhandled rejection; the append is not failed with an operating error', async () => {
  const escaped: unknown[] = []
  const onUnhandled = (reason: unknown): void => { escaped.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  try {
    const bug = new TypeError('cannot read properties of undefined (reading \'bookieId\')')
    const { world, append } = await ensembleChangeMeets(async () => { throw bug })
    let settled: unknown = 'pending'
    append.then(() => { settled = 'acknowledged' }, (e: unknown) => { settled = e })
    for (let i = 0; i < 40 && escaped.length === 0; i++) {
      await world.run(world.now() + 25)
      await new Promise((r) => setImmediate(r))
    }
    assert.equal(escaped, [bug], 'the TypeError itself escaped')
    assert.not.ok(isQuireError(settled), `the append was not failed with an operating error (${String(settled)})`)
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})

test('a bug in a tail\'s read escapes as an unhandled rejection; it is not retried as transient', async () => {
  const escaped: unknown[] = []
  const onUnhandled = (reason: unknown): void => { escaped.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  const bug = new TypeError('cannot read properties of undefined (reading \'payload\')')
  let reads = 0
  const handle = {
    ledgerId: 9, lastAddConfirmed: 4, isClosed: true,
    metadata: { ledgerId: 9, state: 'CLOSED', lastEntryId: 4, length: 5, segments: [] },
    read: async () => { reads++; throw bug },
    refreshMetadata: async () => handle.metadata,
    readLacAndEntry: async () => ({ lac: 4, entry: null }),
    longPollLac: async () => 4,
  } as unknown as ReadHandle
  const it = tailEntries(handle, { from: 0, pollMs: 50 }, null, NO_CLIENT_METRICS)
  const next = it.next().then(() => 'a value', (e: unknown) => e)
  try {
    for (let i = 0; i < 100 && escaped.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    assert.equal(escaped, [bug], 'the TypeError itself escaped')
    assert.is(reads, 1, 'read once, not retried')
  } finally {
    await it.return?.(undefined)
    await Promise.race([next, new Promise((r) => setTimeout(r, 100))])
    process.off('unhandledRejection', onUnhandled)
  }
})

test('assert throws an AssertionError; programmer errors are told from operating ones', () => {
  assert.throws(() => check(false, 'two writers'), (e: unknown) => e instanceof AssertionError && /assertion failed: two writers/.test((e as Error).message))
  for (const e of [new AssertionError('x'), new TypeError('x'), new RangeError('x'), new ReferenceError('x'), new SyntaxError('x')]) {
    assert.ok(isProgrammerError(e), e.name)
    assert.throws(() => asOperatingError(e, 'METADATA_ERROR', 'doing it'), (t: unknown) => t === e, `${e.name} is thrown again`)
  }
  for (const e of [new Error('closed'), 'a string', new QuireError('FENCED', 'fenced')]) assert.not.ok(isProgrammerError(e))
  const q = new QuireError('FENCED', 'fenced')
  assert.is(asOperatingError(q, 'METADATA_ERROR', 'x'), q)
  assert.is(asOperatingError(new Error('closed'), 'METADATA_ERROR', 'reading ledger 4').message, 'reading ledger 4: closed')
})

test.run()
