// Test support for suites on a real NATS cluster (cli/natsCluster.ts): waiting for a condition,
// and whether every metadata bucket has a stream leader (after a server's loss the buckets' raft
// groups elect new ones, and until then metadata requests time out).

import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { BUCKETS } from '../../storage/openMetadata.ts'

export async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Every metadata bucket has a stream leader. */
export async function metadataLeaders(nc: NatsConnection): Promise<boolean> {
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000 })
    for (const b of Object.values(BUCKETS)) {
      if (!(await jsm.streams.info(`KV_${b}`)).cluster?.leader) return false
    }
    return true
  } catch {
    return false
  }
}
