// The journal against real files in a temp dir: group commit, replay byte for byte, the record
// header's own checksum and the classification of damage (the torn end of the last group write
// versus CORRUPT_JOURNAL for anything a later write follows, BookKeeper #2908), segment headers
// and older formats, segment roll and trim, the failed-journal rule, the beforeSync test hook;
// and the crash / torn-tail fault model of the in-memory double.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { constants as fsConstants } from 'node:fs'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import { join } from 'node:path'
import type { FileHandle } from 'node:fs/promises'
import { crc32c } from '@node-rs/crc32'
import { isQuireError } from '../../machines/errors.ts'
import {
  RECORD_HEADER_BYTES as RH, SEGMENT_HEADER_BYTES as SH, listSegments, openJournal, replayJournal, segmentFileName,
} from '../../storage/journal.ts'
import { PADDING_FLAG, paddingBytes } from '../../storage/journalFormat.ts'
import { MemoryJournal } from '../../storage/memoryJournal.ts'
import type { JournalPosition } from '../../storage/types.ts'

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(os.tmpdir() + '/quire-journal-')
  try {
    await fn(dir)
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
}

/** Deterministic records of varied sizes, each tagged with its index. */
function makeRecords(n: number, seed = 1): Buffer[] {
  let x = seed
  return Array.from({ length: n }, (_, i) => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    const buf = Buffer.alloc(4 + (x % 700))
    buf.writeUInt32BE(i, 0)
    for (let j = 4; j < buf.length; j++) buf[j] = (x + j * 31) & 0xff
    return buf
  })
}

async function collect(
  iter: AsyncIterable<{ record: Buffer; position: JournalPosition }>,
): Promise<{ record: Buffer; position: JournalPosition }[]> {
  const out: { record: Buffer; position: JournalPosition }[] = []
  for await (const item of iter) out.push(item)
  return out
}

async function expectCorrupt(promise: Promise<unknown>, message?: RegExp): Promise<Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    assert.ok(isQuireError(err, 'CORRUPT_JOURNAL'), `expected CORRUPT_JOURNAL, got ${String(err)}`)
    if (message) assert.match(err.message, message)
    return { ...err.info }
  }
  assert.unreachable('replay should have thrown CORRUPT_JOURNAL')
  return {}
}

/**
 * Writes `records` into a fresh journal, `perGroup` at a time (each batch appended in one turn is
 * one group write; the next batch waits for it), closes it, and returns their end positions.
 */
async function writeJournal(dir: string, records: Buffer[], perGroup = records.length): Promise<JournalPosition[]> {
  const journal = await openJournal(dir)
  const positions: JournalPosition[] = []
  for (let i = 0; i < records.length; i += perGroup) {
    positions.push(...(await Promise.all(records.slice(i, i + perGroup).map((r) => journal.append(r)))))
  }
  await journal.close()
  assert.is(journal.stats.syncs, Math.ceil(records.length / perGroup), 'one group write per batch')
  return positions
}

/** Where a segment's first record starts: after its header block (the header, then padding). */
const FIRST = 4096

/** Byte offset where record i starts (all in one segment). */
const startOf = (positions: JournalPosition[], records: Buffer[], i: number): number => positions[i]!.offset - RH - records[i]!.length

/** Where the group after one ending at `end` starts: the next block boundary past its padding record. */
const nextGroupAt = (end: number): number => end + paddingBytes(Math.ceil(end / 4096) * 4096 - end)

async function patch(file: string, at: number, change: (b: Buffer) => void, n = 1): Promise<void> {
  const fh = await fs.open(file, 'r+')
  try {
    const b = Buffer.alloc(n)
    await fh.read(b, 0, n, at)
    change(b)
    await fh.write(b, 0, n, at)
  } finally {
    await fh.close()
  }
}

const flipByte = (file: string, at: number): Promise<void> => patch(file, at, (b) => { b[0] = b[0]! ^ 0x40 })

