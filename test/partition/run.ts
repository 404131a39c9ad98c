// How long Quire's metadata writes stall when one server of a three-server NATS cluster is cut off
// by a network partition, against a kill -9 of the same server (docs/cluster.md has the numbers).
// Run as root: `npm run test:partition -- [options]` (options: see USAGE). Needs `ip` (netns, veth,
// bridge), `iptables` and `nats-server` 2.9.
//
// Layout: a hub network namespace holding a bridge, and one namespace per nats-server joined to it
// by a veth pair; every address lives in those namespaces, none has a route anywhere else, so no
// packet of the measurement can leave them. Two processes: this one, in the caller's namespace,
// creates the namespaces and deletes them (with every process inside and every iptables rule, which
// live in the namespace) on any exit; a child run in the hub namespace does the measuring: it starts
// the servers from cli/natsCluster.ts's generated configuration, creates the metadata buckets as
// Quire does (storage/openMetadata.ts: R3), writes ledger metadata through storage/metadataStore.ts
// from a client on the healthy servers (or, with --writer-on victim, homed on the one cut off),
// partitions (iptables DROP in its namespace) or kills the server leading the ledgers bucket's
// stream, heals or restarts it after --cut-s, and reports the longest gap between successful
// writes. Bounded: each run ends at most 120 s after the heal.
// Exit codes: 0 measured (and every stall within --max-stall-s when given), 1 a stall over
// --max-stall-s, 2 could not set up (not root, a tool missing, a namespace or cluster not made).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import {
  CLUSTER_FAILURE_DETECTION, NATS_DEFAULT_FAILURE_DETECTION, natsClusterConfig, waitUntilReady, type NatsFailureDetection,
} from '../../cli/natsCluster.ts'
import { isQuireError } from '../../machines/errors.ts'
import { BUCKETS, openMetadata } from '../../storage/openMetadata.ts'
import { openKv } from '../../storage/kv.ts'
import { MetadataStore, type LedgerMetadata } from '../../storage/metadataStore.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'

const USAGE = `npm run test:partition -- [--runs N] [--scenarios partition,kill] [--tuning shipped|default]
  [--ping-interval D] [--ping-max N] [--write-deadline D] [--cut-s S] [--settle-s S] [--max-stall-s S]
  [--json FILE] [--logs DIR] [--kv-timeout-ms MS] [--writer-on healthy|victim]`
const SELF = fileURLToPath(import.meta.url)
const SUBNET = '10.243.77' // only ever assigned inside the namespaces made here
const HUB_ADDR = `${SUBNET}.254`
const SERVERS = 3
const CLIENT_PORT = 4222
const CLUSTER_PORT = 6222
const MONITOR_PORT = 8222
const IFACE = 'eth0' // each server's end of its veth pair, inside its namespace

type Scenario = 'partition' | 'kill'

interface Options {
  runs: number
  scenarios: Scenario[]
  tuningName: string
  failureDetection: NatsFailureDetection
  cutS: number
  settleS: number
  maxStallS: number | null
  json: string | null
  /** Folder to keep each run's server logs in. */
  logs: string | null
  /** The writer's bound on each KV request; null: as openMetadata opens the buckets. */
  kvTimeoutMs: number | null
  /** The writer's home server: a healthy one, or the one cut off (it must move to another). */
  writerOn: 'healthy' | 'victim'
}

interface ChildPlan extends Options {
  dir: string
  namespaces: string[]
  result: string
}

interface RunResult {
  scenario: Scenario
  tuning: string
  run: number
  victim: string
  /** Server leading each metadata stream, and the JetStream meta leader, before the cut. */
  leaders: Record<string, string>
  /** Longest gap between two successful metadata writes, from the last write before the cut on. */
  stallMs: number
  /** That gap's start and end, relative to the cut. */
  stallFromMs: number
  stallToMs: number
  /** Longest time without a successful write counted from the heal (restart) on. */
  afterHealMs: number
  /** Every gap over 1 s from the cut on, in seconds relative to the cut. */
  gapsS: Array<[number, number]>
  writes: number
  errors: Record<string, number>
}

