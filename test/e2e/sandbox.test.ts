// `quire sandbox --demo` as a real process on its own data folder (its own nats-server and
// `quire node` processes). Pins:
// - cluster.json appears only once the cluster is ready: every bookie it lists is registered in
//   the metadata, with that pid and writable, when the file is first seen;
// - the demo prints throughput lines; SIGTERM, and a terminal's Ctrl-C (SIGINT to the sandbox's
//   process group), stop it with exit 0 and nothing on stderr, after every process it started;
// - the demo ledger ends CLOSED with lastEntryId >= every LAC the demo printed: read from the
//   sandbox's own nats store after it stopped (a nats-server started on that folder), not from
//   what the sandbox says.
// - with --secure it runs on nats-secure.conf: a tls:// URL, the passwords in files of mode 0600
//   and never printed, the shell command it prints works as the operator's user, a login-less one is
//   NATS_AUTH, and the demo and the stop work as without it.

import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startNatsServer, startNodeProcess, type ManagedProcess } from '../../cli/cluster.ts'
import { openMetadata } from '../../storage/openMetadata.ts'
import { connectNats } from '../../transport/nats.ts'
import { cleanEnv, quire, show } from '../support/nodes.ts'
import { isRunning, waitFor } from '../support/processes.ts'

interface ClusterJson {
  natsUrl: string; natsPid: number; bookies: Array<{ id: string; pid: number; data: string }>
  secure?: { caFile: string; passwordFiles: Record<string, string>; autorecoveryPid: number }
}

const DEMO_LINE = /entries\/s .* MB\/s .* add p50 .* p99 .* LAC (-?\d+)$/

const s = suite<{ dir: string; proc?: ManagedProcess; pids: number[] }>('sandbox')
s.before.each(async (ctx) => {
  ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'quire-sandbox-test-'))
  ctx.pids = []
  delete ctx.proc
})
s.after.each(async (ctx) => {
  // Only if the test failed midway: kill what it started, by pid.
  ctx.proc?.kill('SIGKILL')
  await ctx.proc?.exited
  for (const pid of ctx.pids) if (isRunning(pid)) process.kill(pid, 'SIGKILL')
  await rm(ctx.dir, { recursive: true, force: true })
})

/** Every bookie listed in cluster.json, as the metadata has it right now. */
async function registeredBookies(cluster: ClusterJson): Promise<string[]> {
  const nc = await connectNats(cluster.natsUrl)
  try {
    const md = await openMetadata(nc)
    const records = await md.listBookies()
    return cluster.bookies.map((b) => {
      const rec = records.find((r) => r.bookieId === b.id)
      return rec ? `${b.id}: pid ${rec.pid} ${rec.state}` : `${b.id}: not registered`
    })
  } finally {
    await nc.close()
  }
}

/** The ledger's metadata in the nats store the sandbox left in `dir`. */
async function ledgerAfterStop(dir: string, ledgerId: number): Promise<{ state: string; lastEntryId: number }> {
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  try {
    const nc = await connectNats(nats.url)
    try {
      const { value } = await (await openMetadata(nc)).readLedger(ledgerId)
      return { state: value.state, lastEntryId: value.lastEntryId }
    } finally {
      await nc.close()
    }
  } finally {
    await nats.stop()
  }
}

async function demoStopsCleanly(ctx: { dir: string; proc?: ManagedProcess; pids: number[] }, stop: (p: ManagedProcess) => void): Promise<void> {
  const p = startNodeProcess({ command: 'sandbox', args: ['--bookies', '2', '--data', ctx.dir, '--demo', '--entry-size', '256', '--no-inspector'], env: cleanEnv() })
  ctx.proc = p
  let stdout = ''
  let stderr = ''
  p.proc.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  p.proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const output = (): string => `--- stdout\n${stdout}\n--- stderr\n${stderr}`
  const alive = (): boolean => {
    assert.ok(p.proc.exitCode === null && p.proc.signalCode === null, `sandbox exited early\n${output()}`)
    return true
  }

  // The moment cluster.json exists, the cluster it describes must be usable.
  const file = path.join(ctx.dir, 'cluster.json')
  await waitFor(() => alive() && existsSync(file), 120_000, () => `no cluster.json\n${output()}`, 10)
  const cluster = JSON.parse(await readFile(file, 'utf8')) as ClusterJson
  ctx.pids = [cluster.natsPid, ...cluster.bookies.map((b) => b.pid)]
  assert.match(cluster.natsUrl, /^nats:\/\/127\.0\.0\.1:\d+$/)
  assert.is(cluster.bookies.length, 2)
  for (const b of cluster.bookies) assert.ok(existsSync(b.data), `data folder of ${b.id}`)
  assert.equal(await registeredBookies(cluster), cluster.bookies.map((b) => `${b.id}: pid ${b.pid} writable`),
    'every bookie in cluster.json is registered when the file appears')

  // Entries acknowledged: each demo line prints the writer's LAC.
  const lacs = (): number[] => stdout.split('\n').flatMap((l) => { const m = DEMO_LINE.exec(l); return m ? [Number(m[1])] : [] })
  await waitFor(() => alive() && lacs().length >= 2 && lacs().at(-1)! >= 0, 120_000, () => `no two demo lines with entries\n${output()}`)
  const ledgerId = Number(/demo: appending .* to ledger (\d+)/.exec(stdout)?.[1])
  assert.ok(ledgerId >= 1, output())
  assert.ok(ctx.pids.every(isRunning), 'nats-server and bookies run while the sandbox does')

  stop(p)
  await waitFor(() => p.proc.exitCode !== null || p.proc.signalCode !== null, 90_000, () => `sandbox still running after the signal\n${output()}`)
  const acked = Math.max(...lacs())
  assert.is(p.proc.exitCode, 0, `sandbox exit code after the signal\n${output()}`)
  assert.not.match(stderr, /error|uncaught/i, output())
  for (const pid of ctx.pids) assert.not.ok(isRunning(pid), `pid ${pid} still running after the sandbox stopped`)

  const printed = new RegExp(`demo: ledger ${ledgerId} closed: state CLOSED, lastEntryId (\\d+)`).exec(stdout)
  assert.ok(printed, `no closing line\n${output()}`)
  const md = await ledgerAfterStop(ctx.dir, ledgerId)
  assert.is(md.state, 'CLOSED', `ledger ${ledgerId} in the stopped sandbox's metadata\n${output()}`)
  assert.ok(md.lastEntryId >= acked, `lastEntryId ${md.lastEntryId} < LAC ${acked} printed before the stop\n${output()}`)
  assert.is(md.lastEntryId, Number(printed[1]), 'the closing line states the stored lastEntryId')
}

