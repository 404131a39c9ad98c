// A replication worker's copy step under lost messages: the per-entry read rules
// (machines/copyRead.ts) stepped by case, and readFromReplicas / addEntries (actors/entryCopy.ts)
// over scripted bookies and a manual clock: a read that got no answer is asked again (bounded), an
// explicit "no such entry" or a corrupt copy is not asked again and a timeout is never taken for
// "absent", and copied entries not acknowledged in time are sent again, the same bytes (bounded).
//
// Scripted bookies: each holds entries in a map; `loseReads` / `loseAdds` make the next reads /
// adds of a bookie go unanswered (a lost request or reply), `silent` bookies never answer, and
// `refuse` answers adds with an explicit error code.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { addEntries, readFromReplicas, type CopyIo } from '../../actors/entryCopy.ts'
import type { AckHandler, BookieTransport } from '../../client/bookieClient.ts'
import { COPY_ADD_RESENDS_MAX, COPY_READ_RETRIES_MAX, copyRead, stepCopyRead, type CopyAnswer } from '../../machines/copyRead.ts'
import { QuireError } from '../../machines/errors.ts'
import type { LedgerMetadata } from '../../storage/metadataStore.ts'
import type { Clock, TimerHandle } from '../../transport/clock.ts'
import { encodeEntry, masterKeyOf, passwordCheckOf } from '../../transport/entry.ts'
import { RC, type ReadLacResponse, type ReadResponse } from '../../transport/wire.ts'

// --- the read rules ---

/** Feed `answers` to a read of `sources`; the bookies asked and how it ended. */
function run(sources: string[], answers: CopyAnswer[]): { asked: string[]; end: string } {
  let r = copyRead(sources)
  const asked: string[] = []
  for (const a of answers) {
    if (r.step.kind !== 'ask') break
    asked.push(r.step.bookieId)
    r = stepCopyRead(r.state, a)
  }
  if (r.step.kind === 'ask') asked.push(r.step.bookieId)
  return { asked, end: r.step.kind }
}

test('copyRead: no answer asks the only replica again, at most COPY_READ_RETRIES_MAX more times', () => {
  assert.equal(run(['b1'], ['unknown', 'ok']), { asked: ['b1', 'b1'], end: 'done' })
  const lost = Array<CopyAnswer>(COPY_READ_RETRIES_MAX + 1).fill('unknown')
  assert.equal(run(['b1'], lost), { asked: Array(COPY_READ_RETRIES_MAX + 1).fill('b1'), end: 'fail' })
  assert.equal(run(['b1'], [...lost.slice(1), 'ok']), { asked: Array(COPY_READ_RETRIES_MAX + 1).fill('b1'), end: 'done' })
})

test('copyRead: an unanswered replica goes to the back of the line; "no such entry" and a corrupt copy drop it', () => {
  assert.equal(run(['b1', 'b3'], ['unknown', 'unknown', 'ok']), { asked: ['b1', 'b3', 'b1'], end: 'done' })
  assert.equal(run(['b1', 'b3'], ['absent', 'unknown', 'unknown', 'ok']), { asked: ['b1', 'b3', 'b3', 'b3'], end: 'done' })
  // Explicit answers are final for that replica: no retry spent on them, and with none left it fails.
  assert.equal(run(['b1'], ['absent']), { asked: ['b1'], end: 'fail' })
  assert.equal(run(['b1', 'b3'], ['corrupt', 'absent']), { asked: ['b1', 'b3'], end: 'fail' })
  assert.equal(run([], []), { asked: [], end: 'fail' })
  // Every entry is asked at most replicas + COPY_READ_RETRIES_MAX times.
  assert.is(run(['b1', 'b3'], Array<CopyAnswer>(20).fill('unknown')).asked.length, 2 + COPY_READ_RETRIES_MAX)
})

// --- readFromReplicas and addEntries over scripted bookies ---

class ScriptedBookies implements BookieTransport {
  readonly held = new Map<string, Map<number, Uint8Array>>()
  readonly loseReads = new Map<string, number>()
  readonly silent = new Set<string>()
  readonly refuse = new Map<string, number>()
  loseAdds = 0
  readonly asked: string[] = []
  readonly sent: Array<{ bookieId: string; entryId: number; entry: Uint8Array }> = []
  private readonly writers = new Set<AckHandler>()

  registerWriter(_ledgerId: number, handler: AckHandler): () => void {
    this.writers.add(handler)
    return () => { this.writers.delete(handler) }
  }

