// A simulated cluster for the simulator's runs (sim/simulate.ts, sim/simulateLogs.ts): 3 to 5
// simulated bookies heartbeating into the simulated metadata store, and real clients over the
// simulated network, all on one World (clock, randomness, faults). Network faults are the run's
// to set (world.faults); bookie stops and restarts are too.

import { QuireClientImpl as QuireClient, MetadataStore } from '../client/internal.ts'
import { SimBookie } from './bookie.ts'
import { SimKv } from './kv.ts'
import { SimTransport } from './transport.ts'
import type { World } from './world.ts'

export const HEARTBEAT_MS = 50

export interface SimCluster {
  bookies: Map<string, SimBookie>
  metadata: MetadataStore
  /** A new client process (its own node on the network). */
  newClient(timeouts: { addTimeoutMs: number; readTimeoutMs: number }): { client: QuireClient; transport: SimTransport }
}

export function simCluster(world: World, opts: { limbo: boolean }): SimCluster {
  const nBookies = world.int(3, 6)
  const bookies = new Map<string, SimBookie>()
  const clients = new Map<string, SimTransport>()
  const reply = (to: string, msg: Parameters<SimTransport['deliver']>[0]): void => {
    const bookieNode = 'bookieId' in msg ? msg.bookieId : ''
    if (world.down.has(bookieNode)) return
    world.send(to, () => clients.get(to)?.deliver(msg), bookieNode || undefined)
  }
  const metadata = new MetadataStore(new SimKv(world), new SimKv(world), new SimKv(world), new SimKv(world))
  for (let i = 1; i <= nBookies; i++) bookies.set(`b${i}`, new SimBookie(`b${i}`, world, reply, { limbo: opts.limbo, metadata }))
  const heartbeat = (b: SimBookie): void => {
    if (b.alive) {
      void metadata.putBookie({ bookieId: b.id, state: 'writable', heartbeatAt: world.now(), heartbeatMs: HEARTBEAT_MS, startedAt: 0, host: 'sim', pid: 0 })
    }
    world.setTimeout(() => heartbeat(b), HEARTBEAT_MS)
  }
  for (const b of bookies.values()) heartbeat(b)
  let nextNode = 0
  return {
    bookies, metadata,
    newClient: ({ addTimeoutMs, readTimeoutMs }) => {
      const node = `c${++nextNode}`
      const transport = new SimTransport(node, world, bookies)
      clients.set(node, transport)
      const client = new QuireClient({ nc: null, bookies: transport, metadata, clock: world, random: world.random }, { addTimeoutMs, readTimeoutMs })
      return { client, transport }
    },
  }
}

/** Drive the world until `p` settles (bounded). */
export async function runUntil<T>(world: World, p: Promise<T>): Promise<T> {
  let done = false
  p.then(() => { done = true }, () => { done = true })
  for (let i = 0; i < 200 && !done; i++) await world.run(world.now() + 25)
  if (!done) throw new Error('simulation: operation did not finish')
  return p
}
