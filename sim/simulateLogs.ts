// One deterministic simulation run of a named log (PROTOCOL.md "Logs on top of ledgers"): the real
// log writer and reader (client/logWriter.ts, client/logReader.ts, their machines) over the
// simulated cluster (sim/cluster.ts), with seeded faults: a lossy, duplicating, delaying network;
// segments rolling every few records; a second writer taking the log at a random moment while the
// first appends (racing its rolls), the first writer sometimes crashed just before; a bookie
// stopped, crashed or cut from power (its last journal record torn only when Qa >= 2), then
// restarted; the first writer cut apart from one bookie for a while; a truncation at a random
// acknowledged position; then the log sealed and read by two readers. Checkers, for the promises:
// - every acknowledged record not before the truncation point is read at its position, with its
//   payload and txId (an acknowledged record stays readable until truncated);
// - both readers read one sequence, in position order, txIds increasing;
// - after the hand-over no record of the old writer follows one of the new writer's;
// - truncation removes nothing at or after its position;
// - every append settles (acknowledged, or a typed error) by the end of the run.

import { comparePositions, formatPosition, type LogPosition } from '../machines/logPosition.ts'
import { isQuireError } from '../machines/errors.ts'
import type { QuireClientImpl } from '../client/internal.ts'
import { LogWriterImpl, type LogLedgers } from '../client/logWriter.ts'
import { LogStore } from '../storage/logStore.ts'
import { runUntil, simCluster } from './cluster.ts'
import type { SimResult } from './simulate.ts'
import { World } from './world.ts'

export interface LogSimOptions {
  seed: number
  /** A new writer fences what it takes over (default); false: the known-broken variant, which does not. */
  fence?: boolean
}

interface Acked { position: LogPosition; payload: string; writer: 'a' | 'b' }

