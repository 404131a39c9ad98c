// `quire sandbox --secure`: the sandbox on the production NATS configuration (nats-secure.conf),
// so that what docs/security.md describes can be tried on one machine. It makes, under
// <data>/secrets (mode 0700): a CA and a server certificate for 127.0.0.1 and localhost (openssl,
// valid 30 days), and a random password per role in <role>.pw (mode 0600). nats-server gets the
// certificate and the passwords through its environment; every process logs in as its role's
// user with the role's inbox prefix, reading its password from that file (never argv).
// Invariants: the secrets folder is made afresh on every run (no password outlives its sandbox);
// no secret is printed, only the files that hold them.

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { QuireError } from '../machines/errors.ts'
import type { NatsAuth } from '../transport/natsAuth.ts'

/** The users of nats-secure.conf. */
export const SECURE_ROLES = ['bookie', 'autorecovery', 'app', 'inspector', 'admin'] as const
export type SecureRole = typeof SECURE_ROLES[number]

export interface ServerCertificate { ca: string; caKey: string; serverCert: string; serverKey: string }

const run = promisify(execFile)

/** A CA, and a server certificate it signed for 127.0.0.1 and localhost, in `dir`. */
export async function makeServerCertificate(dir: string, days = 30): Promise<ServerCertificate> {
  const openssl = async (...args: string[]): Promise<void> => {
    await run('openssl', args, { cwd: dir }).catch((err: unknown) => {
      const e = err as { code?: unknown; stderr?: string; message?: string }
      if (e.code === 'ENOENT') throw new QuireError('INVALID_CONFIG', 'openssl is not on PATH; it makes the sandbox\'s TLS certificates (apt-get install -y openssl)')
      throw new QuireError('INVALID_CONFIG', `openssl ${args[0]} failed: ${(e.stderr ?? e.message ?? String(err)).trim()}`)
    })
  }
  const d = String(days)
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', d, '-subj', '/CN=quire-sandbox-ca')
  await writeFile(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
  await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', d, '-extfile', 'san.ext')
  const f = (name: string): string => path.join(dir, name)
  return { ca: f('ca.pem'), caKey: f('ca.key'), serverCert: f('server.pem'), serverKey: f('server.key') }
}

export interface SandboxSecrets {
  dir: string
  certificate: ServerCertificate
  passwords: Record<SecureRole, string>
  /** The file holding each role's password. */
  passwordFiles: Record<SecureRole, string>
}

export async function makeSandboxSecrets(dataDir: string): Promise<SandboxSecrets> {
  const dir = path.join(dataDir, 'secrets')
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const certificate = await makeServerCertificate(dir)
  const passwords = {} as Record<SecureRole, string>
  const passwordFiles = {} as Record<SecureRole, string>
  for (const role of SECURE_ROLES) {
    passwords[role] = randomBytes(18).toString('base64url')
    passwordFiles[role] = path.join(dir, `${role}.pw`)
    await writeFile(passwordFiles[role], `${passwords[role]}\n`, { mode: 0o600 })
  }
  return { dir, certificate, passwords, passwordFiles }
}

/** nats-server's environment for nats-secure.conf (passwords quoted: the server parses each value). */
export function secureServerEnv(s: SandboxSecrets): NodeJS.ProcessEnv {
  return {
    ...process.env,
    QUIRE_NATS_TLS_CERT: s.certificate.serverCert,
    QUIRE_NATS_TLS_KEY: s.certificate.serverKey,
    ...Object.fromEntries(SECURE_ROLES.map((r) => [`QUIRE_NATS_${r.toUpperCase()}_PASSWORD`, `"${s.passwords[r]}"`])),
  }
}

/** The `quire` flags that log in as `role`. */
export function secureFlags(s: SandboxSecrets, role: SecureRole): string[] {
  return ['--nats-user', role, '--nats-password-file', s.passwordFiles[role], '--nats-inbox-prefix', `_INBOX.${role}`, '--nats-tls-ca-file', s.certificate.ca]
}

/** `connect()`'s auth for `role`. */
export function secureAuth(s: SandboxSecrets, role: SecureRole): NatsAuth {
  return { user: role, pass: s.passwords[role], inboxPrefix: `_INBOX.${role}`, tls: { caFile: s.certificate.ca } }
}
