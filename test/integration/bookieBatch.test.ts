// The bookie's add rules over a batch (machines/bookieLedger.ts decideAdds, syncedAdds and the
// machine's `adds` event): stepped by hand, then a property that a batch decides exactly what the
// same requests decide one at a time, over random interleavings with fences; last, on a real
// Bookie (real NATS, journal and RocksDB), a fence that arrives between two adds of one turn is
// never overtaken by the later add.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition } from 'xstate'
import { Bookie } from '../../actors/bookie.ts'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import {
  bookieLedgerMachine, decideAdds, syncedAdds,
  type BookieAdd, type BookieLedgerEvent, type BookieLedgerInput,
} from '../../machines/bookieLedger.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC, bookieSubject } from '../../transport/wire.ts'

const keys = [Buffer.from('k0'), Buffer.from('k1')]
const fresh: BookieLedgerInput = { ledgerId: 9, masterKey: null, digestType: null, fenced: false, lac: -1, lastEntryId: -1 }

function addOf(replyTo: string, ids: number[], over: Partial<BookieAdd> = {}): BookieAdd {
  return {
    replyTo, masterKey: keys[0]!, digestType: 'crc32c', recovery: false,
    entries: ids.map((entryId) => ({ entryId, lac: entryId - 1, data: Buffer.from(`e${entryId}`) })),
    ...over,
  }
}

test('decideAdds: the first add fixes the key; a later add of the same batch with another key is UNAUTHORIZED', () => {
  const d = decideAdds(fresh, [addOf('a', [0, 1]), addOf('b', [2], { masterKey: keys[1]! }), addOf('c', [3])])
  assert.equal(d.fixKey, { masterKey: keys[0]!, digestType: 'crc32c' })
  assert.equal(d.accepted.map((a) => a.replyTo), ['a', 'c'])
  assert.equal(d.refused, [{ replyTo: 'b', rc: RC.UNAUTHORIZED, entryIds: [2] }])
  assert.equal(d.next, { masterKey: keys[0]!, digestType: 'crc32c', fenced: false })
})

test('decideAdds: a fenced ledger takes the recovery adds of a batch and refuses the others FENCED', () => {
  const state = { masterKey: keys[0]!, digestType: 'crc32c' as const, fenced: true }
  const d = decideAdds(state, [addOf('w', [5]), addOf('r', [5], { recovery: true }), addOf('x', [6], { recovery: true, masterKey: keys[1]! })])
  assert.is(d.fixKey, null)
  assert.equal(d.accepted.map((a) => a.replyTo), ['r'])
  assert.equal(d.refused, [
    { replyTo: 'w', rc: RC.FENCED, entryIds: [5] },
    { replyTo: 'x', rc: RC.UNAUTHORIZED, entryIds: [6] },
  ])
  assert.equal(d.next, state)
})

test('syncedAdds: LAC and last entry only move forward, over every add of the record', () => {
  assert.equal(syncedAdds({ lac: 4, lastEntryId: 9 }, [addOf('a', [2, 3]), addOf('b', [11])]), { lac: 10, lastEntryId: 11 })
  assert.equal(syncedAdds({ lac: 4, lastEntryId: 9 }, [addOf('a', [1, 2])]), { lac: 4, lastEntryId: 9 })
})

type Snap = ReturnType<typeof initialTransition<typeof bookieLedgerMachine>>[0]
interface Action { type: string; params: Record<string, unknown> }
function step(snap: Snap, e: BookieLedgerEvent): { snap: Snap; actions: Action[] } {
  const [next, actions] = transition(bookieLedgerMachine, snap, e)
  return { snap: next, actions: actions.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params as Record<string, unknown> })) }
}

test('one adds event: refusals answered at once, the key journaled first, every accepted add in one journal record; one journal.synced acknowledges each', () => {
  const [s0] = initialTransition(bookieLedgerMachine, fresh)
  const batch = [addOf('a', [0, 1]), addOf('b', [2], { masterKey: keys[1]! }), addOf('c', [2, 3])]
  const r = step(s0, { type: 'adds', adds: batch })
  assert.equal(r.actions.map((a) => a.type), ['reply.add', 'journal.masterKey', 'journal.add'])
  assert.equal(r.actions[0]!.params, { replyTo: 'b', rc: RC.UNAUTHORIZED, entryIds: [2] })
  const journaled = r.actions[2]!.params.adds as BookieAdd[]
  assert.equal(journaled.map((a) => a.replyTo), ['a', 'c'])
  assert.not.ok(r.actions.some((a) => a.type === 'reply.add' && a.params.rc === RC.OK), 'nothing acknowledged before the sync')
  const synced = step(r.snap, { type: 'journal.synced', adds: journaled })
  assert.equal(synced.actions.map((a) => a.type), ['store.put', 'reply.add', 'reply.add'])
  assert.equal((synced.actions[0]!.params.entries as Array<{ entryId: number }>).map((e) => e.entryId), [0, 1, 2, 3])
  assert.equal(synced.actions.slice(1).map((a) => [a.params.replyTo, a.params.rc, a.params.entryIds]), [['a', RC.OK, [0, 1]], ['c', RC.OK, [2, 3]]])
  assert.is(synced.snap.context.lac, 2)
  assert.is(synced.snap.context.lastEntryId, 3)
})

