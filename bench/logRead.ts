// A reader catching up on a named log (docs/logs.md): `records` records of `payloadBytes` written
// to a fresh log (E3/Qw2/Qa2, the writer packing them into entries, at most `inFlight` appends
// outstanding), the log sealed, then one reader reading it from the start in the same process:
// records/s written and read, and this process's memory (RSS, heap after a GC) sampled as the
// reader goes. The reader holds at most two batches of entries, so its RSS should not grow with the
// log's length.

import { randomBytes } from 'node:crypto'
import type { QuireClient } from '../client/index.ts'
import type { CreateLedgerOptions } from '../client/index.ts'

const MIB = 1024 * 1024

export interface LogReadParams { records: number; payloadBytes: number; inFlight: number; sampleEvery: number }

export interface LogReadSample { records: number; rssMiB: number; heapUsedMiB: number }

export interface LogReadResult {
  records: number
  writeSeconds: number
  recordsPerSecWritten: number
  readSeconds: number
  recordsPerSecRead: number
  segments: number
  samples: LogReadSample[]
  rssGrowthMiB: number
  gcBeforeSamples: boolean
}

export async function logCatchUp(writerClient: QuireClient, readerClient: QuireClient, quorum: CreateLedgerOptions, p: LogReadParams, progress: (line: string) => void): Promise<LogReadResult> {
  const name = `bench-catch-up-${Date.now()}`
  const log = await writerClient.logs.createLog(name, { ensembleSize: quorum.ensembleSize, writeQuorum: quorum.writeQuorum, ackQuorum: quorum.ackQuorum })
  const w = await log.writer()
  const payload = randomBytes(p.payloadBytes)
  const started = performance.now()
  const outstanding = new Set<Promise<unknown>>()
  for (let i = 0; i < p.records; i++) {
    const a = w.append(payload)
    outstanding.add(a)
    void a.finally(() => outstanding.delete(a)).catch(() => {})
    if (outstanding.size >= p.inFlight) await Promise.race(outstanding)
  }
  await Promise.all(outstanding)
  await w.markEndOfStream()
  const writeSeconds = (performance.now() - started) / 1000
  progress(`  ${p.records} records written in ${writeSeconds.toFixed(1)} s; reading them back...\n`)

  const samples: LogReadSample[] = []
  const sample = (records: number): void => {
    globalThis.gc?.()
    const m = process.memoryUsage()
    samples.push({ records, rssMiB: m.rss / MIB, heapUsedMiB: m.heapUsed / MIB })
    progress(`  ${records} records read: RSS ${(m.rss / MIB).toFixed(1)} MiB, heap used ${(m.heapUsed / MIB).toFixed(1)} MiB\n`)
  }
  sample(0)
  const readStarted = performance.now()
  let read = 0
  for await (const r of (await readerClient.logs.openLog(name)).reader().records()) {
    void r
    if (++read % p.sampleEvery === 0) sample(read)
  }
  const readSeconds = (performance.now() - readStarted) / 1000
  if (samples.at(-1)!.records !== read) sample(read)
  const segments = (await log.info()).segments.length
  await writerClient.logs.deleteLog(name).catch(() => {})
  return {
    records: read, writeSeconds, recordsPerSecWritten: p.records / writeSeconds, readSeconds, recordsPerSecRead: read / readSeconds, segments,
    samples, rssGrowthMiB: samples.at(-1)!.rssMiB - samples[0]!.rssMiB, gcBeforeSamples: globalThis.gc !== undefined,
  }
}
