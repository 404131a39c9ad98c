// VersionedKv over a JetStream KV bucket (file storage): Quire's metadata store in the product.
// storage/memoryKv.ts is its in-memory twin; test/kv.test.ts holds both to one contract.
// Error mapping, kept narrow on purpose so that nothing is misread:
// - "wrong last sequence" (JetStream API codes 10071, and 10164 from newer clustered servers) is
//   the one and only KvConflict. It is what both `create` on a live key and `update` at a stale
//   revision produce: nats.js's create is a put expecting subject sequence 0, retried once at the
//   marker's revision when the key was deleted.
// - a JetStream API timeout becomes QuireError TIMEOUT. For a write that means the outcome is
//   unknown (the server may have applied it), so callers re-read; they never treat it as "absent".
// - on an open bucket, "JetStream not enabled" and "no responders" also become TIMEOUT: the bucket
//   was there, so they mean its stream has no leader for now (a NATS cluster electing one after a
//   server died), not a misconfigured server.
// - everything else (no JetStream at open, closed connection, bad bucket name) propagates untouched.
// Buckets are created by whichever process comes first; a process that loses the creation race
// opens the bucket the winner made, with the winner's options.

import { JetStreamApiCodes, JetStreamApiError, StorageType, jetstream } from '@nats-io/jetstream'
import { Kvm, type KV, type KvOptions } from '@nats-io/kv'
import { errors, type NatsConnection } from '@nats-io/transport-node'
import { QuireError } from '../machines/errors.ts'
import { assertValidKey, assertValidRevision, isValidKey } from './memoryKv.ts'
import { KvConflict, type VersionedKv } from './types.ts'

const CAS_CONFLICT_CODES: ReadonlySet<number> = new Set([
  JetStreamApiCodes.StreamWrongLastSequence,
  JetStreamApiCodes.StreamWrongLastSequenceUnknown,
])
/** "stream name already in use with a different configuration": lost a creation race. */
const STREAM_NAME_IN_USE = 10058
/** "subjects overlap with an existing stream": the same race, seen when the winner's stream lands first. */
const STREAM_SUBJECT_OVERLAP = 10065
const HISTORY_MAX = 64 // JetStream's limit on KV history
const API_TIMEOUT_MS_DEFAULT = 5000

export interface OpenKvOptions {
  /** Values kept per key (1 to 64); default 1. */
  history?: number
  /** Bucket-level TTL: a key is dropped this long after its last write; 0 (default) for none. */
  ttlMs?: number
  /** Stream replicas (1 to 5); default 1. */
  replicas?: number
  /** Bound on each JetStream API request; default 5000. */
  timeoutMs?: number
}

export async function openKv(nc: NatsConnection, bucket: string, opts: OpenKvOptions = {}): Promise<JetStreamKv> {
  const history = opts.history ?? 1
  const ttlMs = opts.ttlMs ?? 0
  const replicas = opts.replicas ?? 1
  const timeoutMs = opts.timeoutMs ?? API_TIMEOUT_MS_DEFAULT
  checkRange('history', history, 1, HISTORY_MAX)
  checkRange('ttlMs', ttlMs, 0, Number.MAX_SAFE_INTEGER)
  checkRange('replicas', replicas, 1, 5)
  checkRange('timeoutMs', timeoutMs, 1, Number.MAX_SAFE_INTEGER)

  const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }))
  const config: Partial<KvOptions> = { history, ttl: ttlMs, replicas, storage: StorageType.File }
  try {
    return new JetStreamKv(bucket, await kvm.create(bucket, { ...config }), timeoutMs)
  } catch (err) {
    // nats.js creates after a "not found", so two processes can both try to create. Identical
    // configs are idempotent on the server; different ones fail here, and a second pass finds
    // the winner's bucket and opens it.
    if (!(err instanceof JetStreamApiError && (err.code === STREAM_NAME_IN_USE || err.code === STREAM_SUBJECT_OVERLAP || /subjects overlap/.test(err.message)))) {
      throw mapTimeout(err, `open bucket ${bucket}`, { bucket })
    }
  }
  try {
    return new JetStreamKv(bucket, await kvm.create(bucket, { ...config }), timeoutMs)
  } catch (err) {
    throw mapTimeout(err, `open bucket ${bucket}`, { bucket })
  }
}

export class JetStreamKv implements VersionedKv {
  constructor(
    readonly bucket: string,
    private readonly kv: KV,
    /** Longest wait for the next key of a listing (see keys()). */
    private readonly timeoutMs = API_TIMEOUT_MS_DEFAULT,
  ) {}

