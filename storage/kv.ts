// VersionedKv over a JetStream KV bucket (file storage): Quire's metadata store in the product.
// storage/memoryKv.ts is its in-memory twin; test/integration/kv.test.ts holds both to one contract.
// Reads see every acknowledged write (read-your-writes, also across clients): a get is a
// STREAM.MSG.GET, which only the stream leader answers (the bucket is used with allow_direct off;
// a direct get may be served by a replica that has not applied a write yet: measured on three
// servers, 9 to 23 of 800 reads right after a write), and a key listing walks the stream with the
// same request (see keys()), so it needs no consumer either.
// Error mapping (mapKvError), so that every failure is typed and nothing is misread:
// - "wrong last sequence" (JetStream API codes 10071, and 10164 from newer clustered servers) is
//   the one and only KvConflict. It is what both `create` on a live key and `update` at a stale
//   revision produce: nats.js's create is a put expecting subject sequence 0, retried once at the
//   marker's revision when the key was deleted.
// - no answer in time, "JetStream system temporarily unavailable" (10008), "cluster can not handle
//   request" (10009) or any 503 status, and, on an open bucket, "JetStream not enabled" and "no
//   responders" are QuireError TIMEOUT: the stream has no leader for now (a NATS cluster electing
//   one). For a write the outcome is unknown (the server may have applied it), so callers re-read;
//   they never treat it as "absent".
// - a request the NATS user's permissions do not allow (nothing was written) is NATS_AUTH naming
//   the subject.
// - any other refusal of the server (JetStream API error), a closed or draining connection, and
//   other NATS errors are METADATA_ERROR carrying the server's message and code; at open, a server
//   without JetStream is INVALID_CONFIG. Programmer errors (assertions, TypeErrors) still crash.
// Buckets are created by whichever process comes first; a process that loses the creation race
// opens the bucket the winner made, with the winner's options.

import {
  JetStreamApiCodes, JetStreamApiError, JetStreamError, StorageType, jetstream,
  type JetStreamManager, type MsgRequest, type NextMsgRequest, type StoredMsg,
} from '@nats-io/jetstream'
import { Kvm, type KV, type KvOptions } from '@nats-io/kv'
import { errors, type NatsConnection } from '@nats-io/transport-node'
import { QuireError } from '../machines/errors.ts'
import { assertValidKey, assertValidRevision, isValidKey } from './memoryKv.ts'
import { KvConflict, type VersionedKv } from './types.ts'

const CAS_CONFLICT_CODES: ReadonlySet<number> = new Set([
  JetStreamApiCodes.StreamWrongLastSequence,
  JetStreamApiCodes.StreamWrongLastSequenceUnknown,
])
/** "JetStream system temporarily unavailable", "JetStream cluster can not handle request": no leader for now. */
const TRANSIENT_API_CODES: ReadonlySet<number> = new Set([10008, 10009])
/** "stream name already in use with a different configuration": lost a creation race. */
const STREAM_NAME_IN_USE = 10058
/** "subjects overlap with an existing stream": the same race, seen when the winner's stream lands first. */
const STREAM_SUBJECT_OVERLAP = 10065
const HISTORY_MAX = 64 // JetStream's limit on KV history
const API_TIMEOUT_MS_DEFAULT = 5000
/** Most walks of one key listing that run at once (see keys()). */
const LISTING_WALKERS_MAX = 8
/** Stream sequences per walker below which a listing is not split further. */
const LISTING_SPAN_PER_WALKER = 256
/** A whole listing gives up (TIMEOUT) after this many API timeouts, however many keys it met. */
const LISTING_TIMEOUTS_MAX = 12
/** The header nats.js KV writes on a delete or purge marker. */
const KV_OPERATION_HEADER = 'KV-Operation'

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

  const js = jetstream(nc, { timeout: timeoutMs })
  const kvm = new Kvm(js)
  // allow_direct off: nats.js then reads (get, and create's re-read of a delete marker) through the
  // stream leader. A bucket made with it on by an older version is read the same way.
  const config: Partial<KvOptions> = { history, ttl: ttlMs, replicas, storage: StorageType.File, allow_direct: false }
  const open = async (): Promise<JetStreamKv> => {
    const kv = await kvm.create(bucket, { ...config })
    return new JetStreamKv(bucket, kv, streamReader(await js.jetstreamManager()), timeoutMs)
  }
  try {
    return await open()
  } catch (err) {
    // nats.js creates after a "not found", so two processes can both try to create. Identical
    // configs are idempotent on the server; different ones fail here, and a second pass finds
    // the winner's bucket and opens it.
    if (!(err instanceof JetStreamApiError && (err.code === STREAM_NAME_IN_USE || err.code === STREAM_SUBJECT_OVERLAP || /subjects overlap/.test(err.message)))) {
      throw mapKvError(err, `open bucket ${bucket}`, { bucket }, 'open')
    }
  }
  try {
    return await open()
  } catch (err) {
    throw mapKvError(err, `open bucket ${bucket}`, { bucket }, 'open')
  }
}

