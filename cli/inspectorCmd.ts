// `quire inspector`: a small web server to watch a cluster live. It serves the page (inspector/),
// the machines' definitions (/api/machines), the latest message of each actor (/api/actors), the
// admin API (cli/adminApi.ts: /api/v1/... ledgers, bookies, under-replicated ledgers), and
// /events: server-sent events fed by a NATS subscription to `quire.inspect.>` (what
// transport/inspect.ts publishes) plus a view of the bookies and newest ledgers every second.
//
// Bounds: the server keeps the latest message of at most ACTORS_MAX actors (finished ones for a
// minute, silent ones for ten) and ignores messages over MESSAGE_BYTES_MAX. Each page gets its own
// queue holding at most one pending message per actor: when a page reads slower than the cluster
// publishes, a newer message of an actor replaces the one still waiting (it sees the latest state,
// not every step), so a slow page never grows an unbounded queue. The ledger view holds the
// LEDGERS_MAX ledgers with the highest ids.
//
// `quire --help` declares the command from this file, so what the server needs (fastify, NATS,
// the metadata store, the machines' definitions, the admin API) is imported when it starts, not
// at the top: at the top are only node built-ins, commander's types and machines/errors.ts.

import { readFile } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import path from 'node:path'
import type { Command, Option } from 'commander'
import type { FastifyInstance } from 'fastify'
import { QuireError, isQuireError } from '../machines/errors.ts'
import type { BookieRecord, LedgerMetadata, MetadataStore } from '../storage/metadataStore.ts'
import type { NatsAuth, NatsConnection } from '../transport/nats.ts'
import { natsTargetOf, settingSecret, type NatsCommandOptions } from './natsSettings.ts'
import { SETTINGS } from './settings.ts'
import { REPO_ROOT } from './cluster.ts'

export const INSPECTOR_PORT_DEFAULT = 8420
export const ACTORS_MAX = 5000
export const MESSAGE_BYTES_MAX = 16 * 1024
export const LEDGERS_MAX = 100
export const LOGS_MAX = 50
const FINISHED_KEPT_MS = 60_000
const SILENT_KEPT_MS = 10 * 60_000
const PING_MS = 15_000
const CLUSTER_READ_TIMEOUT_MS = 10_000

export interface InspectorOptions {
  nats: string | string[]
  /** The NATS login and TLS (transport/natsAuth.ts); none by default. */
  natsAuth?: NatsAuth | undefined
  /** Undefined: INSPECTOR_PORT_DEFAULT, or a free port when that one is taken; 0: a free port. */
  port?: number
  host?: string
  /** How often the ledger and bookie views are re-read while a page is open. Default 1000 ms. */
  clusterPollMs?: number
  /**
   * A token the page's data (the API, /events) asks for: a bearer header, or the cookie the page's
   * login sets (POST /login with the token). The page files themselves hold no data and load without it.
   */
  token?: string | undefined
}

/** The cookie the page's login sets: HttpOnly, so no script reads it back; SameSite=Strict. */
export const INSPECTOR_COOKIE = 'quire_inspector_token'

export interface BookieRow extends BookieRecord {
  alive: boolean
  heartbeatAgoMs: number
}

export interface LedgerRow {
  ledgerId: number
  state: LedgerMetadata['state']
  ensembleSize: number
  writeQuorum: number
  ackQuorum: number
  digestType: string
  lastEntryId: number
  length: number
  segments: LedgerMetadata['segments']
  createdAt: number
}

/** A named log as the page shows it: its segments on a timeline, its writer epoch, its subscribers. */
export interface LogRow {
  name: string
  epoch: number
  sealed: boolean
  segments: Array<{ segmentSeq: number; ledgerId: number; state: string; recordCount: number; bytes: number; createdAt: number; closedAt: number }>
  /** Each subscriber's committed position and how far it is behind (machines/logRules.ts subscriberLag). */
  subscribers: Array<{ subscriber: string; position: string; behind: { segments: number; records: number; open: boolean } }>
}

export interface ClusterView {
  now: number
  bookies: BookieRow[]
  ledgers: LedgerRow[]
  ledgersTotal: number
  logs: LogRow[]
  logsTotal: number
}

export interface PageStats {
  /** Messages waiting for this page now (at most one per actor). */
  pending: number
  maxPending: number
  /** Messages replaced by a newer one of the same actor before the page could take them. */
  coalesced: number
  written: number
}

export interface Inspector {
  url: string
  port: number
  app: FastifyInstance
  /** Per open page. */
  stats(): PageStats[]
  close(): Promise<void>
}

/**
 * One open page. Frames are written as they come while the page keeps up; once its socket pushes
 * back, they wait in `pending`, at most one per key (actor): a newer frame replaces the waiting
 * one, and the lot is written when the socket drains.
 */
