// A Quire process whose NATS server goes silent without closing the socket (what a network
// partition of that server looks like from the client, see docs/cluster.md) must move to another
// server of its list on its own. nats.js's default PING (every 2 min, 2 unanswered) kept it on the
// silent server for minutes; transport/nats.ts PINGs every 2 s. Real nats-servers: the home one is
// frozen with SIGSTOP (its socket stays open and it answers nothing), the other takes over.
// And a JetStream API that takes requests but never answers (a cluster without a quorum can leave
// a request unanswered for the client's whole 5 s API timeout): a starting node's metadata open
// gives up at its own deadline, not an API timeout after it.

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { openMetadataRetrying } from '../../storage/openMetadata.ts'
import { isQuireError } from '../../machines/errors.ts'

const t = suite('natsSilentServer')

t('a client leaves a server that stopped answering and carries on on the next one', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-silent-'))
  const servers: NatsServer[] = []
  let nc: NatsConnection | null = null
  try {
    servers.push(await startNatsServer({ storeDir: path.join(dir, 'a') }), await startNatsServer({ storeDir: path.join(dir, 'b') }))
    const [home, other] = servers as [NatsServer, NatsServer]
    nc = await connectNats([home.url, other.url], { name: 'silent-server-test' })
    assert.is(nc.info?.port, home.port, 'connected to the first URL')
    const frozenAt = Date.now()
    home.kill('SIGSTOP')
    // nats.js leaves after its PINGs go unanswered (2 s apart, 2 allowed: 4-6 s), then dials the
    // frozen server once more (bounded at 2 s) and the other one. Generous for a loaded machine;
    // with nats.js's default it would take at least 4 minutes.
    const deadline = frozenAt + 30_000
    while (nc.info?.port !== other.port) {
      assert.ok(Date.now() < deadline, `still on the frozen server after ${Date.now() - frozenAt} ms`)
      await new Promise((r) => setTimeout(r, 100))
    }
    // And it works there: a request-reply round trip through the other server.
    const sub = nc.subscribe('silent.echo', { callback: (_err, msg) => { msg.respond(msg.data) } })
    const reply = await nc.request('silent.echo', 'ping', { timeout: 5000 })
    assert.is(reply.string(), 'ping')
    sub.unsubscribe()
  } finally {
    for (const s of servers) s.kill('SIGCONT')
    await nc?.close().catch(() => {})
    await Promise.all(servers.map((s) => s.stop()))
    await rm(dir, { recursive: true, force: true })
  }
})

t('opening the metadata store against a JetStream API that never answers gives up at timeoutMs', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-silent-js-'))
  let server: NatsServer | null = null
  let nc: NatsConnection | null = null
  try {
    // No JetStream on this server: a subscriber that never replies takes the API's requests.
    const config = path.join(dir, 'no-js.conf')
    await writeFile(config, 'max_payload: 1MB\n')
    server = await startNatsServer({ storeDir: path.join(dir, 's'), config })
    nc = await connectNats([server.url], { name: 'silent-js-test' })
    nc.subscribe('$JS.API.>', { callback: () => {} })
    await nc.flush()
    const timeoutMs = 1500
    const t0 = Date.now()
    const err = await openMetadataRetrying(nc, { metadataReplicas: 1 }, { timeoutMs }).then(() => null, (e: unknown) => e)
    const tookMs = Date.now() - t0
    assert.ok(isQuireError(err, 'TIMEOUT'), `expected TIMEOUT, got ${String(err)}`)
    assert.match((err as Error).message, /did not answer within 1500 ms/)
    assert.ok(tookMs >= timeoutMs && tookMs < timeoutMs + 1000, `gave up after ${tookMs} ms`)
  } finally {
    await nc?.close().catch(() => {})
    await server?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

t.run()
