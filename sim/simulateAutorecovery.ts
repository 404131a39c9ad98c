// One deterministic simulation run of autorecovery: the product's auditor and replication workers
// (actors/auditor.ts, actors/replicator.ts, their machines) and bookies (sim/bookieNode.ts), each
// a process with its own node, metadata view and clock, over the simulated cluster. Ledgers are
// written (every one with Qa >= 2, so that one lost bookie leaves a copy of every entry), most of
// them closed, some left open by a writer that died; then one bookie is lost: for good (kill -9,
// never back), or its disk is wiped and it comes back empty under the same id. Meanwhile an
// auditor may be killed (the other takes the lease over), a worker may be killed mid-copy (its
// claim expires), and the network drops, duplicates and delays a little. Checkers:
// - every ledger of a bookie lost for good is fully replicated again within RECOVERY_BOUND_MS of
//   its loss: no segment names it, and every entry of the positions it held is on the replacement
//   (a ledger still open at the loss is recovered first, whose write-back leaves each entry on at
//   least Qa bookies of its write set, as a writer does);
//   a wiped bookie holds again every entry the closed ledgers place on it; and a worker clears a
//   mark only once those copies are durable (in the journal or the store) where they belong;
// - no ensemble names a bookie twice;
// - a lost bookie's ledgers are marked only after it has been lost for lostBookieRecoveryDelayMs.

import { startAuditor, type AuditorHandle, type AuditorOptions } from '../actors/auditor.ts'
import { startReplicator, type ReplicatorHandle, type ReplicatorHooks } from '../actors/replicator.ts'
import type { AckHandler, BookieTransport } from '../client/internal.ts'
import { writeSetIndices } from '../machines/quorum.ts'
import { AutorecoveryStore } from '../storage/autorecoveryStore.ts'
import { MetadataStore, type LedgerMetadata } from '../storage/metadataStore.ts'
import { RC, type DigestType } from '../machines/responses.ts'
import { readEntryHeader } from '../transport/entry.ts'
import { HEARTBEAT_MS, runUntil, simCluster } from './cluster.ts'
import { ProcessClock } from './network.ts'
import type { SimResult } from './simulate.ts'
import { SimTransport } from './transport.ts'
import { World } from './world.ts'

/** Simulated ms after a bookie is lost within which its ledgers are replicated again. */
const RECOVERY_BOUND_MS = 20_000
const LOST_DELAY_MS = 400

export interface AutorecoverySimOptions {
  seed: number
  /** Replace a rule of the auditor machine (the known-broken variant `audit-no-delay`). */
  auditorLogic?: AuditorOptions['logic']
  /** Workers' transport acknowledges a copy as soon as it is sent (the variant `copy-unacked`). */
  copyUnacked?: boolean
  /** How a worker picks a replacement (the variant `replace-in-ensemble`). */
  pickReplacement?: ReplicatorHooks['pickReplacement']
  /** Told every line the roles log (replaying a seed to see why it failed). */
  trace?: (line: string) => void
}

interface Process { kill(): void }

/** The segment holding `entryId`, or null past the ledger's segments. */
function segmentOf(md: LedgerMetadata, entryId: number): LedgerMetadata['segments'][number] | null {
  let seg: LedgerMetadata['segments'][number] | null = null
  for (const s of md.segments) if (s.firstEntryId <= entryId) seg = s
  return seg
}

/** Entries the victim's positions held (per `pre`) that whoever holds the position now lacks, as `entry@bookie`. */
function missingOnReplacements(md: LedgerMetadata, pre: LedgerMetadata, victim: string, copies: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const out: string[] = []
  for (let id = 0; id <= md.lastEntryId; id++) {
    const was = segmentOf(pre, id)
    const now = segmentOf(md, id)
    if (!was || !now || was.firstEntryId !== now.firstEntryId) continue
    for (const i of writeSetIndices(id, md.ensembleSize, md.writeQuorum)) {
      if (was.ensemble[i] !== victim) continue
      const holder = now.ensemble[i]!
      if (!copies.get(holder)?.has(`${md.ledgerId}:${id}`)) out.push(`${id}@${holder}`)
    }
  }
  return out
}

