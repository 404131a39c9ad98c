// `quire sandbox`: a local cluster on this machine: a nats-server with JetStream (from nats.conf)
// and N `quire node` processes (bookie, auditor, replicator), described in <data>/cluster.json.
// With --demo it appends to a ledger and prints a line a second. With --secure it runs on
// nats-secure.conf (TLS, one NATS user per role: cli/sandboxSecure.ts): the bookies as `bookie`, one
// more node with the auditor and a replication worker as `autorecovery`, the demo writer as `app`,
// the inspector as `inspector`.
// Invariants: cluster.json exists only once every bookie is registered (written atomically; a
// stale one from an earlier run is removed first). Ctrl-C / SIGTERM stops the workload, closes
// the demo ledger (so it ends CLOSED with every acknowledged entry), then stops the processes
// and exits 0; an exit code of 1 means something could not be stopped cleanly.

import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as hdr from 'hdr-histogram-js'
import { connect, type QuireClient, type WriteHandle } from '../client/index.ts'
import { QuireError } from '../machines/errors.ts'
import { isBookieAlive } from '../storage/metadataStore.ts'
import { REPO_ROOT, startBookieProcess, startNatsServer, startNodeProcess, type BookieProcess, type ManagedProcess, type NatsServer } from './cluster.ts'
import { startInspector, type Inspector } from './inspectorCmd.ts'
import { makeSandboxSecrets, secureAuth, secureFlags, secureServerEnv, type SandboxSecrets } from './sandboxSecure.ts'

export interface SandboxOptions {
  bookies: string
  natsPort?: string
  data?: string
  demo?: boolean
  entrySize: string
  inFlight: string
  seconds?: string
  /** commander's `--no-inspector` sets this false. */
  inspector?: boolean
  inspectorPort?: string
  secure?: boolean
}

