// Replication workers: the planning and metadata rules (machines/replicator.ts) against brute
// force and by case, the worker machine stepped with transition(), and workers
// (actors/replicator.ts) over the in-memory KV with scripted bookies: a ledger re-replicated to a
// replacement and read back, claims held by one worker at a time and taken over only once
// expired (a worker crashed mid-copy), a mark cleared when its bookie is alive again, a live
// replica's missing entries re-added in place.
//
// Scripted bookies (FakeBookies): each holds entries in a map, acknowledges recovery adds at once,
// answers reads with OK / NO_SUCH_ENTRY / NO_SUCH_LEDGER like a bookie; a `down` bookie never
// answers (reads time out), as after kill -9.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition, type AnyMachineSnapshot } from 'xstate'
import { startReplicator, type ReplicatorHandle } from '../../actors/replicator.ts'
import type { AckHandler, BookieTransport } from '../../client/bookieClient.ts'
import { QuireError } from '../../machines/errors.ts'
import { writeSetIndices } from '../../machines/quorum.ts'
import {
  countHeld, heldEntries, holdsEntry, planLedger, replaceInSegment, replicatorMachine,
  type LedgerView, type MarkView, type ReplicatorEvent,
} from '../../machines/replicator.ts'
import { AutorecoveryStore, claimKey } from '../../storage/autorecoveryStore.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { MetadataStore, type BookieRecord, type LedgerMetadata } from '../../storage/metadataStore.ts'
import { decodeEntry, encodeEntry, masterKeyOf, passwordCheckOf } from '../../transport/entry.ts'
import { RC, type ReadLacResponse, type ReadResponse } from '../../transport/wire.ts'

// --- pure rules ---

test('holdsEntry / heldEntries / countHeld agree with the write sets, for every E, Qw up to 6', () => {
  for (let e = 1; e <= 6; e++) {
    for (let qw = 1; qw <= e; qw++) {
      for (let position = 0; position < e; position++) {
        for (let first = 0; first < 8; first++) {
          for (let last = first - 1; last < first + 20; last++) {
            const brute: number[] = []
            for (let id = first; id <= last; id++) if (writeSetIndices(id, e, qw).includes(position)) brute.push(id)
            assert.equal(heldEntries(first, last, position, e, qw, 1000), brute)
            assert.is(countHeld(first, last, position, e, qw), brute.length)
            for (let id = first; id <= last; id++) assert.is(holdsEntry(id, position, e, qw), brute.includes(id))
          }
        }
      }
    }
  }
  assert.equal(heldEntries(0, 100, 0, 3, 2, 3), [0, 2, 3])
})

const closed = (segments: string[][], lastEntryId = 29): LedgerView => ({
  state: 'CLOSED', lastEntryId, ensembleSize: 3, writeQuorum: 2, segments: segments.map((ensemble, i) => ({ firstEntryId: i * 10, ensemble })),
})
const mark = (missing: string[], damaged: string[] = [], markedAt = 0): MarkView => ({ missing, damaged, markedAt })
const aliveExcept = (...dead: string[]) => (b: string): boolean => !dead.includes(b)

test('plan: a closed ledger gets one replace job per segment position of a lost bookie, with its entry range', () => {
  const md = closed([['a', 'b', 'c'], ['a', 'd', 'c'], ['d', 'b', 'e']])
  assert.equal(planLedger(md, mark(['c']), aliveExcept('c'), 0, 0), {
    kind: 'copy',
    jobs: [
      { kind: 'replace', firstEntryId: 0, lastEntryId: 9, position: 2, bookieId: 'c' },
      { kind: 'replace', firstEntryId: 10, lastEntryId: 19, position: 2, bookieId: 'c' },
    ],
  })
})

test('plan: bookies alive again, or no longer referenced, clear the mark instead of looping', () => {
  const md = closed([['a', 'b', 'c']])
  assert.equal(planLedger(md, mark(['c']), aliveExcept(), 0, 0), { kind: 'clear' })
  assert.equal(planLedger(md, mark(['z']), aliveExcept('z'), 0, 0), { kind: 'clear' })
  assert.equal(planLedger(md, mark([], ['z']), aliveExcept(), 0, 0), { kind: 'clear' })
})

