// The one measurement loop every peer of the benchmark goes through, so that Quire, JetStream and
// the raw fdatasync loop are timed the same way: open the subject, warm up, then run `inFlight`
// async workers that each loop `await op()` until the deadline, record each op's latency in an
// HdrHistogram at microsecond resolution, close the subject.
//
// Throughput counts the ops started before the deadline; the ones still in flight are awaited and
// counted, and the elapsed time runs until the last of them ends, so a slow tail is not hidden.
// A failing op stops every worker and the error is raised after all of them have returned, so no
// op is left running against a subject that is being closed.

import { performance } from 'node:perf_hooks'
import * as hdr from 'hdr-histogram-js'
import { assert } from '../machines/errors.ts'

export interface MeasureOptions {
  seconds: number
  warmupSeconds: number
  /** Workers, each with one op in flight. */
  inFlight: number
  /** Payload bytes one op moves, for MB/s. */
  bytesPerOp: number
}

/** What is measured: `op` is timed; `close` runs once afterwards, also when an op failed. */
export interface Subject {
  op: () => Promise<unknown>
  close: () => Promise<unknown>
}

export interface Measurement {
  inFlight: number
  ops: number
  elapsedSeconds: number
  opsPerSec: number
  /** 1 MB = 10^6 bytes of payload. */
  mbPerSec: number
  latencyMs: { p50: number; p99: number; p999: number; max: number }
}

/** Latencies above this (two minutes) are recorded as this; every client timeout is shorter. */
const LATENCY_US_MAX = 120_000_000

export async function measure(opts: MeasureOptions, open: () => Promise<Subject>): Promise<Measurement> {
  assert(Number.isInteger(opts.inFlight) && opts.inFlight >= 1, `inFlight must be a positive integer, got ${opts.inFlight}`)
  assert(opts.seconds > 0 && opts.warmupSeconds >= 0, 'seconds must be > 0 and warmupSeconds >= 0')
  const subject = await open()
  let result: Measurement
  try {
    await runWorkers(opts.warmupSeconds, opts.inFlight, subject.op, null)
    result = await timed(opts, subject.op)
  } catch (err) {
    await subject.close().catch(() => {})
    throw err
  }
  await subject.close()
  return result
}

async function timed(opts: MeasureOptions, op: () => Promise<unknown>): Promise<Measurement> {
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 })
  try {
    const started = performance.now()
    const ops = await runWorkers(opts.seconds, opts.inFlight, op, hist)
    const elapsedSeconds = (performance.now() - started) / 1000
    // A percentile is reported as its bucket's top value, which may lie a hair above the max seen.
    const ms = (percentile: number): number => Math.min(hist.getValueAtPercentile(percentile), hist.maxValue) / 1000
    return {
      inFlight: opts.inFlight,
      ops,
      elapsedSeconds,
      opsPerSec: ops / elapsedSeconds,
      mbPerSec: (ops * opts.bytesPerOp) / 1e6 / elapsedSeconds,
      latencyMs: { p50: ms(50), p99: ms(99), p999: ms(99.9), max: hist.maxValue / 1000 },
    }
  } finally {
    hist.destroy()
  }
}

/** Runs `inFlight` workers until `seconds` have passed; returns how many ops completed. */
async function runWorkers(seconds: number, inFlight: number, op: () => Promise<unknown>, hist: hdr.Histogram | null): Promise<number> {
  const deadline = performance.now() + seconds * 1000
  let ops = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (!failed && performance.now() < deadline) {
      const t0 = performance.now()
      try {
        await op()
      } catch (err) {
        failed = true
        throw err
      }
      const us = Math.round((performance.now() - t0) * 1000)
      hist?.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, us)))
      ops++
    }
  }
  const outcomes = await Promise.allSettled(Array.from({ length: inFlight }, worker))
  const firstFailure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')
  if (firstFailure) throw firstFailure.reason
  return ops
}
