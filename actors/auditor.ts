// The auditor role: binds machines/auditor.ts to KV (the lease, bookie registrations, ledger
// metadata, marks), to NATS (`triggeraudit` requests) and to the bookies (the entry scan).
//
// What it does as leader (PROTOCOL.md "Auto-recovery"):
// - every checkIntervalMs: list bookie registrations (dead = 5 missed heartbeats); once a bookie
//   has been lost for lostBookieRecoveryDelayMs, mark every ledger with a segment on it;
// - every auditIntervalMs (and on `triggeraudit`): go over every ledger: segments on bookies lost
//   long enough are marked, and a bounded number of closed ledgers (scanLedgersPerAudit, taken in
//   turn from audit to audit) are scanned on each live replica: one LAC read (does it hold up to
//   the last entry it should?) and one read of a few sample entries (present and intact?);
//   a replica lacking entries marks the ledger `damaged` for that bookie;
// - at each check, the ledgers a live bookie lists in its registration as holding damaged copies
//   (`damagedLedgers`: bit rot in its entry store, found by the bookie itself) are marked
//   `damaged` for it too, so their copies are re-added in place;
// - at the end of each audit, named logs' retention (actors/logRetention.ts).
// Invariants: no mark is written unless this node holds a valid lease (checked before each
// write) and autorecovery is enabled; a timeout or an error from a bookie is never read as a
// missing entry (PROTOCOL.md "Response classes").
// `crash()` stops everything without releasing the lease, as a killed process would.

import type { Msg, Subscription } from '@nats-io/transport-node'
import type { BookieTransport } from '../client/bookieClient.ts'
import { createActor, type ActorRefFrom } from 'xstate'
import {
  auditorMachine, auditorPhase, defaultSkewMarginMs, leaseValid, type AuditParams, type Lease, type MarkLostParams,
} from '../machines/auditor.ts'
import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { QuireError, isQuireError } from '../machines/errors.ts'
import { countHeld, holdsEntry, segmentRange } from '../machines/replicator.ts'
import { AUDITOR_KEY } from '../storage/autorecoveryStore.ts'
import { DAMAGED_LEDGERS_LISTED_MAX, isBookieAlive, type BookieRecord, type LedgerMetadata } from '../storage/metadataStore.ts'
import { LogStore } from '../storage/logStore.ts'
import { KvConflict, type VersionedKv } from '../storage/types.ts'
import { RC, entryAnswer, type EntryAnswer } from '../machines/responses.ts'
import { NO_PASSWORD_KEY, passwordCheckOf } from '../transport/entry.ts'
import {
  defaultNodeId, openAutorecoveryParts, settleWithin, toLogFn, type AutorecoveryConnection, type AutorecoveryParts, type LogFn, type PinoLike,
} from './autorecoveryParts.ts'
import { watchActor } from '../transport/inspect.ts'
import { applyRetention } from './logRetention.ts'
import { autorecoveryMetrics } from './metrics.ts'

/** The metadata's password check of a ledger without a password: its entries are read with no key. */
const NO_PASSWORD_CHECK = passwordCheckOf(NO_PASSWORD_KEY)

/** Where `quire shell triggeraudit` asks the auditor for an audit now. */
export const TRIGGER_AUDIT_SUBJECT = 'quire.autorecovery.audit'

export interface AuditorOptions extends AutorecoveryConnection {
  nodeId?: string
  log?: LogFn | PinoLike
  /** How long a bookie must be lost before its ledgers are marked. Default 30000. */
  lostBookieRecoveryDelayMs?: number
  /** The auditor's lease; renewed every third of it. Default 10000. */
  auditorLeaseMs?: number
  /** Between full audits. Default 60000. */
  auditIntervalMs?: number
  /** Between liveness checks of the bookies. Default 1000. */
  checkIntervalMs?: number
  /** Publish the auditor's actor on `quire.inspect.*` for the inspector. Default false. */
  inspect?: boolean
  /** Clock skew tolerated between nodes (see machines/auditor.ts). Default a fifth of the lease. */
  clockSkewMarginMs?: number
  /** Closed ledgers whose replicas are scanned per audit. Default 200. */
  scanLedgersPerAudit?: number
  /** Entries read per replica per scanned ledger. Default 8. */
  scanSampleEntries?: number
  /** Bound on each scan request to a bookie. Default 5000. */
  readTimeoutMs?: number
  /** Replace a rule of the auditor machine (machine.provide), for the simulator's known-broken variants; the product never does. */
  logic?: (m: typeof auditorMachine) => typeof auditorMachine
}

