// The pure parts of named logs: positions (order, printing, parsing), the packed entry format
// (round trip, and every damaged form refused as CORRUPT_ENTRY), the metadata rules (claiming,
// adding and closing segments, rolling, truncation and retention against a brute-force oracle),
// and the log store over the in-memory KV (compare-and-swap, cursors, listings by prefix).

import fc from 'fast-check'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { isQuireError } from '../../machines/errors.ts'
import { checkLogName, comparePositions, formatPosition, parsePosition, type LogPosition } from '../../machines/logPosition.ts'
import {
  claimed, firstAvailable, retentionDue, rollDue, segmentsToRecover, segmentsToTruncate, subscriberLag, withSegmentAdded, withSegmentClosed,
  withTruncated, writerRefusal, type LogMetadata, type LogOptions, type LogSegment,
} from '../../machines/logRules.ts'
import { LogStore } from '../../storage/logStore.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { KvConflict } from '../../storage/types.ts'
import { packLogEntry, unpackLogEntry } from '../../transport/logEntry.ts'

const test = suite('log rules')

const code = (f: () => unknown): string => {
  try { f() } catch (err) { return isQuireError(err) ? err.code : `not a QuireError: ${String(err)}` }
  return 'no error'
}

const position = fc.record({ segmentSeq: fc.nat(1e6), entryId: fc.nat(1e6), slot: fc.nat(1e4) })

test('positions: printed and parsed back; ordered as (segment, entry, slot); bad forms are INVALID_POSITION', () => {
  fc.assert(fc.property(position, (p) => { assert.equal(parsePosition(formatPosition(p)), { ...p }) }))
  fc.assert(fc.property(position, position, (a, b) => {
    const lexical = a.segmentSeq !== b.segmentSeq ? a.segmentSeq - b.segmentSeq : a.entryId !== b.entryId ? a.entryId - b.entryId : a.slot - b.slot
    assert.is(Math.sign(comparePositions(a, b)), Math.sign(lexical))
  }))
  for (const bad of ['', '1:2', '1:2:3:4', '-1:0:0', 'a:b:c', '1:2:3 ', '1e3:0:0']) assert.is(code(() => parsePosition(bad)), 'INVALID_POSITION', bad)
  assert.is(checkLogName('a/b-c_d'), 'a/b-c_d')
  for (const bad of ['', 'a.b', 'a b', '/a', 'a/', 'a//b', 'é']) assert.is(code(() => checkLogName(bad)), 'INVALID_LOG_NAME', bad)
})

const records = fc.array(fc.record({ gap: fc.integer({ min: 1, max: 1000 }), timeMs: fc.nat(2 ** 45), payload: fc.uint8Array({ maxLength: 64 }) }), { minLength: 1, maxLength: 20 })

test('a packed entry unpacks to the same records; any cut, extension or flipped header byte is CORRUPT_ENTRY', () => {
  fc.assert(fc.property(records, fc.nat(2 ** 40), fc.nat(2 ** 40), (rs, base, before) => {
    let tx = base
    const input = rs.map((r) => ({ txId: (tx += r.gap), timeMs: r.timeMs, payload: r.payload }))
    const packed = packLogEntry({ recordsBefore: before, records: input })
    const out = unpackLogEntry(packed, 'test')
    assert.is(out.recordsBefore, before)
    assert.equal(out.records.map((r) => [r.txId, r.timeMs, [...r.payload]]), input.map((r) => [r.txId, r.timeMs, [...r.payload]]))
    for (const cut of [0, 3, 15, packed.length - 1]) assert.is(code(() => unpackLogEntry(packed.subarray(0, cut), 'test')), 'CORRUPT_ENTRY')
    assert.is(code(() => unpackLogEntry(new Uint8Array([...packed, 0]), 'test')), 'CORRUPT_ENTRY')
    for (const at of [0, 1, 2]) {
      const bad = Uint8Array.from(packed)
      bad[at] = bad[at]! ^ 0xff
      assert.is(code(() => unpackLogEntry(bad, 'test')), 'CORRUPT_ENTRY')
    }
  }))
  const two = packLogEntry({ recordsBefore: 0, records: [{ txId: 5, timeMs: 0, payload: new Uint8Array() }, { txId: 5, timeMs: 0, payload: new Uint8Array() }] })
  assert.is(code(() => unpackLogEntry(two, 'test')), 'CORRUPT_ENTRY', 'txIds must increase')
})

const OPTIONS: LogOptions = {
  ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c',
  segmentBytesMax: 1000, segmentAgeMs: 60_000, segmentRecordsMax: 100, retentionMs: 0, retentionBytes: 0,
}

