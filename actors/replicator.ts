// A replication worker: binds machines/replicator.ts to KV (marks, claims, ledger metadata) and
// to the bookies (reads from surviving replicas, recovery adds to the replacement).
//
// Claims are leases in KV (storage/autorecoveryStore.ts): created or taken over by CAS, renewed
// every claimLeaseMs/3 while the worker works, released when it is done. A worker that dies
// leaves its claim to expire, and another takes it over. Before every write (a batch of adds, an
// ensemble CAS) the worker checks that its claim is still valid by its own clock, so a worker
// that stalled past its lease stops instead of racing the one that took over. Even so, the
// ensemble CAS only swaps a bookie that is still where the plan found it, so two workers could at
// worst copy the same entries twice, never corrupt the metadata.
//
// Master keys: a bookie accepts adds only with the ledger's master key, and the metadata keeps
// only a check value of it. A worker is given candidate passwords (`passwords`, default [''], as
// BookKeeper's bookieRecoveryPasswd) and uses the one whose check value matches; for a ledger none
// matches, it asks the ledger's live bookies for the key on their admin subject (actors/masterKeys.ts,
// a subject NATS permissions keep to this role) and uses it if it matches the check value. A
// ledger whose key it cannot get that way either is left marked and reported (UNAUTHORIZED).
//
// `crash()` stops the worker where it is, without releasing its claim (a killed process).

import type { NatsConnection } from '@nats-io/transport-node'
import { createActor, type ActorRefFrom } from 'xstate'
import type { BookieTransport } from '../client/bookieClient.ts'
import { recoverLedger } from '../client/recovery.ts'
import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { defaultSkewMarginMs, leaseValid, type Lease } from '../machines/auditor.ts'
import { QuireError, isQuireError } from '../machines/errors.ts'
import {
  countHeld, heldEntries, planLedger, replaceInSegment, replicatorMachine,
  type CopyParams, type Plan, type ReleaseParams, type ReplicatorEvent, type UpdateParams,
} from '../machines/replicator.ts'
import { claimKey, type UnderReplicatedMark } from '../storage/autorecoveryStore.ts'
import { isBookieAlive, pickBookies, type BookieRecord, type LedgerMetadata, type Versioned } from '../storage/metadataStore.ts'
import { KvConflict } from '../storage/types.ts'
import { every } from '../transport/clock.ts'
import { masterKeyOf, passwordCheckOf } from '../transport/entry.ts'
import {
  defaultNodeId, openAutorecoveryParts, settleWithin, toLogFn, type AutorecoveryConnection, type AutorecoveryParts, type LogFn, type PinoLike,
} from './autorecoveryParts.ts'
import { addEntries, lackingEntries, readFromReplicas, type CopyIo } from './entryCopy.ts'
import { fetchMasterKey } from './masterKeys.ts'
import { watchActor } from '../transport/inspect.ts'
import { autorecoveryMetrics } from './metrics.ts'

/** Master keys a worker keeps, fetched from bookies (one per ledger it re-replicated lately). */
const FETCHED_KEYS_MAX = 1000

export interface ReplicatorHooks {
  /** A claim was won (`previousHolder` set when it was taken over from another worker). */
  onClaimed?(info: { ledgerId: number; nodeId: string; now: number; previousHolder: string | null; previousExpiresAt: number | null }): void
  /** After each batch of entries copied; a test may crash the worker here. */
  afterCopyBatch?(info: { ledgerId: number; bookieId: string; target: string; copied: number; total: number }): void | Promise<void>
  /** A ledger's claim was released: `done` means its mark was cleared. */
  onReleased?(info: { ledgerId: number; outcome: ReleaseParams['outcome'] }): void
  /**
   * Which bookie replaces a lost one; default: a live one in neither the segment nor the lost
   * (`exclude`). Only the simulator's known-broken variants set it; the product never does.
   */
  pickReplacement?(info: { registered: BookieRecord[]; now: number; random: () => number; exclude: readonly string[]; ensemble: readonly string[] }): string
}

