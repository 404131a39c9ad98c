// Direct I/O for the journal and the entry logs: files opened O_DIRECT, written from page-aligned
// buffers in whole blocks, so payloads go from the process to the disk without a copy into the
// page cache. Measured on the 2-core machine the benchmarks run on: a buffered 256 KiB write cost
// 70-100 CPU-µs while the page cache was small and 780-890 once it had grown past about 1 GB (every
// new page-cache page is memory the host hands the guest afresh), an O_DIRECT one 55-65 throughout;
// a bookie writes each payload twice (journal, entry log), so at 256 KiB the copies into the page
// cache were about 40 % of its CPU.
// Invariants: a buffer from alignedBuffer starts on a page boundary (WebAssembly memory is
// allocated in whole pages) and is never resized; every write to a file opened here is BLOCK_BYTES
// aligned in position and length; where the file system refuses O_DIRECT (tmpfs), the file is
// opened without it and the same aligned writes go through the page cache.

import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { assert } from '../machines/errors.ts'

/** Alignment of direct writes: position, length and buffer address. A page, and the physical sector of common disks. */
export const BLOCK_BYTES = 4096
const WASM_PAGE_BYTES = 64 * 1024

/** `bytes` rounded up to a whole number of blocks. */
export function alignUp(bytes: number): number {
  return Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES
}

export function isAligned(n: number): boolean {
  return n % BLOCK_BYTES === 0
}

/**
 * A zero-filled Buffer of `bytes` (a multiple of BLOCK_BYTES) whose memory starts on a page
 * boundary, as O_DIRECT requires. Backed by a WebAssembly.Memory, which is allocated in whole
 * pages (JavaScript has no other way to an aligned address); freed when the Buffer is garbage.
 * V8 reserves about 10 GiB of address space per memory (only `bytes` of it is ever touched), so a
 * bookie's virtual size (VSZ) grows by that much per buffer it holds: the journal's, the current
 * entry log's, a compaction's, and the shared zeros. Its resident memory does not.
 */
export function alignedBuffer(bytes: number): Buffer {
  assert(bytes > 0 && isAligned(bytes), `an aligned buffer of ${bytes} bytes`)
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / WASM_PAGE_BYTES) })
  return Buffer.from(memory.buffer, 0, bytes)
}

/**
 * Opens `file` with `flags` plus O_DIRECT, or plain `flags` where the file system refuses
 * O_DIRECT (EINVAL). `direct` says which. Linux creates the file before it refuses O_DIRECT, so
 * the second open drops O_EXCL: the file it finds is the one the first open created. `openFile`:
 * fs.promises.open, or a test's stand-in for a file system without O_DIRECT.
 */
export async function openDirect(
  file: string,
  flags: number,
  openFile: (file: string, flags: number) => Promise<FileHandle> = open,
): Promise<{ fh: FileHandle; direct: boolean }> {
  try {
    return { fh: await openFile(file, flags | constants.O_DIRECT), direct: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
  }
  return { fh: await openFile(file, flags & ~constants.O_EXCL), direct: false }
}
