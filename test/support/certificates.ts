// Test certificates made with openssl in a test's own folder: the sandbox's CA and server
// certificate for 127.0.0.1 and localhost (cli/sandboxSecure.ts), plus a client certificate signed
// by that CA (mutual TLS), a server certificate of that CA that expired yesterday, and a second CA
// that signed nothing here (an untrusted one). The rest are valid for two days.

import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { makeServerCertificate } from '../../cli/sandboxSecure.ts'

export interface Certificates {
  ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string; otherCa: string
  expiredServerCert: string; expiredServerKey: string
}

export async function makeCertificates(dir: string): Promise<Certificates> {
  const { ca, serverCert, serverKey } = await makeServerCertificate(dir, 2)
  const openssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=nobodys-ca')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=quire-client')
  openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'expired.key', '-out', 'expired.csr', '-subj', '/CN=localhost')
  openssl('x509', '-req', '-in', 'expired.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'expired.pem', '-days', '-1', '-extfile', 'san.ext')
  const f = (name: string): string => path.join(dir, name)
  return {
    ca, serverCert, serverKey, clientCert: f('client.pem'), clientKey: f('client.key'), otherCa: f('other-ca.pem'),
    expiredServerCert: f('expired.pem'), expiredServerKey: f('expired.key'),
  }
}
