// The EntryStore contract, run against RocksEntryStore (real RocksDB in a temp dir) and against
// MemoryEntryStore, so the double the simulator runs on behaves like the store the product
// runs on. Then the cases only one of them has: persistence and open errors (RocksDB), the
// bit-rot hook (memory). Every store a case opens is closed and every temp dir removed, pass or fail.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openEntryStore } from '../../storage/entryStore.ts'
import { MemoryEntryStore } from '../../storage/memoryEntryStore.ts'
import type { EntryStore, StoredEntry } from '../../storage/types.ts'

const MAX_ID = Number.MAX_SAFE_INTEGER // 2^53 - 1

type Store = EntryStore & {
  getMeta(key: string): Promise<Buffer | null>
  putMeta(key: string, value: Uint8Array): Promise<void>
}

/** Opens a fresh, empty store; the harness closes it and cleans up after the case. */
type Factory = { name: string; withStore(body: (store: Store) => Promise<void>): Promise<void> }

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'quire-entrystore-'))
  try {
    await body(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const rocks: Factory = {
  name: 'rocks',
  withStore: (body) =>
    withTempDir(async (dir) => {
      const store = await openEntryStore(join(dir, 'entries'))
      try {
        await body(store)
      } finally {
        await store.close()
      }
    }),
}

const memory: Factory = {
  name: 'memory',
  async withStore(body) {
    const store = new MemoryEntryStore()
    try {
      await body(store)
    } finally {
      await store.close()
    }
  },
}

/** Deterministic bytes that differ per (ledger, entry), sizes 0..~2 KiB, so mix-ups show. */
function payload(ledgerId: number, entryId: number): Buffer {
  const size = (ledgerId * 7 + entryId * 13) % 2049
  const data = Buffer.alloc(size)
  for (let i = 0; i < size; i++) data[i] = (ledgerId * 31 + entryId * 17 + i * 3) & 0xff
  return data
}

function entry(ledgerId: number, entryId: number): StoredEntry {
  return { ledgerId, entryId, data: payload(ledgerId, entryId) }
}

async function collect(it: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = []
  for await (const id of it) out.push(id)
  return out
}

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p
  } catch (err) {
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable('expected a rejection')
}

function contract(f: Factory): void {
  const t = (name: string, body: (store: Store) => Promise<void>) => test(`${f.name}: ${name}`, () => f.withStore(body))

  t('put/get many entries across ledgers, byte for byte; missing ones are null', async (store) => {
    const entries: StoredEntry[] = []
    for (const ledgerId of [1, 2, 3]) for (let e = 0; e < 3000; e++) entries.push(entry(ledgerId, e))
    await store.putEntries(entries)
    await store.putEntries([]) // nothing to do, and no error
    const refs = entries.map(({ ledgerId, entryId }) => ({ ledgerId, entryId }))
    const got = await store.getEntries(refs)
    assert.is(got.length, entries.length)
    got.forEach((data, i) => assert.ok(data !== null && data.equals(entries[i]!.data), `entry ${i}`))
    assert.equal(await store.getEntries([]), [])
    const mixed = await store.getEntries([
      { ledgerId: 1, entryId: 3000 }, { ledgerId: 2, entryId: 5 }, { ledgerId: 4, entryId: 0 },
      { ledgerId: 2, entryId: 5 }, { ledgerId: 0, entryId: 0 },
    ])
    assert.equal(mixed.map((d) => (d === null ? null : d.toString('hex'))),
      [null, payload(2, 5).toString('hex'), null, payload(2, 5).toString('hex'), null])
  })

  t('returned values are copies that stay valid; stored bytes are not the caller\'s', async (store) => {
    const data = Buffer.from('original bytes')
    await store.putEntries([{ ledgerId: 5, entryId: 0, data }])
    data.fill(0) // the caller reuses its buffer
    const [first] = await store.getEntries([{ ledgerId: 5, entryId: 0 }])
    assert.is(first?.toString(), 'original bytes')
    first!.fill(0x41) // the caller scribbles on what it got
    await store.putEntries([{ ledgerId: 5, entryId: 1, data: Buffer.from('more') }])
    await store.deleteLedger(6)
    await store.flush()
    const [again] = await store.getEntries([{ ledgerId: 5, entryId: 0 }])
    assert.is(again?.toString(), 'original bytes')
    await store.putEntries([{ ledgerId: 5, entryId: 0, data: Buffer.from('overwritten') }])
    assert.is(again?.toString(), 'original bytes')
    const [sub] = await store.getEntries([{ ledgerId: 5, entryId: 0 }])
    assert.is(sub?.toString(), 'overwritten')
    // A view into a larger buffer stores only the view's bytes.
    await store.putEntries([{ ledgerId: 5, entryId: 2, data: Buffer.from('xxmiddleyy').subarray(2, 8) }])
    assert.is((await store.getEntries([{ ledgerId: 5, entryId: 2 }]))[0]?.toString(), 'middle')
  })

  t('lastEntryId: -1 when none, and never crosses a ledger boundary', async (store) => {
    assert.is(await store.lastEntryId(0), -1)
    await store.putEntries([entry(1, 0), entry(1, 7), entry(1, 3), entry(2, 0), entry(4, 2 ** 32)])
    assert.is(await store.lastEntryId(0), -1)
    assert.is(await store.lastEntryId(1), 7) // not ledger 2's entry 0
    assert.is(await store.lastEntryId(2), 0)
    assert.is(await store.lastEntryId(3), -1) // between two ledgers
    assert.is(await store.lastEntryId(4), 2 ** 32) // high word set
    assert.is(await store.lastEntryId(5), -1)
    await store.putEntries([entry(4, 2 ** 32 - 1)])
    assert.is(await store.lastEntryId(4), 2 ** 32) // u64 order, not low-word order
  })

  t('ids near 2^53 - 1', async (store) => {
    await store.putEntries([entry(MAX_ID - 1, MAX_ID), entry(MAX_ID, 0), entry(MAX_ID, MAX_ID - 1), entry(MAX_ID, MAX_ID)])
    assert.is(await store.lastEntryId(MAX_ID - 1), MAX_ID)
    assert.is(await store.lastEntryId(MAX_ID), MAX_ID)
    const got = await store.getEntries([{ ledgerId: MAX_ID, entryId: MAX_ID }, { ledgerId: MAX_ID - 1, entryId: MAX_ID }])
    assert.ok(got[0]?.equals(payload(MAX_ID, MAX_ID)))
    assert.ok(got[1]?.equals(payload(MAX_ID - 1, MAX_ID)))
    await store.putLedgerState(MAX_ID, { masterKey: null, digestType: null, fenced: true, explicitLac: MAX_ID })
    assert.equal(await collect(store.listLedgers()), [MAX_ID - 1, MAX_ID])
    await store.deleteLedger(MAX_ID)
    assert.is(await store.lastEntryId(MAX_ID), -1)
    assert.is(await store.lastEntryId(MAX_ID - 1), MAX_ID)
  })

  t('ids outside [0, 2^53) are programmer errors', async (store) => {
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
      await rejects(store.putEntries([{ ledgerId: 1, entryId: bad, data: Buffer.alloc(1) }]), /entryId/)
      await rejects(store.getEntries([{ ledgerId: bad, entryId: 0 }]), /ledgerId/)
      await rejects(store.lastEntryId(bad), /ledgerId/)
      await rejects(store.deleteLedger(bad), /ledgerId/)
    }
    await rejects(store.putLedgerState(1, { masterKey: null, digestType: null, fenced: false, explicitLac: -2 }), /explicitLac/)
    // A rejected batch stored nothing, not even its valid members.
    await rejects(store.putEntries([entry(9, 0), { ledgerId: 9, entryId: -1, data: Buffer.alloc(1) }]), /entryId/)
    assert.is(await store.lastEntryId(9), -1)
  })

  t('ledger state round trip', async (store) => {
    assert.is(await store.getLedgerState(1), null)
    const masterKey = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 255) & 0xff)
    await store.putLedgerState(1, { masterKey, digestType: null, fenced: false, explicitLac: -1 })
    await store.putLedgerState(2, { masterKey: null, digestType: null, fenced: true, explicitLac: 2 ** 40 + 3 })
    assert.equal(await store.getLedgerState(1), { masterKey: Uint8Array.from(masterKey), digestType: null, fenced: false, explicitLac: -1 })
    assert.equal(await store.getLedgerState(2), { masterKey: null, digestType: null, fenced: true, explicitLac: 2 ** 40 + 3 })
    masterKey.fill(0) // the store kept its own copy
    const state = await store.getLedgerState(1)
    assert.is(state?.masterKey?.[0], 255)
    await store.putLedgerState(1, { masterKey: new Uint8Array([1, 2, 3]), digestType: null, fenced: true, explicitLac: 10 })
    assert.equal(await store.getLedgerState(1), { masterKey: new Uint8Array([1, 2, 3]), digestType: null, fenced: true, explicitLac: 10 })
    assert.is(await store.getLedgerState(3), null)
  })

  t('listLedgers: ascending and distinct over state and entries', async (store) => {
    assert.equal(await collect(store.listLedgers()), [])
    await store.putEntries([entry(2 ** 32, 0), entry(7, 0), entry(7, 1), entry(7, 2), entry(0, 5), entry(300, 1)])
    await store.putLedgerState(7, { masterKey: null, digestType: null, fenced: false, explicitLac: -1 }) // both
    await store.putLedgerState(1, { masterKey: null, digestType: null, fenced: true, explicitLac: -1 }) // state only
    await store.putLedgerState(256, { masterKey: null, digestType: null, fenced: false, explicitLac: -1 }) // byte carry
    assert.equal(await collect(store.listLedgers()), [0, 1, 7, 256, 300, 2 ** 32])
    // Stopping early is allowed and leaves nothing open (close() would hang otherwise).
    for await (const id of store.listLedgers()) {
      assert.is(id, 0)
      break
    }
  })

  t('deleteLedger removes only that ledger', async (store) => {
    const masterKey = new Uint8Array([9, 9])
    for (const l of [1, 2, 3]) {
      await store.putEntries([entry(l, 0), entry(l, 1), entry(l, 2)])
      await store.putLedgerState(l, { masterKey, digestType: null, fenced: false, explicitLac: 1 })
    }
    await store.deleteLedger(2)
    await store.deleteLedger(99) // unknown: nothing to do
    assert.equal(await collect(store.listLedgers()), [1, 3])
    assert.is(await store.getLedgerState(2), null)
    assert.is(await store.lastEntryId(2), -1)
    assert.equal(await store.getEntries([{ ledgerId: 2, entryId: 0 }, { ledgerId: 2, entryId: 2 }]), [null, null])
    assert.is(await store.lastEntryId(1), 2)
    assert.is(await store.lastEntryId(3), 2)
    const kept = await store.getEntries([{ ledgerId: 1, entryId: 2 }, { ledgerId: 3, entryId: 0 }])
    assert.ok(kept[0]?.equals(payload(1, 2)) && kept[1]?.equals(payload(3, 0)))
    assert.equal(await store.getLedgerState(3), { masterKey: new Uint8Array([9, 9]), digestType: null, fenced: false, explicitLac: 1 })
    // The id can be used again, from scratch.
    await store.putEntries([entry(2, 0)])
    assert.is(await store.lastEntryId(2), 0)
    assert.is(await store.getLedgerState(2), null)
  })

  t('meta get/put', async (store) => {
    assert.is(await store.getMeta('checkpoint'), null)
    await store.putMeta('checkpoint', new Uint8Array([1, 2, 3]))
    await store.putMeta('other', Buffer.from('x'))
    assert.equal([...(await store.getMeta('checkpoint'))!], [1, 2, 3])
    await store.putMeta('checkpoint', new Uint8Array([4]))
    assert.equal([...(await store.getMeta('checkpoint'))!], [4])
    assert.is((await store.getMeta('other'))?.toString(), 'x')
    // Meta keys are not ledgers.
    assert.equal(await collect(store.listLedgers()), [])
  })

  t('after close every call rejects', async (store) => {
    await store.close()
    await store.close() // idempotent
    await rejects(store.getEntries([{ ledgerId: 1, entryId: 0 }]), /closed/)
    await rejects(store.putEntries([entry(1, 0)]), /closed/)
  })
}

