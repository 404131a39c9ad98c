// The auditor: its machine (machines/auditor.ts) stepped with transition(), its lease rules, and
// the actor (actors/auditor.ts) over the in-memory KV: election, takeover once a crashed leader's
// lease has expired, and marking the ledgers of a bookie lost for lostBookieRecoveryDelayMs.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialTransition, transition, type AnyMachineSnapshot } from 'xstate'
import { startAuditor, type AuditorHandle } from '../../actors/auditor.ts'
import {
  auditorMachine, auditorPhase, dueForMarking, leaseDecision, trackBookies, type AuditorEvent, type AuditorInput,
} from '../../machines/auditor.ts'
import { AUDITOR_KEY, AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { MemoryKv } from '../../storage/memoryKv.ts'
import { MetadataStore, MISSED_HEARTBEATS_DEAD, type BookieRecord, type LedgerMetadata } from '../../storage/metadataStore.ts'

const input: AuditorInput = {
  nodeId: 'a', leaseMs: 1000, clockSkewMarginMs: 200, checkIntervalMs: 100, auditIntervalMs: 10_000, lostBookieRecoveryDelayMs: 5000,
}

interface Step {
  snap: AnyMachineSnapshot
  actions: Array<{ type: string; params?: unknown }>
  /** Delayed events (xstate `after`) scheduled and not cancelled, by id. */
  timers: Map<string, { type: string }>
}

type RawAction = { type: string; params?: unknown }

function record(prev: Map<string, { type: string }>, snap: AnyMachineSnapshot, raw: readonly RawAction[]): Step {
  const actions = raw.map((a) => ({ type: a.type, params: a.params }))
  const timers = new Map(prev)
  for (const a of actions) {
    const p = a.params as { id?: string; sendId?: string; delay?: number; event?: { type: string } } | undefined
    if (a.type === 'xstate.cancel' && p?.sendId) timers.delete(p.sendId)
    if (a.type === 'xstate.raise' && p?.delay !== undefined && p.id && p.event) timers.set(p.id, p.event)
  }
  return { snap, actions, timers }
}

function start(i: AuditorInput = input): Step {
  const [snap, actions] = initialTransition(auditorMachine, i)
  return record(new Map(), snap, actions as RawAction[])
}

function step(s: Step, e: AuditorEvent | { type: string }): Step {
  const [snap, actions] = transition(auditorMachine, s.snap as never, e as never)
  return record(s.timers, snap, actions as RawAction[])
}

/** Fire the pending timer named `name` (the delayed event its state scheduled). */
function timer(s: Step, name: string): { type: string } {
  const hit = [...s.timers].find(([id]) => id.includes(`.${name}.`))
  assert.ok(hit, `no ${name} timer among ${[...s.timers.keys()].join(', ')}`)
  s.timers.delete(hit[0])
  return hit[1]
}

const types = (s: Step): string[] => s.actions.map((a) => a.type).filter((t) => !t.startsWith('xstate.'))
const checked = (now: number, dead: string[] = [], enabled = true): AuditorEvent => ({
  type: 'bookies.checked', now, enabled,
  registered: ['b1', 'b2', 'b3', 'b4'].map((bookieId) => ({ bookieId, alive: !dead.includes(bookieId) })),
})

/** Leader, first audit done at t=0, waiting for its next check. */
function leaderWaiting(i: AuditorInput = input): Step {
  let s = start(i)
  s = step(s, { type: 'lease.acquired', now: 0, expiresAt: 1000 })
  s = step(s, checked(0))
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'waiting', audit: 'auditing' } })
  return step(s, { type: 'audit.done', now: 0, unregistered: [], markedBookies: [] })
}

test('lease rules: create when absent, renew our own, held until expiry plus the skew margin, then takeover', () => {
  assert.equal(leaseDecision(null, 'a', 0, 200), { kind: 'create' })
  const lease = { holder: 'b', expiresAt: 1000, acquiredAt: 0 }
  assert.equal(leaseDecision({ ...lease, holder: 'a' }, 'a', 5000, 200), { kind: 'renew' })
  assert.equal(leaseDecision(lease, 'a', 1000, 200), { kind: 'held', holder: 'b', expiresAt: 1000 })
  assert.equal(leaseDecision(lease, 'a', 1200, 200).kind, 'held')
  assert.equal(leaseDecision(lease, 'a', 1201, 200), { kind: 'takeover', previousHolder: 'b', previousExpiresAt: 1000 })
  assert.equal(leaseDecision({ ...lease, holder: '' }, 'a', 0, 200).kind, 'takeover')
})

