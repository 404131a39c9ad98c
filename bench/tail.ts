// Tailing readers in the benchmark: a writer and a reader, each with its own Quire client, on one
// ledger in this process. Every payload carries, in its first 8 bytes, the performance.now() at
// which `append` was called for it (one process, one clock), so the reader's loop knows each
// entry's age on arrival without a shared table.
//
// - Latency (`openTailed`): a Subject for bench/measure.ts, paced there at a fixed rate; the
//   reader records append call → its loop receiving the entry, for entries appended after the
//   warm-up, next to the add latency measure.ts records for the same appends.
// - Memory (`tailMemory`): N small entries pipelined through appendAll while the reader consumes
//   them; RSS and heap sampled (after a full GC under --expose-gc) as the reader starts, every
//   `sampleEvery` entries and at the end. The reader holds one batch, so both should stay flat.
//
// Each tailed ledger is closed at the end, and its reader must then end too, having received
// every entry once and in order, within DRAIN_TIMEOUT_MS; otherwise the section fails with what
// the reader had received.

import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { CreateLedgerOptions, LedgerEntry, QuireClient, WriteHandle } from '../client/index.ts'
import { Latencies, type Subject } from './measure.ts'
import type { BenchParams, MemoryResult, MemorySample, TailResult } from './report.ts'

export interface TailClients {
  writer: QuireClient
  reader: QuireClient
}

/** How long a reader may take, once its ledger is closed, to deliver the rest of it and end. */
const DRAIN_TIMEOUT_MS = 60_000
const MIB = 1024 * 1024

interface Tailed {
  w: WriteHandle
  /** Close the ledger, wait for the reader to end; returns how many entries it received. */
  finish: () => Promise<number>
}

/** A new ledger written through `c.writer`, tailed from entry 0 through `c.reader`. */
async function tailedLedger(c: TailClients, quorum: CreateLedgerOptions, pollMs: number, onEntry: (e: LedgerEntry, receivedAt: number) => void): Promise<Tailed> {
  const w = await c.writer.createLedger(quorum)
  const r = await c.reader.openLedger(w.ledgerId)
  const entries = r.entries({ from: 0, pollMs })
  let received = 0
  const reading = (async () => {
    for await (const e of entries) {
      const receivedAt = performance.now()
      if (e.entryId !== received) throw new Error(`the reader of ledger ${w.ledgerId} received entry ${e.entryId} where ${received} was next`)
      received++
      onEntry(e, receivedAt)
    }
    return received
  })()
  reading.catch(() => {}) // raised by finish()
  const finish = async (): Promise<number> => {
    try {
      await w.close()
      const n = await within(reading, DRAIN_TIMEOUT_MS, () =>
        `the reader of ledger ${w.ledgerId} had received ${received} of its ${w.lastAddConfirmed + 1} entries and not ended ${DRAIN_TIMEOUT_MS / 1000} s after the ledger was closed`)
      if (n !== w.lastAddConfirmed + 1) throw new Error(`the reader of ledger ${w.ledgerId} ended after ${n} entries; the ledger was closed with ${w.lastAddConfirmed + 1}`)
      return n
    } finally {
      await entries.return?.() // stops the reader if it has not ended
    }
  }
  return { w, finish }
}

/** What a tailing reader saw of the entries appended after the warm-up. */
export class TailStats {
  readonly latencies = new Latencies()
  /** Of those, how many reached the reader only once the writer had begun closing the ledger. */
  receivedAfterClose = 0

  result(): TailResult['tail'] {
    return { entries: this.latencies.count, receivedAfterClose: this.receivedAfterClose, latencyMs: this.latencies.summary() }
  }

  destroy(): void {
    this.latencies.destroy()
  }
}

/** Appends `template` copies stamped with their append-call time; the reader records them in `stats` after the warm-up. */
export async function openTailed(c: TailClients, quorum: CreateLedgerOptions, pollMs: number, template: Uint8Array, stats: TailStats): Promise<Subject> {
  let since = Number.POSITIVE_INFINITY
  let closedAt = Number.POSITIVE_INFINITY
  const t = await tailedLedger(c, quorum, pollMs, (e, receivedAt) => {
    const appendedAt = e.payload.readDoubleLE(0)
    if (appendedAt < since) return
    stats.latencies.record(receivedAt - appendedAt)
    if (receivedAt >= closedAt) stats.receivedAfterClose++
  })
  return {
    op: () => {
      const payload = Buffer.from(template)
      payload.writeDoubleLE(performance.now(), 0)
      return t.w.append(payload)
    },
    warmedUp: () => { since = performance.now() },
    close: () => {
      closedAt = performance.now()
      return t.finish()
    },
  }
}

export async function tailMemory(c: TailClients, quorum: CreateLedgerOptions, p: NonNullable<BenchParams['memory']>, progress: (line: string) => void): Promise<MemoryResult> {
  const samples: MemorySample[] = []
  const sample = (entries: number): void => {
    globalThis.gc?.()
    const m = process.memoryUsage()
    samples.push({ entries, rssMiB: m.rss / MIB, heapUsedMiB: m.heapUsed / MIB })
    progress(`  ${entries} entries read: RSS ${(m.rss / MIB).toFixed(1)} MiB, heap used ${(m.heapUsed / MIB).toFixed(1)} MiB\n`)
  }
  const t = await tailedLedger(c, quorum, p.pollMs, (e) => {
    if ((e.entryId + 1) % p.sampleEvery === 0) sample(e.entryId + 1)
  })
  sample(0)
  const started = performance.now()
  try {
    for await (const appended of t.w.appendAll(repeat(randomBytes(p.payloadBytes), p.entries), { maxInFlight: p.inFlight })) void appended
  } catch (err) {
    await t.finish().catch(() => {})
    throw err
  }
  const read = await t.finish()
  const elapsedSeconds = (performance.now() - started) / 1000
  if (samples[samples.length - 1]?.entries !== read) sample(read)
  const first = samples[0]!
  const last = samples[samples.length - 1]!
  return {
    entries: read, elapsedSeconds, entriesPerSec: read / elapsedSeconds, gcBeforeSamples: globalThis.gc !== undefined,
    samples, rssGrowthMiB: last.rssMiB - first.rssMiB,
  }
}

function* repeat<T>(value: T, times: number): Generator<T> {
  for (let i = 0; i < times; i++) yield value
}

/** `p`, or a rejection with `message()` if it has not settled after `ms`. */
async function within<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message())), ms) })
  try {
    return await Promise.race([p, expired])
  } finally {
    clearTimeout(timer)
  }
}