export async function simulateLog(opts: LogSimOptions): Promise<SimResult> {
  const world = new World(opts.seed)
  const violations: string[] = []
  const cluster = simCluster(world, { limbo: true })
  world.faults = {
    dropRate: world.pick([0, 0, 0.005, 0.02]), duplicateRate: world.pick([0, 0.01, 0.03]), minDelayMs: 0.05,
    maxDelayMs: world.pick([0.3, 1, 3]), stallRate: world.pick([0, 0, 0.01]), stallMaxMs: 20,
  }
  const timeouts = { addTimeoutMs: world.int(15, 60), readTimeoutMs: world.int(10, 40) }
  const nBookies = cluster.bookies.size
  const ensembleSize = world.int(2, Math.min(nBookies, 3))
  const writeQuorum = world.int(1, ensembleSize)
  const ackQuorum = world.int(1, writeQuorum)
  const segmentRecordsMax = world.int(3, 20)
  let down: string | null = null
  await world.run(3 * 50)

  const a = cluster.newClient(timeouts)
  const b = cluster.newClient(timeouts)
  // The broken variant: the new writer "recovers" without fencing (an open without recovery).
  const ledgersOf = (client: QuireClientImpl): LogLedgers => (opts.fence === false
    ? { ...bind(client), openLedger: (id) => client.openLedger(id) }
    : bind(client))
  const acked: Acked[] = []
  const settled = { a: 0, b: 0, sent: 0, sentA: 0 }
  const log = await runUntil(world, a.client.logs.createLog('sim', { ensembleSize, writeQuorum, ackQuorum, segmentRecordsMax }))
  const writerA = await runUntil(world, log.writer())
  let aStopped = false
  const pumpA = (n: number): void => {
    if (aStopped || a.transport.dead) return
    for (let i = 0; i < world.int(1, 6); i++) {
      const payload = `a${n}.${i}`
      settled.sent++
      settled.sentA++
      writerA.append(payload).then((position) => {
        acked.push({ position, payload, writer: 'a' })
        settled.a++
      }, (err: unknown) => {
        settled.a++
        if (!isQuireError(err)) violations.push(`writer a: an append failed with no typed error: ${String(err)}`)
      })
    }
    world.setTimeout(() => pumpA(n + 1), world.between(0.5, 4))
  }
  pumpA(0)

  // A bookie taken down for a while, in some runs: a clean stop, a crash (kill -9: what was not
  // synced is lost, never acked) or a power cut (its store loses what was not flushed; the journal
  // replays it), then restarted, in limbo after an unclean stop; a power cut may also tear its last
  // synced journal record, which loses acked copies (another bookie holds each). Unclean only with
  // Qa >= 2: a bookie in limbo answers "unknown", and with Qa = 1 recovery then cannot rule an
  // entry out and fails, as documented (docs/protocol-notes.md, limbo: liveness, never safety).
  if (world.chance(0.4)) {
    const victim = world.pick([...cluster.bookies.values()])
    const how = ackQuorum >= 2 ? world.pick(['stop', 'crash', 'power', 'torn'] as const) : 'stop'
    down = how
    world.setTimeout(() => {
      if (how === 'stop') victim.stop()
      else if (how === 'crash') victim.crash()
      else victim.powerCut(how === 'torn')
      world.setTimeout(() => victim.restart(), world.between(20, 120))
    }, world.between(5, 60))
  }

  // The first writer cut apart from one bookie for a while (each still reaches every other node).
  if (world.chance(0.3)) {
    const cutFrom = world.pick([...cluster.bookies.keys()])
    world.setTimeout(() => { world.cut(a.transport.node, cutFrom); world.setTimeout(() => world.heal(a.transport.node, cutFrom), world.between(10, 100)) }, world.between(5, 60))
  }

  // The hand-over, at a random moment; the old writer crashed just before it in some runs.
  await world.run(world.now() + world.between(10, 120))
  if (world.chance(0.3)) a.transport.dead = true
  const logB = await runUntil(world, b.client.logs.openLog('sim'))
  // A take may fail with a typed error while the cluster is faulty (recovery cannot fence enough
  // bookies yet): the application tries again, as it would.
  const take = async (client: QuireClientImpl): Promise<LogWriterImpl | null> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await runUntil(world, takeWith(world, client, ledgersOf(client), 'sim'))
      } catch (err) {
        if (!isQuireError(err) || attempt >= 20) {
          violations.push(`a new writer could not take the log: ${String(err)}`)
          return null
        }
        await world.run(world.now() + 50)
      }
    }
  }
  const writerB = await take(b.client)
  if (writerB === null) return { seed: opts.seed, violations, summary: `seed ${opts.seed}: no hand-over`, events: world.events }
  for (let i = 0; i < world.int(5, 40); i++) {
    const payload = `b${i}`
    settled.sent++
    const p = writerB.append(payload)
    p.then((position) => { acked.push({ position, payload, writer: 'b' }); settled.b++ }, (err: unknown) => {
      settled.b++
      if (!isQuireError(err)) violations.push(`writer b: an append failed with no typed error: ${String(err)}`)
    })
    if (world.chance(0.3)) await world.run(world.now() + world.between(0, 5))
  }
  aStopped = true
  await world.run(world.now() + 400)

  // A truncation at a random acknowledged position (before the seal).
  let cut: LogPosition | null = null
  if (acked.length > 0 && world.chance(0.5)) {
    cut = world.pick(acked).position
    await runUntil(world, logB.truncate(cut)).catch((err: unknown) => violations.push(`truncate at ${formatPosition(cut!)}: ${String(err)}`))
  }
  // The seal fails with a typed error when the writer failed meanwhile (no bookie to replace a
  // stopped one, with E = the number of bookies): a third writer takes the log and seals it.
  const sealed = await runUntil(world, writerB.markEndOfStream()).then(() => true, (err: unknown) => {
    if (!isQuireError(err)) violations.push(`seal: ${String(err)}`)
    return false
  })
  if (!sealed) {
    await world.run(world.now() + 200)
    const writerC = await take(cluster.newClient(timeouts).client)
    if (writerC) await runUntil(world, writerC.markEndOfStream()).catch((err: unknown) => violations.push(`seal by a third writer: ${String(err)}`))
  }
  await world.run(world.now() + 200)
  // A crashed writer's appends never settle (its process is gone); every other append does.
  const unsettled = settled.sent - settled.a - settled.b - (a.transport.dead ? settled.sentA - settled.a : 0)
  if (unsettled > 0) violations.push(`${unsettled} append(s) never settled`)

  // Two readers, each its own client, read the sealed log from its start.
  const read = async (): Promise<Array<{ position: LogPosition; txId: number; payload: string }>> => {
    const { client } = cluster.newClient(timeouts)
    const out: Array<{ position: LogPosition; txId: number; payload: string }> = []
    const it = (await runUntil(world, client.logs.openLog('sim'))).reader().records()
    for (;;) {
      const r = await runUntil(world, it.next())
      if (r.done) return out
      out.push({ position: r.value.position, txId: r.value.txId, payload: Buffer.from(r.value.payload).toString() })
    }
  }
  let first: Awaited<ReturnType<typeof read>> = []
  let second: typeof first = []
  try {
    first = await read()
    second = await read()
  } catch (err) {
    violations.push(`a reader failed: ${String(err)}`)
  }
  check({ acked, first, second, cut, violations })
  const summary = `seed ${opts.seed}: ${nBookies} bookies, E${ensembleSize}/${writeQuorum}/${ackQuorum}, roll every ${segmentRecordsMax}; ` +
    `${acked.filter((x) => x.writer === 'a').length} + ${acked.filter((x) => x.writer === 'b').length} acked${a.transport.dead ? ' (a crashed)' : ''}` +
    `${cut ? `, truncated at ${formatPosition(cut)}` : ''}${down ? `, a bookie down (${down})` : ''}; read ${first.length}`
  return { seed: opts.seed, violations, summary, events: world.events }
}

