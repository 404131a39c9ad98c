// Entry log compaction of a log with more live entries than a group of logs may hold in memory
// at once (storage/entryLogCompaction.ts, LIVE_ENTRIES_PER_SCAN): a 256 MiB log of 100 B entries
// holds about 1.6 million, half of them live is 800,000. The log is streamed from one index scan
// and copied COPY_CHUNK_ENTRIES at a time, each chunk's copies synced before its index entries
// move, the old log deleted after the last; every live entry reads back, also after a reopen.
// Found by the soak benchmark: bookies compacting 10 million entries after half their ledgers
// were deleted grew from about 310 MB of RSS to 1.1-1.3 GB, holding every live entry of a log
// (and its copy) at once.

import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { COPY_CHUNK_ENTRIES, LIVE_ENTRIES_PER_SCAN } from '../../storage/entryLogCompaction.ts'
import { openEntryStore, type RocksEntryStore } from '../../storage/entryStore.ts'
import { withDir } from '../support/entryLogData.ts'

/** Entries per ledger: ledger 1's alone are over the bound once ledger 2 is deleted. */
const ENTRIES = LIVE_ENTRIES_PER_SCAN + 10_000
const BATCH = 1000

function entry(ledgerId: number, entryId: number): Buffer {
  const b = Buffer.alloc(24)
  b.writeUInt32BE(ledgerId, 0)
  b.writeUInt32BE(entryId, 4)
  b.write('compaction chunk', 8)
  return b
}

async function checkLedger1(store: RocksEntryStore): Promise<void> {
  for (let e = 0; e < ENTRIES; e += BATCH) {
    const ids = Array.from({ length: Math.min(BATCH, ENTRIES - e) }, (_, i) => e + i)
    const got = await store.readEntries(ids.map((entryId) => ({ ledgerId: 1, entryId })))
    got.forEach((g, i) => {
      if (!(g instanceof Buffer) || !g.equals(entry(1, ids[i]!))) assert.unreachable(`ledger 1 entry ${ids[i]}: ${g === null ? 'null' : g === 'damaged' ? 'damaged' : 'wrong bytes'}`)
    })
  }
  assert.equal(await store.readEntries([{ ledgerId: 2, entryId: 0 }, { ledgerId: 2, entryId: ENTRIES - 1 }]), [null, null])
}

async function withStore(dir: string, fn: (store: RocksEntryStore) => Promise<void>): Promise<void> {
  const store = await openEntryStore(path.join(dir, 'entries'))
  try {
    await fn(store)
  } finally {
    await store.close()
  }
}

test('a log with more live entries than the scan bound is compacted in chunks, holding at most a chunk, losing none', () =>
  withDir('quire-compaction-chunks-', async (dir) => {
    await withStore(dir, async (store) => {
      // Two ledgers interleaved in one log; ledger 2 deleted: the log is half live.
      for (let e = 0; e < ENTRIES; e += BATCH / 2) {
        const n = Math.min(BATCH / 2, ENTRIES - e)
        await store.putEntries(Array.from({ length: 2 * n }, (_, i) => ({ ledgerId: 1 + (i % 2), entryId: e + (i >> 1), data: entry(1 + (i % 2), e + (i >> 1)) })))
      }
      await store.flush()
      await store.deleteLedger(2)
      await store.flush()
      const r = await store.compactEntryLogs(0.8)
      assert.is(r.compacted, 1, JSON.stringify(r))
      assert.is(r.entriesMoved, ENTRIES)
      assert.ok(r.liveEntriesHeldMax > 0 && r.liveEntriesHeldMax <= COPY_CHUNK_ENTRIES, `held ${r.liveEntriesHeldMax} live entries at once (chunk ${COPY_CHUNK_ENTRIES})`)
      await checkLedger1(store)
      // The copies are one log, fully live: nothing more to compact.
      const again = await store.compactEntryLogs(0.8)
      assert.is(again.compacted + again.emptied, 0, JSON.stringify(again))
    })
    await withStore(dir, checkLedger1)
  }))

test.run()
