// The admin HTTP API of a node, in the spirit of BookKeeper's (`/api/v1/...`), plus `/metrics`
// (Prometheus text) and `/heartbeat`. Handlers read through `AdminDeps`, a few methods of the
// metadata and auto-recovery stores and this node's bookie, so unit tests run them over the
// in-memory stores with fastify's inject().
//
// Invariants:
// - Every answer of the API is JSON; an error is `{statusCode, error, code, message}` where
//   `code` is the QuireError code (NO_SUCH_LEDGER 404, NO_SUCH_BOOKIE 404, INVALID_CONFIG 400
//   for a bad query parameter, UNAUTHORIZED 401, TIMEOUT / NATS_UNREACHABLE 503, anything else 500).
// - With a token (the node's httpToken), every request (the API, /metrics, /heartbeat) must carry
//   `Authorization: Bearer <token>`, compared in constant time; without it, 401 UNAUTHORIZED.
// - Query parameters are checked strictly: an unknown value is a 400, never a silent default.
// - Every request is bounded (requestTimeoutMs): a store read that does not end (a KV key listing
//   under a stream of updates can run on) is answered 503 TIMEOUT instead of holding the request.
// - Read-only: no route changes the cluster. Ledger metadata goes out without its password check
//   value (a hash of the master key), which is of no use to an operator and of some to a guesser.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Registry } from 'prom-client'
import { QuireError, type ErrorCode } from '../machines/errors.ts'
import type { AutorecoveryStore, UnderReplicatedMark } from '../storage/autorecoveryStore.ts'
import { LogStore } from '../storage/logStore.ts'
import { isBookieAlive, type BookieRecord, type LedgerMetadata, type MetadataStore } from '../storage/metadataStore.ts'

/** This node's bookie, as /api/v1/bookie/state shows it. */
export interface BookieStateReport {
  bookieId: string
  /** The lifecycle state: writable, readonly, or starting / draining / stopped around them. */
  state: string
  writable: boolean
  /** The last disk check; null before the first. */
  disk: {
    usage: number
    usedBytes: number
    totalBytes: number
    /** diskUsageThreshold: read-only above it. */
    threshold: number
    /** diskUsageLwmThreshold: writable again below it. */
    lwmThreshold: number
    full: boolean
  } | null
}

export interface AdminDeps {
  metadata: Pick<MetadataStore, 'listBookies' | 'listLedgers' | 'readLedger' | 'logsKv'>
  autorecovery: Pick<AutorecoveryStore, 'listMarks'>
  /** This node's bookie; absent, null or returning null when the node runs no bookie (yet). */
  bookie?: (() => BookieStateReport | null) | null
  now?: () => number
  /** Bound on the store reads of one request; past it the answer is 503 TIMEOUT. Default 10000. */
  requestTimeoutMs?: number
}

/** What the API shows of a ledger's metadata: all of it but the password check value. */
export type LedgerMetadataView = Omit<LedgerMetadata, 'passwordCheck'>

export interface BookieView extends BookieRecord {
  alive: boolean
}

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_CONFIG: 400,
  UNAUTHORIZED: 401,
  NO_SUCH_LEDGER: 404,
  NO_SUCH_BOOKIE: 404,
  NO_SUCH_LOG: 404,
  INVALID_LOG_NAME: 400,
  TIMEOUT: 503,
  NATS_UNREACHABLE: 503,
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable',
}

export function statusFor(code: ErrorCode): number {
  return HTTP_STATUS[code] ?? 500
}

export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8')
    .send({ statusCode: status, error: STATUS_TEXT[status] ?? 'Error', code, message })
}

/**
 * The registry in the Prometheus text format. prom-client 15 writes a NaN value (the event loop
 * lag's mean before its first sample) as `Nan`; the format says `NaN`, so it is written so here.
 */
export async function metricsText(registry: Registry): Promise<string> {
  return (await registry.metrics()).replace(/^([^#\n][^\n]*) Nan$/gm, '$1 NaN')
}

/** `/metrics` (the registry's text, with its content type) and `/heartbeat` (200 OK). */
export function registerMetrics(app: FastifyInstance, registry: Registry): void {
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await metricsText(registry)))
  app.get('/heartbeat', async (_req, reply) => reply.type('text/plain; charset=utf-8').send('OK'))
}

type Query = Record<string, string | string[] | undefined>

function queryOf(req: FastifyRequest): Query {
  return (req.query ?? {}) as Query
}

/** One value of a query parameter; undefined when absent; INVALID_CONFIG when given twice. */
function param(q: Query, name: string): string | undefined {
  const v = q[name]
  if (Array.isArray(v)) throw new QuireError('INVALID_CONFIG', `query parameter ${name} is given ${v.length} times`, { parameter: name })
  return v
}

function oneOf<T extends string>(q: Query, name: string, allowed: readonly T[]): T | undefined {
  const v = param(q, name)
  if (v === undefined) return undefined
  if (!(allowed as readonly string[]).includes(v)) {
    throw new QuireError('INVALID_CONFIG', `query parameter ${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`, { parameter: name, value: v })
  }
  return v as T
}

function flag(q: Query, name: string): boolean {
  return oneOf(q, name, ['true', 'false'] as const) === 'true'
}

function ledgerIdParam(q: Query): number {
  const v = param(q, 'ledger_id')
  if (v === undefined) throw new QuireError('INVALID_CONFIG', 'query parameter ledger_id is required', { parameter: 'ledger_id' })
  const id = /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(id)) {
    throw new QuireError('INVALID_CONFIG', `ledger_id must be a non-negative integer, got ${JSON.stringify(v)}`, { parameter: 'ledger_id', value: v })
  }
  return id
}

