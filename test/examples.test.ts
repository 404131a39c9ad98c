// The programs in examples/, run as a user would run them: the packed client tarball installed
// into a temporary project (no tsx, no loader: plain `node` on .mjs files importing 'quire'),
// against a real cluster (nats-server and three bookie processes). kv-wal is killed with SIGKILL
// mid-way twice and must come back with every acknowledged change; the tail consumer, in another
// process, must print exactly the entries the producer had acknowledged, in order; the admin
// script lists, prints, deletes, and refuses an unknown ledger with exit code 1.

import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../cli/cluster.ts'
import { startCluster, type TestCluster } from './support/cluster.ts'
import { installApp, packedTarballs } from './support/pack.ts'
import { waitFor, within } from './support/processes.ts'

interface Example {
  proc: ChildProcess
  /** Complete stdout lines so far. */
  lines: string[]
  stderr(): string
  /** Resolves once the process has exited and its output is read to the end. */
  closed: Promise<number | null>
  what: string
}

interface Ctx {
  c: TestCluster
  app: string
  running: Set<ChildProcess>
  kvLedger: number
  tailLedger: number
}

const rootPackage = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
const t = suite<Ctx>('examples')

t.before(async (ctx) => {
  ctx.running = new Set()
  ctx.app = await mkdtemp(path.join(os.tmpdir(), 'quire-examples-'))
  const { client } = await packedTarballs()
  // The tail example imports rxjs itself, so the app depends on it, in the range the client takes.
  await installApp(ctx.app, [client, `rxjs@${rootPackage.dependencies.rxjs}`])
  await cp(path.join(REPO_ROOT, 'examples'), path.join(ctx.app, 'examples'), { recursive: true })
  ctx.c = await startCluster({ bookies: 3 })
})

t.after(async (ctx) => {
  for (const p of ctx.running ?? []) p.kill('SIGKILL')
  await ctx.c?.stop()
  if (ctx.app) await rm(ctx.app, { recursive: true, force: true })
})

// On Linux the kernel kills the example when the test process dies, however it ends.
const SETPRIV = process.platform === 'linux' && existsSync('/usr/bin/setpriv') ? '/usr/bin/setpriv' : null

function start(ctx: Ctx, file: string, args: string[]): Example {
  const argv = [process.execPath, path.join(ctx.app, 'examples', file), ...args]
  // Plain node: no loader inherited through NODE_OPTIONS either.
  const env: NodeJS.ProcessEnv = { ...process.env, QUIRE_NATS: ctx.c.nats.url }
  delete env['NODE_OPTIONS']
  const [command, ...rest] = SETPRIV ? [SETPRIV, '--pdeathsig', 'KILL', '--', ...argv] : argv
  const proc = spawn(command!, rest, { cwd: ctx.app, env, stdio: ['ignore', 'pipe', 'pipe'] })
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

t.run()
