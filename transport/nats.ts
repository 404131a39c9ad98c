// Connecting to NATS. The first connect is bounded: a process that cannot reach any server within
// `timeoutMs` fails fast with NATS_UNREACHABLE instead of hanging. Once connected, the client
// reconnects forever with a short wait, because a bookie or writer that outlives a NATS restart
// must resume on its own; callers see the gap as timeouts on their requests, never as a closed
// connection.
// Several servers (a NATS cluster): URLs are tried in the order given, never shuffled, so the first
// one is the process's home server and the rest are where it goes when that one dies; spread load
// by ordering the list differently per host. The client also learns the cluster's other servers
// from the one it is connected to. A reconnect resubscribes and sends what was buffered meanwhile;
// messages already written to the dead server's socket are lost, which is why writers re-send
// unacknowledged adds (client/writeHandle.ts).
// Invariants: the returned promise settles by `timeoutMs` (plus one timer tick); a connection that
// completes after we gave up is closed, not leaked; every failure is a QuireError naming the URLs
// (INVALID_CONFIG for a malformed URL or bad credentials settings, NATS_AUTH for a server that
// refused the login or the TLS handshake, NATS_UNREACHABLE for no answer or an answer that is not NATS).
// Known nats.js 3.4 gap: if a peer accepts TCP but never sends INFO, the client abandons that
// socket without destroying it, so it lingers until the peer closes it. The bound still holds.

import { connect, errors, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node'
import { QuireError } from '../machines/errors.ts'
import { authRefusal, natsAuthOptions, type NatsAuth } from './natsAuth.ts'
import { exactMessageBuffersFor } from './natsParser.ts'
import { gatheredWritesFor } from './natsOutbound.ts'

export type { NatsConnection } from '@nats-io/transport-node'
export type { NatsAuth, NatsTls } from './natsAuth.ts'

const CONNECT_TIMEOUT_MS_DEFAULT = 5000
/** Pause between initial connect attempts after a refusal (server still starting, say). */
const CONNECT_RETRY_WAIT_MS = 250
/** Wait between reconnect attempts once connected; short so a restarted server is found fast. */
const RECONNECT_WAIT_MS = 250
/**
 * Client PINGs: a server that stops answering without closing the socket (cut off by a network
 * partition, hung) is left after about PING_INTERVAL_MS * (MAX_PINGS_OUT + 1), and the process
 * moves to another server of the cluster. nats.js's default (2 min, 2) kept a writer on a cut-off
 * server through a whole 30 s partition and its aftermath (docs/cluster.md).
 */
const PING_INTERVAL_MS = 2000
const MAX_PINGS_OUT = 2
/**
 * Bound on one dial (TCP connect and handshake) to one server. A reconnect tries the server it
 * just lost first (nats.js rotates its list), and a cut-off server never answers: without this
 * bound each reconnect would wait the whole connect timeout on it before trying a live one.
 */
const DIAL_TIMEOUT_MS = 2000

export interface ConnectNatsOptions {
  /** Client name shown in the server's monitoring pages. */
  name?: string
  /** Bound on the whole initial connect, retries included. */
  timeoutMs?: number
  /** Called each time the connection comes back after losing its server (actors/metrics.ts counts it in a node). */
  onReconnect?: () => void
  /** Credentials and TLS (transport/natsAuth.ts); none by default. */
  auth?: NatsAuth | undefined
  /**
   * Called when the server refuses a publish or a subscription of this connection (its user's
   * permissions): nats.js reports it on the connection, which stays open, and the message or the
   * subscription is simply dropped. A node logs it with the subject.
   */
  onPermissionError?: (refusal: PermissionRefusal) => void
}

/** What the server refused: the operation and the subject. */
export interface PermissionRefusal {
  operation: 'publish' | 'subscription'
  subject: string
}

/** `servers` is a URL, a comma-separated list of URLs, or an array of either. */
export async function connectNats(
  servers: string | string[],
  opts: ConnectNatsOptions = {},
): Promise<NatsConnection> {
  const urls = parseServers(servers)
  const timeoutMs = opts.timeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT
  if (urls.length === 0) {
    throw new QuireError('INVALID_CONFIG', 'no NATS server URL given', { servers })
  }
  for (const url of urls) checkServerUrl(url)
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new QuireError('INVALID_CONFIG', `NATS connect timeout must be > 0 ms, got ${timeoutMs}`, {
      timeoutMs,
    })
  }
  // Files are read and the options checked before any dial: a missing creds file is no network error.
  const authOptions = natsAuthOptions(opts.auth, urls)
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    const remainingMs = deadline - Date.now()
    if (remainingMs <= 0) break
    try {
      const nc = await withDeadline(attempt(urls, remainingMs, opts.name, authOptions), remainingMs)
      // This connection's reads and writes of large messages (transport/natsParser.ts, natsOutbound.ts).
      exactMessageBuffersFor(nc)
      gatheredWritesFor(nc)
      if (opts.onReconnect || opts.onPermissionError) watchStatus(nc, opts)
      return nc
    } catch (err) {
      // Only "nobody answered" is retried; auth or protocol errors will not heal by waiting.
      const refusal = authRefusal(urls, err, opts.auth)
      if (refusal) throw refusal
      if (!isUnreachable(err)) throw refused(urls, err)
      lastError = err
    }
    const waitMs = Math.min(CONNECT_RETRY_WAIT_MS, deadline - Date.now())
    if (waitMs > 0) await sleep(waitMs)
  }
  const reason = lastError instanceof Error ? `: ${lastError.message}` : ''
  // A server that verifies clients' certificates drops the handshake of one without: nats.js sees no answer.
  const hint = opts.auth?.tls !== undefined && opts.auth.tls.certFile === undefined
    ? ' (if the server verifies client certificates, give tls.certFile and tls.keyFile)' : ''
  throw new QuireError(
    'NATS_UNREACHABLE',
    `cannot reach NATS at ${urls.join(', ')} within ${timeoutMs} ms${reason}${hint}`,
    { servers: urls, timeoutMs, cause: lastError },
  )
}

