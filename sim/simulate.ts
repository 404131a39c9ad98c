// One deterministic simulation run: the real client (writers, readers, recoverers) and the real
// bookies (sim/bookieNode.ts) over the simulated network, disks, KV and clock, with seeded faults;
// then checkers for the
// promises of PROTOCOL.md, in the words of the public TLA+ model of BookKeeper's protocol:
// - AllAckedEntriesAreReadable / NoDivergenceBetweenClientAndMetaData: every append that resolved
//   is at or below the ledger's final lastEntryId and reads back with its payload;
// - readers agree and never see past a closed ledger's lastEntryId;
// - a fenced writer gets nothing acknowledged past the recovered lastEntryId;
// - AllCommittedEntriesReachAckQuorum: every entry up to lastEntryId is on at least Qa bookies
//   of its write set;
// - NoOutOfOrderEntries: a writer's appends resolve in entryId order;
// - a tailing reader (the client's tail, long polls on the bookies) sees every entry once, in order
//   from its first, and what it sees agrees with every other reader;
// - replication after an ensemble change: in runs that only stop one bookie of a writer's ensemble
//   (cleanly, for good) over a network that loses nothing, every entry of each segment an ensemble
//   change started is on every bookie of its write set once the writer has closed the ledger (the
//   re-send to the replacement, not only an ack quorum);
// - progress: every append of a writer still alive settles (acknowledged, or failed with a typed
//   error) within PROGRESS_BOUND_MS of simulated time after the faults heal.
//
// Bookie stops: within a run at most one bookie stops uncleanly (kill -9, or a power cut that
// loses the store's unflushed writes and sometimes tears the last journal record, taking acked
// copies with it), and only when every ledger has Qa >= 2: one copy lost, and one bookie in limbo
// answering "unknown", is what Qa >= 2 tolerates (Qa = 1, or two bookies of a write set in limbo,
// leave recovery unable to rule an entry out until an operator acts). Every other stop is clean.

import { masterKeyOf, recoverLedger, type ClientParts, type DigestType, type LedgerMetadata, type RecoveryDeps } from '../client/internal.ts'
import { isQuireError } from '../machines/errors.ts'
import { writeSetIndices } from '../machines/quorum.ts'
import type { SimBookieNode } from './bookieNode.ts'
import { HEARTBEAT_MS, runUntil, simCluster, type SimCluster } from './cluster.ts'
import { World } from './world.ts'

/** Simulated ms after the faults heal within which every append of a live writer settles. */
const PROGRESS_BOUND_MS = 3000

export interface SimOptions {
  seed: number
  /**
   * `race`: every run races recoveries against busy writers over a lossy, stalling network (the
   * interleavings the TLA+ model's defect 1 needs); `plain`: never; default: a mix (35% race).
   */
  mode?: 'mixed' | 'race' | 'plain'
  /** Replace a protocol rule of recovery (machine.provide), to check the checkers catch it. */
  recoveryLogic?: RecoveryDeps['logic']
  /** Bookies put their ledgers in limbo after an unclean stop (default); false: the known-broken variant. */
  limbo?: boolean
  /** Bookies acknowledge before their journal sync: the known-broken variant `ack-before-sync`. */
  ackBeforeSync?: boolean
  /** Replace a rule of the writer machine (machine.provide), to check the checkers catch it. */
  writerLogic?: ClientParts['writerLogic']
}

export interface SimResult {
  seed: number
  violations: string[]
  summary: string
  events: number
}

interface Ledger {
  ledgerId: number
  password: string
  writer: string
  quorum: { ensembleSize: number; writeQuorum: number; ackQuorum: number }
  digestType: DigestType
  acked: Map<number, Buffer>
  ackOrder: number[]
  recoveredAt: Array<{ time: number; lastEntryId: number }>
}

