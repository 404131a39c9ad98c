// The programs in examples/, run as a user would run them, against the server a user would run:
// the packed client and quire-server tarballs installed into one temporary project (no tsx, no
// loader: plain `node` everywhere), its `node_modules/.bin/quire sandbox --bookies 3` starting
// nats-server and three compiled bookie processes (their client imports rewritten to
// quire/internal/*), and plain .mjs examples importing 'quire' pointed at that sandbox's NATS.
// kv-wal is killed with SIGKILL mid-way twice and must come back with every acknowledged change;
// the tail consumer, in another process, must print exactly the entries the producer had
// acknowledged, in order; the events consumer of a named log resumes after its last commit (kill -9
// included) and ends when the log is sealed; the admin script lists, prints, deletes, and refuses an unknown ledger
// with exit code 1. Last, SIGTERM stops the installed sandbox with exit 0 and every process it
// started. Whatever fails, the after hook kills the sandbox and its children and removes the folders.

import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT, ROLE_NODE_FLAGS } from '../../cli/cluster.ts'
import { cleanEnv } from '../support/nodes.ts'
import { installApp, packedTarballs } from '../support/pack.ts'
import { isRunning, waitFor, within } from '../support/processes.ts'

interface Example {
  proc: ChildProcess
  /** Complete stdout lines so far. */
  lines: string[]
  stderr(): string
  /** Resolves once the process has exited and its output is read to the end. */
  closed: Promise<number | null>
  what: string
}

interface Sandbox {
  proc: ChildProcess
  /** stdout and stderr, interleaved. */
  output(): string
  stderr(): string
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<number | null>
  /** nats-server's and the bookies' pids, from cluster.json once it is written. */
  pids: number[]
}

interface Ctx {
  app: string
  data: string
  sandbox?: Sandbox
  natsUrl: string
  running: Set<ChildProcess>
  /** What the before hook threw, rethrown by the tests. */
  setupError?: unknown
  kvLedger: number
  tailLedger: number
}

interface ClusterJson { natsUrl: string; natsPid: number; bookies: Array<{ id: string; pid: number; data: string }> }

const rootPackage = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
const t = suite<Ctx>('examples')

// uvu reports a suite whose before hook throws as passed (0 of 4 run, exit code 0): the setup's
// error is kept here and fails every test instead, the first one with the whole of it.
t.before(async (ctx) => {
  ctx.running = new Set()
  await setUp(ctx).catch((err: unknown) => { ctx.setupError = err })
})

t.before.each((ctx) => {
  const err = ctx.setupError
  if (err === undefined) return
  ctx.setupError = new Error('the suite\'s setup failed: see the first test\'s failure')
  throw err
})

async function setUp(ctx: Ctx): Promise<void> {
  ctx.app = await mkdtemp(path.join(os.tmpdir(), 'quire-examples-'))
  ctx.data = await mkdtemp(path.join(os.tmpdir(), 'quire-examples-sandbox-'))
  const { client, server } = await packedTarballs()
  // The tail example imports rxjs itself, so the app depends on it, in the range the client takes.
  await installApp(ctx.app, [client, server, `rxjs@${rootPackage.dependencies.rxjs}`])
  assert.not.ok(existsSync(path.join(ctx.app, 'node_modules', 'tsx')), 'tsx is installed in the app: the server could run from .ts sources')
  await cp(path.join(REPO_ROOT, 'examples'), path.join(ctx.app, 'examples'), { recursive: true })
  ctx.sandbox = startSandbox(ctx)
  const sb = ctx.sandbox
  const file = path.join(ctx.data, 'cluster.json')
  await waitFor(() => existsSync(file) || sb.proc.exitCode !== null || sb.proc.signalCode !== null, 120_000, () => `no cluster.json from the installed sandbox\n${sb.output()}`)
  assert.ok(existsSync(file), `the installed sandbox exited before it was ready (code ${sb.proc.exitCode}, signal ${sb.proc.signalCode})\n${sb.output()}`)
  const cluster = JSON.parse(await readFile(file, 'utf8')) as ClusterJson
  sb.pids.push(cluster.natsPid, ...cluster.bookies.map((b) => b.pid))
  assert.equal(cluster.bookies.map((b) => b.id), ['bookie-1', 'bookie-2', 'bookie-3'])
  ctx.natsUrl = cluster.natsUrl
  if (process.platform === 'linux') {
    // The bookies are the installed package's compiled CLI, storing through the installed RocksDB binding.
    const server = path.join(ctx.app, 'node_modules', 'quire-server')
    for (const b of cluster.bookies) {
      const argv = readFileSync(`/proc/${b.pid}/cmdline`, 'utf8').split('\0')
      const bin = 1 + ROLE_NODE_FLAGS.length
      assert.equal(argv.slice(0, bin + 2), [process.execPath, ...ROLE_NODE_FLAGS, path.join(server, 'cli', 'quire.mjs'), 'node'], `${b.id}'s command line`)
      await waitFor(() => readFileSync(`/proc/${b.pid}/maps`, 'utf8').includes(path.join(ctx.app, 'node_modules', 'rocksdb-native')), 30_000,
        () => `${b.id} has not loaded ${ctx.app}/node_modules/rocksdb-native`)
    }
  }
}