export interface ReplicatorOptions extends AutorecoveryConnection {
  nodeId?: string
  log?: LogFn | PinoLike
  /** An open ledger whose last segment lost a bookie is left to its writer this long. Default 10000. */
  replicationGraceMs?: number
  /** A claim's lease, renewed every third of it while working. Default 30000. */
  claimLeaseMs?: number
  /** Clock skew tolerated between nodes. Default a fifth of the claim lease. */
  clockSkewMarginMs?: number
  /** Between looks for work when there was none. Default 1000. */
  pollMs?: number
  /** Candidate ledger passwords (see the header). Default ['']. */
  passwords?: Array<string | Uint8Array>
  readTimeoutMs?: number
  addTimeoutMs?: number
  /** Entries copied per batch. Default 100. */
  copyBatchEntries?: number
  /** Only ledgers this accepts (the shell's `recover` works on one bookie's ledgers). */
  only?: (ledgerId: number) => boolean
  /** Work even while autorecovery is disabled (an operator's explicit `recover`). Default false. */
  ignoreDisabled?: boolean
  random?: () => number
  hooks?: ReplicatorHooks
  /** Publish the replicator's actor and its copies' writers on `quire.inspect.*` for the inspector. Default false. */
  inspect?: boolean
  /** Settings of the other autorecovery roles, accepted so one settings object fits all. */
  lostBookieRecoveryDelayMs?: number
  auditorLeaseMs?: number
  auditIntervalMs?: number
}

export interface ReplicatorHandle {
  /** Release any claim and stop. */
  stop(): Promise<void>
  /** Stop at once without releasing the claim (a killed process); the claim then expires. */
  crash(): Promise<void>
  /** The worker machine's state: idle, claiming, planning, recovering, copying, updating, releasing, stopped. */
  readonly state: string
  readonly stats: ReplicatorStats
}

export interface ReplicatorStats {
  /** Ledgers whose mark this worker cleared. */
  ledgersDone: number
  entriesCopied: number
  ledgersRecovered: number
  failures: number
}

type WorkerActor = ActorRefFrom<typeof replicatorMachine>

const MARKS_LISTED_MAX = 1000
const CLAIM_TRIES_MAX = 20
const CAS_ATTEMPTS_MAX = 20
const BACKOFF_BASE_MS = 1000
const BACKOFF_MAX_MS = 60_000
const STOP_WAIT_MS = 20_000
const HALT_WAIT_MS = 5000

export async function startReplicator(opts: ReplicatorOptions): Promise<ReplicatorHandle> {
  const nodeId = opts.nodeId ?? defaultNodeId()
  const parts = await openAutorecoveryParts(opts, `quire-replicator-${nodeId}`)
  if (parts.bookies === null) {
    await parts.close()
    throw new QuireError('INVALID_CONFIG', 'a replicator needs a NATS connection (or a bookie transport) to reach the bookies')
  }
  const w = new ReplicationWorker(parts, parts.bookies, nodeId, opts)
  w.start()
  return {
    stop: () => w.stop(),
    crash: () => w.crash(),
    get state() { return String(w.actor.getSnapshot().value) },
    get stats() { return { ...w.stats } },
  }
}

/** Thrown inside work that was overtaken (claim lost, worker stopping or dead): never reported. */
class Abandoned extends Error {}

interface Current {
  ledgerId: number
  mark: Versioned<UnderReplicatedMark> | null
  md: LedgerMetadata | null
  /** Damaged bookies repaired under this claim (they stay in the mark until it is cleared). */
  repaired: string[]
}

class ReplicationWorker {
  readonly actor: WorkerActor
  readonly stats: ReplicatorStats = { ledgersDone: 0, entriesCopied: 0, ledgersRecovered: 0, failures: 0 }
  private readonly log: LogFn
  private readonly leaseMs: number
  private readonly marginMs: number
  private readonly graceMs: number
  private readonly passwords: Array<string | Uint8Array>
  /** Master keys bookies gave for ledgers no candidate password opens (bounded, oldest out). */
  private readonly fetchedKeys = new Map<number, Buffer>()
  private readonly io: CopyIo
  private readonly batchEntries: number
  private readonly random: () => number
  /** Where inspection goes: the connection with `inspect`, else nowhere. */
  private readonly inspectSink: NatsConnection | null
  /** Bumped when work is overtaken; results of older work are dropped. */
  private gen = 0
  private dead = false
  private claim: { ledgerId: number; lease: Lease; revision: number } | null = null
  private renewTimer: (() => void) | null = null
  private renewing: Promise<void> | null = null
  private current: Current | null = null
  private readonly backoff = new Map<number, number>()
  private readonly failures = new Map<number, number>()
  private unwatch: () => void = () => {}
  /** Effects under way, awaited (briefly) before the connection is closed. */
  private readonly inFlight = new Set<Promise<unknown>>()

