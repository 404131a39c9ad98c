// The client (QuireClientImpl, public as the QuireClient interface of client/api.ts): connects
// to NATS, opens the metadata buckets, and creates, opens, describes, lists and deletes ledgers.
// `connect` is the public way in and returns the interface; the class, its parts constructor
// (the simulator's network, KV and clock) and its `nc`/`metadata` fields are internal
// (client/internal.ts).

import type { NatsConnection } from '@nats-io/transport-node'
import { QuireError } from '../machines/errors.ts'
import { DEFAULT_QUORUM, validateQuorum } from '../machines/quorum.ts'
import { ensembleMaxEntryBytes, ensembleTakesWriteSetSubjects, pickBookies, type BookieRecord, type LedgerMetadata, type MetadataStore } from '../storage/metadataStore.ts'
import { openMetadata } from '../storage/openMetadata.ts'
import { masterKeyOf, passwordCheckOf, validateDigestType, type DigestType } from '../transport/entry.ts'
import { connectNats, type NatsAuth } from '../transport/nats.ts'
import { BookieClient, type BookieTransport } from './bookieClient.ts'
import { realClock, type Clock, type Random } from '../transport/clock.ts'
import { ReadHandleImpl } from './readHandle.ts'
import { SlowBookies } from './slowBookies.ts'
import { WriteHandleImpl, addWatchInterval, type WriteDeps } from './writeHandle.ts'
import { Ticker } from './ticker.ts'
import { TickClock } from './tickClock.ts'
import { LacBatcher } from './lacBatcher.ts'
import type { QuireClient } from './api.ts'
import { recoverLedger } from './recovery.ts'
import { LogNamespaceImpl } from './logs.ts'
import { LogStore } from '../storage/logStore.ts'
import { NO_CLIENT_METRICS, type ClientMetrics } from './telemetry.ts'

export interface ClientOptions {
  /** NATS server URL(s), e.g. "nats://127.0.0.1:4222" or a comma-separated list. */
  servers: string | string[]
  /**
   * How to log in to NATS (user and password, token, nkey seed file, creds file) and the TLS to
   * require (a private CA, a client certificate for mutual TLS). A server that refuses either is
   * NATS_AUTH. None by default; a `tls://` URL requires TLS too.
   */
  auth?: NatsAuth
  connectTimeoutMs?: number
  /** An add that has no ack quorum after this long fails the writer with TIMEOUT. Default 10 s. */
  addTimeoutMs?: number
  readTimeoutMs?: number
  /**
   * A read request a bookie has not answered after this long is also sent to the next replica of
   * the write set (the first valid copy wins), and that bookie is asked last for a while; LAC
   * reads and long polls stop waiting on a bookie this long after enough others answered.
   * Default 500 ms (BookKeeper's speculativeReadTimeout is 2 s); 0 turns it off (a hung replica
   * then costs a read the whole `readTimeoutMs`).
   */
  speculativeReadTimeoutMs?: number
  /**
   * Largest payload `append` accepts (ENTRY_TOO_LARGE above). Default 5 MiB. The limit a writer
   * enforces is the smallest of this, the NATS server's max_payload less the add frame's framing,
   * and the smallest maxEntryBytes the ledger's bookies publish, less the entry header and digest.
   */
  maxEntryBytes?: number
  /** An idle writer sends its LAC on its own after this long, for tailing readers. Default 100 ms; 0 never. */
  explicitLacIntervalMs?: number
  /**
   * Tell the bookies each new LAC as soon as it moves, unless an add sent in the same turn carries
   * it: a tailing reader then gets an entry one hop after its ack instead of when the next entry
   * arrives. Costs one small message per bookie per ack group, and wakes every parked long poll
   * that often: on a busy, small machine (the benchmark's two cores) that load made adds and
   * tails slower at 1,000 entries/s and more, so it is off unless asked for. Default false.
   */
  eagerLac?: boolean
  name?: string
  /** Replicas of the metadata buckets if this client creates them; default min(3, servers in the NATS cluster). */
  metadataReplicas?: number
  /**
   * Publish this client's writers, recoveries and tailing readers on `quire.inspect.*` for the
   * inspector (transport/inspect.ts). Default false: the client publishes nothing there.
   */
  inspect?: boolean
  /** Where the client reports add latency, tail deliveries and bookie timeouts. Default: nowhere. */
  metrics?: ClientMetrics
}

export interface CreateLedgerOptions {
  ensembleSize?: number
  writeQuorum?: number
  ackQuorum?: number
  digestType?: DigestType
  password?: string | Uint8Array
  customMetadata?: Record<string, string>
}

export interface OpenLedgerOptions {
  password?: string | Uint8Array
  /**
   * Recover the ledger: fence its last segment's bookies (its writer can get no more acks), find
   * its last entry, write the entries found back to their write sets, and close it there.
   * Without it, an open never fences and never writes metadata.
   */
  recovery?: boolean
}