  queueAdd(bookieId: string, _ledgerId: number, _key: Uint8Array, _digest: string, recovery: boolean, entry: Uint8Array): void {
    assert.ok(recovery, 'copies are recovery adds')
    const entryId = Number(Buffer.from(entry).readBigUInt64BE(8))
    this.sent.push({ bookieId, entryId, entry })
    if (this.silent.has(bookieId)) return
    if (this.loseAdds > 0) {
      this.loseAdds--
      return
    }
    const rc = this.refuse.get(bookieId) ?? RC.OK
    if (rc === RC.OK) this.holder(bookieId).set(entryId, entry)
    queueMicrotask(() => { for (const h of [...this.writers]) h(bookieId, rc, [entryId]) })
  }

  async read(bookieId: string, _ledgerId: number, entryIds: number[]): Promise<ReadResponse> {
    this.asked.push(bookieId)
    const lose = this.loseReads.get(bookieId) ?? 0
    if (lose > 0) this.loseReads.set(bookieId, lose - 1)
    if (lose > 0 || this.silent.has(bookieId)) throw new QuireError('TIMEOUT', `bookie ${bookieId} did not answer`)
    const entries = this.holder(bookieId)
    return { op: 'readResp', reqId: 0, bookieId, rc: RC.OK, entries: entryIds.map((id) => (entries.has(id) ? [RC.OK, entries.get(id)!] : [RC.NO_SUCH_ENTRY, null])) }
  }

  async readLac(bookieId: string): Promise<ReadLacResponse> {
    return { op: 'lacResp', reqId: 0, bookieId, rc: RC.NO_SUCH_LEDGER, lac: -1, lastEntryId: -1 }
  }

  holder(bookieId: string): Map<number, Uint8Array> {
    let m = this.held.get(bookieId)
    if (!m) this.held.set(bookieId, (m = new Map()))
    return m
  }
}

/** A clock that moves only when told to. */
class ManualClock implements Clock {
  private t = 0
  private nextId = 1
  private readonly timers = new Map<number, { at: number; fn: () => void }>()
  now(): number { return this.t }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    this.timers.set(id, { at: this.t + ms, fn })
    return { id }
  }
  clearTimeout(h: TimerHandle): void { this.timers.delete((h as { id: number }).id) }
  defer(fn: () => void): void { queueMicrotask(fn) }
  get pending(): number { return this.timers.size }
  /** Run the timers due within `ms`, in order, letting promises settle between them. */
  async advance(ms: number): Promise<void> {
    const until = this.t + ms
    for (;;) {
      await new Promise((r) => setImmediate(r))
      const due = [...this.timers].filter(([, x]) => x.at <= until).sort((a, b) => a[1].at - b[1].at)[0]
      if (!due) break
      this.timers.delete(due[0])
      this.t = due[1].at
      due[1].fn()
    }
    this.t = until
  }
}

const KEY = masterKeyOf('')
const LEDGER = 7
/** A closed ledger of 6 entries on b1, b2, b3 (E=3 Qw=2): b2's copies are to be re-made on b4. */
const md: LedgerMetadata = {
  ledgerId: LEDGER, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'CLOSED', lastEntryId: 5, length: 0,
  segments: [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], customMetadata: {}, createdAt: 0, passwordCheck: passwordCheckOf(KEY),
}
const seg = md.segments[0]!
const entry = (id: number): Buffer => encodeEntry('crc32c', KEY, LEDGER, id, id - 1, 0, Buffer.from(`entry ${id}`))

function setup(): { bookies: ScriptedBookies; clock: ManualClock; io: CopyIo } {
  const bookies = new ScriptedBookies()
  for (let id = 0; id <= 5; id++) {
    for (const b of [id % 3, (id + 1) % 3].map((i) => seg.ensemble[i]!)) bookies.holder(b).set(id, entry(id))
  }
  const clock = new ManualClock()
  return { bookies, clock, io: { bookies, readTimeoutMs: 30, addTimeoutMs: 30, clock } }
}

const alive = new Set(['b1', 'b3', 'b4'])

