// The inspection hook a node's actors are started with when the node has the `inspect` setting,
// and a client's actors when it connects with `inspect: true` (a null sink otherwise: nothing
// tracked, nothing published, no beacon timer): it publishes
// what an actor is doing on `quire.inspect.<kind>.<id>` so that an inspector (cli/inspectorCmd.ts)
// can follow the cluster live. It lives in transport/ because the client uses it too, and the
// client never imports actors/. A message holds the state value, a bounded summary of the context and the types of the
// last events the actor received.
//
// Cost on the actor's hot path (a writer handles an event per ack group): it watches snapshots
// (actor.subscribe) and wraps the actor's mailbox entry to keep the last event types in a small
// ring, not xstate's `inspect` stream, which builds an event for every microstep and action and
// cost a writer ~20 µs per append. Per event: a ring write, one or two comparisons, and at most a
// timer check; the context summary is computed only when a message is published.
//
// Sampling: a change of state value publishes at once; a context-only change publishes at most
// every CONTEXT_SAMPLE_MS per actor (trailing, so the last value always goes out). Every watched
// actor of the process is republished every BEACON_MS (freshly summarised) so that an inspector
// that starts later sees it, and one whose beacon stops can be told dead. An actor that stops
// (final state, stopped, error, or its watch ended) publishes a final message and is forgotten.
// Publishing is fire-and-forget: it never blocks the actor, and a failure (closed connection,
// a summariser that throws) never reaches it.

import os from 'node:os'
import type { AnyActorRef, EventObject, SnapshotFrom } from 'xstate'
import { inspectSubject } from './wire.ts'
import { popcount } from '../machines/quorum.ts'

export interface InspectSink {
  publish(subject: string, data: Uint8Array): void
}

export interface InspectMessage {
  kind: string
  id: string
  state: unknown
  /** xstate's snapshot status: active, done, stopped or error; anything but active is final. */
  status: string
  /** When this message was published, and when the state value last changed (ms since epoch). */
  at: number
  since: number
  /** Why it was published. */
  reason: 'state' | 'context' | 'beacon' | 'final'
  /** Bounded summary of the actor's context (no keys, no payloads). */
  context: Record<string, unknown>
  /** Types of the last events received, oldest first (at most EVENTS_KEPT). */
  events: string[]
  /** The next message of this actor comes within this many ms while it lives (0: this is the last). */
  beaconMs: number
  host: string
  pid: number
}

export const CONTEXT_SAMPLE_MS = 250
export const BEACON_MS = 2000
export const EVENTS_KEPT = 10
/** Watched actors republished per beacon tick: a process with more beacons each less often. */
export const BEACON_ACTORS_PER_TICK = 500
/** A summary larger than this (as JSON) is replaced by a note saying so. */
export const SUMMARY_CHARS_MAX = 4096

export type ContextOf<A extends AnyActorRef> = SnapshotFrom<A> extends { context: infer C } ? C : unknown
export type Summariser<C = unknown> = (context: C) => Record<string, unknown>

export interface WatchOptions<C> {
  /** Replaces the kind's summary (summariseContext); it may read state outside the context. */
  summarise?: Summariser<C>
}

interface Snap { value?: unknown; status?: string; context?: unknown }

interface Watch {
  beacon(): void
}

/** Every actor watched in this process, for the beacon. */
const watched = new Set<Watch>()
let beaconTimer: NodeJS.Timeout | null = null
let beaconCursor: Iterator<Watch> | null = null

function beaconTick(): void {
  // Round-robin over at most BEACON_ACTORS_PER_TICK actors per tick, so that a bookie with many
  // ledgers does not send a burst of messages every tick.
  const n = Math.min(watched.size, BEACON_ACTORS_PER_TICK)
  for (let i = 0; i < n; i++) {
    let r = beaconCursor?.next()
    if (!r || r.done) {
      beaconCursor = watched.values()
      r = beaconCursor.next()
      if (r.done) return
    }
    r.value.beacon()
  }
}