  async get(key: string): Promise<{ value: Uint8Array; revision: number } | null> {
    assertValidKey(key)
    const e = await this.kv.get(key).catch((err: unknown) => this.#fail(err, 'get', key))
    // A delete or purge leaves a marker as the key's last message: to callers it is absent.
    if (e === null || e.operation !== 'PUT') return null
    return { value: e.value, revision: e.revision }
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    assertValidKey(key)
    return this.kv.create(key, value).catch((err: unknown) => this.#failCas(err, 'create', key))
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    assertValidKey(key)
    // nats.js throws synchronously on revision <= 0; that is a caller bug, so assert first.
    assertValidRevision(revision)
    return this.kv.update(key, value, revision).catch((err: unknown) => this.#failCas(err, 'update', key))
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    assertValidKey(key)
    return this.kv.put(key, value).catch((err: unknown) => this.#fail(err, 'put', key))
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key)
    await this.kv.delete(key).catch((err: unknown) => this.#fail(err, 'delete', key))
  }

  /**
   * Keys starting with `prefix` (a plain string prefix, as in memoryKv). Subject filters match
   * whole dot-separated tokens only (`ledgers*` matches nothing), so the server filters on the
   * prefix up to its last dot (`ledgers.4` → `ledgers.>`) and the rest is checked here.
   * Each key is yielded once: the listing runs on a live consumer, so a key written while it runs
   * can be delivered twice (seen with bookie heartbeats), and callers must never see that.
   * Bounded: nats.js's listing ends when its consumer reports nothing pending, which keys written
   * all the time (bookie heartbeats) can put off for minutes. So a listing is collected whole
   * within `timeoutMs`, tried again up to LISTING_TRIES times, and then fails with TIMEOUT; its
   * callers (placement, GC, the auditor) never hang on it.
   */
  async *keys(prefix = ''): AsyncIterable<string> {
    const filter = serverFilter(prefix)
    if (filter === null) return
    for (let attempt = 1; ; attempt++) {
      try {
        yield* await this.#listOnce(prefix, filter)
        return
      } catch (err) {
        if (!(err instanceof ListingTooSlow) || attempt >= LISTING_TRIES) this.#fail(err instanceof ListingTooSlow ? new errors.TimeoutError() : err, 'keys', filter)
      }
    }
  }

  async #listOnce(prefix: string, filter: string): Promise<string[]> {
    const it = await this.kv.keys(filter)
    const keys = it[Symbol.asyncIterator]()
    const seen = new Set<string>()
    let timer: NodeJS.Timeout | undefined
    const tooSlow = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new ListingTooSlow()), this.timeoutMs) })
    try {
      for (;;) {
        const next = await Promise.race([keys.next(), tooSlow])
        if (next.done) return [...seen]
        if (next.value.startsWith(prefix)) seen.add(next.value)
      }
    } finally {
      clearTimeout(timer)
      // Stops the ephemeral consumer behind the listing.
      it.stop()
    }
  }

  #failCas(err: unknown, op: string, key: string): never {
    if (err instanceof JetStreamApiError && CAS_CONFLICT_CODES.has(err.code)) throw new KvConflict(key)
    this.#fail(err, op, key)
  }

  #fail(err: unknown, op: string, key: string): never {
    // nats.js does not export JetStreamNotEnabled's class; its name is stable.
    const noResponders = err instanceof errors.NoRespondersError || (err instanceof errors.RequestError && err.isNoResponders())
    if ((err instanceof Error && err.name === 'JetStreamNotEnabled') || noResponders) {
      throw new QuireError('TIMEOUT', `metadata store cannot serve ${op} ${this.bucket}/${key} now (no stream leader); outcome unknown`, {
        bucket: this.bucket, key, op, cause: err,
      })
    }
    throw mapTimeout(err, `${op} ${this.bucket}/${key}`, { bucket: this.bucket, key, op })
  }
}

/** null when no valid key can start with `prefix`, so there is nothing to ask the server. */
function serverFilter(prefix: string): string | null {
  const tokens = prefix.slice(0, prefix.lastIndexOf('.') + 1) // '' or 'a.b.'
  if (tokens === '') return '>'
  return isValidKey(tokens.slice(0, -1)) ? `${tokens}>` : null
}

/** A key listing that did not end within the API timeout (see JetStreamKv.keys). */
class ListingTooSlow extends Error {}
const LISTING_TRIES = 3

function mapTimeout(err: unknown, what: string, details: Record<string, unknown>): unknown {
  if (err instanceof errors.TimeoutError) {
    return new QuireError('TIMEOUT', `metadata store did not answer ${what} in time; outcome unknown`, {
      ...details,
      cause: err,
    })
  }
  return err
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new QuireError('INVALID_CONFIG', `KV ${name} must be an integer in [${min}, ${max}], got ${value}`, {
      [name]: value,
    })
  }
}
