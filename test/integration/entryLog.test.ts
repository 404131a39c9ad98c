// The entry store's entry logs (storage/entryLog.ts, storage/entryStore.ts) on real files and
// RocksDB: payloads in the logs and only 20-byte index values in RocksDB; a torn, rotted, cut
// short or missing log answers 'damaged' naming the file, never "no such entry", also after a
// restart; replay rewrites what a crash lost from the logs; a data folder written before entry
// logs is migrated on start (also when the migration is killed half way); a process killed with
// SIGKILL while checkpoints run keeps every entry whose journal record was synced.

import { execFileSync } from 'node:child_process'
import { open, readFile, readdir, rm, truncate } from 'node:fs/promises'
import path from 'node:path'
import RocksDB from 'rocksdb-native'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieStorage } from '../../actors/bookieStorage.ts'
import { openEntryStore, type DamageEvent } from '../../storage/entryStore.ts'
import { LOG_HEADER_BYTES, RECORD_HEADER_BYTES } from '../../storage/entryLog.ts'
import { COLUMN_FAMILIES } from '../../storage/entrySalvage.ts'
import { INDEX_VALUE_BYTES, decodeLocation, encodeLocation, entryKey, indexPuts } from '../../storage/entryLogIndex.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { runChild, testEntry, withDir as withTempDir } from '../support/entryLogData.ts'

const withDir = (fn: (dir: string) => Promise<void>): Promise<void> => withTempDir('quire-entrylog-', fn)

const logFiles = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.startsWith('entrylog-')).sort()

/** Every value of the raw `entries` CF (the store must be closed). */
async function rawValues(dir: string): Promise<Buffer[]> {
  const db = new RocksDB(dir, { columnFamilies: [...COLUMN_FAMILIES] })
  await db.ready()
  const out: Buffer[] = []
  try {
    for await (const { value } of db.columnFamily('entries').iterator({})) out.push(value!)
  } finally {
    await db.close()
  }
  return out
}

test('a batch of index puts (views of one buffer) holds the same keys and values as entryKey and encodeLocation', () => {
  const entries = [{ ledgerId: 0, entryId: 0 }, { ledgerId: 7, entryId: 2 ** 40 + 3 }, { ledgerId: 2 ** 53 - 1, entryId: 2 ** 32 }]
  const locs = [{ logId: 0, offset: 16, length: 0 }, { logId: 2 ** 32 - 1, offset: 2 ** 45 + 1, length: 1024 }, { logId: 3, offset: 2 ** 32 + 28, length: 2 ** 32 - 1 }]
  const got: Array<[Buffer, Buffer]> = []
  indexPuts(entries, locs, (key, value) => got.push([key, value]))
  assert.is(got.length, 3)
  got.forEach(([key, value], i) => {
    assert.equal(key, entryKey(entries[i]!.ledgerId, entries[i]!.entryId))
    assert.equal(value, encodeLocation(locs[i]!))
    assert.is(value.byteLength, INDEX_VALUE_BYTES)
    // The layout of entryLogIndex.ts: tag 0xE1 'L', then two zero bytes.
    assert.equal([...value.subarray(0, 4)], [0xe1, 0x4c, 0, 0])
    assert.equal(decodeLocation(value), locs[i])
  })
})