export interface AuditorHandle {
  stop(): Promise<void>
  /** Stop without releasing the lease (a killed process); the lease then expires. */
  crash(): Promise<void>
  /** candidate, leader, auditing or stopped. */
  readonly phase: string
  readonly isLeader: boolean
}

export interface AuditSummary {
  auditor: string
  /** Ledgers whose metadata was read; `unreadable` could not be (they are looked at next time). */
  checked: number
  unreadable: number
  /** Ledgers newly marked for lost bookies, and for live replicas lacking entries. */
  marked: number
  damaged: number
  /** Closed ledgers whose replicas were scanned. */
  scanned: number
  /** Named logs' segments truncated by their retention (actors/logRetention.ts). */
  truncated: number
}

type AuditorActor = ActorRefFrom<typeof auditorMachine>

const SCAN_READ_BYTES = 1024 * 1024
const HALT_WAIT_MS = 5000
/** Ledgers in a row whose metadata could not be read before an audit gives up. */
const AUDIT_READ_FAILURES_MAX = 5
const ALIVE_REFRESH_MS = 2000
/** A ledger a bookie keeps reporting damaged is marked again after this long (see markDamaged). */
const DAMAGE_REMARK_MS = 30_000

export async function startAuditor(opts: AuditorOptions): Promise<AuditorHandle> {
  const nodeId = opts.nodeId ?? defaultNodeId()
  const parts = await openAutorecoveryParts(opts, `quire-auditor-${nodeId}`)
  const a = new Auditor(parts, nodeId, opts)
  a.start()
  return {
    stop: () => a.stop(),
    crash: () => a.crash(),
    get phase() { return a.phase },
    get isLeader() { return a.leading() },
  }
}

class Auditor {
  private readonly actor: AuditorActor
  private readonly log: LogFn
  private readonly leaseMs: number
  private readonly marginMs: number
  private readonly scanLedgersPerAudit: number
  private readonly scanSampleEntries: number
  private readonly readTimeoutMs: number
  private lease: { lease: Lease; revision: number } | null = null
  private acquiring = false
  private dead = false
  private triggerSub: Subscription | null = null
  private pendingTriggers: Msg[] = []
  private scanCursor = 0
  /** A pass marking the ledgers bookies report damaged is under way (one at a time). */
  private markingDamage = false
  /** When each (bookie, ledger) a bookie reports damaged was last marked. */
  private damageMarkedAt = new Map<string, number>()
  private releasing: Promise<unknown> = Promise.resolve()
  /** Effects under way, awaited (briefly) before the connection is closed. */
  private readonly inFlight = new Set<Promise<unknown>>()
  private unwatch: () => void = () => {}
  private readonly inspect: boolean

  constructor(private readonly p: AutorecoveryParts, private readonly nodeId: string, opts: AuditorOptions) {
    this.log = toLogFn(opts.log)
    this.inspect = opts.inspect ?? false
    this.leaseMs = opts.auditorLeaseMs ?? ROLE_DEFAULTS.auditorLeaseMs
    this.marginMs = opts.clockSkewMarginMs ?? defaultSkewMarginMs(this.leaseMs)
    this.scanLedgersPerAudit = opts.scanLedgersPerAudit ?? 200
    this.scanSampleEntries = opts.scanSampleEntries ?? 8
    this.readTimeoutMs = opts.readTimeoutMs ?? 5000
    if (!(this.leaseMs > 0 && this.marginMs >= 0 && this.marginMs < this.leaseMs / 2)) {
      throw new QuireError('INVALID_CONFIG', `auditor lease ${this.leaseMs} ms needs a clock skew margin below half of it, got ${this.marginMs}`)
    }
    const machine = auditorMachine.provide({
      actions: {
        'lease.acquire': () => { this.track(this.acquire()) },
        'lease.renew': () => { this.track(this.renew()) },
        'lease.release': () => { this.releasing = this.release() },
        'leader.enter': () => this.enterLeader(),
        'leader.exit': () => this.exitLeader(),
        'bookies.check': () => { this.track(this.check()) },
        'mark.lost': (_, params) => { this.track(this.markLost(params)) },
        'audit.run': (_, params) => { this.track(this.runAudit(params)) },
      },
    })
    this.actor = createActor(opts.logic ? opts.logic(machine) : machine, {
      clock: p.clock,
      input: {
        nodeId, leaseMs: this.leaseMs, clockSkewMarginMs: this.marginMs,
        checkIntervalMs: opts.checkIntervalMs ?? 1000,
        auditIntervalMs: opts.auditIntervalMs ?? ROLE_DEFAULTS.auditIntervalMs,
        lostBookieRecoveryDelayMs: opts.lostBookieRecoveryDelayMs ?? ROLE_DEFAULTS.lostBookieRecoveryDelayMs,
      },
    })
  }

