// The benchmark's figures and how they are shown: the result shape (also the `--json` output),
// the ratios against their targets, and the human-readable header and tables. Pure: no IO here.
// A missed target is a finding, not a failure: it is marked "not met" and nothing else happens.

import type { LatencyMs, Measurement } from './measure.ts'

export interface Machine {
  cpus: number
  cpuModel: string
  platform: string
  node: string
  natsServer: string
  tempDir: string
}

export interface BenchParams {
  seconds: number
  warmupSeconds: number
  payloadBytes: number
  fdatasyncBytes: number
  inFlight: { single: number; pipelined: number }
  quire: { bookies: number; ensembleSize: number; writeQuorum: number; ackQuorum: number }
  jetstream: { storage: 'file'; replicas: number }
  /** End-to-end tail latency: a paced writer and a tailing reader, each with its own client. */
  tail: { ratesPerSec: number[]; inFlightMax: number; pollMs: number; explicitLacIntervalMs: number }
  /** Memory of a tailing reader; null when skipped (--quick). */
  memory: { entries: number; payloadBytes: number; inFlight: number; sampleEvery: number; pollMs: number } | null
}

export interface PeerResults {
  quire: { single: Measurement; pipelined: Measurement }
  jetstream: { single: Measurement; pipelined: Measurement }
  fdatasync: Measurement
}

export interface TailResult {
  /** Appends per second the writer was paced at (never more). */
  ratePerSec: number
  /** Append call to promise resolved; its opsPerSec is the rate achieved. */
  add: Measurement
  /** Append call to the reader's loop receiving the entry, for every entry appended after the warm-up. */
  tail: {
    entries: number
    /** Entries the reader received only after the writer began closing the ledger (once the run ended). */
    receivedAfterClose: number
    latencyMs: LatencyMs
  }
}

export interface MemorySample {
  /** Entries the reader had received when sampled. */
  entries: number
  rssMiB: number
  heapUsedMiB: number
}

export interface MemoryResult {
  entries: number
  /** From the reader's start until it received the last entry of the closed ledger. */
  elapsedSeconds: number
  entriesPerSec: number
  /** Whether a full GC ran before each sample (node --expose-gc). */
  gcBeforeSamples: boolean
  samples: MemorySample[]
  /** RSS at the last sample minus RSS at the first. */
  rssGrowthMiB: number
}

export interface Ratio {
  key: string
  label: string
  value: number
  target: { op: '>=' | '<' | '<='; value: number } | null
  /** null where there is no target. */
  met: boolean | null
}

export interface BenchResult {
  machine: Machine
  params: BenchParams
  results: PeerResults
  tail: TailResult[]
  memory: MemoryResult | null
  ratios: Ratio[]
}

export function ratiosOf(r: PeerResults, tail: TailResult[]): Ratio[] {
  return [
    ratio('quirePipelinedOverJetstreamPipelined', 'Quire / JetStream throughput, pipelined',
      r.quire.pipelined.opsPerSec / r.jetstream.pipelined.opsPerSec, { op: '>=', value: 0.5 }),
    ratio('quireSingleP50OverFdatasyncP50', 'Quire single-append p50 / fdatasync p50',
      r.quire.single.latencyMs.p50 / r.fdatasync.latencyMs.p50, { op: '<', value: 4 }),
    ratio('quireSingleOverJetstreamSingle', 'Quire / JetStream throughput, 1 in flight',
      r.quire.single.opsPerSec / r.jetstream.single.opsPerSec, null),
    ...tail.map((t) => ratio(`tailP99OverAddP99At${t.ratePerSec}`, `Quire tail p99 / add p99 at ${t.ratePerSec}/s`,
      t.tail.latencyMs.p99 / t.add.latencyMs.p99, { op: '<=', value: 2 })),
  ]
}

function ratio(key: string, label: string, value: number, target: Ratio['target']): Ratio {
  return { key, label, value, target, met: target === null ? null : meets(value, target) }
}

function meets(value: number, target: NonNullable<Ratio['target']>): boolean {
  switch (target.op) {
    case '>=': return value >= target.value
    case '<': return value < target.value
    case '<=': return value <= target.value
  }
}