  constructor(
    private readonly p: AutorecoveryParts,
    private readonly bookies: BookieTransport,
    private readonly nodeId: string,
    private readonly opts: ReplicatorOptions,
  ) {
    this.log = toLogFn(opts.log)
    this.leaseMs = opts.claimLeaseMs ?? ROLE_DEFAULTS.claimLeaseMs
    this.marginMs = opts.clockSkewMarginMs ?? defaultSkewMarginMs(this.leaseMs)
    this.graceMs = opts.replicationGraceMs ?? ROLE_DEFAULTS.replicationGraceMs
    this.passwords = opts.passwords ?? ['']
    this.io = { bookies, readTimeoutMs: opts.readTimeoutMs ?? 5000, addTimeoutMs: opts.addTimeoutMs ?? 10_000, clock: p.clock }
    this.batchEntries = opts.copyBatchEntries ?? 100
    this.random = opts.random ?? Math.random
    this.inspectSink = opts.inspect ? p.nc : null
    if (!(this.leaseMs > 0 && this.marginMs >= 0 && this.marginMs < this.leaseMs / 2) || !(this.batchEntries >= 1)) {
      throw new QuireError('INVALID_CONFIG', `claim lease ${this.leaseMs} ms needs a clock skew margin below half of it (got ${this.marginMs}) and batches of at least 1 entry`)
    }
    const machine = replicatorMachine.provide({
      actions: {
        'claim.next': () => this.work((g) => this.claimNext(g)),
        'ledger.plan': (_, { ledgerId }) => this.work(async (g) => ({ type: 'planned', plan: await this.plan(g, ledgerId) })),
        'ledger.recover': (_, { ledgerId }) => this.work((g) => this.recover(g, ledgerId)),
        'segment.copy': (_, params) => this.work((g) => this.copy(g, params)),
        'ensemble.update': (_, params) => this.work((g) => this.update(g, params)),
        'claim.release': (_, params) => this.work(() => this.release(params)),
      },
    })
    this.actor = createActor(machine, { clock: p.clock, input: { nodeId, pollMs: opts.pollMs ?? 1000 } })
  }

  start(): void {
    this.unwatch = watchActor(this.actor, this.inspectSink, 'replicator', this.nodeId)
    this.actor.start()
  }

  async stop(): Promise<void> {
    if (this.dead) return
    this.gen++
    const stopped = new Promise<void>((resolve) => {
      const sub = this.actor.subscribe({ next: (s) => { if (s.status === 'done') { sub.unsubscribe(); resolve() } }, complete: resolve, error: () => resolve() })
      if (this.actor.getSnapshot().status === 'done') resolve()
    })
    this.actor.send({ type: 'stop' })
    await settleWithin([stopped], STOP_WAIT_MS, this.p.clock)
    await this.halt()
  }

  async crash(): Promise<void> {
    if (this.dead) return
    this.log('replication worker crashed (test hook): claim left to expire', { ledgerId: this.claim?.ledgerId })
    await this.halt()
  }

  private async halt(): Promise<void> {
    this.dead = true
    this.gen++
    this.stopRenewing()
    this.unwatch()
    this.actor.stop()
    // Overtaken work stops at its next check; let it get there before the connection goes.
    await settleWithin([...this.inFlight, ...(this.renewing ? [this.renewing] : [])], HALT_WAIT_MS, this.p.clock)
    await this.p.close()
  }

  /** Run one effect; its resulting event reaches the machine unless the work was overtaken. */
  private work(fn: (gen: number) => Promise<ReplicatorEvent>): void {
    const gen = this.gen
    const running = fn(gen)
    this.inFlight.add(running)
    running.then(() => this.inFlight.delete(running), () => this.inFlight.delete(running))
    running.then(
      (e) => { if (gen === this.gen && !this.dead) this.actor.send(e) },
      (err: unknown) => {
        if (err instanceof Abandoned || gen !== this.gen || this.dead) return
        this.log('replication step failed', { ledgerId: this.current?.ledgerId, error: err instanceof Error ? err.message : String(err) })
        this.actor.send({ type: 'failed', message: err instanceof Error ? err.message : String(err) })
      },
    )
  }

