// The auditor (PROTOCOL.md "Auto-recovery"): one node at a time, elected through a lease in KV,
// watches bookie liveness and marks the ledgers of a lost bookie under-replicated. Pure: effects
// are named actions (`lease.acquire`, `lease.renew`, `lease.release`, `bookies.check`,
// `mark.lost`, `audit.run`) bound by actors/auditor.ts; results come back as events that carry
// the time they were observed (`now`), so every decision here is a function of its inputs.
// States: `candidate` (asking for the lease, waiting to ask again), `leader` with three parallel
// regions: `lease` (renewing; stepping down when renewals fail), `watch` (liveness checks and
// marking) and `audit` (idle / `auditing`), so that a long audit never delays marking.
//
// Leases without per-key TTL (NATS 2.9): a lease is a record {holder, expiresAt} written with a
// CAS. Others take it over only once `now > expiresAt + clockSkewMarginMs` by their own clock; the
// holder renews every leaseMs/3 and steps down on its own at `expiresAt - clockSkewMarginMs` if no
// renewal got through. So two nodes never both act as auditor while clocks differ by less than
// the margin (and a KV round trip is shorter than it). Marking is idempotent anyway: two auditors
// for a moment would only mark the same ledgers twice.
//
// Invariants:
// - marking and audits happen only in `leader`, and only while autorecovery is enabled;
// - a bookie's ledgers are marked only once it has been lost (dead, or gone from the
//   registrations) for lostBookieRecoveryDelayMs as this auditor observed it; a new leader starts
//   that clock afresh (it cannot know when the old one first saw the loss);
// - a bookie that is alive again is forgotten: were it lost again, the delay starts over.

import { assign, setup } from 'xstate'

/** A lease (auditor election, replication claims) as stored in KV. `holder` '' means released. */
export interface Lease {
  holder: string
  expiresAt: number
  acquiredAt: number
}

export type LeaseDecision =
  | { kind: 'create' }
  | { kind: 'takeover'; previousHolder: string; previousExpiresAt: number }
  | { kind: 'renew' }
  | { kind: 'held'; holder: string; expiresAt: number }

/** What `self` may do about a lease record read at `now` (null: no record). */
export function leaseDecision(current: Lease | null, self: string, now: number, clockSkewMarginMs: number): LeaseDecision {
  if (current === null) return { kind: 'create' }
  if (current.holder === self) return { kind: 'renew' }
  if (current.holder === '' || now > current.expiresAt + clockSkewMarginMs) {
    return { kind: 'takeover', previousHolder: current.holder, previousExpiresAt: current.expiresAt }
  }
  return { kind: 'held', holder: current.holder, expiresAt: current.expiresAt }
}

/** Whether the holder may still act on a lease it holds until `expiresAt` (it steps down first). */
export function leaseValid(expiresAt: number, now: number, clockSkewMarginMs: number): boolean {
  return now < expiresAt - clockSkewMarginMs
}

/** Default margin for clock skew: a fifth of the lease. */
export function defaultSkewMarginMs(leaseMs: number): number {
  return Math.floor(leaseMs / 5)
}

/** What the auditor knows of one bookie. `lostSince` null: alive at the last check. */
export interface BookieTrack {
  lostSince: number | null
  /** Its ledgers were marked since it was lost. */
  marked: boolean
}

export interface RegisteredBookie {
  bookieId: string
  alive: boolean
}

/**
 * The tracks after a liveness check at `now`: alive bookies are (re)set, dead ones and known
 * ones whose registration is gone are lost from the first time they were seen so.
 */
export function trackBookies(known: Readonly<Record<string, BookieTrack>>, registered: readonly RegisteredBookie[], now: number): Record<string, BookieTrack> {
  const next: Record<string, BookieTrack> = {}
  const seen = new Set<string>()
  for (const b of registered) {
    seen.add(b.bookieId)
    const prev = known[b.bookieId]
    next[b.bookieId] = b.alive ? { lostSince: null, marked: false } : { lostSince: prev?.lostSince ?? now, marked: prev?.marked ?? false }
  }
  for (const [id, t] of Object.entries(known)) {
    if (!seen.has(id)) next[id] = { lostSince: t.lostSince ?? now, marked: t.marked }
  }
  return next
}

/** Bookies lost for at least `delayMs` at `now` (whether marked yet or not), sorted. */
export function lostLongEnough(known: Readonly<Record<string, BookieTrack>>, now: number, delayMs: number): string[] {
  return Object.entries(known)
    .filter(([, t]) => t.lostSince !== null && now - t.lostSince >= delayMs)
    .map(([id]) => id)
    .sort()
}

/** Lost long enough and not marked yet: their ledgers are marked now. */
export function dueForMarking(known: Readonly<Record<string, BookieTrack>>, now: number, delayMs: number): string[] {
  return lostLongEnough(known, now, delayMs).filter((id) => !known[id]!.marked)
}

