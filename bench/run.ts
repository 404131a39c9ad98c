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
// - Tailing readers (bench/tail.ts): 1 KiB appends paced at 1,000 and 10,000 a second, each
//   timed to its ack (add) and to a tailing reader's loop (tail), with its own client, in the
//   same process; target: tail p99 within 2x add p99. Then a reader's RSS and heap while it
//   tails --tail-entries small entries (skipped with --quick).
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
import {
  formatHeader, formatMemory, formatRatios, formatTable, formatTail, ratiosOf,
  type BenchParams, type BenchResult, type Machine, type MemoryResult, type PeerResults, type TailResult,
} from './report.ts'
import { openTailed, tailMemory, TailStats, type TailClients } from './tail.ts'

export type { BenchResult } from './report.ts'

const BOOKIES = 3
const BOOKIES_READY_TIMEOUT_MS = 30_000
const QUORUM = { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 }
const IN_FLIGHT = { single: 1, pipelined: 128 }
const TAIL = { ratesPerSec: [1_000, 10_000], inFlightMax: 1024, pollMs: 500, explicitLacIntervalMs: 100 }
const TAIL_ENTRIES_DEFAULT = 1_000_000
const MEMORY = { payloadBytes: 64, inFlight: 256, pollMs: 500, sampleEveryMax: 200_000 }

export interface BenchOptions {
  json: boolean
  seconds: number
  /** Entries the reader-memory section writes and tails (default 1,000,000). */
  tailEntries?: number
  /** Skip the reader-memory section. */
  quick?: boolean
}

