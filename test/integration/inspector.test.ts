// The inspector's parts: the machines' definitions (the real states and transitions of each
// machine); the inspection publisher (state changes at once, context changes sampled and
// trailing, last events, bounded summaries with no secrets, a final message, never failing the
// actor, the beacon); and the server on a real nats-server: the page and its API, /events
// streaming what is published on NATS in order to a page that keeps up, and, to a page that
// stops reading, at most one waiting message per actor (coalesced to the latest), never a
// growing queue.

import http from 'node:http'
import { mock } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { assign, createActor, setup } from 'xstate'
import {
  BEACON_MS, CONTEXT_SAMPLE_MS, EVENTS_KEPT, SUMMARY_CHARS_MAX, boundSummary, summariseContext, watchActor, watchedActorCount,
  type InspectMessage,
} from '../../transport/inspect.ts'
import { startNatsServer, type NatsServer } from '../../cli/cluster.ts'
import { startInspector, type Inspector } from '../../cli/inspectorCmd.ts'
import { activeStateIds, allDefinitions, eventLabel, type MachineDefinition, type StateDefinition } from '../../machines/definitions.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'
import { inspectSubject } from '../../transport/wire.ts'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

// ---- definitions ----

const defs = allDefinitions()
const def = (kind: string): MachineDefinition => {
  const d = defs.find((x) => x.kind === kind)
  if (!d) throw new Error(`no definition for ${kind}`)
  return d
}
function all(s: StateDefinition): StateDefinition[] {
  return [s, ...s.states.flatMap(all)]
}
const keys = (kind: string): string[] => def(kind).root.states.map((s) => s.key)
const state = (kind: string, id: string): StateDefinition => {
  const s = all(def(kind).root).find((x) => x.id === id)
  if (!s) throw new Error(`no state ${id}`)
  return s
}

test('definitions hold every machine, with its real states', () => {
  assert.equal(defs.map((d) => d.kind).sort(), ['auditor', 'bookie', 'bookie-ledger', 'log-reader', 'log-writer', 'reader', 'recovery', 'replicator', 'writer'])
  assert.equal(keys('writer'), ['open', 'changingEnsemble', 'closing', 'closingMetadata', 'closed', 'fenced', 'failed'])
  assert.is(def('writer').root.initial, 'writer.open')
  assert.equal(keys('bookie'), ['starting', 'replaying', 'registering', 'writable', 'readonly', 'draining', 'stopped', 'failed'])
  assert.equal(keys('reader'), ['deciding', 'asking', 'reading', 'caughtUp', 'checking', 'backoff', 'closed', 'failed'])
  assert.equal(keys('recovery'), ['fencing', 'reading', 'writingBack', 'changingEnsemble', 'closing', 'done', 'failed'])
  assert.equal(keys('bookie-ledger'), ['routing', 'open', 'fenced'])
  assert.equal(keys('log-writer'), ['claiming', 'claimWriting', 'recovering', 'creating', 'adding', 'addingReread', 'open', 'awaitingSpare', 'switching', 'switchReread', 'finishing', 'finishReread', 'closed', 'sealed', 'failed'])
  assert.equal(keys('log-reader'), ['locating', 'deciding', 'waiting', 'ended', 'failed'])
  assert.is(state('bookie', 'bookie.stopped').type, 'final')
  assert.ok(keys('replicator').includes('copying'))
  // Nesting: the auditor's leader is a parallel state with regions of their own.
  const leader = state('auditor', 'auditor.leader')
  assert.is(leader.type, 'parallel')
  assert.ok(leader.states.length >= 2 && leader.states.every((r) => r.type === 'compound' && r.initial !== null))
})