export async function simulate(opts: SimOptions): Promise<SimResult> {
  const world = new World(opts.seed)
  const violations: string[] = []
  const note: string[] = []

  // --- the cluster ---------------------------------------------------------------------------
  const cluster = simCluster(world, { limbo: opts.limbo ?? true, ackBeforeSync: opts.ackBeforeSync, writerLogic: opts.writerLogic })
  const { bookies, metadata } = cluster
  const nBookies = bookies.size

  world.faults = {
    dropRate: world.pick([0, 0, 0.005, 0.02]),
    duplicateRate: world.pick([0, 0.01, 0.03]),
    minDelayMs: 0.05,
    maxDelayMs: world.pick([0.3, 1, 3]),
    stallRate: world.pick([0, 0, 0.01]),
    stallMaxMs: 20,
  }
  const addTimeoutMs = world.int(15, 60)
  const readTimeoutMs = world.int(10, 40)
  const newClient = (): ReturnType<SimCluster['newClient']> => cluster.newClient({ addTimeoutMs, readTimeoutMs })
  const recoverer = (password: string) => {
    const { transport } = newClient()
    const deps: RecoveryDeps = {
      bookies: transport, metadata, masterKey: masterKeyOf(password), readTimeoutMs, addTimeoutMs, inspect: null, clock: world, random: world.random,
      logic: opts.recoveryLogic,
    }
    return (ledgerId: number) => recoverLedger(deps, ledgerId)
  }

  // --- writers -------------------------------------------------------------------------------
  const ledgers: Ledger[] = []
  // Faults are scheduled within `horizon` ms of the writers' start; then everything heals.
  const horizon = 300
  await world.run(3 * HEARTBEAT_MS)
  // Some runs race a recovery against a busy writer whose entries sit at Qa - 1 bookies: the
  // case that needs recovery reads to fence (the TLA+ model's defect 1).
  const race = opts.mode === 'race' || (opts.mode !== 'plain' && world.chance(0.35))
  if (race) world.faults = { ...world.faults, maxDelayMs: 2, dropRate: 0.1, stallRate: 0.15, stallMaxMs: 30 }
  // Some other runs aim a torn power cut at the first ledger's last acked entry (see `aimed`): their
  // ledgers keep Qa >= 2, the first with Qw = Qa (so one bookie's denial would rule an entry out).
  const powerRun = !race && world.chance(0.3)
  // Some others take one bookie of a lone writer's ensemble away for good over a lossless network,
  // the ensemble change it forces must re-send to the replacement (see the replication checker).
  const ensembleRun = !race && !powerRun && nBookies >= 4 && world.chance(0.25)
  if (ensembleRun) {
    world.faults = { ...world.faults, dropRate: 0, stallRate: 0 }
    note.push('one bookie of the ensemble stopped for good')
  }
  const writers = race ? world.int(4, 8) : ensembleRun ? 1 : world.int(1, 2)
  const faultsDesc = `drop=${world.faults.dropRate} dup=${world.faults.duplicateRate} stall=${world.faults.stallRate}`
  // Create every ledger first, so that no fault lands between two creations.
  const created = []
  for (let k = 0; k < writers; k++) {
    const e = race ? 3 : ensembleRun ? world.int(3, Math.min(nBookies - 1, 4)) : world.int(2, Math.min(nBookies, 4))
    const w = race ? 3 : ensembleRun ? world.int(2, e) : world.int(powerRun ? 2 : 1, e)
    const a = race ? 2 : ensembleRun ? world.int(1, w) : powerRun && k === 0 ? w : world.int(powerRun ? 2 : 1, w)
    const digestType = world.pick<DigestType>(['crc32c', 'hmac-sha256', 'none'])
    const password = world.pick(['', 'pw'])
    const { client, transport } = newClient()
    const handle = await runUntil(world, client.createLedger({ ensembleSize: e, writeQuorum: w, ackQuorum: a, digestType, password }))
    created.push({ e, w, a, digestType, password, transport, handle })
  }
  // A power run aims a torn power cut at its first ledger's last acked entry (writer done, ledger
  // left open), and it is the run's one unclean stop: without limbo, that bookie's "no such entry"
  // lets recovery close below an acked entry.
  const aimed = powerRun ? created[0] : undefined
  // Otherwise the one bookie allowed to stop uncleanly is the first one taken down, if any. Few
  // race runs have one: a bookie in limbo answers "unknown" where the race's defect needs "no".
  const uncleanAllowed = !ensembleRun && created.every((c) => c.a >= 2) && (powerRun || world.chance(race ? 0.25 : 0.8))
  let unclean: string | null = null
  const rotted = new Set<string>()
  /** Ledgers their own writer closed (the replication checker looks at those of ensemble runs). */
  const closedByWriter = new Set<number>()
  /** Each writer, for the progress checker: its appends not yet settled, and whether its process is gone. */
  const liveWriters: Array<{ ledgerId: number; dead: () => boolean; outstanding: () => number }> = []
  const powerCut = (b: SimBookieNode, tear: boolean): void => {
    // A torn tail loses its entries' copies here: never a second copy of one (bit rot, an earlier tear).
    const tail = b.tailEntries()
    const torn = tear && tail !== null && tail.entryIds.every((id) => !rotted.has(`${tail.ledgerId}:${id}`))
    if (torn) for (const id of tail.entryIds) rotted.add(`${tail.ledgerId}:${id}`)
    b.powerCut(torn)
  }
  const takeDown = (b: SimBookieNode): void => {
    if (!uncleanAllowed || aimed || (unclean !== null && unclean !== b.id)) return b.stop()
    unclean = b.id
    if (world.chance(0.4)) b.crash()
    else powerCut(b, world.chance(0.5))
  }
  for (const { e, w, a, digestType, password, transport, handle } of created) {
    const ledger: Ledger = {
      ledgerId: handle.ledgerId, password, writer: transport.node, quorum: { ensembleSize: e, writeQuorum: w, ackQuorum: a }, digestType,
      acked: new Map(), ackOrder: [], recoveredAt: [],
    }
    ledgers.push(ledger)
    note.push(`L${ledger.ledgerId} E${e}/${w}/${a} ${digestType}`)
    const total = race ? world.int(3, 30) : world.int(10, 150)
    const inFlight = race ? world.int(1, 2) : world.int(1, 6)
    let sent = 0
    let outstanding = 0
    const pump = (): void => {
      while (outstanding < inFlight && sent < total && !transport.dead) {
        const payload = Buffer.from(`L${ledger.ledgerId}-e${sent}-${world.int(0, 1e6)}`)
        sent++
        outstanding++
        handle.append(payload).then((id) => {
          outstanding--
          const t = world.now()
          ledger.ackOrder.push(id)
          ledger.acked.set(id, payload)
          for (const r of ledger.recoveredAt) {
            if (r.time <= t && id > r.lastEntryId) violations.push(`L${ledger.ledgerId}: fenced writer got entry ${id} acked at ${t.toFixed(2)} after recovery closed at ${r.lastEntryId}`)
          }
          world.setTimeout(pump, race ? 0 : world.between(0, 2))
        }, (err: unknown) => {
          outstanding--
          if (!isQuireError(err)) violations.push(`L${ledger.ledgerId}: an append failed with no typed error: ${String(err)}`)
        })
      }
      if (sent >= total && outstanding === 0 && !transport.dead) {
        if (aimed?.handle === handle) cutAtLastAck()
        else if (ensembleRun) void handle.close().then(() => { closedByWriter.add(ledger.ledgerId) }, () => {})
        else if (world.chance(0.5)) void handle.close().catch(() => {})
      }
    }
    liveWriters.push({ ledgerId: ledger.ledgerId, dead: () => transport.dead, outstanding: () => outstanding })
    const cutAtLastAck = (): void => {
      const last = ledger.ackOrder.at(-1)
      const seg = handle.metadata.segments.at(-1)!
      if (last === undefined || unclean !== null) return
      const x = world.pick(writeSetIndices(last, e, w).map((i) => seg.ensemble[i]!))
      unclean = x
      const b = bookies.get(x)!
      powerCut(b, true)
      world.setTimeout(() => b.restart(), world.between(5, 100))
    }
    world.setTimeout(pump, world.between(0, 5))

    // Faults aimed at this ledger's ensemble.
    const ensemble = handle.metadata.segments[0]!.ensemble
    if (ensembleRun) {
      const victim = bookies.get(world.pick(ensemble))!
      world.setTimeout(() => victim.stop(), world.between(2, 80))
      continue
    }
    if (world.chance(0.5)) {
      const victim = bookies.get(world.pick(ensemble))!
      const at = world.between(2, 80)
      world.setTimeout(() => takeDown(victim), at)
      if (world.chance(0.6)) world.setTimeout(() => victim.restart(), at + world.between(5, 150))
      // Writer dies soon after the ensemble change this crash forces.
      if (world.chance(0.35) && aimed?.handle !== handle) world.setTimeout(() => { transport.dead = true }, at + addTimeoutMs + world.between(0, 12))
    }
    if (world.chance(0.2) && aimed?.handle !== handle) world.setTimeout(() => { transport.dead = true }, world.between(5, 150))
    const recoveries = race ? 1 : world.chance(0.6) ? world.int(1, 2) : 0
    const startAt = race ? world.between(1, 15) : world.between(5, 80)
    for (let r = 0; r < recoveries; r++) {
      world.setTimeout(() => {
        void recoverer(password)(ledger.ledgerId).then(
          (md) => ledger.recoveredAt.push({ time: world.now(), lastEntryId: md.lastEntryId }),
          (err) => { if (!isQuireError(err)) violations.push(`L${ledger.ledgerId}: recovery threw ${String(err)}`) },
        )
      }, startAt + world.between(0, 3))
    }
  }

  // --- general faults ------------------------------------------------------------------------
  const end = world.now() + horizon + 100
  const names = [...bookies.keys()]
  for (let i = ensembleRun ? 0 : world.int(0, 2); i > 0; i--) {
    const b = bookies.get(world.pick(names))!
    const at = world.between(0, horizon)
    world.setTimeout(() => takeDown(b), at)
    world.setTimeout(() => b.restart(), at + world.between(1, 90))
  }
  for (let i = world.int(0, 2); i > 0; i--) {
    const b = world.pick(names)
    const at = world.between(0, horizon)
    world.setTimeout(() => world.hang(b), at)
    world.setTimeout(() => world.unhang(b), at + world.between(1, 90))
  }
  for (let i = world.int(0, 3); i > 0; i--) {
    world.setTimeout(() => {
      const l = world.pick(ledgers)
      // Bit rot is only detectable with a digest; and one lost copy must leave another (Qa >= 2).
      if (l.quorum.ackQuorum < 2 || l.digestType === 'none') return
      const ids = [...l.acked.keys()]
      if (ids.length === 0) return
      const id = world.pick(ids)
      if (rotted.has(`${l.ledgerId}:${id}`)) return
      // Rot one copy only: an acked entry is promised readable while fewer than Qa copies are lost.
      const holders = [...bookies.values()].filter((b) => b.disk.store.holds(l.ledgerId, id))
      if (holders.length > 0 && world.pick(holders).rot(l.ledgerId, id)) rotted.add(`${l.ledgerId}:${id}`)
    }, world.between(20, horizon))
  }
  // A disk filling up: one bookie over its usage threshold (read-only at its next disk check) or
  // full (its writes fail with ENOSPC at once), then space back. A stop while the disk is full
  // cannot checkpoint, so the next start is unclean: the fault takes the run's one unclean stop.
  if (!ensembleRun && uncleanAllowed && !aimed && unclean === null && world.chance(0.3)) {
    const b = bookies.get(world.pick(names))!
    unclean = b.id
    const at = world.between(0, horizon)
    const usage = world.pick([0.97, 1])
    note.push(`${b.id}'s disk ${usage >= 1 ? 'full' : 'over its threshold'} for a while`)
    world.setTimeout(() => b.disk.fill(usage), at)
    world.setTimeout(() => b.disk.fill(0), at + world.between(20, 200))
  }
  // A partition between one writer and one bookie of its ensemble, each still reaching every other
  // node: the writer must replace the bookie it cannot reach (or fail with a typed error), while
  // recoverers and readers still reach it.
  if (!ensembleRun && world.chance(0.3)) {
    const c = world.pick(created)
    const b = world.pick(c.handle.metadata.segments[0]!.ensemble)
    const at = world.between(0, horizon)
    world.setTimeout(() => world.cut(c.transport.node, b), at)
    world.setTimeout(() => world.heal(c.transport.node, b), at + world.between(10, 150))
  }
  // Readers during the run: open without recovery, read up to the LAC they learn.
  const observed: Array<{ ledgerId: number; entryId: number; payload: Buffer; at: number }> = []
  const readOnce = async (l: Ledger): Promise<void> => {
    const { client } = newClient()
    try {
      const r = await client.openLedger(l.ledgerId, { password: l.password })
      if (r.lastAddConfirmed < 0) return
      for (const e of await r.read(0, r.lastAddConfirmed)) observed.push({ ledgerId: l.ledgerId, entryId: e.entryId, payload: e.payload, at: world.now() })
    } catch (err) {
      if (!isQuireError(err)) violations.push(`L${l.ledgerId}: reader threw ${String(err)}`)
    }
  }
  for (let i = world.int(0, 4); i > 0; i--) world.setTimeout(() => { void readOnce(world.pick(ledgers)) }, world.between(10, horizon))
  // A tailing reader in some runs, following one ledger from its first entry until the run ends.
  const tails: Array<AsyncIterableIterator<unknown>> = []
  const tailOnce = async (l: Ledger): Promise<void> => {
    const { client } = newClient()
    let next = 0
    try {
      const h = await client.openLedger(l.ledgerId, { password: l.password })
      const it = h.entries({ pollMs: world.int(20, 200), batch: world.int(1, 16) })
      tails.push(it)
      for await (const e of it) {
        if (e.entryId !== next) violations.push(`L${l.ledgerId}: a tail got entry ${e.entryId} where ${next} was next`)
        next = e.entryId + 1
        observed.push({ ledgerId: l.ledgerId, entryId: e.entryId, payload: e.payload, at: world.now() })
        tailed++
      }
    } catch (err) {
      if (!isQuireError(err)) violations.push(`L${l.ledgerId}: a tail threw ${String(err)}`)
    }
  }
  let tailed = 0
  if (!race && world.chance(0.4)) {
    const l = world.pick(ledgers)
    note.push(`a tail on L${l.ledgerId}`)
    world.setTimeout(() => { void tailOnce(l) }, world.between(0, horizon))
  }

  await world.run(end)

  // --- heal, settle, close everything with recovery, read everything -------------------------
  for (const b of bookies.values()) if (!b.alive) b.restart()
  for (const n of names) world.unhang(n)
  world.healAll()
  world.faults = { ...world.faults, dropRate: 0, duplicateRate: 0, stallRate: 0 }
  await world.run(end + 300)
  // Progress: every append of a writer still alive has settled (acknowledged, or failed with a
  // typed error) within PROGRESS_BOUND_MS of the faults healing (a writer may need several add
  // timeouts and ensemble changes to get there).
  const unsettled = (): typeof liveWriters => liveWriters.filter((w) => !w.dead() && w.outstanding() > 0)
  if (unsettled().length > 0) await world.run(end + PROGRESS_BOUND_MS)
  for (const w of unsettled()) {
    violations.push(`L${w.ledgerId}: ${w.outstanding()} append(s) of a live writer neither acknowledged nor failed ${PROGRESS_BOUND_MS} ms after the faults healed`)
  }
  const finals = new Map<number, LedgerMetadata>()
  for (const l of ledgers) {
    let lastError = ''
    for (let attempt = 0; attempt < 8 && !finals.has(l.ledgerId); attempt++) {
      try {
        finals.set(l.ledgerId, await runUntil(world, recoverer(l.password)(l.ledgerId)))
      } catch (err) {
        lastError = String(err)
        // Retried as an application would: a bookie still starting (its subscription not yet made)
        // loses a write-back add, and with no spare bookie that attempt fails NOT_ENOUGH_BOOKIES.
        if (!isQuireError(err, 'RECOVERY_INCOMPLETE') && !isQuireError(err, 'METADATA_CONFLICT') && !isQuireError(err, 'NOT_ENOUGH_BOOKIES')) {
          violations.push(`L${l.ledgerId}: final recovery failed: ${String(err)}`)
          break
        }
        await world.run(world.now() + 100)
      }
    }
    if (!finals.has(l.ledgerId)) violations.push(`L${l.ledgerId}: could not be recovered after the faults healed (${lastError})`)
  }
  for (const l of ledgers) {
    const md = finals.get(l.ledgerId)
    if (!md) continue
    for (let r = 0; r < 2; r++) {
      const { client } = newClient()
      try {
        const h = await runUntil(world, client.openLedger(l.ledgerId, { password: l.password }))
        if (md.lastEntryId >= 0) {
          for (const e of await runUntil(world, h.read(0, md.lastEntryId))) observed.push({ ledgerId: l.ledgerId, entryId: e.entryId, payload: e.payload, at: world.now() })
        }
      } catch (err) {
        const entryId = isQuireError(err) ? Number(err.info['entryId'] ?? -1) : -1
        violations.push(`L${l.ledgerId}: final read failed: ${String(err)}; replicas: ${describeReplicas(bookies, l.ledgerId, entryId)}`)
      }
    }
  }

  for (const it of tails) void it.return?.()
  check(ledgers, finals, observed, bookies, violations)
  if (ensembleRun) checkReplicated(finals, closedByWriter, bookies, violations)
  if (tails.length > 0) note.push(`the tail saw ${tailed} entries`)
  const outcome = ledgers.map((l) => `L${l.ledgerId}: ${l.acked.size} acked, closed at ${finals.get(l.ledgerId)?.lastEntryId ?? '?'} (${finals.get(l.ledgerId)?.segments.length ?? '?'} segments, ${l.recoveredAt.length} recoveries during the run)`)
  // SIM_BOOKIE_LOGS=1 prints what each bookie logged when a seed fails (replaying it).
  if (violations.length > 0 && process.env['SIM_BOOKIE_LOGS']) for (const b of bookies.values()) console.log(`--- ${b.id}\n${b.log.join('\n')}`)
  const stops = unclean === null ? 'clean stops only' : `unclean stops of ${unclean} (${bookies.get(unclean)!.lost.size} copies lost${aimed ? ', aimed' : ''})`
  const summary = `seed ${opts.seed}${race ? ' (race)' : ''}: ${nBookies} bookies, ${note.join('; ')}; faults ${faultsDesc}; ${stops}; ${outcome.join('; ')}`
  return { seed: opts.seed, violations, summary, events: world.events }
}

