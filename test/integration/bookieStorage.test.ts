// A bookie's storage (actors/bookieStorage.ts) on real files and RocksDB: entries are readable
// from the moment they are synced, a checkpoint drops the journal segments it covers, and a
// reopen replays what came after it.

import { mkdtemp, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieStorage, PUT_BATCH_BYTES } from '../../actors/bookieStorage.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'

const key = masterKeyOf('')
const entry = (l: number, e: number): Buffer => encodeEntry('crc32c', key, l, e, e - 1, 0, Buffer.from(`L${l}E${e}`))
const segments = async (dir: string): Promise<string[]> => (await readdir(path.join(dir, 'journal'))).filter((f) => f.endsWith('.log'))

async function addSynced(s: BookieStorage, l: number, from: number, to: number): Promise<void> {
  const data = Array.from({ length: to - from + 1 }, (_, i) => entry(l, from + i))
  await s.append({ t: 'add', l, e: data })
  s.putEntries(data.map((d, i) => ({ ledgerId: l, entryId: from + i, data: d })))
}

test('synced entries read back at once, survive checkpoint + reopen, and the journal is trimmed', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bstore-'))
  try {
    let s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    await addSynced(s, 7, 0, 99)
    const now = await s.getEntries(7, [0, 50, 99, 100])
    assert.ok(Buffer.from(now[0]!).equals(entry(7, 0)) && Buffer.from(now[2]!).equals(entry(7, 99)))
    assert.is(now[3], null)
    assert.equal(await s.summary(7).then((x) => [x.lastEntryId, x.lac]), [99, 98])
    await s.close()

    // Reopen: replay + checkpoint; the segments before the new one are gone.
    s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    assert.is((await segments(dir)).length, 1)
    await addSynced(s, 7, 100, 149)
    await addSynced(s, 8, 0, 9)
    // Crash: no close, no checkpoint, no seal of the journal (its preallocated zeros stay).
    // Reopen replays the records after the last checkpoint.
    await s.store.close()
    await (s as unknown as { journal: { fh: { close(): Promise<void> } } }).journal.fh.close()
    s = await BookieStorage.open(dir)
    const replayed = await s.replayAndOpen()
    assert.ok(replayed >= 2, `replayed ${replayed} records`)
    const got = await s.getEntries(7, [0, 120, 149])
    assert.ok(got.every((g, i) => g !== null && Buffer.from(g).equals(entry(7, [0, 120, 149][i]!))))
    assert.ok(Buffer.from((await s.getEntries(8, [9]))[0]!).equals(entry(8, 9)))
    await s.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('summary counts entries whose RocksDB put lands while it reads the store', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bstore-'))
  try {
    const s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    // Force the interleaving: the queued RocksDB put waits until the store has answered
    // lastEntryId, and that answer is returned only after the put landed and left the cache.
    type Store = { lastEntryId(l: number): Promise<number>; putEntries(b: unknown): Promise<void> }
    const store = s.store as unknown as Store
    const lastEntryId = store.lastEntryId.bind(store)
    const putEntries = store.putEntries.bind(store)
    let open = (): void => {}
    const gate = new Promise<void>((r) => { open = r })
    store.putEntries = async (b) => {
      await gate
      return putEntries(b)
    }
    store.lastEntryId = async (l) => {
      const before = await lastEntryId(l)
      open()
      await (s as unknown as { writes: Promise<void> }).writes
      return before
    }
    await addSynced(s, 7, 0, 9)
    assert.equal(await s.summary(7).then((x) => [x.lastEntryId, x.lac]), [9, 8])
    await s.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r))

test('adds synced one at a time go to the entry store together, not one write per add', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bstore-'))
  try {
    const s = await BookieStorage.open(dir)
    // No timer flush in this test: only the byte bound and the checkpoint send batches.
    await s.replayAndOpen({ putDelayMs: 60_000 })
    // One add in flight: each add's sync and put in a turn of its own. Each used to be its own
    // entry-log write and RocksDB batch (ten batches here).
    for (let e = 0; e < 10; e++) {
      await addSynced(s, 3, e, e)
      await nextTurn()
    }
    assert.equal(s.putStats, { batches: 0, entries: 0 })
    // Readable from the write cache meanwhile.
    assert.equal((await s.getEntries(3, [0, 9])).map((d) => d !== null && d !== 'damaged'), [true, true])
    await s.checkpoint()
    assert.equal(s.putStats, { batches: 1, entries: 10 })
    // Past PUT_BATCH_BYTES the entries waiting go at the end of the turn, whatever the delay.
    const big = (e: number): Buffer => encodeEntry('crc32c', key, 4, e, e - 1, 0, Buffer.alloc(PUT_BATCH_BYTES / 2 + 1, e))
    const data = [big(0), big(1)]
    await s.append({ t: 'add', l: 4, e: data })
    s.putEntries(data.map((d, i) => ({ ledgerId: 4, entryId: i, data: d })))
    await nextTurn()
    assert.equal(s.putStats, { batches: 2, entries: 12 })
    await s.close()
    // All of them in the entry store after a reopen (the journal was checkpointed past them).
    const again = await BookieStorage.open(dir)
    await again.replayAndOpen()
    assert.equal((await again.getEntries(3, [0, 5, 9])).map((d) => d instanceof Uint8Array), [true, true, true])
    assert.equal((await again.getEntries(4, [0, 1])).map((d) => d instanceof Uint8Array && d.byteLength > PUT_BATCH_BYTES / 2), [true, true])
    await again.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()

test('an explicit LAC journaled but not yet checkpointed survives a crash (replay), and one checkpointed survives without its record', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bstore-'))
  const crash = async (s: BookieStorage): Promise<void> => {
    await s.store.close()
    await (s as unknown as { journal: { fh: { close(): Promise<void> } } }).journal.fh.close()
  }
  try {
    let s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    await addSynced(s, 7, 0, 4)
    await s.checkpoint()
    // An idle writer's LAC: journaled and synced, its state left for the next checkpoint.
    await s.append({ t: 'lac', l: 7, lac: 4 })
    s.putLedgerStateAtCheckpoint(7, { masterKey: key, digestType: 'crc32c', fenced: false, explicitLac: 4 })
    assert.is((await s.summary(7)).lac, 4, 'read back before the checkpoint')
    assert.is((await s.store.getLedgerState(7))?.explicitLac ?? -1, -1, 'not in RocksDB yet')
    await crash(s)
    s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    assert.is((await s.summary(7)).lac, 4, 'restored by the journal replay after a crash')
    // Checkpointed, then the journal record trimmed: RocksDB holds it.
    await s.append({ t: 'lac', l: 7, lac: 4 })
    s.putLedgerStateAtCheckpoint(7, { masterKey: key, digestType: 'crc32c', fenced: false, explicitLac: 4 })
    await s.checkpoint()
    assert.is((await s.store.getLedgerState(7))?.explicitLac, 4, 'written by the checkpoint')
    await crash(s)
    s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    assert.is((await s.summary(7)).lac, 4, 'after the checkpoint and a crash')
    await s.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
