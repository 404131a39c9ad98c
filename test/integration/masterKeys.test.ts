// The master-key service of bookies for replication workers (actors/masterKeys.ts), on a real
// nats-server: a worker gets a ledger's key from the first bookie that holds it and only if it
// matches the metadata's password check value (a bookie answering with another key is not
// believed); an unknown ledger, a malformed request and a bookie that does not answer give
// nothing; a malformed request is answered BAD_REQUEST and the service goes on answering.

import path from 'node:path'
import os from 'node:os'
import { mkdtemp, rm } from 'node:fs/promises'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { fetchMasterKey, masterKeySubject, serveMasterKeys } from '../../actors/masterKeys.ts'
import { masterKeyOf, passwordCheckOf } from '../../transport/entry.ts'
import { natsNetwork } from '../../transport/network.ts'

test('a worker takes only a key that matches the check value; unknown ledgers, bad requests and silent bookies give none', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-master-keys-'))
  let nats: NatsServer | undefined
  let nc: NatsConnection | undefined
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    nc = await connect({ servers: nats.url })
    const key = masterKeyOf('pw')
    const check = passwordCheckOf(key)
    const asked: number[] = []
    const network = natsNetwork(nc)
    serveMasterKeys(network, 'liar', { ledgerKey: async () => ({ masterKey: masterKeyOf('not-it'), digestType: 'crc32c' }) })
    serveMasterKeys(network, 'holder', { ledgerKey: async (id) => { asked.push(id); return id === 7 ? { masterKey: key, digestType: 'crc32c' } : null } })
    await nc.flush()
    // The liar is asked first and not believed; the holder's key matches.
    assert.equal(await fetchMasterKey(nc, 7, check, ['liar', 'silent', 'holder'], 500), key)
    assert.is(await fetchMasterKey(nc, 8, check, ['holder'], 500), null, 'a ledger the bookie does not hold')
    assert.is(await fetchMasterKey(nc, 7, check, ['liar', 'silent'], 300), null)
    const bad = await nc.request(masterKeySubject('holder'), Buffer.from('{"ledgerId": -1}'), { timeout: 1000 })
    assert.equal(JSON.parse(Buffer.from(bad.data).toString()), { error: 'BAD_REQUEST' })
    const junk = await nc.request(masterKeySubject('holder'), Buffer.from([0xff, 0x00, 0x7b]), { timeout: 1000 })
    assert.equal(JSON.parse(Buffer.from(junk.data).toString()), { error: 'BAD_REQUEST' })
    assert.equal(asked, [7, 8], 'malformed requests never reach the store')
    assert.equal(await fetchMasterKey(nc, 7, check, ['holder'], 500), key, 'still answering')
  } finally {
    await nc?.close()
    await nats?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