test('plan: an open ledger whose last segment lost a bookie waits out the grace period, then is recovered', () => {
  const open: LedgerView = { ...closed([['a', 'b', 'c'], ['a', 'b', 'd']]), state: 'OPEN', lastEntryId: -1 }
  assert.equal(planLedger(open, mark(['d'], [], 1000), aliveExcept('d'), 1500, 2000), { kind: 'wait', untilMs: 3000 })
  assert.equal(planLedger(open, mark(['d'], [], 1000), aliveExcept('d'), 3000, 2000), { kind: 'recover' })
  // An earlier segment of an open ledger is fixed in size: copied at once, no recovery.
  assert.equal(planLedger(open, mark(['c'], [], 1000), aliveExcept('c'), 1000, 2000), {
    kind: 'copy', jobs: [{ kind: 'replace', firstEntryId: 0, lastEntryId: 9, position: 2, bookieId: 'c' }],
  })
  assert.equal(planLedger({ ...open, state: 'IN_RECOVERY' }, mark(['d'], [], 0), aliveExcept('d'), 5000, 2000), { kind: 'recover' })
})

test('plan: a live bookie lacking entries is repaired in place; an empty segment still gets its lost bookie replaced', () => {
  const md = closed([['a', 'b', 'c'], ['a', 'b', 'd']], 9)
  assert.equal(planLedger(md, mark([], ['b']), aliveExcept(), 0, 0), {
    kind: 'copy', jobs: [{ kind: 'repair', firstEntryId: 0, lastEntryId: 9, position: 1, bookieId: 'b' }],
  })
  assert.equal(planLedger(md, mark(['d']), aliveExcept('d'), 0, 0), {
    kind: 'copy', jobs: [{ kind: 'replace', firstEntryId: 10, lastEntryId: 9, position: 2, bookieId: 'd' }],
  })
})

test('replaceInSegment: swaps only where the lost bookie still sits, never into the segment twice, never an open last segment', () => {
  const md = closed([['a', 'b', 'c'], ['a', 'd', 'c']])
  assert.equal(replaceInSegment(md, 10, 2, 'c', 'e'), {
    kind: 'write', segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 10, ensemble: ['a', 'd', 'e'] }],
  })
  assert.is(replaceInSegment(md, 10, 2, 'x', 'e').kind, 'skip')
  assert.is(replaceInSegment(md, 10, 2, 'c', 'a').kind, 'skip')
  assert.is(replaceInSegment(md, 5, 2, 'c', 'e').kind, 'skip')
  assert.is(replaceInSegment({ ...md, state: 'OPEN' }, 10, 2, 'c', 'e').kind, 'skip')
  assert.is(replaceInSegment({ ...md, state: 'OPEN' }, 0, 2, 'c', 'e').kind, 'write')
})

// --- the machine ---

interface Step { snap: AnyMachineSnapshot; actions: Array<{ type: string; params?: unknown }> }
const types = (s: Step): string[] => s.actions.map((a) => a.type).filter((t) => !t.startsWith('xstate.'))
function step(s: Step, e: ReplicatorEvent): Step {
  const [snap, actions] = transition(replicatorMachine, s.snap as never, e)
  return { snap, actions: actions.map((a) => ({ type: a.type, params: (a as { params?: unknown }).params })) }
}
function claimed(): Step {
  const [snap0] = initialTransition(replicatorMachine, { nodeId: 'w', pollMs: 100 })
  let s: Step = { snap: snap0, actions: [] }
  s = step(s, { type: 'wake' })
  assert.is(s.snap.value, 'claiming')
  assert.equal(types(s), ['claim.next'])
  s = step(s, { type: 'claimed', ledgerId: 7 })
  assert.is(s.snap.value, 'planning')
  assert.equal(s.actions.find((a) => a.type === 'ledger.plan')?.params, { ledgerId: 7 })
  return s
}
const job = (position: number) => ({ kind: 'replace' as const, firstEntryId: 0, lastEntryId: 9, position, bookieId: `b${position}` })

