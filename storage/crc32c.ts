// crc32c (Castagnoli) as the bookie's storage uses it, with two savings for large entries: the
// crc of two byte runs joined is computed from their crcs and the second's length (no pass over
// the bytes), and the crc of a large entry is remembered for the entry itself, so the journal
// record that holds it and the entry-log record written from it later read its bytes for a
// checksum once, not twice (at 256 KiB a crc32c pass is about 40 µs of CPU on the benchmark
// machine, and a bookie made two per entry).
// Invariants: every function returns exactly what @node-rs/crc32's crc32c returns over the same
// bytes joined (test/unit/crc32c.test.ts checks it against that over random splits); a remembered crc is
// keyed by the Uint8Array object, whose bytes must not change afterwards, as the journal and the
// write cache already require of the entries they are given. A crc remembered wrongly could only
// make a record fail its check on read (reported as damage), never pass a damaged one.

import { crc32c } from '@node-rs/crc32'

/** An entry this large has its crc remembered, and is joined into a record's crc by combining. */
export const CRC_REMEMBER_BYTES_MIN = 16 * 1024

/** The reflected Castagnoli polynomial. */
const POLY = 0x82f63b78

/** a(x)·b(x) mod P(x), both as reflected 32-bit polynomials. */
function multiplyModP(a: number, b: number): number {
  let product = 0
  for (let m = 0x80000000; m !== 0; m >>>= 1) {
    if ((a & m) !== 0) {
      product ^= b
      if ((a & (m - 1)) === 0) break
    }
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1
  }
  return product >>> 0
}

/** X_POW_2K[k] = x^(2^k) mod P(x). */
const X_POW_2K: Uint32Array = (() => {
  const t = new Uint32Array(32)
  let p = 0x40000000 // x^1
  t[0] = p
  for (let k = 1; k < 32; k++) t[k] = p = multiplyModP(p, p)
  return t
})()

/** x^(8·bytes) mod P(x): what a crc is multiplied by to move it past `bytes` bytes. */
function shiftFor(bytes: number): number {
  let p = 0x80000000 // x^0
  let k = 3 // 8 = 2^3 bits per byte
  for (let n = bytes; n > 0; n = Math.floor(n / 2), k++) {
    if (n % 2 === 1) p = multiplyModP(X_POW_2K[k & 31]!, p)
  }
  return p
}

/** crc32c(a ‖ b) from crc32c(a), crc32c(b) and b's length in bytes. */
export function crc32cCombine(crcA: number, crcB: number, bytesB: number): number {
  if (bytesB === 0) return crcA >>> 0
  return (multiplyModP(shiftFor(bytesB), crcA >>> 0) ^ crcB) >>> 0
}

const remembered = new WeakMap<Uint8Array, number>()

/** crc32c of `bytes`; of a large entry, computed once and remembered for the same object. */
export function crc32cOf(bytes: Uint8Array): number {
  if (bytes.byteLength < CRC_REMEMBER_BYTES_MIN) return crc32c(bytes) >>> 0
  let crc = remembered.get(bytes)
  if (crc === undefined) {
    crc = crc32c(bytes) >>> 0
    remembered.set(bytes, crc)
  }
  return crc
}

/** crc32c of `parts` joined: small parts chained through the bytes, large ones combined from crc32cOf. */
export function crc32cOfParts(parts: readonly Uint8Array[]): number {
  let crc = 0
  for (const part of parts) {
    crc = part.byteLength < CRC_REMEMBER_BYTES_MIN ? crc32c(part, crc) >>> 0 : crc32cCombine(crc, crc32cOf(part), part.byteLength)
  }
  return crc
}

/** The crc remembered for `bytes`, if any (for tests: what the journal left for the entry log). */
export const rememberedCrc = (bytes: Uint8Array): number | undefined => remembered.get(bytes)
