// `npm run bench` / `quire bench`: what a Quire append costs, in CPU time summed over every
// process involved, next to JetStream doing the same job, measured in one run on one machine with
// the same loop (bench/measure.ts). CPU time holds steady on a shared machine where wall-clock
// rates do not, so it is the figure to compare; throughput and latency stand next to it.
//
// - Peers (bench/peers.ts): Quire (E3/Qw2/Qa2 over three bookie processes and one nats-server),
//   JetStream R1 file storage on its own nats-server, JetStream R3 on a 3-server nats cluster;
//   each started from scratch, written from this process with the same entry sizes and the same
//   number of entries in flight. Caveat: by default JetStream acks a message before fsync (its file
//   store syncs every 2 minutes), while a bookie acks only after its journal's fdatasync.
// - Cells: 100 B, 1 KiB, 16 KiB and 256 KiB entries at 128 in flight; 1 KiB at 1 in flight; 1,000
//   logs written at once at 1,000 entries/s in total (--quick: the two 1 KiB cells only). Each cell
//   runs each peer in turn (one fresh ledger or stream per cell), so the peers of a cell see the
//   same machine within seconds of each other. Per peer and cell: entries/s, MB/s, p50/p99, CPU-µs
//   per entry over the timed window (bench/cpu.ts; warm-up excluded) and NATS messages per entry
//   (/varz in_msgs + out_msgs).
// - Protocol floor (bench/floor.ts), in the 1 KiB x1 cell only: each entry to two bookies that do
//   nothing but one synced 4 KiB write and an answer, over their own nats-server; Quire's message
//   pattern and journal write with none of its work, so the CPU under which no bookie of this
//   protocol goes on this machine. Quire's CPU per entry is shown over it, and so is its own over R1's.
// - fdatasync: 4 KiB appended to a file and fdatasync'ed, one at a time, on the same disk: the
//   floor under any acknowledged add; Quire's single-append p50 is shown over its p50.
// - Tailing readers (bench/tail.ts): 1 KiB appends paced at 1,000 and 10,000 a second, each timed
//   to its ack (add) and to a tailing reader's loop (tail), with its own client, in the same
//   process. Then a reader's RSS and heap while it tails --tail-entries small entries (skipped
//   with --quick).
// - Soak (bench/soak.ts; only with --soak or --only soak: tens of minutes at its default of
//   10,000,000 entries): each bookie's RSS while entries pile up, then its data folder over the
//   live data after half the ledgers are deleted and one garbage collection compacted.
//
// Everything runs on its own servers, bookies and temp dir, all stopped and removed at the end,
// also on error or SIGINT/SIGTERM. Missed targets are reported, never turned into a failure.

import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { QuireError } from '../client/index.ts'
import { clockTicksPerSecond, CpuWindow, type CpuSpent } from './cpu.ts'
import { measure, type Measurement, type MeasureOptions, type MeasureWindow, type Subject } from './measure.ts'
import { startFloor } from './floor.ts'
import { BOOKIES, natsMessages, PEER_LABELS, QUORUM, startJetStreamR1, startJetStreamR3, startQuire, type Peer } from './peers.ts'
import {
  cellKey, cellLabel, cellResult, formatCells, formatFdatasync, formatHeader, formatIdle, formatLogRead, formatMemory, formatRatios, formatSoak, formatTail, peerCell, ratiosOf, soakRatios,
  type BenchParams, type BenchResult, type CellResult, type CellSpec, type IdleCpu, type Machine, type MemoryResult, type PeerCell, type TailResult,
} from './report.ts'
import { logCatchUp } from './logRead.ts'
import { runSoak, SOAK_CHECKPOINT_MS_DEFAULT, SOAK_ENTRIES_DEFAULT, soakParams } from './soak.ts'
import { openTailed, tailMemory, TailStats, type TailClients } from './tail.ts'

export type { BenchResult } from './report.ts'

