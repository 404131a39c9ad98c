// The one registry of Quire's operating errors. Every error a user can meet carries a stable
// `code` from this table; docs/reference.md's error table is generated from the same list (test/unit/docs.test.ts). Programmer
// errors are assertions (see `assert` below) and crash instead.
// Pure: imported by every layer, imports nothing.

export const ERROR_CODES = {
  INVALID_CONFIG: 'A setting is out of range (quorum sizes, ids, sizes, options).',
  NOT_ENOUGH_BOOKIES: 'Fewer writable, live bookies than the ensemble (or a replacement) needs.',
  UNAUTHORIZED: 'The password does not match the ledger, or a bookie rejected the master key; over HTTP, a request without the node\'s httpToken.',
  NO_SUCH_LEDGER: 'No ledger with that id exists in the metadata store.',
  NO_SUCH_ENTRY: 'The entry does not exist on any bookie that should hold it, or is past the LAC.',
  ENTRY_TOO_LARGE: 'The payload is larger than the largest entry the writer can send: the smallest of the client\'s maxEntryBytes (default 5 MiB), the NATS server\'s max_payload and the ledger\'s bookies\' limit, less framing.',
  LEDGER_CLOSED: 'The ledger is closed (or the write handle was closed); no more appends.',
  FENCED: 'The ledger was fenced by a recovery: this writer can get no more entries acknowledged.',
  TIMEOUT: 'A bookie or the metadata store did not answer in time.',
  NATS_UNREACHABLE: 'No NATS server answered at the given URL within the connect timeout, or what answered there is not a NATS server (or refused the connection).',
  NATS_AUTH: 'A NATS server refused this process: its login (user and password, token, nkey, creds), or the TLS handshake (an untrusted or expired certificate, TLS required on one side and not offered on the other), or a publish or subscription its user\'s permissions do not allow; the message names the server or the subject, and what was refused.',
  CORRUPT_JOURNAL: 'The journal is damaged before its torn end (a later write follows the damage), a segment is missing, or a segment is of an older format; the bookie refuses to start.',
  CORRUPT_ENTRY: 'A stored entry fails its digest on every replica that returned it.',
  ENTRY_LOG_DAMAGED: 'An entry log file the bookie\'s index points into is missing, ends before the indexed record, or holds a record that fails its checksum (the message names the file); reads of those entries answer damaged (never "no such entry") until a new copy is written.',
  BOOKIE_UNAVAILABLE: 'Too many bookies of a write set failed to answer or refused the request.',
  METADATA_CONFLICT: 'A compare-and-swap on ledger metadata lost in a way a retry cannot fix.',
  METADATA_ERROR: 'The metadata store (NATS JetStream) refused a request, or the NATS connection is closed; the message carries the server\'s error and code.',
  BACKPRESSURE: 'A push source outran append$ past its bound on queued entries or bytes (use appendAll for flow control).',
  RECOVERY_INCOMPLETE: 'Recovery could not decide the last entry (too many unknown answers); nothing was guessed, retry later.',
  BOOKIE_RUNNING: 'The bookie is registered and alive: stop it (or let it drain) before recovering or decommissioning it.',
  NO_SUCH_BOOKIE: 'No such bookie: the id is not registered, or the node asked runs no bookie role.',
  NO_AUDITOR: 'No node holds the auditor lease (none runs the auditor role), so nothing answered the request.',
  COOKIE_MISMATCH: 'A bookie\'s data folder and its cookie in the metadata store disagree (wiped or swapped disk, other cluster); it refuses to start.',
  UNSUPPORTED_NODE: 'The Node.js running Quire is older than the package supports (engines.node: Node.js 20 or newer); the client refuses to load.',
  SERVER_ONLY: 'The module imported from the quire client package is a server part (bookies, node roles, the CLI, the admin API, the inspector): those are in the quire-server package.',
  NO_SUCH_LOG: 'No log of that name exists (never created, or deleted).',
  LOG_EXISTS: 'A log of that name exists already.',
  INVALID_LOG_NAME: 'A log or subscriber name outside the alphabet (letters, digits, _ and -; a log name in parts joined by /) or too long.',
  INVALID_POSITION: 'A log position that does not parse (`<segmentSeq>:<entryId>:<slot>`) or is not three non-negative integers.',
  INVALID_TXID: 'A log record\'s transaction id is not above the last one of the log.',
  RECORD_TOO_LARGE: 'A log record is larger than the writer\'s recordBytesMax.',
  LOG_WRITER_CONFLICT: 'Another writer took the log while this one was taking it: one writer at a time, and this one lost.',
  END_OF_STREAM: 'The log is sealed (its writer marked the end of the stream): no more records.',
  TRUNCATED: 'The log no longer holds records before this position (truncated or removed by retention); the error names the first available position.',
  PEER_DEPENDENCY_MISSING: 'An API was called whose optional peer dependency the application has not installed (tail$ and append$ need rxjs 7).',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export class QuireError extends Error {
  readonly code: ErrorCode
  /** Structured context (ids, sizes, urls). Not named `details`: test reporters read that as a diff. */
  readonly info: Readonly<Record<string, unknown>>

  constructor(code: ErrorCode, message: string, info: Record<string, unknown> = {}) {
    super(message)
    this.name = 'QuireError'
    this.code = code
    this.info = info
  }
}

export function isQuireError(err: unknown, code?: ErrorCode): err is QuireError {
  return err instanceof QuireError && (code === undefined || err.code === code)
}

/** A failed assertion: a bug, never an operating error. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`)
    this.name = 'AssertionError'
  }
}

/** Programmer errors: always on, in production too. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message)
}

/** A bug: a failed assertion, or JavaScript's TypeError, RangeError, ReferenceError or SyntaxError. */
export function isProgrammerError(err: unknown): boolean {
  return err instanceof AssertionError || err instanceof TypeError || err instanceof RangeError ||
    err instanceof ReferenceError || err instanceof SyntaxError
}

/**
 * `err` as an operating error for a caller that reports failures as codes: a QuireError as it is,
 * any other failure as `code` with `what` and its message. A bug is thrown again, never reported
 * as an operating error (a TypeError read as TIMEOUT hides it): where nobody awaits the throw, the
 * unhandled rejection stops the process, loudly.
 */
export function asOperatingError(err: unknown, code: ErrorCode, what: string, info: Record<string, unknown> = {}): QuireError {
  if (err instanceof QuireError) return err
  if (isProgrammerError(err)) throw err
  return new QuireError(code, `${what}: ${err instanceof Error ? err.message : String(err)}`, info)
}