test('group commit: concurrent appends resolve with increasing positions and few syncs', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir)
    const records = makeRecords(3000)
    // Three bursts in separate ticks, so groups form both by time and by size.
    const promises: Promise<JournalPosition>[] = []
    for (let burst = 0; burst < 3; burst++) {
      for (const r of records.slice(burst * 1000, (burst + 1) * 1000)) promises.push(journal.append(r))
      await new Promise((r) => setImmediate(r))
    }
    const positions = await Promise.all(promises)
    // Each record follows the one before it, or starts the next group at the next block boundary
    // after the padding; as many group starts as group writes.
    let end = FIRST
    let groupStarts = 0
    let framed = 0
    for (const [i, p] of positions.entries()) {
      const start = p.offset - RH - records[i]!.length
      if (start !== end) {
        assert.is(start, nextGroupAt(end), `record ${i} starts its group at the block boundary`)
        groupStarts++
      }
      assert.is(p.segment, 0)
      end = p.offset
      framed += RH + records[i]!.length
    }
    assert.is(groupStarts + 1, journal.stats.syncs)
    assert.equal(journal.stats.records, 3000)
    assert.equal(journal.stats.bytes, framed)
    assert.ok(journal.stats.syncs <= 30, `${journal.stats.syncs} syncs for 3000 records`)
    assert.equal(journal.syncedPosition, { segment: 0, offset: nextGroupAt(end) })
    assert.is(journal.pendingBytes, 0)
    await journal.close()
  }))

test('replay returns every record byte for byte, in order, from any position', () =>
  withDir(async (dir) => {
    const records = makeRecords(500)
    const positions = await writeJournal(dir, records, 50)
    const all = await collect(replayJournal(dir, null))
    assert.is(all.length, records.length)
    for (const [i, item] of all.entries()) {
      assert.ok(item.record.equals(records[i] ?? Buffer.alloc(0)), `record ${i}`)
      assert.equal(item.position, positions[i])
    }
    const from = positions[199]
    assert.ok(from)
    const rest = await collect(replayJournal(dir, from))
    assert.is(rest.length, 300)
    assert.ok(rest[0]?.record.equals(records[200] ?? Buffer.alloc(0)))
  }))

test('reopen after close starts a new segment and replay spans both', () =>
  withDir(async (dir) => {
    const first = makeRecords(50, 1)
    const second = makeRecords(40, 2)
    const p1 = await writeJournal(dir, first)
    const p2 = await writeJournal(dir, second)
    assert.equal(await listSegments(dir), [0, 1])
    assert.is(p1.at(-1)?.segment, 0)
    assert.equal(p2[0], { segment: 1, offset: FIRST + RH + (second[0]?.length ?? 0) })
    const all = await collect(replayJournal(dir, null))
    assert.equal(
      all.map((x) => x.record),
      [...first, ...second],
    )
    const fromSecond = await collect(replayJournal(dir, { segment: 1, offset: 0 }))
    assert.is(fromSecond.length, 40)
  }))

test('a segment opens with its format header, synced before any record', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir)
    const file = join(dir, segmentFileName(0))
    const header = await fs.readFile(file)
    // The header, then a padding record to the end of the block: format 4 writes whole blocks.
    assert.is(header.length, FIRST)
    assert.is(header.subarray(0, 4).toString('latin1'), 'QJNL')
    assert.is(header.readUInt32BE(4), 4)
    assert.is(header.readUInt32BE(SH), (PADDING_FLAG | (FIRST - SH - RH)) >>> 0, 'a padding record fills the block')
    assert.ok(header.subarray(SH + RH).every((b) => b === 0))
    assert.equal(journal.syncedPosition, { segment: 0, offset: FIRST })
    await journal.close()
    assert.is((await collect(replayJournal(dir, null))).length, 0)
  }))

// ---------------------------------------------------------------------------------------------
// Damage: where the journal ends, and what is corruption

/** `n` records written `perGroup` per group write into one segment of `dir`. */
async function segmentOf(dir: string, n: number, perGroup: number) {
  const records = makeRecords(n)
  const positions = await writeJournal(dir, records, perGroup)
  return { records, positions, file: join(dir, segmentFileName(0)), start: (i: number) => startOf(positions, records, i) }
}

/** Replay refuses with CORRUPT_JOURNAL at `offset` of `file`, and leaves the file as it was. */
async function expectCorruptAt(dir: string, file: string, offset: number, message?: RegExp): Promise<void> {
  const size = (await fs.stat(file)).size
  assert.equal(await expectCorrupt(collect(replayJournal(dir, null)), message), { file, offset })
  assert.is((await fs.stat(file)).size, size, 'nothing truncated: corruption is for a human to look at')
}