class SetupError extends Error {}

// ---------------------------------------------------------------------------------------------
// Options

function parseOptions(argv: string[]): Options {
  const o: Options = {
    runs: 1, scenarios: ['partition', 'kill'], tuningName: 'shipped', failureDetection: { ...CLUSTER_FAILURE_DETECTION },
    cutS: 30, settleS: 30, maxStallS: null, json: null, logs: null, kvTimeoutMs: null, writerOn: 'healthy',
  }
  let custom = false
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = argv[++i]
    if (value === undefined) throw new SetupError(`${flag} needs a value\n${USAGE}`)
    const num = (min: number): number => {
      const n = Number(value)
      if (!Number.isFinite(n) || n < min) throw new SetupError(`${flag} must be a number >= ${min}, got ${value}`)
      return n
    }
    switch (flag) {
      case '--runs': o.runs = Math.floor(num(1)); break
      case '--scenarios': {
        const s = value.split(',')
        if (s.some((x) => x !== 'partition' && x !== 'kill')) throw new SetupError(`--scenarios takes partition and/or kill, got ${value}`)
        o.scenarios = s as Scenario[]
        break
      }
      case '--tuning':
        if (value === 'shipped') o.failureDetection = { ...CLUSTER_FAILURE_DETECTION }
        else if (value === 'default') o.failureDetection = { ...NATS_DEFAULT_FAILURE_DETECTION }
        else throw new SetupError(`--tuning is shipped or default, got ${value}`)
        o.tuningName = value
        break
      case '--ping-interval': o.failureDetection.pingInterval = value; custom = true; break
      case '--ping-max': o.failureDetection.pingMax = Math.floor(num(1)); custom = true; break
      case '--write-deadline': o.failureDetection.writeDeadline = value; custom = true; break
      case '--cut-s': o.cutS = num(1); break
      case '--settle-s': o.settleS = num(1); break
      case '--max-stall-s': o.maxStallS = num(0); break
      case '--json': o.json = value; break
      case '--logs': o.logs = path.resolve(value); break
      case '--kv-timeout-ms': o.kvTimeoutMs = Math.floor(num(1)); break
      case '--writer-on':
        if (value !== 'healthy' && value !== 'victim') throw new SetupError(`--writer-on is healthy or victim, got ${value}`)
        o.writerOn = value
        break
      default: throw new SetupError(`unknown option ${flag}\n${USAGE}`)
    }
  }
  const fd = o.failureDetection
  o.tuningName = `${custom ? 'custom' : o.tuningName}: ping_interval=${fd.pingInterval} ping_max=${fd.pingMax} write_deadline=${fd.writeDeadline}` +
    (o.kvTimeoutMs === null ? '' : `; writer's KV request timeout ${o.kvTimeoutMs} ms`) +
    (o.writerOn === 'victim' ? '; writer homed on the server cut off' : '')
  return o
}

