// Tailing a ledger: binds machines/tailReader.ts to a ReadHandle and exposes it as an async
// iterator. Memory is bounded by a few batches: up to two reads are in flight while the consumer
// works through a batch (read-ahead), and a completed read is reported to the machine (which may
// then ask for the next) only once the consumer is within a batch. Reads complete in the order
// they were asked for: each waits for the one before it. A LAC a read reply brings is passed to
// the machine as it arrives (once per microtask, the highest), so a free slot need not wait for
// the whole read. Stopping (return()) ends the machine and cancels its long poll, here and at the
// bookies that parked it.

import { createActor } from 'xstate'
import { watchActor, type InspectSink } from '../transport/inspect.ts'
import type { ClientMetrics } from './telemetry.ts'
import type { Clock } from '../transport/clock.ts'
import { QuireError, isProgrammerError, isQuireError } from '../machines/errors.ts'
import { tailMachine, type TailEvent } from '../machines/tailReader.ts'
import type { LedgerEntry } from './readHandle.ts'
import type { ReadHandle } from './api.ts'

export interface TailOptions {
  /** First entry to deliver (default 0). */
  from?: number
  /**
   * Entries per read (default 1024). A reader holds at most two batches: lower it for large
   * entries. At 10,000 entries/s a batch must outrun a round trip under load: 256 did not.
   */
  batch?: number
  /** How long a bookie parks a long poll before answering "nothing new" (default 2000 ms). */
  pollMs?: number
}

/** Errors a later try may not meet (a dead bookie, NATS reconnecting) are retried; the rest end the tail. */
function classify(err: unknown): TailEvent {
  // A bug is never retried as if transient: thrown again, its unhandled rejection stops the process.
  if (isProgrammerError(err)) throw err
  const code = isQuireError(err) ? err.code : 'TIMEOUT'
  const transient = code === 'TIMEOUT' || code === 'BOOKIE_UNAVAILABLE' || code === 'NATS_UNREACHABLE' || !isQuireError(err)
  return { type: transient ? 'transient' : 'failed', code, message: err instanceof Error ? err.message : String(err) }
}

/** Tails in this process, for a unique inspection id (`<ledgerId>.<pid>.<n>`). */
let tailsStarted = 0

/** Subscribes to the LACs read replies bring (ReadHandleImpl); returns the unsubscribe. */
export type WatchLac = (fn: (lac: number) => void) => () => void

/**
 * `clock`: where the tail machine's retry delays run (the simulator's virtual time); default real
 * timers.
 */