/** Replay yields exactly `records` and cuts `file` to `size`; a second replay sees a clean file. */
async function expectEnd(dir: string, file: string, records: Buffer[], size: number | undefined): Promise<void> {
  assert.equal((await collect(replayJournal(dir, null))).map((x) => x.record), records)
  assert.is((await fs.stat(file)).size, size)
  assert.is((await collect(replayJournal(dir, null))).length, records.length)
}

test('a length field set to 2^31 in the middle of the newest segment is CORRUPT_JOURNAL, not a torn tail (BookKeeper #2908)', () =>
  withDir(async (dir) => {
    const j = await segmentOf(dir, 10, 1)
    await patch(j.file, j.start(4), (b) => b.writeUInt32BE(2 ** 31, 0), 4)
    await expectCorruptAt(dir, j.file, j.start(4), /record header fails its crc32c, and an intact record written after it/)
  }))

test('a flipped payload byte of a record that a later group follows is CORRUPT_JOURNAL, even at the end of its group', () =>
  withDir(async (dir) => {
    // Four groups of three: damage the last record of the second group. Only the group offsets
    // tell that the intact record after it belongs to a later write, not to the same torn one.
    const j = await segmentOf(dir, 12, 3)
    await flipByte(j.file, j.start(5) + RH + 2)
    await expectCorruptAt(dir, j.file, j.start(5), /record payload fails its crc32c/)
  }))

test('a zeroed stretch in the middle of the newest segment (a lost block) is CORRUPT_JOURNAL', () =>
  withDir(async (dir) => {
    const j = await segmentOf(dir, 60, 1)
    await patch(j.file, j.start(20), (b) => b.fill(0), 8192)
    await expectCorruptAt(dir, j.file, j.start(20), /zero-filled record header, and an intact record written after it/)
  }))

test('a flipped group offset or checksum byte in a middle record header is CORRUPT_JOURNAL', () =>
  withDir(async (dir) => {
    const j = await segmentOf(dir, 10, 1)
    for (const field of [4, 8, 12]) {
      await flipByte(j.file, j.start(3) + field)
      await expectCorruptAt(dir, j.file, j.start(3))
      await flipByte(j.file, j.start(3) + field)
    }
    assert.is((await collect(replayJournal(dir, null))).length, 10)
  }))

test('a torn final write (a partial record, then zeros) is the end: every earlier record replays, the file is cut', () =>
  withDir(async (dir) => {
    const j = await segmentOf(dir, 10, 2)
    await fs.truncate(j.file, j.positions[9]!.offset - 30)
    await fs.appendFile(j.file, Buffer.alloc(64 * 1024))
    await expectEnd(dir, j.file, j.records.slice(0, 9), j.start(9))
  }))

test('a truncated last record is the torn tail: ignored, and the file is truncated', () =>
  withDir(async (dir) => {
    const j = await segmentOf(dir, 10, 1)
    await fs.truncate(j.file, j.positions[9]!.offset - 3)
    await expectEnd(dir, j.file, j.records.slice(0, 9), j.start(9))
  }))

test('a damaged header or payload of the final record is the end', () =>
  withDir(async (dir) => {
    for (const at of ['length', 'payload'] as const) {
      const j = await segmentOf(join(dir, at), 10, 1)
      await flipByte(j.file, at === 'length' ? j.start(9) + 1 : j.positions[9]!.offset - 1)
      await expectEnd(join(dir, at), j.file, j.records.slice(0, 9), j.start(9))
    }
  }))

test('damage inside the last group write is the end there: a torn write may have kept any of its records', () =>
  withDir(async (dir) => {
    // Two groups of six. A power loss during the second write may persist its sectors in any
    // order: a damaged record with intact records of the same write after it is such a tear.
    const j = await segmentOf(dir, 12, 6)
    await flipByte(j.file, j.start(8) + 1)
    await expectEnd(dir, j.file, j.records.slice(0, 8), j.start(8))
  }))

