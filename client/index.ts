// Quire's client library, the package's main entry point (`quire`): the whole public surface.
// Runtime names: connect, QuireError, isQuireError, ERROR_CODES, MAX_ENTRY_BYTES_DEFAULT, and the
// log position helpers formatPosition, parsePosition, comparePositions; the rest are types, and the client and its handles are interfaces (client/api.ts), not the classes
// behind them. test/integration/publicSurface.test.ts pins this list: a new export is a decision, not an
// accident. What the simulator, tests and servers need besides is in client/internal.ts.

// First: an unsupported Node.js gets one UNSUPPORTED_NODE error before anything else runs.
import './nodeVersion.ts'

export { connect, MAX_ENTRY_BYTES_DEFAULT } from './client.ts'
export type { ClientOptions, CreateLedgerOptions, OpenLedgerOptions } from './client.ts'
export type { QuireClient, ReadHandle, WriteHandle, Log, LogNamespace, LogReader, LogWriter } from './api.ts'
export { formatPosition, parsePosition, comparePositions } from '../machines/logPosition.ts'
export type { LogPosition } from '../machines/logPosition.ts'
export type { LogMetadata, LogOptions, LogSegment } from '../machines/logRules.ts'
export type { LogRecord } from './logReader.ts'
export type { CreateLogOptions, ReaderOptions } from './logs.ts'
export type { AppendOptions, LogWriterOptions } from './logWriter.ts'
export type { LedgerEntry } from './readHandle.ts'
export type { Appended, ProducerOptions } from './producer.ts'
export type { TailOptions } from './tail.ts'
export { QuireError, isQuireError, ERROR_CODES } from '../machines/errors.ts'
export type { ErrorCode } from '../machines/errors.ts'
export type { LedgerMetadata, Segment, BookieRecord } from '../storage/metadataStore.ts'
export type { DigestType } from '../transport/entry.ts'
export type { NatsAuth, NatsTls } from '../transport/natsAuth.ts'
export type { ClientMetrics } from './telemetry.ts'