const SIZES = [100, 1024, 16 * 1024, 256 * 1024]
const PIPELINED = 128
/** The one-entry-at-a-time cell, the only one the protocol floor (bench/floor.ts) takes part in. */
const SINGLE_CELL = cellKey(1024, 1)
const MANY = { logs: 1_000, ratePerSec: 1_000, payloadBytes: 1024 }
/** Named log records: 100 B, as many in flight as a writer packs into its entries. */
const RECORDS = { payloadBytes: 100, inFlight: 4096 }
/** A reader catching up on a named log of a million 100-byte records (bench/logRead.ts). */
const LOG_READ = { records: 1_000_000, payloadBytes: 100, inFlight: 8192, sampleEvery: 200_000 }
/**
 * Warm-up before each cell's timed window; long enough for a 256 KiB x128 round and, with many
 * logs, three entries per log: with E3/Qw2 a bookie first hears of a ledger with its entry 0, 1
 * or 2 (the write sets rotate), and loading a ledger it has not seen costs the bookie RocksDB
 * reads, a journal record and a new actor. With 1,000 ledgers at 1,000/s the third bookie of each
 * loaded it 1-2 s in, so a 1.5 s warm-up put that burst in the timed window (in the trace, p99
 * from the first half second, 200-600 ms mean, down to 20-30 ms two seconds in).
 * One entry at a time, 0.5 s is a few hundred appends: too few for V8 to optimise a fresh
 * process's add path (with --only, the cell may be the first the bookies serve), so it warms for 2 s.
 */
const WARMUP_SECONDS = { default: 0.5, large: 1, many: 3, single: 2 }
/**
 * Before the first cell, each peer serves this long of 1 KiB appends at 128 in flight and as long
 * at 1. A bookie is a long-running process: V8 compiles a function with its optimising tier only
 * after many calls, and a fresh bookie's add path ran mostly as baseline code in a cell's first
 * seconds (perf at 128 in flight: 5,769 sampled JS frames in baseline code, 337 optimised). Go's
 * nats-server needs none of it; JetStream gets the same warm-up all the same.
 */
const RUN_WARMUP_SECONDS_DEFAULT = 5
/** --rounds at most: each round of the full run takes minutes. */
const ROUNDS_MAX = 20
const TAIL = { payloadBytes: 1024, ratesPerSec: [1_000, 10_000], inFlightMax: 1024, pollMs: 500, explicitLacIntervalMs: 100 }
const TAIL_ENTRIES_DEFAULT = 200_000
const MEMORY = { payloadBytes: 64, inFlight: 256, pollMs: 500, sampleEveryMax: 200_000 }
const FDATASYNC_BYTES = 4096
const IDLE_SECONDS = 2

export interface BenchOptions {
  json: boolean
  seconds: number
  /** Entries the reader-memory section writes and tails (default 200,000). */
  tailEntries?: number
  /** The 1 KiB cells only, and no reader-memory section. */
  quick?: boolean
  /**
   * Only these parts: cell keys (`1024B_x1`, `logs1000_1024B`, ...), `tail`, `memory`. The
   * fdatasync floor always runs. Unset: everything (or what --quick keeps).
   */
  only?: string[]
  /** Also run the soak (bench/soak.ts; minutes to tens of minutes), as `--only soak` does. */
  soak?: boolean
  /** Entries the soak writes (default 10,000,000). */
  soakEntries?: number
  /** The soak's bookies' checkpoint interval (default 30,000, the product's); the folders are measured once it has passed. */
  soakCheckpointMs?: number
  /** Seconds each peer serves at 128 and at 1 in flight before the first cell (default 5; 0: none). */
  warmupSeconds?: number
  /**
   * Rounds of each cell (default 1): the peers take turns, round after round, and each peer's
   * round with the median CPU per entry is the one shown (all its figures from that one window).
   */
  rounds?: number
}