test('a crash image (journal never closed, preallocated zeros after the records) replays every synced record', () =>
  withDir(async (dir) => {
    // Small groups (20 records, under 16 KiB), which the journal zero-fills ahead of.
    const records = makeRecords(200)
    const journal = await openJournal(join(dir, 'live'))
    const positions: JournalPosition[] = []
    for (let i = 0; i < records.length; i += 20) positions.push(...await Promise.all(records.slice(i, i + 20).map((r) => journal.append(r))))
    const file = segmentFileName(0)
    // Copy the file as it is on disk now, while the journal is still open: what a crash leaves.
    await fs.mkdir(join(dir, 'crash'))
    await fs.copyFile(join(dir, 'live', file), join(dir, 'crash', file))
    await journal.close()
    const used = positions[199]!.offset
    assert.ok((await fs.stat(join(dir, 'crash', file))).size > used, 'the segment is preallocated past its records')
    const all = await collect(replayJournal(join(dir, 'crash'), null))
    assert.is(all.length, 200)
    all.forEach((r, i) => assert.ok(r.record.equals(records[i]!)))
    // The last group ends with its padding record, on a block boundary.
    assert.is((await fs.stat(join(dir, 'crash', file))).size, nextGroupAt(used), 'replay cuts the zeros off')
    assert.is((await fs.stat(join(dir, 'live', file))).size, nextGroupAt(used), 'close cuts the zeros off')
  }))

test('zero-fills write from one shared buffer: no new buffer per fill, and the space ahead of the records reads as zeros', () =>
  withDir(async (dir) => {
    // Groups of 4 records of 8 KiB (small groups), 12 MiB: several zero-fills of the 4 MiB
    // ahead. Each fill used to allocate its zeros afresh (a 4 MiB Buffer.alloc).
    const record = Buffer.alloc(8 * 1024, 0xab)
    const alloc = Buffer.alloc
    let large = 0
    Buffer.alloc = ((size: number, fill?: string | Uint8Array | number, encoding?: BufferEncoding) => {
      if (size >= 1024 * 1024) large++
      return alloc(size, fill, encoding)
    }) as typeof Buffer.alloc
    let journal: Awaited<ReturnType<typeof openJournal>>
    let last: JournalPosition
    try {
      journal = await openJournal(dir)
      for (let i = 0; i < 1536; i += 4) {
        last = (await Promise.all([0, 1, 2, 3].map(() => journal.append(record)))).at(-1)!
      }
    } finally {
      Buffer.alloc = alloc
    }
    assert.is(large, 0, 'no buffer of a MiB or more allocated for zero-fills')
    const bytes = await fs.readFile(join(dir, segmentFileName(0)))
    assert.ok(bytes.length > last!.offset, 'preallocated past the last record')
    assert.ok(bytes.subarray(nextGroupAt(last!.offset)).every((b) => b === 0), 'the space ahead holds zeros')
    await journal!.close()
    const all = await collect(replayJournal(dir, null))
    assert.is(all.length, 1536)
    assert.ok(all.every((r) => r.record.equals(record)))
  }))

test('large groups grow the file instead of zero-filling ahead; a crash image replays, and small groups after them are zero-filled ahead again', () =>
  withDir(async (dir) => {
    // Groups of four 128 KiB records: 512 KiB, each past the end of the file. Zero-filling ahead
    // of them wrote every byte twice (the zeros, then the records over them).
    const records = makeRecords(48).map((r, i) => Buffer.concat([r, Buffer.alloc(128 * 1024 - r.length, i)]))
    const journal = await openJournal(join(dir, 'live'))
    const file = segmentFileName(0)
    const positions: JournalPosition[] = []
    for (let i = 0; i < 40; i += 4) {
      positions.push(...await Promise.all(records.slice(i, i + 4).map((r) => journal.append(r))))
      assert.is((await fs.stat(join(dir, 'live', file))).size, nextGroupAt(positions.at(-1)!.offset), 'the file ends at the last group: nothing zero-filled ahead')
    }
    // What a crash leaves now: replay gives every record and the file stays as it is.
    await fs.mkdir(join(dir, 'crash'))
    await fs.copyFile(join(dir, 'live', file), join(dir, 'crash', file))
    assert.equal((await collect(replayJournal(join(dir, 'crash'), null))).map((x) => x.record), records.slice(0, 40))
    // Small groups after them: the first ones grow the file too (among large groups, a small one
    // does not wait for a fill); once small groups are the norm the journal zero-fills ahead
    // again, and a large group after that overwrites the zeros. All of it replays.
    const small = makeRecords(12, 5)
    positions.push(await journal.append(small[0]!))
    assert.is((await fs.stat(join(dir, 'live', file))).size, nextGroupAt(positions.at(-1)!.offset), 'no zero-fill for one small group among large ones')
    for (const r of small.slice(1)) positions.push(await journal.append(r))
    assert.ok((await fs.stat(join(dir, 'live', file))).size > positions.at(-1)!.offset + records[40]!.length + RH, 'zero-filled ahead of small groups')
    await journal.append(records[40]!)
    await Promise.all(records.slice(41).map((r) => journal.append(r)))
    await journal.close()
    const all = await collect(replayJournal(join(dir, 'live'), null))
    assert.equal(all.map((x) => x.record), [...records.slice(0, 40), ...small, ...records.slice(40)])
  }))
