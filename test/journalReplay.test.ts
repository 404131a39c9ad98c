// Journal replay (actors/bookieStorage.ts) on real files and RocksDB, over records that an older
// version journaled unchecked (issue 11: an add with entry id 2^60, a master key that is a number,
// digest type 42, an explicit LAC of 1e300, bytes that are no record at all): replay skips each,
// counts it, tells why, applies every valid record around them, and the bookie storage opens.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieStorage } from '../actors/bookieStorage.ts'
import type { JournalRecord } from '../actors/journalRecords.ts'
import { encodeEntry, masterKeyOf } from '../transport/entry.ts'

const key = masterKeyOf('pw')
const entry = (l: number, e: number): Buffer => encodeEntry('crc32c', key, l, e, e - 1, 0, Buffer.from(`L${l}E${e}`))

/** Stop as a kill -9 would: no checkpoint, no close of the journal. */
async function crash(s: BookieStorage): Promise<void> {
  await s.store.close()
  await (s as unknown as { journal: { fh: { close(): Promise<void> } } }).journal.fh.close()
}

test('replay skips records that fail validation, applies the others, and the storage opens', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-replay-'))
  try {
    let s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    const huge = entry(9, 0)
    huge.writeUInt32BE(2 ** 28, 8) // entry id 2^60
    // What an older bookie journaled as it came: records of the bad frames between good ones.
    const records: unknown[] = [
      { t: 'key', l: 7, k: key, d: 'crc32c' },
      { t: 'add', l: 7, e: [entry(7, 0), entry(7, 1)] },
      { t: 'add', l: 9, e: [huge] },
      { t: 'key', l: 10, k: 42, d: 'crc32c' },
      { t: 'key', l: 11, k: key, d: 42 },
      { t: 'lac', l: 7, lac: 1e300 },
      { t: 'lac', l: 7, lac: 1 },
      { t: 'fence', l: 7 },
    ]
    for (const r of records) await s.append(r as JournalRecord)
    const rawAppend = (b: Uint8Array): Promise<unknown> => (s as unknown as { journal: { append(b: Uint8Array): Promise<unknown> } }).journal.append(b)
    await rawAppend(Buffer.from([0x92, 0x01])) // an array of two with one item: msgpack cut short
    await rawAppend(Buffer.from([0xc1])) // msgpack's unused byte: decodes to no map
    await s.append({ t: 'add', l: 7, e: [entry(7, 2)] })
    await crash(s)

    s = await BookieStorage.open(dir)
    const skipped: string[] = []
    const applied = await s.replayAndOpen({}, (reason) => skipped.push(reason))
    assert.is(s.skippedRecords, 6)
    assert.is(applied, 5)
    assert.equal(skipped.length, 6)
    assert.match(skipped.join('\n'), /entry id .* out of range/)
    assert.match(skipped.join('\n'), /no valid master key/)
    assert.match(skipped.join('\n'), /digest type 42/)
    assert.match(skipped.join('\n'), /LAC 1e\+300/)
    assert.match(skipped.join('\n'), /undecodable record of 2 bytes/)
    assert.match(skipped.join('\n'), /record without a type/)
    const got = await s.getEntries(7, [0, 1, 2])
    got.forEach((g, i) => assert.ok(g && Buffer.from(g).equals(entry(7, i)), `entry ${i}`))
    const state = await s.store.getLedgerState(7)
    assert.ok(state?.masterKey && Buffer.from(state.masterKey).equals(key))
    assert.equal([state?.digestType, state?.fenced, state?.explicitLac], ['crc32c', true, 1])
    assert.is(await s.store.getLedgerState(10), null, 'nothing of the skipped records was applied')
    assert.is(await s.store.getLedgerState(11), null)
    assert.is((await s.getEntries(9, [0]))[0], null)
    await s.close()

    // The replay checkpointed past them: the next start sees none of them again.
    s = await BookieStorage.open(dir)
    await s.replayAndOpen()
    assert.is(s.skippedRecords, 0)
    await s.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