function track(w: Watch): void {
  watched.add(w)
  if (beaconTimer === null) {
    beaconTimer = setInterval(beaconTick, BEACON_MS)
    beaconTimer.unref()
  }
}

function untrack(w: Watch): void {
  watched.delete(w)
  beaconCursor = null
  if (watched.size === 0 && beaconTimer !== null) {
    clearInterval(beaconTimer)
    beaconTimer = null
  }
}

/** How many actors this process watches (for tests). */
export function watchedActorCount(): number {
  return watched.size
}

const beaconPeriodMs = (): number => BEACON_MS * Math.max(1, Math.ceil(watched.size / BEACON_ACTORS_PER_TICK))

/**
 * Start publishing `actor`'s state and context; returns a function that ends the watch (and
 * publishes a final message if the actor had not ended yet). `sink` null: nothing is published.
 */
export function watchActor<A extends AnyActorRef>(
  actor: A, sink: InspectSink | null, kind: string, id: string, opts: WatchOptions<ContextOf<A>> = {},
): () => void {
  if (sink === null) return () => {}
  const subject = inspectSubject(kind, id)
  const summarise = (opts.summarise as Summariser<unknown> | undefined) ?? ((c: unknown) => summariseContext(kind, c))
  const ring: string[] = []
  let ringNext = 0
  let lastValue: unknown = undefined
  let lastKey = ''
  let lastContext: unknown = undefined
  let since = Date.now()
  let lastSentAt = 0
  let timer: NodeJS.Timeout | null = null
  let ended = false

  const events = (): string[] => (ring.length < EVENTS_KEPT ? ring.slice() : [...ring.slice(ringNext), ...ring.slice(0, ringNext)])

  const send = (reason: InspectMessage['reason'], statusOverride?: string): void => {
    if (timer !== null) { clearTimeout(timer); timer = null }
    const snap = actor.getSnapshot() as Snap
    lastContext = snap.context
    lastSentAt = Date.now()
    let context: Record<string, unknown>
    try {
      context = boundSummary(summarise(snap.context))
    } catch (err) {
      context = { summaryError: err instanceof Error ? err.message : String(err) }
    }
    const status = statusOverride ?? snap.status ?? 'active'
    const msg: InspectMessage = {
      kind, id, state: snap.value ?? null, status, at: lastSentAt, since, reason, context, events: events(),
      beaconMs: status === 'active' ? beaconPeriodMs() : 0, host: HOST, pid: process.pid,
    }
    try {
      sink.publish(subject, Buffer.from(JSON.stringify(msg)))
    } catch {
      // A closed connection must not take the actor down with it.
    }
  }

  const end = (statusOverride?: string): void => {
    if (ended) return
    ended = true
    untrack(watch)
    send('final', statusOverride)
  }

  const onSnapshot = (snap: Snap): void => {
    if (ended) return
    if (snap.status !== undefined && snap.status !== 'active') return end()
    if (snap.value !== lastValue) {
      lastValue = snap.value
      const key = typeof snap.value === 'string' ? snap.value : JSON.stringify(snap.value ?? null)
      if (key !== lastKey) {
        lastKey = key
        since = Date.now()
        return send('state')
      }
    }
    if (snap.context === lastContext || timer !== null) return
    timer = setTimeout(() => { timer = null; if (!ended) send('context') }, Math.max(0, lastSentAt + CONTEXT_SAMPLE_MS - Date.now()))
    timer.unref()
  }

  const watch: Watch = { beacon: () => { if (!ended) send('beacon') } }
  recordEvents(actor, (type) => {
    if (ring.length < EVENTS_KEPT) ring.push(type)
    else ring[ringNext] = type
    ringNext = (ringNext + 1) % EVENTS_KEPT
  })
  track(watch)
  const sub = actor.subscribe({ next: onSnapshot, error: () => end('error'), complete: () => end() })
  onSnapshot(actor.getSnapshot() as Snap)
  return () => {
    sub.unsubscribe()
    end('stopped')
  }
}

/** The inspection id of a log's `n`th writer or reader in this process (a log name's `/` and `.` would split the subject). */
export const logActorId = (log: string, n: number): string => `${log.replace(/[/.]/g, '_')}_${n}`