export const MAX_ENTRY_BYTES_DEFAULT = 5 * 1024 * 1024
export const SPECULATIVE_READ_TIMEOUT_MS_DEFAULT = 500

/** Connect to a Quire cluster's NATS servers and open its metadata buckets. */
export function connect(opts: ClientOptions): Promise<QuireClient> {
  return connectClient(opts)
}

/** `connect`, typed as the class: for the server side, the CLI and tests that need its internals. */
export async function connectClient(opts: ClientOptions): Promise<QuireClientImpl> {
  const nc = await connectNats(opts.servers, { name: opts.name ?? 'quire-client', timeoutMs: opts.connectTimeoutMs, auth: opts.auth })
  try {
    const metadata = await openMetadata(nc, opts.metadataReplicas ? { metadataReplicas: opts.metadataReplicas } : {})
    return new QuireClientImpl({ nc, bookies: new BookieClient(nc, opts.metrics), metadata, clock: realClock, random: Math.random }, opts)
  } catch (err) {
    await nc.close().catch(() => {})
    throw err
  }
}

/** A ledger id as the metadata store keys it: a non-negative safe integer, else INVALID_CONFIG. */
function checkLedgerId(ledgerId: number): number {
  if (!Number.isSafeInteger(ledgerId) || ledgerId < 0) {
    throw new QuireError('INVALID_CONFIG', `a ledger id is a non-negative integer, got ${String(ledgerId)}`, { ledgerId: String(ledgerId) })
  }
  return ledgerId
}

/** What a client runs on: NATS in the product; a simulated network, KV and clock in sim/. */
export interface ClientParts {
  nc: NatsConnection | null
  bookies: BookieTransport & { close?(): Promise<void> }
  metadata: MetadataStore
  clock: Clock
  random: Random
  /** The simulator's known-broken writer rules (WriteDeps.writerLogic); never set by the product. */
  writerLogic?: WriteDeps['writerLogic']
}

export class QuireClientImpl implements QuireClient {
  readonly nc: NatsConnection | null
  readonly metadata: MetadataStore
  private readonly bookies: BookieTransport & { close?(): Promise<void> }
  private readonly clock: Clock
  private readonly random: Random
  private readonly addTimeoutMs: number
  private readonly readTimeoutMs: number
  private readonly speculativeReadTimeoutMs: number
  /** Bookies slow or failing lately, for every handle's read order (client/slowBookies.ts). */
  private readonly slowBookies: SlowBookies
  private readonly maxEntryBytes: number
  private readonly explicitLacIntervalMs: number
  private readonly eagerLac: boolean
  private readonly inspect: NatsConnection | null
  private readonly metrics: ClientMetrics
  /** Explicit LACs of all this client's writers, one frame per bookie (client/lacBatcher.ts). */
  readonly lacs: LacBatcher
  /** The clock of every writer's delays (re-sends, add timeouts, idle LACs): one tick for all, while any is set. */
  private readonly writerTimers: TickClock
  private readonly writerLogic: WriteDeps['writerLogic']

  constructor(parts: ClientParts, opts: Omit<ClientOptions, 'servers'> = {}) {
    this.nc = parts.nc
    this.writerLogic = parts.writerLogic
    this.metadata = parts.metadata
    this.bookies = parts.bookies
    this.clock = parts.clock
    this.random = parts.random
    this.addTimeoutMs = opts.addTimeoutMs ?? 10_000
    this.readTimeoutMs = opts.readTimeoutMs ?? 10_000
    this.speculativeReadTimeoutMs = opts.speculativeReadTimeoutMs ?? SPECULATIVE_READ_TIMEOUT_MS_DEFAULT
    if (!Number.isFinite(this.speculativeReadTimeoutMs) || this.speculativeReadTimeoutMs < 0) {
      throw new QuireError('INVALID_CONFIG', `speculativeReadTimeoutMs must be 0 (off) or a positive number of ms, got ${String(opts.speculativeReadTimeoutMs)}`, { speculativeReadTimeoutMs: String(opts.speculativeReadTimeoutMs) })
    }
    this.slowBookies = new SlowBookies(this.readTimeoutMs, () => parts.clock.now())
    this.maxEntryBytes = opts.maxEntryBytes ?? MAX_ENTRY_BYTES_DEFAULT
    this.explicitLacIntervalMs = opts.explicitLacIntervalMs ?? 100
    this.eagerLac = opts.eagerLac ?? false
    this.inspect = opts.inspect ? parts.nc : null
    this.metrics = opts.metrics ?? NO_CLIENT_METRICS
    this.lacs = new LacBatcher(parts.bookies, parts.clock, this.explicitLacIntervalMs)
    this.writerTimers = new TickClock(parts.clock, new Ticker(parts.clock, addWatchInterval(this.addTimeoutMs)))
  }