class Page {
  private readonly pending = new Map<string, string>()
  private busy = false
  closed = false
  readonly stats: PageStats = { pending: 0, maxPending: 0, coalesced: 0, written: 0 }

  constructor(private readonly res: ServerResponse) {}

  offer(key: string, frame: string): void {
    if (this.closed) return
    if (!this.busy) return this.write(frame)
    if (this.pending.delete(key)) this.stats.coalesced++
    this.pending.set(key, frame)
    this.stats.pending = this.pending.size
    if (this.pending.size > this.stats.maxPending) this.stats.maxPending = this.pending.size
  }

  private write(frame: string): void {
    this.stats.written++
    if (this.res.write(frame)) return
    this.busy = true
    this.res.once('drain', () => this.flush())
  }

  private flush(): void {
    this.busy = false
    for (const [key, frame] of this.pending) {
      if (this.closed || this.busy) break
      this.pending.delete(key)
      this.write(frame)
    }
    this.stats.pending = this.pending.size
  }
}

const frame = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

interface ActorEntry { key: string; frame: string; seen: number; final: boolean; message: Record<string, unknown> }

/** Parse an inspection message; null when it is not one (the subject space is open to anyone). */
function parseMessage(data: Uint8Array): Record<string, unknown> | null {
  if (data.byteLength > MESSAGE_BYTES_MAX) return null
  let m: unknown
  try {
    m = JSON.parse(Buffer.from(data).toString('utf8'))
  } catch {
    return null
  }
  if (m === null || typeof m !== 'object') return null
  const r = m as Record<string, unknown>
  const ok = (v: unknown): boolean => typeof v === 'string' && v.length > 0 && v.length <= 200
  return ok(r.kind) && ok(r.id) ? r : null
}

export async function readBookies(md: MetadataStore, now = Date.now()): Promise<BookieRow[]> {
  const { isBookieAlive } = await import('../storage/metadataStore.ts')
  return (await md.listBookies()).map((b) => ({ ...b, alive: isBookieAlive(b, now), heartbeatAgoMs: now - b.heartbeatAt }))
}

/** The `max` ledgers with the highest ids, newest first, and how many there are. */
export async function readLedgers(md: MetadataStore, max = LEDGERS_MAX): Promise<{ ledgers: LedgerRow[]; total: number }> {
  const ids: number[] = []
  for await (const id of md.listLedgers()) ids.push(id)
  const latest = max > 0 ? ids.slice(-max).reverse() : []
  const read = await Promise.all(latest.map((id) => md.readLedger(id).then((v) => v.value, (err: unknown) => {
    if (isQuireError(err, 'NO_SUCH_LEDGER')) return null // deleted meanwhile
    throw err
  })))
  const ledgers = read.filter((m): m is LedgerMetadata => m !== null).map((m) => ({
    ledgerId: m.ledgerId, state: m.state, ensembleSize: m.ensembleSize, writeQuorum: m.writeQuorum, ackQuorum: m.ackQuorum,
    digestType: m.digestType, lastEntryId: m.lastEntryId, length: m.length, segments: m.segments, createdAt: m.createdAt,
  }))
  return { ledgers, total: ids.length }
}

/** The first `max` named logs by name, each with its segments and subscribers, and how many there are. */
export async function readLogs(md: MetadataStore, max = LOGS_MAX): Promise<{ logs: LogRow[]; total: number }> {
  const { LogStore } = await import('../storage/logStore.ts')
  const { formatPosition } = await import('../machines/logPosition.ts')
  const { subscriberLag } = await import('../machines/logRules.ts')
  let kv
  try {
    kv = md.logsKv
  } catch {
    return { logs: [], total: 0 } // a store opened without the logs bucket
  }
  const store = new LogStore(kv)
  const names: string[] = []
  for await (const n of store.list()) names.push(n)
  const described = await Promise.all(names.slice(0, max).map((n) => store.describe(n).catch((err: unknown) => {
    if (isQuireError(err, 'NO_SUCH_LOG')) return null // deleted meanwhile
    throw err
  })))
  const logs = described.filter((d): d is NonNullable<typeof d> => d !== null).map((d) => ({
    name: d.name, epoch: d.epoch, sealed: d.sealed,
    segments: d.segments.map((s) => ({ segmentSeq: s.segmentSeq, ledgerId: s.ledgerId, state: s.state, recordCount: s.recordCount, bytes: s.bytes, createdAt: s.createdAt, closedAt: s.closedAt })),
    subscribers: d.subscribers.map((s) => ({ subscriber: s.subscriber, position: formatPosition(s.position), behind: subscriberLag(d, s.position) })),
  }))
  return { logs, total: names.length }
}

