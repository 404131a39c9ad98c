// The journal against real files in a temp dir: group commit, replay byte for byte, torn tails
// (truncated, flipped, zero-filled) versus corruption before the tail, segment roll and trim,
// the failed-journal rule; and the crash / torn-tail fault model of the in-memory double.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import { join } from 'node:path'
import type { FileHandle } from 'node:fs/promises'
import { isQuireError } from '../machines/errors.ts'
import { listSegments, openJournal, replayJournal, segmentFileName } from '../storage/journal.ts'
import { MemoryJournal } from '../storage/memoryJournal.ts'
import type { JournalPosition } from '../storage/types.ts'

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

async function expectCorrupt(promise: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    assert.ok(isQuireError(err, 'CORRUPT_JOURNAL'), `expected CORRUPT_JOURNAL, got ${String(err)}`)
    return { ...err.info }
  }
  assert.unreachable('replay should have thrown CORRUPT_JOURNAL')
  return {}
}

/** Writes `records` into a fresh journal, closes it, and returns their end positions. */
async function writeJournal(dir: string, records: Buffer[]): Promise<JournalPosition[]> {
  const journal = await openJournal(dir)
  const positions = await Promise.all(records.map((r) => journal.append(r)))
  await journal.close()
  return positions
}

async function flipByte(file: string, at: number): Promise<void> {
  const fh = await fs.open(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, at)
    b[0] = (b[0] ?? 0) ^ 0x40
    await fh.write(b, 0, 1, at)
  } finally {
    await fh.close()
  }
}

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
    let expected = 0
    for (const [i, p] of positions.entries()) {
      expected += 8 + (records[i]?.length ?? 0)
      assert.equal(p, { segment: 0, offset: expected })
    }
    assert.equal(journal.stats.records, 3000)
    assert.equal(journal.stats.bytes, expected)
    assert.ok(journal.stats.syncs <= 30, `${journal.stats.syncs} syncs for 3000 records`)
    assert.equal(journal.syncedPosition, { segment: 0, offset: expected })
    assert.is(journal.pendingBytes, 0)
    await journal.close()
  }))

test('replay returns every record byte for byte, in order, from any position', () =>
  withDir(async (dir) => {
    const records = makeRecords(500)
    const positions = await writeJournal(dir, records)
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
    assert.equal(p2[0], { segment: 1, offset: 8 + (second[0]?.length ?? 0) })
    const all = await collect(replayJournal(dir, null))
    assert.equal(
      all.map((x) => x.record),
      [...first, ...second],
    )
    const fromSecond = await collect(replayJournal(dir, { segment: 1, offset: 0 }))
    assert.is(fromSecond.length, 40)
  }))

test('a truncated last record is the torn tail: ignored, and the file is truncated', () =>
  withDir(async (dir) => {
    const records = makeRecords(10)
    const positions = await writeJournal(dir, records)
    const file = join(dir, segmentFileName(0))
    await fs.truncate(file, (positions[9]?.offset ?? 0) - 3)
    const all = await collect(replayJournal(dir, null))
    assert.is(all.length, 9)
    assert.is((await fs.stat(file)).size, positions[8]?.offset)
    // A second replay sees a clean file.
    assert.is((await collect(replayJournal(dir, null))).length, 9)
  }))

test('a crash image (journal never closed, preallocated zeros after the records) replays every synced record', () =>
  withDir(async (dir) => {
    const records = makeRecords(200)
    const journal = await openJournal(join(dir, 'live'))
    const positions = await Promise.all(records.map((r) => journal.append(r)))
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
    assert.is((await fs.stat(join(dir, 'crash', file))).size, used, 'replay cuts the zeros off')
    assert.is((await fs.stat(join(dir, 'live', file))).size, used, 'close cuts the zeros off')
  }))

test('a flipped byte in a middle record throws CORRUPT_JOURNAL naming file and offset', () =>
  withDir(async (dir) => {
    const records = makeRecords(10)
    const positions = await writeJournal(dir, records)
    const file = join(dir, segmentFileName(0))
    const start = positions[4]?.offset ?? 0
    await flipByte(file, start + 8 + 2)
    const details = await expectCorrupt(collect(replayJournal(dir, null)))
    assert.equal(details, { file, offset: start })
    // Nothing was truncated: corruption before the tail is for a human to look at.
    assert.is((await fs.stat(file)).size, positions[9]?.offset)
  }))

test('a flipped byte in the last record is the torn tail', () =>
  withDir(async (dir) => {
    const records = makeRecords(10)
    const positions = await writeJournal(dir, records)
    const file = join(dir, segmentFileName(0))
    await flipByte(file, (positions[9]?.offset ?? 0) - 1)
    const all = await collect(replayJournal(dir, null))
    assert.is(all.length, 9)
    assert.is((await fs.stat(file)).size, positions[8]?.offset)
  }))

test('a zero-filled tail (file extended, data never written) is the torn tail', () =>
  withDir(async (dir) => {
    const positions = await writeJournal(dir, makeRecords(5))
    const file = join(dir, segmentFileName(0))
    await fs.appendFile(file, Buffer.alloc(4096))
    assert.is((await collect(replayJournal(dir, null))).length, 5)
    assert.is((await fs.stat(file)).size, positions[4]?.offset)
  }))

test('a bad record at the end of an older segment is corruption, unless only empty segments follow', () =>
  withDir(async (dir) => {
    const positions = await writeJournal(dir, makeRecords(5))
    const file = join(dir, segmentFileName(0))
    await fs.truncate(file, (positions[4]?.offset ?? 0) - 3)
    // An open that crashed before its first write leaves an empty newer segment: still the tail.
    await (await openJournal(dir)).close()
    assert.is((await collect(replayJournal(dir, null))).length, 4)
    await fs.truncate(file, (positions[3]?.offset ?? 0) - 3)
    await writeJournal(dir, makeRecords(2))
    const details = await expectCorrupt(collect(replayJournal(dir, null)))
    assert.equal(details, { file, offset: positions[2]?.offset })
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

test('close flushes what is waiting; append after close rejects', () =>
  withDir(async (dir) => {
    const journal = await openJournal(dir, { groupWaitMs: 1000 })
    const waiting = journal.append(Buffer.from('last words'))
    await journal.close()
    assert.equal(await waiting, { segment: 0, offset: 18 })
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

test('memory journal: crash drops and rejects unsynced records; replay yields the synced ones', async () => {
  const journal = new MemoryJournal({ autoSync: false })
  const a = journal.append(Buffer.from('a'))
  const b = journal.append(Buffer.from('bb'))
  journal.sync()
  assert.equal(await Promise.all([a, b]), [
    { segment: 0, offset: 9 },
    { segment: 0, offset: 19 },
  ])
  const c = journal.append(Buffer.from('c'))
  assert.is(journal.pendingBytes, 9)
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
  assert.equal(journal.syncedPosition, { segment: 1, offset: 0 })
  const d = journal.append(Buffer.from('d'))
  journal.sync()
  assert.equal(await d, { segment: 1, offset: 9 })
  assert.equal(
    (await collect(journal.replay({ segment: 0, offset: 9 }))).map((x) => x.record.toString()),
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

test.run()