  private logNamespace: LogNamespaceImpl | null = null

  /** Named logs over this client's ledgers (client/logs.ts); their metadata is in the logs bucket. */
  get logs(): LogNamespaceImpl {
    this.logNamespace ??= new LogNamespaceImpl({ ledgers: this, store: new LogStore(this.metadata.logsKv), clock: this.clock, inspect: this.inspect })
    return this.logNamespace
  }

  async createLedger(opts: CreateLedgerOptions = {}): Promise<WriteHandleImpl> {
    const quorum = validateQuorum({
      ensembleSize: opts.ensembleSize ?? DEFAULT_QUORUM.ensembleSize,
      writeQuorum: opts.writeQuorum ?? Math.min(opts.ensembleSize ?? DEFAULT_QUORUM.writeQuorum, DEFAULT_QUORUM.writeQuorum),
      ackQuorum: opts.ackQuorum ?? Math.min(opts.writeQuorum ?? DEFAULT_QUORUM.ackQuorum, DEFAULT_QUORUM.ackQuorum),
    })
    const digestType = validateDigestType(opts.digestType ?? 'crc32c')
    const bookies = await this.metadata.listBookies()
    const ensemble = pickBookies(bookies, quorum.ensembleSize, this.clock.now(), this.random)
    const masterKey = masterKeyOf(opts.password ?? '')
    const ledgerId = await this.metadata.allocateLedgerId()
    const md: LedgerMetadata = {
      ledgerId, ...quorum, digestType, state: 'OPEN', lastEntryId: -1, length: 0,
      segments: [{ firstEntryId: 0, ensemble }], customMetadata: { ...(opts.customMetadata ?? {}) },
      createdAt: this.clock.now(), passwordCheck: passwordCheckOf(masterKey),
    }
    const created = await this.metadata.createLedger(md)
    return new WriteHandleImpl({ ...this.writeDeps(masterKey), bookiesMaxEntryBytes: ensembleMaxEntryBytes(bookies, ensemble), writeSetSubjects: ensembleTakesWriteSetSubjects(bookies, ensemble) }, created.value, created.revision)
  }

  /** Open without recovery: never fences, never writes metadata; reads up to the LAC it learns. */
  async openLedger(ledgerId: number, opts: OpenLedgerOptions = {}): Promise<ReadHandleImpl> {
    const { value: md } = await this.metadata.readLedger(checkLedgerId(ledgerId))
    const masterKey = masterKeyOf(opts.password ?? '')
    if (passwordCheckOf(masterKey) !== md.passwordCheck) {
      throw new QuireError('UNAUTHORIZED', `wrong password for ledger ${ledgerId}`, { ledgerId })
    }
    const deps = { ...this.readDeps(), masterKey, metadata: this.metadata, inspect: this.inspect, metrics: this.metrics }
    if (opts.recovery) return new ReadHandleImpl(deps, await recoverLedger(this.writeDeps(masterKey), ledgerId))
    const handle = new ReadHandleImpl(deps, md)
    if (md.state !== 'CLOSED') await handle.readLac().catch(() => {})
    return handle
  }

  /** The stored metadata, without its revision (a CAS on it is the writer's and recovery's business). */
  async getLedgerMetadata(ledgerId: number): Promise<LedgerMetadata> {
    return (await this.metadata.readLedger(checkLedgerId(ledgerId))).value
  }

  async deleteLedger(ledgerId: number): Promise<void> {
    await this.metadata.deleteLedger(checkLedgerId(ledgerId))
  }

  listLedgers(): AsyncIterable<number> {
    return this.metadata.listLedgers()
  }

  listBookies(): Promise<BookieRecord[]> {
    return this.metadata.listBookies()
  }

  async close(): Promise<void> {
    this.lacs.close()
    await this.bookies.close?.()
    if (this.nc) {
      await this.nc.flush().catch(() => {})
      await this.nc.close()
    }
  }

  /** What every handle's reads share: the bookies, timeouts, clock and the client's bookie health. */
  private readDeps() {
    return {
      bookies: this.bookies, readTimeoutMs: this.readTimeoutMs, clock: this.clock,
      speculativeReadTimeoutMs: this.speculativeReadTimeoutMs, slowBookies: this.slowBookies,
    }
  }

  private writeDeps(masterKey: Buffer) {
    return {
      ...this.readDeps(), masterKey, metadata: this.metadata,
      addTimeoutMs: this.addTimeoutMs, maxEntryBytes: this.maxEntryBytes, inspect: this.inspect, metrics: this.metrics, random: this.random,
      explicitLacIntervalMs: this.explicitLacIntervalMs, eagerLac: this.eagerLac, lacs: this.lacs, timers: this.writerTimers,
      writerLogic: this.writerLogic,
    }
  }
}