test('a zero-filled tail (file extended, data never written) is the torn tail', () =>
  withDir(async (dir) => {
    const positions = await writeJournal(dir, makeRecords(5))
    const file = join(dir, segmentFileName(0))
    await fs.appendFile(file, Buffer.alloc(4096))
    assert.is((await collect(replayJournal(dir, null))).length, 5)
    assert.is((await fs.stat(file)).size, nextGroupAt(positions[4]!.offset))
  }))

test('a bad record at the end of an older segment is corruption, unless only empty segments follow', () =>
  withDir(async (dir) => {
    const records = makeRecords(5)
    const positions = await writeJournal(dir, records, 1)
    const file = join(dir, segmentFileName(0))
    await fs.truncate(file, (positions[4]?.offset ?? 0) - 3)
    // An open that crashed before its first write leaves a newer segment with no record: its
    // header only, or not even that. Still the tail.
    await (await openJournal(dir)).close()
    await fs.writeFile(join(dir, segmentFileName(2)), Buffer.from('QJN'))
    assert.is((await collect(replayJournal(dir, null))).length, 4)
    await fs.truncate(file, (positions[3]?.offset ?? 0) - 3)
    await writeJournal(dir, makeRecords(2))
    const details = await expectCorrupt(collect(replayJournal(dir, null)), /segment 3 after it holds records/)
    assert.equal(details, { file, offset: startOf(positions, records, 3) })
  }))

test('damage in the middle of an older segment is CORRUPT_JOURNAL', () =>
  withDir(async (dir) => {
    const records = makeRecords(20)
    const positions = await writeJournal(dir, records)
    await writeJournal(dir, makeRecords(3, 2))
    const file = join(dir, segmentFileName(0))
    await flipByte(file, startOf(positions, records, 10) + RH + 1)
    assert.equal(await expectCorrupt(collect(replayJournal(dir, null))), { file, offset: startOf(positions, records, 10) })
  }))

test('a segment of an older journal format is refused, unless replay has nothing to read in it', () =>
  withDir(async (dir) => {
    // Format 1: no segment header, records framed [u32 length][u32 crc32c(payload)][payload].
    const payload = Buffer.from('an add of format 1')
    const frame = Buffer.alloc(8 + payload.length)
    frame.writeUInt32BE(payload.length, 0)
    frame.writeUInt32BE(crc32c(payload), 4)
    payload.copy(frame, 8)
    const file = join(dir, segmentFileName(0))
    await fs.writeFile(file, Buffer.concat([frame, frame]))
    const details = await expectCorrupt(collect(replayJournal(dir, { segment: 0, offset: frame.length })), /no journal format 2, 3 or 4 segment header: written by a Quire older than journal format 2/)
    assert.equal(details, { file, offset: 0 })
    // A bookie stopped cleanly checkpointed to the end of its last segment: it starts, and its
    // next segment is format 4.
    assert.is((await collect(replayJournal(dir, { segment: 0, offset: 2 * frame.length }))).length, 0)
    const positions = await writeJournal(dir, makeRecords(3))
    assert.is(positions[0]?.segment, 1)
    assert.is((await collect(replayJournal(dir, { segment: 0, offset: 2 * frame.length }))).length, 3)
  }))