test('payloads go to entry logs, RocksDB keeps 20-byte index values, and both survive a reopen', () =>
  withDir(async (dir) => {
    const at = path.join(dir, 'entries')
    let store = await openEntryStore(at)
    const entries = Array.from({ length: 300 }, (_, i) => ({ ledgerId: 1 + (i % 3), entryId: Math.floor(i / 3), data: testEntry(1 + (i % 3), Math.floor(i / 3)) }))
    await store.putEntries(entries)
    const got = await store.getEntries(entries.map((e) => ({ ledgerId: e.ledgerId, entryId: e.entryId })))
    got.forEach((g, i) => assert.ok(g?.equals(entries[i]!.data), `entry ${i}`))
    await store.flush()
    await store.close()
    const values = await rawValues(at)
    assert.is(values.length, 300)
    assert.ok(values.every((v) => v.length === INDEX_VALUE_BYTES), 'only index values in RocksDB')
    assert.equal(await logFiles(`${at}.logs`), ['entrylog-0000000001.log'])
    store = await openEntryStore(at)
    try {
      const again = await store.getEntries(entries.map((e) => ({ ledgerId: e.ledgerId, entryId: e.entryId })))
      again.forEach((g, i) => assert.ok(g?.equals(entries[i]!.data), `entry ${i} after reopen`))
      assert.is(await store.lastEntryId(2), 99)
      // A new start writes to a new log: the old one (its tail maybe torn) is never appended to.
      await store.putEntries([{ ledgerId: 9, entryId: 0, data: testEntry(9, 0) }])
      assert.equal(await logFiles(`${at}.logs`), ['entrylog-0000000001.log', 'entrylog-0000000002.log'])
    } finally {
      await store.close()
    }
  }))

/** Puts ledger 5's entries 0..9 into one log, closes, damages it with `harm`, reopens. */
async function damagedCase(dir: string, harm: (file: string) => Promise<void>, expect: RegExp): Promise<void> {
  const at = path.join(dir, 'entries')
  let store = await openEntryStore(at)
  await store.putEntries(Array.from({ length: 10 }, (_, e) => ({ ledgerId: 5, entryId: e, data: testEntry(5, e) })))
  await store.close()
  const file = path.join(`${at}.logs`, 'entrylog-0000000001.log')
  await harm(file)
  store = await openEntryStore(at)
  const events: DamageEvent[] = []
  store.onDamage = (e) => events.push(e)
  try {
    const got = await store.readEntries([{ ledgerId: 5, entryId: 0 }, { ledgerId: 5, entryId: 9 }, { ledgerId: 5, entryId: 10 }])
    assert.is(got[1], 'damaged', 'the harmed entry answers damaged, not null')
    assert.is(got[2], null, 'an entry never written is still absent')
    const found = events.find((e) => e.kind === 'found')
    assert.ok(found && found.kind === 'found' && found.error.includes(file) && expect.test(found.error), `the error names the file: ${JSON.stringify(events)}`)
    assert.equal(store.damage.ledgers, [5])
    assert.is(events.filter((e) => e.kind !== 'found').length, 0, 'no RocksDB repair for a damaged log')
  } finally {
    await store.close()
  }
  // Remembered across a restart, and counted by lastEntryId; a new copy heals it.
  store = await openEntryStore(at)
  try {
    assert.is((await store.readEntries([{ ledgerId: 5, entryId: 9 }]))[0], 'damaged')
    assert.is(await store.lastEntryId(5), 9)
    await store.putEntries([{ ledgerId: 5, entryId: 9, data: testEntry(5, 9) }])
    assert.ok(((await store.readEntries([{ ledgerId: 5, entryId: 9 }]))[0] as Buffer).equals(testEntry(5, 9)))
    assert.not.ok(store.damagedOf(5).includes(9), 'the new copy is no longer listed damaged')
  } finally {
    await store.close()
  }
}

/** Where damagedCase's log ends its records (zeros up to a block boundary follow). */
function recordsEnd(): number {
  let at = LOG_HEADER_BYTES
  for (let e = 0; e < 10; e++) at += RECORD_HEADER_BYTES + testEntry(5, e).length
  return at
}

test('a log is written in whole blocks, zero-padded after its last record', () =>
  withDir(async (dir) => {
    const at = path.join(dir, 'entries')
    const store = await openEntryStore(at)
    await store.putEntries(Array.from({ length: 10 }, (_, e) => ({ ledgerId: 5, entryId: e, data: testEntry(5, e) })))
    await store.close()
    const bytes = await readFile(path.join(`${at}.logs`, 'entrylog-0000000001.log'))
    assert.is(bytes.length % 4096, 0)
    assert.ok(bytes.length >= recordsEnd() && bytes.length < recordsEnd() + 4096, `${bytes.length} bytes for records ending at ${recordsEnd()}`)
    assert.ok(bytes.subarray(recordsEnd()).every((b) => b === 0), 'zeros after the last record')
  }))