t.after(async (ctx) => {
  for (const p of ctx.running ?? []) p.kill('SIGKILL')
  // Only when a test failed before the last one stopped it: SIGTERM (its orderly stop), then SIGKILL.
  const sb = ctx.sandbox
  if (sb && sb.proc.exitCode === null && sb.proc.signalCode === null) {
    sb.proc.kill('SIGTERM')
    await within(30_000, 'the sandbox stops on SIGTERM', sb.exited).catch(() => { sb.proc.kill('SIGKILL') })
    await sb.exited
  }
  // Its children die with it (parent-death signal); should one outlive it, it is killed here, and
  // the folders are removed only once nothing writes to them.
  for (const pid of sb?.pids ?? []) if (isRunning(pid)) process.kill(pid, 'SIGKILL')
  await waitFor(() => !(sb?.pids ?? []).some(isRunning), 30_000, () => `still running: ${sb?.pids.filter(isRunning).join(', ')}`).catch(() => {})
  if (ctx.app) await rm(ctx.app, { recursive: true, force: true })
  if (ctx.data) await rm(ctx.data, { recursive: true, force: true })
})

// On Linux the kernel kills the example or the sandbox when the test process dies, however it
// ends; the sandbox starts its own children the same way, so they follow it.
const SETPRIV = process.platform === 'linux' && existsSync('/usr/bin/setpriv') ? '/usr/bin/setpriv' : null

/** Plain node on `argv` in the app: no loader inherited through NODE_OPTIONS either. */
function spawnPlain(ctx: Ctx, argv: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const plainEnv = { ...env }
  delete plainEnv['NODE_OPTIONS']
  const [command, ...rest] = SETPRIV ? [SETPRIV, '--pdeathsig', 'KILL', '--', process.execPath, ...argv] : [process.execPath, ...argv]
  return spawn(command!, rest, { cwd: ctx.app, env: plainEnv, stdio: ['ignore', 'pipe', 'pipe'] })
}

/** The installed `quire sandbox` (quire-server's compiled CLI) on the suite's data folder. */
function startSandbox(ctx: Ctx): Sandbox {
  const bin = path.join(ctx.app, 'node_modules', '.bin', 'quire')
  const proc = spawnPlain(ctx, [bin, 'sandbox', '--bookies', '3', '--data', ctx.data, '--no-inspector'], cleanEnv())
  process.once('exit', () => proc.kill('SIGKILL'))
  let out = ''
  let err = ''
  const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-64 * 1024) }
  proc.stdout!.on('data', keep)
  proc.stderr!.on('data', (d: Buffer) => { keep(d); err = (err + d.toString()).slice(-16 * 1024) })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  return { proc, output: () => out, stderr: () => err, exited, pids: [] }
}

