// Bookie-level `quire shell` commands, in the spirit of BookKeeper's shell:
// - bookiesanity <bookieId>: write, read back and delete a ledger placed on exactly that bookie
//   (E = Qw = Qa = 1); prints ok or the error (exit 1), so it can back a health check;
// - readjournal --data DIR: the journal records of a stopped bookie's data folder (type, ledger,
//   entry, length), read with the bookie's own replay code from a copy, because replay cuts a
//   torn tail off and an inspection must not change the folder it inspects.
// - bookieintegritycheck <bookieId>: asks the bookie (over NATS) to run its integrity check now
//   (actors/integrityCheck.ts) and prints the result: ledgers left in limbo, released, marked.
// `listbookies --readonly` lives in cli/shell.ts with the rest of listbookies.

import { cp, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { errors } from '@nats-io/transport-node'
import { assertBookieId } from '../actors/cookie.ts'
import { integrityCheckSubject, type IntegrityResult } from '../actors/integrityCheck.ts'
import { decodeRecord } from '../actors/journalRecords.ts'
import { BookieClient, QuireClientImpl as QuireClient, connectNats, isBookieAlive, openMetadata, realClock, type MetadataStore } from '../client/internal.ts'
import { QuireError } from '../machines/errors.ts'
import { replayJournal } from '../storage/journal.ts'
import { readEntryHeader } from '../transport/entry.ts'
import { natsTargetOf, type NatsCommandOptions, type NatsTarget } from './natsSettings.ts'

function intOpt(name: string, v: string, min: number): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min) throw new QuireError('INVALID_CONFIG', `${name} must be an integer >= ${min}, got ${v}`)
  return n
}

/**
 * The metadata store as a client placing ledgers on `bookieId` only would see it: placement (and
 * an ensemble change) can pick nothing else, so a failing bookie fails the check instead of
 * being replaced. Everything but listBookies is the real store (its prototype).
 */
function pinnedTo(metadata: MetadataStore, bookieId: string): MetadataStore {
  const pinned = Object.create(metadata) as MetadataStore
  pinned.listBookies = async () => (await metadata.listBookies()).filter((b) => b.bookieId === bookieId)
  return pinned
}

const payloadOf = (ledgerId: number, i: number): Buffer => Buffer.from(`bookiesanity ledger ${ledgerId} entry ${i}`)

/** Write `entries` entries to a new ledger on exactly `bookieId`, read them back, delete it. */
export async function bookieSanity({ servers, auth }: NatsTarget, bookieId: string, opts: { entries: number; timeoutMs: number }): Promise<{ ledgerId: number; ms: number }> {
  const nc = await connectNats(servers, { name: 'quire-shell-bookiesanity', auth })
  const metadata = await openMetadata(nc).catch(async (err: unknown) => {
    await nc.close().catch(() => {})
    throw err
  })
  const rec = (await metadata.listBookies()).find((b) => b.bookieId === bookieId)
  // An unknown or dead bookie would otherwise show up as NOT_ENOUGH_BOOKIES ("0 available").
  const refusal = !rec ? 'is not registered' : !isBookieAlive(rec, Date.now()) ? 'is dead (no recent heartbeat)'
    : rec.state === 'readonly' ? 'is read-only (disk full?)' : null
  if (refusal !== null) {
    await nc.close().catch(() => {})
    throw new QuireError('BOOKIE_UNAVAILABLE', `bookie ${bookieId} ${refusal}`, { bookieId })
  }
  const client = new QuireClient(
    { nc, bookies: new BookieClient(nc), metadata: pinnedTo(metadata, bookieId), clock: realClock, random: Math.random },
    { addTimeoutMs: opts.timeoutMs, readTimeoutMs: opts.timeoutMs, explicitLacIntervalMs: 0 },
  )
  const started = performance.now()
  let ledgerId: number | null = null
  try {
    const w = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1, customMetadata: { purpose: 'bookiesanity' } })
    ledgerId = w.ledgerId
    for (let i = 0; i < opts.entries; i++) await w.append(payloadOf(w.ledgerId, i))
    await w.close()
    const ensembles = w.metadata.segments.map((s) => s.ensemble.join(','))
    if (ensembles.some((e) => e !== bookieId)) {
      throw new QuireError('BOOKIE_UNAVAILABLE', `ledger ${w.ledgerId} left bookie ${bookieId} (ensembles ${ensembles.join(' | ')})`, { bookieId })
    }
    const r = await client.openLedger(w.ledgerId)
    const got = opts.entries > 0 ? await r.read(0, opts.entries - 1) : []
    if (r.lastAddConfirmed !== opts.entries - 1 || got.length !== opts.entries || got.some((e) => !e.payload.equals(payloadOf(w.ledgerId, e.entryId)))) {
      throw new QuireError('CORRUPT_ENTRY', `bookie ${bookieId} gave back other entries than were written to ledger ${w.ledgerId}`, { bookieId, ledgerId: w.ledgerId })
    }
    await client.deleteLedger(w.ledgerId)
    ledgerId = null
    return { ledgerId: w.ledgerId, ms: performance.now() - started }
  } finally {
    // Never leave the test ledger behind, whatever failed (the bookies' GC then frees it).
    if (ledgerId !== null) await client.deleteLedger(ledgerId).catch(() => {})
    await client.close().catch(() => {})
  }
}

export interface JournalLine {
  segment: number
  offset: number
  type: string
  ledgerId: number
  entryId?: number
  length?: number
  lac?: number
  digestType?: string
}