  /** Throws Abandoned unless this work is current and the claim on `ledgerId` is still valid. */
  private check(gen: number, ledgerId?: number): void {
    if (this.dead || gen !== this.gen) throw new Abandoned()
    if (ledgerId === undefined) return
    const c = this.claim
    if (!c || c.ledgerId !== ledgerId) throw new Abandoned()
    if (!leaseValid(c.lease.expiresAt, this.p.now(), this.marginMs)) {
      this.loseClaim('the claim expired before it could be renewed')
      throw new Abandoned()
    }
  }

  // --- claims ---

  private async claimNext(gen: number): Promise<ReplicatorEvent> {
    if (!this.opts.ignoreDisabled && !(await this.p.store.isEnabled())) return { type: 'claim.none' }
    const marks = await this.p.store.listMarks(MARKS_LISTED_MAX)
    const now = this.p.now()
    for (const [id, until] of this.backoff) if (until <= now) this.backoff.delete(id)
    const candidates = marks.map((m) => m.value.ledgerId).filter((id) => !this.backoff.has(id) && (this.opts.only?.(id) ?? true))
    shuffle(candidates, this.random)
    for (const ledgerId of candidates.slice(0, CLAIM_TRIES_MAX)) {
      this.check(gen)
      const r = await this.p.store.acquireLease(claimKey(ledgerId), this.nodeId, this.leaseMs, this.marginMs)
      if (!r.acquired) continue
      if (gen !== this.gen || this.dead) {
        await this.p.store.releaseLease(claimKey(ledgerId), this.nodeId, r.revision, this.marginMs).catch(() => false)
        throw new Abandoned()
      }
      this.claim = { ledgerId, lease: r.lease, revision: r.revision }
      this.startRenewing()
      const took = r.decision.kind === 'takeover' ? r.decision : null
      if (took && took.previousHolder !== '') this.log('took over an expired claim', { ledgerId, previousHolder: took.previousHolder })
      this.opts.hooks?.onClaimed?.({
        ledgerId, nodeId: this.nodeId, now: this.p.now(),
        previousHolder: took?.previousHolder || null, previousExpiresAt: took ? took.previousExpiresAt : null,
      })
      return { type: 'claimed', ledgerId }
    }
    return { type: 'claim.none' }
  }

  private startRenewing(): void {
    this.stopRenewing()
    this.renewTimer = every(this.p.clock, Math.max(1, Math.floor(this.leaseMs / 3)), () => {
      if (this.renewing || !this.claim) return
      this.renewing = this.renewClaim().finally(() => { this.renewing = null })
    })
  }

  private stopRenewing(): void {
    this.renewTimer?.()
    this.renewTimer = null
  }

  private async renewClaim(): Promise<void> {
    const c = this.claim
    if (!c) return
    try {
      const r = await this.p.store.renewLease(claimKey(c.ledgerId), c.lease, c.revision, this.leaseMs)
      if (this.claim === c) this.claim = { ledgerId: c.ledgerId, lease: r.lease, revision: r.revision }
    } catch (err) {
      if (this.claim !== c) return
      if (err instanceof KvConflict) this.loseClaim('another worker took the claim over')
      else if (!leaseValid(c.lease.expiresAt, this.p.now(), this.marginMs)) this.loseClaim(`could not renew the claim: ${String(err)}`)
    }
  }

  private loseClaim(reason: string): void {
    if (!this.claim) return
    this.log('claim lost: work on the ledger dropped', { ledgerId: this.claim.ledgerId, reason })
    this.claim = null
    this.current = null
    this.stopRenewing()
    this.gen++
    if (!this.dead) this.actor.send({ type: 'claim.lost' })
  }

  // --- planning and recovery ---

  private async plan(gen: number, ledgerId: number): Promise<Plan> {
    this.check(gen, ledgerId)
    const mark = await this.p.store.readMark(ledgerId)
    const repaired = this.current?.ledgerId === ledgerId ? this.current.repaired : []
    this.current = { ledgerId, mark, md: null, repaired }
    if (!mark) return { kind: 'clear' }
    let md: LedgerMetadata
    try {
      md = (await this.p.metadata.readLedger(ledgerId)).value
    } catch (err) {
      if (isQuireError(err, 'NO_SUCH_LEDGER')) return { kind: 'clear' }
      throw err
    }
    const bookies = await this.p.metadata.listBookies()
    const now = this.p.now()
    const alive = new Set(bookies.filter((b) => isBookieAlive(b, now)).map((b) => b.bookieId))
    this.current = { ledgerId, mark, md, repaired }
    const plan = planLedger(md, mark.value, (b) => alive.has(b), now, this.graceMs, repaired)
    if (plan.kind === 'wait') this.backoff.set(ledgerId, plan.untilMs)
    return plan
  }