// --- property: batches decide as one request at a time --------------------------------------

type Op =
  | { kind: 'add'; key: 0 | 1; recovery: boolean; ids: number[]; cut: boolean }
  | { kind: 'fence'; key: 0 | 1 }
  | { kind: 'fenceSynced' }
  | { kind: 'sync' }
  | { kind: 'readLac' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('add' as const), key: fc.constantFrom(0 as const, 1 as const), recovery: fc.boolean(), ids: fc.array(fc.nat(40), { minLength: 1, maxLength: 3 }), cut: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fence' as const), key: fc.constantFrom(0 as const, 1 as const) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'fenceSynced' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'sync' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'readLac' as const }) },
)

interface Outcome {
  /** Per add request (by its reply subject): 'journal' or the rc it was refused with. */
  decisions: Map<string, 'journal' | number>
  /** Entry ids in journal order, and the key records. */
  journal: number[]
  keyRecords: number
  /** Answers to LAC reads and fences, in order. */
  lacAnswers: unknown[]
  /** Acknowledged adds (by reply subject), in order. */
  acked: string[]
  context: Record<string, unknown>
}

/** Runs `ops` on the machine; with `batched`, consecutive adds go as one `adds` event unless cut. */
function run(start: BookieLedgerInput, ops: readonly Op[], batched: boolean): Outcome {
  let [snap] = initialTransition(bookieLedgerMachine, start)
  const out: Outcome = { decisions: new Map(), journal: [], keyRecords: 0, lacAnswers: [], acked: [], context: {} }
  let pending: BookieAdd[] = []
  let unsynced: BookieAdd[][] = []
  const send = (e: BookieLedgerEvent): void => {
    const r = step(snap, e)
    snap = r.snap
    for (const a of r.actions) {
      if (a.type === 'reply.add' && a.params.rc !== RC.OK) out.decisions.set(a.params.replyTo as string, a.params.rc as number)
      else if (a.type === 'reply.add') out.acked.push(a.params.replyTo as string)
      else if (a.type === 'journal.masterKey') out.keyRecords++
      else if (a.type === 'journal.add') {
        const adds = a.params.adds as BookieAdd[]
        for (const x of adds) {
          out.decisions.set(x.replyTo, 'journal')
          for (const en of x.entries) out.journal.push(en.entryId)
        }
        unsynced.push(adds)
      } else if (a.type === 'reply.lac' || a.type === 'read.fenced') out.lacAnswers.push(a.params)
    }
  }
  const flush = (): void => {
    if (pending.length > 0) send({ type: 'adds', adds: pending })
    pending = []
  }
  ops.forEach((op, i) => {
    if (op.kind === 'add') {
      const add = addOf(`c${i}`, op.ids, { masterKey: keys[op.key]!, recovery: op.recovery })
      if (!batched || op.cut) flush()
      pending.push(add)
      if (!batched) flush()
      return
    }
    flush()
    if (op.kind === 'fence') send({ type: 'fence', replyTo: `f${i}`, reqId: i, masterKey: keys[op.key]!, kind: 'lac' })
    else if (op.kind === 'fenceSynced') { if (snap.value === 'fenced') send({ type: 'journal.fenceSynced' }) }
    else if (op.kind === 'readLac') send({ type: 'readLac', replyTo: `r${i}`, reqId: i })
    else {
      // The journal syncs everything written so far, in order: one record at a time.
      const records = unsynced
      unsynced = []
      for (const adds of records) send({ type: 'journal.synced', adds })
    }
  })
  flush()
  const c = snap.context
  out.context = { state: snap.value, masterKey: c.masterKey && Buffer.from(c.masterKey).toString(), digestType: c.digestType, fenced: c.fenced, lac: c.lac, lastEntryId: c.lastEntryId, fenceSynced: c.fenceSynced }
  return out
}

