// Ledger and bookie metadata over a VersionedKv (JetStream KV in the product, memoryKv in unit
// tests). PROTOCOL.md "Metadata in JetStream KV":
// - ledger metadata is JSON under `ledgers/<id>`-style keys; every update is a CAS on the revision;
// - ledger ids come from a CAS'd counter that hands out ranges, so no central process is needed;
// - bookies register a record refreshed by heartbeat; NATS 2.9 has no per-key TTL, so liveness is
//   judged from the record's `heartbeatAt` and its own `heartbeatMs` (dead after 5 missed beats),
//   and a draining bookie deletes its record.

import { QuireError, assert } from '../machines/errors.ts'
import type { QuorumConfig } from '../machines/quorum.ts'
import { KvConflict, type VersionedKv } from './types.ts'

export type LedgerState = 'OPEN' | 'IN_RECOVERY' | 'CLOSED'

export interface Segment {
  firstEntryId: number
  ensemble: string[]
}

export interface LedgerMetadata extends QuorumConfig {
  ledgerId: number
  digestType: 'crc32c' | 'hmac-sha256' | 'none'
  state: LedgerState
  /** -1 while open or when empty. */
  lastEntryId: number
  length: number
  segments: Segment[]
  customMetadata: Record<string, string>
  createdAt: number
  /** A one-way check value of the master key; never the password. */
  passwordCheck: string
}

export interface Versioned<T> {
  value: T
  revision: number
}

export interface BookieRecord {
  bookieId: string
  state: 'writable' | 'readonly'
  heartbeatAt: number
  heartbeatMs: number
  startedAt: number
  host: string
  pid: number
  /**
   * Ledgers with entries whose stored copy on this bookie is damaged (bit rot in its entry
   * store), at most DAMAGED_LEDGERS_LISTED_MAX; the auditor marks them for repair in place.
   */
  damagedLedgers?: number[]
  /**
   * Largest encoded entry (header and digest included) the bookie accepts; it answers TOO_LARGE
   * above. Writers take the smallest over a ledger's ensemble as part of their entry limit.
   * Absent in records of bookies from before it was published: unknown, no bound.
   */
  maxEntryBytes?: number
  /**
   * The bookie takes adds on the subjects of its write sets too (transport/wire.ts
   * writeSetSubject), where a writer sends a large add group once for all the bookies of its write
   * set. Absent in records of bookies from before: a writer sends to each bookie's own subject.
   */
  writeSetSubjects?: boolean
}

/** The smallest `maxEntryBytes` published by the given bookies; undefined when none publishes one. */
export function ensembleMaxEntryBytes(records: readonly BookieRecord[], ensemble: readonly string[]): { bytes: number; bookieId: string } | undefined {
  let best: { bytes: number; bookieId: string } | undefined
  for (const r of records) {
    if (!ensemble.includes(r.bookieId) || r.maxEntryBytes === undefined) continue
    if (!best || r.maxEntryBytes < best.bytes) best = { bytes: r.maxEntryBytes, bookieId: r.bookieId }
  }
  return best
}

/** Whether every bookie of `ensemble` says it takes adds on write-set subjects. */
export const ensembleTakesWriteSetSubjects = (records: readonly BookieRecord[], ensemble: readonly string[]): boolean =>
  ensemble.every((id) => records.some((r) => r.bookieId === id && r.writeSetSubjects === true))

/** Bound on the damaged ledgers a bookie lists in its registration (the rest follow as these heal). */
export const DAMAGED_LEDGERS_LISTED_MAX = 1000

const ID_RANGE = 1000
const COUNTER_KEY = 'idgen'
const enc = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v))
const dec = <T>(b: Uint8Array): T => JSON.parse(Buffer.from(b).toString('utf8')) as T

export const ledgerKey = (id: number): string => `L${id}`

/** Beats a bookie may miss before it counts as dead (a busy machine can delay one or two). */
export const MISSED_HEARTBEATS_DEAD = 5

export function isBookieAlive(rec: BookieRecord, now: number): boolean {
  return now - rec.heartbeatAt < MISSED_HEARTBEATS_DEAD * rec.heartbeatMs
}

export class MetadataStore {
  private idNext = 0
  private idEnd = 0
  private idRefill: Promise<void> | null = null

  constructor(
    private readonly ledgers: VersionedKv,
    private readonly bookies: VersionedKv,
    private readonly cluster: VersionedKv,
    private readonly logs: VersionedKv | null = null,
  ) {}

  /** The named logs bucket (storage/logStore.ts); INVALID_CONFIG when this store was opened without one. */
  get logsKv(): VersionedKv {
    if (this.logs === null) throw new QuireError('INVALID_CONFIG', 'this metadata store has no logs bucket', {})
    return this.logs
  }

