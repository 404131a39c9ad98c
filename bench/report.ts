// The benchmark's figures and how they are shown: the result shape (also the `--json` output),
// the checks against issue 14's targets, and the human-readable header and tables. Pure: no IO.
// A missed target is a finding, not a failure: it is marked "NOT MET" and nothing else happens.
//
// A cell is one workload (entry size, entries in flight, logs written at once, pace) run against
// each peer in turn; its row per peer shows throughput, latency, and the CPU time every process
// involved spent during the timed window divided by the entries acknowledged in it (bench/cpu.ts),
// split into this process (the writer), the nats-servers and the bookies, plus the NATS messages
// per entry (/varz in_msgs + out_msgs, summed over the peer's servers). Quire's row carries its CPU
// per entry over each JetStream peer's.

import type { CpuSpent } from './cpu.ts'
import type { LatencyMs, Measurement } from './measure.ts'
import { PEER_LABELS, type PeerName } from './peers.ts'
import type { SoakParams, SoakResult } from './soak.ts'
import type { LogReadParams, LogReadResult } from './logRead.ts'

export interface Machine {
  cpus: number
  cpuModel: string
  platform: string
  node: string
  natsServer: string
  clockTicksPerSecond: number
  tempDir: string
}

export interface CellSpec {
  key: string
  payloadBytes: number
  /** Entries in flight (closed loop), or with `ratePerSec` the most that may be. */
  inFlight: number
  /** Logs written round-robin: ledgers for Quire, subjects of one stream for JetStream. */
  logs: number
  ratePerSec: number | null
  warmupSeconds: number
  /** Named log records (Quire packs them into entries) against one JetStream R1 message each. */
  records?: boolean
}

export interface BenchParams {
  seconds: number
  /** Seconds of 1 KiB appends each peer serves at 128 in flight, then as long at 1, before the first cell. */
  warmupSeconds: number
  /** Rounds of each cell, the peers taking turns; each peer's median round is the one shown. */
  rounds: number
  quick: boolean
  fdatasyncBytes: number
  quire: { bookies: number; ensembleSize: number; writeQuorum: number; ackQuorum: number }
  jetstream: { storage: 'file'; replicas: number[] }
  cells: CellSpec[]
  /** End-to-end tail latency: a paced writer and a tailing reader, each with its own client. */
  tail: { payloadBytes: number; ratesPerSec: number[]; inFlightMax: number; pollMs: number; explicitLacIntervalMs: number }
  /** Memory of a tailing reader; null when skipped (--quick). */
  memory: { entries: number; payloadBytes: number; inFlight: number; sampleEvery: number; pollMs: number } | null
  /** The soak (bench/soak.ts); null unless --soak or --only soak. */
  soak: SoakParams | null
  /** A reader catching up on a named log (bench/logRead.ts); null when skipped (--quick, --only without logread). */
  logRead: LogReadParams | null
}

export interface CellCpu extends CpuSpent {
  /** totalUs / entries: the figure compared across peers. */
  usPerEntry: number
  clientUsPerEntry: number
  natsUsPerEntry: number
  bookiesUsPerEntry: number
}

export interface PeerCell extends Measurement {
  peer: PeerName
  cpu: CellCpu
  nats: { inMsgs: number; outMsgs: number; msgsPerEntry: number }
}