export function metadataView(md: LedgerMetadata): LedgerMetadataView {
  const { passwordCheck: _omitted, ...view } = md
  return view
}

/** `work()`, or TIMEOUT once `ms` pass (the work itself cannot be cancelled; its result is dropped). */
async function bounded<T>(what: string, ms: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QuireError('TIMEOUT', `${what} took longer than ${ms} ms`, { timeoutMs: ms })), ms)
  })
  try {
    return await Promise.race([work(), deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** The JSON admin routes under /api/v1, and a JSON error handler for the app. */
/** A constant-time check of a candidate against `token` (hashes of equal length, so it takes as long whatever was sent). */
export function tokenCheck(token: string): (candidate: string) => boolean {
  if (token === '') throw new QuireError('INVALID_CONFIG', 'an HTTP token must not be empty')
  const expected = createHash('sha256').update(token).digest()
  return (candidate) => timingSafeEqual(createHash('sha256').update(candidate).digest(), expected)
}

export interface BearerOptions {
  /** Paths (without the query) served to anyone: the inspector's page files and its login. */
  open?: (path: string) => boolean
  /** A cookie that may carry the token instead of the header (the inspector's page, after its login). */
  cookie?: string
}

/** Every request of `app` needs `Authorization: Bearer <token>` (else 401 UNAUTHORIZED, naming the header, never the token). */
export function requireBearerToken(app: FastifyInstance, token: string, opts: BearerOptions = {}): void {
  const matches = tokenCheck(token)
  app.addHook('onRequest', async (req, reply) => {
    if (opts.open?.(req.url.split('?')[0]!)) return
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
    if (m && matches(m[1]!)) return
    const fromCookie = opts.cookie === undefined ? undefined : cookieValue(req.headers.cookie, opts.cookie)
    if (fromCookie !== undefined && matches(fromCookie)) return
    reply.header('www-authenticate', 'Bearer')
    return sendError(reply, 401, 'UNAUTHORIZED', m ? 'the bearer token is not this node\'s httpToken' : 'this node needs Authorization: Bearer <httpToken>')
  })
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim())
      } catch {
        return undefined
      }
    }
  }
  return undefined
}

export function registerAdminApi(app: FastifyInstance, deps: AdminDeps): void {
  const now = deps.now ?? Date.now
  const timeoutMs = deps.requestTimeoutMs ?? 10_000

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof QuireError) return sendError(reply, statusFor(err.code), err.code, err.message)
    const status = typeof (err as { statusCode?: unknown }).statusCode === 'number' ? (err as { statusCode: number }).statusCode : 500
    const code = (err as { code?: unknown }).code
    return sendError(reply, status, typeof code === 'string' ? code : 'INTERNAL', err instanceof Error ? err.message : String(err))
  })

  app.get('/api/v1/bookie/list_bookies', async (req) => {
    const type = oneOf(queryOf(req), 'type', ['rw', 'ro'] as const)
    const listed = await bounded('listing the bookies', timeoutMs, () => deps.metadata.listBookies())
    const at = now()
    const bookies: BookieView[] = listed
      .filter((b) => type === undefined || b.state === (type === 'rw' ? 'writable' : 'readonly'))
      .map((b) => ({ ...b, alive: isBookieAlive(b, at) }))
    return { bookies }
  })

  app.get('/api/v1/bookie/state', async () => {
    const report = deps.bookie?.() ?? null
    if (report === null) throw new QuireError('NO_SUCH_BOOKIE', 'this node runs no bookie (roles without bookie)')
    return report
  })

  app.get('/api/v1/ledger/list', async (req) => {
    const withMetadata = flag(queryOf(req), 'print_metadata')
    return bounded('listing the ledgers', timeoutMs, async () => {
      const ids: number[] = []
      for await (const id of deps.metadata.listLedgers()) ids.push(id)
      if (!withMetadata) return { ledgers: ids }
      const ledgers: LedgerMetadataView[] = []
      for (const id of ids) {
        // A ledger deleted since the listing is simply no longer there.
        const md = await deps.metadata.readLedger(id).catch((err: unknown) => {
          if (err instanceof QuireError && err.code === 'NO_SUCH_LEDGER') return null
          throw err
        })
        if (md) ledgers.push(metadataView(md.value))
      }
      return { ledgers }
    })
  })

  app.get('/api/v1/ledger/metadata', async (req) => {
    const id = ledgerIdParam(queryOf(req))
    return metadataView((await bounded(`reading ledger ${id}`, timeoutMs, () => deps.metadata.readLedger(id))).value)
  })

  app.get('/api/v1/log/list', async (req) => {
    const prefix = param(queryOf(req), 'prefix') ?? ''
    return bounded('listing the logs', timeoutMs, async () => {
      const logs: string[] = []
      for await (const name of new LogStore(deps.metadata.logsKv).list(prefix)) logs.push(name)
      return { logs }
    })
  })

  app.get('/api/v1/log/info', async (req) => {
    const name = param(queryOf(req), 'name')
    if (name === undefined) throw new QuireError('INVALID_CONFIG', 'give the log\'s name: ?name=<log>')
    return bounded(`reading log ${name}`, timeoutMs, () => new LogStore(deps.metadata.logsKv).describe(name))
  })

  app.get('/api/v1/autorecovery/list_under_replicated_ledger', async (req) => {
    const replica = param(queryOf(req), 'missing_replica')
    const marks: UnderReplicatedMark[] = (await bounded('listing the under-replicated marks', timeoutMs, () => deps.autorecovery.listMarks())).map((m) => m.value)
    const ledgers = replica === undefined ? marks : marks.filter((m) => m.missing.includes(replica) || m.damaged.includes(replica))
    return { ledgers }
  })
}
