// What a power cut does to a bookie process and its data folder, for tests on real processes:
// kill -9, then take away what was never synced and, when asked, damage the journal's last group.
// Fault model (what a power cut can leave, given how the bookie writes):
// - RocksDB (`<data>/entries`): the entry store never syncs its writes (the journal is the
//   write-ahead log), so the live RocksDB WAL, the newest `<n>.log`, holds no synced byte: it is
//   cut back to a random length, to zero half the time. Older WAL files were synced by RocksDB
//   before the flush that closed them; SST files, MANIFEST and CURRENT are synced before they are
//   used. They are left alone.
// - Journal (`<data>/journal`): every group is one O_DSYNC write, so everything up to the end of
//   the last group is synced, and only the last group write can be torn. `torn` zero-fills the
//   last group from a 512-byte sector boundary inside its records (its start when there is none)
//   to its end (the padding record that ends it on a block boundary included): the sectors of a
//   write that did not reach the disk read back as the preallocated zeros. `rot`
//   flips a byte of the last record's payload, `length` a bit of the length field of a record of
//   the last group: the damage storage/journal.ts cannot tell from a torn write (its header), the
//   case that dropped acknowledged entries. `older` flips a bit of the length field of the last
//   record before the last group (bit rot in a recent record, not what a power cut leaves): the
//   bookie must refuse to start (CORRUPT_JOURNAL), never cut the journal there.
// - Files created but never synced: the bookie syncs each new journal segment's header and its
//   folder before it writes a record, so no such file holds anything replay needs.

import { open, readdir, stat, truncate } from 'node:fs/promises'
import path from 'node:path'
import { crc32c } from '@node-rs/crc32'
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, listSegments, segmentFileName } from '../../storage/journal.ts'
import { PADDING_FLAG } from '../../storage/journalFormat.ts'
import type { BookieProcess } from '../../cli/cluster.ts'

export type JournalDamage = 'none' | 'torn' | 'rot' | 'length' | 'older'

/** What one power cut did, to print with a failure. */
export interface PowerCut {
  wal: { file: string; from: number; to: number } | null
  damage: JournalDamage
  /** The last group of the newest journal segment with records: bytes (its padding included) and record count. */
  lastGroup: { file: string; start: number; end: number; records: number } | null
  /** What was damaged, in words. */
  did: string
}

const SECTOR = 512

/** kill -9 the bookie, then lose what a power cut loses (see the header). `rng` gives [0, 1). */
export async function cutPower(b: BookieProcess, damage: JournalDamage, rng: () => number): Promise<PowerCut> {
  b.kill('SIGKILL')
  await b.exited
  const wal = await loseUnsyncedWal(path.join(b.data, 'entries'), rng)
  const journal = await damageLastGroup(path.join(b.data, 'journal'), damage, rng)
  return { wal, damage, ...journal }
}

/** Cuts the live RocksDB WAL (the highest-numbered `<n>.log`) back to a random length. */
export async function loseUnsyncedWal(dir: string, rng: () => number): Promise<PowerCut['wal']> {
  const logs = (await readdir(dir)).filter((n) => /^\d+\.log$/.test(n)).sort((a, b) => Number.parseInt(a) - Number.parseInt(b))
  const live = logs.at(-1)
  if (live === undefined) return null
  const file = path.join(dir, live)
  const { size } = await stat(file)
  const to = rng() < 0.5 ? 0 : Math.floor(rng() * size)
  await truncate(file, to)
  return { file, from: size, to }
}

interface RecordAt { start: number; end: number; groupStart: number; padding: boolean }

/**
 * The intact records of a journal segment, padding records included (flagged), in order, up to
 * the first damage or zero-fill.
 */