function start(ctx: Ctx, file: string, args: string[]): Example {
  const proc = spawnPlain(ctx, [path.join(ctx.app, 'examples', file), ...args], { ...process.env, QUIRE_NATS: ctx.natsUrl })
  ctx.running.add(proc)
  const lines: string[] = []
  let partial = ''
  let err = ''
  proc.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n')
    partial = parts.pop()!
    lines.push(...parts)
  })
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-16 * 1024) })
  const closed = new Promise<number | null>((resolve) => proc.once('close', (code) => { ctx.running.delete(proc); resolve(code) }))
  return { proc, lines, stderr: () => err, closed, what: `${file} ${args.join(' ')}` }
}

/** The example's exit code, once it has exited; one that hangs fails the test instead of stalling the run. */
function exitOf(ex: Example): Promise<number | null> {
  return within(120_000, `${ex.what} exits`, ex.closed)
}

async function run(ctx: Ctx, file: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const ex = start(ctx, file, args)
  const code = await exitOf(ex)
  return { code, stdout: ex.lines.join('\n'), stderr: ex.stderr() }
}

/** Starts `kv-wal.mjs fill`, waits for `acks` acknowledged changes, kills it with SIGKILL; returns every change it acknowledged. */
async function fillAndKill(ctx: Ctx, start0: number, acks: number): Promise<string[]> {
  const ex = start(ctx, 'kv-wal/kv-wal.mjs', ['--store', 'test', 'fill', '1000000', String(start0)])
  await waitFor(() => ex.lines.length >= acks || ex.proc.exitCode !== null, 60_000, () => `kv-wal acknowledged ${ex.lines.length} changes: ${ex.stderr()}`)
  assert.is(ex.proc.exitCode, null, `kv-wal is still filling: ${ex.stderr()}`)
  ex.proc.kill('SIGKILL')
  await exitOf(ex)
  const acked = ex.lines.filter((l) => l.startsWith('acked '))
  assert.equal(acked, ex.lines, 'fill prints only acknowledgements')
  return acked
}

/** The change fill makes after the one `line` acknowledged (fill deletes key-<i-1> after setting key-<i> when i % 3 is 2). */
function nextChange(line: string): string {
  const [, op, key] = line.split(' ')
  const i = Number(key!.slice('key-'.length))
  if (op === 'set' && i % 3 === 2) return `acked delete key-${i - 1}`
  const next = op === 'set' ? i + 1 : i + 2
  return `acked set key-${next} value-${next}`
}

function replay(changes: string[]): Record<string, string> {
  const map: Record<string, string> = {}
  for (const line of changes) {
    const [, op, key, value] = line.split(' ')
    if (op === 'set') map[key!] = value!
    else delete map[key!]
  }
  return map
}

t('kv-wal: after kill -9, every acknowledged change is there, twice over', async (ctx) => {
  const first = await fillAndKill(ctx, 0, 30)
  const second = await fillAndKill(ctx, 1000, 30)
  const dump = await run(ctx, 'kv-wal/kv-wal.mjs', ['--store', 'test', 'dump'])
  assert.is(dump.code, 0, dump.stderr)
  const got = JSON.parse(dump.stdout) as Record<string, string>
  // The change in flight at each kill was not acknowledged: recovery may or may not have found it.
  const inFlight1 = nextChange(first.at(-1)!)
  const inFlight2 = nextChange(second.at(-1)!)
  const possible = [
    [...first, ...second], [...first, inFlight1, ...second], [...first, ...second, inFlight2], [...first, inFlight1, ...second, inFlight2],
  ].map(replay)
  assert.ok(possible.some((m) => JSON.stringify(m) === JSON.stringify(got)),
    `the store holds the acknowledged changes: got ${JSON.stringify(got)}, acknowledged ${JSON.stringify([...first, ...second])}`)
  assert.ok(Object.keys(got).length >= 20, 'keys from both runs')
  // The dump's start recovered one ledger (the second fill's: the first one's was deleted after its snapshot).
  const m = /recovered \d+ keys from ledgers \[(\d+)\], writing to ledger (\d+)/.exec(dump.stderr)
  assert.ok(m, dump.stderr)
  ctx.kvLedger = Number(m[2])
})