export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const params = paramsOf(opts)
  const out = opts.json ? process.stderr : process.stdout
  const teardown = new Teardown()
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`${signal}: stopping the benchmark's servers and bookies...\n`)
    void teardown.run().then(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bench-'))
    teardown.push(() => rm(dir, { recursive: true, force: true }))
    // --only soak: the soak starts its own servers and bookies; the peers would only sit idle.
    const soakOnly = params.soak !== null && params.cells.length === 0 && params.tail.ratesPerSec.length === 0 && params.memory === null && params.logRead === null
    let quire: Awaited<ReturnType<typeof startQuire>> | null = null
    let peers: Peer[] = []
    let natsVersion = 'not started (--only soak)'
    if (!soakOnly) {
      const floor = params.cells.some((c) => c.key === SINGLE_CELL)
    process.stderr.write(`starting quire (nats-server, 3 bookies), jetstream R1 (nats-server), jetstream R3 (3 nats-servers)${floor ? ' and the protocol floor (nats-server, 2 bookies)' : ''}...\n`)
      quire = await startQuire(dir, teardown, TAIL.explicitLacIntervalMs)
      const r1 = await startJetStreamR1(dir, teardown)
      const r3 = await startJetStreamR3(dir, teardown)
      natsVersion = r1.version
      peers = [quire.peer, r1.peer, r3]
      if (floor) peers.push(await startFloor(dir, teardown, [SINGLE_CELL]))
    }
    const machine = machineOf(dir, natsVersion)
    out.write(formatHeader(machine, params) + '\n\n')
    if (params.cells.length > 0 || params.tail.ratesPerSec.length > 0) await warmUp(peers, params.warmupSeconds)
    const idle = await measureIdle(peers)
    out.write(formatIdle(idle) + '\n\n')
    const cells: CellResult[] = []
    for (const spec of params.cells) cells.push(await measureCell(params, spec, peers))
    // Shown now: the sections after it take a while, and these are the figures that matter.
    out.write(formatCells(cells) + '\n\n')
    const fdatasync = await run(params, 'fdatasync', { inFlight: 1, bytesPerOp: FDATASYNC_BYTES, warmupSeconds: WARMUP_SECONDS.default },
      () => openSyncFile(path.join(dir, 'fdatasync.bin'), FDATASYNC_BYTES))
    const errors: string[] = []
    const section = async <T>(name: string, f: () => Promise<T>, otherwise: T): Promise<T> => {
      try {
        await quire?.peer.ready()
        return await f()
      } catch (err) {
        const error = `${name}: ${err instanceof Error ? err.message : String(err)}`
        process.stderr.write(`FAILED: ${error}\n`)
        errors.push(error)
        return otherwise
      }
    }
    const tail = quire ? await section('tail latency', () => measureTail(params, quire.tailClients), []) : []
    const memory = quire ? await section('reader memory', () => measureMemory(params, quire.tailClients), null) : null
    const logRead = quire && params.logRead ? await section('log catch-up', () => {
      process.stderr.write(`log catch-up: writing ${params.logRead!.records} records of ${params.logRead!.payloadBytes} B to a named log, then reading them back...\n`)
      return logCatchUp(quire.tailClients.writer, quire.tailClients.reader, QUORUM, params.logRead!, (line) => process.stderr.write(line))
    }, null) : null
    const soak = params.soak === null ? null : await section('soak', async () => {
      process.stderr.write(`soak: writing ${params.soak!.entries} entries of ${params.soak!.payloadBytes} B to 3 bookies of their own...\n`)
      return runSoak(params.soak!, path.join(dir, 'soak'), teardown, (line) => process.stderr.write(line))
    }, null)
    const ratios = [...ratiosOf(cells, fdatasync, tail), ...(soak ? soakRatios(soak) : [])]
    const result: BenchResult = { machine, params, idle, cells, fdatasync, tail, memory, logRead, soak, ratios, errors }
    out.write([
      formatFdatasync(params, fdatasync, cells), ...(tail.length > 0 ? [formatTail(params, tail)] : []),
      ...(memory ? [formatMemory(memory)] : []), ...(logRead ? [formatLogRead(logRead)] : []), ...(soak ? [formatSoak(soak)] : []), formatRatios(ratios), ...errors.map((e) => `FAILED: ${e.split('\n')[0]}`),
    ].join('\n\n') + '\n')
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
  const quick = opts.quick === true
  const cell = (payloadBytes: number, inFlight: number): CellSpec => ({
    key: cellKey(payloadBytes, inFlight), payloadBytes, inFlight, logs: 1, ratePerSec: null,
    warmupSeconds: inFlight === 1 ? WARMUP_SECONDS.single : payloadBytes >= 64 * 1024 ? WARMUP_SECONDS.large : WARMUP_SECONDS.default,
  })
  const many: CellSpec = {
    key: cellKey(MANY.payloadBytes, MANY.logs, MANY.logs), payloadBytes: MANY.payloadBytes, inFlight: MANY.logs, logs: MANY.logs,
    ratePerSec: MANY.ratePerSec, warmupSeconds: WARMUP_SECONDS.many,
  }
  const records: CellSpec = {
    key: cellKey(RECORDS.payloadBytes, RECORDS.inFlight, 1, true), payloadBytes: RECORDS.payloadBytes, inFlight: RECORDS.inFlight, logs: 1,
    ratePerSec: null, warmupSeconds: WARMUP_SECONDS.default, records: true,
  }
  const all = [...SIZES.map((b) => cell(b, PIPELINED)), cell(1024, 1), many, records]
  const only = opts.only === undefined ? null : new Set(opts.only)
  if (only) {
    const known = [...all.map((c) => c.key), 'tail', 'memory', 'logread', 'soak']
    const unknown = [...only].filter((k) => !known.includes(k))
    if (unknown.length > 0 || only.size === 0) {
      throw new QuireError('INVALID_CONFIG', `--only takes a comma-separated list of ${known.join(', ')}; got ${opts.only!.join(',')}`)
    }
  }
  const cells = only ? all.filter((c) => only.has(c.key)) : quick ? [cell(1024, PIPELINED), cell(1024, 1)] : all
  const { sampleEveryMax, ...memory } = MEMORY
  const warmupSeconds = opts.warmupSeconds ?? RUN_WARMUP_SECONDS_DEFAULT
  if (!Number.isFinite(warmupSeconds) || warmupSeconds < 0) {
    throw new QuireError('INVALID_CONFIG', `--warmup-seconds must be a number of at least 0, got ${opts.warmupSeconds}`)
  }
  const rounds = opts.rounds ?? 1
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > ROUNDS_MAX) {
    throw new QuireError('INVALID_CONFIG', `--rounds must be a whole number from 1 to ${ROUNDS_MAX}, got ${opts.rounds}`)
  }
  const soakEntries = opts.soakEntries ?? SOAK_ENTRIES_DEFAULT
  const soakCheckpointMs = opts.soakCheckpointMs ?? SOAK_CHECKPOINT_MS_DEFAULT
  if (!Number.isSafeInteger(soakCheckpointMs) || soakCheckpointMs < 100) {
    throw new QuireError('INVALID_CONFIG', `--soak-checkpoint-ms must be an integer of at least 100, got ${opts.soakCheckpointMs}`)
  }
  if (!Number.isSafeInteger(soakEntries) || soakEntries < 1000) {
    throw new QuireError('INVALID_CONFIG', `--soak-entries must be an integer of at least 1000, got ${opts.soakEntries}`)
  }
  return {
    seconds: opts.seconds, warmupSeconds, rounds, quick, fdatasyncBytes: FDATASYNC_BYTES,
    quire: { bookies: BOOKIES, ensembleSize: QUORUM.ensembleSize!, writeQuorum: QUORUM.writeQuorum!, ackQuorum: QUORUM.ackQuorum! },
    jetstream: { storage: 'file', replicas: [1, 3] }, cells, tail: only && !only.has('tail') ? { ...TAIL, ratesPerSec: [] } : TAIL,
    // Five samples after the start, also when testing with a few entries.
    memory: (only ? !only.has('memory') : quick) ? null
      : { ...memory, entries: tailEntries, sampleEvery: Math.min(sampleEveryMax, Math.ceil(tailEntries / 5)) },
    soak: opts.soak === true || only?.has('soak') === true ? soakParams(soakEntries, soakCheckpointMs) : null,
    logRead: (only ? !only.has('logread') : quick) ? null : LOG_READ,
  }
}