test('machine: a candidate asks for the lease, retries while it is held, and leads once acquired', () => {
  let s = start()
  assert.equal(s.snap.value, { candidate: 'asking' })
  assert.equal(types(s), ['lease.acquire'])
  s = step(s, { type: 'lease.held', holder: 'b', expiresAt: 5000, now: 4900 })
  assert.equal(s.snap.value, { candidate: 'waiting' })
  // Asks again once the lease can be taken over (expiry + margin), not a full third of the lease later.
  assert.is(s.actions.find((a) => a.type === 'xstate.raise')?.params && (s.actions.find((a) => a.type === 'xstate.raise')!.params as { delay: number }).delay, 301)
  s = step(s, timer(s, 'retryMs'))
  assert.equal(types(s), ['lease.acquire'])
  s = step(s, { type: 'lease.acquired', now: 100, expiresAt: 1100 })
  assert.equal(types(s), ['leader.enter', 'bookies.check'])
  assert.is(auditorPhase(s.snap.value), 'leader')
})

test('machine: the leader renews every third of the lease, and steps down on its own when renewals fail', () => {
  let s = start()
  s = step(s, { type: 'lease.acquired', now: 0, expiresAt: 1000 })
  const stepDown = s.actions.find((a) => String((a.params as { id?: string })?.id).includes('stepDownMs'))
  // Steps down at expiresAt - margin: nobody may take over before expiresAt + margin.
  assert.is((stepDown!.params as { delay: number }).delay, 800)
  s = step(s, timer(s, 'renewMs'))
  assert.equal(types(s), ['lease.renew'])
  s = step(s, { type: 'lease.renewed', now: 333, expiresAt: 1333 })
  assert.is((s.snap.context as { expiresAt: number }).expiresAt, 1333)
  s = step(s, timer(s, 'renewMs'))
  s = step(s, { type: 'lease.failed', message: 'timeout' })
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'checking', audit: 'idle' } })
  s = step(s, { type: 'xstate.after.stepDownMs.auditor.leader.lease.valid' })
  assert.equal(s.snap.value, { candidate: 'asking' })
  assert.equal(types(s), ['leader.exit', 'lease.acquire'])
})

test('machine: a lost lease makes a candidate again; stop releases the lease only when leading', () => {
  let s = leaderWaiting()
  const lost = step(s, { type: 'lease.lost', reason: 'taken over' })
  assert.is(auditorPhase(lost.snap.value), 'candidate')
  assert.not.ok(types(lost).includes('lease.release'))
  s = step(s, { type: 'stop' })
  assert.is(s.snap.value, 'stopped')
  assert.equal(types(s), ['leader.exit', 'lease.release'])
  const candidate = step(start(), { type: 'stop' })
  assert.is(candidate.snap.value, 'stopped')
  assert.not.ok(types(candidate).includes('lease.release'))
})

test('machine: a lost bookie is marked only after lostBookieRecoveryDelayMs, once; back alive, the clock starts over', () => {
  let s = leaderWaiting({ ...input, auditIntervalMs: 100_000 })
  s = step(s, timer(s, 'checkMs'))
  assert.equal(types(s), ['bookies.check'])
  s = step(s, checked(1000, ['b3']))
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'waiting', audit: 'idle' } })
  s = step(step(s, timer(s, 'checkMs')), checked(5999, ['b3']))
  assert.not.ok(types(s).includes('mark.lost'))
  s = step(step(s, timer(s, 'checkMs')), checked(6000, ['b3']))
  assert.equal(s.actions.find((a) => a.type === 'mark.lost')?.params, { bookieIds: ['b3'] })
  s = step(s, { type: 'marked', bookieIds: ['b3'] })
  s = step(step(s, timer(s, 'checkMs')), checked(7000, ['b3']))
  assert.not.ok(types(s).includes('mark.lost'), 'marked once')
  // b3 is back, then lost again: the delay counts from the new loss.
  s = step(step(s, timer(s, 'checkMs')), checked(8000))
  s = step(step(s, timer(s, 'checkMs')), checked(9000, ['b3']))
  s = step(step(s, timer(s, 'checkMs')), checked(13_999, ['b3']))
  assert.not.ok(types(s).includes('mark.lost'))
  s = step(step(s, timer(s, 'checkMs')), checked(14_000, ['b3']))
  assert.ok(types(s).includes('mark.lost'))
})

test('machine: a registration that disappears counts as lost from the check that notices it', () => {
  let s = leaderWaiting()
  s = step(step(s, timer(s, 'checkMs')), { type: 'bookies.checked', now: 1000, enabled: true, registered: [{ bookieId: 'b1', alive: true }] })
  s = step(step(s, timer(s, 'checkMs')), { type: 'bookies.checked', now: 6000, enabled: true, registered: [{ bookieId: 'b1', alive: true }] })
  assert.equal(s.actions.find((a) => a.type === 'mark.lost')?.params, { bookieIds: ['b2', 'b3', 'b4'] })
})