test('machine: claim, plan, copy, swap each segment, re-plan, then release with the mark cleared', () => {
  let s = claimed()
  s = step(s, { type: 'planned', plan: { kind: 'copy', jobs: [job(1), job(2)] } })
  assert.is(s.snap.value, 'copying')
  assert.equal(s.actions.find((a) => a.type === 'segment.copy')?.params, { ledgerId: 7, job: job(1) })
  s = step(s, { type: 'copied', replacement: 'x' })
  assert.is(s.snap.value, 'updating')
  assert.equal(s.actions.find((a) => a.type === 'ensemble.update')?.params, { ledgerId: 7, job: job(1), replacement: 'x' })
  s = step(s, { type: 'updated' })
  assert.equal(s.actions.find((a) => a.type === 'segment.copy')?.params, { ledgerId: 7, job: job(2) })
  s = step(step(s, { type: 'copied', replacement: 'y' }), { type: 'updated' })
  assert.is(s.snap.value, 'planning', 'done with the jobs: a fresh plan decides')
  s = step(s, { type: 'planned', plan: { kind: 'clear' } })
  assert.is(s.snap.value, 'releasing')
  assert.equal(s.actions.find((a) => a.type === 'claim.release')?.params, { ledgerId: 7, outcome: 'done' })
  s = step(s, { type: 'released' })
  assert.is(s.snap.value, 'claiming')
})

test('machine: recover first, then copy; a wait plan releases without clearing; a failure releases as failed', () => {
  let s = step(claimed(), { type: 'planned', plan: { kind: 'recover' } })
  assert.is(s.snap.value, 'recovering')
  assert.equal(types(s), ['ledger.recover'])
  s = step(s, { type: 'recovered' })
  assert.is(s.snap.value, 'planning')
  const wait = step(claimed(), { type: 'planned', plan: { kind: 'wait', untilMs: 5 } })
  assert.equal(wait.actions.find((a) => a.type === 'claim.release')?.params, { ledgerId: 7, outcome: 'wait' })
  const failed = step(step(claimed(), { type: 'planned', plan: { kind: 'copy', jobs: [job(0)] } }), { type: 'failed', message: 'no bookies' })
  assert.equal(failed.actions.find((a) => a.type === 'claim.release')?.params, { ledgerId: 7, outcome: 'failed' })
})

test('machine: a lost claim drops the work without releasing; stop mid-copy releases, then stops', () => {
  const copying = step(claimed(), { type: 'planned', plan: { kind: 'copy', jobs: [job(0)] } })
  const lost = step(copying, { type: 'claim.lost' })
  assert.is(lost.snap.value, 'idle')
  assert.not.ok(types(lost).includes('claim.release'))
  let s = step(copying, { type: 'stop' })
  assert.equal(s.actions.find((a) => a.type === 'claim.release')?.params, { ledgerId: 7, outcome: 'stopped' })
  s = step(s, { type: 'released' })
  assert.is(s.snap.value, 'stopped')
})

test('machine: work that keeps coming back is given up after maxPasses rounds', () => {
  let s = claimed()
  for (let pass = 0; pass < 3; pass++) {
    s = step(s, { type: 'planned', plan: { kind: 'copy', jobs: [job(0)] } })
    s = step(step(s, { type: 'copied', replacement: 'x' }), { type: 'updated' })
  }
  s = step(s, { type: 'planned', plan: { kind: 'copy', jobs: [job(0)] } })
  assert.equal(s.actions.find((a) => a.type === 'claim.release')?.params, { ledgerId: 7, outcome: 'failed' })
})

// --- workers over in-memory KV and scripted bookies ---

class FakeBookies implements BookieTransport {
  readonly data = new Map<string, Map<number, Map<number, Uint8Array>>>()
  readonly down = new Set<string>()
  private readonly writers = new Map<number, Set<AckHandler>>()