test('a damaged segment header before records is CORRUPT_JOURNAL', () =>
  withDir(async (dir) => {
    await writeJournal(dir, makeRecords(3))
    const file = join(dir, segmentFileName(0))
    await flipByte(file, 9)
    assert.equal(await expectCorrupt(collect(replayJournal(dir, null)), /segment header fails its crc32c/), { file, offset: 0 })
    await flipByte(file, 9)
    // A format this code does not know, with a good checksum.
    await patch(file, 0, (b) => {
      b.writeUInt32BE(5, 4)
      b.writeUInt32BE(crc32c(b.subarray(0, 12)), 12)
    }, SH)
    await expectCorrupt(collect(replayJournal(dir, null)), /journal format 5 is not one this Quire reads \(it reads formats 2, 3, 4\)/)
  }))

test('segments roll at segmentBytesMax and trimBefore deletes older files, never the current one', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir, { segmentBytesMax: 2000, groupWaitMs: 0 })
    const records = makeRecords(40)
    const positions: JournalPosition[] = []
    for (const r of records) positions.push(await journal.append(r))
    const segments = await listSegments(dir)
    assert.ok(segments.length >= 4, `only ${segments.length} segments`)
    for (let i = 1; i < positions.length; i++) {
      const [a, b] = [positions[i - 1], positions[i]]
      assert.ok(a && b && (b.segment > a.segment || b.offset > a.offset), `position ${i} increases`)
    }
    assert.equal(
      (await collect(replayJournal(dir, null))).map((x) => x.record),
      records,
    )
    const cut = positions[30]
    assert.ok(cut)
    await journal.trimBefore(cut)
    assert.is((await listSegments(dir))[0], cut.segment)
    const rest = await collect(replayJournal(dir, cut))
    assert.equal(
      rest.map((x) => x.record),
      records.slice(31),
    )
    await journal.trimBefore(journal.syncedPosition)
    assert.equal(await listSegments(dir), [journal.syncedPosition.segment])
    await journal.close()
  }))

test('by default an append waits for no timer: alone, it is written before any timer runs', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir)
    // The first group zero-fills the segment ahead (a write on the thread pool); later ones do not.
    await journal.append(Buffer.from('first'))
    let timerRan = false
    setTimeout(() => { timerRan = true }, 0)
    const position = await journal.append(Buffer.from('one add, nothing else waiting'))
    // Written and synced in the same turn: with a wait of its own (the old 1 ms default) the
    // timer above, due first, would have run before the group was written.
    assert.not.ok(timerRan)
    assert.equal({ segment: position.segment, offset: nextGroupAt(position.offset) }, journal.syncedPosition)
    assert.is(journal.stats.syncs, 2)
    // Records of one turn still form one group.
    await Promise.all([journal.append(Buffer.from('a')), journal.append(Buffer.from('b')), journal.append(Buffer.from('c'))])
    assert.is(journal.stats.syncs, 3)
    await journal.close()
  }))

test('close flushes what is waiting; append after close rejects', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir, { groupWaitMs: 1000 })
    const waiting = journal.append(Buffer.from('last words'))
    await journal.close()
    assert.equal(await waiting, { segment: 0, offset: FIRST + RH + 10 })
    await journal.append(Buffer.from('too late')).then(
      () => assert.unreachable('append after close resolved'),
      (err: unknown) => assert.instance(err, Error),
    )
    assert.is((await collect(replayJournal(dir, null))).length, 1)
  }))

test('a failed write fails the journal: that group and every later append reject', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir)
    await journal.append(Buffer.from('fine'))
    // Pull the file out from under the journal, as a dying disk would.
    await (journal as unknown as { fh: FileHandle }).fh.close()
    const failed = await journal.append(Buffer.from('lost')).catch((err: unknown) => err)
    assert.instance(failed, Error)
    const later = await journal.append(Buffer.from('later')).catch((err: unknown) => err)
    assert.instance(later, Error)
    assert.match(String(later), /failed/)
    assert.is(journal.stats.records, 1)
    await journal.close().catch(() => undefined)
  }))