/** A machine stepped with xstate's transition() (no actor), made watchable by watchActor. */
export interface SteppedActor<S extends Snap> {
  /** The machine's next snapshot, reached by `event`. */
  step(snapshot: S, event: EventObject): void
  /** The stepping is over (the machine ended, or its owner stopped it). */
  done(): void
}

/**
 * An actor-shaped view of a machine whose owner steps it with transition() (a log reader,
 * client/logReader.ts): watchActor sees each step as the actor's event and new snapshot.
 */
export function steppedActor<S extends Snap>(initial: S): SteppedActor<S> & AnyActorRef {
  let snap = initial
  const observers = new Set<{ next?: (s: S) => void; complete?: () => void }>()
  const ref = {
    getSnapshot: () => snap,
    subscribe(o: { next?: (s: S) => void; complete?: () => void }) {
      observers.add(o)
      return { unsubscribe: () => { observers.delete(o) } }
    },
    // Where watchActor notes event types (it wraps this); the step has already been taken.
    send(_e: EventObject): void {},
    step(next: S, event: EventObject): void {
      ref.send(event)
      snap = next
      for (const o of [...observers]) o.next?.(snap)
    },
    done(): void {
      for (const o of [...observers]) o.complete?.()
      observers.clear()
    },
  }
  return ref as unknown as SteppedActor<S> & AnyActorRef
}

const HOST = os.hostname()

/**
 * Note the type of every event the actor takes in. xstate delivers every event, from `send`, from
 * other actors and from delayed transitions (`after`), through the actor's `_send`; wrapping it
 * costs one call per event, where subscribing to xstate's inspection costs far more.
 */
function recordEvents(actor: AnyActorRef, note: (type: string) => void): void {
  const a = actor as unknown as { _send?: (e: EventObject) => void; send: (e: EventObject) => void }
  const key = typeof a._send === 'function' ? '_send' : 'send'
  const original = a[key]!.bind(actor)
  a[key] = (e: EventObject) => {
    note(typeof e?.type === 'string' ? e.type : '?')
    original(e)
  }
}

// ---- summaries ----

// Field names, camelCase: `masterKey`, `password`, `payload`... (not `monkey`, a bookie id).
const SECRET = /^(key|password|secret|payloads?|data)$|Key$|Password$|Secret$/

/**
 * A bounded, JSON-safe copy of a value: strings cut at 200 characters, arrays at 16 items,
 * objects at 24 keys and 3 levels, bytes as their length, and nothing under a key that may hold a
 * secret or a payload (masterKey, password...).
 */
