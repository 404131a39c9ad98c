// The soak section of the benchmark (`--soak`, or `--only soak`): issue 14's two long-run targets,
// "a bookie's RSS flat over 10,000,000 entries" and "its disk use back under 1.2x the live data
// after deleting half the ledgers and one compaction".
//
// One run, on its own nats-server and three bookie processes in a folder of the bench's temp dir:
//  1. write `entries` entries of `payloadBytes` round-robin over `ledgers` ledgers (E3/Qw2/Qa2),
//     `inFlight` at a time in all; each bookie's RSS (/proc/<pid>/status VmRSS) is read at
//     `samples` evenly spaced points. Flat means: RSS at the last point over RSS at the first
//     point after the warm-up (`warmupFraction` of the entries: the JIT, RocksDB's memtables and
//     block cache, the write cache and V8's heap limits settle in it) at most `rssBound`.
//  2. close the ledgers, wait for a checkpoint, measure each bookie's data folder, delete every other ledger (the
//     client's deleteLedger: metadata first, bookies reclaim later), and wait until each bookie's
//     garbage collection has deleted them all locally. The bookies run with a short GC interval
//     and every compaction major (--gc-interval-ms, --major-compaction-interval-ms 0), so the GC
//     that deletes them also compacts the entry logs they leave half dead (that GC's own
//     checkpoints trim the journal and compact the index's key ranges): one compaction.
//  3. measure each data folder again (allocated blocks, as du: journal, entry logs, RocksDB index)
//     against the live data that bookie holds: the payload bytes of the surviving entries it
//     stores (by the ledger's ensemble and write sets) plus a per-entry allowance for what a
//     stored entry cannot do without: its header and digest as encoded by the client (40 B), its
//     entry-log record header (28 B) and its index key and value (36 B), 104 B in all.
//
// Everything is stopped and removed by the caller's cleanup, also on error.

