// A replication worker (PROTOCOL.md "Auto-recovery"): claims an under-replicated ledger, recovers
// it first when its open last segment lost a bookie, copies each affected segment's entries from
// surviving replicas to a replacement, CASes the segment's ensemble, and clears the mark. Pure:
// effects are named actions (`claim.next`, `ledger.plan`, `ledger.recover`, `segment.copy`,
// `ensemble.update`, `claim.release`) bound by actors/replicator.ts; results come back as events.
// The planning and metadata rules are pure functions below, tested on their own.
//
// Invariants:
// - work on a ledger happens only between a claim and its release (or the claim's loss);
// - an OPEN (or IN_RECOVERY) ledger's last segment is never rewritten here: it is recovered
//   (fenced and closed) first, and only after the grace period, during which its writer may
//   replace the bookie itself;
// - a segment's ensemble changes only where the lost bookie still sits (a writer, another worker
//   or an operator may have replaced it meanwhile), never to a bookie already in the segment;
// - a mark is cleared only after a fresh plan finds nothing left to do (which is also what
//   happens when its bookies are all alive again); a ledger is re-planned at most `maxPasses`
//   times per claim.

import { assign, setup } from 'xstate'
import { writeSetIndices } from './quorum.ts'

export type LedgerState = 'OPEN' | 'IN_RECOVERY' | 'CLOSED'

/** What planning needs of ledger metadata (storage/metadataStore.ts LedgerMetadata fits). */
export interface LedgerView {
  state: LedgerState
  lastEntryId: number
  ensembleSize: number
  writeQuorum: number
  segments: ReadonlyArray<{ firstEntryId: number; ensemble: readonly string[] }>
}

/** What planning needs of an under-replicated mark. */
export interface MarkView {
  /** Bookies lost: their copies are re-made elsewhere. */
  missing: readonly string[]
  /** Live bookies found lacking entries: their copies are re-made in place. */
  damaged: readonly string[]
  markedAt: number
}

/** One bookie position of one segment to re-replicate. */
export interface CopyJob {
  /** replace: copy to a new bookie and swap it in; repair: re-add what the bookie lacks in place. */
  kind: 'replace' | 'repair'
  firstEntryId: number
  /** Last entry of the segment; < firstEntryId when the segment holds no entry. */
  lastEntryId: number
  position: number
  bookieId: string
}

export type Plan =
  | { kind: 'clear' }
  | { kind: 'wait'; untilMs: number }
  | { kind: 'recover' }
  | { kind: 'copy'; jobs: CopyJob[] }

/** Entry range of segment `i`; null for the last segment of a ledger not closed (still growing). */
export function segmentRange(md: LedgerView, i: number): { first: number; last: number } | null {
  const seg = md.segments[i]
  if (!seg) return null
  const next = md.segments[i + 1]
  if (next) return { first: seg.firstEntryId, last: next.firstEntryId - 1 }
  if (md.state !== 'CLOSED') return null
  return { first: seg.firstEntryId, last: md.lastEntryId }
}

/**
 * The plan for a ledger given its mark. Lost bookies are the mark's `missing` ones that are not
 * alive now; damaged ones the mark's `damaged` that are alive and not `repaired` yet (a live
 * bookie stays in the mark after its repair, so the worker says which it has done). Nothing lost
 * or damaged is referenced any more: clear.
 */
export function planLedger(
  md: LedgerView, mark: MarkView, alive: (bookieId: string) => boolean, now: number, graceMs: number, repaired: readonly string[] = [],
): Plan {
  const lost = new Set(mark.missing.filter((b) => !alive(b)))
  const damaged = new Set(mark.damaged.filter((b) => alive(b) && !lost.has(b) && !repaired.includes(b)))
  const jobs: CopyJob[] = []
  let recover = false
  md.segments.forEach((seg, i) => {
    const range = segmentRange(md, i)
    seg.ensemble.forEach((bookieId, position) => {
      if (lost.has(bookieId)) {
        if (range === null) recover = true
        else jobs.push({ kind: 'replace', firstEntryId: range.first, lastEntryId: range.last, position, bookieId })
      } else if (damaged.has(bookieId) && range !== null && range.last >= range.first) {
        jobs.push({ kind: 'repair', firstEntryId: range.first, lastEntryId: range.last, position, bookieId })
      }
    })
  })
  if (recover) {
    const untilMs = mark.markedAt + graceMs
    return now < untilMs ? { kind: 'wait', untilMs } : { kind: 'recover' }
  }
  return jobs.length === 0 ? { kind: 'clear' } : { kind: 'copy', jobs }
}

/** Whether the bookie at `position` of an ensemble of `e` holds entry `entryId` (write quorum `qw`). */
export function holdsEntry(entryId: number, position: number, e: number, qw: number): boolean {
  return (((position - entryId) % e) + e) % e < qw
}