export async function readClusterView(md: MetadataStore): Promise<ClusterView> {
  const now = Date.now()
  const [bookies, { ledgers, total }, logs] = await Promise.all([readBookies(md, now), readLedgers(md), readLogs(md)])
  return { now, bookies, ledgers, ledgersTotal: total, logs: logs.logs, logsTotal: logs.total }
}

const STATIC: Record<string, string> = {
  '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/chart.js': 'chart.js', '/style.css': 'style.css',
}
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' }

/**
 * What every open page shares: the latest message of each actor (a Map kept in the order they
 * were last seen, so the oldest is first to go past ACTORS_MAX) and the last cluster view.
 */
class Hub {
  readonly pages = new Set<Page>()
  readonly actors = new Map<string, ActorEntry>()
  private cluster: string | null = null
  private polling = false
  private readonly timers: NodeJS.Timeout[]

  constructor(private readonly md: MetadataStore, clusterPollMs: number) {
    this.timers = [
      setInterval(() => this.prune(), 5000),
      setInterval(() => { if (this.pages.size > 0) void this.pollCluster() }, clusterPollMs),
      setInterval(() => this.broadcast('\u0000ping', ': ping\n\n'), PING_MS),
    ]
  }

  private broadcast(key: string, f: string): void {
    for (const p of this.pages) p.offer(key, f)
  }

  onMessage(data: Uint8Array): void {
    const m = parseMessage(data)
    if (m === null) return
    const key = `${String(m.kind)}.${String(m.id)}`
    const seen = Date.now()
    const f = frame('actor', { ...m, seen })
    this.actors.delete(key)
    this.actors.set(key, { key, frame: f, seen, final: m.status !== 'active', message: m })
    if (this.actors.size > ACTORS_MAX) this.forget(this.actors.keys().next().value!)
    this.broadcast(key, f)
  }

  private forget(key: string): void {
    this.actors.delete(key)
    this.broadcast(key, frame('gone', { key }))
  }

  private prune(): void {
    const now = Date.now()
    for (const a of this.actors.values()) {
      if (now - a.seen > (a.final ? FINISHED_KEPT_MS : SILENT_KEPT_MS)) this.forget(a.key)
    }
  }

  private async pollCluster(): Promise<void> {
    if (this.polling) return
    this.polling = true
    let timer: NodeJS.Timeout | undefined
    // A read that hangs (a listing on a busy KV) must not stop the views for good: past the
    // deadline it is abandoned (its late answer ignored) and the next poll starts afresh.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the metadata store did not answer within ${CLUSTER_READ_TIMEOUT_MS} ms`)), CLUSTER_READ_TIMEOUT_MS)
    })
    try {
      this.cluster = frame('cluster', await Promise.race([readClusterView(this.md), deadline]))
      this.broadcast('\u0000cluster', this.cluster)
    } catch (err) {
      this.broadcast('\u0000cluster-error', frame('clusterError', { message: err instanceof Error ? err.message : String(err) }))
    } finally {
      clearTimeout(timer)
      this.polling = false
    }
  }

  /** A new page: hello, then the latest of every actor and the cluster view. */
  open(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no',
    })
    res.write(`retry: 2000\n\n${frame('hello', { now: Date.now(), actors: this.actors.size })}`)
    const page = new Page(res)
    this.pages.add(page)
    res.on('close', () => { page.closed = true; this.pages.delete(page) })
    for (const a of this.actors.values()) page.offer(a.key, a.frame)
    if (this.cluster) page.offer('\u0000cluster', this.cluster)
    void this.pollCluster()
  }

  close(): void {
    for (const t of this.timers) clearInterval(t)
    for (const p of this.pages) p.closed = true
    this.pages.clear()
  }
}

