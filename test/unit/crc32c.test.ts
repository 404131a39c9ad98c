// storage/crc32c.ts against @node-rs/crc32 over the same bytes joined: combining two crcs, the crc
// of a record's parts however they are split, and a large entry's crc remembered by the journal
// for the entry log (the same value a pass over its bytes gives), and the journal record whose crc
// was joined from it replaying whole.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { crc32c } from '@node-rs/crc32'
import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CRC_REMEMBER_BYTES_MIN, crc32cCombine, crc32cOf, crc32cOfParts, rememberedCrc } from '../../storage/crc32c.ts'
import { openJournal } from '../../storage/journal.ts'
import { replayJournal } from '../../storage/journalReplay.ts'

const joined = (parts: Uint8Array[]): number => crc32c(Buffer.concat(parts)) >>> 0

test('crc32cCombine(crc(a), crc(b), |b|) is crc(a ‖ b), for any lengths', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 70_000 }), (a, b) => {
    assert.is(crc32cCombine(crc32c(Buffer.from(a)) >>> 0, crc32c(Buffer.from(b)) >>> 0, b.byteLength), joined([a, b]))
  }), { numRuns: 200 })
})

test('crc32cOfParts is the crc of the parts joined, small and large parts mixed, empty ones too', () => {
  const part = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: CRC_REMEMBER_BYTES_MIN - 2, max: CRC_REMEMBER_BYTES_MIN * 5 }).map((n) => {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i += 997) b[i] = (i * 31) & 255
    return b
  }))
  fc.assert(fc.property(fc.array(part, { maxLength: 6 }), (parts) => {
    assert.is(crc32cOfParts(parts), joined(parts))
  }), { numRuns: 150 })
})

test('a large entry\'s crc is remembered for that object; a small one\'s is not', () => {
  const big = Buffer.alloc(CRC_REMEMBER_BYTES_MIN, 3)
  const small = Buffer.alloc(CRC_REMEMBER_BYTES_MIN - 1, 3)
  assert.is(crc32cOf(big), joined([big]))
  assert.is(rememberedCrc(big), joined([big]))
  assert.is(crc32cOf(small), joined([small]))
  assert.is(rememberedCrc(small), undefined)
  assert.is(rememberedCrc(Buffer.from(big)), undefined, 'keyed by the object, not the bytes')
})

test('the journal remembers the crc of a large entry it takes, the value its entry-log record needs', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-crc-'))
  try {
    const journal = await openJournal(dir, { groupWaitMs: 0 })
    const head = Buffer.from('record head')
    const entry = Buffer.alloc(256 * 1024, 9)
    await journal.append([head, entry])
    assert.is(rememberedCrc(entry), joined([entry]))
    await journal.close()
    // The record's crc, joined from the remembered one, is what replay checks the bytes against.
    const replayed: Buffer[] = []
    for await (const { record } of replayJournal(dir, null)) replayed.push(record)
    assert.is(replayed.length, 1)
    assert.ok(replayed[0]!.equals(Buffer.concat([head, entry])), 'the record replays whole')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