/** Up to `max` entries from `from` to `last` that `position` holds, ascending. */
export function heldEntries(from: number, last: number, position: number, e: number, qw: number, max: number): number[] {
  const out: number[] = []
  for (let id = from; id <= last && out.length < max; id++) if (holdsEntry(id, position, e, qw)) out.push(id)
  return out
}

/** How many entries of first..last `position` holds. */
export function countHeld(first: number, last: number, position: number, e: number, qw: number): number {
  if (last < first) return 0
  const n = last - first + 1
  let count = Math.floor(n / e) * qw
  for (let id = first + Math.floor(n / e) * e; id <= last; id++) if (holdsEntry(id, position, e, qw)) count++
  return count
}

/** The other bookies of entry `entryId`'s write set (its sources when `position` lost its copy). */
export function otherReplicas(entryId: number, position: number, ensemble: readonly string[], qw: number): string[] {
  return writeSetIndices(entryId, ensemble.length, qw).filter((i) => i !== position).map((i) => ensemble[i]!)
}

export type EnsembleUpdate =
  | { kind: 'write'; segments: Array<{ firstEntryId: number; ensemble: string[] }> }
  | { kind: 'skip'; reason: string }

/**
 * Swap `to` in for `from` at `position` of the segment starting at `firstEntryId`, on the
 * metadata just read. Skips when someone else already replaced it, when `to` is already in the
 * segment, or when the segment is the growing last one of a ledger not closed.
 */
export function replaceInSegment(md: LedgerView, firstEntryId: number, position: number, from: string, to: string): EnsembleUpdate {
  const i = md.segments.findIndex((s) => s.firstEntryId === firstEntryId)
  const seg = md.segments[i]
  if (!seg) return { kind: 'skip', reason: `no segment starts at entry ${firstEntryId}` }
  if (seg.ensemble[position] !== from) return { kind: 'skip', reason: `${from} is no longer at position ${position} (now ${seg.ensemble[position]})` }
  if (seg.ensemble.includes(to)) return { kind: 'skip', reason: `${to} is already in the segment` }
  if (i === md.segments.length - 1 && md.state !== 'CLOSED') return { kind: 'skip', reason: 'the segment is the open ledger\'s last one' }
  const segments = md.segments.map((s) => ({ firstEntryId: s.firstEntryId, ensemble: [...s.ensemble] }))
  segments[i]!.ensemble[position] = to
  return { kind: 'write', segments }
}

export interface ReplicatorInput {
  nodeId: string
  pollMs: number
  maxPasses?: number
}

export interface ReplicatorContext {
  nodeId: string
  pollMs: number
  maxPasses: number
  ledgerId: number | null
  jobs: CopyJob[]
  jobIndex: number
  replacement: string | null
  passes: number
  outcome: ReleaseParams['outcome']
  stopping: boolean
  error: string | null
}

export type ReplicatorEvent =
  | { type: 'wake' }
  | { type: 'claimed'; ledgerId: number }
  | { type: 'claim.none' }
  | { type: 'planned'; plan: Plan }
  | { type: 'recovered' }
  | { type: 'copied'; replacement: string | null }
  | { type: 'updated' }
  | { type: 'released' }
  | { type: 'failed'; message: string }
  | { type: 'claim.lost' }
  | { type: 'stop' }

export interface ReleaseParams {
  ledgerId: number
  /** done: clear the mark; wait: grace period; failed: back off; stopped: worker stopping. */
  outcome: 'done' | 'wait' | 'failed' | 'stopped'
}
export interface CopyParams { ledgerId: number; job: CopyJob }
export interface UpdateParams { ledgerId: number; job: CopyJob; replacement: string }

const planOf = (e: ReplicatorEvent): Plan | null => (e.type === 'planned' ? e.plan : null)

const replicatorSetup = setup({
  types: {} as { context: ReplicatorContext; events: ReplicatorEvent; input: ReplicatorInput },
  actions: {
    'claim.next': () => {},
    'ledger.plan': (_, _p: { ledgerId: number }) => {},
    'ledger.recover': (_, _p: { ledgerId: number }) => {},
    'segment.copy': (_, _p: CopyParams) => {},
    'ensemble.update': (_, _p: UpdateParams) => {},
    'claim.release': (_, _p: ReleaseParams) => {},
    recordClaim: assign(({ event }) => (event.type === 'claimed' ? { ledgerId: event.ledgerId, passes: 0, outcome: 'done' as const, error: null } : {})),
    outcomeDone: assign({ outcome: 'done' as const }),
    outcomeWait: assign({ outcome: 'wait' as const }),
    outcomeFailed: assign(({ event }) => ({ outcome: 'failed' as const, error: event.type === 'failed' ? event.message : 'too many passes over one ledger' })),
    takeJobs: assign(({ event }) => {
      const plan = planOf(event)
      return { jobs: plan?.kind === 'copy' ? plan.jobs : [], jobIndex: 0, replacement: null }
    }),
    stopping: assign({ stopping: true, outcome: 'stopped' as const }),
  },
  guards: {
    tooManyPasses: ({ context }) => context.passes > context.maxPasses,
    planClear: ({ event }) => planOf(event)?.kind === 'clear',
    planWait: ({ event }) => planOf(event)?.kind === 'wait',
    planRecover: ({ event }) => planOf(event)?.kind === 'recover',
  },
  delays: {
    pollMs: ({ context }) => context.pollMs,
  },
})