/** bench/measure.ts with this run's duration, announced on stderr. */
function run(p: BenchParams, label: string, m: Pick<MeasureOptions, 'inFlight' | 'bytesPerOp' | 'ratePerSec' | 'warmupSeconds'>, open: () => Promise<Subject>, window?: MeasureWindow): Promise<Measurement> {
  const pace = m.ratePerSec === undefined ? `${m.inFlight} in flight` : `${m.ratePerSec}/s, at most ${m.inFlight} in flight`
  process.stderr.write(`measuring ${label}, ${pace}, ${p.seconds} s...\n`)
  return measure({ seconds: p.seconds, ...m }, open, window)
}

/** RUN_WARMUP_SECONDS_DEFAULT's warm-up: untimed, each peer in turn, a fresh log for each pace. */
async function warmUp(peers: Peer[], seconds: number): Promise<void> {
  if (seconds === 0) return
  const payload = randomBytes(1024)
  for (const peer of peers) {
    for (const inFlight of [PIPELINED, 1]) {
      await peer.ready()
      process.stderr.write(`warming up ${PEER_LABELS[peer.name]}, 1 KiB x${inFlight}, ${seconds} s...\n`)
      await measure({ seconds, inFlight, bytesPerOp: payload.length, warmupSeconds: 0 }, () => peer.open(payload))
    }
  }
}