test('records staged and not yet written, or written in part, read back whole before any sync', () =>
  withDir(async (dir) => {
    const store = await openEntryStore(path.join(dir, 'entries'))
    try {
      // 3.3 MiB of entries of uneven sizes: the staging buffer (1 MiB) fills several times, so
      // records lie wholly staged, wholly written, and across the boundary between the two.
      const sizes = Array.from({ length: 300 }, (_, e) => 1 + ((e * 7919) % 23_000))
      const data = sizes.map((n, e) => Buffer.alloc(n, e % 251))
      for (let e = 0; e < data.length; e += 10) {
        await store.putEntries(data.slice(e, e + 10).map((d, i) => ({ ledgerId: 8, entryId: e + i, data: d })))
        const got = await store.readEntries(Array.from({ length: e + 10 }, (_, i) => ({ ledgerId: 8, entryId: i })))
        got.forEach((g, i) => assert.ok(g instanceof Buffer && g.equals(data[i]!), `entry ${i} after ${e + 10} put`))
      }
    } finally {
      await store.close()
    }
  }))

test('appends while a checkpoint syncs the logs are neither lost nor misplaced', () =>
  withDir(async (dir) => {
    // The store's flush (logs.sync) does not wait for its puts (logs.append): a sync writing the
    // staged bytes must not drop records staged meanwhile, nor write them where the index does not
    // point. Then a restart: what the index says is on disk.
    const at = path.join(dir, 'entries')
    let store = await openEntryStore(at, { logBytesMax: 64 * 1024 })
    const data = (e: number): Buffer => Buffer.alloc(100 + (e % 37) * 50, e % 251)
    const put = (e: number): Promise<void> => store.putEntries(Array.from({ length: 5 }, (_, i) => ({ ledgerId: 4, entryId: e + i, data: data(e + i) })))
    const flushes: Promise<void>[] = []
    for (let e = 0; e < 2000; e += 10) {
      await put(e)
      // A sync starts writing what is staged; the next put stages more while that write is on the disk.
      flushes.push(store.flush())
      await put(e + 5)
    }
    await Promise.all(flushes)
    const refs = Array.from({ length: 2000 }, (_, i) => ({ ledgerId: 4, entryId: i }))
    const check = async (when: string): Promise<void> => {
      const got = await store.readEntries(refs)
      got.forEach((g, i) => assert.ok(g instanceof Buffer && g.equals(data(i)), `entry ${i} ${when}: ${g === 'damaged' ? 'damaged' : typeof g}`))
    }
    await check('before the restart')
    await store.flush()
    await store.close()
    store = await openEntryStore(at)
    try {
      await check('after the restart')
    } finally {
      await store.close()
    }
  }))

test('a record whose payload rotted answers damaged, naming the log file', () =>
  withDir((dir) => damagedCase(dir, async (file) => {
    const fh = await open(file, 'r+')
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, recordsEnd() - 5)
    b[0] = b[0]! ^ 0x40
    await fh.write(b, 0, 1, recordsEnd() - 5)
    await fh.close()
  }, /fails its checksum/)))

test('an index entry pointing past the end of its log (cut short) answers damaged, naming the file', () =>
  withDir((dir) => damagedCase(dir, (file) => truncate(file, recordsEnd() - 10), /ends at byte/)))

test('a missing log file answers damaged, naming the file', () =>
  withDir((dir) => damagedCase(dir, (file) => rm(file), /missing/)))