  private async recover(gen: number, ledgerId: number): Promise<ReplicatorEvent> {
    this.check(gen, ledgerId)
    const md = this.current?.md ?? (await this.p.metadata.readLedger(ledgerId)).value
    const masterKey = await this.masterKeyFor(md)
    this.log('recovering an open ledger that lost a bookie of its last segment', { ledgerId })
    const closed = await recoverLedger({
      bookies: this.bookies, clock: this.p.clock, metadata: this.p.metadata, masterKey,
      readTimeoutMs: this.io.readTimeoutMs, addTimeoutMs: this.io.addTimeoutMs, inspect: this.inspectSink, random: this.random,
    }, ledgerId)
    this.stats.ledgersRecovered++
    autorecoveryMetrics.ledgerRecovered()
    this.log('ledger recovered before re-replication', { ledgerId, lastEntryId: closed.lastEntryId })
    return { type: 'recovered' }
  }

  /**
   * The ledger's master key: from a candidate password whose check value matches, else asked of
   * the ledger's live bookies (actors/masterKeys.ts; kept per ledger once found) and taken only if
   * it matches the check value too.
   */
  private async masterKeyFor(md: LedgerMetadata): Promise<Buffer> {
    for (const p of this.passwords) {
      const key = masterKeyOf(p)
      if (passwordCheckOf(key) === md.passwordCheck) return key
    }
    const known = this.fetchedKeys.get(md.ledgerId)
    if (known) return known
    const nc = this.p.nc
    if (nc) {
      const registered = await this.p.metadata.listBookies()
      const now = this.p.now()
      const alive = new Set(registered.filter((b) => isBookieAlive(b, now)).map((b) => b.bookieId))
      const holders = [...new Set(md.segments.flatMap((s) => s.ensemble))].filter((b) => alive.has(b))
      const key = await fetchMasterKey(nc, md.ledgerId, md.passwordCheck, holders, this.io.readTimeoutMs)
      if (key) {
        if (this.fetchedKeys.size >= FETCHED_KEYS_MAX) this.fetchedKeys.delete(this.fetchedKeys.keys().next().value!)
        this.fetchedKeys.set(md.ledgerId, key)
        return key
      }
    }
    throw new QuireError('UNAUTHORIZED', `ledger ${md.ledgerId}: none of the replicator's ${this.passwords.length} password(s) matches it, and no live bookie of it gave its master key`, {
      ledgerId: md.ledgerId,
    })
  }

  // --- copying ---