/** Where a plan leads (after the claim, and again after each round of work). */
const route = [
  { guard: 'planClear', target: 'releasing', actions: 'outcomeDone' },
  { guard: 'planWait', target: 'releasing', actions: 'outcomeWait' },
  // More work after maxPasses rounds: something keeps undoing it; back off rather than loop.
  { guard: 'tooManyPasses', target: 'releasing', actions: 'outcomeFailed' },
  { guard: 'planRecover', target: 'recovering' },
  { target: 'copying', actions: 'takeJobs' },
] as const

const currentJob = (c: ReplicatorContext): CopyJob => c.jobs[c.jobIndex]!
const failed = { target: 'releasing', actions: 'outcomeFailed' } as const
const stopWork = { target: 'releasing', actions: 'stopping' } as const

export const replicatorMachine = replicatorSetup.createMachine({
  id: 'replicator',
  context: ({ input }) => ({
    nodeId: input.nodeId, pollMs: input.pollMs, maxPasses: input.maxPasses ?? 3,
    ledgerId: null, jobs: [], jobIndex: 0, replacement: null, passes: 0, outcome: 'done', stopping: false, error: null,
  }),
  initial: 'idle',
  states: {
    idle: {
      entry: assign({ ledgerId: null, jobs: [], jobIndex: 0, replacement: null, passes: 0, error: null }),
      always: { guard: ({ context }) => context.stopping, target: 'stopped' },
      after: { pollMs: 'claiming' },
      on: { wake: 'claiming', stop: 'stopped' },
    },
    claiming: {
      entry: [assign({ ledgerId: null, jobs: [], jobIndex: 0, replacement: null, passes: 0, error: null }), 'claim.next'],
      on: {
        claimed: { target: 'planning', actions: 'recordClaim' },
        'claim.none': 'idle',
        failed: 'idle',
        // A claim won while stopping is released by the actor, which knows it holds it.
        stop: 'stopped',
      },
    },
    planning: {
      entry: [
        assign(({ context }) => ({ passes: context.passes + 1 })),
        { type: 'ledger.plan', params: ({ context }) => ({ ledgerId: context.ledgerId! }) },
      ],
      on: { planned: route, failed: failed, stop: stopWork },
    },
    recovering: {
      entry: { type: 'ledger.recover', params: ({ context }) => ({ ledgerId: context.ledgerId! }) },
      on: { recovered: 'planning', failed: failed, stop: stopWork },
    },
    copying: {
      entry: { type: 'segment.copy', params: ({ context }) => ({ ledgerId: context.ledgerId!, job: currentJob(context) }) },
      on: {
        copied: [
          // Nothing to swap (a repair in place, or the position changed hands meanwhile).
          {
            guard: ({ context, event }) => event.replacement === null && context.jobIndex + 1 < context.jobs.length,
            target: 'copying',
            reenter: true,
            actions: assign(({ context }) => ({ jobIndex: context.jobIndex + 1 })),
          },
          { guard: ({ event }) => event.replacement === null, target: 'planning' },
          { target: 'updating', actions: assign(({ event }) => ({ replacement: event.replacement })) },
        ],
        failed: failed,
        stop: stopWork,
      },
    },
    updating: {
      entry: {
        type: 'ensemble.update',
        params: ({ context }) => ({ ledgerId: context.ledgerId!, job: currentJob(context), replacement: context.replacement! }),
      },
      on: {
        updated: [
          {
            guard: ({ context }) => context.jobIndex + 1 < context.jobs.length,
            target: 'copying',
            actions: assign(({ context }) => ({ jobIndex: context.jobIndex + 1, replacement: null })),
          },
          { target: 'planning' },
        ],
        failed: failed,
        stop: stopWork,
      },
    },
    releasing: {
      entry: {
        type: 'claim.release',
        params: ({ context }) => ({ ledgerId: context.ledgerId!, outcome: context.outcome }),
      },
      on: {
        released: [{ guard: ({ context }) => context.stopping, target: 'stopped' }, { target: 'claiming' }],
        stop: { actions: assign({ stopping: true }) },
      },
    },
    stopped: { type: 'final' },
  },
  on: {
    // The claim expired under us (or another worker took it over): drop the work, release nothing.
    'claim.lost': { target: '.idle' },
  },
})
