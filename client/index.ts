// Quire's client library: the one public entry point. Everything a user needs is re-exported
// here; the rest of client/ is internal.

export { connect, QuireClient, MAX_ENTRY_BYTES_DEFAULT } from './client.ts'
export type { ClientOptions, CreateLedgerOptions, OpenLedgerOptions } from './client.ts'
export { ReadHandle } from './readHandle.ts'
export type { LedgerEntry } from './readHandle.ts'
export { WriteHandle } from './writeHandle.ts'
export type { Appended, ProducerOptions } from './producer.ts'
export type { TailOptions } from './tail.ts'
export { QuireError, isQuireError, ERROR_CODES } from '../machines/errors.ts'
export type { ErrorCode } from '../machines/errors.ts'
export type { LedgerMetadata, Segment, BookieRecord } from '../storage/metadataStore.ts'
export type { DigestType } from '../transport/entry.ts'
export type { ClientMetrics } from './telemetry.ts'