function bind(client: LogLedgers): LogLedgers {
  return {
    createLedger: (o) => client.createLedger(o),
    openLedger: (id, o) => client.openLedger(id, o),
    getLedgerMetadata: (id) => client.getLedgerMetadata(id),
    deleteLedger: (id) => client.deleteLedger(id),
  }
}

/** The writer taken with these ledgers (the variant swaps how it recovers), on the world's clock. */
function takeWith(world: World, client: QuireClientImpl, ledgers: LogLedgers, name: string): Promise<LogWriterImpl> {
  return LogWriterImpl.take({ ledgers, store: new LogStore(client.metadata.logsKv), clock: world }, name)
}

function check(r: {
  acked: Acked[]; first: Array<{ position: LogPosition; txId: number; payload: string }>; second: Array<{ position: LogPosition; txId: number; payload: string }>
  cut: LogPosition | null; violations: string[]
}): void {
  const { acked, first, second, cut, violations } = r
  const key = (p: LogPosition): string => formatPosition(p)
  if (JSON.stringify(first) !== JSON.stringify(second)) violations.push(`the two readers disagree (${first.length} and ${second.length} records)`)
  const at = new Map(first.map((x) => [key(x.position), x]))
  for (const x of acked) {
    if (cut && comparePositions(x.position, cut) < 0) continue
    const got = at.get(key(x.position))
    if (!got) violations.push(`acked record ${x.payload} at ${key(x.position)} is not read`)
    else if (got.payload !== x.payload) violations.push(`at ${key(x.position)}: read ${got.payload}, acked ${x.payload}`)
  }
  for (let i = 1; i < first.length; i++) {
    if (comparePositions(first[i - 1]!.position, first[i]!.position) >= 0) violations.push(`positions out of order at ${key(first[i]!.position)}`)
    if (first[i - 1]!.txId >= first[i]!.txId) violations.push(`txIds do not increase at ${key(first[i]!.position)}`)
  }
  const firstB = first.findIndex((x) => x.payload.startsWith('b'))
  if (firstB >= 0 && first.slice(firstB).some((x) => x.payload.startsWith('a'))) violations.push('a record of the old writer follows one of the new writer')
  if (cut && first.length > 0 && acked.some((x) => comparePositions(x.position, cut) >= 0) && comparePositions(first[0]!.position, cut) > 0) {
    violations.push(`the truncation at ${key(cut)} removed records at or after it (the log starts at ${key(first[0]!.position)})`)
  }
}