  put(bookieId: string, ledgerId: number, entryId: number, entry: Uint8Array): void {
    let byLedger = this.data.get(bookieId)
    if (!byLedger) this.data.set(bookieId, (byLedger = new Map()))
    let entries = byLedger.get(ledgerId)
    if (!entries) byLedger.set(ledgerId, (entries = new Map()))
    entries.set(entryId, entry)
  }

  has(bookieId: string, ledgerId: number, entryId: number): boolean {
    return this.data.get(bookieId)?.get(ledgerId)?.has(entryId) ?? false
  }

  registerWriter(ledgerId: number, handler: AckHandler): () => void {
    let set = this.writers.get(ledgerId)
    if (!set) this.writers.set(ledgerId, (set = new Set()))
    set.add(handler)
    return () => { set.delete(handler) }
  }

  queueAdd(bookieId: string, ledgerId: number, _key: Uint8Array, _digest: string, recovery: boolean, entry: Uint8Array): void {
    assert.ok(recovery, 'workers send recovery adds only')
    if (this.down.has(bookieId)) return
    const entryId = Number(Buffer.from(entry).readBigUInt64BE(8))
    this.put(bookieId, ledgerId, entryId, entry)
    setImmediate(() => { for (const h of [...(this.writers.get(ledgerId) ?? [])]) h(bookieId, RC.OK, [entryId]) })
  }

  async read(bookieId: string, ledgerId: number, entryIds: number[]): Promise<ReadResponse> {
    await this.answerable(bookieId)
    const entries = this.data.get(bookieId)?.get(ledgerId)
    if (!entries) return { op: 'readResp', reqId: 0, bookieId, rc: RC.NO_SUCH_LEDGER, entries: [] }
    return {
      op: 'readResp', reqId: 0, bookieId, rc: RC.OK,
      entries: entryIds.map((id) => (entries.has(id) ? [RC.OK, entries.get(id)!] : [RC.NO_SUCH_ENTRY, null])),
    }
  }

  async readLac(bookieId: string, ledgerId: number): Promise<ReadLacResponse> {
    await this.answerable(bookieId)
    const entries = this.data.get(bookieId)?.get(ledgerId)
    const last = entries ? Math.max(-1, ...entries.keys()) : -1
    return { op: 'lacResp', reqId: 0, bookieId, rc: entries ? RC.OK : RC.NO_SUCH_LEDGER, lac: last, lastEntryId: last }
  }

  private async answerable(bookieId: string): Promise<void> {
    await new Promise((r) => setTimeout(r, this.down.has(bookieId) ? 50 : 1))
    if (this.down.has(bookieId)) throw new QuireError('TIMEOUT', `bookie ${bookieId} did not answer`)
  }
}

const KEY = masterKeyOf('')
const payload = (ledgerId: number, id: number): Buffer => Buffer.from(`ledger ${ledgerId} entry ${id}`)

interface World {
  metadata: MetadataStore
  store: AutorecoveryStore
  bookies: FakeBookies
  beat(ids: string[]): void
  stop(): void
}

function world(alive: string[]): World {
  const metadata = new MetadataStore(new MemoryKv(), new MemoryKv(), new MemoryKv())
  const store = new AutorecoveryStore(metadata.clusterKv)
  const bookies = new FakeBookies()
  let beating = new Set(alive)
  const rec = (bookieId: string): BookieRecord => ({ bookieId, state: 'writable', heartbeatAt: Date.now(), heartbeatMs: 50, startedAt: 0, host: 'h', pid: 1 })
  const put = (): void => { for (const id of beating) void metadata.putBookie(rec(id)) }
  for (const id of ['b1', 'b2', 'b3', 'b4', 'b5']) void metadata.putBookie({ ...rec(id), heartbeatAt: beating.has(id) ? Date.now() : 0 })
  const t = setInterval(put, 50)
  return { metadata, store, bookies, beat: (ids) => { beating = new Set(ids) }, stop: () => clearInterval(t) }
}