t('tail: a consumer in another process prints every entry the producer acknowledged, in order', async (ctx) => {
  const producer = start(ctx, 'tail/producer.mjs', ['40', '25'])
  await waitFor(() => producer.lines.length > 0 || producer.proc.exitCode !== null, 30_000, () => `producer: ${producer.stderr()}`)
  const m = /^ledger (\d+)$/.exec(producer.lines[0] ?? '')
  assert.ok(m, `producer prints its ledger first: ${producer.lines[0]} ${producer.stderr()}`)
  ctx.tailLedger = Number(m[1])
  const consumer = start(ctx, 'tail/consumer.mjs', [m[1]!])
  assert.is(await exitOf(producer), 0, producer.stderr())
  assert.is(await exitOf(consumer), 0, consumer.stderr())
  const acked = producer.lines.filter((l) => l.startsWith('acked ')).map((l) => l.slice('acked '.length))
  assert.is(acked.length, 40)
  assert.equal(acked.map((l) => Number(l.split(' ')[0])), [...Array(40).keys()], 'entry ids 0..39 in order')
  assert.equal(consumer.lines, acked)
  assert.match(consumer.stderr(), `ledger ${ctx.tailLedger} is closed; 40 entries`)
})

t('events: a billing consumer of a named log resumes after its last commit, kill -9 included; it ends when the log is sealed', async (ctx) => {
  const first = await run(ctx, 'events/publish.mjs', ['60'])
  assert.is(first.code, 0, first.stderr)
  const acked = first.stdout.split('\n').filter((l) => l.startsWith('acked ')).map((l) => l.slice('acked '.length))
  assert.is(acked.length, 60)
  // Many events per entry: the 60 appends went out in one tick.
  assert.ok(new Set(acked.map((l) => l.split(' ')[0]!.split(':').slice(0, 2).join(':'))).size < 60, 'events packed into entries')
  const one = await run(ctx, 'events/billing.mjs', ['25'])
  assert.is(one.code, 0, one.stderr)
  assert.equal(one.stdout.split('\n'), acked.slice(0, 25))
  // Killed while it handles events: what it printed after its last commit may come again, nothing is skipped.
  const killed = start(ctx, 'events/billing.mjs', [])
  await waitFor(() => killed.lines.length >= 5 || killed.proc.exitCode !== null, 30_000, () => `billing: ${killed.stderr()}`)
  killed.proc.kill('SIGKILL')
  await exitOf(killed)
  const printed = killed.lines.length
  assert.equal(killed.lines, acked.slice(25, 25 + printed), 'the second run resumed after the first one\'s last commit')
  const more = await run(ctx, 'events/publish.mjs', ['10', '--seal'])
  assert.is(more.code, 0, more.stderr)
  const all = [...acked, ...more.stdout.split('\n').filter((l) => l.startsWith('acked ')).map((l) => l.slice('acked '.length))]
  const last = await run(ctx, 'events/billing.mjs', [])
  assert.is(last.code, 0, last.stderr)
  const lines = last.stdout.split('\n')
  const from = all.indexOf(lines[0]!)
  assert.ok(from >= 25 && from <= 25 + printed, `the run after the kill starts at event ${from}: after the last commit, at most where the killed run stopped (${25 + printed})`)
  assert.equal(lines, all.slice(from), 'then every event to the end, in order')
  assert.match(last.stderr, 'the log is sealed')
})

