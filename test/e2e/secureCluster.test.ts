// Quire on the shipped production NATS configuration (nats-secure.conf): a real nats-server with TLS
// on certificates made with openssl and one user per role, each allowed only its subjects (the
// secrets made as `quire sandbox --secure` makes them: cli/sandboxSecure.ts);
// four bookie nodes, an autorecovery node (auditor and replicator), an application's client, the
// inspector and an operator's shell, each logging in as its role with its own inbox prefix.
// Only bookies (and operators) may make the metadata buckets. Every role does its work with no
// permission refused; the attacks an application's user can try
// (registering as a bookie, answering a bookie's subject, reading another process's replies,
// forging a reply, asking a bookie for a master key) are all refused by NATS with a typed error or a
// closed subscription, and the cluster keeps serving; a ledger with a password that loses a bookie
// for good is re-replicated by the autorecovery role with no password configured anywhere. The
// server's log holds exactly the refusals the attacks provoked.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { errors } from '@nats-io/transport-node'
import { REPO_ROOT, startNatsServer, startNodeProcess, type ManagedProcess, type NatsServer } from '../../cli/cluster.ts'
import { startInspector } from '../../cli/inspectorCmd.ts'
import { makeSandboxSecrets, secureAuth, secureFlags, secureServerEnv, type SandboxSecrets, type SecureRole } from '../../cli/sandboxSecure.ts'
import { fetchMasterKey, masterKeySubject } from '../../actors/masterKeys.ts'
import { connect, type QuireClient } from '../../client/index.ts'
import { isQuireError } from '../../machines/errors.ts'
import { openMetadata } from '../../storage/openMetadata.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { cleanEnv, quire, show } from '../support/nodes.ts'

const LEDGER_PASSWORD = 'secure-pw-5e1c'
const BOOKIES = ['sb1', 'sb2', 'sb3', 'sb4']
/** The refusal the first test provokes: an application making the metadata buckets. */
const BUCKET_CREATE = /^app publish \$JS\.API\.STREAM\.CREATE\.KV_quire_/

const test = suite('a cluster on nats-secure.conf')
let dir = ''
let secrets: SandboxSecrets
let nats: NatsServer
let serverLog = ''
const nodes = new Map<string, ManagedProcess>()
let app: QuireClient
/** Ledgers with a password written by the application: id and entry count. */
const written: Array<{ ledgerId: number; entries: number }> = []

const auth = (role: SecureRole) => secureAuth(secrets, role)
/** A process logs in as `role`, its password from the role's file. */
const nodeArgs = (role: SecureRole): string[] => ['--nats', nats.url, ...secureFlags(secrets, role)]

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function startNode(name: string, role: SecureRole, args: string[]): ManagedProcess {
  const node = startNodeProcess({ args: [...nodeArgs(role), ...args], env: cleanEnv() })
  nodes.set(name, node)
  return node
}

async function ready(node: ManagedProcess): Promise<void> {
  await until(`the node is ready:\n${node.output()}`, () => {
    if (node.proc.exitCode !== null) throw new Error(`node exited ${node.proc.exitCode}:\n${node.output()}`)
    return node.output().includes('"msg":"node ready"')
  })
}

/** The server log's permission refusals, as `user subject` lines. */
async function violations(): Promise<string[]> {
  const log = await readFile(serverLog, 'utf8').catch(() => '')
  return [...log.matchAll(/(Publish|Subscription) Violation - User "([^"]+)", Subject "([^"]+)"/g)].map((m) => `${m[2]} ${m[1]!.toLowerCase()} ${m[3]}`)
}

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'quire-secure-'))
  secrets = await makeSandboxSecrets(dir)
  serverLog = path.join(dir, 'nats-server.log')
  nats = await startNatsServer({
    storeDir: path.join(dir, 'nats'),
    config: path.join(REPO_ROOT, 'nats-secure.conf'),
    args: ['-l', serverLog],
    env: secureServerEnv(secrets),
  })
})

