// `quire node` on a NATS that asks for a login (cli/natsSettings.ts, real processes): a bookie node
// given its user by flag and its password by QUIRE_NATS_PASSWORD registers and takes adds over its
// own connection; an auditor node reads its password from --nats-password-file and its HTTP server
// asks for the httpToken from QUIRE_HTTP_TOKEN; `quire shell` and the inspector log in with the same
// flags and variables; the "starting" log line shows the password as *** and no output of either
// node holds a secret; a wrong password ends the node with `error NATS_AUTH: ...` (exit 1, no stack
// trace) long before the connect timeout. On a server with per-user permissions, refusals are
// logged and typed: a client that may not publish to bookies gets NATS_AUTH at once for its reads
// and its appends.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { freePort, REPO_ROOT, startNatsServer, startNodeProcess, type ManagedProcess, type NatsServer } from '../../cli/cluster.ts'
import { connect } from '../../client/index.ts'
import { cleanEnv, quire } from '../support/nodes.ts'

const PASSWORD = 'pw-3f9a-node'
const test = suite('node on a NATS with a login')
let dir = ''
let nats: NatsServer | null = null
const nodes: ManagedProcess[] = []

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'quire-node-auth-'))
  nats = await startNatsServer({ storeDir: path.join(dir, 'nats'), args: ['--user', 'alice', '--pass', PASSWORD] })
})

