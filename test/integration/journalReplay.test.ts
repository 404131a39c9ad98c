// Journal replay (actors/bookieStorage.ts) on real files and RocksDB, over records that an older
// version journaled unchecked (issue 11: an add with entry id 2^60, a master key that is a number,
// digest type 42, an explicit LAC of 1e300, bytes that are no record at all): replay skips each,
// counts it, tells why, applies every valid record around them, and the bookie storage opens.

import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieStorage } from '../../actors/bookieStorage.ts'
import { BINARY_ADD_TAG, decodeRecord, encodeRecord, encodeRecordParts, type JournalRecord } from '../../actors/journalRecords.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { PADDING_FLAG, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from '../../storage/journalFormat.ts'

const key = masterKeyOf('pw')
/** A format 2 journal segment 0 as the encoder before format 3 wrote it. */
const fixture = path.join(import.meta.dirname, '..', 'fixtures', 'journal-format2-segment.bin')
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
    await rawAppend(Buffer.from([0x92, 0x01, 0x02])) // an array, no map
    // A binary add (format 3) cut short: its head lists an entry its bytes do not hold.
    const binary = encodeRecord({ t: 'add', l: 7, e: [entry(7, 3)] })
    await rawAppend(binary.subarray(0, binary.length - 1))
    await s.append({ t: 'add', l: 7, e: [entry(7, 2)] })
    await crash(s)

    s = await BookieStorage.open(dir)
    const skipped: string[] = []
    const applied = await s.replayAndOpen({}, (reason) => skipped.push(reason))
    assert.is(s.skippedRecords, 7)
    assert.is(applied, 5)
    assert.equal(skipped.length, 7)
    assert.match(skipped.join('\n'), /entry id .* out of range/)
    assert.match(skipped.join('\n'), /no valid master key/)
    assert.match(skipped.join('\n'), /digest type 42/)
    assert.match(skipped.join('\n'), /LAC 1e\+300/)
    assert.match(skipped.join('\n'), /undecodable record of 2 bytes/)
    assert.match(skipped.join('\n'), new RegExp(`undecodable record of ${binary.length - 1} bytes`))
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

test('an add is a binary record of the entries as received; other records stay msgpack; both decode', () => {
  const entries = [entry(3, 0), entry(3, 1)]
  const parts = encodeRecordParts({ t: 'add', l: 3, e: entries })
  assert.is(parts.length, 3)
  assert.ok(parts[1] === entries[0] && parts[2] === entries[1], 'the entries themselves, not copies')
  const head = Buffer.from(parts[0]!)
  assert.is(head.length, 16 + 12 * 2)
  assert.equal([head[0], head.readUInt32BE(4), head.readUInt32BE(12)], [BINARY_ADD_TAG, 2, 3])
  assert.equal([head.readUInt32BE(20), head.readUInt32BE(24), head.readUInt32BE(32), head.readUInt32BE(36)], [0, entries[0]!.length, 1, entries[1]!.length])
  const decoded = decodeRecord(Buffer.concat(parts))
  assert.equal(decoded, { t: 'add', l: 3, e: entries })
  // An id past 2^32 round-trips; the listed id must be the entry's own.
  const far = entry(2 ** 40 + 5, 2 ** 33 + 1)
  assert.equal(decodeRecord(encodeRecord({ t: 'add', l: 2 ** 40 + 5, e: [far] })), { t: 'add', l: 2 ** 40 + 5, e: [far] })
  const wrongId = encodeRecord({ t: 'add', l: 3, e: [entry(3, 4)] })
  wrongId.writeUInt32BE(5, 20)
  assert.throws(() => decodeRecord(wrongId), /lists entry 5, its entry's header says 4/)
  assert.throws(() => decodeRecord(Buffer.concat([encodeRecord({ t: 'add', l: 3, e: [entry(3, 4)] }), Buffer.from([0])])), /1 bytes after its entries/)
  for (const r of [{ t: 'fence', l: 3 }, { t: 'lac', l: 3, lac: 2 }, { t: 'key', l: 3, k: key, d: 'crc32c' }] as JournalRecord[]) {
    const p = encodeRecordParts(r)
    assert.is(p.length, 1)
    assert.ok(p[0]![0] !== BINARY_ADD_TAG)
    assert.equal(decodeRecord(p[0]!), { ...r, ...(r.t === 'key' ? { k: key } : {}) })
  }
})

test('a bookie upgraded in place replays the format 2 journal the previous encoder wrote, then journals format 4', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-replay-'))
  try {
    // The journal of a bookie killed while running the previous version (no checkpoint): ledger 5
    // with a master key, entries 0-2 and explicit LAC 1; ledger 6 with entry 0, fenced.
    await mkdir(path.join(dir, 'journal'))
    await copyFile(fixture, path.join(dir, 'journal', 'journal-000000000000.log'))
    const oldEntry = (l: number, e: number): Buffer => encodeEntry('crc32c', key, l, e, e - 1, 0, Buffer.from(`format 2 L${l}E${e}`))
    let s = await BookieStorage.open(dir)
    assert.is(await s.replayAndOpen(), 7)
    assert.is(s.skippedRecords, 0)
    const expectOld = async (lac: number): Promise<void> => {
      const got = [...(await s.getEntries(5, [0, 1, 2])), ...(await s.getEntries(6, [0]))]
      const want = [oldEntry(5, 0), oldEntry(5, 1), oldEntry(5, 2), oldEntry(6, 0)]
      got.forEach((g, i) => assert.ok(g && Buffer.from(g).equals(want[i]!), `entry ${i}`))
      const five = await s.store.getLedgerState(5)
      assert.equal([five?.digestType, five?.fenced, five?.explicitLac], ['crc32c', false, lac])
      assert.ok(five?.masterKey && Buffer.from(five.masterKey).equals(key))
      assert.equal((await s.store.getLedgerState(6))?.fenced, true)
    }
    await expectOld(1)
    // New records go to a format 4 segment, adds as binary records; killed again, it replays both.
    await s.append({ t: 'add', l: 5, e: [entry(5, 3), entry(5, 4)] })
    await s.append({ t: 'lac', l: 5, lac: 3 })
    await crash(s)
    const segments = (await readdir(path.join(dir, 'journal'))).sort()
    assert.equal(segments, ['journal-000000000001.log'], 'the checkpoint after replay dropped the format 2 segment')
    const segment = await readFile(path.join(dir, 'journal', segments[0]!))
    assert.is(segment.readUInt32BE(4), 4)
    // The header's block is filled by a padding record; the first record starts at the next block.
    const padding = segment.readUInt32BE(SEGMENT_HEADER_BYTES)
    assert.ok((padding & PADDING_FLAG) !== 0, 'a padding record follows the segment header')
    const first = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + ((padding & ~PADDING_FLAG) >>> 0)
    assert.is(first, 4096)
    assert.is(segment[first + RECORD_HEADER_BYTES], BINARY_ADD_TAG, 'the first record is a binary add')
    s = await BookieStorage.open(dir)
    assert.is(await s.replayAndOpen(), 2)
    await expectOld(3)
    const got = await s.getEntries(5, [3, 4])
    got.forEach((g, i) => assert.ok(g && Buffer.from(g).equals(entry(5, 3 + i)), `entry ${3 + i}`))
    await s.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
