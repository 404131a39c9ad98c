// Opens Quire's metadata buckets in JetStream KV: ledgers, bookies, cluster-wide records (the
// ledger id counter) and named logs. Buckets are created on first use by whichever process comes first.
//
// Replicas: on a NATS cluster the buckets are replicated streams, so that losing a server loses
// neither metadata nor the ability to change it. NATS 2.9 acknowledges a write once a quorum of
// replicas has it in memory, before any fsync: replication, not the disk, is what makes metadata
// durable. The count is `metadataReplicas` when given, else min(3, servers in the cluster), the
// cluster being what the connected server advertises (its INFO lists every routed server's client
// URL; a server with `no_advertise` lists none, so set `metadataReplicas` there).
// Invariants: an existing bucket with fewer replicas than wanted is scaled up (JetStream moves
// its data to the new peers), never down; if that fails, opening fails with a message naming the
// bucket, so metadata is never silently less replicated than asked for.
// Errors are typed (storage/kv.ts mapKvError): TIMEOUT while the cluster has no leader for a
// bucket (or no meta leader), which openMetadataRetrying waits out within a bound.

import { jetstreamManager, JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream'
import type { NatsConnection, ServerInfo } from '@nats-io/transport-node'
import { QuireError, isQuireError } from '../machines/errors.ts'
import { mapKvError, openKv } from './kv.ts'
import { MetadataStore } from './metadataStore.ts'

export const BUCKETS = { ledgers: 'quire_ledgers', bookies: 'quire_bookies', cluster: 'quire_cluster', logs: 'quire_logs' } as const

/** Most replicas JetStream allows for a stream. */
const REPLICAS_MAX = 5
/** Replicas used on a cluster of this many servers or more. */
const REPLICAS_CLUSTER = 3
/** Bound on the wait for a scaled-up bucket to elect a leader and catch its new replicas up. */
const SCALE_SETTLE_MS = 20_000

export interface OpenMetadataOptions {
  /** Replicas of each metadata bucket (1 to 5); default min(3, servers in the NATS cluster). */
  metadataReplicas?: number
}

export async function openMetadata(nc: NatsConnection, opts: OpenMetadataOptions = {}): Promise<MetadataStore> {
  const replicas = opts.metadataReplicas ?? metadataReplicasFor(nc.info)
  if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > REPLICAS_MAX) {
    throw new QuireError('INVALID_CONFIG', `metadataReplicas must be an integer in [1, ${REPLICAS_MAX}], got ${replicas}`, { metadataReplicas: replicas })
  }
  const open = (bucket: string) => openKv(nc, bucket, { history: 1, replicas }).catch((err: unknown) => {
    throw replicasError(err, bucket, replicas, 'create')
  })
  const [ledgers, bookies, cluster, logs] = await Promise.all([open(BUCKETS.ledgers), open(BUCKETS.bookies), open(BUCKETS.cluster), open(BUCKETS.logs)])
  if (replicas > 1) {
    const jsm = await jetstreamManager(nc).catch((err: unknown) => { throw mapKvError(err, 'open the JetStream API', {}, 'open') })
    await Promise.all(Object.values(BUCKETS).map((b) => ensureReplicas(jsm, b, replicas)))
  }
  return new MetadataStore(ledgers, bookies, cluster, logs)
}

/** Servers in the cluster of the connected server, from its INFO; 1 when it is not clustered. */
export function clusterSizeOf(info: ServerInfo | undefined): number {
  if (!info?.cluster) return 1
  return Math.max(1, new Set(info.connect_urls ?? []).size)
}

export function metadataReplicasFor(info: ServerInfo | undefined): number {
  return Math.min(REPLICAS_CLUSTER, clusterSizeOf(info))
}

/**
 * Scale a bucket created with fewer replicas (say before the cluster grew) up to `replicas`, and
 * wait until its new raft group has a leader and every replica: until then its writes would fail.
 */