  /** The cluster-wide records bucket (id counter, instance id, bookie cookies) for the modules that own those records. */
  get clusterKv(): VersionedKv {
    return this.cluster
  }

  /** A new, never-used ledger id (>= 1). Ranges of ids are claimed with a CAS on a counter. */
  async allocateLedgerId(): Promise<number> {
    while (this.idNext >= this.idEnd) {
      this.idRefill ??= this.claimRange().finally(() => { this.idRefill = null })
      await this.idRefill
    }
    return this.idNext++
  }

  private async claimRange(): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const cur = await this.cluster.get(COUNTER_KEY)
      const start = cur ? dec<{ next: number }>(cur.value).next : 1
      const next = { next: start + ID_RANGE }
      try {
        if (cur) await this.cluster.update(COUNTER_KEY, enc(next), cur.revision)
        else await this.cluster.create(COUNTER_KEY, enc(next))
        this.idNext = start
        this.idEnd = start + ID_RANGE
        return
      } catch (err) {
        if (!(err instanceof KvConflict)) throw err
      }
    }
    throw new QuireError('METADATA_CONFLICT', 'could not claim a range of ledger ids after 100 attempts')
  }

  async createLedger(md: LedgerMetadata): Promise<Versioned<LedgerMetadata>> {
    try {
      const revision = await this.ledgers.create(ledgerKey(md.ledgerId), enc(md))
      return { value: md, revision }
    } catch (err) {
      if (err instanceof KvConflict) {
        throw new QuireError('METADATA_CONFLICT', `ledger ${md.ledgerId} already exists`, { ledgerId: md.ledgerId })
      }
      throw err
    }
  }

  async readLedger(ledgerId: number): Promise<Versioned<LedgerMetadata>> {
    const got = await this.ledgers.get(ledgerKey(ledgerId))
    if (!got) throw new QuireError('NO_SUCH_LEDGER', `no ledger ${ledgerId}`, { ledgerId })
    return { value: dec<LedgerMetadata>(got.value), revision: got.revision }
  }

  /** CAS; throws KvConflict when the revision moved on (callers re-read and retry). */
  async writeLedger(md: LedgerMetadata, revision: number): Promise<Versioned<LedgerMetadata>> {
    const next = await this.ledgers.update(ledgerKey(md.ledgerId), enc(md), revision)
    return { value: md, revision: next }
  }

  async deleteLedger(ledgerId: number): Promise<void> {
    await this.readLedger(ledgerId)
    await this.ledgers.delete(ledgerKey(ledgerId))
  }

  /** Ledger ids, ascending. */
  async *listLedgers(): AsyncIterable<number> {
    const ids = new Set<number>()
    for await (const k of this.ledgers.keys()) {
      if (k.startsWith('L')) ids.add(Number(k.slice(1)))
    }
    yield* [...ids].sort((a, b) => a - b)
  }

  async putBookie(rec: BookieRecord): Promise<void> {
    assert(/^[A-Za-z0-9_-]+$/.test(rec.bookieId), `bad bookie id ${rec.bookieId}`)
    await this.bookies.put(rec.bookieId, enc(rec))
  }

  async removeBookie(bookieId: string): Promise<void> {
    await this.bookies.delete(bookieId)
  }

  async listBookies(): Promise<BookieRecord[]> {
    const byId = new Map<string, BookieRecord>()
    for await (const k of this.bookies.keys()) {
      const got = await this.bookies.get(k)
      if (got) byId.set(k, dec<BookieRecord>(got.value))
    }
    return [...byId.values()].sort((a, b) => a.bookieId.localeCompare(b.bookieId))
  }
}

/** Placement: a random pick of `count` live, writable bookies not in `exclude`. */
export function pickBookies(
  all: readonly BookieRecord[], count: number, now: number, random: () => number, exclude: readonly string[] = [],
): string[] {
  const candidates = [...new Map(all.map((b) => [b.bookieId, b])).values()]
    .filter((b) => b.state === 'writable' && isBookieAlive(b, now) && !exclude.includes(b.bookieId))
  if (candidates.length < count) {
    throw new QuireError('NOT_ENOUGH_BOOKIES', `need ${count} writable bookies, ${candidates.length} available`, {
      needed: count, available: candidates.map((b) => b.bookieId),
    })
  }
  const pool = candidates.map((b) => b.bookieId)
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = pool[i]!
    pool[i] = pool[j]!
    pool[j] = t
  }
  const picked = pool.slice(0, count)
  assert(new Set(picked).size === count, `placement picked a bookie twice: ${picked.join(',')}`)
  return picked
}
