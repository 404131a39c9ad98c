// Opens Quire's metadata buckets in JetStream KV: ledgers, bookies, and cluster-wide records
// (the ledger id counter). Buckets are created on first use by whichever process comes first.

import type { NatsConnection } from '@nats-io/transport-node'
import { openKv } from './kv.ts'
import { MetadataStore } from './metadataStore.ts'

export const BUCKETS = { ledgers: 'quire_ledgers', bookies: 'quire_bookies', cluster: 'quire_cluster' } as const

export async function openMetadata(nc: NatsConnection, opts: { replicas?: number } = {}): Promise<MetadataStore> {
  const [ledgers, bookies, cluster] = await Promise.all([
    openKv(nc, BUCKETS.ledgers, { history: 1, ...opts }),
    openKv(nc, BUCKETS.bookies, { history: 1, ...opts }),
    openKv(nc, BUCKETS.cluster, { history: 1, ...opts }),
  ])
  return new MetadataStore(ledgers, bookies, cluster)
}
