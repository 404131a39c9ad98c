// The benchmark's figures and how they are shown: the result shape (also the `--json` output),
// the ratios against their targets, and the human-readable header and table. Pure: no IO here.
// A missed target is a finding, not a failure: it is marked "not met" and nothing else happens.

import type { Measurement } from './measure.ts'

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
}

export interface PeerResults {
  quire: { single: Measurement; pipelined: Measurement }
  jetstream: { single: Measurement; pipelined: Measurement }
  fdatasync: Measurement
}

export interface Ratio {
  key: string
  label: string
  value: number
  target: { op: '>=' | '<'; value: number } | null
  /** null where there is no target. */
  met: boolean | null
}

export interface BenchResult {
  machine: Machine
  params: BenchParams
  results: PeerResults
  ratios: Ratio[]
}

export function ratiosOf(r: PeerResults): Ratio[] {
  return [
    ratio('quirePipelinedOverJetstreamPipelined', 'Quire / JetStream throughput, pipelined',
      r.quire.pipelined.opsPerSec / r.jetstream.pipelined.opsPerSec, { op: '>=', value: 0.5 }),
    ratio('quireSingleP50OverFdatasyncP50', 'Quire single-append p50 / fdatasync p50',
      r.quire.single.latencyMs.p50 / r.fdatasync.latencyMs.p50, { op: '<', value: 4 }),
    ratio('quireSingleOverJetstreamSingle', 'Quire / JetStream throughput, 1 in flight',
      r.quire.single.opsPerSec / r.jetstream.single.opsPerSec, null),
  ]
}

function ratio(key: string, label: string, value: number, target: Ratio['target']): Ratio {
  const met = target === null ? null : target.op === '>=' ? value >= target.value : value < target.value
  return { key, label, value, target, met }
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
  const head = ['', 'in flight', 'ops/s', 'MB/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms']
  const body = rows.map(([name, m]) => [
    name, String(m.inFlight), m.opsPerSec.toFixed(0), m.mbPerSec.toFixed(2),
    m.latencyMs.p50.toFixed(3), m.latencyMs.p99.toFixed(3), m.latencyMs.p999.toFixed(3), m.latencyMs.max.toFixed(3),
  ])
  return columns([head, ...body])
}

export function formatRatios(ratios: Ratio[]): string {
  return columns(ratios.map((x) => [
    x.label,
    x.value.toFixed(2),
    x.target === null ? '' : `target ${x.target.op} ${x.target.value}`,
    x.met === null ? '' : x.met ? 'met' : 'NOT MET',
  ]))
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