export interface AuditorInput {
  nodeId: string
  leaseMs: number
  clockSkewMarginMs: number
  checkIntervalMs: number
  auditIntervalMs: number
  lostBookieRecoveryDelayMs: number
}

export interface AuditorContext extends AuditorInput {
  known: Record<string, BookieTrack>
  /** Time of the last liveness check and of the last finished audit (null: none yet as leader). */
  checkedAt: number
  lastAuditAt: number | null
  auditRequested: boolean
  enabled: boolean
  /** The lease this node holds (leader) or saw held by another (candidate). */
  holder: string | null
  expiresAt: number
  renewedAt: number
  /** A candidate's wait before asking for the lease again. */
  retryMs: number
}

/** A candidate asks again at most this often (a released lease is noticed within it). */
export const CANDIDATE_RETRY_MS_MAX = 1000

/** Wait before asking again: until the lease seen can be taken over, within bounds. */
export function candidateRetryMs(leaseMs: number, held: { expiresAt: number; now: number; clockSkewMarginMs: number } | null): number {
  const most = Math.max(1, Math.min(Math.floor(leaseMs / 3), CANDIDATE_RETRY_MS_MAX))
  if (held === null) return most
  return Math.min(most, Math.max(1, held.expiresAt + held.clockSkewMarginMs + 1 - held.now))
}

export type AuditorEvent =
  | { type: 'lease.acquired'; now: number; expiresAt: number }
  | { type: 'lease.held'; holder: string; expiresAt: number; now: number }
  | { type: 'lease.failed'; message: string }
  | { type: 'lease.renewed'; now: number; expiresAt: number }
  | { type: 'lease.lost'; reason: string }
  | { type: 'bookies.checked'; now: number; registered: RegisteredBookie[]; enabled: boolean }
  | { type: 'check.failed'; message: string }
  | { type: 'marked'; bookieIds: string[] }
  | { type: 'mark.failed'; message: string }
  | { type: 'audit.trigger' }
  | { type: 'audit.done'; now: number; unregistered: string[]; markedBookies: string[] }
  | { type: 'audit.failed'; now: number; message: string }
  | { type: 'stop' }

export interface MarkLostParams { bookieIds: string[] }
export interface AuditParams { lostBookies: string[]; known: string[] }

const auditorSetup = setup({
  types: {} as { context: AuditorContext; events: AuditorEvent; input: AuditorInput },
  actions: {
    'lease.acquire': () => {},
    'lease.renew': () => {},
    'lease.release': () => {},
    'leader.enter': () => {},
    'leader.exit': () => {},
    'bookies.check': () => {},
    'mark.lost': (_, _p: MarkLostParams) => {},
    'audit.run': (_, _p: AuditParams) => {},
  },
  delays: {
    retryMs: ({ context }) => context.retryMs,
    renewMs: ({ context }) => Math.max(1, Math.floor(context.leaseMs / 3)),
    // Step down before anyone else may take over: the lease's own expiry minus the margin.
    stepDownMs: ({ context }) => Math.max(0, context.expiresAt - context.clockSkewMarginMs - context.renewedAt),
    checkMs: ({ context }) => context.checkIntervalMs,
  },
  guards: {
    auditDue: ({ context, event }) =>
      event.type === 'bookies.checked' && event.enabled &&
      (context.auditRequested || context.lastAuditAt === null || event.now - context.lastAuditAt >= context.auditIntervalMs),
    marksDue: ({ context, event }) =>
      event.type === 'bookies.checked' && event.enabled &&
      dueForMarking(trackBookies(context.known, event.registered, event.now), event.now, context.lostBookieRecoveryDelayMs).length > 0,
    auditRequested: ({ context }) => context.auditRequested && context.enabled,
  },
})

const track = auditorSetup.assign(({ context, event }) => {
  if (event.type !== 'bookies.checked') return {}
  return { known: trackBookies(context.known, event.registered, event.now), checkedAt: event.now, enabled: event.enabled }
})

const setMarked = (ids: (e: AuditorEvent) => string[]) => auditorSetup.assign(({ context, event }) => {
  const known = { ...context.known }
  for (const id of ids(event)) {
    const t = known[id]
    if (t && t.lostSince !== null) known[id] = { ...t, marked: true }
  }
  return { known }
})