/** What each bookie holds of one entry, for a failing seed's report. */
function describeReplicas(bookies: Map<string, SimBookieNode>, ledgerId: number, entryId: number): string {
  return [...bookies.values()].map((b) => b.describe(ledgerId, entryId)).join(' ')
}

/** Every entry of each segment an ensemble change started is on every bookie of its write set. */
function checkReplicated(finals: Map<number, LedgerMetadata>, closed: ReadonlySet<number>, bookies: Map<string, SimBookieNode>, violations: string[]): void {
  const copies = new Map([...bookies].map(([id, b]) => [id, b.copies()]))
  for (const ledgerId of closed) {
    const md = finals.get(ledgerId)
    if (!md) continue
    md.segments.forEach((seg, s) => {
      if (s === 0) return
      const last = s + 1 < md.segments.length ? md.segments[s + 1]!.firstEntryId - 1 : md.lastEntryId
      for (let id = seg.firstEntryId; id <= last; id++) {
        const missing = writeSetIndices(id, md.ensembleSize, md.writeQuorum).map((i) => seg.ensemble[i]!).filter((b) => !copies.get(b)?.has(`${ledgerId}:${id}`))
        if (missing.length > 0) violations.push(`L${ledgerId}: entry ${id} of segment ${s} (after an ensemble change) is missing on ${missing.join(', ')} of its write set`)
      }
    })
  }
}