test('beforeSync holds a group before its durable write: nothing resolves until it returns', () =>
  withDir(async (dir) => {
    let release = (): void => {}
    const held = new Promise<void>((r) => { release = r })
    const groups: number[] = []
    const journal = await openJournal(dir, {
      beforeSync: async (g) => {
        groups.push(g.records)
        await held
      },
    })
    let resolved = 0
    const first = Promise.all(makeRecords(3).map((r) => journal.append(r).then(() => { resolved++ })))
    while (groups.length === 0) await new Promise((r) => setTimeout(r, 5))
    // Records appended while the first group is held queue for the next one.
    const second = journal.append(Buffer.from('next group')).then(() => { resolved++ })
    await new Promise((r) => setTimeout(r, 50))
    assert.is(resolved, 0, 'no append resolves while its sync is held')
    assert.equal(journal.syncedPosition, { segment: 0, offset: FIRST })
    assert.ok((await fs.readFile(join(dir, segmentFileName(0)))).subarray(FIRST).every((b) => b === 0), 'no record written yet')
    release()
    await Promise.all([first, second])
    assert.equal(groups, [3, 1])
    await journal.close()
    assert.is((await collect(replayJournal(dir, null))).length, 4)
  }))

// ---------------------------------------------------------------------------------------------
// Records in parts (format 3) and format 2 segments

test('a record appended in parts replays as their concatenation; a group of more buffers than one writev takes replays byte for byte', () =>
  withDir(async (dir) => {
    // 1,500 records of three parts (one empty) in one group: 4,500 buffers with the headers,
    // more than IOV_MAX (1024), so the group is written in several writev calls.
    const records = makeRecords(1500)
    const journal = await openJournal(dir)
    const positions = await Promise.all(records.map((r) => journal.append([r.subarray(0, 3), Buffer.alloc(0), r.subarray(3)])))
    assert.is(journal.stats.syncs, 1, 'one group')
    await journal.close()
    const all = await collect(replayJournal(dir, null))
    assert.equal(all.map((x) => x.record), records)
    assert.equal(all.map((x) => x.position), positions)
    // Parts and whole records mix in one group; an all-empty record is refused.
    const again = await openJournal(join(dir, 'mixed'))
    const mixed = makeRecords(4, 9)
    await Promise.all([again.append(mixed[0]!), again.append([mixed[1]!]), again.append([mixed[2]!, mixed[3]!])])
    assert.instance(await again.append([Buffer.alloc(0)]).catch((err: unknown) => err), Error)
    await again.close().catch(() => undefined)
    assert.equal((await collect(replayJournal(join(dir, 'mixed'), null))).map((x) => x.record), [mixed[0], mixed[1], Buffer.concat([mixed[2]!, mixed[3]!])])
  }))

/** The format 2 segment 0 the encoder before format 3 wrote (test/fixtures/journal-format2-segment.bin): 7 records in groups of 2, 3 and 2. */
async function format2Segment(dir: string) {
  await fs.mkdir(dir, { recursive: true })
  const file = join(dir, segmentFileName(0))
  await fs.copyFile(join(import.meta.dirname, '..', 'fixtures', 'journal-format2-segment.bin'), file)
  const replayed = await collect(replayJournal(dir, null))
  const positions = replayed.map((x) => x.position)
  const records = replayed.map((x) => x.record)
  return { file, records, positions, start: (i: number) => startOf(positions, records, i) }
}

test('a format 2 segment written by the previous encoder replays, and a format 4 segment after it', () =>
  withDir(async (dir) => {
    const old = await format2Segment(dir)
    assert.is((await fs.readFile(old.file)).readUInt32BE(4), 2)
    assert.is(old.records.length, 7)
    const journal = await openJournal(dir)
    await journal.append([Buffer.from('format '), Buffer.from('4')])
    await journal.close()
    assert.is((await fs.readFile(join(dir, segmentFileName(1)))).readUInt32BE(4), 4)
    const all = await collect(replayJournal(dir, null))
    assert.equal(all.map((x) => x.record), [...old.records, Buffer.from('format 4')])
    // From the checkpoint a clean stop of the old version left, at the end of the format 2 segment.
    assert.equal((await collect(replayJournal(dir, old.positions[6]!))).map((x) => x.record), [Buffer.from('format 4')])
  }))