/** The two stream requests a key listing makes, both answered by the stream leader (a test can hand in its own). */
export interface StreamReader {
  /** STREAM.INFO: the stream's sequence range. */
  info(stream: string): Promise<{ state: { first_seq: number; last_seq: number } }>
  /** STREAM.MSG.GET: the first message of `next_by_subj` at or after `seq`; null when there is none. */
  getMessage(stream: string, query: NextMsgRequest): Promise<StoredMsg | null>
}

function streamReader(jsm: JetStreamManager): StreamReader {
  return {
    info: (stream) => jsm.streams.info(stream),
    // nats-server 2.9 takes next_by_subj in STREAM.MSG.GET; nats.js types it for direct gets only.
    getMessage: (stream, query) => jsm.streams.getMessage(stream, query as unknown as MsgRequest),
  }
}

export class JetStreamKv implements VersionedKv {
  readonly #stream: string
  readonly #subjectPrefix: string

  constructor(
    readonly bucket: string,
    private readonly kv: KV,
    private readonly jsm: StreamReader,
    /** Bound on each JetStream API request (nats.js applies it); a whole listing gets LISTING_TIMEOUTS_MAX of it. */
    private readonly timeoutMs = API_TIMEOUT_MS_DEFAULT,
  ) {
    this.#stream = `KV_${bucket}`
    this.#subjectPrefix = `$KV.${bucket}.`
  }

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
   * Keys starting with `prefix` (a plain string prefix, as in memoryKv), each once, as they are
   * when the listing ends. Subject filters match whole dot-separated tokens only (`ledgers*`
   * matches nothing), so the server filters on the prefix up to its last dot (`ledgers.4` →
   * `ledgers.>`) and the rest is checked here.
   * No consumer: nats.js's listing creates an ephemeral consumer, which nats-server 2.9 may place
   * on an offline peer, and then the listing waits out the API timeout (1 in 3 listings with one
   * server of three down). Instead the stream is walked with STREAM.MSG.GET `next_by_subj`, which
   * the stream leader answers: each request returns the first message of the filter at or after
   * a sequence. The stream's sequence range at the start is split among a few walks that run at
   * once; then one more walk goes from past that range to the end. A key written during the
   * listing lands past the range (a stream appends), so that last walk sees it; a key seen twice
   * counts as its later message (a delete marker hides it, a put shows it).
   * Bounded: a listing needs one request per message the walk meets (with history 1, one per key
   * or delete marker) plus one per walk; each request is bounded by the API timeout, and the whole
   * listing by LISTING_TIMEOUTS_MAX of them (then TIMEOUT), so its callers never hang on it.
   */
  async *keys(prefix = ''): AsyncIterable<string> {
    const filter = serverFilter(prefix)
    if (filter === null) return
    let keys: string[]
    try {
      keys = await this.#list(prefix, filter)
    } catch (err) {
      this.#fail(err, 'keys', filter)
    }
    yield* keys
  }

  async #list(prefix: string, filter: string): Promise<string[]> {
    const subjectFilter = `${this.#subjectPrefix}${filter}`
    const deadline = Date.now() + LISTING_TIMEOUTS_MAX * this.timeoutMs
    const { state } = await this.jsm.info(this.#stream)
    const latest = new Map<string, { seq: number; live: boolean }>()
    const note = (m: StoredMsg): void => {
      const key = m.subject.slice(this.#subjectPrefix.length)
      const had = latest.get(key)
      if (had === undefined || had.seq < m.seq) latest.set(key, { seq: m.seq, live: isPut(m) })
    }
    /** Visit the filter's messages with a sequence in [from, to], in order. */
    const walk = async (from: number, to: number): Promise<void> => {
      for (let seq = from; seq <= to;) {
        if (Date.now() > deadline) throw new errors.TimeoutError()
        const m = await this.jsm.getMessage(this.#stream, { seq, next_by_subj: subjectFilter })
        if (m === null || m.seq > to) return
        note(m)
        seq = m.seq + 1
      }
    }
    const first = Math.max(1, state.first_seq)
    const last = state.last_seq
    await Promise.all(splitRange(first, last).map(([a, b]) => walk(a, b)))
    await walk(last + 1, Number.MAX_SAFE_INTEGER)
    return [...latest].flatMap(([key, { live }]) => (live && key.startsWith(prefix) ? [key] : []))
  }

  #failCas(err: unknown, op: string, key: string): never {
    if (err instanceof JetStreamApiError && CAS_CONFLICT_CODES.has(err.code)) throw new KvConflict(key)
    this.#fail(err, op, key)
  }

  #fail(err: unknown, op: string, key: string): never {
    throw mapKvError(err, `${op} ${this.bucket}/${key}`, { bucket: this.bucket, key, op, timeoutMs: this.timeoutMs }, 'bucket')
  }
}

