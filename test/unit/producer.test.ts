// Producers (client/producer.ts) against a scripted appender: order, the in-flight bounds,
// BACKPRESSURE for a push source that outruns them, pulling for iterables, typed errors.

import { Subject, from, range, map } from 'rxjs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { appendIterable, appendObservable } from '../../client/producer.ts'
import { QuireError, isQuireError } from '../../machines/errors.ts'

/** Acks appends only when told to; counts what is in flight. */
function scripted() {
  let next = 0
  const waiting: Array<{ resolve: (id: number) => void; reject: (e: unknown) => void }> = []
  const a = {
    maxSeen: 0,
    append(_d: Uint8Array | string): Promise<number> {
      const id = next++
      return new Promise((resolve, reject) => {
        waiting.push({ resolve: () => resolve(id), reject })
        a.maxSeen = Math.max(a.maxSeen, waiting.length)
      })
    },
    ackAll() { for (const w of waiting.splice(0)) w.resolve(0) },
    failAll(e: unknown) { for (const w of waiting.splice(0)) w.reject(e) },
    get inFlight() { return waiting.length },
  }
  return a
}
const tick = () => new Promise((r) => setImmediate(r))

test('append$ emits {entryId, payload} in order and completes after the last ack', async () => {
  const a = scripted()
  const out: number[] = []
  let completed = false
  appendObservable(a, range(0, 10).pipe(map(String)), { maxInFlight: 3 }).subscribe({ next: (x) => out.push(x.entryId), complete: () => { completed = true } })
  for (let i = 0; i < 10 && !completed; i++) { await tick(); a.ackAll(); await tick() }
  assert.ok(completed)
  assert.equal(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  assert.ok(a.maxSeen <= 3, `at most 3 in flight, saw ${a.maxSeen}`)
})

test('append$ fails with BACKPRESSURE instead of queueing without bound', async () => {
  const a = scripted()
  const src = new Subject<string>()
  let error: unknown = null
  appendObservable(a, src, { maxInFlight: 2, maxQueued: 5 }).subscribe({ error: (e) => { error = e } })
  for (let i = 0; i < 20; i++) src.next('x')
  assert.ok(isQuireError(error, 'BACKPRESSURE'), String(error))
  assert.is(a.inFlight, 2)
  assert.not.ok(src.observed, 'the source was unsubscribed')
})

test('append$ errors with the typed error of a failed append (e.g. FENCED)', async () => {
  const a = scripted()
  let error: unknown = null
  appendObservable(a, from(['a', 'b'])).subscribe({ error: (e) => { error = e } })
  await tick()
  a.failAll(new QuireError('FENCED', 'fenced'))
  await tick()
  assert.ok(isQuireError(error, 'FENCED'))
})

test('appendAll pulls only while under the bounds, and yields in order', async () => {
  const a = scripted()
  let pulled = 0
  function* source() { for (let i = 0; i < 50; i++) { pulled++; yield `p${i}` } }
  const it = appendIterable(a, source(), { maxInFlight: 4 })
  const first = it.next()
  await tick()
  assert.is(pulled, 4, 'a fast source waits: only 4 pulled')
  a.ackAll()
  assert.is((await first).value?.entryId, 0)
  const rest: number[] = []
  const drain = (async () => { for await (const x of it) rest.push(x.entryId) })()
  for (let i = 0; i < 100 && rest.length < 49; i++) { await tick(); a.ackAll() }
  await drain
  assert.equal(rest, Array.from({ length: 49 }, (_, i) => i + 1))
  assert.ok(a.maxSeen <= 4)
})

test('appendAll respects the byte bound', async () => {
  const a = scripted()
  let pulled = 0
  function* source() { for (let i = 0; i < 10; i++) { pulled++; yield Buffer.alloc(1000) } }
  const it = appendIterable(a, source(), { maxInFlight: 100, maxInFlightBytes: 2500 })
  const first = it.next()
  await tick()
  assert.is(pulled, 3, '2500 bytes admit a third 1000-byte entry, then it waits')
  a.ackAll()
  await first
  await it.return(undefined)
})

test.run()