export const auditorMachine = auditorSetup.createMachine({
  id: 'auditor',
  context: ({ input }) => ({
    ...input, known: {}, checkedAt: 0, lastAuditAt: null, auditRequested: false, enabled: true,
    holder: null, expiresAt: 0, renewedAt: 0, retryMs: candidateRetryMs(input.leaseMs, null),
  }),
  initial: 'candidate',
  on: {
    stop: { target: '.stopped' },
  },
  states: {
    candidate: {
      initial: 'asking',
      states: {
        asking: {
          entry: 'lease.acquire',
          on: {
            'lease.held': {
              target: 'waiting',
              actions: assign(({ context, event }) => ({
                holder: event.holder, expiresAt: event.expiresAt,
                retryMs: candidateRetryMs(context.leaseMs, { ...event, clockSkewMarginMs: context.clockSkewMarginMs }),
              })),
            },
            'lease.failed': { target: 'waiting', actions: assign(({ context }) => ({ retryMs: candidateRetryMs(context.leaseMs, null) })) },
          },
        },
        waiting: { after: { retryMs: 'asking' } },
      },
      on: {
        'lease.acquired': {
          target: 'leader',
          actions: assign(({ context, event }) => ({
            holder: context.nodeId, expiresAt: event.expiresAt, renewedAt: event.now,
            // A new leader knows nothing of earlier losses and audits at once.
            known: {}, lastAuditAt: null, auditRequested: false,
          })),
        },
      },
    },
    leader: {
      type: 'parallel',
      entry: 'leader.enter',
      exit: 'leader.exit',
      on: {
        'lease.lost': { target: 'candidate', actions: assign({ holder: null }) },
        stop: { target: 'stopped', actions: 'lease.release' },
      },
      states: {
        lease: {
          initial: 'valid',
          states: {
            valid: {
              after: { stepDownMs: { target: '#auditor.candidate', actions: assign({ holder: null }) } },
              on: {
                'lease.renewed': {
                  target: 'valid',
                  reenter: true,
                  actions: assign(({ event }) => ({ expiresAt: event.expiresAt, renewedAt: event.now })),
                },
              },
              initial: 'holding',
              states: {
                holding: { after: { renewMs: 'renewing' } },
                renewing: {
                  entry: 'lease.renew',
                  on: { 'lease.failed': 'holding' },
                },
              },
            },
          },
        },
        // Liveness checks and marking go on while an audit runs (an audit can take long: it
        // reads every ledger), so a lost bookie is marked on time whatever the audit is doing.
        watch: {
          initial: 'checking',
          states: {
            checking: {
              entry: 'bookies.check',
              on: {
                'bookies.checked': [
                  { guard: 'marksDue', target: 'marking', actions: track },
                  { target: 'waiting', actions: track },
                ],
                'check.failed': 'waiting',
              },
            },
            marking: {
              entry: {
                type: 'mark.lost',
                params: ({ context }) => ({ bookieIds: dueForMarking(context.known, context.checkedAt, context.lostBookieRecoveryDelayMs) }),
              },
              on: {
                marked: { target: 'waiting', actions: setMarked((e) => (e.type === 'marked' ? e.bookieIds : [])) },
                'mark.failed': 'waiting',
              },
            },
            waiting: {
              after: { checkMs: 'checking' },
            },
          },
        },
        audit: {
          initial: 'idle',
          on: { 'audit.trigger': { actions: assign({ auditRequested: true }) } },
          states: {
            idle: {
              always: { guard: 'auditRequested', target: 'auditing' },
              on: { 'bookies.checked': { guard: 'auditDue', target: 'auditing' } },
            },
            auditing: {
              entry: [
                assign({ auditRequested: false }),
                {
                  type: 'audit.run',
                  params: ({ context }) => ({
                    lostBookies: lostLongEnough(context.known, context.checkedAt, context.lostBookieRecoveryDelayMs),
                    known: Object.keys(context.known).sort(),
                  }),
                },
              ],
              on: {
                'audit.done': {
                  target: 'idle',
                  actions: [
                    setMarked((e) => (e.type === 'audit.done' ? e.markedBookies : [])),
                    // Bookies that segments name but that never registered while this node
                    // watched: lost from now on, so they wait out the delay like any other.
                    assign(({ context, event }) => {
                      const known = { ...context.known }
                      for (const id of event.unregistered) known[id] ??= { lostSince: event.now, marked: false }
                      return { known, lastAuditAt: event.now }
                    }),
                  ],
                },
                'audit.failed': { target: 'idle', actions: assign(({ event }) => ({ lastAuditAt: event.now })) },
              },
            },
          },
        },
      },
    },
    stopped: { type: 'final' },
  },
})

/** The state names the inspector and `whoisauditor` show: candidate, leader, auditing, stopped. */
export function auditorPhase(value: unknown): 'candidate' | 'leader' | 'auditing' | 'stopped' {
  if (value === 'stopped') return value
  if (typeof value === 'object' && value !== null && 'candidate' in value) return 'candidate'
  const audit = (value as { leader?: { audit?: string } }).leader?.audit
  return audit === 'auditing' ? 'auditing' : 'leader'
}