test.after(async () => {
  await app?.close().catch(() => {})
  await Promise.all([...nodes.values()].map((n) => n.stop()))
  await nats?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

test('on a new cluster an application may not make the metadata buckets: connect() is NATS_AUTH saying so; bookies make them', async () => {
  const refused = await connect({ servers: nats.url, auth: auth('app') }).then(async (c) => { await c.close(); return null }, (e: unknown) => e)
  assert.ok(isQuireError(refused, 'NATS_AUTH'), String(refused))
  assert.match(String(refused), /may not publish to \$JS\.API\.STREAM\.CREATE\.KV_quire_.*start a bookie, or use an admin user/)
  for (const id of BOOKIES) startNode(id, 'bookie', ['--id', id, '--data', path.join(dir, id), '--heartbeat-ms', '300', '--inspect'])
  await Promise.all(BOOKIES.map((id) => ready(nodes.get(id)!)))
  startNode('autorecovery', 'autorecovery', [
    '--roles', 'auditor,replicator', '--audit-interval-ms', '2000', '--lost-bookie-recovery-delay-ms', '1000',
    '--auditor-lease-ms', '2000', '--replication-grace-ms', '1000', '--inspect',
  ])
  await ready(nodes.get('autorecovery')!)
  app = await connect({ servers: nats.url, auth: auth('app'), inspect: true })
})

test('every role does its work under its own user: bookies, autorecovery, an application, the inspector, an operator; nothing is refused', async () => {
  for (let i = 0; i < 3; i++) {
    const w = await app.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, password: LEDGER_PASSWORD })
    const entries = 30 + 10 * i
    for (let k = 0; k < entries; k++) await w.append(`ledger ${w.ledgerId} entry ${k}`)
    await w.close()
    written.push({ ledgerId: w.ledgerId, entries })
  }
  for (const l of written) {
    const r = await app.openLedger(l.ledgerId, { password: LEDGER_PASSWORD })
    const got = await r.read(0, l.entries - 1)
    assert.equal(got.map((e) => e.payload.toString()), Array.from({ length: l.entries }, (_, k) => `ledger ${l.ledgerId} entry ${k}`))
  }
  // A tailing reader follows an open ledger; the writer's recovery-free close ends it.
  const w = await app.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 })
  const tail = await app.openLedger(w.ledgerId)
  const seen: string[] = []
  const tailing = (async () => { for await (const e of tail.entries()) seen.push(e.payload.toString()) })()
  for (let k = 0; k < 10; k++) await w.append(`tail ${k}`)
  await w.close()
  await tailing
  assert.equal(seen, Array.from({ length: 10 }, (_, k) => `tail ${k}`))

  const inspector = await startInspector({ nats: nats.url, natsAuth: auth('inspector'), port: 0, host: '127.0.0.1' })
  try {
    const listed = await (await fetch(new URL('api/v1/bookie/list_bookies', inspector.url))).json()
    for (const id of BOOKIES) assert.match(JSON.stringify(listed), new RegExp(`"${id}"`))
    await until('the inspector hears the bookies\' actors', async () => {
      const actors = (await (await fetch(new URL('api/actors', inspector.url))).json()) as Array<{ kind: string }>
      return actors.some((a) => a.kind === 'bookie')
    })
  } finally {
    await inspector.close()
  }
  const shell = await quire(['shell', 'listbookies', ...nodeArgs('admin')])
  assert.is(shell.code, 0, show(shell))
  for (const id of BOOKIES) assert.match(shell.stdout, new RegExp(`^${id}\\twritable\\talive`, 'm'))
  const audit = await quire(['shell', 'triggeraudit', ...nodeArgs('admin')])
  assert.is(audit.code, 0, show(audit))
  assert.match(audit.stdout, /^audit by .*: \d+ ledger\(s\) checked/m)
  await new Promise((r) => setTimeout(r, 500)) // the server writes its log as it goes
  assert.equal((await violations()).filter((v) => !BUCKET_CREATE.test(v)), [], 'a role was refused what it needs')
})

/** A connection of `role` whose permission refusals are collected. */
async function attacker(role: SecureRole): Promise<{ nc: NatsConnection; refused: string[] }> {
  const nc = await connectNats(nats.url, { auth: auth(role) })
  const refused: string[] = []
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) refused.push(`${s.error.operation} ${s.error.subject}`)
    }
  })()
  return { nc, refused }
}

/** The error a subscription is closed with; NATS refuses a subscription after the fact. */
async function subscriptionRefusal(nc: NatsConnection, subject: string): Promise<unknown> {
  const sub = nc.subscribe(subject)
  const got: string[] = []
  void (async () => { for await (const m of sub) got.push(m.subject) })().catch(() => {})
  const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r('still open'), 5000))])
  assert.equal(got, [], `${subject} delivered messages`)
  return closed
}

