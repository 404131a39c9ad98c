// Connecting to NATS. The first connect is bounded: when no server answers within timeoutMs the
// caller gets NATS_UNREACHABLE naming the URLs, instead of waiting forever. Once connected, the
// connection reconnects on its own (to any of the servers) for as long as it lives.

import { connect, type NatsConnection } from '@nats-io/transport-node'
import { QuireError } from '../machines/errors.ts'

export type { NatsConnection }

export function parseServers(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : [servers]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)
  if (list.length === 0) throw new QuireError('INVALID_CONFIG', 'no NATS server URL given')
  return list
}

export async function connectNats(servers: string | string[], opts: { name?: string; timeoutMs?: number } = {}): Promise<NatsConnection> {
  const list = parseServers(servers)
  const timeoutMs = opts.timeoutMs ?? 5000
  let timer: NodeJS.Timeout | undefined
  const attempt = connect({
    servers: list,
    name: opts.name,
    timeout: timeoutMs,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: false,
  })
  try {
    return await Promise.race([
      attempt,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('timed out')), timeoutMs + 500) }),
    ])
  } catch (err) {
    attempt.then((nc) => nc.close(), () => {})
    throw new QuireError('NATS_UNREACHABLE', `cannot reach NATS at ${list.join(', ')} within ${timeoutMs} ms (${err instanceof Error ? err.message : String(err)})`, { servers: list })
  } finally {
    clearTimeout(timer)
  }
}