  get phase(): string {
    return auditorPhase(this.actor.getSnapshot().value)
  }

  start(): void {
    this.unwatch = watchActor(this.actor, this.inspect ? this.p.nc : null, 'auditor', this.nodeId)
    this.actor.start()
  }

  /** Leader with a lease still valid by this node's clock. */
  leading(): boolean {
    return !this.dead && this.actor.getSnapshot().matches('leader') && this.lease !== null &&
      leaseValid(this.lease.lease.expiresAt, this.p.now(), this.marginMs)
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p)
    void p.finally(() => this.inFlight.delete(p))
  }

  private send(e: Parameters<AuditorActor['send']>[0]): void {
    if (!this.dead) this.actor.send(e)
  }

  async stop(): Promise<void> {
    if (this.dead) return
    this.actor.send({ type: 'stop' })
    await this.releasing.catch(() => {})
    this.shutdown()
    await settleWithin([...this.inFlight], HALT_WAIT_MS, this.p.clock)
    await this.p.close()
  }

  async crash(): Promise<void> {
    if (this.dead) return
    this.shutdown()
    await settleWithin([...this.inFlight], HALT_WAIT_MS, this.p.clock)
    await this.p.close()
  }

  private shutdown(): void {
    this.dead = true
    this.unwatch()
    this.actor.stop()
    this.triggerSub?.unsubscribe()
    this.triggerSub = null
  }

  private async acquire(): Promise<void> {
    if (this.acquiring) return
    this.acquiring = true
    try {
      const r = await this.p.store.acquireLease(AUDITOR_KEY, this.nodeId, this.leaseMs, this.marginMs)
      if (r.acquired) {
        this.lease = { lease: r.lease, revision: r.revision }
        if (r.decision.kind === 'takeover') {
          this.log('auditor lease taken over', { previousHolder: r.decision.previousHolder, previousExpiresAt: r.decision.previousExpiresAt })
        }
        this.send({ type: 'lease.acquired', now: this.p.now(), expiresAt: r.lease.expiresAt })
      } else {
        this.send({ type: 'lease.held', holder: r.current.holder, expiresAt: r.current.expiresAt, now: this.p.now() })
      }
    } catch (err) {
      this.send({ type: 'lease.failed', message: String(err) })
    } finally {
      this.acquiring = false
    }
  }

  private async renew(): Promise<void> {
    const held = this.lease
    if (!held) return this.send({ type: 'lease.lost', reason: 'no lease' })
    try {
      const r = await this.p.store.renewLease(AUDITOR_KEY, held.lease, held.revision, this.leaseMs)
      this.lease = r
      this.send({ type: 'lease.renewed', now: this.p.now(), expiresAt: r.lease.expiresAt })
    } catch (err) {
      if (err instanceof KvConflict) {
        this.lease = null
        this.log('auditor lease lost: another node holds it', {})
        this.send({ type: 'lease.lost', reason: 'taken over' })
      } else this.send({ type: 'lease.failed', message: String(err) })
    }
  }

  private async release(): Promise<void> {
    const held = this.lease
    this.lease = null
    if (held) await this.p.store.releaseLease(AUDITOR_KEY, this.nodeId, held.revision, this.marginMs).catch(() => false)
  }

  private enterLeader(): void {
    this.log('auditor elected', { nodeId: this.nodeId, expiresAt: this.lease?.lease.expiresAt })
    const nc = this.p.nc
    if (nc === null) return
    this.triggerSub = nc.subscribe(TRIGGER_AUDIT_SUBJECT, {
      callback: (err, msg) => {
        if (err) return
        void this.p.store.isEnabled().then((enabled) => {
          if (!enabled) return respond(msg, { ok: false, auditor: this.nodeId, reason: 'autorecovery is disabled' })
          this.pendingTriggers.push(msg)
          this.send({ type: 'audit.trigger' })
        }, (e: unknown) => respond(msg, { ok: false, auditor: this.nodeId, reason: String(e) }))
      },
    })
  }

  private exitLeader(): void {
    this.log('auditor stepped down', { nodeId: this.nodeId })
    this.triggerSub?.unsubscribe()
    this.triggerSub = null
    for (const m of this.pendingTriggers.splice(0)) respond(m, { ok: false, auditor: this.nodeId, reason: 'the auditor stepped down' })
  }

  private async check(): Promise<void> {
    try {
      const [list, enabled] = await Promise.all([this.p.metadata.listBookies(), this.p.store.isEnabled()])
      const now = this.p.now()
      this.send({ type: 'bookies.checked', now, enabled, registered: list.map((b) => ({ bookieId: b.bookieId, alive: isBookieAlive(b, now) })) })
      if (enabled && this.leading() && !this.markingDamage) {
        const damaged = list.filter((b) => isBookieAlive(b, now) && (b.damagedLedgers?.length ?? 0) > 0)
        if (damaged.length > 0) {
          this.markingDamage = true
          this.track(this.markDamaged(damaged).finally(() => { this.markingDamage = false }))
        }
      }
    } catch (err) {
      this.send({ type: 'check.failed', message: String(err) })
    }
  }

  /**
   * Ledgers a live bookie reports damaged copies of (its registration's `damagedLedgers`: bit rot
   * in its entry store) are marked `damaged` for it, so that a replication worker re-adds the
   * copies it lacks in place. A ledger gone from the metadata, or no longer on that bookie, is
   * skipped. Failures are logged and retried at the next check.
   */
  private async markDamaged(bookies: readonly BookieRecord[]): Promise<void> {
    // Each pair at most once per DAMAGE_REMARK_MS (a mark cleared before the bookie healed comes
    // back then); pairs no longer reported are forgotten.
    const seen = new Map<string, number>()
    const now = this.p.now()
    for (const b of bookies) for (const id of b.damagedLedgers ?? []) {
      const key = `${b.bookieId}/${id}`
      seen.set(key, this.damageMarkedAt.get(key) ?? -Infinity)
    }
    this.damageMarkedAt = seen
    for (const b of bookies) {
      for (const id of (b.damagedLedgers ?? []).slice(0, DAMAGED_LEDGERS_LISTED_MAX)) {
        if (!this.leading()) return
        const key = `${b.bookieId}/${id}`
        if (now - (seen.get(key) ?? -Infinity) < DAMAGE_REMARK_MS) continue
        seen.set(key, now)
        try {
          const md = await this.readLedger(id)
          if (!md || !md.segments.some((s) => s.ensemble.includes(b.bookieId))) continue
          if ((await this.mark(id, { damaged: [b.bookieId] })) !== 'unchanged') {
            this.log('bookie reports damaged copies: ledger marked for repair', { ledgerId: id, bookieId: b.bookieId })
            this.countMarks()
          }
        } catch (err) {
          seen.delete(key) // looked at again at the next check
          if (err instanceof NotLeader) return
          this.log('marking a ledger with damaged copies failed', { ledgerId: id, bookieId: b.bookieId, error: String(err) })
        }
      }
    }
  }

  /** Mark every ledger with a segment on one of `bookieIds`. */
  private async markLost({ bookieIds }: MarkLostParams): Promise<void> {
    try {
      let marked = 0
      let unreadable = 0
      for await (const id of this.p.metadata.listLedgers()) {
        if (!this.leading()) throw new NotLeader(this.nodeId)
        let md: LedgerMetadata | null
        try {
          md = await this.readLedger(id)
        } catch (err) {
          if (err instanceof NotLeader || ++unreadable >= AUDIT_READ_FAILURES_MAX) throw err
          continue
        }
        if (!md) continue
        const hits = bookieIds.filter((b) => md.segments.some((s) => s.ensemble.includes(b)))
        if (hits.length > 0 && (await this.mark(id, { missing: hits })) !== 'unchanged') marked++
      }
      this.log('lost bookies: ledgers marked under-replicated', { bookies: bookieIds, marked, unreadable })
      this.countMarks()
      // A ledger that could not be read is not marked yet: the pass runs again at the next check.
      if (unreadable > 0) this.send({ type: 'mark.failed', message: `${unreadable} ledger(s) could not be read` })
      else this.send({ type: 'marked', bookieIds })
    } catch (err) {
      this.log('marking the ledgers of lost bookies failed', { bookies: bookieIds, error: String(err) })
      this.send({ type: 'mark.failed', message: String(err) })
    }
  }

  private async mark(ledgerId: number, what: { missing?: string[]; damaged?: string[] }): Promise<'created' | 'merged' | 'unchanged'> {
    // Checked before each write: a node that lost the lease (or was disabled) writes nothing more.
    if (!this.leading()) throw new NotLeader(this.nodeId)
    return this.p.store.mark(ledgerId, what, this.nodeId)
  }

  private async readLedger(id: number): Promise<LedgerMetadata | null> {
    try {
      return (await this.p.metadata.readLedger(id)).value
    } catch (err) {
      if (isQuireError(err, 'NO_SUCH_LEDGER')) return null
      throw err
    }
  }

  /** quire_autorecovery_under_replicated_ledgers: the marks in the store now (replicators clear them). */
  private countMarks(): void {
    void this.p.store.listMarks().then((m) => autorecoveryMetrics.underReplicatedLedgers(m.length), () => {})
  }

  private async runAudit(params: AuditParams): Promise<void> {
    const waiting = this.pendingTriggers.splice(0)
    try {
      const { summary, unregistered } = await this.audit(params)
      this.log('audit done', { ...summary })
      this.countMarks()
      for (const m of waiting) respond(m, { ok: true, ...summary })
      this.send({ type: 'audit.done', now: this.p.now(), unregistered, markedBookies: params.lostBookies })
    } catch (err) {
      this.log('audit failed', { error: String(err) })
      for (const m of waiting) respond(m, { ok: false, auditor: this.nodeId, reason: String(err) })
      this.send({ type: 'audit.failed', now: this.p.now(), message: String(err) })
    }
  }

  private async audit({ lostBookies, known }: AuditParams): Promise<{ summary: AuditSummary; unregistered: string[] }> {
    const registered = await this.p.metadata.listBookies()
    const registeredIds = new Set(registered.map((b) => b.bookieId))
    const scan: ScanState = { alive: new Set(), aliveAt: -Infinity, unresponsive: new Set() }
    const lost = new Set(lostBookies)
    const knownIds = new Set(known)
    const unregistered = new Set<string>()
    const ids: number[] = []
    for await (const id of this.p.metadata.listLedgers()) ids.push(id)
    // Scanning starts after the ledger the last audit scanned last, so every ledger gets its turn.
    const start = ids.findIndex((id) => id > this.scanCursor)
    const order = start < 0 ? ids : [...ids.slice(start), ...ids.slice(0, start)]
    const summary: AuditSummary = { auditor: this.nodeId, checked: 0, marked: 0, damaged: 0, scanned: 0, unreadable: 0, truncated: 0 }
    let failuresInARow = 0
    for (const id of order) {
      if (!this.leading()) throw new NotLeader(this.nodeId)
      let md: LedgerMetadata | null
      try {
        md = await this.readLedger(id)
        failuresInARow = 0
      } catch (err) {
        // One unreadable ledger (a metadata timeout) must not end the audit; many in a row do.
        summary.unreadable++
        if (++failuresInARow >= AUDIT_READ_FAILURES_MAX) throw err
        continue
      }
      if (!md) continue
      summary.checked++
      const refs = [...new Set(md.segments.flatMap((s) => s.ensemble))]
      for (const b of refs) if (!registeredIds.has(b) && !knownIds.has(b) && !lost.has(b)) unregistered.add(b)
      const missing = refs.filter((b) => lost.has(b))
      if (missing.length > 0 && (await this.mark(id, { missing })) !== 'unchanged') summary.marked++
      if (summary.scanned < this.scanLedgersPerAudit && md.state === 'CLOSED' && md.lastEntryId >= 0 && this.p.bookies) {
        summary.scanned++
        this.scanCursor = id
        const damaged = await this.scanReplicas(md, await this.refreshAlive(scan), scan.unresponsive, this.p.bookies)
        if (damaged.length > 0) {
          this.log('replicas lacking entries', { ledgerId: id, bookies: damaged })
          if ((await this.mark(id, { damaged })) !== 'unchanged') summary.damaged++
        }
      }
    }
    summary.truncated = await this.retention()
    return { summary, unregistered: [...unregistered].sort() }
  }

  /** Named logs' retention, by this elected auditor; none without a logs bucket (unit tests' stores). */
  private async retention(): Promise<number> {
    let kv: VersionedKv
    try {
      kv = this.p.metadata.logsKv
    } catch {
      return 0
    }
    const done = await applyRetention(new LogStore(kv), (id) => this.p.metadata.deleteLedger(id), this.p.now, () => this.leading())
    for (const r of done) this.log('log segments truncated by retention', { log: r.log, segments: r.segments })
    return done.reduce((n, r) => n + r.segments.length, 0)
  }

  /** The live bookies, re-listed every few seconds of a long audit. */
  private async refreshAlive(scan: ScanState): Promise<ReadonlySet<string>> {
    const now = this.p.now()
    if (now - scan.aliveAt >= ALIVE_REFRESH_MS) {
      const list = await this.p.metadata.listBookies()
      scan.alive = new Set(list.filter((b) => isBookieAlive(b, now)).map((b) => b.bookieId))
      scan.aliveAt = now
    }
    return scan.alive
  }

  /**
   * Live replicas of a closed ledger that lack entries they should hold: a LAC read (the highest
   * entry the bookie holds must reach the last one it should), then a read of a few sample
   * entries. Only explicit negatives count; a bookie that times out or errs says nothing, and is
   * skipped for the rest of the audit (`unresponsive`) so that a dying bookie costs one timeout.
   */
  private async scanReplicas(md: LedgerMetadata, alive: ReadonlySet<string>, unresponsive: Set<string>, bookies: BookieTransport): Promise<string[]> {
    const expect = new Map<string, { last: number; sample: Set<number> }>()
    md.segments.forEach((seg, i) => {
      const range = segmentRange(md, i)
      if (range === null || range.last < range.first) return
      seg.ensemble.forEach((b, position) => {
        if (!alive.has(b) || unresponsive.has(b) || countHeld(range.first, range.last, position, md.ensembleSize, md.writeQuorum) === 0) return
        let e = expect.get(b)
        if (!e) expect.set(b, (e = { last: -1, sample: new Set() }))
        const held = sampleHeld(range.first, range.last, position, md.ensembleSize, md.writeQuorum, this.scanSampleEntries)
        e.last = Math.max(e.last, held[held.length - 1]!)
        for (const id of held) e.sample.add(id)
      })
    })
    const verdicts = await Promise.all([...expect].map(async ([b, e]): Promise<string | null> => {
      const lac = await bookies.readLac(b, md.ledgerId, this.readTimeoutMs).catch(() => null)
      if (lac === null || (lac.rc !== RC.OK && lac.rc !== RC.NO_SUCH_LEDGER)) {
        unresponsive.add(b)
        return null
      }
      if (lac.rc === RC.NO_SUCH_LEDGER || lac.lastEntryId < e.last) return b
      // Bookies give the entries of a ledger with a password only with its master key, which the auditor does not have.
      if (md.passwordCheck !== NO_PASSWORD_CHECK) return null
      const sample = [...e.sample].sort((x, y) => x - y).slice(0, this.scanSampleEntries)
      const r = await bookies.read(b, md.ledgerId, sample, SCAN_READ_BYTES, this.readTimeoutMs).catch(() => null)
      if (r === null) {
        unresponsive.add(b)
        return null
      }
      // Lacking: the bookie says it has no copy, or holds one it cannot serve (explicit answers only).
      const lacks = (a: EntryAnswer): boolean => a === 'absent' || a === 'corrupt'
      const lacking = lacks(entryAnswer(r.rc, undefined)) || r.entries.some((a) => lacks(entryAnswer(r.rc, a)))
      return lacking ? b : null
    }))
    return verdicts.filter((b): b is string => b !== null).sort()
  }
}

