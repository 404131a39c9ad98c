// One entry log being written (the current log, or a compaction's output), and the layout of
// `<dir>/entrylog-<10-digit id>.log`, which storage/entryLog.ts reads:
//   file header (16 bytes): ["QELG"][u32 BE version 1][u32 log id][u32 crc32c(bytes 0-11)]
//   record: [u32 payload length][u32 crc32c(payload)][u64 ledgerId][u64 entryId]
//           [u32 crc32c(record header bytes 0-23)][payload]
// A run of zeros up to a 4 KiB boundary may follow a record (the end of a direct write).

import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { crc32c } from '@node-rs/crc32'
import { writeU64, type EntryLocation } from './entryLogIndex.ts'
import type { StoredEntry } from './types.ts'
import { crc32cOf } from './crc32c.ts'
import { alignUp, alignedBuffer, openDirect } from './directIo.ts'

export const LOG_HEADER_BYTES = 16
export const RECORD_HEADER_BYTES = 28
const MAGIC = 0x51454c47 // "QELG"
const VERSION = 1

export function logFileName(id: number): string {
  return `entrylog-${String(id).padStart(10, '0')}.log`
}

/** Bytes a log writer stages before it writes them: a multiple of BLOCK_BYTES. */
const STAGE_BYTES = 1024 * 1024

/**
 * One log being appended to (the current log, or a compaction's output). Records are copied
 * into a page-aligned staging buffer and written from it in whole blocks, O_DIRECT where the file
 * system has it (storage/directIo.ts): a full buffer when it fills, the rest at sync() and
 * close(), padded with zeros to the block boundary, where the next record then starts. So a log
 * may hold a run of zeros after a record (up to BLOCK_BYTES - 1); records are found through the
 * index, never by walking the file. Bytes staged but not yet written are read from the buffer.
 * Appends, syncs and close run one at a time, in call order: the entry store's checkpoint syncs
 * while its adds go on, and a record staged while the stage is being written would otherwise be
 * dropped when the stage moves on (test/integration/entryLog.test.ts, "appends while a checkpoint syncs").
 */
export class LogWriter {
  private readonly stage = alignedBuffer(STAGE_BYTES)
  /** Bytes of the stage in use: they belong at stageStart onward. */
  private fill = 0
  /** File offset of the stage's first byte: a block boundary; everything before it is written. */
  private stageStart = 0
  private failure: Error | null = null
  /** The last append, sync or close called: the next one starts after it. */
  private turn: Promise<unknown> = Promise.resolve()

  private constructor(readonly id: number, readonly file: string, private readonly fh: FileHandle) {}

  /** Runs `fn` after every append, sync and close called before it. */
  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn)
    this.turn = run.catch(() => {})
    return run
  }

  static async create(dir: string, id: number): Promise<LogWriter> {
    const file = path.join(dir, logFileName(id))
    const { fh } = await openDirect(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)
    const w = new LogWriter(id, file, fh)
    // Staged like a record: written with the first block.
    const header = w.stage.subarray(0, LOG_HEADER_BYTES)
    header.writeUInt32BE(MAGIC, 0)
    header.writeUInt32BE(VERSION, 4)
    header.writeUInt32BE(id, 8)
    header.writeUInt32BE(crc32c(header.subarray(0, 12)), 12)
    w.fill = LOG_HEADER_BYTES
    return w
  }

  /** The end of the log: where the next record goes. */
  get size(): number {
    return this.stageStart + this.fill
  }

  /** Bytes before this offset are written (and stay as they are); later ones may be only staged. */
  get writtenEnd(): number {
    return this.stageStart
  }

  /** Appends the entries' records in one pass, copied into the stage (written as it fills). */
  append(entries: readonly StoredEntry[]): Promise<EntryLocation[]> {
    return this.inTurn(() => this.appendNow(entries))
  }

  private async appendNow(entries: readonly StoredEntry[]): Promise<EntryLocation[]> {
    if (this.failure !== null) throw this.failedError()
    const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES)
    const locs: EntryLocation[] = []
    try {
      for (const e of entries) {
        header.writeUInt32BE(e.data.byteLength, 0)
        // An entry the journal has just taken has its crc remembered (storage/crc32c.ts).
        header.writeUInt32BE(crc32cOf(e.data), 4)
        writeU64(header, 8, e.ledgerId)
        writeU64(header, 16, e.entryId)
        header.writeUInt32BE(crc32c(header.subarray(0, 24)), 24)
        locs.push({ logId: this.id, offset: this.size, length: e.data.byteLength })
        if (this.fill + RECORD_HEADER_BYTES + e.data.byteLength <= STAGE_BYTES) {
          // The common case, without a promise per record.
          header.copy(this.stage, this.fill)
          this.stage.set(e.data, this.fill + RECORD_HEADER_BYTES)
          this.fill += RECORD_HEADER_BYTES + e.data.byteLength
          continue
        }
        await this.put(header)
        await this.put(e.data)
      }
    } catch (err) {
      // Part of a record may be staged or written: this log takes no more records.
      this.failure = err instanceof Error ? err : new Error(String(err))
      throw err
    }
    return locs
  }

  /** Copies `src` into the stage, writing the stage whenever it is full. */
  private async put(src: Uint8Array): Promise<void> {
    for (let from = 0; from < src.byteLength;) {
      if (this.fill === STAGE_BYTES) await this.writeStage()
      const n = Math.min(src.byteLength - from, STAGE_BYTES - this.fill)
      this.stage.set(from === 0 && n === src.byteLength ? src : src.subarray(from, from + n), this.fill)
      this.fill += n
      from += n
    }
  }

  /** Writes the staged bytes, zero-padded to a block boundary; the next record starts there. */
  private async writeStage(): Promise<void> {
    if (this.fill === 0) return
    const bytes = alignUp(this.fill)
    this.stage.fill(0, this.fill, bytes)
    const { bytesWritten } = await this.fh.write(this.stage, 0, bytes, this.stageStart)
    // Short writes do not happen on regular files short of an error; refuse to index a hole.
    if (bytesWritten !== bytes) throw new Error(`short write to ${this.file}: ${bytesWritten} of ${bytes} bytes`)
    this.stageStart += bytes
    this.fill = 0
  }

  /**
   * Copies the staged bytes of [offset, offset + n) into `target` at `at` and returns how many
   * bytes from `offset` on are written instead (to be read from the file): 0 when the range
   * starts in the stage, n when it ends before it. Synchronous, so the stage cannot move meanwhile.
   */
  copyStaged(offset: number, n: number, target: Buffer, at: number): number {
    const onDisk = Math.max(0, Math.min(n, this.stageStart - offset))
    if (onDisk < n) this.stage.copy(target, at + onDisk, offset + onDisk - this.stageStart, offset + n - this.stageStart)
    return onDisk
  }

  /** Everything appended before it is durable when this resolves. */
  sync(): Promise<void> {
    return this.inTurn(async () => {
      if (this.failure !== null) throw this.failedError()
      await this.writeStage()
      await this.fh.datasync()
    })
  }

  /** Writes what is staged (not synced: a sync() before makes it durable) and closes the file. */
  close(): Promise<void> {
    return this.inTurn(async () => {
      try {
        if (this.failure === null) await this.writeStage()
      } finally {
        await this.fh.close()
      }
    })
  }

  private failedError(): Error {
    return new Error(`entry log ${this.file} failed (${this.failure?.message}); it takes no more records`, { cause: this.failure })
  }
}
