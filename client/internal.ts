// Quire's internal entry point (`quire/internal` in the package): the public surface of
// client/index.ts and, besides it, what the simulator, the tests and the server side
// (quire-server) build on: the classes behind the client and handle interfaces (their parts
// constructors; the client's NATS connection `nc` and raw `metadata` store), the bookie
// transport, recovery, the metadata store and KV helpers, the in-memory KV the simulator runs
// on, the entry and wire codecs, the clock.
// NO STABILITY PROMISE: anything here may change or go in any release, without notice. An
// application imports `quire` (client/index.ts) only.

export * from './index.ts'
export { connectClient, QuireClientImpl, type ClientParts } from './client.ts'
export { ReadHandleImpl, type HandleDeps } from './readHandle.ts'
export { LogNamespaceImpl, LogHandleImpl, LogReaderImpl } from './logs.ts'
export { LogWriterImpl } from './logWriter.ts'
export { readLog } from './logReader.ts'
export { LogStore } from '../storage/logStore.ts'
export { WriteHandleImpl, type WriteDeps } from './writeHandle.ts'
export { appendIterable, appendObservable } from './producer.ts'
export { BookieClient, type AckHandler, type BookieTransport, type TailTransport } from './bookieClient.ts'
export { recoverLedger, type RecoveryDeps } from './recovery.ts'
export { NO_CLIENT_METRICS } from './telemetry.ts'
export { MetadataStore, isBookieAlive, pickBookies, type LedgerState, type Versioned } from '../storage/metadataStore.ts'
export { openMetadata, type OpenMetadataOptions } from '../storage/openMetadata.ts'
export { JetStreamKv, openKv } from '../storage/kv.ts'
export { MemoryKv } from '../storage/memoryKv.ts'
export { KvConflict, type VersionedKv } from '../storage/types.ts'
export { masterKeyOf, passwordCheckOf, encodeEntry, decodeEntry, readEntryHeader } from '../transport/entry.ts'
export { RC, rcName, encode, decode } from '../transport/wire.ts'
export { connectNats } from '../transport/nats.ts'
export { realClock, type Clock, type Random } from '../transport/clock.ts'