// ---------------------------------------------------------------------------------------------
// The parent: namespaces in, namespaces out.

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.error) throw new SetupError(`${cmd} ${args.join(' ')}: ${r.error.message}`)
  if (r.status !== 0) throw new SetupError(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`)
  return r.stdout
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new SetupError('needs root (network namespaces and iptables)')
  for (const [cmd, args, hint] of [
    ['ip', ['-V'], 'apt-get install -y iproute2'],
    ['iptables', ['-V'], 'apt-get install -y iptables'],
    ['nats-server', ['--version'], 'apt-get install -y nats-server'],
  ] as const) {
    try {
      sh(cmd, [...args])
    } catch (err) {
      throw new SetupError(`${cmd} is needed (${hint}): ${(err as Error).message}`)
    }
  }
}

/** Namespace names: hub first, then one per server. */
function namespaceNames(): string[] {
  const p = `qpt${process.pid}`
  return [`${p}-hub`, ...Array.from({ length: SERVERS }, (_, i) => `${p}-n${i + 1}`)]
}

function createNetwork(namespaces: string[]): void {
  const [hub, ...servers] = namespaces as [string, ...string[]]
  for (const ns of namespaces) {
    sh('ip', ['netns', 'add', ns])
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  }
  sh('ip', ['-n', hub, 'link', 'add', 'br0', 'type', 'bridge'])
  sh('ip', ['-n', hub, 'addr', 'add', `${HUB_ADDR}/24`, 'dev', 'br0'])
  sh('ip', ['-n', hub, 'link', 'set', 'br0', 'up'])
  servers.forEach((ns, i) => {
    const hubEnd = `v${i + 1}`
    sh('ip', ['link', 'add', IFACE, 'netns', ns, 'type', 'veth', 'peer', 'name', hubEnd, 'netns', hub])
    sh('ip', ['-n', hub, 'link', 'set', hubEnd, 'master', 'br0'])
    sh('ip', ['-n', hub, 'link', 'set', hubEnd, 'up'])
    sh('ip', ['-n', ns, 'addr', 'add', `${serverAddr(i)}/24`, 'dev', IFACE])
    sh('ip', ['-n', ns, 'link', 'set', IFACE, 'up'])
  })
}

/** Kill what runs in our namespaces (by pid: only processes started here live there), then delete them. */
function removeNetwork(namespaces: string[]): void {
  const existing = new Set(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]))
  for (const ns of namespaces) {
    if (!existing.has(ns)) continue
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /^\d+$/.test(l))
    for (const pid of pids) {
      try { process.kill(Number(pid), 'SIGKILL') } catch { /* already gone */ }
    }
  }
  for (const ns of namespaces) {
    if (existing.has(ns)) spawnSync('ip', ['netns', 'del', ns])
  }
}

const serverAddr = (i: number): string => `${SUBNET}.${i + 1}`

async function parent(argv: string[]): Promise<number> {
  let opts: Options
  try {
    opts = parseOptions(argv)
    preflight()
  } catch (err) {
    console.error(`partition: ${(err as Error).message}`)
    return 2
  }
  const namespaces = namespaceNames()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quire-partition-'))
  let child: ChildProcess | null = null
  let cleaned = false
  const cleanup = (): void => {
    if (cleaned) return
    cleaned = true
    if (child && child.exitCode === null) child.kill('SIGKILL')
    removeNetwork(namespaces)
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', cleanup)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => { cleanup(); process.exit(2) })
  }
  try {
    try {
      createNetwork(namespaces)
    } catch (err) {
      console.error(`partition: cannot make the network namespaces: ${(err as Error).message}`)
      return 2
    }
    const plan: ChildPlan = { ...opts, dir, namespaces, result: path.join(dir, 'result.json') }
    child = spawn('ip', ['netns', 'exec', namespaces[0]!, process.execPath, '--import', 'tsx', SELF, '--child', JSON.stringify(plan)], {
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    const code = await new Promise<number>((resolve) => {
      child!.once('exit', (c, sig) => resolve(c ?? (sig ? 2 : 0)))
      child!.once('error', () => resolve(2))
    })
    if (code !== 0) return code
    const results = JSON.parse(readFileSync(plan.result, 'utf8')) as RunResult[]
    printSummary(results)
    if (opts.json) writeFileSync(opts.json, JSON.stringify(results, null, 2))
    if (opts.maxStallS !== null) {
      const over = results.filter((r) => r.stallMs > opts.maxStallS! * 1000)
      if (over.length > 0) {
        console.error(`partition: ${over.length} run(s) stalled longer than ${opts.maxStallS} s`)
        return 1
      }
    }
    return 0
  } finally {
    cleanup()
  }
}

function printSummary(results: RunResult[]): void {
  const s = (ms: number): string => (ms / 1000).toFixed(1)
  console.log(`\nnats-server failure detection: ${results[0]?.tuning ?? '-'}`)
  console.log('scenario   run  victim  stall_s  (from..to, s after the cut)  after_heal_s  writes  errors')
  for (const r of results) {
    const errors = Object.entries(r.errors).map(([k, v]) => `${k}:${v}`).join(' ') || '-'
    console.log(`${r.scenario.padEnd(10)} ${String(r.run).padStart(3)}  ${r.victim.padEnd(6)}  ` +
      `${s(r.stallMs).padStart(7)}  (${s(r.stallFromMs)}..${s(r.stallToMs)})`.padEnd(37) +
      `${s(r.afterHealMs).padStart(12)}  ${String(r.writes).padStart(6)}  ${errors}`)
  }
}

// ---------------------------------------------------------------------------------------------
// The child, in the hub namespace: servers, buckets, writer, cut, heal.

interface Server {
  name: string
  ns: string
  addr: string
  url: string
  file: string
  storeDir: string
  proc: ChildProcess | null
  log: string
}

function startServer(s: Server): void {
  const proc = spawn('ip', ['netns', 'exec', s.ns, 'nats-server', '-c', s.file, '-sd', s.storeDir], { stdio: ['ignore', 'pipe', 'pipe'] })
  const keep = (d: Buffer): void => { s.log = (s.log + d.toString()).slice(-256 * 1024) }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  s.proc = proc
}

async function killServer(s: Server): Promise<void> {
  const proc = s.proc
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
  const gone = new Promise((r) => proc.once('exit', r))
  proc.kill('SIGKILL') // `ip netns exec` execs nats-server: this pid is the server's
  await gone
}

function clusterServers(plan: ChildPlan, runDir: string): Server[] {
  const servers = plan.namespaces.slice(1).map((ns, i): Server => ({
    name: `n${i + 1}`, ns, addr: serverAddr(i), url: `nats://${serverAddr(i)}:${CLIENT_PORT}`,
    file: path.join(runDir, `n${i + 1}.conf`), storeDir: path.join(runDir, `n${i + 1}`), proc: null, log: '',
  }))
  mkdirSync(runDir, { recursive: true })
  for (const s of servers) {
    writeFileSync(s.file, natsClusterConfig({
      name: s.name, clusterName: 'quire', host: s.addr, port: CLIENT_PORT, clusterPort: CLUSTER_PORT, monitorPort: MONITOR_PORT,
      routes: servers.filter((o) => o !== s).map((o) => `${o.addr}:${CLUSTER_PORT}`), file: s.file,
      failureDetection: plan.failureDetection,
    }))
  }
  return servers
}