function attempt(urls: string[], timeoutMs: number, name: string | undefined, authOptions: Partial<ConnectionOptions>): Promise<NatsConnection> {
  return connect({
    ...authOptions,
    servers: urls,
    ...(name === undefined ? {} : { name }),
    // Per-dial handshake timeout; withDeadline bounds the sum over several servers.
    timeout: Math.min(timeoutMs, DIAL_TIMEOUT_MS),
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: MAX_PINGS_OUT,
    // The list's order is the caller's choice of home server (see the header).
    noRandomize: true,
    // false: the first failure must surface so that our deadline, not the client, decides.
    waitOnFirstConnect: false,
  })
}

class DeadlineExceeded extends Error {}

/** Rejects at the deadline; a connection that still arrives later is closed so it cannot leak. */
function withDeadline(p: Promise<NatsConnection>, ms: number): Promise<NatsConnection> {
  return new Promise((resolve, reject) => {
    let expired = false
    const timer = setTimeout(() => {
      expired = true
      reject(new DeadlineExceeded(`no answer within ${ms} ms`))
    }, ms)
    p.then(
      (nc) => {
        if (expired) void nc.close().catch(() => {})
        else {
          clearTimeout(timer)
          resolve(nc)
        }
      },
      (err: unknown) => {
        clearTimeout(timer)
        if (!expired) reject(err)
      },
    )
  })
}

/** The status iterator ends when the connection closes. */
function watchStatus(nc: NatsConnection, opts: ConnectNatsOptions): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'reconnect') opts.onReconnect?.()
      else if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) {
        opts.onPermissionError?.({ operation: s.error.operation, subject: s.error.subject })
      }
    }
  })().catch(() => {})
}

function isUnreachable(err: unknown): boolean {
  return (
    err instanceof DeadlineExceeded ||
    err instanceof errors.ConnectionError ||
    err instanceof errors.TimeoutError
  )
}

/**
 * What nats.js accepts: `nats://host:port`, `tls://host:port`, or `host:port` (nats:// implied).
 * Anything else is INVALID_CONFIG naming the URL, before any dial: nats.js itself would throw a
 * raw TypeError from its URL parsing.
 */
function checkServerUrl(url: string): void {
  const bad = (why: string): QuireError => new QuireError('INVALID_CONFIG', `bad NATS URL ${JSON.stringify(url)}: ${why}`, { url })
  const full = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `nats://${url}`
  let parsed: URL
  try {
    parsed = new URL(full)
  } catch {
    throw bad('not a URL (expected nats://host:port)')
  }
  if (parsed.protocol !== 'nats:' && parsed.protocol !== 'tls:') throw bad(`scheme ${parsed.protocol}// is not nats:// or tls://`)
  if (parsed.hostname === '') throw bad('no host')
  if (parsed.pathname !== '' && parsed.pathname !== '/') throw bad('a NATS URL has no path')
}

/**
 * A final connect failure as an operating error: the peer answered, but not as a NATS server
 * (an HTTP server, another protocol), or a NATS server refused us (authorization).
 */
function refused(urls: string[], err: unknown): QuireError {
  if (err instanceof QuireError) return err
  const reason = err instanceof Error ? err.message : String(err)
  return new QuireError('NATS_UNREACHABLE', `cannot connect to NATS at ${urls.join(', ')}: ${reason} (is a NATS server listening there?)`, {
    servers: urls, cause: err,
  })
}

/** Flattens a URL, comma-separated URLs, or an array of either, into a list. */
export function parseServers(servers: string | string[]): string[] {
  const list = Array.isArray(servers) ? servers : [servers]
  return list
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