function log(segments: Array<Partial<LogSegment> & { state: LogSegment['state'] }>, extra: Partial<LogMetadata> = {}): LogMetadata {
  const segs = segments.map((s, i): LogSegment => ({
    segmentSeq: i + 1, ledgerId: 100 + i, epoch: 1, firstTxId: -1, lastTxId: -1, lastEntryId: -1, recordCount: 0, bytes: 0,
    createdAt: 0, closedAt: s.state === 'open' ? 0 : 1, ...s,
  }))
  return { name: 'l', options: OPTIONS, createdAt: 0, epoch: 1, sealed: false, nextSegmentSeq: segs.length + 1, ledgersClosedThrough: 0, segments: segs, ...extra }
}

test('claiming bumps the epoch; a writer of another epoch is FENCED, of a sealed log END_OF_STREAM; a segment is added only after the last is closed', () => {
  const md = log([{ state: 'closed' }, { state: 'open' }])
  assert.is(claimed(md).epoch, 2)
  assert.is(writerRefusal(claimed(md), 1)?.code, 'FENCED')
  assert.is(writerRefusal(md, 1), null)
  assert.is(writerRefusal({ ...md, sealed: true }, 1)?.code, 'END_OF_STREAM')
  assert.is(code(() => claimed({ ...md, sealed: true })), 'END_OF_STREAM')
  assert.throws(() => withSegmentAdded(md, 7, 1, 5), /still open/)
  const closed = withSegmentClosed(md, 2, { lastEntryId: 4, firstTxId: 10, lastTxId: 19, recordCount: 10, bytes: 500 }, 9)
  const added = withSegmentAdded(closed, 7, 2, 10)
  assert.equal(added.segments.map((s) => [s.segmentSeq, s.state, s.ledgerId]), [[1, 'closed', 100], [2, 'closed', 101], [3, 'open', 7]])
  assert.is(added.nextSegmentSeq, 4)
  assert.equal(segmentsToRecover(md).map((s) => s.segmentSeq), [1, 2], 'the open segment, and those a roll closed before their ledgers')
  assert.equal(segmentsToRecover(log([{ state: 'closed' }, { state: 'closed' }, { state: 'open' }], { ledgersClosedThrough: 1 })).map((s) => s.segmentSeq), [2, 3])
  assert.equal(segmentsToRecover(log([{ state: 'truncated' }, { state: 'closed' }], { ledgersClosedThrough: 2 })).map((s) => s.segmentSeq), [])
})

test('rolling: by size, count and age, never an empty segment', () => {
  assert.is(rollDue(OPTIONS, { bytes: 0, records: 0, createdAt: 0 }, 10 ** 9), null)
  assert.is(rollDue(OPTIONS, { bytes: 1000, records: 1, createdAt: 0 }, 0), 'size')
  assert.is(rollDue(OPTIONS, { bytes: 10, records: 100, createdAt: 0 }, 0), 'count')
  assert.is(rollDue(OPTIONS, { bytes: 10, records: 1, createdAt: 0 }, 60_000), 'age')
  assert.is(rollDue({ ...OPTIONS, segmentBytesMax: 0, segmentRecordsMax: 0, segmentAgeMs: 0 }, { bytes: 10 ** 9, records: 10 ** 6, createdAt: 0 }, 10 ** 9), null)
})

const shape = fc.array(fc.record({ entries: fc.nat(5), closedAgoMs: fc.nat(10_000), bytes: fc.nat(1000) }), { minLength: 1, maxLength: 8 })

test('truncation removes exactly the closed segments wholly before the position, never the open one (brute force)', () => {
  fc.assert(fc.property(shape, fc.boolean(), position, (segs, lastOpen, raw) => {
    const md = log(segs.map((s, i) => ({
      state: lastOpen && i === segs.length - 1 ? 'open' as const : 'closed' as const, lastEntryId: s.entries - 1, recordCount: s.entries,
    })))
    const pos: LogPosition = { segmentSeq: raw.segmentSeq % (segs.length + 2), entryId: raw.entryId % 7, slot: raw.slot % 3 }
    const removed = segmentsToTruncate(md, pos).map((s) => s.segmentSeq)
    // Oracle: a segment goes iff it is closed and every position in it is before `pos`.
    const expected = md.segments.filter((s) => s.state === 'closed' && (s.segmentSeq < pos.segmentSeq)).map((s) => s.segmentSeq)
    assert.equal(removed, expected)
    const after = withTruncated(md, removed)
    assert.ok(after.segments.filter((s) => s.state === 'truncated').length <= 1, 'one truncated marker at most')
    if (removed.length > 0) assert.equal(firstAvailable(after), { segmentSeq: Math.max(...removed) + 1, entryId: 0, slot: 0 })
  }))
})