test('an application\'s user is refused every attack by NATS, with a typed error or a closed subscription; the cluster keeps serving', async () => {
  // Registering as a bookie: a node started with the application's login cannot keep a cookie or register.
  const evil = await quire(['node', ...nodeArgs('app'), '--id', 'evil', '--data', path.join(dir, 'evil')])
  assert.is(evil.code, 1, show(evil))
  assert.match(evil.stderr, /^error NATS_AUTH: .*may not publish to \$KV\.quire_cluster\.cookies\.evil/m)
  const { nc, refused } = await attacker('app')
  try {
    const md = await openMetadata(nc)
    const put = await md.putBookie({ bookieId: 'evil', heartbeatAt: Date.now(), heartbeatMs: 300 } as Parameters<typeof md.putBookie>[0]).then(() => null, (e: unknown) => e)
    assert.ok(isQuireError(put, 'NATS_AUTH'), String(put))
    assert.match(String(put), /may not publish to \$KV\.quire_bookies\.evil/)
    assert.not.ok((await md.listBookies()).some((b) => b.bookieId === 'evil'), 'evil is registered')
    // Answering a bookie's requests, or a write set's.
    for (const subject of ['quire.bookie.sb2', 'quire.ws.>', 'quire.bookieadmin.sb2.masterkey']) {
      const closed = await subscriptionRefusal(nc, subject)
      assert.instance(closed, errors.PermissionViolationError, `${subject}: ${String(closed)}`)
    }
    // Reading another process's replies: the bookies', the workers', another application's.
    for (const subject of ['_INBOX.bookie.>', '_INBOX.autorecovery.>', '_INBOX.>', '>']) {
      assert.instance(await subscriptionRefusal(nc, subject), errors.PermissionViolationError, subject)
    }
    // Forging a reply into a worker's inbox.
    nc.publish('_INBOX.autorecovery.forged', new Uint8Array([1]))
    // Asking a bookie for a ledger's master key: refused at once, so the worker's own call gets nothing.
    const md0 = await app.getLedgerMetadata(written[0]!.ledgerId)
    const started = Date.now()
    const key = await fetchMasterKey(nc, md0.ledgerId, md0.passwordCheck, md0.segments[0]!.ensemble, 5000)
    assert.is(key, null)
    assert.ok(Date.now() - started < 3000, `refused after ${Date.now() - started} ms, not at once`)
    const raw = await nc.request(masterKeySubject('sb2'), Buffer.from(JSON.stringify({ ledgerId: md0.ledgerId })), { timeout: 3000 }).then(() => null, (e: unknown) => e)
    assert.instance((raw as Error).cause, errors.PermissionViolationError)
    await until('every refusal is reported', () => refused.length >= 12)
    assert.ok(refused.includes('publish _INBOX.autorecovery.forged'), refused.join('\n'))
  } finally {
    await nc.close()
  }
  // The inspector's user may only listen; an operator may not ask for master keys either.
  const inspector = await attacker('inspector')
  const admin = await attacker('admin')
  try {
    const read = await inspector.nc.request('quire.bookie.sb2', new Uint8Array([1]), { timeout: 3000 }).then(() => null, (e: unknown) => e)
    assert.instance((read as Error).cause, errors.PermissionViolationError)
    assert.instance(await subscriptionRefusal(inspector.nc, 'quire.bookie.sb2'), errors.PermissionViolationError)
    const ask = await admin.nc.request(masterKeySubject('sb2'), Buffer.from('{}'), { timeout: 3000 }).then(() => null, (e: unknown) => e)
    assert.instance((ask as Error).cause, errors.PermissionViolationError)
  } finally {
    await inspector.nc.close()
    await admin.nc.close()
  }
  // The cluster keeps serving: every bookie is alive and a new ledger is written and read.
  const w = await app.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 })
  for (let k = 0; k < 5; k++) await w.append(`after the attacks ${k}`)
  await w.close()
  const r = await app.openLedger(w.ledgerId)
  assert.equal((await r.read(0, 4)).map((e) => e.payload.toString()), Array.from({ length: 5 }, (_, k) => `after the attacks ${k}`))
  for (const id of BOOKIES) assert.is(nodes.get(id)!.proc.exitCode, null, `${id} is still running`)
  // The server refused exactly what the attacks tried, and nothing of any role's own work.
  const logged = await violations()
  assert.equal([...new Set(logged.filter((v) => !v.startsWith('app ')).map((v) => v))].sort(), [
    'admin publish quire.bookieadmin.sb2.masterkey',
    'inspector publish quire.bookie.sb2',
    'inspector subscription quire.bookie.sb2',
  ])
  const appRefusals = new Set(logged.filter((v) => v.startsWith('app ')))
  for (const v of appRefusals) {
    assert.ok(BUCKET_CREATE.test(v) || /^app (publish \$KV\.quire_(cluster\.cookies\.evil|bookies\.evil)|subscription (quire\.|_INBOX\.|>)|publish _INBOX\.autorecovery\.forged|publish quire\.bookieadmin\.sb\d\.masterkey)/.test(v), v)
  }
})

test('a ledger with a password loses a bookie for good: the autorecovery role re-replicates it with no password configured anywhere', async () => {
  const victim = (await app.getLedgerMetadata(written[0]!.ledgerId)).segments[0]!.ensemble[0]!
  nodes.get(victim)!.kill('SIGKILL')
  await until(`no ledger with a password names ${victim}`, async () => {
    for (const l of written) {
      if ((await app.getLedgerMetadata(l.ledgerId)).segments.some((s) => s.ensemble.includes(victim))) return false
    }
    return true
  }, 45_000)
  for (const l of written) {
    const r = await app.openLedger(l.ledgerId, { password: LEDGER_PASSWORD })
    const got = await r.read(0, l.entries - 1)
    assert.equal(got.map((e) => e.payload.toString()), Array.from({ length: l.entries }, (_, k) => `ledger ${l.ledgerId} entry ${k}`))
  }
  assert.match(nodes.get('autorecovery')!.output(), /"msg":"segment re-replicated"/)
  assert.not.ok((await violations()).some((v) => v.startsWith('autorecovery ') || v.startsWith('bookie ')), 'a role was refused what it needs')
})

test.run()
