// Connecting to a NATS that asks for a login or TLS (transport/natsAuth.ts through connectNats and
// the client's connect): real nats-servers started with a user and password, a token, an nkey user,
// an operator with an account and a user (a .creds file, made here with @nats-io/jwt), server-side
// TLS and mutual TLS, with certificates this test makes with openssl (a CA, a server certificate for
// 127.0.0.1, a client certificate, an expired server certificate, and a CA of nobody's). Each
// method works with the right secret; the wrong one, none, an untrusted or expired certificate and
// TLS required on one side only are NATS_AUTH naming the server, fast (no wait for the connect
// timeout), with no secret in the message; bad settings and missing files are INVALID_CONFIG
// naming the file, before any dial.

import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from '@nats-io/jwt'
import { createAccount, createOperator, createUser } from '@nats-io/nkeys'
import { REPO_ROOT, startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { connect } from '../../client/index.ts'
import { isQuireError, type ErrorCode } from '../../machines/errors.ts'
import { connectNats, type NatsAuth } from '../../transport/nats.ts'
import { describeNatsAuth, natsAuthOptions } from '../../transport/natsAuth.ts'
import { makeCertificates, type Certificates } from '../support/certificates.ts'

const PASSWORD = 's3cret-pw'
const TOKEN = 'tok-8c1f'
/** A refusal comes back at once; this bounds "fast" well under the connect timeout below. */
const REFUSAL_MS_MAX = 3000
const CONNECT_TIMEOUT_MS = 8000

const test = suite('nats credentials and TLS')
let dir = ''
const servers: NatsServer[] = []
let certs: Certificates
let userSeedFile = ''
let otherSeedFile = ''
let plain: NatsServer, userPass: NatsServer, token: NatsServer, nkey: NatsServer, tls: NatsServer, mtls: NatsServer, operator: NatsServer, expired: NatsServer
const creds = { user: '', otherOperatorsUser: '' }

/** Decentralised auth: an operator, an account it signs and a user of that account, as `nsc` would make them. */
async function operatorMode(): Promise<{ config: string; userCreds: Uint8Array }> {
  const op = createOperator()
  const account = createAccount()
  const user = createUser()
  const unlimited = { conn: -1, leaf: -1, subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true }
  const accountJwt = await encodeAccount('quire-test', account, { limits: unlimited }, { signer: op })
  const userJwt = await encodeUser('quire-test-user', user, account, { subs: -1, data: -1, payload: -1 })
  const config = `operator: ${await encodeOperator('quire-test-operator', op)}\nresolver: MEMORY\nresolver_preload: {\n  ${account.getPublicKey()}: ${accountJwt}\n}\n`
  return { config, userCreds: fmtCreds(userJwt, user) }
}

/** Quire's nats.conf with `extra` appended (an authorization or tls block). */
async function config(name: string, extra: string): Promise<string> {
  const file = path.join(dir, `${name}.conf`)
  await writeFile(file, `${await readFile(path.join(REPO_ROOT, 'nats.conf'), 'utf8')}\n${extra}\n`)
  return file
}

async function server(name: string, opts: { config?: string; args?: string[] }): Promise<NatsServer> {
  const s = await startNatsServer({ storeDir: path.join(dir, `store-${name}`), ...opts })
  servers.push(s)
  return s
}

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'quire-nats-auth-'))
  certs = await makeCertificates(dir)
  const user = createUser()
  userSeedFile = path.join(dir, 'user.nk')
  await writeFile(userSeedFile, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 })
  otherSeedFile = path.join(dir, 'other.nk')
  await writeFile(otherSeedFile, new TextDecoder().decode(createUser().getSeed()), { mode: 0o600 })
  const trusted = await operatorMode()
  const stranger = await operatorMode()
  creds.user = path.join(dir, 'user.creds')
  await writeFile(creds.user, trusted.userCreds, { mode: 0o600 })
  creds.otherOperatorsUser = path.join(dir, 'other.creds')
  await writeFile(creds.otherOperatorsUser, stranger.userCreds, { mode: 0o600 })
  const operatorConfig = path.join(dir, 'operator.conf')
  await writeFile(operatorConfig, trusted.config)
  const tlsBlock = `tls {\n  cert_file: "${certs.serverCert}"\n  key_file: "${certs.serverKey}"\n}`
  const mtlsBlock = `tls {\n  cert_file: "${certs.serverCert}"\n  key_file: "${certs.serverKey}"\n  ca_file: "${certs.ca}"\n  verify: true\n}`
  const expiredBlock = `tls {\n  cert_file: "${certs.expiredServerCert}"\n  key_file: "${certs.expiredServerKey}"\n}`
  ;[plain, userPass, token, nkey, tls, mtls, operator, expired] = await Promise.all([
    server('plain', {}),
    server('user', { args: ['--user', 'alice', '--pass', PASSWORD] }),
    server('token', { args: ['--auth', TOKEN] }),
    server('nkey', { config: await config('nkey', `authorization {\n  users: [ { nkey: "${user.getPublicKey()}" } ]\n}`) }),
    server('tls', { config: await config('tls', tlsBlock) }),
    server('mtls', { config: await config('mtls', mtlsBlock) }),
    server('operator', { config: operatorConfig }),
    server('expired', { config: await config('expired', expiredBlock) }),
  ])
})