/** A closed ledger of `n` entries (E=3 Qw=2) written to its bookies' maps. */
async function writeLedger(w: World, ledgerId: number, segments: Array<{ firstEntryId: number; ensemble: string[] }>, n: number): Promise<void> {
  const md: LedgerMetadata = {
    ledgerId, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state: 'CLOSED', lastEntryId: n - 1, length: 0,
    segments, customMetadata: {}, createdAt: 0, passwordCheck: passwordCheckOf(KEY),
  }
  let length = 0
  for (let id = 0; id < n; id++) {
    const p = payload(ledgerId, id)
    length += p.byteLength
    const seg = [...segments].reverse().find((s) => s.firstEntryId <= id)!
    const entry = encodeEntry('crc32c', KEY, ledgerId, id, id - 1, length, p)
    for (const i of writeSetIndices(id, 3, 2)) w.bookies.put(seg.ensemble[i]!, ledgerId, id, entry)
  }
  await w.metadata.createLedger({ ...md, length })
}

/** Every entry of the ledger on every bookie of its write set in the current metadata, intact. */
async function fullyReplicated(w: World, ledgerId: number): Promise<boolean> {
  const md = (await w.metadata.readLedger(ledgerId)).value
  for (let id = 0; id <= md.lastEntryId; id++) {
    const seg = [...md.segments].reverse().find((s) => s.firstEntryId <= id)!
    for (const i of writeSetIndices(id, md.ensembleSize, md.writeQuorum)) {
      const data = w.bookies.data.get(seg.ensemble[i]!)?.get(ledgerId)?.get(id)
      if (!data) return false
      const { payload: p } = decodeEntry('crc32c', KEY, data, { ledgerId, entryId: id })
      if (!p.equals(payload(ledgerId, id))) return false
    }
  }
  return true
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const fast = { pollMs: 30, claimLeaseMs: 600, replicationGraceMs: 0, readTimeoutMs: 500, addTimeoutMs: 2000, copyBatchEntries: 5 }

test('worker: a lost bookie\'s segments are copied to a replacement, the ensembles swapped, the mark cleared', async () => {
  const w = world(['b1', 'b2', 'b4', 'b5'])
  w.bookies.down.add('b3')
  await writeLedger(w, 1, [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }, { firstEntryId: 20, ensemble: ['b3', 'b4', 'b1'] }], 40)
  await w.store.mark(1, { missing: ['b3'] }, 'test')
  const r = await startReplicator({ ...fast, metadata: w.metadata, store: w.store, bookies: w.bookies, nodeId: 'w1' })
  try {
    await until('mark cleared', async () => (await w.store.listMarks()).length === 0)
    const md = (await w.metadata.readLedger(1)).value
    assert.not.ok(md.segments.some((s) => s.ensemble.includes('b3')), JSON.stringify(md.segments))
    assert.ok(['b4', 'b5'].includes(md.segments[0]!.ensemble[2]!), 'a live bookie not in the segment')
    assert.ok(['b2', 'b5'].includes(md.segments[1]!.ensemble[0]!), 'never b4 or b1: already in the segment')
    assert.ok(await fullyReplicated(w, 1))
    // Exactly what b3 held was copied: 2 of 3 entries per segment.
    assert.is(r.stats.entriesCopied, countHeld(0, 19, 2, 3, 2) + countHeld(20, 39, 0, 3, 2))
    assert.is(await w.store.readLease(claimKey(1)), null, 'claim released')
  } finally {
    await r.stop()
    w.stop()
  }
})

test('worker: a mark whose bookie is alive again is cleared without copying anything', async () => {
  const w = world(['b1', 'b2', 'b3', 'b4'])
  await writeLedger(w, 2, [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], 10)
  await w.store.mark(2, { missing: ['b3'] }, 'test')
  const before = await w.metadata.readLedger(2)
  const r = await startReplicator({ ...fast, metadata: w.metadata, store: w.store, bookies: w.bookies, nodeId: 'w1' })
  try {
    await until('mark cleared', async () => (await w.store.listMarks()).length === 0)
    assert.is(r.stats.entriesCopied, 0)
    assert.is((await w.metadata.readLedger(2)).revision, before.revision, 'metadata untouched')
  } finally {
    await r.stop()
    w.stop()
  }
})