test('a torn record header answers damaged', () =>
  withDir((dir) => damagedCase(dir, async (file) => {
    // Entry 9's header is the last record's: overwrite it with zeros, as a torn write leaves.
    const fh = await open(file, 'r+')
    let at = LOG_HEADER_BYTES
    for (let e = 0; e < 9; e++) at += RECORD_HEADER_BYTES + testEntry(5, e).length
    await fh.write(Buffer.alloc(RECORD_HEADER_BYTES), 0, RECORD_HEADER_BYTES, at)
    await fh.close()
  }, /header fails its checksum/)))

for (const loss of ['missing', 'cut short'] as const) {
  test(`replay rewrites from the journal the entries a crash lost from the entry log (${loss})`, () =>
    withDir(async (dir) => {
      // Journaled, synced and put, never checkpointed: then kill -9.
      const r = await runChild({ mode: 'unsynced', dir, ledgerId: 3, count: 200 }, (out) => out.includes('ready'))
      assert.is(r.signal, 'SIGKILL')
      const logs = path.join(dir, 'entries.logs')
      const files = await logFiles(logs)
      // The replay's checkpoint at the child's start wrote nothing; the entries are in the last log.
      const last = path.join(logs, files.at(-1)!)
      if (loss === 'missing') await rm(last)
      else await truncate(last, LOG_HEADER_BYTES + 1000)
      // The store alone cannot serve them: damaged (naming the file), never absent.
      const store = await openEntryStore(path.join(dir, 'entries'))
      const events: DamageEvent[] = []
      store.onDamage = (e) => events.push(e)
      assert.is((await store.readEntries([{ ledgerId: 3, entryId: 199 }]))[0], 'damaged')
      assert.ok(events.some((e) => e.kind === 'found' && e.error.includes(last)), JSON.stringify(events))
      await store.close()
      const s = await BookieStorage.open(dir)
      try {
        await s.replayAndOpen()
        const got = await s.getEntries(3, Array.from({ length: 200 }, (_, i) => i))
        got.forEach((g, i) => assert.ok(g instanceof Uint8Array && Buffer.from(g).equals(testEntry(3, i)), `entry ${i} back from the journal`))
        assert.is(s.store.damage.entries, 0)
      } finally {
        await s.close()
      }
    }))
}

// test/fixtures/legacyBookie-9454a56.tar.gz: a data folder written by BookieStorage at commit
// 9454a56 (payloads in RocksDB): ledgers 1, 2 and 7, entries 0..49 each (crc32c, password 'pw',
// payload `legacy ledger L entry E ` repeated 1 + E % 7 times), ledger 7 fenced, ledger 2's
// explicit LAC 3, checkpointed and stopped cleanly.
function legacyEntry(ledgerId: number, entryId: number): Buffer {
  let len = 0
  let payload = Buffer.alloc(0)
  for (let e = 0; e <= entryId; e++) {
    payload = Buffer.from(`legacy ledger ${ledgerId} entry ${e} `.repeat(1 + (e % 7)))
    len += payload.length
  }
  return encodeEntry('crc32c', masterKeyOf('pw'), ledgerId, entryId, entryId - 1, len, payload)
}

async function unpackLegacy(dir: string): Promise<string> {
  execFileSync('tar', ['xzf', new URL('../fixtures/legacyBookie-9454a56.tar.gz', import.meta.url).pathname, '-C', dir])
  return path.join(dir, 'bookie')
}

