// Producers over a WriteHandle: `append$` for RxJS sources and `appendAll` for (async) iterables.
// Both emit/yield `{entryId, payload}` in entryId order as each entry is acknowledged, and stop
// with the typed error (FENCED, LEDGER_CLOSED, ...) when the ledger can take no more.
//
// How memory is bounded:
// - appendAll pulls: it takes the next payload only while fewer than `maxInFlight` entries and
//   `maxInFlightBytes` bytes are unacknowledged, so a fast source simply waits.
// - append$ cannot pause a push source (RxJS has no pull), so it appends while under the same
//   bounds, queues at most `maxQueued` more payloads, and fails with BACKPRESSURE (unsubscribing
//   from the source) rather than grow without bound.

import type { Observable, ObservableInput } from 'rxjs'
import { rxjs } from './rx.ts'
import { QuireError } from '../machines/errors.ts'

export interface ProducerOptions {
  /** Unacknowledged entries at most (default 1000). */
  maxInFlight?: number
  /** Unacknowledged payload bytes at most (default 16 MiB). */
  maxInFlightBytes?: number
  /** append$ only: payloads queued beyond the in-flight bounds before BACKPRESSURE (default 10,000). */
  maxQueued?: number
}

export interface Appended {
  entryId: number
  payload: Uint8Array
}

interface Appender {
  append(data: Uint8Array | string): Promise<number>
}

const bytesOf = (p: Uint8Array | string): Uint8Array => (typeof p === 'string' ? Buffer.from(p) : p)

export function appendObservable(w: Appender, source: ObservableInput<Uint8Array | string>, opts: ProducerOptions = {}): Observable<Appended> {
  const maxInFlight = opts.maxInFlight ?? 1000
  const maxBytes = opts.maxInFlightBytes ?? 16 * 1024 * 1024
  const maxQueued = opts.maxQueued ?? 10_000
  const { Observable, from } = rxjs()
  return new Observable<Appended>((out) => {
    const queue: Uint8Array[] = []
    let inFlight = 0
    let inFlightBytes = 0
    let sourceDone = false
    let failed = false
    const fail = (err: unknown): void => {
      if (failed) return
      failed = true
      sub.unsubscribe()
      out.error(err)
    }
    const startNext = (): void => {
      while (!failed && queue.length > 0 && inFlight < maxInFlight && inFlightBytes + queue[0]!.byteLength <= Math.max(maxBytes, queue[0]!.byteLength)) {
        const payload = queue.shift()!
        inFlight++
        inFlightBytes += payload.byteLength
        w.append(payload).then((entryId) => {
          inFlight--
          inFlightBytes -= payload.byteLength
          if (failed) return
          out.next({ entryId, payload })
          startNext()
          if (sourceDone && inFlight === 0 && queue.length === 0) out.complete()
        }, fail)
      }
    }
    const sub = from(source).subscribe({
      next: (p) => {
        queue.push(bytesOf(p))
        startNext()
        if (queue.length > maxQueued) {
          fail(new QuireError('BACKPRESSURE', `append$: the source is ${queue.length} entries ahead of the bookies (maxQueued ${maxQueued}); use appendAll to pull instead`))
        }
      },
      error: fail,
      complete: () => {
        sourceDone = true
        if (inFlight === 0 && queue.length === 0 && !failed) out.complete()
      },
    })
    return () => {
      failed = true
      sub.unsubscribe()
    }
  })
}

export async function* appendIterable(w: Appender, source: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>, opts: ProducerOptions = {}): AsyncGenerator<Appended> {
  const maxInFlight = opts.maxInFlight ?? 1000
  const maxBytes = opts.maxInFlightBytes ?? 16 * 1024 * 1024
  const pending: Array<{ payload: Uint8Array; result: Promise<number> }> = []
  let inFlightBytes = 0
  const it = (Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<Uint8Array | string>)[Symbol.iterator]()) as AsyncIterator<Uint8Array | string> | Iterator<Uint8Array | string>
  try {
    for (;;) {
      // Pull while under the bounds; otherwise wait for the oldest append.
      while (pending.length < maxInFlight && (pending.length === 0 || inFlightBytes < maxBytes)) {
        const r = await it.next()
        if (r.done) {
          while (pending.length > 0) {
            const p = pending.shift()!
            yield { entryId: await p.result, payload: p.payload }
          }
          return
        }
        const payload = bytesOf(r.value)
        const result = w.append(payload)
        result.catch(() => {}) // surfaced in order below
        pending.push({ payload, result })
        inFlightBytes += payload.byteLength
      }
      const p = pending.shift()!
      inFlightBytes -= p.payload.byteLength
      yield { entryId: await p.result, payload: p.payload }
    }
  } finally {
    await it.return?.()
  }
}