test('in a format 2 segment the damage rules hold: the torn last group is the end, damage before it CORRUPT_JOURNAL', () =>
  withDir(async (dir) => {
    // Damage inside the last group write (records 5 and 6): the end there.
    let j = await format2Segment(join(dir, 'torn'))
    await flipByte(j.file, j.start(5) + RH + 2)
    await expectEnd(join(dir, 'torn'), j.file, j.records.slice(0, 5), j.start(5))
    j = await format2Segment(join(dir, 'cut'))
    await fs.truncate(j.file, j.positions[6]!.offset - 1)
    await expectEnd(join(dir, 'cut'), j.file, j.records.slice(0, 6), j.start(6))
    // A payload byte of the second group, which the third follows: corruption.
    j = await format2Segment(join(dir, 'payload'))
    await flipByte(j.file, j.start(3) + RH + 2)
    await expectCorruptAt(join(dir, 'payload'), j.file, j.start(3))
    // A header crc byte of the first group's second record.
    j = await format2Segment(join(dir, 'header'))
    await flipByte(j.file, j.start(1) + 13)
    await expectCorruptAt(join(dir, 'header'), j.file, j.start(1), /record header fails its crc32c/)
    // Damage at the end of the format 2 segment with a format 4 segment after it: corruption.
    j = await format2Segment(join(dir, 'older'))
    const journal = await openJournal(join(dir, 'older'))
    await journal.append(Buffer.from('later'))
    await journal.close()
    await flipByte(j.file, j.positions[6]!.offset - 1)
    await expectCorruptAt(join(dir, 'older'), j.file, j.start(6), /segment 1 after it holds records/)
  }))

test('memory journal: crash drops and rejects unsynced records; replay yields the synced ones', async () => {
  const journal = new MemoryJournal({ autoSync: false })
  const a = journal.append(Buffer.from('a'))
  const b = journal.append(Buffer.from('bb'))
  journal.sync()
  assert.equal(await Promise.all([a, b]), [
    { segment: 0, offset: SH + RH + 1 },
    { segment: 0, offset: SH + 2 * RH + 3 },
  ])
  const c = journal.append(Buffer.from('c'))
  assert.is(journal.pendingBytes, RH + 1)
  journal.crash()
  await c.then(
    () => assert.unreachable('an unsynced record survived a crash'),
    (err: unknown) => assert.instance(err, Error),
  )
  assert.equal(
    (await collect(journal.replay(null))).map((x) => x.record.toString()),
    ['a', 'bb'],
  )
  // After the crash it is a reopened journal: a new segment.
  assert.equal(journal.syncedPosition, { segment: 1, offset: SH })
  const d = journal.append(Buffer.from('d'))
  journal.sync()
  assert.equal(await d, { segment: 1, offset: SH + RH + 1 })
  assert.equal(
    (await collect(journal.replay({ segment: 0, offset: SH + RH + 1 }))).map((x) => x.record.toString()),
    ['bb', 'd'],
  )
})

test('memory journal: torn tail is dropped at the end, corruption before it; autoSync groups a tick', async () => {
  const journal = new MemoryJournal()
  await Promise.all(['x', 'y', 'z'].map((s) => journal.append(Buffer.from(s))))
  assert.is(journal.stats.syncs, 1)
  journal.tearTail()
  journal.crash()
  assert.equal(
    (await collect(journal.replay(null))).map((x) => x.record.toString()),
    ['x', 'y'],
  )
  await journal.append(Buffer.from('w'))
  journal.tearTail()
  await journal.append(Buffer.from('v'))
  await expectCorrupt(collect(journal.replay(null)))
})

test('segments are written O_DIRECT (past the page cache) where the file system allows, in whole blocks', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir)
    const fd = (journal as unknown as { fh: FileHandle }).fh.fd
    // /proc/self/fdinfo gives the open flags in octal; O_DIRECT is 040000 on x86-64 and arm64's 0200000.
    const flags = parseInt(/flags:\s+(\d+)/.exec(await fs.readFile(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8)
    assert.ok((flags & fsConstants.O_DIRECT) !== 0, `open flags ${flags.toString(8)} lack O_DIRECT`)
    const positions = await Promise.all(makeRecords(7).map((r) => journal.append(r)))
    await journal.append(Buffer.from('x'))
    await journal.close()
    assert.is((await fs.stat(join(dir, segmentFileName(0)))).size % 4096, 0)
    assert.is((await collect(replayJournal(dir, null))).length, positions.length + 1)
  }))

test.run()