/**
 * What every process spends doing nothing for IDLE_SECONDS (timers, heartbeats, pings): part of
 * every cell's figure, so shown once on its own, not subtracted.
 */
async function measureIdle(peers: Peer[]): Promise<IdleCpu> {
  process.stderr.write(`measuring idle CPU, ${IDLE_SECONDS} s...\n`)
  globalThis.gc?.()
  const windows = peers.map((p) => new CpuWindow(p.procs))
  await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000))
  const spent = windows.map((w) => w.stop())
  const perSecond = (us: number): number => us / 1000 / IDLE_SECONDS
  return {
    seconds: IDLE_SECONDS,
    // The windows overlap in time: this process's CPU is the same in each.
    clientMsPerSecond: perSecond(spent[0]?.clientUs ?? 0),
    peers: peers.map((p, i) => ({ peer: p.name, msPerSecond: perSecond(spent[i]!.totalUs - spent[i]!.clientUs) })),
  }
}

/**
 * One workload against each peer in turn, `p.rounds` times (see BenchOptions.rounds), with the
 * CPU time and NATS messages of each timed window. A peer that fails the cell is reported with
 * its error, is not asked again, and the run goes on.
 */
async function measureCell(p: BenchParams, spec: CellSpec, peers: Peer[]): Promise<CellResult> {
  const payload = randomBytes(spec.payloadBytes)
  const rounds: PeerCell[] = []
  const failed: CellResult['failed'] = []
  for (let round = 0; round < p.rounds; round++) {
    for (const peer of peers) {
      if (failed.some((f) => f.peer === peer.name) || (peer.cells && !peer.cells.includes(spec.key))) continue
      if (spec.records && peer.name !== 'quire' && peer.name !== 'jetstreamR1') continue
      try {
        rounds.push(await measurePeer(p, spec, peer, payload))
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err)
        process.stderr.write(`${PEER_LABELS[peer.name]} ${cellLabel(spec)} FAILED: ${error}\n`)
        failed.push({ peer: peer.name, error })
      }
    }
  }
  return cellResult(spec, rounds, failed)
}

async function measurePeer(p: BenchParams, spec: CellSpec, peer: Peer, payload: Uint8Array): Promise<PeerCell> {
  await peer.ready()
  let cpu: CpuWindow | null = null
  let spent: CpuSpent | null = null
  let before = { inMsgs: 0, outMsgs: 0 }
  let after = before
  const window: MeasureWindow = {
    begin: async () => {
      globalThis.gc?.() // the garbage of the cell before is not this one's
      before = await natsMessages(peer.monitorPorts)
      cpu = new CpuWindow(peer.procs)
    },
    end: async () => {
      spent = cpu!.stop()
      after = await natsMessages(peer.monitorPorts)
    },
  }
  const m = await run(p, `${PEER_LABELS[peer.name]} ${cellLabel(spec)}`,
    { inFlight: spec.inFlight, bytesPerOp: spec.payloadBytes, warmupSeconds: spec.warmupSeconds, ...(spec.ratePerSec === null ? {} : { ratePerSec: spec.ratePerSec }) },
    () => (spec.records ? (peer.openRecords ?? peer.open)(payload) : spec.logs > 1 ? peer.openMany(spec.logs, payload) : peer.open(payload)), window)
  return peerCell(peer.name, m, spent!, { inMsgs: after.inMsgs - before.inMsgs, outMsgs: after.outMsgs - before.outMsgs })
}

