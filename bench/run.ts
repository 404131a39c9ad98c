// `npm run bench` / `quire bench`: what a Quire append costs, next to the two things it is built
// on, measured in one run on one machine with the same loop (bench/measure.ts).
//
// - Quire: 1 KiB appends to a fresh ledger, E=3 Qw=2 Qa=2 over three bookie processes, with 1 and
//   with 128 appends in flight: the latency a writer waits for its ack quorum, and what pipelining
//   buys.
// - JetStream: 1 KiB publishes to a fresh file-storage R1 stream on the same nats-server, awaiting
//   each PubAck, with 1 and 128 in flight. It is the persistent log already sitting on the
//   transport Quire rides, so Quire / JetStream says what Quire's protocol and bookies cost (or
//   save) over just using the broker. Caveat: by default JetStream acks a message before fsync
//   (its file store syncs every 2 minutes), while a bookie acks only after its journal's
//   fdatasync: JetStream is the faster peer by construction, not an equally durable one.
// - fdatasync: 4 KiB appended to a file and fdatasync'ed, one at a time, on the same disk: the
//   floor under any acknowledged add. Quire's single-append p50 over this p50 says how much of
//   the latency is Quire rather than the disk.
//
// Everything runs on its own nats-server, bookies and temp dir, all stopped and removed at the
// end, also on error or SIGINT/SIGTERM. Missed targets are reported, never turned into a failure.

import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect as connectNats, type NatsConnection } from '@nats-io/transport-node'
import { connect, QuireError, type QuireClient } from '../client/index.ts'
import { startBookieProcess, startNatsServer, type BookieProcess } from '../cli/cluster.ts'
import { waitForBookies } from '../cli/sandbox.ts'
import { measure, type Measurement, type MeasureOptions, type Subject } from './measure.ts'
import { formatHeader, formatRatios, formatTable, ratiosOf, type BenchParams, type BenchResult, type Machine, type PeerResults } from './report.ts'

export type { BenchResult } from './report.ts'

const BOOKIES = 3
const BOOKIES_READY_TIMEOUT_MS = 30_000
const QUORUM = { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }
const IN_FLIGHT = { single: 1, pipelined: 128 }