test('definitions hold the transitions: events, guards and targets', () => {
  const open = state('writer', 'writer.open')
  const failed = open.transitions.find((t) => t.event === 'bookie.failed')
  assert.equal(failed, { event: 'bookie.failed', targets: ['writer.changingEnsemble'], guard: 'inEnsemble', reenter: false })
  assert.ok(open.transitions.some((t) => t.event === 'append' && t.targets.length === 0), 'actions-only transitions are kept, without targets')
  const change = state('writer', 'writer.changingEnsemble.writing').transitions.filter((t) => t.event === 'metadata.written')
  assert.equal(change.map((t) => t.targets[0]), ['writer.changingEnsemble', 'writer.closing', 'writer.open'])
  assert.ok(change[0]!.reenter)
  assert.equal(def('writer').root.transitions.map((t) => [t.event, t.targets]), [['fenced', ['writer.fenced']]])
  // Readable names for delayed and eventless transitions.
  assert.equal(state('reader', 'tail.backoff').transitions.map((t) => [t.event, t.targets]), [['after retryDelay', ['tail.checking']]])
  assert.is(eventLabel('xstate.after.250.tail.backoff', 'tail.backoff'), 'after 250 ms')
  assert.ok(state('reader', 'tail.deciding').transitions.every((t) => t.event === 'always'))
  assert.ok(state('bookie', 'bookie.writable').transitions.some((t) => t.event === 'disk.full' && t.targets[0] === 'bookie.readonly'))
  // Every target names a state of the same machine.
  for (const d of defs) {
    const ids = new Set(all(d.root).map((s) => s.id))
    for (const s of all(d.root)) for (const t of s.transitions) for (const target of t.targets) assert.ok(ids.has(target), `${d.kind}: ${s.id} → ${target}`)
  }
  assert.ok(JSON.stringify(defs).length < 100_000)
})

test('activeStateIds maps state values to the ids of the definitions', () => {
  assert.equal(activeStateIds('writer', 'open'), ['writer.open'])
  assert.equal(activeStateIds('auditor', { leader: { lease: { valid: 'holding' }, watch: 'waiting' } }),
    ['auditor.leader', 'auditor.leader.lease', 'auditor.leader.lease.valid', 'auditor.leader.lease.valid.holding', 'auditor.leader.watch', 'auditor.leader.watch.waiting'])
})

// ---- the publisher ----

const toy = setup({
  types: {} as { context: { n: number; masterKey: Uint8Array; items: number[]; blob: Uint8Array }; events: { type: 'inc' } | { type: 'go' } | { type: 'noop' } },
}).createMachine({
  id: 'toy',
  context: { n: 0, masterKey: new Uint8Array([1, 2, 3]), items: [], blob: new Uint8Array(1000) },
  initial: 'idle',
  states: {
    idle: { on: { go: 'busy', inc: { actions: assign({ n: ({ context }) => context.n + 1 }) } } },
    busy: { on: { go: 'idle', inc: { actions: assign({ n: ({ context }) => context.n + 1 }) } } },
  },
})

function sinkOf(): { sink: { publish(s: string, d: Uint8Array): void }; got: Array<InspectMessage & { subject: string }> } {
  const got: Array<InspectMessage & { subject: string }> = []
  return { got, sink: { publish: (subject, data) => got.push({ subject, ...(JSON.parse(Buffer.from(data).toString()) as InspectMessage) }) } }
}

test('a state change publishes at once; context changes are sampled, and the last one always goes out', () => {
  // On the test's own clock (node:test's mock timers), and synchronous from enabling it to
  // resetting it: no other code runs in between, so neither a busy machine nor the process-wide
  // beacon (whose phase depends on what an earlier suite left watched) can reorder the messages,
  // and the sampling times are asserted exactly.
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 })
  try {
    const { sink, got } = sinkOf()
    const actor = createActor(toy).start()
    const stop = watchActor(actor, sink, 'toy', 't1')
    assert.is(got.length, 1)
    assert.is(got[0]!.subject, inspectSubject('toy', 't1'))
    assert.is(got[0]!.state, 'idle')
    assert.is(got[0]!.reason, 'state')
    actor.send({ type: 'go' })
    assert.is(got.length, 2, 'state change published synchronously')
    assert.is(got[1]!.state, 'busy')
    for (let i = 0; i < 100; i++) actor.send({ type: 'inc' })
    assert.is(got.length, 2, 'context-only changes wait for the sample')
    mock.timers.tick(CONTEXT_SAMPLE_MS - 1)
    assert.is(got.length, 2, `no sample sooner than ${CONTEXT_SAMPLE_MS} ms after the last message`)
    mock.timers.tick(1)
    assert.is(got.length, 3, 'the sample, once the interval has passed')
    assert.is(got[2]!.reason, 'context')
    assert.is(got[2]!.context.n, 100, 'the sample carries the latest context')
    mock.timers.tick(600)
    assert.is(got.filter((m) => m.reason === 'context').length, 1, 'one sample for a burst of changes')
    // Last events: the newest EVENTS_KEPT types, oldest first.
    actor.send({ type: 'noop' })
    actor.send({ type: 'go' })
    const last = got[got.length - 1]!
    assert.is(last.events.length, EVENTS_KEPT)
    assert.equal(last.events.slice(-3), ['inc', 'noop', 'go'])
    assert.is(last.pid, process.pid)
    assert.ok(last.beaconMs >= BEACON_MS)
    stop()
    actor.stop()
  } finally {
    mock.timers.reset()
  }
})