s('sandbox --demo: cluster.json once ready; SIGTERM closes the demo ledger with every acknowledged entry, exit 0', async (ctx) => {
  await demoStopsCleanly(ctx, (p) => p.kill('SIGTERM'))
})

s('sandbox --demo: Ctrl-C (SIGINT to its process group) closes the demo ledger and stops everything, exit 0', async (ctx) => {
  // The sandbox leads its own process group (cli/cluster.ts), as a shell's foreground job does.
  await demoStopsCleanly(ctx, (p) => process.kill(-p.pid, 'SIGINT'))
})

s('sandbox --secure --demo: TLS and one NATS user per role; the printed shell command works, a login-less one is refused; SIGTERM stops everything', async (ctx) => {
  const p = startNodeProcess({ command: 'sandbox', args: ['--secure', '--bookies', '2', '--data', ctx.dir, '--demo', '--entry-size', '256', '--no-inspector'], env: cleanEnv() })
  ctx.proc = p
  const output = (): string => p.output()
  const file = path.join(ctx.dir, 'cluster.json')
  await waitFor(() => { assert.is(p.proc.exitCode, null, output()); return existsSync(file) }, 120_000, () => `no cluster.json\n${output()}`, 10)
  const cluster = JSON.parse(await readFile(file, 'utf8')) as ClusterJson
  ctx.pids = [cluster.natsPid, ...cluster.bookies.map((b) => b.pid), cluster.secure!.autorecoveryPid]
  assert.match(cluster.natsUrl, /^tls:\/\/127\.0\.0\.1:\d+$/)
  const passwords: string[] = []
  for (const [role, f] of Object.entries(cluster.secure!.passwordFiles)) {
    assert.is((await stat(f)).mode & 0o777, 0o600, `${role}'s password file`)
    passwords.push((await readFile(f, 'utf8')).trim())
  }
  assert.is(passwords.length, 5)
  // The hint, run as printed: the operator's login, from its password file.
  const hint = /^try: npx quire (shell listbookies .*)$/m.exec(output())
  assert.ok(hint, output())
  const asAdmin = await quire(hint[1]!.split(' '))
  assert.is(asAdmin.code, 0, show(asAdmin))
  for (const b of cluster.bookies) assert.match(asAdmin.stdout, new RegExp(`^${b.id}\twritable\talive`, 'm'))
  const noLogin = await quire(['shell', 'listbookies', '--nats', cluster.natsUrl, '--nats-tls-ca-file', cluster.secure!.caFile])
  assert.is(noLogin.code, 1, show(noLogin))
  assert.match(noLogin.stderr, /^error NATS_AUTH: /m)
  await waitFor(() => DEMO_LINE.test(output().split('\n').filter((l) => DEMO_LINE.test(l)).at(-1) ?? '') && / LAC [1-9]/.test(output()), 120_000, () => `no demo line with entries\n${output()}`)
  p.kill('SIGTERM')
  await waitFor(() => p.proc.exitCode !== null || p.proc.signalCode !== null, 90_000, () => `sandbox still running after the signal\n${output()}`)
  assert.is(p.proc.exitCode, 0, output())
  assert.match(output(), /demo: ledger \d+ closed: state CLOSED/)
  for (const pid of ctx.pids) assert.not.ok(isRunning(pid), `pid ${pid} still running after the sandbox stopped`)
  for (const pw of passwords) assert.not.ok(output().includes(pw), 'a password is printed')
})

s.run()