  private async copy(gen: number, { ledgerId, job }: CopyParams): Promise<ReplicatorEvent> {
    this.check(gen, ledgerId)
    const md = (await this.p.metadata.readLedger(ledgerId)).value
    const seg = md.segments.find((s) => s.firstEntryId === job.firstEntryId)
    if (!seg || seg.ensemble[job.position] !== job.bookieId) {
      this.log('segment changed hands meanwhile; nothing to copy', { ledgerId, firstEntryId: job.firstEntryId, bookieId: job.bookieId })
      return { type: 'copied', replacement: null }
    }
    const registered = await this.p.metadata.listBookies()
    const now = this.p.now()
    const alive = new Set(registered.filter((b) => isBookieAlive(b, now)).map((b) => b.bookieId))
    let target = job.bookieId
    if (job.kind === 'replace') {
      const lost = md.segments.flatMap((s) => s.ensemble).filter((b) => !alive.has(b))
      const exclude = [...seg.ensemble, ...lost]
      const pick = this.opts.hooks?.pickReplacement
      target = pick ? pick({ registered, now, random: this.random, exclude, ensemble: seg.ensemble }) : pickBookies(registered, 1, now, this.random, exclude)[0]!
    } else if (!alive.has(target)) {
      return { type: 'copied', replacement: null }
    }
    const masterKey = await this.masterKeyFor(md)
    const { ensembleSize: e, writeQuorum: qw } = md
    const total = countHeld(job.firstEntryId, job.lastEntryId, job.position, e, qw)
    let copied = 0
    for (let from = job.firstEntryId; from <= job.lastEntryId;) {
      const ids = heldEntries(from, job.lastEntryId, job.position, e, qw, this.batchEntries)
      if (ids.length === 0) break
      from = ids[ids.length - 1]! + 1
      this.check(gen, ledgerId)
      const need = job.kind === 'repair' ? await lackingEntries(this.io, target, md, ids, masterKey) : ids
      if (need.length > 0) {
        const data = await readFromReplicas(this.io, md, seg, job.position, need, alive, masterKey)
        this.check(gen, ledgerId)
        await addEntries(this.io, target, md, masterKey, need, data, () => this.check(gen, ledgerId))
        this.stats.entriesCopied += need.length
        autorecoveryMetrics.entriesCopied(need.length)
      }
      copied += ids.length
      await this.opts.hooks?.afterCopyBatch?.({ ledgerId, bookieId: job.bookieId, target, copied, total })
      this.check(gen, ledgerId)
    }
    if (job.kind === 'repair' && this.current?.ledgerId === ledgerId) this.current.repaired.push(job.bookieId)
    this.log(job.kind === 'replace' ? 'segment copied to a replacement bookie' : 'missing entries re-added in place', {
      ledgerId, firstEntryId: job.firstEntryId, bookieId: job.bookieId, target, entries: total,
    })
    return { type: 'copied', replacement: job.kind === 'replace' ? target : null }
  }

  // --- metadata ---

  private async update(gen: number, { ledgerId, job, replacement }: UpdateParams): Promise<ReplicatorEvent> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt++) {
      this.check(gen, ledgerId)
      const cur = await this.p.metadata.readLedger(ledgerId)
      const d = replaceInSegment(cur.value, job.firstEntryId, job.position, job.bookieId, replacement)
      if (d.kind === 'skip') {
        this.log('ensemble left as it is', { ledgerId, firstEntryId: job.firstEntryId, reason: d.reason })
        return { type: 'updated' }
      }
      try {
        await this.p.metadata.writeLedger({ ...cur.value, segments: d.segments }, cur.revision)
        this.log('segment re-replicated', { ledgerId, firstEntryId: job.firstEntryId, from: job.bookieId, to: replacement })
        return { type: 'updated' }
      } catch (err) {
        // A writer (ensemble change, close) or another worker got there first: re-read, re-decide.
        if (!(err instanceof KvConflict)) throw err
      }
    }
    throw new QuireError('METADATA_CONFLICT', `could not update the ensemble of ledger ${ledgerId}: too many concurrent metadata updates`, { ledgerId })
  }

  /** Never fails: whatever happens, the machine must leave `releasing`. */
  private async release({ ledgerId, outcome }: ReleaseParams): Promise<ReplicatorEvent> {
    try {
      const mark = this.current?.ledgerId === ledgerId ? this.current.mark : null
      if (outcome === 'done') {
        this.failures.delete(ledgerId)
        if (mark && this.claim?.ledgerId === ledgerId && (await this.p.store.clearMark(ledgerId, mark.revision))) {
          this.stats.ledgersDone++
          autorecoveryMetrics.ledgerReplicated()
          this.log('ledger fully replicated: mark cleared', { ledgerId })
        }
      } else if (outcome === 'failed') {
        const n = (this.failures.get(ledgerId) ?? 0) + 1
        this.failures.set(ledgerId, n)
        this.stats.failures++
        autorecoveryMetrics.replicationFailed()
        this.backoff.set(ledgerId, this.p.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (n - 1)))
      }
    } catch (err) {
      this.log('clearing the mark failed; the ledger will be looked at again', { ledgerId, error: String(err) })
    }
    this.stopRenewing()
    await this.renewing?.catch(() => {})
    const c = this.claim
    this.claim = null
    this.current = null
    if (c) await this.p.store.releaseLease(claimKey(c.ledgerId), this.nodeId, c.revision, this.marginMs).catch(() => false)
    this.opts.hooks?.onReleased?.({ ledgerId, outcome })
    return { type: 'released' }
  }
}

function shuffle<T>(a: T[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = a[i]!
    a[i] = a[j]!
    a[j] = t
  }
}