/** A transport whose recovery adds are acknowledged as soon as they are sent (the `copy-unacked` variant). */
function lyingTransport(t: SimTransport, world: World): BookieTransport {
  const handlers = new Map<number, Set<AckHandler>>()
  return {
    registerWriter: (ledgerId, h) => {
      let set = handlers.get(ledgerId)
      if (!set) handlers.set(ledgerId, (set = new Set()))
      set.add(h)
      const off = t.registerWriter(ledgerId, h)
      return () => { set.delete(h); off() }
    },
    queueAdd: (bookieId, ledgerId, masterKey, digestType, recovery, entry) => {
      t.queueAdd(bookieId, ledgerId, masterKey, digestType, recovery, entry)
      const entryId = readEntryHeader(entry).entryId
      world.defer(() => { for (const h of [...(handlers.get(ledgerId) ?? [])]) h(bookieId, RC.OK, [entryId]) })
    },
    read: (...args) => t.read(...args),
    readLac: (...args) => t.readLac(...args),
  }
}

export async function simulateAutorecovery(opts: AutorecoverySimOptions): Promise<SimResult> {
  const world = new World(opts.seed)
  const violations: string[] = []
  const cluster = simCluster(world, { limbo: true })
  const nBookies = cluster.bookies.size
  world.faults = {
    dropRate: world.pick([0, 0.002, 0.01]), duplicateRate: world.pick([0, 0.01]), minDelayMs: 0.05,
    maxDelayMs: world.pick([0.3, 1]), stallRate: 0, stallMaxMs: 0,
  }
  const timeouts = { addTimeoutMs: world.int(20, 60), readTimeoutMs: world.int(15, 40) }
  await world.run(3 * HEARTBEAT_MS)

  // --- ledgers -------------------------------------------------------------------------------
  const ledgers: Array<{ ledgerId: number; password: string }> = []
  for (let k = world.int(2, 5); k > 0; k--) {
    const e = world.int(2, nBookies - 1)
    const w = world.int(2, e)
    const a = world.int(2, w)
    const password = world.pick(['', 'pw'])
    const { client, transport } = cluster.newClient(timeouts)
    const digestType = world.pick<DigestType>(['crc32c', 'hmac-sha256', 'none'])
    const handle = await runUntil(world, client.createLedger({ ensembleSize: e, writeQuorum: w, ackQuorum: a, digestType, password }))
    ledgers.push({ ledgerId: handle.ledgerId, password })
    const n = world.int(5, 60)
    const appends = Array.from({ length: n }, (_, i) => handle.append(Buffer.from(`L${handle.ledgerId}-${i}`)).catch(() => {}))
    await runUntil(world, Promise.all(appends))
    // Most are closed by their writer; some are left open by a writer that died.
    if (world.chance(0.75)) await runUntil(world, handle.close()).catch(() => {})
    else transport.dead = true
  }

  // --- autorecovery processes ----------------------------------------------------------------
  const marks: Array<{ at: number; ledgerId: number; missing: string[] }> = []
  // What each ledger placed where before the loss (the entries the victim's positions held), and
  // the buckets read directly (no simulated time) by the checkers.
  const before = new Map<number, LedgerMetadata>()
  let victimId: string | null = null
  let wiped = false
  const [rawLedgers, rawBookies, rawCluster] = cluster.buckets.map((b) => b.kv)
  const rawMetadata = new MetadataStore(rawLedgers!, rawBookies!, rawCluster!)
  const rawStore = new AutorecoveryStore(rawCluster!, () => world.now())
  const copiesNow = (): Map<string, Set<string>> => new Map([...cluster.bookies].map(([id, b]) => [id, b.copies()]))
  let nextNode = 0
  const processPart = (): { node: string; clock: ProcessClock; bookies: BookieTransport; metadata: MetadataStore; store: AutorecoveryStore; proc: Process } => {
    const node = `r${++nextNode}`
    const clock = new ProcessClock(world)
    const transport = new SimTransport(node, world, cluster.network)
    let dead = false
    const alive = (): boolean => !dead
    const [l, b, c, g] = cluster.buckets
    const metadata = new MetadataStore(l.view(alive), b.view(alive), c.view(alive), g.view(alive))
    const store = new AutorecoveryStore(metadata.clusterKv, () => clock.now())
    // Marks are recorded for the delay checker as they are written.
    const mark = store.mark.bind(store)
    store.mark = (ledgerId, what, by) => {
      if ((what.missing ?? []).length > 0) marks.push({ at: world.now(), ledgerId, missing: [...what.missing!] })
      return mark(ledgerId, what, by)
    }
    // A lost bookie's mark is cleared only once the copies are durable on its replacements (a
    // bookie back from a wipe is the integrity check's to refill: its own marks come from there).
    const clearMark = store.clearMark.bind(store)
    store.clearMark = async (ledgerId, revision) => {
      const pre = before.get(ledgerId)
      let missing: string[] = []
      if (victimId !== null && !wiped && pre && pre.state === 'CLOSED') {
        const md = (await rawMetadata.readLedger(ledgerId)).value
        if (md.state === 'CLOSED') missing = missingOnReplacements(md, pre, victimId, copiesNow())
      }
      const at = world.now()
      const cleared = await clearMark(ledgerId, revision)
      if (cleared && missing.length > 0) violations.push(`L${ledgerId}: mark cleared at ${at.toFixed(1)} with ${missing.length} entries not yet durable on the replacement (${missing.slice(0, 4).join(', ')})`)
      return cleared
    }
    const bookies = opts.copyUnacked ? lyingTransport(transport, world) : transport
    return { node, clock, bookies, metadata, store, proc: { kill: () => { dead = true; clock.kill(); transport.dead = true } } }
  }
  const trace = opts.trace
  const logFor = (node: string) => (trace ? (msg: string, fields?: Record<string, unknown>) => trace(`${world.now().toFixed(1)} ${node} ${msg} ${JSON.stringify(fields ?? {})}`) : undefined)
  const common = { lostBookieRecoveryDelayMs: LOST_DELAY_MS, auditIntervalMs: 500, readTimeoutMs: timeouts.readTimeoutMs }
  const auditors: Array<{ handle: AuditorHandle; proc: Process }> = []
  for (let i = world.int(1, 2); i > 0; i--) {
    const p = processPart()
    const handle = await startAuditor({
      ...common, nodeId: p.node, metadata: p.metadata, store: p.store, bookies: p.bookies, clock: p.clock,
      auditorLeaseMs: 300, checkIntervalMs: 50, logic: opts.auditorLogic, log: logFor(p.node),
    })
    auditors.push({ handle, proc: p.proc })
  }
  const workers: Array<{ handle: ReplicatorHandle; proc: Process }> = []
  for (let i = world.int(1, 2); i > 0; i--) {
    const p = processPart()
    const handle = await startReplicator({
      ...common, nodeId: p.node, metadata: p.metadata, store: p.store, bookies: p.bookies,
      clock: p.clock, passwords: ['', 'pw'], pollMs: 50, claimLeaseMs: 600, replicationGraceMs: 300,
      addTimeoutMs: timeouts.addTimeoutMs, copyBatchEntries: world.int(5, 50), random: world.random,
      hooks: opts.pickReplacement ? { pickReplacement: opts.pickReplacement } : {}, log: logFor(p.node),
    })
    workers.push({ handle, proc: p.proc })
  }

  // --- the loss ------------------------------------------------------------------------------
  for (const l of ledgers) before.set(l.ledgerId, (await runUntil(world, cluster.metadata.readLedger(l.ledgerId))).value)
  const victim = world.pick([...cluster.bookies.values()])
  victimId = victim.id
  wiped = world.chance(0.3)
  const lostAt = world.now() + world.between(0, 100)
  world.setTimeout(() => {
    victim.crash()
    if (wiped) {
      victim.disk.wipe()
      world.setTimeout(() => victim.restart(), world.between(50, 2 * LOST_DELAY_MS))
    }
  }, lostAt - world.now())
  // An auditor or a worker killed along the way (the other takes over; a claim expires).
  if (auditors.length > 1 && world.chance(0.5)) world.setTimeout(() => { void auditors[0]!.handle.crash(); auditors[0]!.proc.kill() }, world.between(0, 1500))
  if (workers.length > 1 && world.chance(0.5)) world.setTimeout(() => { void workers[0]!.handle.crash(); workers[0]!.proc.kill() }, world.between(LOST_DELAY_MS, 3000))
  // Until the bound, or until nothing is left to do: no mark, and no ledger naming a bookie lost for
  // good.
  const idle = async (): Promise<boolean> => {
    if ((await rawStore.listMarks(1)).length > 0) return false
    if (wiped) return victim.alive && victim.bookie?.state === 'writable' && world.now() > lostAt + 4 * LOST_DELAY_MS
    for (const l of ledgers) if ((await rawMetadata.readLedger(l.ledgerId)).value.segments.some((s) => s.ensemble.includes(victim.id))) return false
    return true
  }
  await world.run(lostAt + 2 * LOST_DELAY_MS)
  while (world.now() < lostAt + RECOVERY_BOUND_MS && !(await idle())) await world.run(world.now() + 250)
  await world.run(world.now() + 500)

  // --- checkers ------------------------------------------------------------------------------
  const finals: LedgerMetadata[] = []
  for (const l of ledgers) {
    try {
      finals.push((await runUntil(world, cluster.metadata.readLedger(l.ledgerId))).value)
    } catch (err) {
      violations.push(`L${l.ledgerId}: metadata unreadable at the end: ${String(err)}`)
    }
  }
  const copies = copiesNow()
  let unrecovered = 0
  for (const md of finals) {
    md.segments.forEach((seg, s) => {
      if (new Set(seg.ensemble).size !== seg.ensemble.length) violations.push(`L${md.ledgerId}: segment ${s} names a bookie twice: ${seg.ensemble.join(',')}`)
    })
    if (!wiped && md.segments.some((seg) => seg.ensemble.includes(victim.id))) {
      // An open ledger is recovered first: over a lossy network its write-back can lose an add,
      // fail that bookie too and find no spare left (RECOVERY_INCOMPLETE, tried again later), so
      // only a lossless run holds open ledgers to the bound.
      if (before.get(md.ledgerId)!.state === 'CLOSED' || world.faults.dropRate === 0) {
        violations.push(`L${md.ledgerId}: still names ${victim.id}, lost ${RECOVERY_BOUND_MS} ms ago (${md.state})`)
      } else unrecovered++
      continue
    }
    if (md.state !== 'CLOSED') continue
    // Each entry the victim's positions held is on whoever holds that position now (its
    // replacement, or the wiped bookie itself). Other short copies are not the loss's doing (a
    // writer with Qa < Qw may leave one; the audit's sampled scans find those in their own time).
    const pre = before.get(md.ledgerId)!
    if (pre.state !== 'CLOSED') {
      // Recovered after the loss: its write-back put the entries on new bookies the way a writer
      // does, on at least Qa of each write set (a copy short of Qw is the audit's to find later).
      for (let id = 0; id <= md.lastEntryId; id++) {
        const seg = segmentOf(md, id)!
        const held = writeSetIndices(id, md.ensembleSize, md.writeQuorum).filter((i) => copies.get(seg.ensemble[i]!)?.has(`${md.ledgerId}:${id}`)).length
        if (held < md.ackQuorum) violations.push(`L${md.ledgerId}: entry ${id} of the recovered ledger is on ${held} bookies of its write set, fewer than Qa=${md.ackQuorum}`)
      }
      continue
    }
    for (const m of missingOnReplacements(md, pre, victim.id, copies)) {
      violations.push(`L${md.ledgerId}: entry ${m} missing ${RECOVERY_BOUND_MS} ms after ${victim.id} was ${wiped ? 'wiped' : 'lost'}`)
    }
  }
  for (const m of marks) {
    for (const b of m.missing) {
      const lostFor = b === victim.id ? m.at - lostAt : -1
      if (lostFor < LOST_DELAY_MS) violations.push(`L${m.ledgerId} marked for ${b} at ${m.at.toFixed(1)}, ${lostFor < 0 ? 'never lost' : `lost only ${lostFor.toFixed(1)} ms before`} (delay ${LOST_DELAY_MS} ms)`)
    }
  }
  // The roles end as killed processes do (their clocks stop, so nothing of theirs runs on).
  for (const r of [...auditors, ...workers]) {
    void r.handle.crash().catch(() => {})
    r.proc.kill()
  }
  const summary = `seed ${opts.seed}: ${nBookies} bookies, ${ledgers.length} ledgers, ${auditors.length} auditor(s), ${workers.length} worker(s); ` +
    `${victim.id} ${wiped ? 'wiped and back' : 'lost for good'} at ${lostAt.toFixed(1)}; ${marks.length} marks; drop=${world.faults.dropRate}` +
    `${unrecovered > 0 ? `; ${unrecovered} open ledger(s) not yet recovered (lossy network)` : ''}`
  return { seed: opts.seed, violations, summary, events: world.events }
}