export function formatHeader(m: Machine, p: BenchParams): string {
  return [
    `machine: ${m.cpus} x ${m.cpuModel}, ${m.platform}, node ${m.node}, nats-server ${m.natsServer}`,
    `data:    ${m.tempDir} (journals, nats store and the fdatasync file share this disk)`,
    `params:  ${p.seconds} s per measurement after ${p.warmupSeconds} s warm-up; ` +
      `in flight ${p.inFlight.single} and ${p.inFlight.pipelined}; payload ${p.payloadBytes} B`,
    `         quire: ${p.quire.bookies} bookies, E=${p.quire.ensembleSize} Qw=${p.quire.writeQuorum} Qa=${p.quire.ackQuorum}; ` +
      `jetstream: ${p.jetstream.storage} storage, R${p.jetstream.replicas}, await each PubAck; ` +
      `fdatasync: ${p.fdatasyncBytes} B append + datasync, 1 at a time`,
    `tail:    writer paced at ${p.tail.ratesPerSec.join(' and ')} appends/s (at most ${p.tail.inFlightMax} in flight), ` +
      `reader entries({ from: 0, pollMs: ${p.tail.pollMs} }), explicit LAC after ${p.tail.explicitLacIntervalMs} ms idle; separate clients, one process`,
    p.memory === null
      ? 'memory:  skipped (--quick)'
      : `memory:  ${p.memory.entries} entries of ${p.memory.payloadBytes} B, ${p.memory.inFlight} in flight, tailed with pollMs ${p.memory.pollMs}; ` +
        `RSS sampled every ${p.memory.sampleEvery} entries`,
  ].join('\n')
}

export function formatTable(p: BenchParams, r: PeerResults): string {
  const rows: Array<[string, Measurement]> = [
    [`quire ${kib(p.payloadBytes)}`, r.quire.single],
    [`quire ${kib(p.payloadBytes)}`, r.quire.pipelined],
    [`jetstream ${kib(p.payloadBytes)}`, r.jetstream.single],
    [`jetstream ${kib(p.payloadBytes)}`, r.jetstream.pipelined],
    [`fdatasync ${kib(p.fdatasyncBytes)}`, r.fdatasync],
  ]
  const head = ['', 'in flight', 'ops/s', 'MB/s', ...LATENCY_HEAD]
  const body = rows.map(([name, m]) => [name, String(m.inFlight), m.opsPerSec.toFixed(0), m.mbPerSec.toFixed(2), ...latencyCells(m.latencyMs)])
  return columns([head, ...body])
}

/** Per rate, the add latency and the tail latency of the same entries, one row each. */
export function formatTail(p: BenchParams, tails: TailResult[]): string {
  const head = [`quire ${kib(p.payloadBytes)}`, 'rate/s', 'achieved/s', 'entries', 'after close', ...LATENCY_HEAD]
  const body = tails.flatMap((t) => [
    ['add (append -> resolved)', String(t.ratePerSec), t.add.opsPerSec.toFixed(0), String(t.add.ops), '', ...latencyCells(t.add.latencyMs)],
    ['tail (append -> reader)', '', '', String(t.tail.entries), String(t.tail.receivedAfterClose), ...latencyCells(t.tail.latencyMs)],
  ])
  return [
    columns([head, ...body]),
    'after close: entries the reader received only once the writer, its run over, had begun closing the ledger',
  ].join('\n')
}

export function formatMemory(m: MemoryResult): string {
  const head = ['tailing reader', 'entries read', 'RSS MiB', 'heap used MiB']
  const body = m.samples.map((s, i) => [
    i === 0 ? 'reader started' : i === m.samples.length - 1 ? 'end' : '', String(s.entries), s.rssMiB.toFixed(1), s.heapUsedMiB.toFixed(1),
  ])
  return [
    columns([head, ...body]),
    `RSS growth ${m.rssGrowthMiB >= 0 ? '+' : ''}${m.rssGrowthMiB.toFixed(1)} MiB over ${m.entries} entries; ` +
      `${m.entriesPerSec.toFixed(0)} entries/s written and read; ${m.gcBeforeSamples ? 'GC before each sample' : 'no GC before samples (run node with --expose-gc)'}`,
  ].join('\n')
}

export function formatRatios(ratios: Ratio[]): string {
  return columns(ratios.map((x) => [
    x.label,
    x.value.toFixed(2),
    x.target === null ? '' : `target ${x.target.op} ${x.target.value}`,
    x.met === null ? '' : x.met ? 'met' : 'NOT MET',
  ]))
}

const LATENCY_HEAD = ['p50 ms', 'p99 ms', 'p99.9 ms', 'max ms']

function latencyCells(l: LatencyMs): string[] {
  return [l.p50, l.p99, l.p999, l.max].map((ms) => ms.toFixed(3))
}

/** First column left-aligned, the others right-aligned, two spaces apart. */
function columns(rows: string[][]): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length) })
  return rows.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd()).join('\n')
}

function kib(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`
}