/** A put, as opposed to a delete or purge marker. */
function isPut(m: StoredMsg): boolean {
  const op = m.header.get(KV_OPERATION_HEADER)
  return op === '' || op === 'PUT'
}

/** [first, last] in up to LISTING_WALKERS_MAX contiguous pieces; none when the range is empty. */
export function splitRange(first: number, last: number): Array<[number, number]> {
  if (last < first) return []
  const span = last - first + 1
  const walkers = Math.min(LISTING_WALKERS_MAX, Math.max(1, Math.ceil(span / LISTING_SPAN_PER_WALKER)))
  const size = Math.ceil(span / walkers)
  const out: Array<[number, number]> = []
  for (let a = first; a <= last; a += size) out.push([a, Math.min(last, a + size - 1)])
  return out
}

/** null when no valid key can start with `prefix`, so there is nothing to ask the server. */
function serverFilter(prefix: string): string | null {
  const tokens = prefix.slice(0, prefix.lastIndexOf('.') + 1) // '' or 'a.b.'
  if (tokens === '') return '>'
  return isValidKey(tokens.slice(0, -1)) ? `${tokens}>` : null
}

/**
 * Any failure of a KV or JetStream request as a typed error (the mapping in the header).
 * `where`: 'bucket' for requests on an open bucket (no responders there means no stream leader
 * for now), 'open' while opening or creating one (it means the server has no JetStream), 'api' for
 * other JetStream API requests. QuireErrors and KvConflicts pass through; errors that are not
 * NATS's (assertions, TypeErrors: programmer errors) too.
 */
export function mapKvError(err: unknown, what: string, details: Record<string, unknown>, where: 'bucket' | 'open' | 'api' = 'api'): unknown {
  if (err instanceof QuireError || err instanceof KvConflict) return err
  const info = { ...details, cause: err }
  if (err instanceof errors.TimeoutError) {
    return new QuireError('TIMEOUT', `metadata store did not answer ${what} in time; outcome unknown`, info)
  }
  // nats.js does not export JetStreamNotEnabled's class; its name is stable.
  const notEnabled = err instanceof Error && err.name === 'JetStreamNotEnabled'
  const noResponders = err instanceof errors.NoRespondersError || (err instanceof errors.RequestError && err.isNoResponders())
  if (notEnabled || noResponders) {
    if (where === 'open') {
      return new QuireError('INVALID_CONFIG', `cannot ${what}: the NATS server has no JetStream (start it with -js, or from the project's nats.conf)`, info)
    }
    return new QuireError('TIMEOUT', `metadata store cannot serve ${what} now (no stream leader); outcome unknown`, info)
  }
  if (err instanceof JetStreamApiError) {
    const api = { ...info, apiCode: err.code, status: err.status }
    if (TRANSIENT_API_CODES.has(err.code) || err.status === 503) {
      return new QuireError('TIMEOUT', `metadata store cannot serve ${what} now (${err.message}, JetStream error ${err.code}); outcome unknown`, api)
    }
    return new QuireError('METADATA_ERROR', `metadata store refused ${what}: ${err.message} (JetStream error ${err.code})`, api)
  }
  // A request is refused as a RequestError caused by the violation. Nothing was written: the
  // server dropped the message (docs/security.md).
  const refusal = err instanceof errors.RequestError ? err.cause : err
  if (refusal instanceof errors.PermissionViolationError) {
    const hint = where === 'open' ? ' (a user that may not make the metadata buckets needs them made first: start a bookie, or use an admin user)' : ''
    return new QuireError('NATS_AUTH', `NATS refused ${what}: this process's NATS user may not ${refusal.operation === 'publish' ? 'publish' : 'subscribe'} to ${refusal.subject}${hint}`, {
      ...info, subject: refusal.subject, operation: refusal.operation,
    })
  }
  if (err instanceof errors.ClosedConnectionError || err instanceof errors.DrainingConnectionError) {
    return new QuireError('METADATA_ERROR', `cannot ${what}: the NATS connection is ${err instanceof errors.ClosedConnectionError ? 'closed' : 'draining'}`, info)
  }
  if (err instanceof JetStreamError || isNatsError(err)) {
    return new QuireError('METADATA_ERROR', `metadata store failed ${what}: ${err.message}`, info)
  }
  return err
}

const NATS_ERROR_CLASSES = [
  errors.ConnectionError, errors.ProtocolError, errors.RequestError, errors.PermissionViolationError,
  errors.AuthorizationError, errors.UserAuthenticationExpiredError, errors.InvalidOperationError,
] as const

function isNatsError(err: unknown): err is Error {
  return NATS_ERROR_CLASSES.some((c) => err instanceof c)
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new QuireError('INVALID_CONFIG', `KV ${name} must be an integer in [${min}, ${max}], got ${value}`, {
      [name]: value,
    })
  }
}