test.after(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** Connects, proves the connection with a round trip to the server, closes. */
async function works(url: string, auth?: NatsAuth): Promise<void> {
  const nc = await connectNats(url, { timeoutMs: CONNECT_TIMEOUT_MS, ...(auth ? { auth } : {}) })
  try {
    await nc.flush()
    assert.ok(nc.info?.server_id, 'a server answered')
  } finally {
    await nc.close()
  }
}

/** The connect's error, with how long it took. */
async function failure(url: string, auth: NatsAuth | undefined, timeoutMs = CONNECT_TIMEOUT_MS): Promise<{ err: unknown; ms: number }> {
  const started = Date.now()
  try {
    const nc = await connectNats(url, { timeoutMs, ...(auth ? { auth } : {}) })
    await nc.close()
  } catch (err) {
    return { err, ms: Date.now() - started }
  }
  throw new Error(`connecting to ${url} with ${describeNatsAuth(auth)} succeeded`)
}

async function refused(url: string, auth: NatsAuth | undefined, code: ErrorCode, pattern: RegExp): Promise<string> {
  const { err, ms } = await failure(url, auth)
  assert.ok(isQuireError(err, code), `expected ${code}, got ${String(err)}`)
  const message = (err as Error).message
  assert.match(message, pattern)
  assert.ok(ms < REFUSAL_MS_MAX, `${code} after ${ms} ms: a refusal must not wait for the connect timeout`)
  for (const secret of [PASSWORD, TOKEN]) assert.not.ok(message.includes(secret), `a secret in the message: ${message}`)
  return message
}

test('user and password: the right ones connect (client too); a wrong password or none is NATS_AUTH naming the server', async () => {
  await works(userPass.url, { user: 'alice', pass: PASSWORD })
  const message = await refused(userPass.url, { user: 'alice', pass: 'wrong' }, 'NATS_AUTH', /refused the login \(user alice, password \*\*\*\): Authorization Violation/)
  assert.ok(message.includes(userPass.url), message)
  await refused(userPass.url, undefined, 'NATS_AUTH', /refused the login \(no credentials\)/)
  const client = await connect({ servers: userPass.url, auth: { user: 'alice', pass: PASSWORD }, connectTimeoutMs: CONNECT_TIMEOUT_MS })
  await client.close()
  const { err } = await connect({ servers: userPass.url, auth: { user: 'alice', pass: 'wrong' }, connectTimeoutMs: CONNECT_TIMEOUT_MS }).then(
    async (c) => { await c.close(); return { err: null } }, (e: unknown) => ({ err: e }))
  assert.ok(isQuireError(err, 'NATS_AUTH'), String(err))
})

test('a token: the right one connects; a wrong one is NATS_AUTH', async () => {
  await works(token.url, { token: TOKEN })
  await refused(token.url, { token: 'nope' }, 'NATS_AUTH', /refused the login \(token \*\*\*\)/)
})

test('an nkey seed file: the user\'s connects; another user\'s is NATS_AUTH; a missing or bad file is INVALID_CONFIG naming it', async () => {
  await works(nkey.url, { nkeySeedFile: userSeedFile })
  await refused(nkey.url, { nkeySeedFile: otherSeedFile }, 'NATS_AUTH', /refused the login \(nkey seed from .*other\.nk\)/)
  const missing = path.join(dir, 'missing.nk')
  await refused(nkey.url, { nkeySeedFile: missing }, 'INVALID_CONFIG', /cannot read the NATS nkey seed file .*missing\.nk \(ENOENT\)/)
  const bad = path.join(dir, 'bad.nk')
  await writeFile(bad, 'not a seed\n')
  await refused(nkey.url, { nkeySeedFile: bad }, 'INVALID_CONFIG', /bad\.nk does not hold a user seed/)
})

test('a .creds file (decentralised auth): its user connects; a user of another operator is NATS_AUTH; a file that is no creds is INVALID_CONFIG', async () => {
  await works(operator.url, { credsFile: creds.user })
  await refused(operator.url, { credsFile: creds.otherOperatorsUser }, 'NATS_AUTH', /refused the login \(creds from .*other\.creds\)/)
  await refused(operator.url, undefined, 'NATS_AUTH', /refused the login \(no credentials\)/)
  const notCreds = path.join(dir, 'not.creds')
  await writeFile(notCreds, 'just text\n')
  await refused(operator.url, { credsFile: notCreds }, 'INVALID_CONFIG', /not\.creds does not hold a user JWT and an nkey seed/)
})

test('server TLS: the CA file connects over nats:// and tls://; without it the certificate is untrusted, and an expired one is refused: NATS_AUTH', async () => {
  await works(tls.url, { tls: { caFile: certs.ca } })
  await works(tls.url.replace('nats://', 'tls://'), { tls: { caFile: certs.ca } })
  await refused(tls.url, undefined, 'NATS_AUTH', /TLS with nats-server at .* failed: .*\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\); .*needs tls\.caFile/)
  await refused(tls.url, { tls: { caFile: certs.otherCa } }, 'NATS_AUTH', /TLS with nats-server at .* failed/)
  // A certificate of the trusted CA that has expired.
  await refused(expired.url, { tls: { caFile: certs.ca } }, 'NATS_AUTH', /TLS with nats-server at .* failed: certificate has expired \(CERT_HAS_EXPIRED\)/)
})