contract(rocks)
contract(memory)

test('rocks: data survive flush, close and reopen', () =>
  withTempDir(async (dir) => {
    const path = join(dir, 'entries')
    const masterKey = new Uint8Array([0, 255, 128, 7])
    const first = await openEntryStore(path)
    try {
      await first.putEntries([entry(1, 0), entry(1, 1), entry(3, 9)])
      await first.putLedgerState(1, { masterKey, digestType: null, fenced: true, explicitLac: 0 })
      await first.putLedgerState(2, { masterKey: null, digestType: null, fenced: false, explicitLac: -1 })
      await first.putMeta('checkpoint', Buffer.from('segment 4 offset 99'))
      await first.flush()
    } finally {
      await first.close()
    }
    const second = await openEntryStore(path)
    try {
      assert.equal(await collect(second.listLedgers()), [1, 2, 3])
      const got = await second.getEntries([{ ledgerId: 1, entryId: 1 }, { ledgerId: 3, entryId: 9 }])
      assert.ok(got[0]?.equals(payload(1, 1)) && got[1]?.equals(payload(3, 9)))
      assert.is(await second.lastEntryId(3), 9)
      assert.equal(await second.getLedgerState(1), { masterKey: Uint8Array.from(masterKey), digestType: null, fenced: true, explicitLac: 0 })
      assert.is((await second.getMeta('checkpoint'))?.toString(), 'segment 4 offset 99')
    } finally {
      await second.close()
    }
  }))

