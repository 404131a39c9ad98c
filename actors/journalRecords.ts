// What a bookie writes in its journal (PROTOCOL.md "Bookie storage"): adds, master keys, fence
// marks and explicit LACs, each one msgpack record. The journal frames and checksums records;
// this file only gives them meaning.

import { Packr } from 'msgpackr'

const packr = new Packr({ useRecords: false })

export type JournalRecord =
  | { t: 'add'; l: number; e: Uint8Array[] }
  | { t: 'key'; l: number; k: Uint8Array; d?: string }
  | { t: 'fence'; l: number }
  | { t: 'lac'; l: number; lac: number }

export const encodeRecord = (r: JournalRecord): Buffer => packr.pack(r)
export const decodeRecord = (b: Uint8Array): JournalRecord => packr.unpack(b) as JournalRecord
