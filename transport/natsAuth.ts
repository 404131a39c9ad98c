// Credentials and TLS for a NATS connection: what a process presents to a nats-server that asks
// for a login (user and password, a token, an nkey, a `.creds` file with a user JWT), and the TLS
// it requires (a private CA, a client certificate and key for mutual TLS), turned into nats.js's
// connection options; and the refusals a server answers with, turned into NATS_AUTH errors that
// say which server refused what.
// Invariants: at most one login method; files are read here, once per connect, and a missing or
// unreadable one is INVALID_CONFIG naming the file (and the setting), before any dial; a secret
// never appears in an error message or in `describeNatsAuth` (which names the method only); a
// `tls://` URL or a `tls` setting requires TLS (nats.js itself would go on in plain text with a
// `tls://` URL to a server without TLS).

import { credsAuthenticator, errors, nkeyAuthenticator, type ConnectionOptions } from '@nats-io/transport-node'
import { readFileSync } from 'node:fs'
import { QuireError } from '../machines/errors.ts'

export interface NatsTls {
  /** PEM file of the CA(s) that signed the servers' certificates (default: the system's CAs). */
  caFile?: string
  /** PEM file of this process's certificate, for servers that verify clients (mutual TLS); with keyFile. */
  certFile?: string
  /** PEM file of the private key of certFile. */
  keyFile?: string
}

/** How this process logs in to NATS and whether it requires TLS. Every field is optional. */
export interface NatsAuth {
  /** User name, with `pass` (nats-server `authorization { user, password }` or accounts' users). */
  user?: string
  pass?: string
  /** A token (nats-server `authorization { token }`). */
  token?: string
  /** File holding an nkey seed (`SU...`): signs the server's challenge; the server knows the public key. */
  nkeySeedFile?: string
  /** A `.creds` file (user JWT and nkey seed, as `nsc` writes it): decentralised auth. */
  credsFile?: string
  /** Require TLS; with the files for a private CA and a client certificate. */
  tls?: NatsTls
  /**
   * The prefix of this process's reply subjects (nats.js's default is `_INBOX`): a NATS user may
   * then be allowed to subscribe under its own prefix only (`_INBOX_alice.>`), so that it cannot
   * read other processes' replies. Every reply path of the process uses it: requests, JetStream and
   * KV, and the bookies' answers.
   */
  inboxPrefix?: string
}

/** nats.js connection options for `auth` over `urls`: the login, and TLS when required. */
export function natsAuthOptions(auth: NatsAuth | undefined, urls: readonly string[]): Partial<ConnectionOptions> {
  const a = auth ?? {}
  const methods = [a.user !== undefined || a.pass !== undefined, a.token !== undefined, a.nkeySeedFile !== undefined, a.credsFile !== undefined]
  if (methods.filter(Boolean).length > 1) {
    throw new QuireError('INVALID_CONFIG', 'NATS: give one way to log in (user and password, a token, an nkey seed file or a creds file), not several')
  }
  if ((a.user === undefined) !== (a.pass === undefined)) {
    throw new QuireError('INVALID_CONFIG', 'NATS: a user needs a password and a password a user')
  }
  const out: Partial<ConnectionOptions> = {}
  if (a.inboxPrefix !== undefined) {
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(a.inboxPrefix)) {
      throw new QuireError('INVALID_CONFIG', `NATS inbox prefix ${JSON.stringify(a.inboxPrefix)}: subject tokens of letters, digits, _ and - joined by dots`)
    }
    out.inboxPrefix = a.inboxPrefix
  }
  if (a.user !== undefined) Object.assign(out, { user: a.user, pass: a.pass })
  if (a.token !== undefined) {
    if (a.token === '') throw new QuireError('INVALID_CONFIG', 'NATS: the token is empty')
    out.token = a.token
  }
  if (a.nkeySeedFile !== undefined) {
    const seed = readSecret(a.nkeySeedFile, 'nkey seed file').trim()
    if (!/^SU[A-Z2-7]+$/.test(seed)) throw new QuireError('INVALID_CONFIG', `NATS nkey seed file ${a.nkeySeedFile} does not hold a user seed (SU...)`, { file: a.nkeySeedFile })
    out.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed))
  }
  if (a.credsFile !== undefined) {
    const creds = readSecret(a.credsFile, 'creds file')
    if (!creds.includes('BEGIN NATS USER JWT') || !creds.includes('BEGIN USER NKEY SEED')) {
      throw new QuireError('INVALID_CONFIG', `NATS creds file ${a.credsFile} does not hold a user JWT and an nkey seed`, { file: a.credsFile })
    }
    out.authenticator = credsAuthenticator(new TextEncoder().encode(creds))
  }
  const wantsTls = a.tls !== undefined || urls.some((u) => /^tls:\/\//i.test(u))
  if (wantsTls) {
    const t = a.tls ?? {}
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
      throw new QuireError('INVALID_CONFIG', 'NATS TLS: a client certificate needs its key and a key its certificate')
    }
    out.tls = {
      ...(t.caFile === undefined ? {} : { ca: readSecret(t.caFile, 'TLS CA file') }),
      ...(t.certFile === undefined ? {} : { cert: readSecret(t.certFile, 'TLS certificate file') }),
      ...(t.keyFile === undefined ? {} : { key: readSecret(t.keyFile, 'TLS key file') }),
    }
  }
  return out
}

function readSecret(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err))
    throw new QuireError('INVALID_CONFIG', `cannot read the NATS ${what} ${file} (${why})`, { file })
  }
}

/** Certificate checks that fail on the client's side of a TLS handshake (Node's error codes). */
const TLS_FAILURES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE', 'ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH',
])

/**
 * A connect failure that is a refusal (credentials, permissions, TLS) as NATS_AUTH naming the
 * servers and what was refused; null for anything else (no answer, not a NATS server).
 */
export function authRefusal(urls: readonly string[], err: unknown, auth: NatsAuth | undefined): QuireError | null {
  const at = `nats-server at ${urls.join(', ')}`
  const info = { servers: [...urls], cause: err }
  if (err instanceof errors.AuthorizationError || err instanceof errors.UserAuthenticationExpiredError) {
    return new QuireError('NATS_AUTH', `${at} refused the login (${describeNatsAuth(auth)}): ${err.message}`, info)
  }
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && (TLS_FAILURES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) {
    const hint = auth?.tls?.caFile === undefined ? '; a server with a certificate of a private CA needs tls.caFile' : ''
    return new QuireError('NATS_AUTH', `TLS with ${at} failed: ${(err as Error).message} (${code})${hint}`, info)
  }
  if (err instanceof errors.ConnectionError && /does not support 'tls'/.test(err.message)) {
    return new QuireError('NATS_AUTH', `${at} does not offer TLS, and this connection requires it (a tls:// URL or a TLS setting)`, info)
  }
  return null
}

/** The login method and TLS in words, without a secret: for logs and errors. */
export function describeNatsAuth(auth: NatsAuth | undefined): string {
  const a = auth ?? {}
  const login =
    a.user !== undefined ? `user ${a.user}, password ***`
      : a.token !== undefined ? 'token ***'
        : a.nkeySeedFile !== undefined ? `nkey seed from ${a.nkeySeedFile}`
          : a.credsFile !== undefined ? `creds from ${a.credsFile}`
            : 'no credentials'
  const tls = a.tls === undefined ? '' : `, TLS${a.tls.caFile ? ` (CA ${a.tls.caFile})` : ''}${a.tls.certFile ? ` with client certificate ${a.tls.certFile}` : ''}`
  return login + tls
}
