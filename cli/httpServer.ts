// A node's HTTP server: /metrics, /heartbeat and the admin API (cli/adminApi.ts) on one fastify
// app, started by `quire node` when the httpPort setting is not 0.
// - It turns on Node's default process metrics in the process's registry (actors/metrics.ts).
// - `extend` lets other parts of the node add routes to the same app before it listens.
// - `close()` stops listening and ends open keep-alive connections; calling it twice is harmless.
// A port that cannot be bound (in use, not allowed) is INVALID_CONFIG naming it. With a token,
// every route answers only requests that carry it (cli/adminApi.ts requireBearerToken).
// No request logging: a scraper every few seconds would drown the node's log.

import { fastify, type FastifyInstance } from 'fastify'
import { QuireError } from '../machines/errors.ts'
import { enableDefaultMetrics, registry } from '../actors/metrics.ts'
import { registerAdminApi, registerMetrics, requireBearerToken, type AdminDeps } from './adminApi.ts'

export interface HttpServerOptions extends AdminDeps {
  /** 0: any free port (the returned url names it). */
  port: number
  host: string
  /** More routes on the same app, added before it listens. */
  extend?: (app: FastifyInstance) => void | Promise<void>
  /** The node's httpToken: every request must carry it as a bearer token (cli/adminApi.ts). */
  token?: string | undefined
}

export interface RunningHttpServer {
  /** `http://host:port`, with the port actually bound. */
  url: string
  port: number
  app: FastifyInstance
  close(): Promise<void>
}

/** The app without listening: what startHttpServer serves, and what inject() tests drive. */
export async function buildHttpApp(opts: Omit<HttpServerOptions, 'port' | 'host'>): Promise<FastifyInstance> {
  const app = fastify({ logger: false, forceCloseConnections: true })
  // Before the routes: the check covers every one of them.
  if (opts.token !== undefined) requireBearerToken(app, opts.token)
  registerMetrics(app, registry)
  registerAdminApi(app, opts)
  await opts.extend?.(app)
  return app
}

export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer> {
  enableDefaultMetrics()
  const app = await buildHttpApp(opts)
  try {
    await app.listen({ port: opts.port, host: opts.host })
  } catch (err) {
    await app.close().catch(() => {})
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new QuireError('INVALID_CONFIG', `cannot serve HTTP on ${opts.host}:${opts.port} (${code}): choose another httpPort / httpHost`, {
        httpPort: opts.port, httpHost: opts.host,
      })
    }
    throw err
  }
  const addr = app.server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.port
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  let closing: Promise<void> | null = null
  return {
    url: `http://${host}:${port}`,
    port,
    app,
    close: () => (closing ??= app.close()),
  }
}