import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { readdir, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { connect, type WriteHandle } from '../client/index.ts'
import { freePort, startBookieProcess, startNatsServer, type BookieProcess } from '../cli/cluster.ts'
import { waitForBookies } from '../cli/sandbox.ts'
import { writeSetIndices } from '../machines/quorum.ts'
import { RECORD_HEADER_BYTES } from '../storage/entryLog.ts'
import { digestBytes, HEADER_BYTES } from '../transport/entry.ts'
import type { Cleanup } from './peers.ts'
import { QUORUM } from './peers.ts'

export const SOAK_ENTRIES_DEFAULT = 10_000_000
/** The product's checkpoint interval (machines/defaults.ts). */
export const SOAK_CHECKPOINT_MS_DEFAULT: number = ROLE_DEFAULTS.checkpointMs

/** Readings of the data folders after the GC, until two agree (see after the GC wait). */
const SETTLE_MS = 2_000
const SETTLE_READINGS_MAX = 30

/** Index key (ledgerId, entryId: 2 x u64) and value (log, offset, length) of one entry in RocksDB. */
const INDEX_BYTES_PER_ENTRY = 16 + 20

export interface SoakParams {
  entries: number
  payloadBytes: number
  ledgers: number
  /** Entries in flight over all ledgers. */
  inFlight: number
  /** RSS sample points, evenly spaced over the entries (the first at the first step). */
  samples: number
  /** Samples up to this fraction of the entries are the warm-up; the ratio's base is the first after it. */
  warmupFraction: number
  rssBound: number
  diskBound: number
  /**
   * Counted per surviving entry next to its payload: what every stored copy carries whatever the
   * engine (the entry's own header and crc32c digest, as the client encoded it) and the least the
   * entry-log engine adds (its record header, its index key and value).
   */
  allowanceBytesPerEntry: number
  gcIntervalMs: number
  /**
   * The bookies' checkpoint interval (the product's default, unless --soak-checkpoint-ms). The folders are measured before the
   * deletion once this long (and a second) has passed since the last add: by then each bookie has
   * checkpointed, so its entry logs hold every entry (not the journal and a staging buffer alone).
   */
  checkpointMs: number
  /** How long the bookies' GC may take to delete the deleted ledgers and compact. */
  gcTimeoutMs: number
}

export function soakParams(entries: number, checkpointMs = SOAK_CHECKPOINT_MS_DEFAULT): SoakParams {
  return {
    entries, payloadBytes: 100, ledgers: 64, inFlight: 1024, samples: 20, warmupFraction: 0.1, rssBound: 1.25, diskBound: 1.2,
    allowanceBytesPerEntry: HEADER_BYTES + digestBytes('crc32c') + RECORD_HEADER_BYTES + INDEX_BYTES_PER_ENTRY, gcIntervalMs: 2_000, checkpointMs, gcTimeoutMs: 1_800_000,
  }
}

export interface SoakPoint {
  entries: number
  seconds: number
}

export interface SoakBookieRss {
  bookie: string
  /** VmRSS in MiB at each point. */
  rssMiB: number[]
  /** Index of the first sample after the warm-up. */
  baseIndex: number
  /** The target's figure: the highest sample of the last quarter over the highest of the first quarter after the warm-up. */
  ratio: number
  /** The last sample over the first after the warm-up (one sample each: swings with the sawtooth). */
  lastOverBase: number
}

/**
 * RSS moves in a sawtooth of tens of MiB (memtables filling and flushing, V8's heap growing and
 * collected), so one sample against another says more about where each fell in its cycle than
 * about growth: the peaks of the first and last quarters after the warm-up are compared instead.
 */
export function rssPeakRatio(samples: readonly number[], baseIndex: number): number {
  const after = samples.slice(baseIndex)
  const q = Math.max(1, Math.floor(after.length / 4))
  return Math.max(...after.slice(-q)) / Math.max(...after.slice(0, q))
}

export interface SoakFolder {
  /** Allocated bytes (du) per top-level entry of the data folder, and their total. */
  parts: Record<string, number>
  totalBytes: number
}

export interface SoakBookieDisk {
  bookie: string
  before: SoakFolder
  after: SoakFolder
  liveEntriesBefore: number
  liveEntriesAfter: number
  /** Payload bytes + the allowance per entry. */
  liveBytesBefore: number
  liveBytesAfter: number
  ratioBefore: number
  /** The target's figure: the folder after the deletion and compaction over the live data. */
  ratioAfter: number
  /** Without the allowance: the folder over the surviving payload bytes alone. */
  ratioAfterPayloadOnly: number
  /** What the bookie's GC logged: ledgers deleted here, and its entry-log compactions. */
  gcDeletedLedgers: number
  compactions: Array<Record<string, unknown>>
}

export interface SoakResult {
  params: SoakParams
  writeSeconds: number
  entriesPerSec: number
  points: SoakPoint[]
  rss: SoakBookieRss[]
  deletedLedgers: number
  keptLedgers: number
  /** From the deletions until every bookie's GC had deleted them and compacted. */
  gcSeconds: number
  disk: SoakBookieDisk[]
}

const BOOKIES = 3
const BOOKIES_READY_TIMEOUT_MS = 30_000
const ADD_TIMEOUT_MS = 60_000

export async function runSoak(p: SoakParams, dir: string, cleanup: Cleanup, progress: (line: string) => void): Promise<SoakResult> {
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats'), args: ['-m', String(await freePort())] })
  cleanup.push(() => nats.stop())
  const bookies: Array<BookieProcess & { gc: GcLog }> = []
  for (let i = 1; i <= BOOKIES; i++) {
    const b = startBookieProcess({
      id: `soak-bookie-${i}`, data: path.join(dir, `bookie-${i}`), nats: nats.url,
      extraArgs: ['--gc-interval-ms', String(p.gcIntervalMs), '--major-compaction-interval-ms', '0', '--checkpoint-ms', String(p.checkpointMs)],
    })
    cleanup.push(() => b.stop())
    bookies.push({ ...b, gc: watchGc(b) })
  }
  const client = await connect({ servers: nats.url, name: 'quire-bench-soak', addTimeoutMs: ADD_TIMEOUT_MS })
  cleanup.push(() => client.close())
  await waitForBookies(client, BOOKIES, BOOKIES_READY_TIMEOUT_MS).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${bookies.map((b) => `--- ${b.id}\n${b.output().slice(-4000)}`).join('\n')}`)
  })

  // 1. Writes, with RSS samples.
  const writers: WriteHandle[] = []
  for (let i = 0; i < p.ledgers; i++) writers.push(await client.createLedger(QUORUM))
  const payload = randomBytes(p.payloadBytes)
  const step = Math.max(1, Math.floor(p.entries / p.samples))
  const points: SoakPoint[] = []
  const rssMiB: number[][] = bookies.map(() => [])
  const started = performance.now()
  let sampling: Promise<void> = Promise.resolve()
  const sample = (entries: number): void => {
    const seconds = (performance.now() - started) / 1000
    sampling = sampling.then(async () => {
      const rss = await Promise.all(bookies.map((b) => vmRssKiB(b.pid)))
      points.push({ entries, seconds })
      rss.forEach((kib, i) => rssMiB[i]!.push(kib / 1024))
      progress(`soak: ${entries} entries, ${seconds.toFixed(0)} s, bookie RSS ${rss.map((k) => (k / 1024).toFixed(0)).join(' / ')} MiB\n`)
    })
  }
  let next = 0
  let done = 0
  const worker = async (): Promise<void> => {
    while (next < p.entries) {
      const i = next++
      await writers[i % p.ledgers]!.append(payload)
      if (++done % step === 0 || done === p.entries) sample(done)
    }
  }
  await Promise.all(Array.from({ length: Math.min(p.inFlight, p.entries) }, worker))
  const writeSeconds = (performance.now() - started) / 1000
  await sampling
  await Promise.all(writers.map((w) => w.close()))

  // 2. Delete every other ledger; wait for each bookie's GC to reclaim them.
  const metadata = await Promise.all(writers.map((w) => client.getLedgerMetadata(w.ledgerId)))
  const ids = bookies.map((b) => b.id)
  const held = metadata.map((m) => entriesPerBookie(m, ids))
  progress(`soak: waiting ${(p.checkpointMs / 1000 + 1).toFixed(0)} s for every bookie to checkpoint before measuring its folder...\n`)
  await new Promise((r) => setTimeout(r, p.checkpointMs + 1000))
  const before = await Promise.all(bookies.map((b) => folderSize(b.data)))
  const doomed = writers.map((_, i) => i % 2 === 0)
  const gcStart = performance.now()
  const seen = bookies.map((b) => b.gc.deleted.size)
  progress(`soak: deleting ${doomed.filter(Boolean).length} of ${p.ledgers} ledgers, waiting for each bookie's GC and compaction...\n`)
  for (let i = 0; i < writers.length; i++) if (doomed[i]) await client.deleteLedger(writers[i]!.ledgerId)
  const expected = bookies.map((_, b) => writers.filter((w, i) => doomed[i] && held[i]![b]! > 0).map((w) => w.ledgerId))
  const deadline = Date.now() + p.gcTimeoutMs
  while (!bookies.every((b, i) => expected[i]!.every((id) => b.gc.deleted.has(id)))) {
    if (Date.now() > deadline) {
      throw new Error(`the bookies' GC did not delete the ${expected[0]!.length} deleted ledgers within ${p.gcTimeoutMs} ms\n` +
        bookies.map((b) => `--- ${b.id}\n${b.output().slice(-4000)}`).join('\n'))
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  const gcSeconds = (performance.now() - gcStart) / 1000
  // RocksDB drops the index's obsolete files in the background after the GC's range compactions:
  // measured once two readings SETTLE_MS apart agree within 1 % (at most SETTLE_READINGS_MAX).
  let after = await Promise.all(bookies.map((b) => folderSize(b.data)))
  for (let n = 0; n < SETTLE_READINGS_MAX; n++) {
    await new Promise((r) => setTimeout(r, SETTLE_MS))
    const next = await Promise.all(bookies.map((b) => folderSize(b.data)))
    const settled = next.every((f, i) => Math.abs(f.totalBytes - after[i]!.totalBytes) <= 0.01 * after[i]!.totalBytes)
    after = next
    if (settled) break
  }

  // 3. Folder over live data, per bookie.
  const liveOf = (b: number, keep: (i: number) => boolean): number => held.reduce((sum, h, i) => sum + (keep(i) ? h[b]! : 0), 0)
  const disk: SoakBookieDisk[] = bookies.map((b, i) => {
    const liveEntriesBefore = liveOf(i, () => true)
    const liveEntriesAfter = liveOf(i, (l) => !doomed[l])
    const liveBytes = (n: number): number => n * (p.payloadBytes + p.allowanceBytesPerEntry)
    return {
      bookie: b.id, before: before[i]!, after: after[i]!, liveEntriesBefore, liveEntriesAfter,
      liveBytesBefore: liveBytes(liveEntriesBefore), liveBytesAfter: liveBytes(liveEntriesAfter),
      ratioBefore: before[i]!.totalBytes / liveBytes(liveEntriesBefore),
      ratioAfter: after[i]!.totalBytes / liveBytes(liveEntriesAfter),
      ratioAfterPayloadOnly: after[i]!.totalBytes / (liveEntriesAfter * p.payloadBytes),
      gcDeletedLedgers: b.gc.deleted.size - seen[i]!, compactions: b.gc.compactions.slice(),
    }
  })
  const baseIndex = Math.min(points.length - 1, points.findIndex((pt) => pt.entries > p.warmupFraction * p.entries))
  const rss: SoakBookieRss[] = bookies.map((b, i) => ({
    bookie: b.id, rssMiB: rssMiB[i]!, baseIndex, ratio: rssPeakRatio(rssMiB[i]!, baseIndex),
    lastOverBase: rssMiB[i]![rssMiB[i]!.length - 1]! / rssMiB[i]![baseIndex]!,
  }))
  return {
    params: p, writeSeconds, entriesPerSec: p.entries / writeSeconds, points, rss,
    deletedLedgers: doomed.filter(Boolean).length, keptLedgers: doomed.filter((d) => !d).length, gcSeconds, disk,
  }
}

/** Entries of a closed ledger stored on each of `bookies` (by its segments' ensembles and write sets). */
export function entriesPerBookie(m: { lastEntryId: number; ensembleSize: number; writeQuorum: number; segments: ReadonlyArray<{ firstEntryId: number; ensemble: readonly string[] }> }, bookies: readonly string[]): number[] {
  const counts = bookies.map(() => 0)
  m.segments.forEach((s, k) => {
    const end = k + 1 < m.segments.length ? m.segments[k + 1]!.firstEntryId - 1 : m.lastEntryId
    const at = s.ensemble.map((id) => bookies.indexOf(id))
    // Write sets repeat every ensembleSize entries: count one period, then the remainder.
    const n = end - s.firstEntryId + 1
    if (n <= 0) return
    for (let e = s.firstEntryId; e < s.firstEntryId + Math.min(n, m.ensembleSize); e++) {
      const times = Math.floor((end - e) / m.ensembleSize) + 1
      for (const idx of writeSetIndices(e, m.ensembleSize, m.writeQuorum)) if (at[idx]! >= 0) counts[at[idx]!]! += times
    }
  })
  return counts
}

/** Allocated bytes (st_blocks x 512, as du counts) of every file under each top-level entry of `dir`. */
export async function folderSize(dir: string): Promise<SoakFolder> {
  const parts: Record<string, number> = {}
  let totalBytes = 0
  for (const name of await readdir(dir)) {
    const bytes = await allocated(path.join(dir, name))
    parts[name] = bytes
    totalBytes += bytes
  }
  return { parts, totalBytes }
}

async function allocated(file: string): Promise<number> {
  const s = await stat(file).catch(() => null) // removed meanwhile
  if (s === null) return 0
  if (!s.isDirectory()) return s.blocks * 512
  let sum = 0
  for (const name of await readdir(file).catch(() => [])) sum += await allocated(path.join(file, name))
  return sum
}

async function vmRssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  if (!m) throw new Error(`/proc/${pid}/status has no VmRSS line (the bookie exited?)`)
  return Number(m[1])
}

interface GcLog {
  /** Ledger ids the bookie's GC logged as deleted. */
  deleted: Set<number>
  /** The bookie's "entry logs compacted" lines. */
  compactions: Array<Record<string, unknown>>
}

/** Follows a bookie's log lines (pino JSON on stdout) for its GC's deletions and compactions. */
function watchGc(b: BookieProcess): GcLog {
  const gc: GcLog = { deleted: new Set(), compactions: [] }
  let partial = ''
  b.proc.stdout?.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (!line.includes('"gc deleted ledgers"') && !line.includes('"entry logs compacted"')) continue
      let rec: Record<string, unknown>
      try {
        rec = JSON.parse(line) as Record<string, unknown>
      } catch {
        continue
      }
      if (rec['msg'] === 'gc deleted ledgers' && Array.isArray(rec['ledgers'])) for (const id of rec['ledgers']) gc.deleted.add(Number(id))
      if (rec['msg'] === 'entry logs compacted') {
        const { level: _l, time: _t, pid: _p, hostname: _h, msg: _m, ...fields } = rec
        gc.compactions.push(fields)
      }
    }
  })
  return gc
}