test('rocks: a directory in use or unusable is refused with a message naming it', () =>
  withTempDir(async (dir) => {
    const path = join(dir, 'entries')
    const store = await openEntryStore(path)
    try {
      await rejects(openEntryStore(path), new RegExp(`entry store in ${path}.*lock`))
    } finally {
      await store.close()
    }
    const file = join(dir, 'not-a-dir')
    await writeFile(file, 'x')
    await rejects(openEntryStore(join(file, 'entries')), new RegExp(`entry store in ${file}/entries`))
  }))

test('memory: corrupt flips one byte of a stored entry, silently', async () => {
  const store = new MemoryEntryStore()
  try {
    const data = Buffer.from([0x00, 0x0f, 0xf0])
    await store.putEntries([{ ledgerId: 1, entryId: 0, data }, { ledgerId: 1, entryId: 1, data: Buffer.alloc(0) }])
    const [before] = await store.getEntries([{ ledgerId: 1, entryId: 0 }])
    assert.ok(store.corrupt(1, 0)) // the middle byte
    assert.equal([...(await store.getEntries([{ ledgerId: 1, entryId: 0 }]))[0]!], [0x00, 0xf0, 0xf0])
    assert.ok(store.corrupt(1, 0, 0))
    assert.equal([...(await store.getEntries([{ ledgerId: 1, entryId: 0 }]))[0]!], [0xff, 0xf0, 0xf0])
    assert.equal([...before!], [0x00, 0x0f, 0xf0]) // what was read before is untouched
    assert.not.ok(store.corrupt(1, 1)) // empty: nothing to flip
    assert.not.ok(store.corrupt(1, 2)) // no such entry
    assert.throws(() => store.corrupt(1, 0, 3), /byteIndex/)
  } finally {
    await store.close()
  }
})

test.run()