/** Every record of the journal in `dataDir` (all segments still on disk), one line per entry. */
export async function* readJournalLines(dataDir: string): AsyncGenerator<JournalLine> {
  const jdir = path.join(dataDir, 'journal')
  const isDir = await stat(jdir).then((s) => s.isDirectory(), () => false)
  if (!isDir) throw new QuireError('INVALID_CONFIG', `no journal folder in ${dataDir} (is it a bookie's data folder?)`, { dataDir })
  const copy = await mkdtemp(path.join(os.tmpdir(), 'quire-readjournal-'))
  try {
    await cp(jdir, copy, { recursive: true })
    for await (const { record, position } of replayJournal(copy, null)) {
      const at = { segment: position.segment, offset: position.offset }
      const r = decodeRecord(record)
      if (r.t === 'add') {
        for (const data of r.e) {
          const h = readEntryHeader(data)
          yield { ...at, type: 'add', ledgerId: r.l, entryId: h.entryId, length: h.length, lac: h.lac }
        }
      } else if (r.t === 'key') yield { ...at, type: 'key', ledgerId: r.l, ...(r.d ? { digestType: r.d } : {}) }
      else if (r.t === 'lac') yield { ...at, type: 'lac', ledgerId: r.l, lac: r.lac }
      else if (r.t === 'lacs') for (let i = 0; i < r.x.length; i += 2) yield { ...at, type: 'lac', ledgerId: r.x[i]!, lac: r.x[i + 1]! }
      else yield { ...at, type: String((r as { t: unknown }).t), ledgerId: (r as { l: number }).l }
    }
  } finally {
    await rm(copy, { recursive: true, force: true })
  }
}

export function formatJournalLine(l: JournalLine): string {
  const parts = [`${l.segment}:${l.offset}`, l.type.padEnd(5), `ledger=${l.ledgerId}`]
  if (l.entryId !== undefined) parts.push(`entry=${l.entryId}`)
  if (l.length !== undefined) parts.push(`length=${l.length}`)
  if (l.lac !== undefined) parts.push(`lac=${l.lac}`)
  if (l.digestType !== undefined) parts.push(`digest=${l.digestType}`)
  return parts.join('\t')
}

/** Ask a running bookie for an integrity check now; its result. */
export async function bookieIntegrityCheck({ servers, auth }: NatsTarget, bookieId: string, timeoutMs: number): Promise<IntegrityResult> {
  // The id becomes a subject token: a wildcard or a dot must not reach NATS.
  assertBookieId(bookieId)
  const nc = await connectNats(servers, { name: 'quire-shell-bookieintegritycheck', auth })
  try {
    const msg = await nc.request(integrityCheckSubject(bookieId), new Uint8Array(0), { timeout: timeoutMs })
    return JSON.parse(Buffer.from(msg.data).toString('utf8')) as IntegrityResult
  } catch (err) {
    if (err instanceof errors.NoRespondersError || (err instanceof errors.RequestError && err.isNoResponders())) {
      throw new QuireError('BOOKIE_UNAVAILABLE', `bookie ${bookieId} is not running (nothing answers its integrity check requests)`, { bookieId })
    }
    if (err instanceof errors.TimeoutError) throw new QuireError('TIMEOUT', `bookie ${bookieId} did not finish its integrity check within ${timeoutMs} ms`, { bookieId })
    throw err
  } finally {
    await nc.close().catch(() => {})
  }
}

export function formatIntegrityResult(bookieId: string, r: IntegrityResult): string {
  const state = r.result === 'clean' ? 'checked, nothing in limbo'
    : r.result === 'limbo' ? `${r.limbo} ledger(s) still in limbo${r.unchecked ? ', unchecked' : ''} (open ledgers stay until closed)`
    : `failed: ${r.error ?? 'unknown error'}`
  return `bookie ${bookieId}: ${state}; ${r.released} ledger(s) left limbo, ${r.marked} marked for re-copy ` +
    `(${r.lackingEntries} entries missing or damaged here)${r.unreadable > 0 ? `, ${r.unreadable} unreadable (kept in limbo)` : ''} in ${r.ms} ms`
}

// The commands' actions; cli/shell.ts declares the commands and imports this file when one runs.

export async function runBookieIntegrityCheck(bookieId: string, o: NatsCommandOptions & { timeoutMs: string }): Promise<void> {
  const r = await bookieIntegrityCheck(natsTargetOf(o), bookieId, intOpt('--timeout-ms', o.timeoutMs, 1))
  console.log(formatIntegrityResult(bookieId, r))
  if (r.result === 'failed') process.exitCode = 1
}

export async function runBookieSanity(bookieId: string, o: NatsCommandOptions & { entries: string; timeoutMs: string }): Promise<void> {
  const r = await bookieSanity(natsTargetOf(o), bookieId, { entries: intOpt('--entries', o.entries, 1), timeoutMs: intOpt('--timeout-ms', o.timeoutMs, 1) })
  console.log(`bookie ${bookieId}: ok (ledger ${r.ledgerId}: ${o.entries} entries written, read back and deleted in ${Math.round(r.ms)} ms)`)
}

export async function runReadJournal(o: { data: string }): Promise<void> {
  const counts = new Map<string, number>()
  for await (const line of readJournalLines(o.data)) {
    console.log(formatJournalLine(line))
    counts.set(line.type, (counts.get(line.type) ?? 0) + 1)
  }
  const segments = (await readdir(path.join(o.data, 'journal'))).filter((n) => n.startsWith('journal-')).length
  const summary = [...counts].map(([t, n]) => `${n} ${t}`).join(', ') || 'no records'
  console.log(`${summary} in ${segments} segment file(s)`)
}