test('readFromReplicas: the only surviving replica\'s lost answers are asked again; past the bound the step fails, as unknown', async () => {
  // b2 (position 1) held entries 0, 1, 3, 4: 0 and 3 are on b1 alone (b2 lost), 1 and 4 on b3 alone.
  const { bookies, io } = setup()
  bookies.loseReads.set('b1', 2)
  bookies.loseReads.set('b3', 1)
  const data = await readFromReplicas(io, md, seg, 1, [0, 1, 3, 4], alive, KEY)
  assert.equal([...data.keys()].sort(), [0, 1, 3, 4])
  for (const [id, bytes] of data) assert.ok(Buffer.from(bytes).equals(entry(id)))
  assert.equal(bookies.asked.filter((b) => b === 'b1').length, 3)

  const silent = setup()
  silent.bookies.silent.add('b1')
  const err = await readFromReplicas(silent.io, md, seg, 1, [0, 3], alive, KEY).then(() => null, (e: unknown) => e)
  assert.ok(err instanceof QuireError && err.code === 'BOOKIE_UNAVAILABLE', String(err))
  assert.match((err as Error).message, `0 no such entry, 0 corrupt, ${COPY_READ_RETRIES_MAX + 1} no answer`)
  assert.is(silent.bookies.asked.length, COPY_READ_RETRIES_MAX + 1, 'the reads of both entries go together')
})

test('readFromReplicas: an explicit "no such entry" from the only replica is not asked again', async () => {
  const { bookies, io } = setup()
  bookies.holder('b1').delete(0)
  const err = await readFromReplicas(io, md, seg, 1, [0], alive, KEY).then(() => null, (e: unknown) => e)
  assert.ok(err instanceof QuireError && err.code === 'BOOKIE_UNAVAILABLE', String(err))
  assert.match((err as Error).message, '1 no such entry, 0 corrupt, 0 no answer')
  assert.equal(bookies.asked, ['b1'])
})

test('addEntries: entries not acknowledged within the add timeout are sent again, the same bytes, and then resolve', async () => {
  const { bookies, clock, io } = setup()
  const data = new Map([0, 3].map((id) => [id, entry(id)] as const))
  bookies.loseAdds = 1
  let done = false
  const copied = addEntries(io, 'b4', md, KEY, [0, 3], data).then(() => { done = true })
  await clock.advance(29)
  assert.not.ok(done, 'entry 0 is not acknowledged yet')
  assert.equal(bookies.sent.map((s) => s.entryId), [0, 3])
  await clock.advance(1)
  await copied
  assert.equal(bookies.sent.map((s) => s.entryId), [0, 3, 0], 'only the unacknowledged entry is sent again')
  assert.ok(Buffer.from(bookies.sent[2]!.entry).equals(entry(0)))
  assert.ok(Buffer.from(bookies.holder('b4').get(0)!).equals(entry(0)))
  assert.is(clock.pending, 0, 'no timer left behind')
})

test('addEntries: a bookie that never acknowledges fails the step after COPY_ADD_RESENDS_MAX re-sends; a refusal fails at once', async () => {
  const { bookies, clock, io } = setup()
  bookies.silent.add('b4')
  const failed = addEntries(io, 'b4', md, KEY, [0], new Map([[0, entry(0)]])).then(() => null, (e: unknown) => e)
  await clock.advance(30 * (COPY_ADD_RESENDS_MAX + 1))
  const err = await failed
  assert.ok(err instanceof QuireError && err.code === 'TIMEOUT', String(err))
  assert.is(bookies.sent.length, COPY_ADD_RESENDS_MAX + 1)
  assert.is(clock.pending, 0)

  const refusing = setup()
  refusing.bookies.refuse.set('b4', RC.READ_ONLY)
  const refused = await addEntries(refusing.io, 'b4', md, KEY, [0], new Map([[0, entry(0)]])).then(() => null, (e: unknown) => e)
  assert.ok(refused instanceof QuireError && refused.code === 'BOOKIE_UNAVAILABLE', String(refused))
  assert.is(refusing.bookies.sent.length, 1)
  assert.is(refusing.clock.pending, 0)
})

test('addEntries: a re-send first asks whether the work is still the worker\'s (its claim), and stops if not', async () => {
  const { bookies, clock, io } = setup()
  bookies.silent.add('b4')
  const gone = new Error('claim lost')
  const failed = addEntries(io, 'b4', md, KEY, [0], new Map([[0, entry(0)]]), () => { throw gone }).then(() => null, (e: unknown) => e)
  await clock.advance(30)
  assert.is(await failed, gone)
  assert.is(bookies.sent.length, 1)
  assert.is(clock.pending, 0)
})

test.run()
