// Connecting to something that is not a NATS server, or to a URL that is not one: every command
// that connects (`quire shell ...`, `quire node`, `quire inspector`) prints `error CODE: message`
// naming the URL and exits 1 within a bounded time, never a stack trace; the client's connect()
// rejects with the same typed error. Peers: a TCP server that greets with a line that is not
// NATS's INFO, an HTTP server (silent until asked), and malformed URLs. Run as real processes.

import { execFile } from 'node:child_process'
import http from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { QUIRE_BIN, REPO_ROOT } from '../../cli/cluster.ts'
import { connect } from '../../client/index.ts'
import { isQuireError } from '../../machines/errors.ts'

interface Run { code: number | null; stdout: string; stderr: string; ms: number }

/** The environment without QUIRE_* variables, so only the arguments configure the command. */
const cleanEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QUIRE_')))

function quire(args: string[], timeoutMs = 60_000): Promise<Run> {
  const started = Date.now()
  return new Promise((resolve) => {
    execFile(process.execPath, [QUIRE_BIN, ...args], { cwd: REPO_ROOT, env: cleanEnv(), timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr), ms: Date.now() - started })
    })
  })
}

const show = (r: Run): string => `exit ${r.code} after ${r.ms} ms\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`

/** exit 1, a line `error CODE: ...` naming `url`, no stack trace. */
function assertTyped(r: Run, code: string, url: string): void {
  assert.is(r.code, 1, show(r))
  const line = r.stderr.split('\n').find((l) => l.startsWith('error '))
  assert.ok(line?.startsWith(`error ${code}: `), `expected "error ${code}: ..."\n${show(r)}`)
  assert.ok(line!.includes(url), `the message names ${url}\n${show(r)}`)
  assert.not.ok(/\n\s+at /.test(r.stderr + r.stdout), `stack trace printed\n${show(r)}`)
  // The connect timeout (5 s) plus a process start on a busy machine.
  assert.ok(r.ms < 30_000, `took ${r.ms} ms\n${show(r)}`)
}

interface Peers { garbage: string; http: string; dir: string; close(): Promise<void> }

const t = suite<{ p: Peers }>('nats urls')

t.before(async (ctx) => {
  // Accepts and greets with a line that is not INFO (an SMTP-like banner).
  const garbage = net.createServer((s) => { s.on('error', () => {}); s.end('220 hello, not nats\r\n') })
  const web = http.createServer((_q, r) => r.end('not nats'))
  const listen = (srv: net.Server): Promise<number> => new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port)))
  const [g, h] = [await listen(garbage), await listen(web)]
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-natsurl-'))
  ctx.p = {
    garbage: `nats://127.0.0.1:${g}`, http: `nats://127.0.0.1:${h}`, dir,
    async close() {
      web.closeAllConnections()
      await Promise.all([new Promise((r) => garbage.close(r)), new Promise((r) => web.close(r))])
      await rm(dir, { recursive: true, force: true })
    },
  }
})
t.after(async (ctx) => { await ctx.p?.close() })

t('quire shell: a malformed URL is INVALID_CONFIG naming it', async () => {
  for (const url of ['not a url', 'http://127.0.0.1:4222', 'nats://host:4222/path']) {
    assertTyped(await quire(['shell', 'listbookies', '--nats', url]), 'INVALID_CONFIG', url)
  }
})

t('quire shell: a server that answers but is not NATS is NATS_UNREACHABLE, at once', async ({ p }) => {
  const r = await quire(['shell', 'listledgers', '--nats', p.garbage])
  assertTyped(r, 'NATS_UNREACHABLE', p.garbage)
})

t('quire shell: an HTTP server is NATS_UNREACHABLE within the connect timeout', async ({ p }) => {
  assertTyped(await quire(['shell', 'listbookies', '--nats', p.http]), 'NATS_UNREACHABLE', p.http)
})

t('quire node and quire inspector refuse the same way', async ({ p }) => {
  const data = ['--data', path.join(p.dir, 'bookie')]
  assertTyped(await quire(['node', '--nats', 'foo::bar', ...data]), 'INVALID_CONFIG', 'foo::bar')
  assertTyped(await quire(['node', '--nats', p.garbage, ...data]), 'NATS_UNREACHABLE', p.garbage)
  assertTyped(await quire(['inspector', '--nats', 'not a url', '--port', '0']), 'INVALID_CONFIG', 'not a url')
  assertTyped(await quire(['inspector', '--nats', p.garbage, '--port', '0']), 'NATS_UNREACHABLE', p.garbage)
})

t('the client\'s connect() rejects with the typed error', async ({ p }) => {
  for (const [servers, code] of [['not a url', 'INVALID_CONFIG'], [p.garbage, 'NATS_UNREACHABLE'], [`${p.garbage},also not a url`, 'INVALID_CONFIG']] as const) {
    const err = await connect({ servers, connectTimeoutMs: 3000 }).then((c) => { void c.close(); return null }, (e: unknown) => e)
    assert.ok(isQuireError(err, code), `${servers}: ${String(err)}`)
  }
  const started = Date.now()
  const err = await connect({ servers: p.http, connectTimeoutMs: 1500 }).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(err, 'NATS_UNREACHABLE'), String(err))
  assert.ok(Date.now() - started < 10_000, 'bounded by the connect timeout')
})

t.run()