interface ScanState {
  alive: Set<string>
  aliveAt: number
  unresponsive: Set<string>
}

/** Up to `max` entries of first..last held by `position`: the first, the last, and evenly between. */
function sampleHeld(first: number, last: number, position: number, e: number, qw: number, max: number): number[] {
  const out = new Set<number>()
  const snap = (id: number): number | null => {
    for (let k = id; k <= last && k < id + e; k++) if (holdsEntry(k, position, e, qw)) return k
    for (let k = id; k >= first && k > id - e; k--) if (holdsEntry(k, position, e, qw)) return k
    return null
  }
  const n = Math.max(2, max)
  for (let i = 0; i < n; i++) {
    const id = snap(Math.round(first + ((last - first) * i) / (n - 1)))
    if (id !== null) out.add(id)
  }
  return [...out].sort((a, b) => a - b)
}

/** Ends an audit or a marking pass when this node is no longer a valid leader. */
class NotLeader extends Error {
  constructor(nodeId: string) {
    super(`${nodeId} is no longer the auditor`)
  }
}

/** Answer a `triggeraudit` request; the asker may be gone. */
function respond(msg: Msg, body: Record<string, unknown>): void {
  try {
    msg.respond(Buffer.from(JSON.stringify(body)))
  } catch {
    // The asker gave up; nothing to do.
  }
}