test('summaries are bounded and carry no keys or payloads', () => {
  const { sink, got } = sinkOf()
  const actor = createActor(toy).start()
  const stop = watchActor(actor, sink, 'toy', 't2')
  const c = got[0]!.context
  assert.not.ok('masterKey' in c, 'no master key')
  assert.is(c.blob, '1000 bytes')
  stop()
  const big = boundSummary({ lac: 7, list: Array.from({ length: 1000 }, (_, i) => 'x'.repeat(150) + i), nested: { a: { b: { c: { d: 1 } } } } })
  assert.ok(JSON.stringify(big).length <= SUMMARY_CHARS_MAX)
  assert.is(big.lac, 7)
  const deep = boundSummary({ nested: { a: { b: { c: { d: 1 } } } }, items: Array.from({ length: 40 }, (_, i) => i) })
  assert.equal(deep.nested, { a: { b: '{…}' } })
  assert.is((deep.items as unknown[]).length, 17)
})

test("a recovery's summary counts its fenced bookies at every ensemble size", () => {
  const segment = { firstEntryId: 0, ensemble: Array.from({ length: 40 }, (_, i) => `b${i}`) }
  assert.is(summariseContext('recovery', { ledgerId: 1, segment, fencedMask: (1n << 40n) - 1n }).fenced, '40 of 40')
  assert.is(summariseContext('recovery', { ledgerId: 1, segment, fencedMask: 1n << 35n }).fenced, '1 of 40')
})

test('a failing summariser or sink never reaches the actor', () => {
  const { sink, got } = sinkOf()
  const actor = createActor(toy).start()
  const stop1 = watchActor(actor, sink, 'toy', 't3', { summarise: () => { throw new Error('boom') } })
  assert.is(got[0]!.context.summaryError, 'boom')
  const stop2 = watchActor(actor, { publish: () => { throw new Error('closed') } }, 'toy', 't4')
  actor.send({ type: 'go' })
  assert.is(actor.getSnapshot().value, 'busy')
  stop1()
  stop2()
  actor.stop()
})

test('an actor that stops publishes a final message and leaves the beacon', async () => {
  const { sink, got } = sinkOf()
  const before = watchedActorCount()
  const actor = createActor(toy).start()
  watchActor(actor, sink, 'toy', 't5')
  assert.is(watchedActorCount(), before + 1)
  // The beacon republishes a live actor, freshly summarised.
  actor.send({ type: 'inc' })
  await until('a beacon', () => got.some((m) => m.reason === 'beacon'), BEACON_MS * 5)
  assert.is(got.find((m) => m.reason === 'beacon')!.context.n, 1)
  actor.stop()
  const last = got[got.length - 1]!
  assert.is(last.reason, 'final')
  assert.is(last.status, 'stopped')
  assert.is(last.beaconMs, 0)
  assert.is(watchedActorCount(), before)
  // Ending the watch of a live actor says so too.
  const other = createActor(toy).start()
  const stop = watchActor(other, sink, 'toy', 't6')
  stop()
  assert.equal([got[got.length - 1]!.id, got[got.length - 1]!.status], ['t6', 'stopped'])
  stop()
  assert.is(got.filter((m) => m.id === 't6' && m.reason === 'final').length, 1, 'once')
  other.stop()
})

// ---- the server ----

let nats: NatsServer | undefined
let dir = ''
let nc: NatsConnection | undefined
let inspector: Inspector | undefined
const pages: SsePage[] = []

interface SseEvent { event: string; data: string }
interface SsePage {
  res: http.IncomingMessage
  events: SseEvent[]
  /** Frames of kind `actor` received (counted even when not kept). */
  actorFrames: number
  keep: boolean
  lastByKey: Map<string, Record<string, unknown>>
  close(): void
}

