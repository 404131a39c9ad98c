// A local NATS cluster: N nats-servers on loopback, each from the project's nats.conf with its own
// client port, cluster port, server_name and JetStream store, routed to every other one, and
// JetStream clustered (one meta group over all of them). Used by the cluster integration test and
// as the reference for running Quire on several hosts (README "Several hosts: a NATS cluster").
//
// Invariants: startNatsCluster resolves only once JetStream has a meta leader and every server
// routes to all the others (so an R3 stream can be placed at once); a server killed and restarted
// keeps its ports, name and store, so it rejoins as the same peer.

import path from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { freePort, startNatsServer, type NatsServer } from './cluster.ts'

export interface ClusterNatsServer extends NatsServer {
  /** server_name: also the JetStream peer name. */
  name: string
  clusterPort: number
  /** HTTP monitoring port (/varz, /connz, /jsz on 127.0.0.1). */
  monitorPort: number
}

export interface NatsCluster {
  readonly name: string
  /** Current processes, by index; a killed server keeps its slot until restarted. */
  readonly servers: ClusterNatsServer[]
  /** Every client URL, in server order. */
  readonly urls: string[]
  /** Every client URL with server `i` first: what a process "homed" on server i connects with. */
  urlsFrom(i: number): string[]
  /** kill -9 server i (its store stays); resolves when the process is gone. */
  kill(i: number): Promise<void>
  /** Start server i again on the same ports and store, and wait until the cluster is whole. */
  restart(i: number): Promise<void>
  stop(): Promise<void>
}

export interface NatsClusterOptions {
  /** Folder under which each server gets its store (`<dir>/<name>`). */
  dir: string
  /** Number of servers; default 3. */
  size?: number
  /** Cluster name; default "quire". */
  name?: string
  /** Bound on start-up (processes listening, routes up, meta leader); default 30 s. */
  readyTimeoutMs?: number
  echo?: boolean
}

interface Slot { name: string; port: number; clusterPort: number; monitorPort: number; storeDir: string }

export async function startNatsCluster(opts: NatsClusterOptions): Promise<NatsCluster> {
  const size = opts.size ?? 3
  const clusterName = opts.name ?? 'quire'
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000
  if (!Number.isSafeInteger(size) || size < 1) throw new Error(`a NATS cluster needs at least one server, got ${size}`)
  const slots: Slot[] = []
  const taken = new Set<number>()
  for (let i = 0; i < size; i++) {
    const name = `n${i + 1}`
    slots.push({
      name, port: await distinctPort(taken), clusterPort: await distinctPort(taken), monitorPort: await distinctPort(taken),
      storeDir: path.join(opts.dir, name),
    })
  }
  const urls = slots.map((s) => `nats://127.0.0.1:${s.port}`)

  const launch = async (i: number): Promise<ClusterNatsServer> => {
    const s = slots[i]!
    const routes = slots.filter((_, j) => j !== i).map((o) => `nats://127.0.0.1:${o.clusterPort}`)
    const args = [
      '--server_name', s.name, '--cluster_name', clusterName, '--cluster', `nats://127.0.0.1:${s.clusterPort}`,
      '--http_port', String(s.monitorPort),
    ]
    if (routes.length > 0) args.push('--routes', routes.join(','))
    const srv = await startNatsServer({ port: s.port, storeDir: s.storeDir, echo: opts.echo ?? false, args })
    return { ...srv, name: s.name, clusterPort: s.clusterPort, monitorPort: s.monitorPort }
  }

  const servers: ClusterNatsServer[] = []
  const cluster: NatsCluster = {
    name: clusterName,
    servers,
    urls,
    urlsFrom: (i) => [...urls.slice(i), ...urls.slice(0, i)],
    async kill(i) {
      const s = servers[i]
      if (!s) throw new Error(`no server ${i}`)
      s.kill('SIGKILL')
      await s.exited
    },
    async restart(i) {
      await cluster.kill(i)
      servers[i] = await launch(i)
      // Servers killed and not restarted are left out: the live ones must know each other.
      const live = servers.flatMap((s, j) => (s.proc.exitCode === null && s.proc.signalCode === null ? [urls[j]!] : []))
      await waitUntilReady(live, readyTimeoutMs)
    },
    async stop() {
      await Promise.all(servers.map((s) => s.stop()))
    },
  }
  try {
    servers.push(...(await Promise.all(slots.map((_, i) => launch(i)))))
    await waitUntilReady(urls, readyTimeoutMs)
  } catch (err) {
    await cluster.stop()
    const logs = servers.map((s) => `--- ${s.name}\n${s.output().slice(-2000)}`).join('\n')
    throw new Error(`NATS cluster did not come up: ${err instanceof Error ? err.message : String(err)}\n${logs}`)
  }
  return cluster
}

async function distinctPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const p = await freePort()
    if (!taken.has(p)) {
      taken.add(p)
      return p
    }
  }
}

/**
 * Ready: each of `urls` knows all of them (its INFO lists every routed server's client URL, so
 * routes are up), and a JetStream API request is answered (only the meta leader answers account
 * info in a cluster, so an answer means the meta group has a leader).
 */
async function waitUntilReady(urls: string[], timeoutMs: number): Promise<void> {
  const size = urls.length
  const deadline = Date.now() + timeoutMs
  let last = ''
  for (const url of urls) {
    for (;;) {
      if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms (${url}: ${last})`)
      let nc: NatsConnection | null = null
      try {
        nc = await connect({ servers: url, timeout: 2000, reconnect: false })
        const known = new Set([...(nc.info?.connect_urls ?? []), `127.0.0.1:${nc.info?.port ?? 0}`])
        if (known.size < size) {
          last = `knows ${known.size} of ${size} servers`
        } else {
          await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo()
          break
        }
      } catch (err) {
        last = err instanceof Error ? err.message : String(err)
      } finally {
        await nc?.close().catch(() => {})
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}
