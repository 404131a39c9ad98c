// The `quire` command end to end, run as real child processes (node cli/quire.mjs ...).
// Suite `cli` shares one cluster of 3 bookies (real nats-server, real bookie processes) and covers
// the shell: simpletest, ledgermetadata, listledgers, readledger, deleteledger and listbookies;
// typed operating errors (INVALID_CONFIG, NOT_ENOUGH_BOOKIES, NATS_UNREACHABLE, UNAUTHORIZED,
// NO_SUCH_LEDGER) printed as `error CODE: message`, exit 1, never a stack trace; and `quire bookie`
// refusing to start without --data. `quire sandbox` has its own suite (test/e2e/sandbox.test.ts).
// Suite `cli-bin` needs no cluster: --version, a Node.js older than `engines`, and output piped
// into a reader that goes away (`| head`) ending quietly.

import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { QUIRE_BIN, REPO_ROOT, ROLE_NODE_FLAGS, freePort } from '../../cli/cluster.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'
import { within } from '../support/processes.ts'

/** The environment without QUIRE_* variables, so only the arguments configure the command. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QUIRE_')))
}

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }

/** Runs `quire ...args` to completion (killed after timeoutMs) and returns what it printed. */
function quire(args: string[], timeoutMs = 60_000, nodeArgs: string[] = [], env: Record<string, string> = {}): Promise<Run> {
  const started = Date.now()
  return new Promise((resolve) => {
    execFile(process.execPath, [...nodeArgs, QUIRE_BIN, ...args], { cwd: REPO_ROOT, env: { ...cleanEnv(), ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string | null }) | null
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr),
          ms: Date.now() - started,
        })
      })
  })
}

const show = (r: Run): string => `exit ${r.code} (signal ${r.signal}) after ${r.ms} ms\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`
const lines = (s: string): string[] => s.split('\n').filter((l) => l.length > 0)

function assertOk(r: Run): void {
  assert.is(r.code, 0, show(r))
}

/** An operating error: exit 1, stderr starts `error CODE: `, and no stack trace anywhere. */
function assertTypedError(r: Run, code: string): void {
  assert.is(r.code, 1, show(r))
  assert.ok(r.stderr.startsWith(`error ${code}: `), `expected "error ${code}: ..."\n${show(r)}`)
  assert.not.ok(lines(r.stderr + '\n' + r.stdout).some((l) => l.includes('    at ')), `stack trace printed\n${show(r)}`)
}

/**
 * Runs `quire ...args` with stdout read as `| head -n keepLines` reads it: once keepLines lines
 * have arrived (at once when 0) the reading end of the pipe is closed, so later writes get EPIPE.
 */
function quireIntoHead(args: string[], keepLines: number, timeoutMs = 60_000): Promise<Run> {
  const started = Date.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [QUIRE_BIN, ...args], { cwd: REPO_ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    let stdout = ''
    let stderr = ''
    if (keepLines === 0) child.stdout.destroy()
    else {
      child.stdout.on('data', (d: Buffer) => {
        stdout += String(d)
        if (stdout.split('\n').length > keepLines) child.stdout.destroy()
      })
    }
    child.stderr.on('data', (d: Buffer) => { stderr += String(d) })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/**
 * Ended quietly after its reader went away: exit 0, nothing on stderr (no EPIPE, no stack) but
 * Node's own warnings about the environment it was given (CI sets both NO_COLOR and FORCE_COLOR).
 */
function assertQuietAfterReaderLeft(r: Run): void {
  const stderr = r.stderr.split('\n').filter((l) => !/^\(node:\d+\) Warning: |^\(Use `node --trace-warnings/.test(l)).join('\n')
  assert.is(stderr, '', show(r))
  assert.is(r.code, 0, show(r))
}

// --- the bin itself, no cluster ------------------------------------------------------------

const b = suite('cli-bin')

b('--version and -V print the version in package.json', async () => {
  const { version } = JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { version: string }
  for (const flag of ['--version', '-V']) {
    const r = await quire([flag])
    assertOk(r)
    assert.is(r.stdout, `${version}\n`, show(r))
  }
  const help = await quire(['--help'])
  assertOk(help)
  assert.match(help.stdout, /-V, --version/, show(help))
})

b('a Node.js older than engines.node is one line and exit 1', async () => {
  // The preload makes this Node report itself as 18.19.0 to quire.mjs.
  const fake = 'data:text/javascript,Object.defineProperty(process.versions,"node",{value:"18.19.0"})'
  const r = await quire(['--help'], 60_000, ['--import', fake])
  assert.is(r.code, 1, show(r))
  assert.is(r.stdout, '', show(r))
  assert.is(r.stderr, 'quire needs Node.js >=20; this is Node.js 18.19.0\n', show(r))
})

b('--help | head -1 ends quietly', async () => {
  const r = await quireIntoHead(['--help'], 1)
  assertQuietAfterReaderLeft(r)
  assert.is(r.stdout.split('\n')[0], 'Usage: quire [options] [command]', show(r))
})

b('node --print-settings into a reader that has gone ends quietly', async () => {
  assertQuietAfterReaderLeft(await quireIntoHead(['node', '--print-settings'], 0))
})

b('run as a program, quire starts Node.js with the role processes\' flags (its shebang)', async () => {
  const first = readFileSync(QUIRE_BIN, 'utf8').split('\n')[0]
  assert.is(first, `#!/usr/bin/env -S node ${ROLE_NODE_FLAGS.join(' ')}`)
  // Executed through the shebang, not `node quire.mjs`: env must split the line and Node accept the flags.
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(QUIRE_BIN, ['--version'], { cwd: REPO_ROOT, env: cleanEnv() }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) })
    })
  })
  assert.is(r.code, 0, r.stderr)
  assert.is(r.stdout, `${(JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { version: string }).version}\n`)
})