export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const params = paramsOf(opts)
  const out = opts.json ? process.stderr : process.stdout
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
    const { client, nc, tailClients } = await startCluster(dir, teardown)
    const machine = machineOf(dir, nc)
    out.write(formatHeader(machine, params) + '\n\n')
    const results = await measureAll(params, client, nc, dir)
    const tail = await measureTail(params, tailClients)
    const memory = await measureMemory(params, tailClients)
    const result: BenchResult = { machine, params, results, tail, memory, ratios: ratiosOf(results, tail) }
    out.write([formatTable(params, results), formatTail(params, tail), ...(memory ? [formatMemory(memory)] : []), formatRatios(result.ratios)].join('\n\n') + '\n')
    if (opts.json) process.stdout.write(JSON.stringify(result) + '\n')
    return result
  } finally {
    await teardown.run()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

function paramsOf(opts: BenchOptions): BenchParams {
  if (!Number.isFinite(opts.seconds) || opts.seconds <= 0) {
    throw new QuireError('INVALID_CONFIG', `--seconds must be a positive number, got ${opts.seconds}`)
  }
  const tailEntries = opts.tailEntries ?? TAIL_ENTRIES_DEFAULT
  if (!Number.isSafeInteger(tailEntries) || tailEntries <= 0) {
    throw new QuireError('INVALID_CONFIG', `--tail-entries must be a positive integer, got ${opts.tailEntries}`)
  }
  const { sampleEveryMax, ...memory } = MEMORY
  return {
    seconds: opts.seconds, warmupSeconds: 0.5, payloadBytes: 1024, fdatasyncBytes: 4096, inFlight: IN_FLIGHT,
    quire: { bookies: BOOKIES, ...QUORUM }, jetstream: { storage: 'file', replicas: 1 }, tail: TAIL,
    // Five samples after the start, also when testing with a few entries.
    memory: opts.quick ? null : { ...memory, entries: tailEntries, sampleEvery: Math.min(sampleEveryMax, Math.ceil(tailEntries / 5)) },
  }
}

/** bench/measure.ts with this run's duration and warm-up, announced on stderr. */
function run(p: BenchParams, label: string, m: Pick<MeasureOptions, 'inFlight' | 'bytesPerOp' | 'ratePerSec'>, open: () => Promise<Subject>): Promise<Measurement> {
  const pace = m.ratePerSec === undefined ? `${m.inFlight} in flight` : `${m.ratePerSec}/s, at most ${m.inFlight} in flight`
  process.stderr.write(`measuring ${label}, ${pace}, ${p.seconds} s...\n`)
  return measure({ seconds: p.seconds, warmupSeconds: p.warmupSeconds, ...m }, open)
}

async function measureAll(p: BenchParams, client: QuireClient, nc: NatsConnection, dir: string): Promise<PeerResults> {
  const payload = randomBytes(p.payloadBytes)
  const bytesPerOp = p.payloadBytes
  const quire = (inFlight: number) => run(p, 'quire', { inFlight, bytesPerOp }, () => openLedger(client, payload))
  const js = (inFlight: number) => run(p, 'jetstream', { inFlight, bytesPerOp }, () => openStream(nc, `BENCH_${inFlight}`, payload))
  return {
    quire: { single: await quire(p.inFlight.single), pipelined: await quire(p.inFlight.pipelined) },
    jetstream: { single: await js(p.inFlight.single), pipelined: await js(p.inFlight.pipelined) },
    fdatasync: await run(p, 'fdatasync', { inFlight: 1, bytesPerOp: p.fdatasyncBytes },
      () => openSyncFile(path.join(dir, 'fdatasync.bin'), p.fdatasyncBytes)),
  }
}

/** Per rate: paced 1 KiB appends to a new ledger, timed to their ack and to a tailing reader. */
async function measureTail(p: BenchParams, clients: TailClients): Promise<TailResult[]> {
  const template = randomBytes(p.payloadBytes)
  const results: TailResult[] = []
  for (const ratePerSec of p.tail.ratesPerSec) {
    const stats = new TailStats()
    try {
      const add = await run(p, 'quire tailed', { inFlight: p.tail.inFlightMax, bytesPerOp: p.payloadBytes, ratePerSec },
        () => openTailed(clients, QUORUM, p.tail.pollMs, template, stats))
      results.push({ ratePerSec, add, tail: stats.result() })
    } finally {
      stats.destroy()
    }
  }
  return results
}

async function measureMemory(p: BenchParams, clients: TailClients): Promise<MemoryResult | null> {
  if (p.memory === null) return null
  process.stderr.write(`tailing ${p.memory.entries} entries of ${p.memory.payloadBytes} B for the reader's memory...\n`)
  return tailMemory(clients, QUORUM, p.memory, (line) => process.stderr.write(line))
}

/**
 * A nats-server and the bookies in `dir`, a Quire client, a plain NATS connection for JetStream,
 * and a writer's and a reader's Quire client for the tailing sections.
 */
async function startCluster(dir: string, teardown: Teardown): Promise<{ client: QuireClient; nc: NatsConnection; tailClients: TailClients }> {
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  teardown.push(() => nats.stop())
  const bookies: BookieProcess[] = []
  for (let i = 1; i <= BOOKIES; i++) {
    const b = startBookieProcess({ id: `bench-bookie-${i}`, data: path.join(dir, `bookie-${i}`), nats: nats.url })
    teardown.push(() => b.stop())
    bookies.push(b)
  }
  const quireClient = async (name: string): Promise<QuireClient> => {
    const c = await connect({ servers: nats.url, name, explicitLacIntervalMs: TAIL.explicitLacIntervalMs })
    teardown.push(() => c.close())
    return c
  }
  const client = await quireClient('quire-bench')
  await waitForBookies(client, BOOKIES, BOOKIES_READY_TIMEOUT_MS).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${bookies.map((b) => `--- ${b.id}\n${b.output()}`).join('\n')}`)
  })
  // JetStream gets its own connection, as a plain nats.js user would have, not Quire's.
  const nc = await connectNats({ servers: nats.url, name: 'quire-bench-jetstream' })
  teardown.push(() => nc.close())
  return { client, nc, tailClients: { writer: await quireClient('quire-bench-tail-writer'), reader: await quireClient('quire-bench-tail-reader') } }
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
    options: {
      json: { type: 'boolean', default: false },
      seconds: { type: 'string', default: '5' },
      'tail-entries': { type: 'string', default: String(TAIL_ENTRIES_DEFAULT) },
      quick: { type: 'boolean', default: false },
    },
  })
  try {
    await runBench({ json: values.json, seconds: Number(values.seconds), tailEntries: Number(values['tail-entries']), quick: values.quick })
  } catch (err) {
    process.stderr.write(err instanceof QuireError ? `error ${err.code}: ${err.message}\n` : `${err instanceof Error ? err.stack : String(err)}\n`)
    process.exitCode = 1
  }
}