export async function waitForBookies(client: QuireClient, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const live = (await client.listBookies()).filter((b) => isBookieAlive(b, Date.now()) && b.state === 'writable')
    if (live.length >= count) return
    if (Date.now() > deadline) throw new QuireError('NOT_ENOUGH_BOOKIES', `only ${live.length} of ${count} bookies registered within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface StopRequest { requested: boolean; promise: Promise<void> }

/**
 * The first SIGINT/SIGTERM asks for a stop: the demo stops appending and closes its ledger, then
 * the client, the inspector, the bookies (drained) and nats-server stop, in that order, and the
 * process exits 0 (1 if the ledger could not be closed). A second signal stops everything at once.
 * The children run in their own process group (cli/cluster.ts), so a terminal's Ctrl-C reaches
 * only this process and nats-server is still up while the ledger closes.
 */
function stopOnSignals(onForce: () => void): StopRequest {
  let resolve = (): void => {}
  const req: StopRequest = { requested: false, promise: new Promise<void>((r) => { resolve = r }) }
  const onSignal = (): void => {
    if (req.requested) {
      process.stdout.write('\nstopping now\n')
      onForce()
      return
    }
    req.requested = true
    process.stdout.write('\nstopping the sandbox...\n')
    resolve()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return req
}

const STOPPED: unique symbol = Symbol('stopped')

/** What `work` resolves to, or STOPPED when a stop was asked for first. */
async function unlessStopped<T>(stop: StopRequest, work: Promise<T>): Promise<T | typeof STOPPED> {
  return Promise.race([work, stop.promise.then((): typeof STOPPED => STOPPED)])
}

export async function runSandbox(opts: SandboxOptions): Promise<void> {
  const n = Number(opts.bookies)
  if (!Number.isInteger(n) || n < 1) throw new QuireError('INVALID_CONFIG', `--bookies must be a positive integer, got ${opts.bookies}`)
  const dataDir = path.resolve(opts.data ?? (await mkdtemp(path.join(os.tmpdir(), 'quire-sandbox-'))))
  const clusterJson = path.join(dataDir, 'cluster.json')
  // A description left by an earlier run in the same folder would announce a cluster that is not there.
  await rm(clusterJson, { force: true })
  const bookies: BookieProcess[] = []
  let autorecovery: ManagedProcess | null = null
  let nats: NatsServer | null = null
  const stop = stopOnSignals(() => {
    for (const b of bookies) b.kill('SIGKILL')
    autorecovery?.kill('SIGKILL')
    nats?.kill('SIGKILL')
    process.exit(1)
  })
  const secrets = opts.secure ? await makeSandboxSecrets(dataDir) : null
  nats = await startNatsServer({
    port: opts.natsPort ? Number(opts.natsPort) : undefined, storeDir: path.join(dataDir, 'nats'),
    ...(secrets ? { config: path.join(REPO_ROOT, 'nats-secure.conf'), env: secureServerEnv(secrets) } : {}),
  })
  // tls://: every process insists on TLS, as it would against a remote server.
  const natsUrl = secrets ? nats.url.replace(/^nats:/, 'tls:') : nats.url
  const inspect = opts.inspector !== false ? ['--inspect'] : []
  let client: QuireClient | null = null
  let inspector: Inspector | null = null
  try {
    for (let i = 1; i <= n; i++) {
      // Every node also runs the auditor (one is elected) and a replication worker, as on a real
      // host; on the secure configuration those roles have their own NATS user, so their own node.
      bookies.push(startBookieProcess({
        id: `bookie-${i}`, data: path.join(dataDir, `bookie-${i}`), nats: natsUrl,
        roles: secrets ? 'bookie' : 'bookie,auditor,replicator', extraArgs: [...inspect, ...(secrets ? secureFlags(secrets, 'bookie') : [])],
      }))
    }
    if (secrets) {
      // Only bookies (and operators) may make the metadata buckets: the other roles wait for them.
      const first = await unlessStopped(stop, bookieReady(bookies[0]!, 30_000))
      if (first === STOPPED) return
      autorecovery = startNodeProcess({ args: ['--roles', 'auditor,replicator', '--nats', natsUrl, ...inspect, ...secureFlags(secrets, 'autorecovery')] })
    }
    // The sandbox's own writer shows in the inspector beside the bookies.
    client = await connect({ servers: natsUrl, name: 'quire-sandbox', inspect: opts.inspector !== false, ...(secrets ? { auth: secureAuth(secrets, 'app') } : {}) })
    const registered = await unlessStopped(stop, waitForBookies(client, n, 30_000).catch((err) => {
      throw new Error(`${String(err)}\n${bookies.map((b) => `--- ${b.id}\n${b.output()}`).join('\n')}`)
    }))
    if (registered === STOPPED) return
    if (opts.inspector !== false) {
      inspector = await startInspector({
        nats: natsUrl, port: opts.inspectorPort ? Number(opts.inspectorPort) : undefined, natsAuth: secrets ? secureAuth(secrets, 'inspector') : undefined,
      })
    }
    // Written only now, when every bookie is registered: a tool that waits for this file may use the cluster at once.
    const cluster = {
      natsUrl, natsPid: nats.pid, bookies: bookies.map((b) => ({ id: b.id, pid: b.pid, data: b.data })),
      ...(secrets ? { secure: { caFile: secrets.certificate.ca, passwordFiles: secrets.passwordFiles, autorecoveryPid: autorecovery?.pid } } : {}),
    }
    await writeFile(`${clusterJson}.tmp`, JSON.stringify(cluster, null, 2) + '\n')
    await rename(`${clusterJson}.tmp`, clusterJson)
    console.log(`sandbox ready: nats ${natsUrl}, ${n} bookies${secrets ? ' (TLS, one NATS user per role)' : ''}, data ${dataDir}`)
    console.log(`cluster description: ${clusterJson}`)
    console.log(`try: npx quire shell listbookies --nats ${natsUrl}${secrets ? ` ${adminFlags(secrets)}` : ''}`)
    if (inspector) console.log(`inspector: ${inspector.url}`)
    const until = opts.seconds ? Date.now() + Number(opts.seconds) * 1000 : Infinity
    if (opts.demo) await demo(client, stop, { ensemble: Math.min(n, 3), size: Number(opts.entrySize), inFlight: Number(opts.inFlight), until })
    else await idle(stop, until)
  } finally {
    await client?.close().catch(() => {})
    await inspector?.close().catch(() => {})
    await Promise.all([...bookies, ...(autorecovery ? [autorecovery] : [])].map((b) => b.stop()))
    await nats.stop()
  }
}

/** Resolves once `b` logs that it is ready (it has opened, or made, the metadata buckets). */
async function bookieReady(b: BookieProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!b.output().includes('"msg":"bookie ready"')) {
    if (b.proc.exitCode !== null || Date.now() > deadline) {
      throw new Error(`bookie ${b.id} ${b.proc.exitCode !== null ? `exited ${b.proc.exitCode}` : `not ready within ${timeoutMs} ms`}:\n${b.output()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The shell's login as the operator, for the hint the sandbox prints. */
function adminFlags(s: SandboxSecrets): string {
  return secureFlags(s, 'admin').join(' ')
}

/** Without --demo: wait for a signal or --seconds. */
async function idle(stop: StopRequest, until: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await unlessStopped(stop, new Promise((r) => { timer = setTimeout(r, Math.min(until - Date.now(), 2 ** 31 - 1)) }))
  clearTimeout(timer)
}

/** Bound on closing the demo ledger at the end (in-flight appends, then the metadata CAS). */
const DEMO_CLOSE_TIMEOUT_MS = 30_000

interface DemoOptions { ensemble: number; size: number; inFlight: number; until: number }

async function demo(client: QuireClient, stop: StopRequest, o: DemoOptions): Promise<void> {
  const { ensemble, size, inFlight, until } = o
  const w = await client.createLedger({ ensembleSize: ensemble, writeQuorum: Math.min(2, ensemble), ackQuorum: Math.min(2, ensemble) })
  console.log(`demo: appending ${size}-byte entries to ledger ${w.ledgerId} (E=${ensemble}), ${inFlight} in flight; Ctrl-C to stop`)
  const payload = Buffer.alloc(size, 0x61)
  let hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
  let count = 0
  let bytes = 0
  let lastReport = performance.now()
  const worker = async (): Promise<void> => {
    while (!stop.requested && Date.now() < until) {
      const t0 = performance.now()
      await w.append(payload)
      hist.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)))
      count++
      bytes += size
    }
  }
  const report = setInterval(() => {
    const now = performance.now()
    const secs = (now - lastReport) / 1000
    const ms = (p: number): string => (hist.getValueAtPercentile(p) / 1000).toFixed(2)
    console.log(`${(count / secs).toFixed(0).padStart(7)} entries/s ${((bytes / secs) / 1e6).toFixed(2).padStart(7)} MB/s  add p50 ${ms(50)} ms  p99 ${ms(99)} ms  LAC ${w.lastAddConfirmed}`)
    count = 0
    bytes = 0
    lastReport = now
    hist.destroy()
    hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
  }, 1000)
  let failed: unknown = null
  try {
    await Promise.all(Array.from({ length: inFlight }, worker))
  } catch (err) {
    failed = err
  } finally {
    clearInterval(report)
    hist.destroy()
  }
  // Close even when an append failed: the entries acknowledged so far stay readable in a CLOSED ledger.
  await closeDemoLedger(w)
  if (failed) throw failed
}

async function closeDemoLedger(w: WriteHandle): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QuireError('TIMEOUT', `ledger ${w.ledgerId} did not close within ${DEMO_CLOSE_TIMEOUT_MS} ms`)), DEMO_CLOSE_TIMEOUT_MS)
  })
  try {
    await Promise.race([w.close(), timeout])
  } catch (err) {
    const code = err instanceof QuireError ? err.code : 'ERROR'
    console.log(`demo: ledger ${w.ledgerId} NOT closed (${code}: ${err instanceof Error ? err.message : String(err)}), last entry acknowledged ${w.lastAddConfirmed}`)
    throw err
  } finally {
    clearTimeout(timer)
  }
  const md = w.metadata
  console.log(`demo: ledger ${w.ledgerId} closed: state ${md.state}, lastEntryId ${md.lastEntryId}, length ${md.length}`)
}