async function ensureReplicas(jsm: JetStreamManager, bucket: string, replicas: number): Promise<void> {
  const stream = `KV_${bucket}`
  try {
    const info = await jsm.streams.info(stream)
    if (info.config.num_replicas >= replicas) return
    await jsm.streams.update(stream, { num_replicas: replicas })
  } catch (err) {
    throw replicasError(err, bucket, replicas, 'scale')
  }
  const deadline = Date.now() + SCALE_SETTLE_MS
  for (;;) {
    const info = await jsm.streams.info(stream).catch(() => null)
    const peers = (info?.cluster?.replicas ?? []).filter((r) => r.current)
    if (info?.cluster?.leader && peers.length + 1 >= replicas) return
    if (Date.now() > deadline) {
      throw new QuireError('TIMEOUT', `metadata bucket ${bucket} was scaled to ${replicas} replicas but did not settle within ${SCALE_SETTLE_MS} ms`, {
        bucket, metadataReplicas: replicas,
      })
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * The server's refusals of a replica count: no suitable peers for placement (more replicas than
 * servers), replicas > 1 on a server not clustered, insufficient resources. Measured on 2.9.10.
 */
const REPLICAS_REFUSED: ReadonlySet<number> = new Set([10005, 10074, 10023])
/** "stream not found": while scaling up a bucket just opened, the cluster's state has not settled. */
const STREAM_NOT_FOUND = 10059

/**
 * Refusals of the replica count become INVALID_CONFIG naming the bucket; the rest as mapKvError
 * has them (unavailability stays TIMEOUT: a cluster still electing is not a configuration error,
 * and neither is a bucket just opened whose stream a server without quorum says it cannot find).
 */
function replicasError(err: unknown, bucket: string, replicas: number, what: 'create' | 'scale'): unknown {
  const verb = what === 'create' ? 'create' : 'scale up'
  if (what === 'scale' && err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND) {
    return new QuireError('TIMEOUT', `cannot scale up metadata bucket ${bucket}: the NATS cluster does not find its stream yet (${err.message})`, {
      bucket, apiCode: err.code, cause: err,
    })
  }
  if (replicas === 1 || !(err instanceof JetStreamApiError) || !REPLICAS_REFUSED.has(err.code)) {
    return mapKvError(err, `${verb} metadata bucket ${bucket}`, { bucket }, 'open')
  }
  return new QuireError('INVALID_CONFIG',
    `cannot ${verb} metadata bucket ${bucket} with ${replicas} replicas: ${err.message} (set metadataReplicas to what the NATS cluster can hold)`,
    { bucket, metadataReplicas: replicas, apiCode: err.code, cause: err })
}

export interface RetryOptions {
  /** Give up after this long (TIMEOUT); a setting of `quire node` (metadataStartTimeoutMs). */
  timeoutMs: number
  /** Told of each failed attempt before the pause that follows it (the node logs it). */
  onRetry?: (r: { attempt: number; delayMs: number; err: QuireError }) => void
}

/** First pause between attempts; doubled after each, up to RETRY_DELAY_MAX_MS. */
const RETRY_DELAY_MS = 250
const RETRY_DELAY_MAX_MS = 5000

/**
 * openMetadata, tried again while it fails with TIMEOUT (servers starting, a cluster without a
 * meta leader yet, fresh buckets electing their leaders) or a bucket cannot take writes yet (see
 * assertBucketsServing), with a doubling pause, for at most `timeoutMs`; then TIMEOUT naming the
 * last failure. Every other error (INVALID_CONFIG, ...) is final at once.
 * An attempt is cut at the deadline: a JetStream API request to a cluster without a quorum may go
 * unanswered for the client's whole API timeout (5 s) instead of failing at once, and the node
 * must give up when it was told to, not an API timeout later.
 */
export async function openMetadataRetrying(nc: NatsConnection, opts: OpenMetadataOptions, retry: RetryOptions): Promise<MetadataStore> {
  const deadline = Date.now() + retry.timeoutMs
  let delayMs = RETRY_DELAY_MS
  for (let attempt = 1; ; attempt++) {
    try {
      return retry.timeoutMs === 0 ? await openServing(nc, opts) : await beforeDeadline(openServing(nc, opts), deadline - Date.now())
    } catch (err) {
      if (!isQuireError(err, 'TIMEOUT')) throw err
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new QuireError('TIMEOUT', `the metadata store did not answer within ${retry.timeoutMs} ms (${attempt} attempts; last: ${err.message})`, {
          attempts: attempt, timeoutMs: retry.timeoutMs, cause: err,
        })
      }
      const pause = Math.min(delayMs, left)
      retry.onRetry?.({ attempt, delayMs: pause, err })
      await new Promise((r) => setTimeout(r, pause))
      delayMs = Math.min(RETRY_DELAY_MAX_MS, delayMs * 2)
    }
  }
}

async function openServing(nc: NatsConnection, opts: OpenMetadataOptions): Promise<MetadataStore> {
  const store = await openMetadata(nc, opts)
  await assertBucketsServing(nc)
  return store
}

/** `attempt`, or TIMEOUT once `ms` have passed (the attempt's own outcome is then dropped). */
function beforeDeadline<T>(attempt: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const cut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QuireError('TIMEOUT', `metadata store did not answer within the ${ms} ms left`, { leftMs: ms })), Math.max(0, ms))
  })
  attempt.catch(() => {}) // cut at the deadline: its late failure is nobody's to handle
  return Promise.race([attempt, cut]).finally(() => clearTimeout(timer))
}

/**
 * TIMEOUT unless every bucket's stream has a leader and a majority of its replicas current. Opening
 * a bucket that exists only reads its stream info, which a leader cut off from its peers still
 * answers (until it steps down) while every write fails with 10008: a node that went on would fail
 * its first write (the bookie's cookie) instead of waiting.
 */
async function assertBucketsServing(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc).catch((err: unknown) => { throw mapKvError(err, 'open the JetStream API', {}, 'open') })
  for (const bucket of Object.values(BUCKETS)) {
    const stream = `KV_${bucket}`
    const info = await jsm.streams.info(stream).catch((err: unknown) => { throw mapKvError(err, `read the state of ${stream}`, { bucket }) })
    if (info.cluster === undefined) continue // a single server: nothing to elect
    const current = 1 + (info.cluster.replicas ?? []).filter((r) => r.current && !r.offline).length
    if (!info.cluster.leader || current <= info.config.num_replicas / 2) {
      throw new QuireError('TIMEOUT', `metadata bucket ${bucket} cannot take writes yet: ${info.cluster.leader ? `${current} of ${info.config.num_replicas} replicas current` : 'no leader'}`, {
        bucket, leader: info.cluster.leader ?? null, current, replicas: info.config.num_replicas,
      })
    }
  }
}