test('worker: entries a live replica lacks are re-added to it in place', async () => {
  const w = world(['b1', 'b2', 'b3', 'b4'])
  await writeLedger(w, 3, [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], 30)
  for (const id of [3, 4, 7]) assert.ok(w.bookies.data.get('b2')!.get(3)!.delete(id))
  await w.store.mark(3, { damaged: ['b2'] }, 'test')
  const r = await startReplicator({ ...fast, metadata: w.metadata, store: w.store, bookies: w.bookies, nodeId: 'w1' })
  try {
    await until('mark cleared', async () => (await w.store.listMarks()).length === 0)
    assert.ok(await fullyReplicated(w, 3))
    assert.is(r.stats.entriesCopied, 3, 'only what was missing')
    assert.equal((await w.metadata.readLedger(3)).value.segments[0]!.ensemble, ['b1', 'b2', 'b3'])
  } finally {
    await r.stop()
    w.stop()
  }
})

test('worker: claims are exclusive; a worker that crashes mid-copy leaves its claim to expire, then another finishes', async () => {
  const w = world(['b1', 'b2', 'b4', 'b5'])
  w.bookies.down.add('b3')
  await writeLedger(w, 4, [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], 60)
  await w.store.mark(4, { missing: ['b3'] }, 'test')
  const claims: Array<{ nodeId: string; now: number; previousHolder: string | null; previousExpiresAt: number | null }> = []
  let crashedAt = 0
  let a: ReplicatorHandle | null = null
  a = await startReplicator({
    ...fast, metadata: w.metadata, store: w.store, bookies: w.bookies, nodeId: 'wa',
    hooks: {
      onClaimed: (c) => claims.push(c),
      afterCopyBatch: async (b) => {
        if (b.copied >= 10 && crashedAt === 0) {
          crashedAt = Date.now()
          await a!.crash()
        }
      },
    },
  })
  const b = await startReplicator({ ...fast, metadata: w.metadata, store: w.store, bookies: w.bookies, nodeId: 'wb', hooks: { onClaimed: (c) => claims.push(c) } })
  try {
    await until('mark cleared', async () => (await w.store.listMarks()).length === 0)
    assert.ok(crashedAt > 0, 'wa crashed mid-copy')
    assert.ok(await fullyReplicated(w, 4))
    assert.not.ok((await w.metadata.readLedger(4)).value.segments[0]!.ensemble.includes('b3'))
    // wa claimed first (wb found it held), and wb only took it over once wa's claim had expired.
    assert.is(claims[0]?.nodeId, 'wa')
    const takeover = claims.find((c) => c.nodeId === 'wb')!
    assert.is(takeover.previousHolder, 'wa')
    assert.ok(takeover.now > takeover.previousExpiresAt!, `taken over at ${takeover.now}, wa's claim ran to ${takeover.previousExpiresAt}`)
    assert.ok(takeover.now >= crashedAt)
    assert.is(claims.length, 2, 'nobody else claimed it meanwhile')
  } finally {
    await a.stop()
    await b.stop()
    w.stop()
  }
})

test('worker: autorecovery disabled, nothing is claimed', async () => {
  const w = world(['b1', 'b2', 'b4'])
  w.bookies.down.add('b3')
  await writeLedger(w, 5, [{ firstEntryId: 0, ensemble: ['b1', 'b2', 'b3'] }], 5)
  await w.store.mark(5, { missing: ['b3'] }, 'test')
  await w.store.setEnabled(false, 'test')
  const claims: number[] = []
  const r = await startReplicator({ ...fast, metadata: w.metadata, store: w.store, bookies: w.bookies, nodeId: 'w1', hooks: { onClaimed: (c) => claims.push(c.ledgerId) } })
  try {
    await new Promise((res) => setTimeout(res, 500))
    assert.equal(claims, [])
    await w.store.setEnabled(true, 'test')
    await until('mark cleared', async () => (await w.store.listMarks()).length === 0)
    assert.equal(claims, [5])
  } finally {
    await r.stop()
    w.stop()
  }
})

test.run()