test.after(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  await nats?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function logged(node: ManagedProcess, msg: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!node.output().includes(`"msg":"${msg}"`)) {
    if (node.proc.exitCode !== null) throw new Error(`node exited ${node.proc.exitCode}:\n${node.output()}`)
    if (Date.now() > deadline) throw new Error(`no "${msg}" in 30 s:\n${node.output()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('a bookie node logs in with the password from the environment, registers and takes adds; the password is never printed', async () => {
  const node = startNodeProcess({
    args: ['--nats', nats!.url, '--nats-user', 'alice', '--data', path.join(dir, 'b1'), '--id', 'authb1', '--heartbeat-ms', '200'],
    env: cleanEnv({ QUIRE_NATS_PASSWORD: PASSWORD }),
  })
  nodes.push(node)
  await logged(node, 'bookie ready')
  const starting = JSON.parse(node.output().split('\n').find((l) => l.includes('"msg":"starting"'))!) as { settings: Record<string, unknown>; sources: Record<string, string> }
  assert.is(starting.settings['natsPassword'], '***')
  assert.is(starting.sources['natsPassword'], 'env')
  assert.is(starting.settings['natsUser'], 'alice')
  const client = await connect({ servers: nats!.url, auth: { user: 'alice', pass: PASSWORD } })
  try {
    const w = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
    assert.equal(w.metadata.segments[0]!.ensemble, ['authb1'])
    await w.append(Buffer.from('over a login'))
    await w.close()
    const r = await client.openLedger(w.ledgerId)
    assert.is(Buffer.from((await r.read(0, 0))[0]!.payload).toString(), 'over a login')
  } finally {
    await client.close()
  }
  assert.not.ok(node.output().includes(PASSWORD), 'the password is in the node\'s output')
})

test('an auditor node reads its password from --nats-password-file; its HTTP server asks for the httpToken', async () => {
  const file = path.join(dir, 'nats-password')
  await writeFile(file, `${PASSWORD}\n`, { mode: 0o600 })
  const HTTP_TOKEN = 'http-tok-91c2'
  const port = await freePort()
  const node = startNodeProcess({
    args: ['--roles', 'auditor', '--nats', nats!.url, '--nats-user', 'alice', '--nats-password-file', file, '--http-port', String(port)],
    env: cleanEnv({ QUIRE_HTTP_TOKEN: HTTP_TOKEN }),
  })
  nodes.push(node)
  await logged(node, 'node ready')
  assert.not.ok(node.output().includes(PASSWORD))
  assert.not.ok(node.output().includes(HTTP_TOKEN))
  const url = `http://127.0.0.1:${port}/heartbeat`
  const refused = await fetch(url)
  assert.is(refused.status, 401)
  assert.is(((await refused.json()) as { code: string }).code, 'UNAUTHORIZED')
  assert.is((await fetch(url, { headers: { authorization: `Bearer ${HTTP_TOKEN}` } })).status, 200)
})

test('quire shell logs in with the same flags and variables: the user by flag or QUIRE_NATS_USER, the password by QUIRE_NATS_PASSWORD or --nats-password-file', async () => {
  const byEnv = await quire(['shell', 'listbookies', '--nats', nats!.url, '--nats-user', 'alice'], cleanEnv({ QUIRE_NATS_PASSWORD: PASSWORD }))
  assert.is(byEnv.code, 0, byEnv.stderr)
  assert.match(byEnv.stdout, /^authb1\twritable\talive/m)
  const file = path.join(dir, 'shell-password')
  await writeFile(file, PASSWORD, { mode: 0o600 })
  const byFile = await quire(['shell', 'listbookies', '--nats', nats!.url, '--nats-password-file', file], cleanEnv({ QUIRE_NATS_USER: 'alice' }))
  assert.is(byFile.code, 0, byFile.stderr)
  assert.match(byFile.stdout, /^authb1\t/m)
  const none = await quire(['shell', 'whoisauditor', '--nats', nats!.url], cleanEnv())
  assert.is(none.code, 1)
  assert.match(none.stderr, /^error NATS_AUTH: nats-server at .* refused the login \(no credentials\)/m)
  assert.not.match(none.stderr, /\n\s+at /)
})

test('the inspector logs in too', async () => {
  const { startInspector } = await import('../../cli/inspectorCmd.ts')
  const inspector = await startInspector({ nats: nats!.url, natsAuth: { user: 'alice', pass: PASSWORD }, port: 0, host: '127.0.0.1' })
  try {
    // Read from the metadata store over the inspector's connection.
    const res = await fetch(new URL('api/v1/bookie/list_bookies', inspector.url))
    assert.is(res.status, 200)
    assert.match(JSON.stringify(await res.json()), /authb1/)
  } finally {
    await inspector.close()
  }
  const refused = await startInspector({ nats: nats!.url, port: 0 }).then(async (i) => { await i.close(); return null }, (e: unknown) => e)
  assert.match(String(refused), /NATS_AUTH|refused the login/)
})

test('a bookie whose NATS user may not publish inspection events logs each refusal with its subject and goes on serving', async () => {
  const conf = path.join(dir, 'limited.conf')
  const users = `authorization {\n  users: [\n    { user: full, password: "full-pw" },\n` +
    `    { user: limited, password: "${PASSWORD}", permissions: { publish: { deny: ["quire.inspect.>"] } } },\n` +
    `    { user: alice, password: "alice-pw", permissions: { subscribe: { allow: ["_INBOX_alice.>"] } } },\n` +
    `    { user: mallory, password: "mallory-pw", permissions: { publish: { deny: ["quire.bookie.>", "quire.ws.>"] } } }\n  ]\n}\n`
  await writeFile(conf, `${await readFile(path.join(REPO_ROOT, 'nats.conf'), 'utf8')}\n${users}`)
  const limitedNats = await startNatsServer({ storeDir: path.join(dir, 'nats-limited'), config: conf })
  try {
    const node = startNodeProcess({
      args: ['--nats', limitedNats.url, '--nats-user', 'limited', '--data', path.join(dir, 'b-limited'), '--id', 'limitedb1', '--heartbeat-ms', '200', '--inspect'],
      env: cleanEnv({ QUIRE_NATS_PASSWORD: PASSWORD }),
    })
    nodes.push(node)
    await logged(node, 'bookie ready')
    const client = await connect({ servers: limitedNats.url, auth: { user: 'full', pass: 'full-pw' } })
    try {
      const w = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
      for (let i = 0; i < 5; i++) await w.append(`entry ${i}`)
      await w.close()
      const r = await client.openLedger(w.ledgerId)
      assert.equal((await r.read(0, 4)).map((e) => e.payload.toString()), Array.from({ length: 5 }, (_, i) => `entry ${i}`))
    } finally {
      await client.close()
    }
    // A client whose NATS user may subscribe under its own inbox prefix only: every reply path
    // (JetStream and KV, the bookies' answers) uses the prefix it is given.
    const alice = await connect({ servers: limitedNats.url, auth: { user: 'alice', pass: 'alice-pw', inboxPrefix: '_INBOX_alice' } })
    try {
      const w = await alice.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
      await w.append('via my own inbox')
      await w.close()
      const r = await alice.openLedger(w.ledgerId)
      assert.equal((await r.read(0, 0)).map((e) => e.payload.toString()), ['via my own inbox'])
    } finally {
      await alice.close()
    }
    // A client whose user may not publish to bookies: its read of a closed ledger fails at once with
    // NATS_AUTH naming the refused subject, instead of waiting out readTimeoutMs on every replica.
    const mallory = await connect({ servers: limitedNats.url, auth: { user: 'mallory', pass: 'mallory-pw' }, readTimeoutMs: 20_000 })
    try {
      const ledgerId = (await mallory.listLedgers()[Symbol.asyncIterator]().next()).value as number
      const h = await mallory.openLedger(ledgerId)
      const started = Date.now()
      const err = await h.read(0, 0).then(() => null, (e: unknown) => e)
      assert.match(String(err), /NATS_AUTH|refused this client's publish to quire\.bookie\.limitedb1/)
      assert.is((err as { code?: string }).code, 'NATS_AUTH')
      assert.ok(Date.now() - started < 10_000, `refused after ${Date.now() - started} ms`)
      // Its adds are refused too: the writer fails the bookie at once, and with no other bookie
      // it may reach, the append is NATS_AUTH naming the subject, not NOT_ENOUGH_BOOKIES after addTimeoutMs.
      const w = await mallory.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
      const appendStarted = Date.now()
      const appendErr = await w.append('never acknowledged').then(() => null, (e: unknown) => e)
      assert.is((appendErr as { code?: string }).code, 'NATS_AUTH', String(appendErr))
      assert.match(String(appendErr), /NATS refused this client's publish to quire\.bookie\.limitedb1/)
      assert.ok(Date.now() - appendStarted < 5000, `append refused after ${Date.now() - appendStarted} ms (addTimeoutMs is 10 s)`)
    } finally {
      await mallory.close()
    }
    // Without the prefix, its subscriptions to the shared _INBOX are refused: it cannot even open the metadata.
    const refused = await connect({ servers: limitedNats.url, auth: { user: 'alice', pass: 'alice-pw' }, connectTimeoutMs: 3000 })
      .then(async (c) => { await c.close(); return null }, (e: unknown) => e)
    assert.ok(refused !== null, 'a client without its prefix is refused its replies')
    await logged(node, 'NATS refused this bookie: permission violation')
    const refusal = node.output().split('\n').find((l) => l.includes('permission violation'))!
    assert.match(refusal, /"operation":"publish","subject":"quire\.inspect\./)
    assert.is(node.proc.exitCode, null, 'the bookie is still running')
  } finally {
    await limitedNats.stop()
  }
})

test('a wrong password: error NATS_AUTH naming the server, exit 1, no stack trace, at once', async () => {
  const started = Date.now()
  const r = await quire(['node', '--roles', 'auditor', '--nats', nats!.url, '--nats-user', 'alice'], cleanEnv({ QUIRE_NATS_PASSWORD: 'wrong' }))
  const ms = Date.now() - started
  assert.is(r.code, 1, r.stderr)
  assert.match(r.stderr, new RegExp(`error NATS_AUTH: nats-server at ${nats!.url.replace(/[.]/g, '\\.')} refused the login \\(user alice, password \\*\\*\\*\\)`))
  assert.not.match(r.stderr + r.stdout, /\n\s+at /)
  assert.not.ok((r.stderr + r.stdout).includes('wrong'), 'the password is printed')
  // The node's connect timeout is 5 s; a refusal ends it well before (process start included).
  assert.ok(ms < 5000, `${ms} ms`)
})

test.run()