function openPage(url: string): Promise<SsePage> {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL('events', url), (res) => {
      const page: SsePage = {
        res, events: [], actorFrames: 0, keep: true, lastByKey: new Map(),
        close: () => { req.destroy() },
      }
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buf += chunk
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          let event = 'message'
          let data = ''
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data += line.slice(6)
          }
          if (data === '') continue
          if (event === 'actor') {
            page.actorFrames++
            const m = JSON.parse(data) as Record<string, unknown>
            page.lastByKey.set(`${String(m.kind)}.${String(m.id)}`, m)
          }
          if (page.keep) page.events.push({ event, data })
        }
      })
      res.on('error', () => {})
      pages.push(page)
      resolve(page)
    })
    req.on('error', reject)
  })
}

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'quire-inspector-'))
  nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  nc = await connectNats(nats.url)
  inspector = await startInspector({ nats: nats.url, port: 0, clusterPollMs: 200 })
})

test.after(async () => {
  for (const p of pages) p.close()
  await inspector?.close()
  await nc?.close().catch(() => {})
  await nats?.stop()
  await rm(dir, { recursive: true, force: true })
})

const publish = (kind: string, id: string, body: Record<string, unknown>): void => {
  const msg = { kind, id, state: 'open', status: 'active', at: Date.now(), since: Date.now(), reason: 'state', context: {}, events: [], beaconMs: 2000, host: 'h', pid: 1, ...body }
  nc!.publish(inspectSubject(kind, id), Buffer.from(JSON.stringify(msg)))
}

test('the page, its scripts and the API are served, nothing from elsewhere', async () => {
  const page = await fetch(inspector!.url)
  assert.is(page.status, 200)
  assert.match(await page.text(), /<title>Quire inspector<\/title>/)
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/)
  for (const f of ['app.js', 'chart.js', 'style.css']) {
    const r = await fetch(new URL(f, inspector!.url))
    assert.is(r.status, 200, f)
    const text = await r.text()
    assert.not.match(text, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, `${f} loads nothing from the internet`)
  }
  const machines = await (await fetch(new URL('api/machines', inspector!.url))).json() as MachineDefinition[]
  assert.equal(machines, JSON.parse(JSON.stringify(defs)))
  // The admin API is mounted for the ledger and bookie lists.
  assert.equal(await (await fetch(new URL('api/v1/bookie/list_bookies', inspector!.url))).json(), { bookies: [] })
  assert.equal(await (await fetch(new URL('api/v1/ledger/list?print_metadata=true', inspector!.url))).json(), { ledgers: [] })
})

test('/events streams what actors publish on NATS, in order, with the cluster view', async () => {
  const page = await openPage(inspector!.url)
  await until('hello', () => page.events.some((e) => e.event === 'hello'))
  for (const [i, s] of ['open', 'changingEnsemble', 'open', 'closing', 'closed'].entries()) {
    publish('writer', '42', { state: s, context: { lac: i } })
  }
  await nc!.flush()
  await until('five writer frames', () => page.events.filter((e) => e.event === 'actor').length >= 5)
  const frames = page.events.filter((e) => e.event === 'actor').map((e) => JSON.parse(e.data) as Record<string, unknown>)
  assert.equal(frames.map((f) => f.state), ['open', 'changingEnsemble', 'open', 'closing', 'closed'], 'a page that keeps up gets every message')
  assert.ok(frames.every((f) => typeof f.seen === 'number'))
  await until('a cluster view', () => page.events.some((e) => e.event === 'cluster'))
  const view = JSON.parse(page.events.find((e) => e.event === 'cluster')!.data) as { bookies: unknown[]; ledgers: unknown[] }
  assert.equal([view.bookies, view.ledgers], [[], []])
  // Not inspection messages: ignored.
  nc!.publish('quire.inspect.writer.43', Buffer.from('not json'))
  nc!.publish('quire.inspect.writer.44', Buffer.from(JSON.stringify({ kind: 'writer', id: 'x'.repeat(300) })))
  // A page that opens later gets the latest message of every actor at once.
  await nc!.flush()
  const late = await openPage(inspector!.url)
  await until('the late page has the writer', () => late.lastByKey.has('writer.42'))
  assert.is(late.lastByKey.get('writer.42')!.state, 'closed')
  assert.is(late.lastByKey.size, 1)
  const actors = await (await fetch(new URL('api/actors', inspector!.url))).json() as InspectMessage[]
  assert.equal(actors.map((a) => a.id), ['42'])
  page.close()
  late.close()
})