test('retention removes a prefix of closed segments: each older than retentionMs, or while over retentionBytes', () => {
  fc.assert(fc.property(shape, fc.nat(10_000), fc.nat(3000), (segs, retentionMs, retentionBytes) => {
    const now = 20_000
    const md = log(segs.map((s, i) => ({ state: i === segs.length - 1 ? 'open' as const : 'closed' as const, closedAt: now - s.closedAgoMs, bytes: s.bytes })),
      { options: { ...OPTIONS, retentionMs, retentionBytes } })
    const due = retentionDue(md, now).map((s) => s.segmentSeq)
    assert.equal(due, md.segments.slice(0, due.length).map((s) => s.segmentSeq), 'a prefix')
    let total = md.segments.reduce((n, s) => n + s.bytes, 0)
    const expected: number[] = []
    for (const s of md.segments) {
      const take = s.state === 'closed' && ((retentionMs > 0 && now - s.closedAt > retentionMs) || (retentionBytes > 0 && total > retentionBytes))
      if (!take) break
      expected.push(s.segmentSeq)
      total -= s.bytes
    }
    assert.equal(due, expected)
    assert.ok(!md.segments.some((s) => s.state === 'open' && due.includes(s.segmentSeq)), 'never the open segment')
  }))
})

test('a subscriber\'s lag: the segments after its own and the records of the closed ones among them', () => {
  // 1 truncated, 2 and 3 closed (5 and 7 records), 4 open.
  const md = log([{ state: 'truncated', recordCount: 3 }, { state: 'closed', recordCount: 5 }, { state: 'closed', recordCount: 7 }, { state: 'open' }])
  assert.equal(subscriberLag(md, { segmentSeq: 2, entryId: 1, slot: 0 }), { segments: 2, records: 7, open: true })
  assert.equal(subscriberLag(md, { segmentSeq: 1, entryId: 0, slot: 0 }), { segments: 3, records: 12, open: true }, 'a truncated segment is not counted')
  assert.equal(subscriberLag(md, { segmentSeq: 4, entryId: 9, slot: 2 }), { segments: 0, records: 0, open: false })
  const sealed = log([{ state: 'closed', recordCount: 5 }, { state: 'closed', recordCount: 7 }], { sealed: true })
  assert.equal(subscriberLag(sealed, { segmentSeq: 1, entryId: 3, slot: 0 }), { segments: 1, records: 7, open: false })
})

test('the log store: create once (LOG_EXISTS), read (NO_SUCH_LOG), compare-and-swap, list by prefix, cursors per log', async () => {
  const store = new LogStore(new MemoryKv())
  const md = log([])
  const made = await store.create({ ...md, name: 'a/b' })
  await store.create({ ...md, name: 'a/bc' })
  await store.create({ ...md, name: 'z' })
  assert.is(await store.create({ ...md, name: 'a/b' }).then(() => 'created', (e: unknown) => (e as { code: string }).code), 'LOG_EXISTS')
  assert.is(await store.read('nope').then(() => 'found', (e: unknown) => (e as { code: string }).code), 'NO_SUCH_LOG')
  const next = await store.write({ ...made.value, epoch: 5 }, made.revision)
  assert.ok(await store.write({ ...made.value, epoch: 6 }, made.revision).then(() => false, (e: unknown) => e instanceof KvConflict))
  assert.is((await store.read('a/b')).value.epoch, 5)
  assert.ok(next.revision > made.revision)
  const names: string[] = []
  for await (const n of store.list('a/')) names.push(n)
  assert.equal(names, ['a/b', 'a/bc'])
  const c = { position: { segmentSeq: 1, entryId: 2, slot: 3 }, updatedAt: 1 }
  const rev = await store.writeCursor('a/b', 'billing', c, null)
  await store.writeCursor('a/bc', 'other', c, null)
  assert.ok(await store.writeCursor('a/b', 'billing', c, null).then(() => false, (e: unknown) => e instanceof KvConflict))
  await store.writeCursor('a/b', 'billing', { ...c, updatedAt: 2 }, rev)
  assert.equal(await store.listSubscribers('a/b'), ['billing'])
  assert.is((await store.readCursor('a/b', 'billing'))?.value.updatedAt, 2)
  await store.deleteCursor('a/b', 'billing')
  assert.is(await store.readCursor('a/b', 'billing'), null)
})

test.run()
