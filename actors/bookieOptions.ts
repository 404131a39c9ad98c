// A bookie's options and the parts it is built over (actors/bookie.ts). `realBookieParts` is what
// the node command runs on: the data folder's journal files and RocksDB (storage/bookieDisk.ts
// fileDisk), NATS and JetStream KV, the system clock. The simulator passes its own (sim/bookieNode.ts).

import type { BookieDisk } from '../storage/bookieDisk.ts'
import { fileDisk } from '../storage/bookieDisk.ts'
import type { MetadataStore } from '../storage/metadataStore.ts'
import { openMetadata } from '../storage/openMetadata.ts'
import { realClock, type Clock } from '../transport/clock.ts'
import { connectNats, type NatsAuth } from '../transport/nats.ts'
import { natsNetwork, type Network } from '../transport/network.ts'
import type { BookieStorageOptions } from './bookieStorage.ts'
import { journalMetrics, natsMetrics } from './metrics.ts'

/**
 * What a bookie is built over. The node command passes the real ones (realBookieParts: the data
 * folder's journal and RocksDB, NATS and JetStream KV, the system clock); the simulator passes its
 * memory disk, network, metadata store and virtual clock, and runs this same bookie.
 */
export interface BookieParts {
  disk: BookieDisk
  /** The network and the metadata store over it, once the storage is open and replayed. */
  connect(): Promise<{ network: Network; metadata: MetadataStore }>
  clock: Clock
}

export interface BookieOptions {
  bookieId: string
  dataDir: string
  nats: string | string[]
  /** The NATS login and TLS of its connection (transport/natsAuth.ts); none by default. */
  natsAuth?: NatsAuth | undefined
  heartbeatMs?: number
  checkpointIntervalMs?: number
  maxEntryBytes?: number
  journal?: BookieStorageOptions
  log?: (msg: string, fields?: Record<string, unknown>) => void
  /** Disk usage check interval (actors/diskMonitor.ts). Default 10000. */
  diskCheckIntervalMs?: number
  /** > 0: usage is the bytes under dataDir over this quota, not the filesystem's. Default 0. */
  diskQuotaBytes?: number
  /** Read-only above this usage. Default 0.95. */
  diskUsageThreshold?: number
  /** Writable again below this usage. Default 0.90. */
  diskUsageLwmThreshold?: number
  /** Garbage collection interval (actors/gc.ts); 0: only on entering read-only. Default 60000. */
  gcIntervalMs?: number
  /** After a GC that deleted ledgers, entry logs with less live data than this fraction are compacted. Default 0.2. */
  minorCompactionThreshold?: number
  /** The threshold instead when majorCompactionIntervalMs has passed since the last major compaction. Default 0.8. */
  majorCompactionThreshold?: number
  /** Least time between major compactions (0: every compaction is major). Default 86400000. */
  majorCompactionIntervalMs?: number
  /** Replicas of the metadata buckets if this bookie creates them (default: openMetadata's). */
  metadataReplicas?: number
  /** Between integrity checks while ledgers are in limbo (actors/integrityCheck.ts). Default 30000. */
  integrityRecheckMs?: number
  /** Bound on the integrity check's first pass before the bookie serves. Default 30000. */
  integrityStartMs?: number
  /**
   * Publish the lifecycle and every ledger actor on `quire.inspect.*` (transport/inspect.ts) for
   * the inspector. Default false: nothing is watched or published (with many ledgers the
   * snapshots and beacons would outnumber the adds).
   */
  inspect?: boolean
  /** What it runs over; default realBookieParts(options). */
  parts?: BookieParts
}

/** The product's parts: `dataDir` on disk, the NATS servers `nats`, the system clock. */
export function realBookieParts(opts: BookieOptions, log: (msg: string, fields?: Record<string, unknown>) => void): BookieParts {
  return {
    disk: fileDisk(opts.dataDir, journalMetrics),
    clock: realClock,
    connect: async () => {
      const nc = await connectNats(opts.nats, {
        name: `quire-bookie-${opts.bookieId}`, onReconnect: natsMetrics.reconnected, auth: opts.natsAuth,
        // The bookie goes on serving: what was refused is dropped by the server, and logged here.
        onPermissionError: (r) => log('NATS refused this bookie: permission violation', { operation: r.operation, subject: r.subject }),
      })
      try {
        return { network: natsNetwork(nc), metadata: await openMetadata(nc, opts.metadataReplicas ? { metadataReplicas: opts.metadataReplicas } : {}) }
      } catch (err) {
        await nc.close().catch(() => {})
        throw err
      }
    },
  }
}
