// The one measurement loop every peer of the benchmark goes through, so that Quire, JetStream and
// the raw fdatasync loop are timed the same way: open the subject, warm up, then run `inFlight`
// async workers that each loop `await op()` until the deadline, record each op's latency in an
// HdrHistogram at microsecond resolution, close the subject.
//
// Closed loop by default: a worker starts its next op as soon as the last one ends. With
// `ratePerSec` the loop is paced instead: op i may start no earlier than i / ratePerSec after the
// start, so the ops started never run ahead of the rate; `inFlight` then only bounds how many may
// be outstanding. One timer releases every op that has come due, in one callback, so ops due in
// the same millisecond start in the same tick (as a busy producer's would, and as Quire batches
// them). A system that cannot keep up starts its ops late (latency is timed from the actual
// start) and shows it as an achieved ops/s below the rate.
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
  /** Workers, each with one op in flight (with `ratePerSec`, the most that may be in flight). */
  inFlight: number
  /** Pace op starts at this rate instead of starting each as soon as a worker is free. */
  ratePerSec?: number
  /** Payload bytes one op moves, for MB/s. */
  bytesPerOp: number
}

/** What is measured: `op` is timed; `close` runs once afterwards, also when an op failed. */
export interface Subject {
  op: () => Promise<unknown>
  close: () => Promise<unknown>
  /** Called once the warm-up is over, right before the timed run starts. */
  warmedUp?: () => void
}

export interface LatencyMs {
  p50: number
  p99: number
  p999: number
  max: number
}

export interface Measurement {
  inFlight: number
  ops: number
  elapsedSeconds: number
  opsPerSec: number
  /** 1 MB = 10^6 bytes of payload. */
  mbPerSec: number
  latencyMs: LatencyMs
}

/**
 * Called right before the timed run starts (after the warm-up) and right after its last op has
 * ended: what else is measured over exactly the same window (CPU time, message counts).
 */
export interface MeasureWindow {
  begin: () => Promise<void> | void
  end: () => Promise<void> | void
}

/** Latencies above this (two minutes) are recorded as this; every client timeout is shorter. */
const LATENCY_US_MAX = 120_000_000

/** An HdrHistogram of latencies at microsecond resolution, summarised in milliseconds. */
export class Latencies {
  private readonly hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 })

  get count(): number {
    return this.hist.totalCount
  }

  record(ms: number): void {
    this.hist.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round(ms * 1000))))
  }

  summary(): LatencyMs {
    // A percentile is reported as its bucket's top value, which may lie a hair above the max seen.
    const ms = (percentile: number): number => Math.min(this.hist.getValueAtPercentile(percentile), this.hist.maxValue) / 1000
    return { p50: ms(50), p99: ms(99), p999: ms(99.9), max: this.hist.maxValue / 1000 }
  }

  destroy(): void {
    this.hist.destroy()
  }
}

export async function measure(opts: MeasureOptions, open: () => Promise<Subject>, window?: MeasureWindow): Promise<Measurement> {
  assert(Number.isInteger(opts.inFlight) && opts.inFlight >= 1, `inFlight must be a positive integer, got ${opts.inFlight}`)
  assert(opts.seconds > 0 && opts.warmupSeconds >= 0, 'seconds must be > 0 and warmupSeconds >= 0')
  assert(opts.ratePerSec === undefined || opts.ratePerSec > 0, `ratePerSec must be positive, got ${opts.ratePerSec}`)
  const subject = await open()
  let result: Measurement
  try {
    await runWorkers(opts, opts.warmupSeconds, subject.op, null)
    subject.warmedUp?.()
    result = await timed(opts, subject.op, window)
  } catch (err) {
    await subject.close().catch(() => {})
    throw err
  }
  await subject.close()
  return result
}

async function timed(opts: MeasureOptions, op: () => Promise<unknown>, window: MeasureWindow | undefined): Promise<Measurement> {
  const latencies = new Latencies()
  try {
    await window?.begin()
    const started = performance.now()
    const ops = await runWorkers(opts, opts.seconds, op, latencies)
    const elapsedSeconds = (performance.now() - started) / 1000
    await window?.end()
    return {
      inFlight: opts.inFlight,
      ops,
      elapsedSeconds,
      opsPerSec: ops / elapsedSeconds,
      mbPerSec: (ops * opts.bytesPerOp) / 1e6 / elapsedSeconds,
      latencyMs: latencies.summary(),
    }
  } finally {
    latencies.destroy()
  }
}

/** Runs `opts.inFlight` workers until `seconds` have passed; returns how many ops completed. */
async function runWorkers(opts: MeasureOptions, seconds: number, op: () => Promise<unknown>, latencies: Latencies | null): Promise<number> {
  const started = performance.now()
  const deadline = started + seconds * 1000
  const pacer = opts.ratePerSec === undefined ? null : new Pacer(started, opts.ratePerSec)
  let ops = 0
  let failed = false
  const worker = async (): Promise<void> => {
    for (;;) {
      if (pacer && !(await pacer.next(deadline))) return
      if (failed || performance.now() >= deadline) return
      const t0 = performance.now()
      try {
        await op()
      } catch (err) {
        failed = true
        throw err
      }
      latencies?.record(performance.now() - t0)
      ops++
    }
  }
  const outcomes = await Promise.allSettled(Array.from({ length: opts.inFlight }, worker))
  const firstFailure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')
  if (firstFailure) throw firstFailure.reason
  return ops
}

/** Start times at a fixed rate: `next()` waits for the next free slot, false when it is past `deadline`. */
class Pacer {
  private slots = 0
  /** Waiters in slot order (slots are handed out in order), released by one timer. */
  private readonly due: Array<{ at: number; go: () => void }> = []
  private timer: NodeJS.Timeout | null = null

  constructor(private readonly started: number, private readonly ratePerSec: number) {}

  next(deadline: number): Promise<boolean> {
    const at = this.started + (this.slots++ * 1000) / this.ratePerSec
    if (at >= deadline) return Promise.resolve(false)
    if (at <= performance.now()) return Promise.resolve(true)
    return new Promise((resolve) => {
      this.due.push({ at, go: () => resolve(true) })
      this.arm()
    })
  }

  private arm(): void {
    const head = this.due[0]
    if (this.timer !== null || head === undefined) return
    // Timers may fire a little early: release() checks, never starting an op before its time.
    this.timer = setTimeout(() => {
      this.timer = null
      this.release()
    }, Math.max(1, Math.ceil(head.at - performance.now())))
  }

  private release(): void {
    const now = performance.now()
    let n = 0
    while (n < this.due.length && this.due[n]!.at <= now) this.due[n++]!.go()
    this.due.splice(0, n)
    this.arm()
  }
}
