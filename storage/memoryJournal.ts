// In-memory Journal double for unit tests and the deterministic simulator. Same contract as
// FileJournal: an append resolves only once synced, positions strictly increase, replay gives
// back the synced records in order. The object plays the disk; it outlives simulated crashes.
//
// Fault model:
// - A record is durable once synced: by `sync()`, or with `autoSync` (the default) by a microtask
//   after the append, so appends made in the same tick share one sync, like a group commit.
// - `crash()`: the process dies or the power goes. Unsynced records vanish and their promises
//   reject. Afterwards the journal acts as if freshly reopened: a new segment, open for appends.
// - `tearTail()`: the last synced record is torn (power loss on a disk that lied about its sync,
//   or bit rot). `replay()` treats it as the real journal does: as the last record it is dropped
//   (the file is truncated); with records after it, replay throws CORRUPT_JOURNAL.
// Offsets use the real framing (segment header, then record header + payload per record) so
// positions look like real ones.

import { QuireError, assert } from '../machines/errors.ts'
import type { ReplayEnding } from './journalReplay.ts'
import { JOURNAL_RECORD_HEADER_BYTES as HEADER_BYTES, JOURNAL_SEGMENT_HEADER_BYTES as START, type Journal, type JournalPosition } from './types.ts'

interface Stored {
  readonly record: Buffer
  readonly position: JournalPosition
  torn: boolean
}

interface Unsynced {
  readonly stored: Stored
  resolve(position: JournalPosition): void
  reject(err: Error): void
}

export class MemoryJournal implements Journal {
  readonly stats = { syncs: 0, records: 0, bytes: 0 }
  private readonly autoSync: boolean
  private readonly disk: Stored[] = []
  private unsynced: Unsynced[] = []
  private segment = 0
  private offset = START
  private synced: JournalPosition = { segment: 0, offset: START }
  private syncScheduled = false
  private closed = false

  constructor(opts: { autoSync?: boolean } = {}) {
    this.autoSync = opts.autoSync ?? true
  }

  get syncedPosition(): JournalPosition {
    return this.synced
  }

  get pendingBytes(): number {
    return this.unsynced.reduce((sum, u) => sum + HEADER_BYTES + u.stored.record.length, 0)
  }

  async append(parts: Uint8Array | readonly Uint8Array[]): Promise<JournalPosition> {
    if (this.closed) throw new Error('memory journal is closed')
    // A copy (joined, for a record in parts): the double keeps what was appended, not the caller's buffers.
    const record = parts instanceof Uint8Array ? Buffer.from(parts) : Buffer.concat(parts)
    assert(record.length > 0, 'journal records are not empty')
    this.offset += HEADER_BYTES + record.length
    const stored = { record, position: { segment: this.segment, offset: this.offset }, torn: false }
    return new Promise<JournalPosition>((resolve, reject) => {
      this.unsynced.push({ stored, resolve, reject })
      if (this.autoSync && !this.syncScheduled) {
        this.syncScheduled = true
        queueMicrotask(() => {
          this.syncScheduled = false
          this.sync()
        })
      }
    })
  }

  /** Makes every waiting record durable and resolves its promise. */
  sync(): void {
    const group = this.unsynced
    if (group.length === 0) return
    this.unsynced = []
    this.stats.syncs += 1
    for (const u of group) {
      this.disk.push(u.stored)
      this.synced = u.stored.position
      this.stats.records += 1
      this.stats.bytes += HEADER_BYTES + u.stored.record.length
      u.resolve(u.stored.position)
    }
  }

  crash(): void {
    const lost = this.unsynced
    this.unsynced = []
    for (const u of lost) u.reject(new Error('journal crashed before this record was synced'))
    this.reopen()
  }

  /** Open for appends in a new segment (a process start after close() or a crash). */
  reopen(): void {
    this.segment += 1
    this.offset = START
    this.synced = { segment: this.segment, offset: START }
    this.closed = false
  }

  /** Every synced record still on disk and not torn, oldest first (for a simulator's checkers: no side effect). */
  syncedRecords(): Buffer[] {
    return this.disk.filter((s) => !s.torn).map((s) => s.record)
  }

  /** The last synced record still on disk (what `tearTail()` would damage), or null. */
  get lastRecord(): Buffer | null {
    const last = this.disk.at(-1)
    return last === undefined || last.torn ? null : Buffer.from(last.record)
  }

  tearTail(): void {
    const last = this.disk.at(-1)
    assert(last !== undefined, 'tearTail needs a synced record')
    last.torn = true
  }

  /** Synced records past `from` (all when null), in order, with the position just past each. */
  async *replay(from: JournalPosition | null, ending?: ReplayEnding): AsyncGenerator<{ record: Buffer; position: JournalPosition }> {
    for (let i = 0; i < this.disk.length; i++) {
      const stored = this.disk[i]
      if (stored === undefined || (from !== null && !isAfter(stored.position, from))) continue
      if (stored.torn) {
        if (i === this.disk.length - 1) {
          this.disk.pop() // the real replay truncates a torn tail
          if (ending) ending.damaged = { file: `memory:${stored.position.segment}`, offset: stored.position.offset, reason: 'torn record at the tail' }
          return
        }
        const { segment, offset } = stored.position
        throw new QuireError('CORRUPT_JOURNAL', `memory journal is corrupt before segment ${segment} offset ${offset}`, {
          file: `memory:${segment}`,
          offset: offset - HEADER_BYTES - stored.record.length,
        })
      }
      yield { record: Buffer.from(stored.record), position: stored.position }
    }
  }

  async trimBefore(position: JournalPosition): Promise<void> {
    const keepFrom = Math.min(position.segment, this.segment)
    const firstKept = this.disk.findIndex((s) => s.position.segment >= keepFrom)
    this.disk.splice(0, firstKept === -1 ? this.disk.length : firstKept)
  }

  async close(): Promise<void> {
    this.sync()
    this.closed = true
  }
}

function isAfter(a: JournalPosition, b: JournalPosition): boolean {
  return a.segment > b.segment || (a.segment === b.segment && a.offset > b.offset)
}