export function compact(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return null
  switch (typeof value) {
    case 'number': return Number.isFinite(value) ? value : String(value)
    case 'boolean': return value
    case 'string': return value.length > 200 ? `${value.slice(0, 200)}…` : value
    case 'bigint': return value.toString()
    case 'object': break
    default: return undefined
  }
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`
  if (depth >= 3) return Array.isArray(value) ? `[${value.length} items]` : '{…}'
  if (Array.isArray(value)) {
    const out = value.slice(0, 16).map((v) => compact(v, depth + 1))
    if (value.length > 16) out.push(`… ${value.length - 16} more`)
    return out
  }
  if (value instanceof Map) return `Map(${value.size})`
  if (value instanceof Set) return `Set(${value.size})`
  const out: Record<string, unknown> = {}
  let n = 0
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (SECRET.test(k)) continue
    if (n++ >= 24) { out['…'] = 'more keys'; break }
    const c = compact(v, depth + 1)
    if (c !== undefined) out[k] = c
  }
  return out
}

/** The default summary: the context, compacted. */
export function compactContext(context: unknown): Record<string, unknown> {
  const c = compact(context)
  return c !== null && typeof c === 'object' && !Array.isArray(c) ? (c as Record<string, unknown>) : { value: c }
}

/** Compact a summary and keep it under SUMMARY_CHARS_MAX. */
export function boundSummary(summary: Record<string, unknown>): Record<string, unknown> {
  const c = compactContext(summary)
  const size = JSON.stringify(c).length
  if (size <= SUMMARY_CHARS_MAX) return c
  // Keep the scalar fields, name the rest.
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(c)) if (v === null || typeof v !== 'object') out[k] = v
  out.truncated = `summary of ${size} characters cut to its scalar fields`
  return JSON.stringify(out).length <= SUMMARY_CHARS_MAX ? out : { truncated: `summary of ${size} characters` }
}

// A recovery's fenced set is an IndexMask (a bigint); anything else is not a count we can give.
const bits = (mask: unknown): number | string => (typeof mask === 'bigint' && mask >= 0n ? popcount(mask) : '?')

type Ctx = Record<string, unknown>
const len = (v: unknown): number | null => (Array.isArray(v) ? v.length : null)

/** The default summary of a `kind`'s context: SUMMARIES[kind], or the context compacted. */
export function summariseContext(kind: string, context: unknown): Record<string, unknown> {
  const s = SUMMARIES[kind]
  return s && context !== null && typeof context === 'object' ? s(context as Ctx) : compactContext(context)
}

/** What matters of each kind's context (the machines in machines/*.ts). */
export const SUMMARIES: Record<string, Summariser<Ctx>> = {
  writer: (c) => ({
    ledgerId: c.ledgerId, lac: c.lac, lastAddPushed: c.lastAddPushed, inFlight: len(c.pending), length: c.length,
    ensemble: c.ensemble, failed: c.failed, closeRequested: c.closeRequested, error: c.error,
  }),
  reader: (c) => ({ next: c.next, lac: c.lac, closed: c.closed, lastEntryId: c.lastEntryId, polling: c.polling, failures: c.failures, error: c.error }),
  recovery: (c) => {
    const seg = c.segment as { firstEntryId: number; ensemble: string[] } | undefined
    return {
      ledgerId: c.ledgerId, fenced: `${bits(c.fencedMask)} of ${seg?.ensemble.length ?? '?'}`, maxLac: c.maxLac,
      entryId: c.entryId, lastEntryId: c.lastEntryId, ensemble: seg?.ensemble, segmentFirstEntryId: seg?.firstEntryId,
      // Where entries are written back, once a write-back had to replace a bookie (written at close).
      writeEnsemble: c.ensemble, ensembleChanges: len(c.ensembleChanges), error: c.error,
    }
  },
  'bookie-ledger': (c) => ({
    ledgerId: c.ledgerId, lac: c.lac, lastEntryId: c.lastEntryId, fenced: c.fenced, fenceSynced: c.fenceSynced,
    digestType: c.digestType, fenceWaiters: len(c.fenceWaiters),
  }),
  auditor: (c) => {
    const known = (c.known ?? {}) as Record<string, { lostSince: number | null; marked: boolean }>
    const lost = Object.entries(known).filter(([, t]) => t.lostSince !== null)
    return {
      holder: c.holder, expiresAt: c.expiresAt, enabled: c.enabled, lastAuditAt: c.lastAuditAt, auditRequested: c.auditRequested,
      bookiesKnown: Object.keys(known).length, lost: lost.map(([b, t]) => ({ bookie: b, since: t.lostSince, marked: t.marked })),
    }
  },
  'log-writer': (c) => {
    const segs = ((c.md as { segments?: Array<{ segmentSeq: number; state: string; ledgerId: number }> } | null)?.segments ?? [])
    const open = segs.find((s) => s.state === 'open')
    return {
      name: c.name, epoch: c.epoch, openSegment: open?.segmentSeq ?? null, openLedger: open?.ledgerId ?? null, segments: segs.length,
      spareLedger: c.ledgerId, toRecover: len(c.toRecover), finish: c.finish, conflicts: c.conflicts, error: c.error,
    }
  },
  replicator: (c) => ({
    ledgerId: c.ledgerId, jobs: len(c.jobs), jobIndex: c.jobIndex, job: Array.isArray(c.jobs) ? c.jobs[Number(c.jobIndex)] : null,
    replacement: c.replacement, passes: c.passes, outcome: c.outcome, stopping: c.stopping, error: c.error,
  }),
}