b.run()

// --- the shell against a shared cluster ------------------------------------------------------

const t = suite<{ c: TestCluster }>('cli')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

t('simpletest writes and verifies a ledger; metadata, list, read and delete it', async ({ c }) => {
  const nats = ['--nats', c.nats.url]
  const st = await quire(['shell', 'simpletest', '--ensemble', '3', '--write-quorum', '2', '--ack-quorum', '2', '--entries', '2000', '--size', '512', ...nats])
  assertOk(st)
  assert.is(lines(st.stdout).length, 1, show(st))
  const m = /^ledger (\d+): 2,000 entries written and verified, [\d,]+ entries\/s$/.exec(lines(st.stdout)[0]!)
  assert.ok(m, show(st))
  const id = m![1]!

  const md = await quire(['shell', 'ledgermetadata', id, ...nats])
  assertOk(md)
  const meta = JSON.parse(md.stdout) as Record<string, unknown>
  assert.is(meta['state'], 'CLOSED')
  assert.is(meta['lastEntryId'], 1999)
  assert.not.ok('passwordCheck' in meta, 'the password check is not shown')

  const list = await quire(['shell', 'listledgers', ...nats])
  assertOk(list)
  assert.ok(lines(list.stdout).includes(id), show(list))

  const read = await quire(['shell', 'readledger', id, '--from', '5', '--to', '7', ...nats])
  assertOk(read)
  assert.equal(lines(read.stdout).map((l) => l.split('\t')[0]), ['5', '6', '7'], show(read))

  const del = await quire(['shell', 'deleteledger', id, ...nats])
  assertOk(del)
  assertTypedError(await quire(['shell', 'ledgermetadata', id, ...nats]), 'NO_SUCH_LEDGER')
})

t('shell tail follows a ledger until it is closed', async ({ c }) => {
  const w = await (await c.client()).createLedger()
  await w.append('one')
  const tail = quire(['shell', 'tail', String(w.ledgerId), '--nats', c.nats.url])
  await new Promise((r) => setTimeout(r, 1500))
  await w.append('two')
  await w.close()
  const r = await tail
  assert.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  assert.equal(lines.slice(0, 2), ['0\t3B\t"one"', '1\t3B\t"two"'])
  assert.match(lines[2] ?? '', /closed at entry 1/)
})

t('readledger of a long ledger | head -1 ends quietly', async ({ c }) => {
  const st = await quire(['shell', 'simpletest', '--ensemble', '3', '--write-quorum', '2', '--ack-quorum', '2', '--entries', '3000', '--size', '256', '--nats', c.nats.url])
  assertOk(st)
  const id = /^ledger (\d+):/.exec(st.stdout)![1]!
  // 3,000 lines of ~530 bytes: far more than a pipe holds, so writes go on after the reader left.
  const r = await quireIntoHead(['shell', 'readledger', id, '--hex', '--nats', c.nats.url], 1)
  assertQuietAfterReaderLeft(r)
  assert.match(r.stdout, /^0\t256B\t[0-9a-f]{512}\n/, show(r))
  assertOk(await quire(['shell', 'deleteledger', id, '--nats', c.nats.url]))
})