function check(
  ledgers: Ledger[], finals: Map<number, LedgerMetadata>,
  observed: Array<{ ledgerId: number; entryId: number; payload: Buffer }>,
  bookies: Map<string, SimBookieNode>, violations: string[],
): void {
  const copies = new Map([...bookies].map(([id, b]) => [id, b.copies()]))
  const finalRead = new Map<string, Buffer>()
  for (const o of observed) {
    const md = finals.get(o.ledgerId)
    if (md && o.entryId > md.lastEntryId) violations.push(`L${o.ledgerId}: a reader saw entry ${o.entryId} past lastEntryId ${md.lastEntryId}`)
    const k = `${o.ledgerId}:${o.entryId}`
    const seen = finalRead.get(k)
    if (seen && !seen.equals(o.payload)) violations.push(`L${o.ledgerId}: readers disagree on entry ${o.entryId}`)
    finalRead.set(k, o.payload)
  }
  for (const l of ledgers) {
    const md = finals.get(l.ledgerId)
    if (!md) continue
    for (const [id, payload] of l.acked) {
      if (id > md.lastEntryId) violations.push(`L${l.ledgerId}: acked entry ${id} is past lastEntryId ${md.lastEntryId}`)
      else if (!finalRead.get(`${l.ledgerId}:${id}`)?.equals(payload)) violations.push(`L${l.ledgerId}: acked entry ${id} does not read back`)
    }
    for (let i = 1; i < l.ackOrder.length; i++) {
      if (l.ackOrder[i]! <= l.ackOrder[i - 1]!) violations.push(`L${l.ledgerId}: appends resolved out of order (${l.ackOrder[i - 1]} then ${l.ackOrder[i]})`)
    }
    for (let id = 0; id <= md.lastEntryId; id++) {
      let seg = md.segments[0]!
      for (const s of md.segments) if (s.firstEntryId <= id) seg = s
      // A copy an unclean stop destroyed had reached its bookie: it counts.
      const holders = writeSetIndices(id, md.ensembleSize, md.writeQuorum).filter((i) => {
        const b = seg.ensemble[i]!
        const k = `${l.ledgerId}:${id}`
        return copies.get(b)?.has(k) || bookies.get(b)?.lost.has(k)
      }).length
      if (holders < md.ackQuorum) violations.push(`L${l.ledgerId}: entry ${id} is on ${holders} bookies of its write set, fewer than Qa=${md.ackQuorum}`)
    }
  }
}