function recordsOf(buf: Buffer): RecordAt[] {
  const out: RecordAt[] = []
  let at = SEGMENT_HEADER_BYTES
  while (at + RECORD_HEADER_BYTES <= buf.length) {
    const field = buf.readUInt32BE(at)
    if (field === 0 || crc32c(buf.subarray(at, at + 12)) !== buf.readUInt32BE(at + 12)) break
    const end = at + RECORD_HEADER_BYTES + ((field & ~PADDING_FLAG) >>> 0)
    if (end > buf.length || crc32c(buf.subarray(at + RECORD_HEADER_BYTES, end)) !== buf.readUInt32BE(at + 8)) break
    out.push({ start: at, end, groupStart: at - buf.readUInt32BE(at + 4), padding: (field & PADDING_FLAG) !== 0 })
    at = end
  }
  return out
}

/** Damages the last group write of the newest journal segment holding records (see the header). */
export async function damageLastGroup(dir: string, damage: JournalDamage, rng: () => number): Promise<Omit<PowerCut, 'wal' | 'damage'>> {
  const segments = await listSegments(dir)
  for (let i = segments.length - 1; i >= 0; i--) {
    const file = path.join(dir, segmentFileName(segments[i]!))
    const fh = await open(file, 'r+')
    try {
      const buf = await fh.readFile()
      const all = recordsOf(buf)
      const records = all.filter((r) => !r.padding)
      const last = records.at(-1)
      if (last === undefined) continue
      const group = records.filter((r) => r.start >= last.groupStart)
      // The group write ends with the padding record after its last record (when it needed one).
      const groupEnd = all.at(-1)!.end
      const lastGroup = { file, start: last.groupStart, end: groupEnd, records: group.length }
      const before = records.filter((r) => r.end <= last.groupStart).at(-1)
      if (damage === 'older' && before === undefined) continue
      const did = damage === 'older' ? await flipLengthBit(fh, buf, before!, rng) : await damageGroup(fh, buf, group, groupEnd, damage, rng)
      await fh.sync()
      return { lastGroup, did }
    } finally {
      await fh.close()
    }
  }
  return { lastGroup: null, did: 'no journal record to damage' }
}

async function damageGroup(
  fh: Awaited<ReturnType<typeof open>>, buf: Buffer, group: RecordAt[], groupEnd: number, damage: JournalDamage, rng: () => number,
): Promise<string> {
  const first = group[0]!
  const last = group.at(-1)!
  const pick = <T>(xs: T[]): T => xs[Math.floor(rng() * xs.length)]!
  const write = async (bytes: Buffer, at: number): Promise<void> => { await fh.write(bytes, 0, bytes.length, at) }
  switch (damage) {
    case 'none':
      return 'journal intact'
    case 'torn': {
      const boundaries: number[] = []
      for (let s = Math.ceil((first.start + 1) / SECTOR) * SECTOR; s < last.end; s += SECTOR) boundaries.push(s)
      const from = boundaries.length > 0 ? pick(boundaries) : first.start
      await write(Buffer.alloc(groupEnd - from), from)
      return `zero-filled bytes ${from}-${groupEnd} of a group of ${group.length} records at ${first.start}`
    }
    case 'rot': {
      const at = last.start + RECORD_HEADER_BYTES + Math.floor(rng() * (last.end - last.start - RECORD_HEADER_BYTES))
      await write(Buffer.from([buf[at]! ^ 0xff]), at)
      return `flipped the byte at ${at} in the payload of the last record (at ${last.start})`
    }
    case 'length': {
      const r = pick(group)
      return `${await flipLengthBit(fh, buf, r, rng)} (record ${group.indexOf(r) + 1} of ${group.length} in the last group)`
    }
    case 'older':
      throw new Error('older damage is not inside the last group')
  }
}

async function flipLengthBit(fh: Awaited<ReturnType<typeof open>>, buf: Buffer, r: RecordAt, rng: () => number): Promise<string> {
  const bit = Math.floor(rng() * 32)
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE((buf.readUInt32BE(r.start) ^ (2 ** bit)) >>> 0)
  await fh.write(bytes, 0, 4, r.start)
  return `flipped bit ${bit} of the length of the record at ${r.start}`
}

/** A seeded generator of [0, 1) (mulberry32), so a run's choices can be told and replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}
