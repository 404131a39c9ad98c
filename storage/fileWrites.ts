// Positioned file writes that finish what they start: a writev list written whole (resumed after
// a short write), synchronously or through the thread pool, and zero-fills from one shared buffer.
// The journal (storage/journal.ts) writes its groups and zero-fills its segments with them.
// Invariants: a call writes exactly the bytes it is given, in order, at the given position, or
// throws; a buffer it is given is never written to (ZEROS included); `iovecs` may be changed (a
// buffer written in part is replaced by its rest), so callers pass a list they own.

import { writevSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { assert } from '../machines/errors.ts'
import { alignedBuffer } from './directIo.ts'

/**
 * The zeros a zero-fill writes, one buffer written again and again (writev lists it once per
 * ZEROS.length bytes) and shared by every journal of the process. A fresh Buffer.alloc per
 * zero-fill cost a 4 MiB memset, its page faults and a copy from cold memory each time, and its
 * external memory drove V8 garbage collections: with 256 KiB entries the zero-fill took as much
 * CPU as writing the records (about 5 CPU-µs per KiB against under 1 with this buffer). Never
 * written to: only ever a source of writes. Page-aligned, so files opened O_DIRECT take it.
 */
const ZEROS = alignedBuffer(256 * 1024)

/** Bytes of the shared zero buffer: a zero-fill lists it once per this many bytes. */
export const ZERO_FILL_BUFFER_BYTES = ZEROS.length

/**
 * Writes `bytes` bytes, the buffers of `iovecs` one after another, at `position`. libuv already
 * splits a list longer than IOV_MAX into several writev calls; a short write is resumed here
 * where it stopped (the buffer written in part is replaced in `iovecs` by its rest).
 */
export function writevFullySync(fd: number, iovecs: Uint8Array[], position: number, bytes: number): void {
  let done = 0
  let first = 0
  while (done < bytes) {
    const n = writevSync(fd, first === 0 ? iovecs : iovecs.slice(first), position + done)
    done += n
    first = skipWritten(iovecs, first, n)
  }
  if (done !== bytes || first !== iovecs.length) assert(false, `a group write of ${bytes} bytes wrote ${done}`)
}

/** writevFullySync through the thread pool. */
export async function writevFully(fh: FileHandle, iovecs: Uint8Array[], position: number, bytes: number): Promise<void> {
  let done = 0
  let first = 0
  while (done < bytes) {
    const { bytesWritten: n } = await fh.writev(first === 0 ? iovecs : iovecs.slice(first), position + done)
    done += n
    first = skipWritten(iovecs, first, n)
  }
  if (done !== bytes || first !== iovecs.length) assert(false, `a write of ${bytes} bytes wrote ${done}`)
}

/** After a write of `n` bytes from `iovecs[first..]`: the first buffer not written whole, the one written in part cut to its rest. */
function skipWritten(iovecs: Uint8Array[], first: number, n: number): number {
  assert(n > 0, 'a file write without an error wrote no bytes')
  while (first < iovecs.length && n >= iovecs[first]!.byteLength) n -= iovecs[first++]!.byteLength
  if (n > 0) iovecs[first] = iovecs[first]!.subarray(n)
  return first
}

/** Writes `bytes` zeros at `position`, from the shared ZEROS buffer. */
export async function writeZeros(fh: FileHandle, position: number, bytes: number): Promise<void> {
  const iovecs: Buffer[] = []
  for (let left = bytes; left > 0; left -= ZEROS.length) iovecs.push(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left))
  await writevFully(fh, iovecs, position, bytes)
}