t('listbookies shows the three bookies writable and alive', async ({ c }) => {
  const r = await quire(['shell', 'listbookies', '--nats', c.nats.url])
  assertOk(r)
  const rows = lines(r.stdout).map((l) => l.split('\t'))
  for (const id of ['bookie-1', 'bookie-2', 'bookie-3']) {
    const row = rows.find((x) => x[0] === id)
    assert.ok(row, `${id} listed\n${show(r)}`)
    assert.equal(row!.slice(1, 3), ['writable', 'alive'], show(r))
  }
})

t('a write quorum larger than the ensemble is INVALID_CONFIG', async ({ c }) => {
  const r = await quire(['shell', 'simpletest', '--ensemble', '2', '--write-quorum', '3', '--ack-quorum', '2', '--entries', '10', '--nats', c.nats.url])
  assertTypedError(r, 'INVALID_CONFIG')
})

t('an ensemble of 5 on 3 bookies is NOT_ENOUGH_BOOKIES', async ({ c }) => {
  const r = await quire(['shell', 'simpletest', '--ensemble', '5', '--write-quorum', '2', '--ack-quorum', '2', '--entries', '10', '--nats', c.nats.url])
  assertTypedError(r, 'NOT_ENOUGH_BOOKIES')
})

t('a NATS URL nobody listens on is NATS_UNREACHABLE within 15 s', async () => {
  const url = `nats://127.0.0.1:${await freePort()}`
  const r = await quire(['shell', 'listbookies', '--nats', url], 30_000)
  assertTypedError(r, 'NATS_UNREACHABLE')
  assert.ok(r.stderr.includes(url), `names ${url}\n${show(r)}`)
  assert.ok(r.ms < 15_000, `took ${r.ms} ms`)
})

t('readledger with a wrong password is UNAUTHORIZED', async ({ c }) => {
  const client = await c.client()
  const w = await within(20_000, 'createLedger', client.createLedger({ password: 's3cret' }))
  const ens = w.metadata.segments[0]!.ensemble
  await within(20_000, `append to ledger ${w.ledgerId} on ${ens.join(',')}`, w.append('one').then(() => w.append('two')).then(() => w.close()))
  const id = String(w.ledgerId)
  assertTypedError(await quire(['shell', 'readledger', id, '--password', 'wrong', '--nats', c.nats.url]), 'UNAUTHORIZED')
  const right = await quire(['shell', 'readledger', id, '--password', 's3cret', '--nats', c.nats.url])
  assertOk(right)
  assert.equal(lines(right.stdout), ['0\t3B\t"one"', '1\t3B\t"two"'], show(right))
  // The password kept out of argv: from a file (its first line) or from QUIRE_PASSWORD.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quire-cli-password-'))
  try {
    const file = path.join(dir, 'password')
    writeFileSync(file, 's3cret\n')
    const fromFile = await quire(['shell', 'readledger', id, '--password-file', file, '--nats', c.nats.url])
    assertOk(fromFile)
    assert.equal(lines(fromFile.stdout), ['0\t3B\t"one"', '1\t3B\t"two"'], show(fromFile))
    const fromEnv = await quire(['shell', 'readledger', id, '--nats', c.nats.url], 60_000, [], { QUIRE_PASSWORD: 's3cret' })
    assertOk(fromEnv)
    assertTypedError(await quire(['shell', 'readledger', id, '--nats', c.nats.url], 60_000, [], { QUIRE_PASSWORD: 'wrong' }), 'UNAUTHORIZED')
    const both = await quire(['shell', 'readledger', id, '--password', 's3cret', '--password-file', file, '--nats', c.nats.url])
    assertTypedError(both, 'INVALID_CONFIG')
    assert.match(both.stderr, /give --password or --password-file, not both/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

t('quire bookie refuses to start without --data', async () => {
  const r = await quire(['bookie', '--id', 'nodata', '--nats', 'nats://127.0.0.1:1'], 15_000)
  assert.ok(r.code !== 0 && r.code !== null, show(r))
  assert.match(r.stderr, /--data/, show(r))
  assert.not.ok(r.stderr.includes('    at '), show(r))
})

t.run()
