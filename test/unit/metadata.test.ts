// The metadata store's rules over the in-memory KV (same CAS semantics as JetStream KV):
// unique ledger ids from CAS'd ranges, NO_SUCH_LEDGER, CAS conflicts on stale revisions,
// placement that never picks a bookie twice, dead, read-only or excluded. And open with recovery
// over a metadata replica that lags one write behind (what a JetStream direct get can meet): the
// result is what the closing compare-and-swap wrote, never the IN_RECOVERY state before it.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition } from 'xstate'
import { isQuireError } from '../../machines/errors.ts'
import { writerMachine } from '../../machines/writer.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { MetadataStore, pickBookies, type BookieRecord, type LedgerMetadata } from '../../storage/metadataStore.ts'
import { KvConflict, type VersionedKv } from '../../storage/types.ts'
import { recoverLedger } from '../../client/recovery.ts'
import type { BookieTransport } from '../../client/bookieClient.ts'
import { realClock } from '../../transport/clock.ts'
import { RC } from '../../transport/wire.ts'

const store = (): MetadataStore => new MetadataStore(new MemoryKv(), new MemoryKv(), new MemoryKv())
const md = (ledgerId: number): LedgerMetadata => ({
  ledgerId, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], customMetadata: {}, createdAt: 0, passwordCheck: 'x',
})
const bookie = (id: string, extra: Partial<BookieRecord> = {}): BookieRecord => ({
  bookieId: id, state: 'writable', heartbeatAt: 1000, heartbeatMs: 100, startedAt: 0, host: 'h', pid: 1, ...extra,
})

test('ledger ids are unique across stores sharing one counter, in ranges', async () => {
  const cluster = new MemoryKv()
  const a = new MetadataStore(new MemoryKv(), new MemoryKv(), cluster)
  const b = new MetadataStore(new MemoryKv(), new MemoryKv(), cluster)
  const ids = await Promise.all(Array.from({ length: 2500 }, (_, i) => (i % 2 ? a : b).allocateLedgerId()))
  assert.is(new Set(ids).size, 2500)
  assert.ok(ids.every((id) => Number.isSafeInteger(id) && id >= 1))
})

test('read of an unknown ledger is NO_SUCH_LEDGER; a stale revision is a KvConflict', async () => {
  const s = store()
  await s.readLedger(5).then(() => assert.unreachable(), (e) => assert.ok(isQuireError(e, 'NO_SUCH_LEDGER')))
  const created = await s.createLedger(md(5))
  const next = await s.writeLedger({ ...created.value, state: 'CLOSED' }, created.revision)
  assert.ok(next.revision > created.revision)
  await s.writeLedger({ ...created.value, lastEntryId: 9 }, created.revision).then(() => assert.unreachable(), (e) => assert.instance(e, KvConflict))
  assert.is((await s.readLedger(5)).value.state, 'CLOSED')
  await s.createLedger(md(5)).then(() => assert.unreachable(), (e) => assert.ok(isQuireError(e, 'METADATA_CONFLICT')))
})

test('listLedgers is ascending; deleteLedger removes one and refuses unknown ids', async () => {
  const s = store()
  for (const id of [30, 4, 12]) await s.createLedger(md(id))
  const ids: number[] = []
  for await (const id of s.listLedgers()) ids.push(id)
  assert.equal(ids, [4, 12, 30])
  await s.deleteLedger(12)
  await s.deleteLedger(12).then(() => assert.unreachable(), (e) => assert.ok(isQuireError(e, 'NO_SUCH_LEDGER')))
})

