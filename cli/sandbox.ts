// `quire sandbox`: a local cluster on this machine: a nats-server with JetStream (from nats.conf)
// and N bookie processes, described in <data>/cluster.json. With --demo it appends to a ledger
// and prints a line a second. Ctrl-C / SIGTERM stops everything cleanly.

import { mkdtemp, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as hdr from 'hdr-histogram-js'
import { connect, type QuireClient } from '../client/index.ts'
import { QuireError } from '../machines/errors.ts'
import { isBookieAlive } from '../storage/metadataStore.ts'
import { startBookieProcess, startNatsServer, type BookieProcess, type NatsServer } from './cluster.ts'
import { startInspector, type Inspector } from './inspectorCmd.ts'

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

export async function runSandbox(opts: SandboxOptions): Promise<void> {
  const n = Number(opts.bookies)
  if (!Number.isInteger(n) || n < 1) throw new QuireError('INVALID_CONFIG', `--bookies must be a positive integer, got ${opts.bookies}`)
  const dataDir = path.resolve(opts.data ?? (await mkdtemp(path.join(os.tmpdir(), 'quire-sandbox-'))))
  const nats: NatsServer = await startNatsServer({
    port: opts.natsPort ? Number(opts.natsPort) : undefined, storeDir: path.join(dataDir, 'nats'),
  })
  const bookies: BookieProcess[] = []
  let client: QuireClient | null = null
  let inspector: Inspector | null = null
  let stopping: Promise<void> | null = null
  const stopAll = (): Promise<void> => (stopping ??= (async () => {
    await client?.close().catch(() => {})
    await inspector?.close().catch(() => {})
    await Promise.all(bookies.map((b) => b.stop()))
    await nats.stop()
  })())
  const onSignal = (): void => {
    process.stdout.write('\nstopping the sandbox...\n')
    void stopAll().then(() => process.exit(0))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    for (let i = 1; i <= n; i++) {
      // Every node also runs the auditor (one is elected) and a replication worker, as on a real host.
      bookies.push(startBookieProcess({ id: `bookie-${i}`, data: path.join(dataDir, `bookie-${i}`), nats: nats.url, roles: 'bookie,auditor,replicator' }))
    }
    const cluster = { natsUrl: nats.url, natsPid: nats.pid, bookies: bookies.map((b) => ({ id: b.id, pid: b.pid, data: b.data })) }
    await writeFile(path.join(dataDir, 'cluster.json'), JSON.stringify(cluster, null, 2) + '\n')
    client = await connect({ servers: nats.url, name: 'quire-sandbox' })
    await waitForBookies(client, n, 30_000).catch((err) => {
      throw new Error(`${String(err)}\n${bookies.map((b) => `--- ${b.id}\n${b.output()}`).join('\n')}`)
    })
    console.log(`sandbox ready: nats ${nats.url}, ${n} bookies, data ${dataDir}`)
    console.log(`cluster description: ${path.join(dataDir, 'cluster.json')}`)
    console.log(`try: npx quire shell listbookies --nats ${nats.url}`)
    if (opts.inspector !== false) {
      inspector = await startInspector({ nats: nats.url, port: opts.inspectorPort ? Number(opts.inspectorPort) : undefined })
      console.log(`inspector: ${inspector.url}`)
    }
    const until = opts.seconds ? Date.now() + Number(opts.seconds) * 1000 : Infinity
    if (opts.demo) await demo(client, Math.min(n, 3), Number(opts.entrySize), Number(opts.inFlight), until)
    else while (Date.now() < until) await new Promise((r) => setTimeout(r, 500))
  } finally {
    await stopAll()
  }
}

async function demo(client: QuireClient, ensemble: number, size: number, inFlight: number, until: number): Promise<void> {
  const w = await client.createLedger({ ensembleSize: ensemble, writeQuorum: Math.min(2, ensemble), ackQuorum: Math.min(2, ensemble) })
  console.log(`demo: appending ${size}-byte entries to ledger ${w.ledgerId} (E=${ensemble}), ${inFlight} in flight; Ctrl-C to stop`)
  const payload = Buffer.alloc(size, 0x61)
  let hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
  let count = 0
  let bytes = 0
  let lastReport = performance.now()
  let running = true
  const worker = async (): Promise<void> => {
    while (running && Date.now() < until) {
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
  const stop = (): void => { running = false }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    await Promise.all(Array.from({ length: inFlight }, worker))
  } finally {
    clearInterval(report)
    await w.close().catch(() => {})
    console.log(`demo: ledger ${w.ledgerId} closed at entry ${w.lastAddConfirmed}`)
  }
}