/** The metadata store as openMetadata makes it, with another bound on each KV request. */
async function openStore(nc: NatsConnection, timeoutMs: number): Promise<MetadataStore> {
  const open = (bucket: string) => openKv(nc, bucket, { history: 1, replicas: SERVERS, timeoutMs })
  return new MetadataStore(await open(BUCKETS.ledgers), await open(BUCKETS.bookies), await open(BUCKETS.cluster))
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  for (;;) {
    const got = await probe().catch((err: unknown) => { last = `: ${(err as Error).message}`; return null })
    if (got !== null) return got
    if (Date.now() > deadline) throw new SetupError(`${what}: not within ${timeoutMs} ms${last}`)
    await sleep(200)
  }
}

/** Every metadata stream led and with all its replicas current; returns each stream's leader. */
async function settledLeaders(jsm: JetStreamManager): Promise<Record<string, string> | null> {
  const leaders: Record<string, string> = {}
  for (const bucket of Object.values(BUCKETS)) {
    const info = await jsm.streams.info(`KV_${bucket}`)
    const replicas = info.cluster?.replicas ?? []
    if (!info.cluster?.leader || replicas.length !== SERVERS - 1 || replicas.some((r) => !r.current || r.offline)) return null
    leaders[bucket] = info.cluster.leader
  }
  return leaders
}

async function metaLeader(s: Server): Promise<string> {
  const res = await fetch(`http://${s.addr}:${MONITOR_PORT}/jsz`, { signal: AbortSignal.timeout(2000) })
  const body = (await res.json()) as { meta_cluster?: { leader?: string } }
  return body.meta_cluster?.leader ?? '?'
}

