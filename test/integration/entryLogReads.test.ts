// How the entry store reads a batch of entries from its entry logs (storage/entryStore.ts,
// storage/entryLog.ts), on real files and RocksDB: every record comes back intact, each 64 KiB
// read-ahead region is read from the file once, and those file reads run side by side. A tailing
// reader a little behind its writer asks a bookie for a few hundred entries at a time that are
// no longer in its write cache; read one region after another, each wait is an event-loop turn,
// and on a bookie busy with adds those turns added tens of milliseconds to every such read.
// Counted (file reads, the most at once), never timed.

import { open, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { openEntryStore } from '../../storage/entryStore.ts'
import { RECORD_HEADER_BYTES } from '../../storage/entryLog.ts'
import { testEntry, withDir } from '../support/entryLogData.ts'

const READ_AHEAD_BYTES = 64 * 1024

/** Counts FileHandle reads (all of them, in this process) while `fn` runs: calls and the most in flight at once. */
async function countingReads<T>(fn: () => Promise<T>): Promise<{ result: T; reads: number; mostAtOnce: number }> {
  const probe: FileHandle = await open(new URL(import.meta.url).pathname, 'r')
  const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> }
  await probe.close()
  const original = proto.read
  let reads = 0
  let inFlight = 0
  let mostAtOnce = 0
  proto.read = function (this: FileHandle, ...args: unknown[]) {
    reads++
    mostAtOnce = Math.max(mostAtOnce, ++inFlight)
    return original.apply(this, args).finally(() => { inFlight-- })
  }
  try {
    const result = await fn()
    return { result, reads, mostAtOnce }
  } finally {
    proto.read = original
  }
}

test('a batch read from the entry logs reads each read-ahead region once, the regions side by side', () =>
  withDir('quire-entrylog-reads-', async (dir) => {
    const at = path.join(dir, 'entries')
    // Two ledgers interleaved in one log, as a bookie holding two of every three entries writes them.
    const entries = Array.from({ length: 600 }, (_, i) => ({ ledgerId: 1 + (i % 2), entryId: Math.floor(i / 2), data: testEntry(1 + (i % 2), Math.floor(i / 2)) }))
    let store = await openEntryStore(at)
    await store.putEntries(entries)
    await store.close()
    // Reopened: nothing in the read-ahead cache.
    store = await openEntryStore(at)
    try {
      const wanted = entries.filter((e) => e.ledgerId === 1)
      const { result, reads, mostAtOnce } = await countingReads(() => store.readEntries(wanted.map(({ ledgerId, entryId }) => ({ ledgerId, entryId }))))
      assert.is(result.length, wanted.length)
      result.forEach((got, i) => assert.ok(Buffer.isBuffer(got) && got.equals(wanted[i]!.data), `entry ${wanted[i]!.entryId} intact`))
      // The records span the whole log: a region starts at each record not covered by the one before.
      const span = entries.reduce((n, e) => n + RECORD_HEADER_BYTES + e.data.byteLength, 0)
      const largest = Math.max(...entries.map((e) => RECORD_HEADER_BYTES + e.data.byteLength))
      const regions = Math.ceil(span / (READ_AHEAD_BYTES - largest))
      assert.ok(reads >= Math.floor(span / READ_AHEAD_BYTES) && reads <= regions, `${reads} file reads for ${span} bytes in ${READ_AHEAD_BYTES}-byte regions (at most ${regions})`)
      assert.ok(mostAtOnce >= 2, `the region reads wait side by side (at most ${mostAtOnce} at once)`)
    } finally {
      await store.close()
    }
  }))

test.run()
