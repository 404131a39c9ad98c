// One power-cut run on real processes (issue 12's scenario), shared by test/integration/powerCut.test.ts and
// the long runs of test/powercut/run.ts: a writer process (test/support/appender.ts) appends to a
// ledger; after a random number of acknowledged entries it is killed with -9 and one bookie X of
// the write set of the last acknowledged entry loses power (test/support/powerCut.ts: kill -9, its
// unsynced RocksDB WAL lost, maybe its last journal group damaged), and X restarts. X is asked,
// before any recovery, for every acknowledged entry it should hold, then for an integrity check
// (the ledger is still open), and again; another client opens the ledger with recovery and reads
// it all back; X is checked again and asked for every entry the closed ledger places on it. The
// result says what happened and never asserts: the test asserts, the long runner counts.
// What must hold (PROTOCOL.md, issue 12): every acknowledged entry reads back with its payload,
// recovery's lastEntryId is at least the highest acknowledged entry, and X never answers
// NO_SUCH_ENTRY for an entry it acknowledged (it answers it, or says it does not know).

import { spawn } from 'node:child_process'
import path from 'node:path'
import { errors } from '@nats-io/transport-node'
import { integrityCheckSubject, type IntegrityResult } from '../../actors/integrityCheck.ts'
import type { QuireClientImpl as QuireClient } from '../../client/internal.ts'
import { BookieClient } from '../../client/bookieClient.ts'
import { REPO_ROOT, type BookieProcess } from '../../cli/cluster.ts'
import { placedEntryChunks } from '../../machines/integrityCheck.ts'
import { writeSetIndices } from '../../machines/quorum.ts'
import { AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { connectNats } from '../../transport/nats.ts'
import { masterKeyOf } from '../../transport/entry.ts'
import { RC, rcName } from '../../transport/wire.ts'
import { sleep, type TestCluster } from '../support/cluster.ts'
import { waitFor } from '../support/processes.ts'
import { cutPower, seededRandom, type JournalDamage, type PowerCut } from '../support/powerCut.ts'

export interface Quorums { ensembleSize: number; writeQuorum: number; ackQuorum: number }

/** `E/Qw/Qa`, e.g. `3/2/2`. */
export function parseQuorums(s: string): Quorums {
  const m = /^(\d+)\/(\d+)\/(\d+)$/.exec(s)
  if (!m) throw new Error(`a configuration is E/Qw/Qa, like 3/2/2; got ${JSON.stringify(s)}`)
  const [ensembleSize, writeQuorum, ackQuorum] = [Number(m[1]), Number(m[2]), Number(m[3])]
  if (!(ensembleSize >= writeQuorum && writeQuorum >= ackQuorum && ackQuorum >= 1)) throw new Error(`not E >= Qw >= Qa >= 1: ${s}`)
  return { ensembleSize, writeQuorum, ackQuorum }
}

export const quorumsName = (q: Quorums): string => `${q.ensembleSize}/${q.writeQuorum}/${q.ackQuorum}`

export interface PowerCutRun {
  seed: number
  quorums: string
  inFlight: number
  ledgerId: number
  victim: string
  cut: PowerCut
  /** With `older` damage: why X did not start (null: it started, and the X-side fields are filled). */
  refused: string | null
  /** From the restarted X's registration to its first answer (it registers before it serves). */
  servingAfterMs: number
  /** Entries whose append resolved in the writer before it was killed. */
  acked: number
  maxAcked: number
  /** Recovery's lastEntryId. */
  lastEntryId: number
  /** Acknowledged entries that did not read back after recovery (or read back other bytes). */
  lost: number[]
  /** X's answers, before recovery, for the acknowledged entries of its write sets: rc name → count. */
  victimAnswers: Record<string, number>
  /** Entries X acknowledged (acknowledged entries of its write sets, when Qa = Qw) it answered NO_SUCH_ENTRY for before recovery. */
  victimDenied: number[]
  /** Acknowledged entries X answered IN_LIMBO (or anything but OK and NO_SUCH_ENTRY) for. */
  victimUnsure: number[]
  /** X's integrity check before recovery (the ledger is open: it must stay in limbo); null: no answer. */
  checkBefore: IntegrityResult | null
  /** X's answers for the same entries after that check, before recovery: rc name → count. */
  answersAfterCheck: Record<string, number>
  /** X's integrity check after recovery closed the ledger (nothing may stay in limbo). */
  checkAfter: IntegrityResult | null
  /** Entries of the closed ledger placed on X that X does not answer OK for after that check. */
  lackingAfter: number[]
  /** X's answers for the entries placed on it after that check: rc name → count. */
  answersAfter: Record<string, number>
  /** The ledger is marked for a re-copy onto X (X among the mark's damaged bookies). */
  markedForX: boolean
}

/** Damages chosen at random for a run: mostly damage of the last group, sometimes none (`older` only when asked). */
const DAMAGES: JournalDamage[] = ['none', 'torn', 'torn', 'rot', 'rot', 'length', 'length']

export interface RunOptions {
  seed: number
  quorums: Quorums
  /** Acknowledged entries before the writer is killed: a random count in [min, max]. */
  ackedMin?: number
  ackedMax?: number
  damage?: JournalDamage
  /** Appends the writer keeps in flight; default 8, 32 or 64 at random (more fill bigger journal groups). */
  inFlight?: number
}

export async function powerCutRun(c: TestCluster, opts: RunOptions): Promise<PowerCutRun> {
  const rng = seededRandom(opts.seed)
  const q = opts.quorums
  const target = Math.floor((opts.ackedMin ?? 20) + rng() * ((opts.ackedMax ?? 300) - (opts.ackedMin ?? 20) + 1))
  // The writer dies and X loses power up to half a second apart, in either order (the issue's
  // runs killed the writer first; one power failure can take both). X is chosen from the write
  // set of the last entry acknowledged by then, so its last journal groups hold entries it acked.
  let slot = -1
  const victimFirst = rng() < 0.5
  const gapMs = Math.floor(rng() * 500)
  const inFlight = opts.inFlight ?? [8, 32, 64][Math.floor(rng() * 3)]!
  const writer = await runWriter(c, q, target, inFlight, victimFirst, gapMs, (ensemble, maxAcked) => {
    const slots = writeSetIndices(maxAcked, q.ensembleSize, q.writeQuorum)
    slot = slots[Math.floor(rng() * slots.length)]!
    return c.bookie(ensemble[slot]!)
  })
  const victim = writer.ensemble[slot]!
  const damage = opts.damage ?? DAMAGES[Math.floor(rng() * DAMAGES.length)]!
  const cut = await cutPower(c.bookie(victim), damage, rng)
  const restart = c.startBookie(Number(/(\d+)$/.exec(victim)![1]))
  if (damage === 'older') {
    // Damage before the last group: X must refuse to start; recovery goes on without it.
    const refused = await restart.then(() => null, (err: unknown) => String(err))
    const { lastEntryId, lost } = await recoverAndRead(await c.client(), writer.ledgerId, writer.acked)
    return {
      seed: opts.seed, quorums: quorumsName(q), inFlight, ledgerId: writer.ledgerId, victim, cut, refused, servingAfterMs: -1,
      acked: writer.acked.length, maxAcked: writer.maxAcked, lastEntryId, lost, victimAnswers: {}, victimDenied: [], victimUnsure: [],
      checkBefore: null, answersAfterCheck: {}, checkAfter: null, lackingAfter: [], answersAfter: {}, markedForX: false,
    }
  }
  await restart
  const servingAfterMs = await untilServing(c.nats.url, victim, writer.ledgerId)

  // X's own answers before anyone recovers the ledger.
  const mine = writer.acked.filter((id) => writeSetIndices(id, q.ensembleSize, q.writeQuorum).includes(slot))
  const ask = (ids: number[]): Promise<Map<number, number>> => askBookie(c.nats.url, victim, writer.ledgerId, ids).catch((err: unknown) => {
    throw new Error(`${victim} restarted after the power cut (${cut.did}) but did not answer reads of ledger ${writer.ledgerId}: ` +
      `${String(err)}\n${c.bookie(victim).output().slice(-16_000)}`)
  })
  const answers = await ask(mine)
  const victimAnswers = countByRc(answers)
  // With Qa = Qw every acknowledged entry of X's write sets was acknowledged by X itself; with
  // Qa < Qw the writer may have gone on without X (killed first), so a "no such entry" from X for
  // an entry it never received is true, and only the IN_LIMBO answers say anything.
  const victimDenied = q.ackQuorum < q.writeQuorum ? [] : [...answers].filter(([, rc]) => rc === RC.NO_SUCH_ENTRY).map(([id]) => id)
  const victimUnsure = [...answers].filter(([, rc]) => rc !== RC.OK && rc !== RC.NO_SUCH_ENTRY).map(([id]) => id)
  // An integrity check while the ledger is open keeps it in limbo: X still may not deny.
  const checkBefore = await integrityCheck(c.nats.url, victim)
  const answersAfterCheck = countByRc(await ask(mine))

  const client = await c.client()
  const { lastEntryId, lost } = await recoverAndRead(client, writer.ledgerId, writer.acked)

  // Closed now: the check takes the ledger out of limbo, having verified what is placed on X.
  const checkAfter = await integrityCheck(c.nats.url, victim)
  const md = (await client.metadata.readLedger(writer.ledgerId)).value
  const placed = [...placedEntryChunks(md, victim, 100_000)].flat()
  const after = await ask(placed)
  const lackingAfter = [...after].filter(([, rc]) => rc !== RC.OK).map(([id]) => id)
  const mark = await new AutorecoveryStore(client.metadata.clusterKv).readMark(writer.ledgerId)
  return {
    seed: opts.seed, quorums: quorumsName(q), inFlight, ledgerId: writer.ledgerId, victim, cut, refused: null, servingAfterMs,
    acked: writer.acked.length, maxAcked: writer.maxAcked, lastEntryId, lost, victimAnswers, victimDenied, victimUnsure,
    checkBefore, answersAfterCheck, checkAfter, lackingAfter, answersAfter: countByRc(after),
    markedForX: mark?.value.damaged.includes(victim) ?? false,
  }
}

function countByRc(answers: Map<number, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const rc of answers.values()) out[rcName(rc)] = (out[rcName(rc)] ?? 0) + 1
  return out
}

