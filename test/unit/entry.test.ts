// A bookie's checks of the copies it stores (transport/entry.ts): a copy is intact unless it fails
// the ledger's digest; the LAC it carries is trusted only from an intact copy (PROTOCOL.md: a LAC
// read from a corrupt header must never reach recovery).

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encodeEntry, masterKeyOf, storedCopyIntact, trustedLac } from '../../transport/entry.ts'

const key = masterKeyOf('pw')
const good = encodeEntry('crc32c', key, 7, 3, 2, 10, Buffer.from('payload'))
const rotten = Buffer.from(good)
rotten[rotten.length - 1]! ^= 0x01
const rottenHeader = Buffer.from(good)
rottenHeader[17]! ^= 0x40 // inside the header's LAC field

test('an intact copy passes and gives its LAC', () => {
  assert.ok(storedCopyIntact(good, 7, 3, 'crc32c', key))
  assert.is(trustedLac(good, 7, 3, 'crc32c', key), 2)
})

test('a rotten payload or header fails, and its LAC is not trusted', () => {
  for (const copy of [rotten, rottenHeader]) {
    assert.not.ok(storedCopyIntact(copy, 7, 3, 'crc32c', key))
    assert.is(trustedLac(copy, 7, 3, 'crc32c', key), null)
  }
})

test('without the master key or digest type a copy cannot be checked: intact, LAC from a matching header', () => {
  assert.ok(storedCopyIntact(rotten, 7, 3, null, null))
  assert.is(trustedLac(good, 7, 3, null, null), 2)
  assert.is(trustedLac(good, 7, 4, null, null), null, 'a header naming another entry is not trusted')
})

test('a digest type the bookie does not know fails closed: not intact, no LAC trusted', () => {
  for (const type of ['md5', 'CRC32C', '', 'none ']) {
    assert.not.ok(storedCopyIntact(good, 7, 3, type, key), `digest type ${JSON.stringify(type)}`)
    assert.is(trustedLac(good, 7, 3, type, key), null)
  }
})

test.run()
