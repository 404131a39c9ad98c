// The reader's replica rules (client/readHandle.ts) against scripted bookies: every entry's digest
// is verified; a corrupt copy, an error or a timeout moves on to the next bookie of the write
// set; NO_SUCH_ENTRY only when every bookie of the write set said so explicitly.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ReadHandleImpl as ReadHandle } from '../../client/readHandle.ts'
import { QuireError, isQuireError } from '../../machines/errors.ts'
import type { LedgerMetadata } from '../../storage/metadataStore.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { RC, type ReadLacResponse, type ReadResponse } from '../../transport/wire.ts'

const key = masterKeyOf('pw')
const md: LedgerMetadata = {
  ledgerId: 3, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'CLOSED', lastEntryId: 5, length: 6,
  segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }], customMetadata: {}, createdAt: 0, passwordCheck: '',
}
const good = (id: number): Buffer => encodeEntry('crc32c', key, 3, id, id - 1, 0, Buffer.from(`entry-${id}`))
const rotten = (id: number): Buffer => {
  const b = Buffer.from(good(id))
  b[b.length - 1] = b[b.length - 1]! ^ 0x01
  return b
}

type Answer = 'good' | 'rotten' | 'missing' | 'error' | 'timeout'
function bookies(script: (bookie: string, id: number) => Answer) {
  const asked: Array<[string, number]> = []
  return {
    asked,
    async read(bookieId: string, _l: number, ids: number[]): Promise<ReadResponse> {
      const entries: Array<[number, Uint8Array | null]> = []
      for (const id of ids) {
        asked.push([bookieId, id])
        const a = script(bookieId, id)
        if (a === 'timeout') throw new QuireError('TIMEOUT', 'scripted timeout')
        if (a === 'error') return { op: 'readResp', reqId: 0, bookieId, rc: RC.ERROR, entries: [] }
        entries.push(a === 'missing' ? [RC.NO_SUCH_ENTRY, null] : [RC.OK, a === 'good' ? good(id) : rotten(id)])
      }
      return { op: 'readResp', reqId: 0, bookieId, rc: RC.OK, entries }
    },
    async readLac(): Promise<ReadLacResponse> {
      throw new Error('not used')
    },
  }
}
const handle = (b: ReturnType<typeof bookies>) => new ReadHandle({ bookies: b, masterKey: key, readTimeoutMs: 100 }, md)

test('a corrupt copy is skipped for the next replica of the write set', async () => {
  // Entry 1's write set is b, c: b's copy is rotten.
  const b = bookies((bookie, id) => (bookie === 'b' && id === 1 ? 'rotten' : 'good'))
  const got = await handle(b).read(0, 5)
  assert.equal(got.map((e) => e.payload.toString()), [0, 1, 2, 3, 4, 5].map((i) => `entry-${i}`))
  assert.ok(b.asked.some(([x, id]) => x === 'c' && id === 1), 'entry 1 was read from c after b')
})

test('errors and timeouts move on too, they are never "missing"', async () => {
  const b = bookies((bookie) => (bookie === 'a' ? 'timeout' : bookie === 'b' ? 'error' : 'good'))
  // entry 0: {a, b} both fail -> cannot be read, and it is not NO_SUCH_ENTRY
  const err = await handle(b).read(0, 0).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'BOOKIE_UNAVAILABLE'), String(err))
  const ok = await handle(bookies((bookie) => (bookie === 'b' ? 'timeout' : 'good'))).read(1, 1)
  assert.is(ok[0]!.payload.toString(), 'entry-1')
})

test('NO_SUCH_ENTRY only when every bookie of the write set says so', async () => {
  const err = await handle(bookies(() => 'missing')).read(2, 2).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'NO_SUCH_ENTRY'))
  const mixed = await handle(bookies((bookie) => (bookie === 'c' ? 'missing' : 'timeout'))).read(2, 2).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(mixed, 'BOOKIE_UNAVAILABLE'), 'one explicit "no" and one unknown is not absence')
})

test('CORRUPT_ENTRY when every copy fails its digest', async () => {
  const err = await handle(bookies(() => 'rotten')).read(4, 4).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'CORRUPT_ENTRY'))
})

test('hmac-sha256: a copy written under another key fails verification', async () => {
  const hm = { ...md, digestType: 'hmac-sha256' as const }
  const other = masterKeyOf('other')
  const script = { read: async (bookieId: string, _l: number, ids: number[]): Promise<ReadResponse> => ({
    op: 'readResp', reqId: 0, bookieId, rc: RC.OK,
    entries: ids.map((id) => [RC.OK, encodeEntry('hmac-sha256', bookieId === 'a' ? other : key, 3, id, -1, 1, Buffer.from('v'))] as [number, Uint8Array]),
  }), readLac: async (): Promise<ReadLacResponse> => { throw new Error('unused') } }
  const r = new ReadHandle({ bookies: script, masterKey: key, readTimeoutMs: 100 }, hm)
  assert.is((await r.read(0, 0))[0]!.payload.toString(), 'v', 'a forged copy on a is skipped for b')
})

test.run()