export function tailEntries(handle: ReadHandle, opts: TailOptions, inspect: InspectSink | null, metrics: ClientMetrics, watchLac?: WatchLac, clock?: Pick<Clock, 'setTimeout' | 'clearTimeout'>): AsyncIterableIterator<LedgerEntry> {
  const buffer: LedgerEntry[] = []
  let waiting: { resolve: (r: IteratorResult<LedgerEntry>) => void; reject: (e: unknown) => void } | null = null
  let failure: unknown = null
  let finished = false
  /** Completed reads (their counts, oldest first) whose `read.done` waits until the consumer is within one batch. */
  const heldDone: number[] = []
  /** Reads in flight, chained in the order asked: each delivers after the one before it. */
  let lastRead: Promise<unknown> = Promise.resolve()
  /** Bumped when a read fails: the reads asked for before it are dropped (the machine asks again from `next`). */
  let readGeneration = 0
  const batch = opts.batch ?? 1024
  const pollMs = opts.pollMs ?? 2000
  const md = handle.metadata
  /** Aborted when the tail stops: its parked long polls are dropped here and at the bookies. */
  const stopped = new AbortController()

  const logic = tailMachine.provide({
    actions: {
      readBatch: (_, p) => {
        const generation = readGeneration
        const reading = handle.read(p.first, p.last)
        reading.catch(() => {}) // handled below, in its turn
        lastRead = lastRead.then(() => reading).then((entries) => {
          if (generation !== readGeneration || finished) return
          for (const e of entries) buffer.push(e)
          heldDone.push(entries.length)
          release()
          pump()
        }, (err) => {
          if (generation !== readGeneration || finished) return
          // What is buffered counts as delivered for the machine, which asks again from there; the
          // reads asked for meanwhile (by those read.done) and after this one are dropped.
          while (heldDone.length > 0) actor.send({ type: 'read.done', count: heldDone.shift()!, lac: handle.lastAddConfirmed })
          readGeneration++
          actor.send(classify(err))
        })
      },
      longPoll: (_, p) => {
        // The entry is wanted only by a caught-up reader (it is then the next one); a poll sent
        // along with a read only needs the LAC.
        const withEntry = p.previousLac + 1 === p.next
        const poll = withEntry
          ? handle.readLacAndEntry(p.previousLac, pollMs, { signal: stopped.signal })
          : handle.longPollLac(p.previousLac, pollMs, { signal: stopped.signal }).then((lac) => ({ lac, entry: null }))
        poll.then(
          ({ lac, entry }) => {
            if (lac <= p.previousLac) return actor.send({ type: 'poll.timeout' })
            // Take the entry only while the consumer is within a batch: otherwise the read that
            // follows waits for it, which is what bounds the buffer.
            const take = entry !== null && entry.entryId === p.next && lac === p.next && buffer.length <= batch
            if (take) buffer.push(entry)
            actor.send({ type: 'lac', lac, delivered: take ? 1 : 0 })
            if (take) pump()
          },
          (err: unknown) => {
            if (isProgrammerError(err)) throw err
            actor.send({ type: 'poll.timeout' })
          },
        )
      },
      refreshMetadata: () => {
        handle.refreshMetadata().then(
          (m) => actor.send({ type: 'metadata', closed: m.state === 'CLOSED', lastEntryId: m.lastEntryId }),
          (err) => actor.send(classify(err)),
        )
      },
    },
  })
  const actor = createActor(logic, {
    ...(clock ? { clock } : {}),
    input: {
      from: opts.from ?? 0, batch, lac: handle.lastAddConfirmed,
      closed: md.state === 'CLOSED', lastEntryId: md.lastEntryId,
    },
  })
  /** The highest LAC read replies brought since the last one passed on; -1 when none waits. */
  let learned = -1
  const passLearned = (): void => {
    const lac = learned
    learned = -1
    if (!finished) actor.send({ type: 'lac.learned', lac })
  }
  let unwatch = (): void => {}
  actor.subscribe((snap) => {
    if (snap.status !== 'done') return
    finished = true
    unwatch()
    stopped.abort()
    if (snap.value === 'failed' && snap.context.error) {
      failure = new QuireError(snap.context.error.code as never, snap.context.error.message, { ledgerId: handle.ledgerId })
    }
    pump()
  })

  /** Let the machine go on (read ahead) once at most one batch is waiting for the consumer. */
  function release(): void {
    while (heldDone.length > 0 && buffer.length <= batch) {
      // The handle's LAC now includes what the read replies carried: a reader still behind reads on.
      actor.send({ type: 'read.done', count: heldDone.shift()!, lac: handle.lastAddConfirmed })
    }
  }

  /** Hand buffered entries to a waiting consumer. */
  function pump(): void {
    if (!waiting) return
    const w = waiting
    const e = buffer.shift()
    if (e) {
      waiting = null
      metrics.tailDelivered()
      w.resolve({ value: e, done: false })
      release()
      return
    }
    if (failure) {
      waiting = null
      w.reject(failure)
    } else if (finished) {
      waiting = null
      w.resolve({ value: undefined, done: true })
    }
  }

  let started = false
  const it: AsyncIterableIterator<LedgerEntry> = {
    next() {
      if (!started) {
        started = true
        // Watched from its start: a tail never started would stay in the inspection beacon.
        watchActor(actor, inspect, 'reader', `${handle.ledgerId}.${process.pid}.${++tailsStarted}`)
        actor.start()
        if (watchLac && !finished) {
          unwatch = watchLac((lac) => {
            if (learned < 0) queueMicrotask(passLearned)
            learned = Math.max(learned, lac)
          })
        }
      }
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject }
        pump()
      })
    },
    async return() {
      if (!finished) actor.send({ type: 'stop' })
      finished = true
      unwatch()
      buffer.length = 0
      actor.stop()
      stopped.abort()
      return { value: undefined, done: true }
    },
    [Symbol.asyncIterator]() {
      return it
    },
  }
  return it
}