export interface CellResult {
  spec: CellSpec
  peers: PeerCell[]
  /** Peers whose run of this cell failed, with the error (the run goes on with the next). */
  failed: Array<{ peer: PeerName; error: string }>
  /**
   * Quire's CPU per entry over JetStream R1's and R3's and over the protocol floor's, and the
   * floor's over R1's and R3's (null when a peer is missing; the floor runs in 1 KiB x1 only).
   */
  cpuRatio: { overR1: number | null; overR3: number | null; overFloor: number | null; floorOverR1: number | null; floorOverR3: number | null }
  /** Each peer's CPU per entry in every round, in the order measured (one round unless --rounds). */
  roundsUsPerEntry: Partial<Record<PeerName, number[]>>
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

/** CPU spent with nothing to do, in ms of CPU per second of wall time. */
export interface IdleCpu {
  seconds: number
  /** This process: the Quire clients and the JetStream connections. */
  clientMsPerSecond: number
  /** Each peer's other processes (nats-servers, bookies). */
  peers: Array<{ peer: PeerName; msPerSecond: number }>
}

export interface BenchResult {
  machine: Machine
  params: BenchParams
  idle: IdleCpu
  cells: CellResult[]
  fdatasync: Measurement
  tail: TailResult[]
  memory: MemoryResult | null
  /** A reader catching up on a named log (bench/logRead.ts); null when skipped. */
  logRead: LogReadResult | null
  soak: SoakResult | null
  ratios: Ratio[]
  /** Sections that failed (the tailing reader's, the memory check), with their error. */
  errors: string[]
}

export function cellKey(payloadBytes: number, inFlight: number, logs = 1, records = false): string {
  if (records) return `records_${payloadBytes}B_x${inFlight}`
  return logs > 1 ? `logs${logs}_${payloadBytes}B` : `${payloadBytes}B_x${inFlight}`
}

/** What an entry cost each peer, and Quire's CPU per entry over the JetStream peers'. */
export function peerCell(peer: PeerName, m: Measurement, spent: CpuSpent, msgs: { inMsgs: number; outMsgs: number }): PeerCell {
  const per = (us: number): number => (m.ops > 0 ? us / m.ops : Number.NaN)
  const sum = (prefix: string): number => Object.entries(spent.processUs).reduce((a, [name, us]) => (name.startsWith(prefix) ? a + us : a), 0)
  return {
    ...m, peer,
    cpu: { ...spent, usPerEntry: per(spent.totalUs), clientUsPerEntry: per(spent.clientUs), natsUsPerEntry: per(sum('nats')), bookiesUsPerEntry: per(sum('bookie')) },
    nats: { ...msgs, msgsPerEntry: per(msgs.inMsgs + msgs.outMsgs) },
  }
}

/**
 * A cell from its measurements, a peer's rounds in the order measured: per peer the round whose
 * CPU per entry is the median (of an even number, the lower of the two middle ones), so every
 * figure shown for a peer comes from one window, and the ratios are of those rounds.
 */
export function cellResult(spec: CellSpec, rounds: PeerCell[], failed: CellResult['failed']): CellResult {
  const roundsUsPerEntry: CellResult['roundsUsPerEntry'] = {}
  const peers: PeerCell[] = []
  for (const name of [...new Set(rounds.map((r) => r.peer))]) {
    const mine = rounds.filter((r) => r.peer === name)
    roundsUsPerEntry[name] = mine.map((r) => r.cpu.usPerEntry)
    mine.sort((a, b) => a.cpu.usPerEntry - b.cpu.usPerEntry)
    peers.push(mine[Math.floor((mine.length - 1) / 2)]!)
  }
  const of = (name: PeerName): PeerCell | undefined => peers.find((p) => p.peer === name)
  const over = (name: PeerName, other: PeerName): number | null => {
    const a = of(name)
    const b = of(other)
    return a && b ? a.cpu.usPerEntry / b.cpu.usPerEntry : null
  }
  const cpuRatio = {
    overR1: over('quire', 'jetstreamR1'), overR3: over('quire', 'jetstreamR3'), overFloor: over('quire', 'floor'),
    floorOverR1: over('floor', 'jetstreamR1'), floorOverR3: over('floor', 'jetstreamR3'),
  }
  return { spec, peers, failed, cpuRatio, roundsUsPerEntry }
}

/** Issue 14's targets, for the cells this run has. */
export function ratiosOf(cells: CellResult[], fdatasync: Measurement, tail: TailResult[]): Ratio[] {
  const out: Ratio[] = []
  const find = (key: string): CellResult | undefined => cells.find((c) => c.spec.key === key)
  const quireOf = (c: CellResult): PeerCell | undefined => c.peers.find((p) => p.peer === 'quire')
  const r1Of = (c: CellResult): PeerCell | undefined => c.peers.find((p) => p.peer === 'jetstreamR1')
  const kib1 = find(cellKey(1024, 128))
  if (kib1?.cpuRatio.overR1 != null) {
    out.push(ratio('cpuQuireOverR1_1KiB_x128', 'CPU/entry Quire / JetStream R1, 1 KiB x128', kib1.cpuRatio.overR1, { op: '<=', value: 1.5 }))
  }
  for (const c of cells) {
    if (c.spec.inFlight !== 128 || c.spec.logs !== 1 || c.cpuRatio.overR3 === null) continue
    out.push(ratio(`cpuQuireOverR3_${sizeKey(c.spec.payloadBytes)}_x128`, `CPU/entry Quire / JetStream R3, ${size(c.spec.payloadBytes)} x128`,
      c.cpuRatio.overR3, { op: '<=', value: 1 }))
  }
  const big = find(cellKey(256 * 1024, 128))
  const bigQuire = big && quireOf(big)
  if (big && bigQuire) {
    out.push(ratio('quireMbPerSec_256KiB_x128', 'Quire MB/s, 256 KiB x128', bigQuire.mbPerSec, { op: '>=', value: 60 }))
    // Same entry size on both sides: CPU per MB over CPU per MB is CPU per entry over CPU per entry.
    if (big.cpuRatio.overR1 !== null) out.push(ratio('cpuPerMbQuireOverR1_256KiB_x128', 'CPU/MB Quire / JetStream R1, 256 KiB x128', big.cpuRatio.overR1, { op: '<=', value: 2 }))
  }
  const single = find(cellKey(1024, 1))
  const singleQuire = single && quireOf(single)
  if (single?.cpuRatio.overR1 != null) out.push(ratio('cpuQuireOverR1_1KiB_x1', 'CPU/entry Quire / JetStream R1, 1 KiB x1', single.cpuRatio.overR1, { op: '<=', value: 4 }))
  if (single?.cpuRatio.overR3 != null) out.push(ratio('cpuQuireOverR3_1KiB_x1', 'CPU/entry Quire / JetStream R3, 1 KiB x1', single.cpuRatio.overR3, null))
  if (single?.cpuRatio.floorOverR1 != null) {
    out.push(ratio('cpuFloorOverR1_1KiB_x1', 'CPU/entry protocol floor / JetStream R1, 1 KiB x1', single.cpuRatio.floorOverR1, null))
  }
  if (single?.cpuRatio.overFloor != null) out.push(ratio('cpuQuireOverFloor_1KiB_x1', 'CPU/entry Quire / protocol floor, 1 KiB x1', single.cpuRatio.overFloor, null))
  if (singleQuire) {
    out.push(ratio('quireSingleP50OverFdatasyncP50', 'Quire 1 KiB x1 p50 / fdatasync p50', singleQuire.latencyMs.p50 / fdatasync.latencyMs.p50, { op: '<', value: 4 }))
  }
  for (const c of cells) {
    const q = c.spec.logs > 1 ? quireOf(c) : undefined
    if (!q) continue
    const label = `Quire, ${c.spec.logs} ledgers at ${c.spec.ratePerSec ?? 'max'}/s`
    out.push(ratio(`quireNatsMsgsPerEntry_${c.spec.key}`, `${label}: NATS messages per entry`, q.nats.msgsPerEntry, { op: '<', value: 2 }))
    out.push(ratio(`quireP99Ms_${c.spec.key}`, `${label}: p99 ms`, q.latencyMs.p99, { op: '<', value: 100 }))
  }
  for (const c of cells) {
    const q = c.spec.records ? quireOf(c) : undefined
    const r1 = q && r1Of(c)
    if (!q || !r1) continue
    out.push(ratio(`logRecordsPerSecOverR1_${c.spec.key}`, `log records/s Quire / JetStream R1 messages/s, ${size(c.spec.payloadBytes)} x${c.spec.inFlight}`, q.opsPerSec / r1.opsPerSec, { op: '>=', value: 2 }))
    out.push(ratio(`logP99OverR1P99_${c.spec.key}`, `log record p99 Quire / JetStream R1 p99, ${size(c.spec.payloadBytes)} x${c.spec.inFlight}`, q.latencyMs.p99 / r1.latencyMs.p99, { op: '<=', value: 2 }))
    if (c.cpuRatio.overR1 !== null) out.push(ratio(`logCpuOverR1_${c.spec.key}`, `CPU/record Quire / JetStream R1, ${size(c.spec.payloadBytes)} x${c.spec.inFlight}`, c.cpuRatio.overR1, null))
  }
  for (const t of tail) {
    out.push(ratio(`tailP99OverAddP99At${t.ratePerSec}`, `Quire tail p99 / add p99 at ${t.ratePerSec}/s`, t.tail.latencyMs.p99 / t.add.latencyMs.p99, { op: '<=', value: 2 }))
  }
  const kib1Quire = kib1 && quireOf(kib1)
  const kib1R1 = kib1 && r1Of(kib1)
  if (kib1Quire && kib1R1) {
    out.push(ratio('quirePipelinedOverJetstreamPipelined', 'entries/s Quire / JetStream R1, 1 KiB x128', kib1Quire.opsPerSec / kib1R1.opsPerSec, { op: '>=', value: 0.5 }))
  }
  return out
}

/** The soak's targets, per bookie: RSS flat (last over the first after the warm-up), disk use over live data. */
export function soakRatios(s: SoakResult): Ratio[] {
  return [
    ...s.rss.map((r) => ratio(`soakRssPeakLateOverEarly_${r.bookie}`, `soak ${r.bookie}: RSS peak, last / first quarter after warm-up`, r.ratio, { op: '<=', value: s.params.rssBound })),
    ...s.disk.map((d) => ratio(`soakDiskOverLive_${d.bookie}`, `soak ${d.bookie}: disk use / live data after deleting half and compacting`, d.ratioAfter, { op: '<=', value: s.params.diskBound })),
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
    `machine: ${m.cpus} x ${m.cpuModel}, ${m.platform}, node ${m.node}, nats-server ${m.natsServer}, CLK_TCK ${m.clockTicksPerSecond}`,
    `data:    ${m.tempDir} (journals, nats stores and the fdatasync file share this disk)`,
    `params:  ${p.seconds} s per cell after a warm-up (and ${p.warmupSeconds} s at 128 and at 1 in flight per peer before the first)${p.quick ? ' (--quick: a smaller matrix, no reader-memory check)' : ''}` +
      `${p.rounds > 1 ? `, ${p.rounds} rounds of each cell, the peers taking turns (each peer's median round shown)` : ''}; ` +
      `quire: ${p.quire.bookies} bookies, E=${p.quire.ensembleSize} Qw=${p.quire.writeQuorum} Qa=${p.quire.ackQuorum}; ` +
      `jetstream: ${p.jetstream.storage} storage, R${p.jetstream.replicas.join(' and R')} (R3 on 3 servers), await each PubAck`,
    'CPU:     CPU-µs per entry = (this process\'s process.cpuUsage() + each nats-server\'s and bookie\'s /proc/<pid>/stat utime+stime) ' +
      'over the timed window / entries acked in it; NATS msgs = /varz in_msgs + out_msgs, summed over the peer\'s servers',
    p.tail.ratesPerSec.length === 0 ? 'tail:    skipped (--only)' : `tail:    writer paced at ${p.tail.ratesPerSec.join(' and ')} appends/s of ${size(p.tail.payloadBytes)} (at most ${p.tail.inFlightMax} in flight), ` +
      `reader entries({ from: 0, pollMs: ${p.tail.pollMs} }), explicit LAC after ${p.tail.explicitLacIntervalMs} ms idle; separate clients, one process`,
    p.memory === null
      ? 'memory:  skipped (--quick or --only)'
      : `memory:  ${p.memory.entries} entries of ${p.memory.payloadBytes} B, ${p.memory.inFlight} in flight, tailed with pollMs ${p.memory.pollMs}; ` +
        `RSS sampled every ${p.memory.sampleEvery} entries`,
    p.soak === null
      ? 'soak:    skipped (--soak or --only soak runs it)'
      : `soak:    ${p.soak.entries} entries of ${p.soak.payloadBytes} B over ${p.soak.ledgers} ledgers to 3 bookies of its own; ` +
        `bookie RSS at ${p.soak.samples} points; then half the ledgers deleted, one GC and compaction, data folders over live data`,
  ].join('\n')
}

export function formatIdle(i: IdleCpu): string {
  return `idle:    CPU ms per second with nothing written (${i.seconds} s; part of every cell's figure, not subtracted): ` +
    [`this process ${i.clientMsPerSecond.toFixed(1)}`, ...i.peers.map((p) => `${PEER_LABELS[p.peer]} ${p.msPerSecond.toFixed(1)}`)].join(', ')
}

export function cellLabel(s: CellSpec): string {
  if (s.records) return `log records ${size(s.payloadBytes)} x${s.inFlight}`
  return s.logs > 1 ? `${s.logs} logs ${size(s.payloadBytes)} @${s.ratePerSec ?? 'max'}/s` : `${size(s.payloadBytes)} x${s.inFlight}`
}

export function formatCells(cells: CellResult[]): string {
  const head = ['cell', 'peer', 'entries/s', 'MB/s', 'p50 ms', 'p99 ms', 'CPU µs/entry', 'client', 'nats', 'bookies', 'msgs/entry', '/R1', '/R3']
  const body = cells.flatMap((c) => c.peers.map((p, i) => [
    i === 0 ? cellLabel(c.spec) : '', PEER_LABELS[p.peer], p.opsPerSec.toFixed(0), p.mbPerSec.toFixed(2), p.latencyMs.p50.toFixed(3), p.latencyMs.p99.toFixed(3),
    p.cpu.usPerEntry.toFixed(1), p.cpu.clientUsPerEntry.toFixed(1), p.cpu.natsUsPerEntry.toFixed(1), hasBookies(p.peer) ? p.cpu.bookiesUsPerEntry.toFixed(1) : '',
    p.nats.msgsPerEntry.toFixed(2),
    ...(p.peer === 'quire' ? [times(c.cpuRatio.overR1), times(c.cpuRatio.overR3)] : p.peer === 'floor' ? [times(c.cpuRatio.floorOverR1), times(c.cpuRatio.floorOverR3)] : ['', '']),
  ]))
  const failures = cells.flatMap((c) => c.failed.map((f) => `${cellLabel(c.spec)}, ${PEER_LABELS[f.peer]}: FAILED: ${f.error.split('\n')[0]}`))
  const rounds = cells.filter((c) => Object.values(c.roundsUsPerEntry).some((r) => r.length > 1)).map((c) =>
    `${cellLabel(c.spec)}: ${Object.entries(c.roundsUsPerEntry).map(([peer, us]) => `${PEER_LABELS[peer as PeerName]} ${us.map((u) => u.toFixed(1)).join(', ')}`).join('; ')}`)
  return [
    columns([head, ...body], 2),
    ...failures,
    ...(rounds.length > 0 ? ['CPU µs/entry in each round, in the order measured (the median round is shown above):', ...rounds] : []),
    'CPU µs/entry = client + nats + bookies (each per entry); /R1, /R3: Quire\'s (and the protocol floor\'s) CPU per entry over JetStream R1\'s and R3\'s in the same cell',
    ...(cells.some((c) => c.peers.some((p) => p.peer === 'floor'))
      ? ['protocol floor: each entry to 2 bookies that only write it (one synced 4 KiB write) and answer, over their own nats-server (bench/floor.ts)']
      : []),
  ].join('\n')
}

/** Peers whose processes include bookies (Quire's, the floor's). */
function hasBookies(peer: PeerName): boolean {
  return peer === 'quire' || peer === 'floor'
}

export function formatFdatasync(p: BenchParams, m: Measurement, cells: CellResult[]): string {
  const single = cells.find((c) => c.spec.key === cellKey(1024, 1))?.peers.find((x) => x.peer === 'quire')
  return [
    `fdatasync: ${size(p.fdatasyncBytes)} append + fdatasync, 1 at a time: ${m.opsPerSec.toFixed(0)}/s, p50 ${m.latencyMs.p50.toFixed(3)} ms, p99 ${m.latencyMs.p99.toFixed(3)} ms`,
    ...(single ? [`quire 1 KiB x1 p50 ${single.latencyMs.p50.toFixed(3)} ms = ${(single.latencyMs.p50 / m.latencyMs.p50).toFixed(2)} x fdatasync p50`] : []),
  ].join('\n')
}

/** Per rate, the add latency and the tail latency of the same entries, one row each. */
export function formatTail(p: BenchParams, tails: TailResult[]): string {
  const head = [`quire ${size(p.tail.payloadBytes)}`, 'rate/s', 'achieved/s', 'entries', 'after close', ...LATENCY_HEAD]
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

export function formatLogRead(r: LogReadResult): string {
  const head = ['log catch-up reader', 'records read', 'RSS MiB', 'heap used MiB']
  const body = r.samples.map((s, i) => [
    i === 0 ? 'reader started' : i === r.samples.length - 1 ? 'end' : '', String(s.records), s.rssMiB.toFixed(1), s.heapUsedMiB.toFixed(1),
  ])
  return [
    columns([head, ...body]),
    `${r.records} records of a named log (${r.segments} segment(s)): written at ${r.recordsPerSecWritten.toFixed(0)} records/s, ` +
      `read from the start at ${r.recordsPerSecRead.toFixed(0)} records/s; reader RSS growth ${r.rssGrowthMiB >= 0 ? '+' : ''}${r.rssGrowthMiB.toFixed(1)} MiB; ` +
      `${r.gcBeforeSamples ? 'GC before each sample' : 'no GC before samples (run node with --expose-gc)'}`,
  ].join('\n')
}

export function formatSoak(s: SoakResult): string {
  const p = s.params
  const mib = (b: number): string => (b / 1024 / 1024).toFixed(1)
  const rssHead = ['soak: entries', 'seconds', ...s.rss.map((r) => `${r.bookie} RSS MiB`)]
  const rssBody = s.points.map((pt, i) => [
    `${String(pt.entries)}${i === s.rss[0]?.baseIndex ? ' (base)' : ''}`, pt.seconds.toFixed(0), ...s.rss.map((r) => r.rssMiB[i]!.toFixed(1)),
  ])
  const diskHead = ['soak: bookie', 'live entries', 'live MiB', 'folder MiB', 'ratio', 'after: live entries', 'live MiB', 'folder MiB', 'ratio', 'payload only', 'folder after, by part (MiB)']
  const diskBody = s.disk.map((d) => [
    d.bookie, String(d.liveEntriesBefore), mib(d.liveBytesBefore), mib(d.before.totalBytes), d.ratioBefore.toFixed(2),
    String(d.liveEntriesAfter), mib(d.liveBytesAfter), mib(d.after.totalBytes), d.ratioAfter.toFixed(2), d.ratioAfterPayloadOnly.toFixed(2),
    Object.entries(d.after.parts).map(([k, v]) => `${k} ${mib(v)}`).join(', '),
  ])
  return [
    `soak: ${p.entries} entries of ${p.payloadBytes} B over ${p.ledgers} ledgers, ${p.inFlight} in flight, 3 bookies E=3 Qw=2 Qa=2: ` +
      `${s.writeSeconds.toFixed(0)} s, ${s.entriesPerSec.toFixed(0)} entries/s`,
    columns([rssHead, ...rssBody]),
    `RSS ratio = highest sample of the last quarter / highest of the first quarter after the warm-up (${p.warmupFraction * 100} % of the entries); ` +
      `flat: <= ${p.rssBound}: ` + s.rss.map((r) => `${r.bookie} ${r.ratio.toFixed(2)}`).join(', ') +
      ` (last sample / first after the warm-up: ${s.rss.map((r) => r.lastOverBase.toFixed(2)).join(', ')})`,
    `deleted ${s.deletedLedgers} of ${p.ledgers} ledgers; every bookie's GC deleted them and compacted in ${s.gcSeconds.toFixed(1)} s ` +
      `(GC every ${p.gcIntervalMs} ms, every compaction major)`,
    columns([diskHead, ...diskBody]),
    `live data = payload bytes of the entries the bookie stores + ${p.allowanceBytesPerEntry} B each (entry header and digest, entry-log record header, index key and value); ` +
      `folder = allocated bytes (du) of the data folder; target after <= ${p.diskBound}`,
    ...s.disk.map((d) => `${d.bookie} compactions: ${d.compactions.map((c) => JSON.stringify(c)).join('; ') || 'none logged'}`),
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

function times(x: number | null): string {
  return x === null ? '' : `${x.toFixed(2)}x`
}

/** The first `left` columns left-aligned, the others right-aligned, two spaces apart. */
function columns(rows: string[][], left = 1): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length) })
  return rows.map((row) => row.map((cell, i) => (i < left ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd()).join('\n')
}

export function size(bytes: number): string {
  return bytes >= 1024 && bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`
}

function sizeKey(bytes: number): string {
  return size(bytes).replace(' ', '')
}