test('TLS required by the client and not offered by the server: a TLS setting or a tls:// URL is NATS_AUTH, never plain text', async () => {
  await refused(plain.url, { tls: { caFile: certs.ca } }, 'NATS_AUTH', /does not offer TLS, and this connection requires it/)
  await refused(plain.url.replace('nats://', 'tls://'), undefined, 'NATS_AUTH', /does not offer TLS/)
  await works(plain.url)
})

test('mutual TLS: the client certificate connects; without one the server drops the handshake: NATS_UNREACHABLE with a hint', async () => {
  await works(mtls.url, { tls: { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey } })
  const { err } = await failure(mtls.url, { tls: { caFile: certs.ca } }, 1500)
  assert.ok(isQuireError(err, 'NATS_UNREACHABLE'), String(err))
  assert.match((err as Error).message, /give tls\.certFile and tls\.keyFile/)
})

test('settings that cannot work are INVALID_CONFIG before any dial; descriptions name the method, never a secret', () => {
  const invalid = (auth: NatsAuth, pattern: RegExp): void => {
    try {
      natsAuthOptions(auth, ['nats://127.0.0.1:4222'])
    } catch (err) {
      assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
      assert.match((err as Error).message, pattern)
      return
    }
    assert.unreachable(`accepted ${JSON.stringify(auth)}`)
  }
  invalid({ user: 'alice' }, /a user needs a password/)
  invalid({ pass: PASSWORD }, /a user needs a password/)
  invalid({ user: 'alice', pass: PASSWORD, token: TOKEN }, /one way to log in/)
  invalid({ token: '' }, /token is empty/)
  invalid({ tls: { certFile: '/x.pem' } }, /needs its key/)
  invalid({ tls: { caFile: path.join(os.tmpdir(), 'no-such-ca.pem') } }, /cannot read the NATS TLS CA file .*no-such-ca\.pem/)
  assert.is(describeNatsAuth({ user: 'alice', pass: PASSWORD }), 'user alice, password ***')
  assert.is(describeNatsAuth({ token: TOKEN, tls: { caFile: '/ca.pem', certFile: '/c.pem', keyFile: '/k.pem' } }), 'token ***, TLS (CA /ca.pem) with client certificate /c.pem')
  assert.is(describeNatsAuth(undefined), 'no credentials')
  // No TLS unless asked for: a plain URL and no tls setting leave nats.js's default.
  assert.is(natsAuthOptions(undefined, ['nats://127.0.0.1:4222']).tls, undefined)
  assert.equal(natsAuthOptions(undefined, ['tls://127.0.0.1:4222']).tls, {})
})

test.run()