/** The page, the definitions, the actors, the admin API and /events on one fastify app. */
async function buildApp(hub: Hub, md: MetadataStore, token: string | undefined): Promise<FastifyInstance> {
  const files = new Map<string, Buffer>()
  for (const name of new Set(Object.values(STATIC))) files.set(name, await readFile(path.join(REPO_ROOT, 'inspector', name)))
  const [{ default: Fastify }, { allDefinitions }, { AutorecoveryStore }, { registerAdminApi, requireBearerToken, sendError, tokenCheck }] = await Promise.all([
    import('fastify'), import('../machines/definitions.ts'), import('../storage/autorecoveryStore.ts'), import('./adminApi.ts'),
  ])
  const app = Fastify({ logger: false, forceCloseConnections: true })
  if (token !== undefined) {
    // Before the routes, so it covers them all: the page files and the login are open, the data is not.
    requireBearerToken(app, token, { open: (p) => p in STATIC || p === '/login', cookie: INSPECTOR_COOKIE })
    const matches = tokenCheck(token)
    app.post('/login', async (req, reply) => {
      const given = (req.body as { token?: unknown } | null)?.token
      if (typeof given !== 'string' || !matches(given)) {
        return sendError(reply, 401, 'UNAUTHORIZED', 'not the inspector\'s token')
      }
      return reply.code(204).header('set-cookie', `${INSPECTOR_COOKIE}=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/`).send()
    })
  }
  app.addHook('onSend', async (_req, reply) => {
    // The page loads nothing from anywhere else.
    reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
  })
  for (const [route, name] of Object.entries(STATIC)) {
    app.get(route, async (_req, reply) => reply.type(TYPES[path.extname(name)]!).header('cache-control', 'no-cache').send(files.get(name)))
  }
  const definitions = allDefinitions()
  app.get('/api/machines', async () => definitions)
  app.get('/api/actors', async () => [...hub.actors.values()].map((a) => ({ ...a.message, seen: a.seen })))
  // The ledger and bookie lists, ledger metadata and under-replicated ledgers: the node's admin API.
  registerAdminApi(app, { metadata: md, autorecovery: new AutorecoveryStore(md.clusterKv) })
  app.get('/events', (_req, reply) => {
    reply.hijack()
    hub.open(reply.raw)
  })
  return app
}

export async function startInspector(opts: InspectorOptions): Promise<Inspector> {
  const [{ connectNats }, { openMetadata }] = await Promise.all([import('../transport/nats.ts'), import('../storage/openMetadata.ts')])
  const nc: NatsConnection = await connectNats(opts.nats, { name: 'quire-inspector', auth: opts.natsAuth })
  let hub: Hub | null = null
  let app: FastifyInstance | null = null
  try {
    const md = await openMetadata(nc)
    const h = (hub = new Hub(md, opts.clusterPollMs ?? 1000))
    const sub = nc.subscribe('quire.inspect.>', { callback: (err, msg) => { if (!err) h.onMessage(msg.data) } })
    app = await buildApp(h, md, opts.token)
    const host = opts.host ?? '127.0.0.1'
    const port = await listen(app, host, opts.port)
    const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
    const a = app
    return {
      url: `http://${shownHost}:${port}/`,
      port,
      app: a,
      stats: () => [...h.pages].map((p) => ({ ...p.stats })),
      async close() {
        h.close()
        await a.close()
        sub.unsubscribe()
        await nc.close().catch(() => {})
      },
    }
  } catch (err) {
    hub?.close()
    await app?.close().catch(() => {})
    await nc.close().catch(() => {})
    throw err
  }
}

/**
 * Listen on `port`, and return the port bound; without a port, on the default one, or a free one
 * when that is taken. A port that cannot be bound is INVALID_CONFIG naming it.
 */
async function listen(app: FastifyInstance, host: string, port: number | undefined): Promise<number> {
  const bind = async (p: number): Promise<number> => {
    await app.listen({ host, port: p })
    const addr = app.server.address()
    return typeof addr === 'object' && addr !== null ? addr.port : p
  }
  try {
    return await bind(port ?? INSPECTOR_PORT_DEFAULT)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (port === undefined && code === 'EADDRINUSE') return bind(0)
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new QuireError('INVALID_CONFIG', `cannot serve the inspector on ${host}:${port} (${code}): choose another --port / --host`, { port, host })
    }
    throw err
  }
}

export function addInspectorCommand(program: Command, natsOption: () => Option): void {
  program
    .command('inspector')
    .description('serve a live view of the cluster: actors and their state machines, ledgers, bookies')
    .addOption(natsOption())
    .option('--port <port>', `HTTP port (default ${INSPECTOR_PORT_DEFAULT})`)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--http-token-file <file>', 'file whose first line is the token the page asks for (or QUIRE_HTTP_TOKEN); unset: none')
    .action(async (o: NatsCommandOptions & { port?: string; host: string; httpTokenFile?: string }) => {
      const port = o.port === undefined ? INSPECTOR_PORT_DEFAULT : Number(o.port)
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new QuireError('INVALID_CONFIG', `--port must be a port number, got ${o.port}`)
      const env = SETTINGS.httpToken.env
      const token = settingSecret(process.env[env] || undefined, o.httpTokenFile, env, '--http-token-file')
      const inspector = await startInspector({ nats: o.nats, natsAuth: natsTargetOf(o).auth, port, host: o.host, token })
      console.log(`inspector: ${inspector.url} (NATS ${o.nats}); Ctrl-C to stop`)
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      await inspector.close()
    })
}