test('machine: audits every auditIntervalMs and on a trigger, passing the bookies lost long enough', () => {
  let s = leaderWaiting()
  s = step(step(s, timer(s, 'checkMs')), checked(1000, ['b2']))
  s = step(s, { type: 'audit.trigger' })
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'waiting', audit: 'auditing' } })
  assert.equal(s.actions.find((a) => a.type === 'audit.run')?.params, { lostBookies: [], known: ['b1', 'b2', 'b3', 'b4'] })
  s = step(s, { type: 'audit.done', now: 1000, unregistered: ['ghost'], markedBookies: [] })
  s = step(step(s, timer(s, 'checkMs')), checked(9999, ['b2']))
  assert.not.ok(types(s).includes('audit.run'))
  s = step(s, { type: 'marked', bookieIds: ['b2'] })
  s = step(step(s, timer(s, 'checkMs')), checked(11_000, ['b2']))
  // The unregistered bookie a segment named at t=1000 is lost since then too.
  assert.equal(s.actions.find((a) => a.type === 'audit.run')?.params, { lostBookies: ['b2', 'ghost'], known: ['b1', 'b2', 'b3', 'b4', 'ghost'] })
})

test('machine: a long audit does not hold up marking a lost bookie', () => {
  let s = leaderWaiting({ ...input, auditIntervalMs: 1000 })
  s = step(step(s, timer(s, 'checkMs')), checked(1000, ['b3']))
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'waiting', audit: 'auditing' } })
  s = step(step(s, timer(s, 'checkMs')), checked(6000, ['b3']))
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'marking', audit: 'auditing' } })
  assert.equal(s.actions.find((a) => a.type === 'mark.lost')?.params, { bookieIds: ['b3'] })
})

test('machine: disabled, it neither marks nor audits', () => {
  let s = leaderWaiting()
  s = step(step(s, timer(s, 'checkMs')), checked(1000, ['b3'], false))
  s = step(step(s, timer(s, 'checkMs')), checked(60_000, ['b3'], false))
  s = step(s, { type: 'audit.trigger' })
  assert.equal(s.snap.value, { leader: { lease: { valid: 'holding' }, watch: 'waiting', audit: 'idle' } })
  s = step(step(s, timer(s, 'checkMs')), checked(60_100, ['b3'], true))
  assert.ok(types(s).includes('audit.run'), 'enabled again: the pending trigger and the due audit run')
})

test('tracking helpers: due once, never before the delay', () => {
  let known = trackBookies({}, [{ bookieId: 'x', alive: false }], 100)
  known = trackBookies(known, [{ bookieId: 'x', alive: false }], 500)
  assert.equal(known.x, { lostSince: 100, marked: false })
  assert.equal(dueForMarking(known, 599, 500), [])
  assert.equal(dueForMarking(known, 600, 500), ['x'])
  assert.equal(dueForMarking({ x: { lostSince: 100, marked: true } }, 600, 500), [])
})

// --- the actor over in-memory KV ---

interface World {
  metadata: MetadataStore
  store: AutorecoveryStore
  beat(ids: string[]): void
  stop(): void
}

function world(bookies: string[], heartbeatMs = 50): World {
  const metadata = new MetadataStore(new MemoryKv(), new MemoryKv(), new MemoryKv())
  const store = new AutorecoveryStore(metadata.clusterKv)
  let beating = new Set(bookies)
  const put = (): void => {
    for (const id of beating) void metadata.putBookie(bookieRecord(id, heartbeatMs))
  }
  put()
  const t = setInterval(put, heartbeatMs)
  return { metadata, store, beat: (ids) => { beating = new Set(ids) }, stop: () => clearInterval(t) }
}

function bookieRecord(bookieId: string, heartbeatMs: number): BookieRecord {
  return { bookieId, state: 'writable', heartbeatAt: Date.now(), heartbeatMs, startedAt: 0, host: 'h', pid: 1 }
}

