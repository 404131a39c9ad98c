// What a bookie writes in its journal (PROTOCOL.md "Bookie storage"): adds, master keys, fence
// marks and explicit LACs, each one msgpack record. The journal frames and checksums records;
// this file only gives them meaning.
//
// Every record is built from a frame that passed transport/validate.ts, so it holds what RocksDB
// asserts (ids in [0, 2^53), LAC -1 or an id, master key bytes, a known digest type).
// `recordProblem` checks the same on replay: a record that fails it can only have been written
// by an older version that journaled frames unchecked, and replay skips it (actors/bookieStorage.ts)
// instead of refusing to start.

import { Packr } from 'msgpackr'
import { entryProblem, isDigestType, isId, isLac, isMasterKey } from '../transport/validate.ts'

const packr = new Packr({ useRecords: false })

export type JournalRecord =
  | { t: 'add'; l: number; e: Uint8Array[] }
  | { t: 'key'; l: number; k: Uint8Array; d?: string }
  | { t: 'fence'; l: number }
  | { t: 'lac'; l: number; lac: number }

export const encodeRecord = (r: JournalRecord): Buffer => packr.pack(r)
export const decodeRecord = (b: Uint8Array): JournalRecord => packr.unpack(b) as JournalRecord

/** Why a decoded record cannot be applied; null when it can. Never throws. */
export function recordProblem(r: unknown): string | null {
  if (typeof r !== 'object' || r === null) return `record is ${r === null ? 'null' : typeof r}, not a map`
  const f = r as Record<string, unknown>
  if (typeof f.t !== 'string') return 'record without a type'
  if (!isId(f.l)) return `record ${String(f.t)} names ledger ${String(f.l)}`
  switch (f.t) {
    case 'add': {
      if (!Array.isArray(f.e)) return 'add record without entries'
      for (const data of f.e as unknown[]) {
        // Add records do not carry the digest type: the header, not the size, is checked.
        const p = entryProblem(data, f.l, null)
        if (p) return `add record of ledger ${f.l}: ${p}`
      }
      return null
    }
    case 'key':
      if (!isMasterKey(f.k)) return `key record of ledger ${f.l} has no valid master key`
      // Records of older versions may lack the digest type; one they name must be known.
      if (f.d !== undefined && f.d !== null && !isDigestType(f.d)) return `key record of ledger ${f.l} names digest type ${String(f.d)}`
      return null
    case 'fence':
      return null
    case 'lac':
      return isLac(f.lac) ? null : `lac record of ledger ${f.l} has LAC ${String(f.lac)}`
    default:
      return `unknown record type ${String(f.t)}`
  }
}
