// A simulated cluster for the simulator's runs (sim/simulate.ts, sim/simulateLogs.ts): 3 to 5
// bookies (the product's, sim/bookieNode.ts) registering and heartbeating into the simulated
// metadata store, and real clients over the simulated network, all on one World (clock,
// randomness, faults). In half the runs the bookies' clocks are skewed (up to 20 ms either way).
// Network faults are the run's to set (world.faults); bookie stops and restarts are too.

import { QuireClientImpl as QuireClient, MetadataStore, type ClientParts } from '../client/internal.ts'
import { SimBookieNode } from './bookieNode.ts'
import { SimKv } from './kv.ts'
import { SimNetwork } from './network.ts'
import { SimTransport } from './transport.ts'
import type { World } from './world.ts'

export const HEARTBEAT_MS = 50

export interface SimCluster {
  bookies: Map<string, SimBookieNode>
  metadata: MetadataStore
  network: SimNetwork
  /** The metadata buckets (ledgers, bookies, cluster, logs): another process views them with SimKv.view. */
  buckets: readonly [SimKv, SimKv, SimKv, SimKv]
  /** A new client process (its own node on the network). */
  newClient(timeouts: { addTimeoutMs: number; readTimeoutMs: number }): { client: QuireClient; transport: SimTransport }
}

export function simCluster(world: World, opts: { limbo: boolean; ackBeforeSync?: boolean; writerLogic?: ClientParts['writerLogic'] }): SimCluster {
  const nBookies = world.int(3, 6)
  const network = new SimNetwork(world)
  const buckets = [new SimKv(world), new SimKv(world), new SimKv(world), new SimKv(world)] as const
  const metadata = new MetadataStore(...buckets)
  const bookies = new Map<string, SimBookieNode>()
  const skewed = world.chance(0.5)
  for (let i = 1; i <= nBookies; i++) {
    const b = new SimBookieNode(`b${i}`, world, network, { limbo: opts.limbo, ackBeforeSync: opts.ackBeforeSync, heartbeatMs: HEARTBEAT_MS, buckets })
    if (skewed) b.skewMs = world.between(-20, 20)
    bookies.set(b.id, b)
    b.restart()
  }
  let nextNode = 0
  return {
    bookies, metadata, network, buckets,
    newClient: ({ addTimeoutMs, readTimeoutMs }) => {
      const node = `c${++nextNode}`
      const transport = new SimTransport(node, world, network)
      const client = new QuireClient({ nc: null, bookies: transport, metadata, clock: world, random: world.random, writerLogic: opts.writerLogic }, { addTimeoutMs, readTimeoutMs })
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