/** Asks the bookie for an integrity check now (what `quire shell bookieintegritycheck` does); null when nothing answers. */
export async function integrityCheck(url: string, bookieId: string): Promise<IntegrityResult | null> {
  const nc = await connectNats(url)
  try {
    const msg = await nc.request(integrityCheckSubject(bookieId), new Uint8Array(0), { timeout: 60_000 })
    return JSON.parse(Buffer.from(msg.data).toString('utf8')) as IntegrityResult
  } catch (err) {
    if (err instanceof errors.NoRespondersError || (err instanceof errors.RequestError && err.isNoResponders())) return null
    throw err
  } finally {
    await nc.close()
  }
}

interface WriterRun { ledgerId: number; ensemble: string[]; acked: number[]; maxAcked: number }

/**
 * Runs test/support/appender.ts until `target` entries are acknowledged, then asks `pickVictim`
 * for the bookie to kill (given the ensemble and the highest entry acknowledged so far) and kills
 * it and the writer with -9, `gapMs` apart, the victim first or the writer first. An error the
 * writer reports once the victim is gone (its appends cannot complete) is expected.
 */
async function runWriter(
  c: TestCluster, q: Quorums, target: number, inFlight: number, victimFirst: boolean, gapMs: number,
  pickVictim: (ensemble: string[], maxAcked: number) => BookieProcess,
): Promise<WriterRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/appender.ts'), c.nats.url, String(inFlight), quorumsName(q)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = new Promise((r) => child.once('exit', r))
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  try {
    await waitFor(() => (out.match(/^acked /gm)?.length ?? 0) >= target || child.exitCode !== null, 60_000,
      () => `the writer to have ${target} entries acknowledged:\n${out.slice(-2000)}`)
    if (/^error /m.test(out)) throw new Error(`the writer failed before ${target} entries were acknowledged:\n${out.slice(-2000)}`)
    const victim = pickVictim(ensembleOf(out), Math.max(...ackedIn(out)))
    if (victimFirst) victim.kill('SIGKILL')
    else {
      child.kill('SIGKILL')
      await exited
    }
    await sleep(gapMs)
    victim.kill('SIGKILL')
  } finally {
    child.kill('SIGKILL')
    await exited
  }
  const ledgerId = Number(/^ledger (\d+)$/m.exec(out)?.[1])
  const ensemble = ensembleOf(out)
  const acked = ackedIn(out)
  if (!Number.isInteger(ledgerId) || ensemble.length !== q.ensembleSize || acked.length === 0) {
    throw new Error(`the writer's output is not what test/support/appender.ts prints:\n${out.slice(-2000)}`)
  }
  return { ledgerId, ensemble, acked, maxAcked: Math.max(...acked) }
}