function ledger(ledgerId: number, ensembles: string[][], state: LedgerMetadata['state'] = 'CLOSED'): LedgerMetadata {
  return {
    ledgerId, ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c', state, lastEntryId: state === 'CLOSED' ? 9 : -1, length: 0,
    segments: ensembles.map((ensemble, i) => ({ firstEntryId: i * 5, ensemble })), customMetadata: {}, createdAt: 0, passwordCheck: 'x',
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const settings = { auditorLeaseMs: 600, checkIntervalMs: 30, auditIntervalMs: 60_000, lostBookieRecoveryDelayMs: 400 }

test('actor: one leader among two; after the leader crashes, the other takes over only once the lease expired', async () => {
  const w = world(['b1', 'b2', 'b3'])
  const handles: AuditorHandle[] = []
  try {
    handles.push(await startAuditor({ ...settings, metadata: w.metadata, store: w.store, nodeId: 'n1' }))
    await until('n1 leads', () => handles[0]!.isLeader)
    handles.push(await startAuditor({ ...settings, metadata: w.metadata, store: w.store, nodeId: 'n2' }))
    await new Promise((r) => setTimeout(r, 900))
    assert.ok(handles[0]!.isLeader)
    assert.not.ok(handles[1]!.isLeader, 'the lease is renewed: n2 stays a candidate')
    const before = await w.store.readLease(AUDITOR_KEY)
    assert.is(before?.value.holder, 'n1')
    await handles[0]!.crash()
    await until('n2 leads', () => handles[1]!.isLeader)
    const after = await w.store.readLease(AUDITOR_KEY)
    assert.is(after?.value.holder, 'n2')
    // The crashed leader's last renewal wrote an expiry; n2 took over no earlier than that plus the margin.
    const lastExpiry = before!.value.expiresAt
    assert.ok(after!.value.acquiredAt > lastExpiry, `taken over at ${after!.value.acquiredAt}, the old lease ran to ${lastExpiry}`)
  } finally {
    for (const h of handles) await h.stop()
    w.stop()
  }
})

test('actor: a stopped leader releases its lease, and another leads without waiting for it to expire', async () => {
  const w = world(['b1'])
  const a = await startAuditor({ ...settings, auditorLeaseMs: 60_000, metadata: w.metadata, store: w.store, nodeId: 'n1' })
  const b = await startAuditor({ ...settings, auditorLeaseMs: 60_000, metadata: w.metadata, store: w.store, nodeId: 'n2' })
  try {
    await until('someone leads', () => a.isLeader || b.isLeader)
    const [leader, other] = a.isLeader ? [a, b] : [b, a]
    await leader.stop()
    // With a 60 s lease, only the release can explain a new leader within the deadline.
    await until('the other leads', () => other.isLeader)
  } finally {
    await a.stop()
    await b.stop()
    w.stop()
  }
})

test('actor: the ledgers of a bookie lost for lostBookieRecoveryDelayMs are marked, no sooner; others are not', async () => {
  const w = world(['b1', 'b2', 'b3', 'b4'])
  await w.metadata.createLedger(ledger(1, [['b1', 'b2', 'b3']]))
  await w.metadata.createLedger(ledger(2, [['b1', 'b2', 'b4'], ['b1', 'b3', 'b4']]))
  await w.metadata.createLedger(ledger(3, [['b1', 'b2', 'b4']]))
  await w.metadata.createLedger(ledger(4, [['b3', 'b2', 'b4']], 'OPEN'))
  const a = await startAuditor({ ...settings, metadata: w.metadata, store: w.store, nodeId: 'n1' })
  try {
    await until('leader', () => a.isLeader)
    w.beat(['b1', 'b2', 'b4'])
    const lastBeat = (await w.metadata.listBookies()).find((b) => b.bookieId === 'b3')!
    await until('marks', async () => (await w.store.listMarks()).length === 3)
    const seenAt = Date.now()
    const deadSince = lastBeat.heartbeatAt + MISSED_HEARTBEATS_DEAD * lastBeat.heartbeatMs
    assert.ok(seenAt >= deadSince + settings.lostBookieRecoveryDelayMs, 'not marked before the bookie was lost for the delay')
    const marks = await w.store.listMarks()
    assert.equal(marks.map((m) => m.value.ledgerId), [1, 2, 4])
    for (const m of marks) {
      assert.equal(m.value.missing, ['b3'])
      assert.is(m.value.by, 'n1')
    }
  } finally {
    await a.stop()
    w.stop()
  }
})

test('actor: autorecovery disabled, nothing is marked; enabled again, the lost bookie\'s ledgers are', async () => {
  const w = world(['b1', 'b2', 'b3'])
  await w.metadata.createLedger(ledger(7, [['b1', 'b2', 'b3']]))
  await w.store.setEnabled(false, 'test')
  const a = await startAuditor({ ...settings, metadata: w.metadata, store: w.store, nodeId: 'n1' })
  try {
    await until('leader', () => a.isLeader)
    w.beat(['b1', 'b2'])
    await new Promise((r) => setTimeout(r, 5 * 50 + settings.lostBookieRecoveryDelayMs + 500))
    assert.equal(await w.store.listMarks(), [])
    await w.store.setEnabled(true, 'test')
    await until('marked', async () => (await w.store.listMarks()).length === 1)
  } finally {
    await a.stop()
    w.stop()
  }
})

test.run()