/** The rules written out per request, from PROTOCOL.md: the reference both runs must match. */
function reference(start: BookieLedgerInput, ops: readonly Op[]): Map<string, 'journal' | number> {
  let key = start.masterKey === null ? null : Buffer.from(start.masterKey).toString()
  let fenced = start.fenced
  const out = new Map<string, 'journal' | number>()
  ops.forEach((op, i) => {
    if (op.kind === 'fence' && (key === null || key === `k${op.key}`)) fenced = true
    if (op.kind !== 'add') return
    if (key !== null && key !== `k${op.key}`) out.set(`c${i}`, RC.UNAUTHORIZED)
    else if (fenced && !op.recovery) out.set(`c${i}`, RC.FENCED)
    else {
      key ??= `k${op.key}`
      out.set(`c${i}`, 'journal')
    }
  })
  return out
}

const startArb = fc.constantFrom<BookieLedgerInput>(
  fresh,
  { ...fresh, masterKey: keys[0]!, digestType: 'crc32c', lac: 3, lastEntryId: 4 },
  { ...fresh, masterKey: keys[1]!, digestType: 'crc32c', fenced: true, lac: 3, lastEntryId: 4 },
)

test('property: adds decided in batches decide, journal, acknowledge and answer LAC reads exactly as one request at a time', () => {
  fc.assert(fc.property(startArb, fc.array(opArb, { maxLength: 40 }), (start, ops) => {
    const one = run(start, ops, false)
    const batched = run(start, ops, true)
    // Compared by request: within a batch the refusals are answered before the record is written.
    const byRequest = (m: Map<string, 'journal' | number>): Array<[string, 'journal' | number]> => [...m].sort(([a], [b]) => a.localeCompare(b))
    assert.equal(byRequest(batched.decisions), byRequest(one.decisions))
    assert.equal(byRequest(one.decisions), byRequest(reference(start, ops)))
    assert.equal(batched.journal, one.journal)
    assert.is(batched.keyRecords, one.keyRecords)
    assert.ok(one.keyRecords <= 1)
    assert.equal(batched.acked, one.acked)
    assert.equal(batched.lacAnswers, one.lacAnswers)
    assert.equal(batched.context, one.context)
  }), { numRuns: 500 })
})

// --- a real bookie: a fence between two adds of one turn ---------------------------------------

test('a real bookie: adds before a fence in the same turn are journaled and counted in its answer; adds after it are FENCED', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-bookie-batch-'))
  let nats: NatsServer | null = null
  let bookie: Bookie | null = null
  let nc: Awaited<ReturnType<typeof connectNats>> | null = null
  try {
    nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
    const bookieId = 'batch-fence'
    bookie = new Bookie({ bookieId, dataDir: path.join(dir, bookieId), nats: nats.url, heartbeatMs: 500, gcIntervalMs: 3_600_000 })
    await bookie.start()
    nc = await connectNats(nats.url, { name: 'bookie-batch-test' })
    // Frames to the bookie are kept here and handed to it together, in one turn, in the order sent.
    const frames: Array<[Uint8Array, string | null]> = []
    const publish = nc.publish.bind(nc)
    const subject = bookieSubject(bookieId)
    nc.publish = (s: string, data?: Uint8Array, opts?: { reply?: string }) => {
      if (s === subject && data) frames.push([data, opts?.reply ?? null])
      else publish(s, data, opts)
    }
    const client = new BookieClient(nc)
    const key = masterKeyOf('')
    const ledgerId = 8801
    const acks: Array<[number, number[]]> = []
    client.registerWriter(ledgerId, (_, rc, entryIds) => acks.push([rc, entryIds]))
    const add = (e: number): void => client.queueAdd(bookieId, ledgerId, key, 'crc32c', false, encodeEntry('crc32c', key, ledgerId, e, e - 1, 0, Buffer.from(`E${e}`)))
    add(0)
    client.flush()
    add(1)
    client.flush()
    const fence = client.readLac(bookieId, ledgerId, 30_000, { masterKey: key })
    add(2)
    client.flush()
    add(3)
    client.flush()
    assert.is(frames.length, 5)
    const onFrame = (bookie as unknown as { onFrame(d: Uint8Array, r: string | null): void }).onFrame.bind(bookie)
    for (const [d, r] of frames.splice(0)) onFrame(d, r)
    const lac = await fence
    assert.is(lac.rc, RC.OK)
    assert.is(lac.lastEntryId, 1, 'the fence answers after the adds that came before it are on disk')
    const deadline = Date.now() + 30_000
    while (acks.flatMap(([, ids]) => ids).length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    const rcOf = new Map(acks.flatMap(([rc, ids]) => ids.map((id) => [id, rc] as const)))
    assert.equal([0, 1, 2, 3].map((id) => rcOf.get(id)), [RC.OK, RC.OK, RC.FENCED, RC.FENCED])
  } finally {
    await nc?.close().catch(() => {})
    await bookie?.stop().catch(() => {})
    await nats?.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