/** Per rate: paced 1 KiB appends to a new ledger, timed to their ack and to a tailing reader. */
async function measureTail(p: BenchParams, clients: TailClients): Promise<TailResult[]> {
  const template = randomBytes(p.tail.payloadBytes)
  const results: TailResult[] = []
  for (const ratePerSec of p.tail.ratesPerSec) {
    const stats = new TailStats()
    try {
      const add = await run(p, 'quire tailed', { inFlight: p.tail.inFlightMax, bytesPerOp: p.tail.payloadBytes, ratePerSec, warmupSeconds: WARMUP_SECONDS.default },
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

function machineOf(tempDir: string, natsServer: string): Machine {
  const cpus = os.cpus()
  return {
    cpus: cpus.length, cpuModel: cpus[0]?.model.trim() ?? 'unknown', platform: `${process.platform} ${process.arch}`,
    node: process.version, natsServer, clockTicksPerSecond: clockTicksPerSecond(), tempDir,
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

/** The command line's options, with what `--help` says of each (cli/main.ts's `quire bench` takes the same). */
const BENCH_FLAGS = {
  json: { type: 'boolean', default: false, help: 'print the figures as one JSON object on the last line' },
  seconds: { type: 'string', default: '3', help: 'seconds per measurement' },
  'tail-entries': { type: 'string', default: String(TAIL_ENTRIES_DEFAULT), help: 'entries for the tailing reader memory check' },
  quick: { type: 'boolean', default: false, help: 'the 1 KiB cells only, and no tailing reader memory check' },
  only: { type: 'string', help: 'only these comma-separated parts: cell keys (1024B_x1, logs1000_1024B, records_100B_x4096, ...), tail, memory, logread, soak' },
  soak: { type: 'boolean', default: false, help: 'also run the soak (tens of minutes at the default size)' },
  'soak-entries': { type: 'string', default: String(SOAK_ENTRIES_DEFAULT), help: 'entries the soak writes' },
  'soak-checkpoint-ms': { type: 'string', default: String(SOAK_CHECKPOINT_MS_DEFAULT), help: 'the soak bookies\' checkpoint interval (the product\'s default); its folders are measured once it has passed' },
  'warmup-seconds': { type: 'string', default: String(RUN_WARMUP_SECONDS_DEFAULT), help: 'seconds each peer serves at 128 and at 1 in flight before the first measurement' },
  rounds: { type: 'string', default: '1', help: 'rounds of each cell, the peers taking turns; each peer\'s median round (by CPU per entry) is shown' },
  help: { type: 'boolean', default: false, help: 'print these options and exit' },
} as const

/** What `--help` prints. */
export function benchUsage(): string {
  const rows = Object.entries(BENCH_FLAGS).map(([name, f]) => {
    const flag = f.type === 'string' ? `--${name} <value>` : `--${name}`
    const dflt = 'default' in f && f.type === 'string' ? ` (default ${f.default})` : ''
    return `  ${flag.padEnd(26)}${f.help}${dflt}`
  })
  return ['usage: npm run bench -- [options]', '', 'options:', ...rows].join('\n') + '\n'
}

/**
 * The command line as BenchOptions, or `help` for --help. A flag it does not know, a missing
 * value or a stray argument is one INVALID_CONFIG line (parseArgs's own TypeError is a stack).
 */
export function parseBenchArgs(args: string[]): BenchOptions | 'help' {
  const options = Object.fromEntries(Object.entries(BENCH_FLAGS).map(([name, { help: _, ...f }]) => [name, f]))
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({ args, options: options as ParseArgsConfig['options'] }).values as Record<string, string | boolean | undefined>
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) throw err
    const unknown = /^Unknown option '([^']*)'/.exec((err as Error).message)
    const what = unknown ? `unknown option ${unknown[1]}` : (err as Error).message.split('.')[0]!
    throw new QuireError('INVALID_CONFIG', `${what} (--help lists the options)`)
  }
  if (values['help'] === true) return 'help'
  const str = (name: string): string => String(values[name])
  return {
    json: values['json'] === true, seconds: Number(str('seconds')), tailEntries: Number(str('tail-entries')), quick: values['quick'] === true,
    soak: values['soak'] === true, soakEntries: Number(str('soak-entries')), soakCheckpointMs: Number(str('soak-checkpoint-ms')), warmupSeconds: Number(str('warmup-seconds')),
    rounds: Number(str('rounds')),
    ...(values['only'] === undefined ? {} : { only: str('only').split(',') }),
  }
}

const invokedPath = process.argv[1]
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  try {
    const opts = parseBenchArgs(process.argv.slice(2))
    if (opts === 'help') process.stdout.write(benchUsage())
    else await runBench(opts)
  } catch (err) {
    process.stderr.write(err instanceof QuireError ? `error ${err.code}: ${err.message}\n` : `${err instanceof Error ? err.stack : String(err)}\n`)
    process.exitCode = 1
  }
}