test('placement: distinct, live, writable, not excluded; duplicates in the listing never leak in', () => {
  const all = [bookie('a'), bookie('b'), bookie('b'), bookie('c', { state: 'readonly' }), bookie('d', { heartbeatAt: 0 }), bookie('e')]
  for (let seed = 0; seed < 200; seed++) {
    let x = seed
    const rnd = (): number => ((x = (x * 48271) % 2147483647) / 2147483647)
    const picked = pickBookies(all, 3, 1100, rnd)
    assert.is(new Set(picked).size, 3)
    assert.equal([...picked].sort(), ['a', 'b', 'e'])
  }
  assert.throws(() => pickBookies(all, 4, 1100, Math.random), (e: unknown) => isQuireError(e, 'NOT_ENOUGH_BOOKIES'))
  assert.throws(() => pickBookies(all, 3, 1100, Math.random, ['a']), (e: unknown) => isQuireError(e, 'NOT_ENOUGH_BOOKIES'))
})

test('a writer refuses an ensemble that names a bookie twice', () => {
  const input = { ledgerId: 1, quorum: { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }, ensemble: ['a', 'b', 'a'], lastEntryId: -1, length: 0 }
  let message = ''
  try {
    const [snap] = initialTransition(writerMachine, input)
    assert.is(snap.status, 'error')
    message = String((snap as { error?: unknown }).error)
  } catch (err) {
    message = String(err)
  }
  assert.match(message, /distinct bookies/)
})

/**
 * A VersionedKv read from a replica one write behind: the first get of a key after each write of
 * it returns the key as it was before that write (null if it did not exist), as a JetStream direct
 * get served by a lagging replica does; later gets see the write. CAS stays exact (writes go to
 * the leader).
 */
class LaggingReplicaKv implements VersionedKv {
  readonly inner = new MemoryKv()
  readonly #before = new Map<string, { value: Uint8Array; revision: number } | null>()
  staleReads = 0
  async get(key: string) {
    if (this.#before.has(key)) {
      const old = this.#before.get(key)!
      this.#before.delete(key)
      this.staleReads++
      return old
    }
    return this.inner.get(key)
  }
  /** Apply a write; the next get of `key` answers what was there before it. */
  async #write<T>(key: string, write: () => Promise<T>): Promise<T> {
    const before = await this.inner.get(key)
    const result = await write()
    this.#before.set(key, before)
    return result
  }
  create(key: string, value: Uint8Array) { return this.#write(key, () => this.inner.create(key, value)) }
  update(key: string, value: Uint8Array, revision: number) { return this.#write(key, () => this.inner.update(key, value, revision)) }
  put(key: string, value: Uint8Array) { return this.#write(key, () => this.inner.put(key, value)) }
  delete(key: string) { return this.#write(key, () => this.inner.delete(key)) }
  keys(prefix?: string) { return this.inner.keys(prefix) }
}

test('open with recovery returns the CLOSED metadata its compare-and-swap wrote, even if the next read lags behind', async () => {
  const ledgers = new LaggingReplicaKv()
  const s = new MetadataStore(ledgers, new MemoryKv(), new MemoryKv())
  const created = await s.createLedger({ ...md(7), segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }] })
  await s.readLedger(7).catch(() => {}) // the lagging read after the create: no ledger yet
  // Bookies that never saw an entry: fencing LAC reads answer -1, reads "no such ledger".
  const bookies: BookieTransport = {
    registerWriter: () => () => {},
    queueAdd: () => {},
    read: async (bookieId) => ({ op: 'readResp', reqId: 1, bookieId, rc: RC.NO_SUCH_LEDGER, entries: [] }),
    readLac: async (bookieId) => ({ op: 'lacResp', reqId: 1, bookieId, rc: RC.OK, lac: -1, lastEntryId: -1 }),
  }
  const closed = await recoverLedger({
    bookies, clock: realClock, metadata: s, masterKey: Buffer.alloc(32), readTimeoutMs: 1000, addTimeoutMs: 1000, inspect: null,
  }, created.value.ledgerId)
  assert.ok(ledgers.staleReads >= 1, 'the lagging read was met')
  assert.is(closed.state, 'CLOSED')
  assert.is(closed.lastEntryId, -1)
  // What the leader holds (this store's next read would still be the lagging one).
  assert.is((await new MetadataStore(ledgers.inner, new MemoryKv(), new MemoryKv()).readLedger(7)).value.state, 'CLOSED')
})

test.run()