const ensembleOf = (out: string): string[] => (/^ensemble (.+)$/m.exec(out)?.[1] ?? '').split(',')
const ackedIn = (out: string): number[] => [...out.matchAll(/^acked (\d+)$/gm)].map((m) => Number(m[1]))

/**
 * Waits until the bookie answers a (non-fencing) LAC read, asked once a second: a bookie is
 * registered before it subscribes to its subject (and, unchecked after an unclean stop, before its
 * first integrity pass), and a request sent meanwhile is dropped, not refused. Returns the wait.
 */
async function untilServing(url: string, bookieId: string, ledgerId: number): Promise<number> {
  const nc = await connectNats(url)
  const bookies = new BookieClient(nc)
  const started = Date.now()
  try {
    await waitFor(() => bookies.readLac(bookieId, ledgerId, 1000).then(() => true, () => false), 60_000,
      () => `${bookieId} to answer after its restart`, 0)
    return Date.now() - started
  } finally {
    await bookies.close()
    await nc.close()
  }
}

/** The master key of the appender's ledgers (password 'pw', test/support/appender.ts). */
const APPENDER_KEY = masterKeyOf('pw')

/** The bookie's answer (a response code) for each of `ids`, read directly from it, without fencing. */
export async function askBookie(url: string, bookieId: string, ledgerId: number, ids: number[]): Promise<Map<number, number>> {
  const nc = await connectNats(url)
  const bookies = new BookieClient(nc)
  const out = new Map<number, number>()
  try {
    let rest = [...ids]
    while (rest.length > 0) {
      // The appender's ledgers have a password: a read carries its master key.
      const resp = await bookies.read(bookieId, ledgerId, rest.slice(0, 256), 4 * 1024 * 1024, 15_000, undefined, APPENDER_KEY)
      // An answer covers a prefix of the ids; a whole-request code with no entries is every id's.
      if (resp.entries.length === 0) {
        for (const id of rest.slice(0, 256)) out.set(id, resp.rc)
        rest = rest.slice(256)
        continue
      }
      resp.entries.forEach(([rc], i) => out.set(rest[i]!, rc))
      rest = rest.slice(resp.entries.length)
    }
  } finally {
    await bookies.close()
    await nc.close()
  }
  return out
}