export async function runBench(opts: { json: boolean; seconds: number }): Promise<BenchResult> {
  if (!Number.isFinite(opts.seconds) || opts.seconds <= 0) {
    throw new QuireError('INVALID_CONFIG', `--seconds must be a positive number, got ${opts.seconds}`)
  }
  const out = opts.json ? process.stderr : process.stdout
  const params: BenchParams = {
    seconds: opts.seconds, warmupSeconds: 0.5, payloadBytes: 1024, fdatasyncBytes: 4096, inFlight: IN_FLIGHT,
    quire: { bookies: BOOKIES, ...QUORUM }, jetstream: { storage: 'file', replicas: 1 },
  }
  const teardown = new Teardown()
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`${signal}: stopping the benchmark cluster...\n`)
    void teardown.run().then(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bench-'))
    teardown.push(() => rm(dir, { recursive: true, force: true }))
    const { client, nc } = await startCluster(dir, teardown)
    const machine = machineOf(dir, nc)
    out.write(formatHeader(machine, params) + '\n\n')
    const results = await measureAll(params, client, nc, dir)
    const result: BenchResult = { machine, params, results, ratios: ratiosOf(results) }
    out.write(formatTable(params, results) + '\n\n' + formatRatios(result.ratios) + '\n')
    if (opts.json) process.stdout.write(JSON.stringify(result) + '\n')
    return result
  } finally {
    await teardown.run()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

async function measureAll(p: BenchParams, client: QuireClient, nc: NatsConnection, dir: string): Promise<PeerResults> {
  const payload = randomBytes(p.payloadBytes)
  const run = (label: string, inFlight: number, bytesPerOp: number, open: () => Promise<Subject>): Promise<Measurement> => {
    process.stderr.write(`measuring ${label}, ${inFlight} in flight, ${p.seconds} s...\n`)
    const m: MeasureOptions = { seconds: p.seconds, warmupSeconds: p.warmupSeconds, inFlight, bytesPerOp }
    return measure(m, open)
  }
  const quire = (inFlight: number) => run('quire', inFlight, p.payloadBytes, () => openLedger(client, payload))
  const js = (inFlight: number) => run('jetstream', inFlight, p.payloadBytes, () => openStream(nc, `BENCH_${inFlight}`, payload))
  return {
    quire: { single: await quire(p.inFlight.single), pipelined: await quire(p.inFlight.pipelined) },
    jetstream: { single: await js(p.inFlight.single), pipelined: await js(p.inFlight.pipelined) },
    fdatasync: await run('fdatasync', 1, p.fdatasyncBytes, () => openSyncFile(path.join(dir, 'fdatasync.bin'), p.fdatasyncBytes)),
  }
}

/** A nats-server and the bookies in `dir`, a Quire client and a plain NATS connection for JetStream. */
async function startCluster(dir: string, teardown: Teardown): Promise<{ client: QuireClient; nc: NatsConnection }> {
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  teardown.push(() => nats.stop())
  const bookies: BookieProcess[] = []
  for (let i = 1; i <= BOOKIES; i++) {
    const b = startBookieProcess({ id: `bench-bookie-${i}`, data: path.join(dir, `bookie-${i}`), nats: nats.url })
    teardown.push(() => b.stop())
    bookies.push(b)
  }
  const client = await connect({ servers: nats.url, name: 'quire-bench' })
  teardown.push(() => client.close())
  await waitForBookies(client, BOOKIES, BOOKIES_READY_TIMEOUT_MS).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${bookies.map((b) => `--- ${b.id}\n${b.output()}`).join('\n')}`)
  })
  // JetStream gets its own connection, as a plain nats.js user would have, not Quire's.
  const nc = await connectNats({ servers: nats.url, name: 'quire-bench-jetstream' })
  teardown.push(() => nc.close())
  return { client, nc }
}

async function openLedger(client: QuireClient, payload: Uint8Array): Promise<Subject> {
  const w = await client.createLedger(QUORUM)
  return { op: () => w.append(payload), close: () => w.close() }
}

async function openStream(nc: NatsConnection, name: string, payload: Uint8Array): Promise<Subject> {
  const jsm = await jetstreamManager(nc)
  const subject = `bench.${name}`
  await jsm.streams.add({ name, subjects: [subject], storage: StorageType.File, num_replicas: 1 })
  const js = jetstream(nc)
  return { op: () => js.publish(subject, payload), close: () => jsm.streams.delete(name) }
}

/** Appends (O_APPEND), as the journal does: each sync also covers the file's growing size. */
async function openSyncFile(file: string, blockBytes: number): Promise<Subject> {
  const fh = await open(file, 'a')
  const block = randomBytes(blockBytes)
  return {
    op: async () => {
      await fh.write(block)
      await fh.datasync()
    },
    close: async () => {
      await fh.close()
      await rm(file, { force: true })
    },
  }
}

function machineOf(tempDir: string, nc: NatsConnection): Machine {
  const cpus = os.cpus()
  return {
    cpus: cpus.length, cpuModel: cpus[0]?.model.trim() ?? 'unknown', platform: `${process.platform} ${process.arch}`,
    node: process.version, natsServer: nc.info?.version ?? 'unknown', tempDir,
  }
}

/** Undo steps run once, last pushed first; a failing step is reported and the rest still run. */
class Teardown {
  private readonly steps: Array<() => Promise<unknown>> = []
  private done: Promise<void> | null = null

  push(step: () => Promise<unknown>): void {
    this.steps.push(step)
  }

  run(): Promise<void> {
    this.done ??= (async () => {
      for (const step of this.steps.reverse()) {
        await step().catch((err: unknown) => process.stderr.write(`bench cleanup: ${String(err)}\n`))
      }
    })()
    return this.done
  }
}

const invokedPath = process.argv[1]
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  const { values } = parseArgs({
    options: { json: { type: 'boolean', default: false }, seconds: { type: 'string', default: '5' } },
  })
  try {
    await runBench({ json: values.json, seconds: Number(values.seconds) })
  } catch (err) {
    process.stderr.write(err instanceof QuireError ? `error ${err.code}: ${err.message}\n` : `${err instanceof Error ? err.stack : String(err)}\n`)
    process.exitCode = 1
  }
}
