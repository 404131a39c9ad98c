// Entry log compaction (storage/entryLogCompaction.ts) on real files and RocksDB: deleted ledgers'
// space comes back (logs with no live entry deleted, logs under the threshold rewritten), a
// delete or a new put during a compaction wins over its moves, and a process killed with SIGKILL
// at each step of a compaction (new log synced, index moved, old log deleted) loses no live entry;
// the next compaction finishes the job.

import { readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { openEntryStore, type RocksEntryStore } from '../../storage/entryStore.ts'
import { runChild, testEntry, withDir as withTempDir } from '../support/entryLogData.ts'

const LEDGERS = [1, 2, 3, 4]
const ENTRIES = 150
/** Ledgers 2 and 4 are deleted: every log is about half dead. */
const LIVE = [1, 3]

const withDir = (fn: (dir: string) => Promise<void>): Promise<void> => withTempDir('quire-compaction-', fn)

async function logBytes(dir: string): Promise<{ files: string[]; bytes: number }> {
  const files = (await readdir(dir)).filter((f) => f.startsWith('entrylog-')).sort()
  let bytes = 0
  for (const f of files) bytes += (await stat(path.join(dir, f))).size
  return { files, bytes }
}

/** Interleaved ledgers over several small logs; ledgers 2 and 4 deleted. */
async function populate(dir: string): Promise<void> {
  const store = await openEntryStore(path.join(dir, 'entries'), { logBytesMax: 64 * 1024 })
  for (let e = 0; e < ENTRIES; e += 10) {
    for (const l of LEDGERS) {
      await store.putEntries(Array.from({ length: 10 }, (_, i) => ({ ledgerId: l, entryId: e + i, data: testEntry(l, e + i) })))
    }
  }
  await store.flush()
  await store.deleteLedger(2)
  await store.deleteLedger(4)
  await store.flush()
  await store.close()
}

async function checkLive(store: RocksEntryStore): Promise<void> {
  for (const l of LIVE) {
    const got = await store.readEntries(Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: l, entryId: e })))
    got.forEach((g, e) => assert.ok(g instanceof Buffer && g.equals(testEntry(l, e)), `ledger ${l} entry ${e}: ${g === null ? 'null' : g === 'damaged' ? 'damaged' : 'wrong bytes'}`))
  }
  assert.equal(await store.readEntries([{ ledgerId: 2, entryId: 0 }, { ledgerId: 4, entryId: ENTRIES - 1 }]), [null, null])
}

test('minor compaction leaves half-live logs, major compaction rewrites them; live entries all read back', () =>
  withDir(async (dir) => {
    await populate(dir)
    const logs = path.join(dir, 'entries.logs')
    const before = await logBytes(logs)
    assert.ok(before.files.length >= 4, `several logs: ${before.files.length}`)
    const store = await openEntryStore(path.join(dir, 'entries'))
    try {
      const minor = await store.compactEntryLogs(0.2)
      assert.is(minor.compacted, 0, `no log is under 20% live: ${JSON.stringify(minor)}`)
      const major = await store.compactEntryLogs(0.8)
      assert.ok(major.compacted >= before.files.length - 1, JSON.stringify(major))
      assert.is(major.skipped, 0)
      const after = await logBytes(logs)
      assert.ok(after.bytes < before.bytes * 0.6, `space back: ${before.bytes} -> ${after.bytes} bytes`)
      await checkLive(store)
      // Nothing left to do: the new logs are all live.
      const again = await store.compactEntryLogs(0.8)
      assert.is(again.compacted + again.emptied, 0, JSON.stringify(again))
    } finally {
      await store.close()
    }
    const reopened = await openEntryStore(path.join(dir, 'entries'))
    try {
      await checkLive(reopened)
    } finally {
      await reopened.close()
    }
  }))

test('a ledger deleted and an entry put again while a compaction copies win over its moves', () =>
  withDir(async (dir) => {
    await populate(dir)
    const store = await openEntryStore(path.join(dir, 'entries'))
    try {
      let once = false
      const r = await store.compactEntryLogs(0.8, async (step) => {
        if (step !== 'copied' || once) return
        once = true
        // Between the copy and the index move of the first log: ledger 3 goes, ledger 1's entry 0
        // gets a new copy elsewhere. Neither may be undone by the move.
        await store.deleteLedger(3)
        await store.putEntries([{ ledgerId: 1, entryId: 0, data: testEntry(1, 0) }])
      })
      assert.ok(r.compacted > 0)
      const got = await store.readEntries(Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: 3, entryId: e })))
      assert.ok(got.every((g) => g === null), 'the deleted ledger stays deleted')
      const l1 = await store.readEntries(Array.from({ length: ENTRIES }, (_, e) => ({ ledgerId: 1, entryId: e })))
      l1.forEach((g, e) => assert.ok(g instanceof Buffer && g.equals(testEntry(1, e)), `ledger 1 entry ${e}`))
    } finally {
      await store.close()
    }
  }))

for (const step of ['copied', 'indexed', 'deleted'] as const) {
  for (const nth of [1, 2]) {
    test(`SIGKILL during a compaction (${step} #${nth}) loses no live entry; the next compaction finishes`, () =>
      withDir(async (dir) => {
        await populate(dir)
        const logs = path.join(dir, 'entries.logs')
        const before = await logBytes(logs)
        const r = await runChild({ mode: 'compact', dir, threshold: 0.8, step, nth })
        assert.is(r.signal, 'SIGKILL', `killed at ${step} #${nth}`)
        const store = await openEntryStore(path.join(dir, 'entries'))
        try {
          await checkLive(store)
          const rest = await store.compactEntryLogs(0.8)
          assert.is(rest.skipped, 0)
          await checkLive(store)
          const after = await logBytes(logs)
          assert.ok(after.bytes < before.bytes * 0.6, `space back: ${before.bytes} -> ${after.bytes} bytes`)
        } finally {
          await store.close()
        }
      }))
  }
}

test.run()