test('a page that stops reading gets the latest message per actor, never a growing queue', async () => {
  const page = await openPage(inspector!.url)
  await until('hello', () => page.events.some((e) => e.event === 'hello'))
  page.keep = false
  page.res.pause()
  const actors = 8
  const pad = 'p'.repeat(8000)
  let published = 0
  let round = 0
  // Publish until the socket pushes back and the server starts replacing waiting messages
  // (the kernel buffers some megabytes first), then one last round.
  const stats = (): { coalesced: number; maxPending: number } => {
    const s = inspector!.stats()
    return { coalesced: Math.max(0, ...s.map((x) => x.coalesced)), maxPending: Math.max(0, ...s.map((x) => x.maxPending)) }
  }
  while (stats().coalesced === 0) {
    assert.ok(round < 2000, 'the server never had to coalesce')
    for (let k = 0; k < 50; k++) {
      for (let a = 0; a < actors; a++) {
        publish('bookie', `slow-${a}`, { context: { round, pad } })
        published++
      }
    }
    round++
    await nc!.flush()
    await sleep(5)
  }
  for (let a = 0; a < actors; a++) {
    publish('bookie', `slow-${a}`, { state: 'readonly', context: { round: 'last' } })
    published++
  }
  await nc!.flush()
  await until('the last round reached the server', async () => {
    const list = await (await fetch(new URL('api/actors', inspector!.url))).json() as InspectMessage[]
    return list.filter((m) => m.id.startsWith('slow-') && m.context.round === 'last').length === actors
  })
  const s = stats()
  assert.ok(s.coalesced > 0)
  // One waiting message per actor at most (plus the cluster view and the keep-alive).
  assert.ok(s.maxPending <= actors + 3, `max pending ${s.maxPending}`)
  page.res.resume()
  await until('the page caught up with the latest of every actor', () =>
    Array.from({ length: actors }, (_, a) => page.lastByKey.get(`bookie.slow-${a}`)).every((m) => (m?.context as { round?: unknown } | undefined)?.round === 'last'), 60_000)
  console.log(`slow page: ${round} rounds, ${published} published, ${page.actorFrames} received, stats ${JSON.stringify(s)}`)
  assert.ok(page.actorFrames < published, `received ${page.actorFrames} of ${published} messages`)
  assert.ok(Array.from({ length: actors }, (_, a) => page.lastByKey.get(`bookie.slow-${a}`)!.state).every((st) => st === 'readonly'))
  page.close()
})

test('with a token the page files load for anyone; the API and /events need the token (bearer or the login\'s cookie)', async () => {
  const TOKEN = 'insp-tok-0d3a'
  const guarded = await startInspector({ nats: nats!.url, port: 0, clusterPollMs: 200, token: TOKEN })
  try {
    const at = (p: string): string => new URL(p, guarded.url).toString()
    for (const f of ['', 'app.js', 'style.css']) assert.is((await fetch(at(f))).status, 200, f)
    for (const p of ['api/machines', 'api/v1/bookie/list_bookies', 'events']) {
      const r = await fetch(at(p))
      assert.is(r.status, 401, p)
      assert.is(((await r.json()) as { code: string }).code, 'UNAUTHORIZED')
    }
    assert.is((await fetch(at('api/machines'), { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200)
    const login = (token: unknown): Promise<Response> => fetch(at('login'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
    const wrong = await login('nope')
    assert.is(wrong.status, 401)
    assert.is(wrong.headers.get('set-cookie'), null)
    assert.is((await login(42)).status, 401)
    const right = await login(TOKEN)
    assert.is(right.status, 204)
    const cookie = right.headers.get('set-cookie')!
    assert.match(cookie, /^quire_inspector_token=.*; HttpOnly; SameSite=Strict; Path=\/$/)
    assert.is((await fetch(at('api/machines'), { headers: { cookie: cookie.split(';')[0]! } })).status, 200)
    assert.is((await fetch(at('api/machines'), { headers: { cookie: 'quire_inspector_token=nope' } })).status, 401)
  } finally {
    await guarded.close()
  }
})

test.run()