test('a data folder written before entry logs is migrated on start: every entry and state kept, payloads out of RocksDB', () =>
  withDir(async (dir) => {
    const data = await unpackLegacy(dir)
    // Read-only (a full disk at start-up) reads the old payloads where they are and writes nothing.
    const ro = await openEntryStore(path.join(data, 'entries'), { readOnly: true })
    try {
      assert.ok(((await ro.getEntries([{ ledgerId: 2, entryId: 13 }]))[0])?.equals(legacyEntry(2, 13)))
      assert.is(ro.migrated, null)
    } finally {
      await ro.close()
    }
    assert.equal(await logFiles(path.join(data, 'entries.logs')), [])

    let s = await BookieStorage.open(data)
    assert.equal(s.store.migrated && { entries: s.store.migrated.entries }, { entries: 150 })
    await s.replayAndOpen()
    const check = async (): Promise<void> => {
      for (const l of [1, 2, 7]) {
        const got = await s.getEntries(l, Array.from({ length: 51 }, (_, i) => i))
        for (let e = 0; e < 50; e++) assert.ok(got[e] instanceof Uint8Array && Buffer.from(got[e] as Uint8Array).equals(legacyEntry(l, e)), `ledger ${l} entry ${e}`)
        assert.is(got[50], null)
        assert.is((await s.summary(l)).lastEntryId, 49)
      }
      assert.is((await s.store.getLedgerState(7))?.fenced, true)
      assert.is((await s.store.getLedgerState(2))?.explicitLac, 3)
      assert.equal(await s.listLedgers(), [1, 2, 7])
    }
    await check()
    await s.close()
    const values = await rawValues(path.join(data, 'entries'))
    assert.is(values.length, 150)
    assert.ok(values.every((v) => v.length === INDEX_VALUE_BYTES), 'no payload left in RocksDB')
    s = await BookieStorage.open(data)
    try {
      assert.is(s.store.migrated, null, 'migrated once')
      await s.replayAndOpen()
      await check()
    } finally {
      await s.close()
    }
  }))

test('a migration killed with SIGKILL half way goes on at the next start and loses nothing', () =>
  withDir(async (dir) => {
    const at = path.join(dir, 'entries')
    // The old format as the code before entry logs wrote it: each entry's bytes as its value.
    const db = new RocksDB(at, { columnFamilies: [...COLUMN_FAMILIES] })
    await db.ready()
    const cf = db.columnFamily('entries')
    const batch = cf.write({ autoDestroy: true, capacity: 2500 })
    for (let i = 0; i < 2500; i++) batch.tryPut(entryKey(1 + (i % 5), Math.floor(i / 5)), testEntry(1 + (i % 5), Math.floor(i / 5)))
    await batch.flush()
    await db.close()

    const r = await runChild({ mode: 'migrate', dir, killAfterChunk: 1000 })
    assert.is(r.signal, 'SIGKILL')
    const values = await rawValues(at)
    const moved = values.filter((v) => v.length === INDEX_VALUE_BYTES).length
    assert.ok(moved >= 1000 && moved < 2500, `killed half way: ${moved} of 2500 moved`)

    const store = await openEntryStore(at)
    try {
      assert.is(store.migrated?.entries, 2500 - moved)
      const refs = Array.from({ length: 2500 }, (_, i) => ({ ledgerId: 1 + (i % 5), entryId: Math.floor(i / 5) }))
      const got = await store.getEntries(refs)
      got.forEach((g, i) => assert.ok(g?.equals(testEntry(refs[i]!.ledgerId, refs[i]!.entryId)), `entry ${i}`))
    } finally {
      await store.close()
    }
  }))

test('SIGKILL while checkpoints run back to back: every entry whose journal record was synced is kept', () =>
  withDir(async (dir) => {
    let acked = -1
    for (const lines of [3, 40, 120]) {
      const r = await runChild({ mode: 'checkpoints', dir, ledgerId: 4 }, (out) => out.trim().split('\n').length >= lines)
      assert.is(r.signal, 'SIGKILL')
      const printed = r.out.trim().split('\n').map(Number)
      acked = Math.max(acked, printed.at(-1)!)
      const s = await BookieStorage.open(dir)
      try {
        await s.replayAndOpen()
        const got = await s.getEntries(4, Array.from({ length: acked + 1 }, (_, i) => i))
        got.forEach((g, i) => assert.ok(g instanceof Uint8Array && Buffer.from(g).equals(testEntry(4, i)), `entry ${i} of ${acked} acknowledged`))
      } finally {
        await s.close()
      }
    }
  }))

test.run()