t('admin: list, metadata, delete, bookies; an unknown ledger is a clear error with exit code 1', async (ctx) => {
  assert.ok(ctx.kvLedger !== undefined && ctx.tailLedger !== undefined, 'the kv-wal and tail tests made their ledgers')
  const idsIn = (stdout: string): number[] => stdout.split('\n').slice(1).map((l) => Number(l.split(/\s+/)[0]))
  const list = await run(ctx, 'admin/admin.mjs', ['list'])
  assert.is(list.code, 0, list.stderr)
  assert.equal(idsIn(list.stdout).filter((id) => id === ctx.kvLedger || id === ctx.tailLedger).sort(), [ctx.kvLedger, ctx.tailLedger].sort())
  const tailRow = list.stdout.split('\n').find((l) => l.startsWith(`${ctx.tailLedger} `))!
  assert.equal(tailRow.split(/\s+/).slice(0, 4), [String(ctx.tailLedger), 'CLOSED', '3/2/2', '39'])
  assert.equal(list.stdout.split('\n').filter((l) => l.includes('kv-wal.store=test')).length, 1, 'kv-wal deleted its older ledgers')

  const md = await run(ctx, 'admin/admin.mjs', ['metadata', String(ctx.tailLedger)])
  assert.is(md.code, 0, md.stderr)
  const parsed = JSON.parse(md.stdout)
  assert.is(parsed.ledgerId, ctx.tailLedger)
  assert.is(parsed.state, 'CLOSED')
  assert.is(parsed.lastEntryId, 39)
  assert.equal([parsed.ensembleSize, parsed.writeQuorum, parsed.ackQuorum], [3, 2, 2])
  assert.is(parsed.segments[0].ensemble.length, 3)
  assert.equal(parsed.customMetadata, { example: 'tail' })

  const del = await run(ctx, 'admin/admin.mjs', ['delete', String(ctx.tailLedger)])
  assert.is(del.code, 0, del.stderr)
  const after = await run(ctx, 'admin/admin.mjs', ['list'])
  assert.is(after.code, 0, after.stderr)
  assert.ok(!idsIn(after.stdout).includes(ctx.tailLedger), after.stdout)
  assert.ok(idsIn(after.stdout).includes(ctx.kvLedger), after.stdout)

  for (const command of ['metadata', 'delete']) {
    const unknown = await run(ctx, 'admin/admin.mjs', [command, String(ctx.tailLedger)])
    assert.is(unknown.code, 1, `${command}: ${unknown.stderr}`)
    assert.is(unknown.stderr.trim(), `admin: NO_SUCH_LEDGER: no ledger ${ctx.tailLedger}`)
  }
  const usage = await run(ctx, 'admin/admin.mjs', ['metadata', 'x'])
  assert.is(usage.code, 2)
  assert.match(usage.stderr, /^usage: /)

  const bookies = await run(ctx, 'admin/admin.mjs', ['bookies'])
  assert.is(bookies.code, 0, bookies.stderr)
  assert.equal(bookies.stdout.split('\n').slice(1).map((l) => l.split(/\s+/)[0]).sort(), ['bookie-1', 'bookie-2', 'bookie-3'])
})

t('the README\'s example runs as written in the installed app, with plain node', async (ctx) => {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')
  const block = /## Example\n+```js\n([\s\S]*?)```/.exec(readme)?.[1]
  assert.ok(block, 'the README has a js example under "## Example"')
  assert.match(block, /from 'quire'/)
  await writeFile(path.join(ctx.app, 'examples', 'readme.mjs'), block.replace("'nats://127.0.0.1:4222'", JSON.stringify(ctx.natsUrl)))
  const r = await run(ctx, 'readme.mjs', [])
  assert.is(r.code, 0, r.stderr)
  assert.is(r.stderr, '')
  assert.ok(r.stdout.split('\n').every((l) => /^\d+$/.test(l)), `it prints ledger ids: ${r.stdout}`)
})

t('the installed sandbox stops on SIGTERM: exit 0, its nats-server and bookies gone', async (ctx) => {
  const sb = ctx.sandbox!
  assert.ok(sb.pids.every(isRunning), `nats-server and the bookies run until the stop\n${sb.output()}`)
  sb.proc.kill('SIGTERM')
  const code = await within(90_000, 'the sandbox stops on SIGTERM', sb.exited)
  assert.is(code, 0, sb.output())
  assert.is(sb.stderr(), '', 'nothing on the sandbox\'s stderr')
  for (const pid of sb.pids) assert.not.ok(isRunning(pid), `pid ${pid} still running after the sandbox stopped\n${sb.output()}`)
})

t.run()