function iptables(ns: string, op: '-I' | '-D'): void {
  sh('ip', ['netns', 'exec', ns, 'iptables', op, 'INPUT', '-i', IFACE, '-j', 'DROP'])
  sh('ip', ['netns', 'exec', ns, 'iptables', op, 'OUTPUT', '-o', IFACE, '-j', 'DROP'])
}

function newLedger(id: number): LedgerMetadata {
  return {
    ledgerId: id, digestType: 'crc32c', state: 'OPEN', lastEntryId: -1, length: 0, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2,
    segments: [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], customMetadata: { partition: 'test' }, createdAt: Date.now(), passwordCheck: '',
  }
}

/**
 * Writes ledger metadata as a writer does (create, then close with a compare-and-swap), one call
 * at a time, until `stop()`; every successful write's time is kept. A failed call (TIMEOUT while
 * the stream has no leader) moves on to a new ledger: its outcome is unknown.
 */
function startWriter(store: MetadataStore): { successes: number[]; errors: Record<string, number>; stop(): Promise<void> } {
  const successes: number[] = []
  const errors: Record<string, number> = {}
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        const id = await store.allocateLedgerId()
        const md = newLedger(id)
        const created = await store.createLedger(md)
        successes.push(Date.now())
        await store.writeLedger({ ...md, state: 'CLOSED' }, created.revision)
        successes.push(Date.now())
      } catch (err) {
        const code = isQuireError(err) ? err.code : (err as Error).name ?? 'Error'
        errors[code] = (errors[code] ?? 0) + 1
      }
      await sleep(10) // a steady rate (about 50 ledgers/s), not a load test
    }
  })()
  return { successes, errors, async stop() { running = false; await loop } }
}

async function runOnce(plan: ChildPlan, scenario: Scenario, run: number): Promise<RunResult> {
  const runDir = path.join(plan.dir, `${scenario}-${run}`)
  const servers = clusterServers(plan, runDir)
  const conns: NatsConnection[] = []
  try {
    servers.forEach(startServer)
    await waitUntilReady(servers.map((s) => s.url), 30_000).catch((err: unknown) => {
      throw new SetupError(`cluster not up: ${(err as Error).message}\n${servers.map((s) => `--- ${s.name}\n${s.log.slice(-1500)}`).join('\n')}`)
    })
    const admin = await connectNats(servers.map((s) => s.url), { name: 'partition-admin', timeoutMs: 10_000 })
    conns.push(admin)
    // A fresh meta group may not yet count every peer as placeable ("no suitable peers"): retry.
    await until('metadata buckets created', 30_000, () => openMetadata(admin, { metadataReplicas: SERVERS }))
    const jsm = await jetstreamManager(admin, { timeout: 5000 })
    const leaders = await until('metadata streams settled', 30_000, () => settledLeaders(jsm))
    const victim = servers.find((s) => s.name === leaders[BUCKETS.ledgers])!
    leaders.meta = await metaLeader(servers.find((s) => s !== victim)!).catch(() => '?')
    const healthy = servers.filter((s) => s !== victim)
    // Homed on the victim, the writer knows every server (as Quire's processes are configured)
    // and must notice on its own that its server went silent.
    const home = plan.writerOn === 'victim' ? [victim, ...healthy] : healthy
    const conn = await connectNats(home.map((s) => s.url), { name: 'partition-writer' })
    conns.push(conn)
    const store = plan.kvTimeoutMs === null ? await openMetadata(conn, { metadataReplicas: SERVERS }) : await openStore(conn, plan.kvTimeoutMs)
    const writer = startWriter(store)
    await sleep(5000)
    const cutAt = Date.now()
    log(`${scenario} ${run}: ${new Date(cutAt).toISOString()} ${scenario === 'partition' ? 'cutting off' : 'killing'} ${victim.name} (leads ${Object.entries(leaders).filter(([, l]) => l === victim.name).map(([k]) => k).join(', ')})`)
    if (scenario === 'partition') iptables(victim.ns, '-I')
    else await killServer(victim)
    await sleep(plan.cutS * 1000)
    const healAt = Date.now()
    if (scenario === 'partition') iptables(victim.ns, '-D')
    else startServer(victim)
    log(`${scenario} ${run}: ${new Date(healAt).toISOString()} ${scenario === 'partition' ? 'healed' : 'restarted'} ${victim.name}`)
    // Watch until writes have gone on for settle-s after the heal, bounded.
    const watchUntil = healAt + 120_000
    while (Date.now() < watchUntil) {
      const last = writer.successes.at(-1) ?? 0
      const lastGapEnd = lastGapEndAfter(writer.successes, healAt)
      if (last > healAt && Date.now() - Math.max(lastGapEnd, healAt) >= plan.settleS * 1000) break
      await sleep(500)
    }
    await writer.stop()
    return { scenario, tuning: plan.tuningName, run, victim: victim.name, leaders, ...gaps(writer.successes, cutAt, healAt), writes: writer.successes.length, errors: writer.errors }
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => {})))
    await Promise.all(servers.map(killServer))
    if (plan.logs) {
      mkdirSync(plan.logs, { recursive: true })
      for (const s of servers) writeFileSync(path.join(plan.logs, `${scenario}-${run}-${s.name}.log`), s.log)
    }
    rmSync(runDir, { recursive: true, force: true })
  }
}

