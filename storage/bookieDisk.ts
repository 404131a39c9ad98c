// What a bookie keeps on its disk, behind one interface: the journal (open a new segment, replay
// from a checkpoint, cut a failed one back), the entry store, the clean-stop marker and the disk's
// usage. `fileDisk` is the product's (journal files with fdatasync, RocksDB and entry logs, under
// the data folder); storage/memoryDisk.ts is the simulator's (MemoryJournal and MemoryEntryStore,
// with crash, power cut, torn tail and bit rot). The bookie (actors/bookie.ts) runs over either.
// Invariants: as storage/journal.ts and storage/entryStore.ts state them; the marker is written
// only after a close that checkpointed everything, and its removal is synced before the bookie
// serves, so a crash from then on is unclean.

import type { Dirent } from 'node:fs'
import { open, readdir, rm, stat, statfs } from 'node:fs/promises'
import path from 'node:path'
import type { CompactionResult } from './entryLogCompaction.ts'
import { openEntryStore, type DamageEvent, type StoreDamage } from './entryStore.ts'
import type { MigrationResult } from './entryLogMigration.ts'
import { listSegments, openJournal, replayJournal, segmentFileName, type JournalOptions, type ReplayEnding } from './journal.ts'
import { syncDir } from './syncDir.ts'
import type { EntryRef, EntryStore, Journal, JournalPosition, StoredLedgerState } from './types.ts'

/** In the data folder while the bookie is stopped cleanly (written by close, removed on start). */
export const CLEAN_STOP_FILE = 'clean-stop'

export interface DiskUsage {
  usage: number
  usedBytes: number
  totalBytes: number
}

/** A journal as a bookie holds it: appends, group-commit counters, and its on-disk position. */
export interface BookieJournal extends Journal {
  readonly stats: { syncs: number; records: number; bytes: number }
}

/** The entry store as a bookie uses it: the EntryStore contract plus damage, meta keys and compaction. */
/** `journal` with its appends made by `append` (which may call the journal's own); the rest read through. */
export function withAppend(journal: BookieJournal, append: BookieJournal['append']): BookieJournal {
  return {
    append,
    get syncedPosition() { return journal.syncedPosition },
    get pendingBytes() { return journal.pendingBytes },
    get stats() { return journal.stats },
    trimBefore: (position) => journal.trimBefore(position),
    close: () => journal.close(),
  }
}

export interface BookieEntryStore extends EntryStore {
  /** Like getEntries, with 'damaged' where the stored copy is unreadable (a repair is under way). */
  readEntries(refs: readonly EntryRef[]): Promise<(Buffer | null | 'damaged')[]>
  putLedgerStates(states: ReadonlyMap<number, StoredLedgerState>): Promise<void>
  getMeta(key: string): Promise<Buffer | null>
  putMeta(key: string, value: Uint8Array): Promise<void>
  readonly damage: StoreDamage
  damagedOf(ledgerId: number): number[]
  forgetDamaged(ledgerId: number, entryIds: readonly number[]): Promise<void>
  onDamage: (e: DamageEvent) => void
  /** What opening it migrated from an older layout, or null. */
  readonly migrated: MigrationResult | null
  compactEntryLogs(threshold: number): Promise<CompactionResult>
}

export interface BookieDisk {
  /** Where it is, for logs (the data folder). */
  readonly where: string
  /** The entry store; `readOnly` (a full disk) writes nothing and fails every write. */
  openStore(opts: { readOnly: boolean }): Promise<BookieEntryStore>
  /** The journal's good records after `from` (all when null), in order; a torn tail ends it (told in `ending`). */
  replayJournal(from: JournalPosition | null, ending?: ReplayEnding): AsyncIterable<{ record: Buffer; position: JournalPosition }>
  /** A new journal segment after every existing one. */
  openJournal(opts: JournalOptions): Promise<BookieJournal>
  /** A failed journal's segments cut back to `synced` (no torn tail may sit before a newer segment). */
  cutJournalBack(synced: JournalPosition): Promise<void>
  hasCleanStopMarker(): Promise<boolean>
  writeCleanStopMarker(): Promise<void>
  removeCleanStopMarker(): Promise<void>
  /** Usage: the filesystem's, or with `quotaBytes` > 0 the bytes held over the quota. */
  usage(quotaBytes: number): Promise<DiskUsage>
}

/** The product's disk: `dataDir/journal`, `dataDir/entries`, the marker file. */
export function fileDisk(dataDir: string, journalMetrics?: JournalOptions['metrics']): BookieDisk {
  const journalDir = path.join(dataDir, 'journal')
  return {
    where: dataDir,
    openStore: ({ readOnly }) => openEntryStore(path.join(dataDir, 'entries'), readOnly ? { readOnly } : {}),
    replayJournal: (from, ending) => replayJournal(journalDir, from, ending),
    openJournal: (opts) => openJournal(journalDir, { ...(journalMetrics ? { metrics: journalMetrics } : {}), ...opts }),
    cutJournalBack: async (synced) => {
      for (const segment of await listSegments(journalDir)) {
        if (segment < synced.segment) continue
        const fh = await open(path.join(journalDir, segmentFileName(segment)), 'r+')
        try {
          await fh.truncate(segment === synced.segment ? synced.offset : 0)
          await fh.sync()
        } finally {
          await fh.close()
        }
      }
    },
    hasCleanStopMarker: () => hasCleanStopMarker(dataDir),
    writeCleanStopMarker: () => writeCleanStopMarker(dataDir),
    removeCleanStopMarker: () => removeCleanStopMarker(dataDir),
    usage: (quotaBytes) => measureDiskUsage(dataDir, quotaBytes),
  }
}

export async function hasCleanStopMarker(dataDir: string): Promise<boolean> {
  return open(path.join(dataDir, CLEAN_STOP_FILE), 'r').then(async (fh) => { await fh.close(); return true }, () => false)
}

/** Written only after everything is synced and checkpointed: the next start needs no limbo. */
async function writeCleanStopMarker(dataDir: string): Promise<void> {
  const fh = await open(path.join(dataDir, CLEAN_STOP_FILE), 'w')
  try {
    await fh.writeFile(`${new Date().toISOString()}\n`)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await syncDir(dataDir)
}

/** Removed (and the removal synced) before the bookie serves: a crash from here on is unclean. */
export async function removeCleanStopMarker(dataDir: string): Promise<void> {
  await rm(path.join(dataDir, CLEAN_STOP_FILE), { force: true })
  await syncDir(dataDir)
}

/** Apparent size of the files under `dir` (files may vanish meanwhile: RocksDB, journal trims). */
export async function directoryBytes(dir: string): Promise<number> {
  let entries: Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
  let total = 0
  for (const e of entries) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) total += await directoryBytes(p)
    else if (e.isFile()) total += await stat(p).then((s) => s.size, () => 0)
  }
  return total
}

export async function measureDiskUsage(dataDir: string, quotaBytes: number): Promise<DiskUsage> {
  if (quotaBytes > 0) {
    const usedBytes = await directoryBytes(dataDir)
    return { usage: usedBytes / quotaBytes, usedBytes, totalBytes: quotaBytes }
  }
  const s = await statfs(dataDir)
  // Like df: what the filesystem reserves for root is neither used nor available to us.
  const used = (s.blocks - s.bfree) * s.bsize
  const total = used + s.bavail * s.bsize
  return { usage: total > 0 ? used / total : 0, usedBytes: used, totalBytes: total }
}