/** Opens the ledger with recovery, reads it all, and lists the acknowledged entries not read back. */
async function recoverAndRead(client: QuireClient, ledgerId: number, acked: number[]): Promise<{ lastEntryId: number; lost: number[] }> {
  const r = await client.openLedger(ledgerId, { password: 'pw', recovery: true })
  if (r.metadata.state !== 'CLOSED') throw new Error(`recovery left ledger ${ledgerId} ${r.metadata.state}`)
  const lastEntryId = r.metadata.lastEntryId
  const read = new Map<number, string>()
  for (let from = 0; from <= lastEntryId; from += 500) {
    for (const e of await r.read(from, Math.min(lastEntryId, from + 499))) read.set(e.entryId, e.payload.toString('latin1'))
  }
  const lost = acked.filter((id) => !(read.get(id) ?? '').startsWith(`entry-${id}-`)).sort((a, b) => a - b)
  return { lastEntryId, lost }
}

/** One line for a run, for logs and failure messages. */
export function describeRun(r: PowerCutRun): string {
  const head = `seed ${r.seed} ${r.quorums} ledger ${r.ledgerId}, ${r.inFlight} in flight: acked ${r.acked} (up to ${r.maxAcked}), ` +
    `recovered to ${r.lastEntryId}, lost ${r.lost.length}${r.lost.length ? ` [${r.lost.slice(0, 20).join(',')}]` : ''}; ` +
    `${r.victim} lost power (${r.cut.did}; WAL ${r.cut.wal ? `${r.cut.wal.from} -> ${r.cut.wal.to} bytes` : 'none'})`
  if (r.refused !== null) {
    return `${head} and refused to start: ${r.refused.split('\n').find((l) => l.includes('CORRUPT_JOURNAL'))?.slice(0, 300) ?? r.refused.slice(0, 300)}`
  }
  const answers = Object.entries(r.victimAnswers).map(([k, v]) => `${k} ${v}`).join(', ')
  return `${head}, served ${r.servingAfterMs} ms after it registered, answered before recovery: ${answers}` +
    `${r.victimDenied.length ? `; denied acked [${r.victimDenied.slice(0, 20).join(',')}]` : ''}` +
    `; integrity check before recovery: ${checkLine(r.checkBefore)}, after: ${checkLine(r.checkAfter)}; ` +
    `after it ${r.lackingAfter.length} placed entries not answered OK${r.markedForX ? ', ledger marked for re-copy' : ''}`
}

const checkLine = (c: IntegrityResult | null): string =>
  c === null ? 'none' : `${c.result} (limbo ${c.limbo}${c.unchecked ? ', unchecked' : ''}, marked ${c.marked}, lacking ${c.lackingEntries})`

export { seededRandom }