/** End of the last gap over 1 s that ends after `t` (or `t`): writes have flowed freely since. */
function lastGapEndAfter(times: number[], t: number): number {
  for (let i = times.length - 1; i > 0 && times[i]! > t; i--) {
    if (times[i]! - times[i - 1]! > 1000) return times[i]!
  }
  return t
}

function gaps(times: number[], cutAt: number, healAt: number): Pick<RunResult, 'stallMs' | 'stallFromMs' | 'stallToMs' | 'afterHealMs' | 'gapsS'> {
  const gapsS: Array<[number, number]> = []
  const rel = (t: number): number => Math.round((t - cutAt) / 100) / 10
  let stallMs = 0
  let stallFrom = 0
  let stallTo = 0
  let afterHealMs = 0
  for (let i = 1; i < times.length; i++) {
    const a = times[i - 1]!
    const b = times[i]!
    if (b < cutAt) continue
    if (b - a > 1000) gapsS.push([rel(a), rel(b)])
    if (b - a > stallMs) { stallMs = b - a; stallFrom = a; stallTo = b }
    if (b > healAt) afterHealMs = Math.max(afterHealMs, b - Math.max(a, healAt))
  }
  return { stallMs, stallFromMs: stallFrom - cutAt, stallToMs: stallTo - cutAt, afterHealMs, gapsS }
}

function log(msg: string): void {
  process.stderr.write(`partition: ${msg}\n`)
}

async function child(plan: ChildPlan): Promise<number> {
  const results: RunResult[] = []
  try {
    for (let run = 1; run <= plan.runs; run++) {
      for (const scenario of plan.scenarios) {
        const r = await runOnce(plan, scenario, run)
        log(`${scenario} ${run}: longest stall ${(r.stallMs / 1000).toFixed(1)} s, ${(r.afterHealMs / 1000).toFixed(1)} s after the heal; ` +
          `gaps over 1 s (s after the cut, heal at ${plan.cutS}): ${r.gapsS.map(([a, b]) => `${a}..${b}`).join(' ') || 'none'}`)
        results.push(r)
      }
    }
  } catch (err) {
    log(err instanceof SetupError ? `setup failed: ${err.message}` : `failed: ${(err as Error).stack ?? String(err)}`)
    return 2
  }
  writeFileSync(plan.result, JSON.stringify(results))
  return 0
}

const argv = process.argv.slice(2)
const code = argv[0] === '--child' ? await child(JSON.parse(argv[1]!) as ChildPlan) : await parent(argv)
process.exit(code)
