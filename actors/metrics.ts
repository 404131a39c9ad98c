// Every metric of a Quire process, in one place: one prom-client Registry per process and each
// metric's name, help, labels and buckets. Code that counts imports the objects below and calls
// inc / set / observe; nothing else. The HTTP side (cli/adminApi.ts) serves `registry`.
//
// Invariants:
// - Names follow Prometheus conventions: `quire_` prefix, base units (seconds, bytes) last,
//   counters end in `_total`. docs/operations.md's metrics table lists the same names.
// - Hot paths (adds, reads, journal groups, appends) pay an observe or an inc per request or per
//   group, never a new object of their own; label children are bound once, here.
// - Importing this module starts nothing: Node's default process metrics (event loop lag, GC,
//   heap) are switched on by `enableDefaultMetrics()`, which the HTTP server calls, so a client
//   process that never serves metrics carries no collectors.
// - A process holding several bookies (in-process tests) adds their counts into the same series.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { RC, rcName } from '../transport/wire.ts'

export const registry = new Registry()

let defaultsOn = false

/** Node's process metrics (process_*, nodejs_*) into `registry`; once per process. */
export function enableDefaultMetrics(): void {
  if (defaultsOn) return
  defaultsOn = true
  collectDefaultMetrics({ register: registry })
}

/** Latency buckets in seconds, 100 µs to 10 s: a synced add is ~1 ms, a stalled one seconds. */
const LATENCY_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
/** One durable journal write: tens of µs on a fast disk to a second on a sick one. */
const SYNC_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
/** Records per group commit: 1 when idle, hundreds under a pipelined load. */
const GROUP_RECORD_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
/** Bytes per group commit, up to past the default journalGroupBytes (512 KiB). */
const GROUP_BYTE_BUCKETS = [256, 1024, 4096, 16384, 65536, 262144, 524288, 1048576, 4194304, 16777216]

/**
 * One bound child per response code (the `result` label: its lower-case name), so counting by
 * result costs no label object per call. `ok` shows, at 0, from the first scrape, so rate() works
 * from the start; the others appear when they first happen.
 */
function byResult(c: Counter<'result'>): (rc: number) => Counter.Internal {
  const children = new Map<number, Counter.Internal>([[RC.OK, c.labels('ok')]])
  children.get(RC.OK)!.inc(0)
  return (rc) => {
    let child = children.get(rc)
    if (!child) children.set(rc, (child = c.labels(rcName(rc).toLowerCase())))
    return child
  }
}

// --- bookie --------------------------------------------------------------------------------

const addEntries = new Counter({
  name: 'quire_bookie_add_entries_total',
  help: 'Entries of add requests answered by this bookie, by result (ok once journaled and synced; fenced, read_only, unauthorized, too_large, error)',
  labelNames: ['result'] as const,
  registers: [registry],
})
const addLatency = new Histogram({
  name: 'quire_bookie_add_request_duration_seconds',
  help: 'One add request (the entries of one ledger in one message) from its arrival at the bookie to its acknowledgement, journal sync included',
  buckets: LATENCY_BUCKETS_S,
  registers: [registry],
})
const readRequests = new Counter({
  name: 'quire_bookie_read_requests_total',
  help: 'Read requests answered by this bookie, by result (ok, no_such_ledger, unauthorized, fenced, error, ...)',
  labelNames: ['result'] as const,
  registers: [registry],
})
const readLatency = new Histogram({
  name: 'quire_bookie_read_request_duration_seconds',
  help: 'One read request from its arrival at the bookie to its answer (write cache, then one RocksDB batch)',
  buckets: LATENCY_BUCKETS_S,
  registers: [registry],
})
const longPollsParked = new Gauge({
  name: 'quire_bookie_long_polls_parked',
  help: 'Long-poll LAC reads parked on this bookie, waiting for the LAC to move or their timeout',
  registers: [registry],
})
const badRequests = new Counter({
  name: 'quire_bookie_bad_requests_total',
  help: 'Frames refused by this bookie because they failed their schema (answered BAD_REQUEST when they had a reply subject), by op (add, read, readLac, writeLac, writeLacs, cancelPoll, other)',
  labelNames: ['op'] as const,
  registers: [registry],
})
const journalRecordsSkipped = new Counter({
  name: 'quire_bookie_journal_records_skipped_total',
  help: 'Journal records skipped at replay because they fail validation (written by an older version that journaled unchecked frames)',
  registers: [registry],
})

export interface BookieStateSource {
  bookieId: string
  readOnly(): boolean
  /** The last measured disk usage (0..1), null before the first check. */
  diskUsage(): number | null
  /** Entries whose stored copy is damaged (storage/entryStore.ts), until rewritten. */
  damagedEntries?(): number
  /** Ledgers in limbo (actors/integrityCheck.ts). */
  limboLedgers?(): number
}

/** The process's bookie, read at scrape time (null: this process runs no bookie). */
let stateSource: BookieStateSource | null = null

// Labelled by bookie id, so that a process without a bookie exposes no sample rather than a 0.
new Gauge({
  name: 'quire_bookie_readonly',
  help: '1 while this node\'s bookie is read-only (disk full), 0 while writable; no sample without a bookie',
  labelNames: ['bookie'] as const,
  registers: [registry],
  collect() {
    this.reset()
    if (stateSource) this.labels(stateSource.bookieId).set(stateSource.readOnly() ? 1 : 0)
  },
})
new Gauge({
  name: 'quire_bookie_disk_usage_ratio',
  help: 'Disk usage of the bookie\'s data folder at the last check (filesystem, or bytes over diskQuotaBytes)',
  labelNames: ['bookie'] as const,
  registers: [registry],
  collect() {
    this.reset()
    const u = stateSource?.diskUsage()
    if (stateSource && u !== undefined && u !== null) this.labels(stateSource.bookieId).set(u)
  },
})

new Gauge({
  name: 'quire_bookie_damaged_entries',
  help: 'Entries whose stored copy on this node\'s bookie is unreadable (RocksDB block checksum) until autorecovery rewrites them; no sample without a bookie',
  labelNames: ['bookie'] as const,
  registers: [registry],
  collect() {
    this.reset()
    const n = stateSource?.damagedEntries?.()
    if (stateSource && n !== undefined) this.labels(stateSource.bookieId).set(n)
  },
})
new Gauge({
  name: 'quire_bookie_limbo_ledgers',
  help: 'Ledgers this node\'s bookie cannot vouch for after an unclean stop or a wiped disk (answered IN_LIMBO, never "no such entry") until its integrity check clears them; no sample without a bookie',
  labelNames: ['bookie'] as const,
  registers: [registry],
  collect() {
    this.reset()
    const n = stateSource?.limboLedgers?.()
    if (stateSource && n !== undefined) this.labels(stateSource.bookieId).set(n)
  },
})
const integrityChecks = new Counter({
  name: 'quire_bookie_integrity_checks_total',
  help: 'Integrity checks run by this node\'s bookie, by result: clean (nothing left in limbo), limbo (open ledgers stay until closed), failed',
  labelNames: ['result'] as const,
  registers: [registry],
})
const storeRepairs = new Counter({
  name: 'quire_bookie_store_repairs_total',
  help: 'Repairs of the bookie\'s entry store after RocksDB corruption (everything readable copied into a fresh store), by result',
  labelNames: ['result'] as const,
  registers: [registry],
})

const addEntriesByRc = byResult(addEntries)
const readRequestsByRc = byResult(readRequests)

export const bookieMetrics = {
  /** An add request's entries were answered with `rc`. */
  addAnswered(rc: number, entries: number): void {
    addEntriesByRc(rc).inc(entries)
  },
  /** An add request was acknowledged OK, `arrivedAtMs` (performance.now()) after it arrived. */
  addAcked(arrivedAtMs: number, nowMs: number): void {
    addLatency.observe((nowMs - arrivedAtMs) / 1000)
  },
  readAnswered(rc: number, arrivedAtMs: number, nowMs: number): void {
    readRequestsByRc(rc).inc()
    readLatency.observe((nowMs - arrivedAtMs) / 1000)
  },
  pollParked(): void {
    longPollsParked.inc()
  },
  pollUnparked(): void {
    longPollsParked.dec()
  },
  /** A frame failed its schema; `op` is a bounded label (transport/validate.ts opLabel). */
  badRequest(op: string): void {
    badRequests.labels(op).inc()
  },
  storeRepaired(ok: boolean): void {
    storeRepairs.labels(ok ? 'ok' : 'failed').inc()
  },
  journalRecordSkipped(): void {
    journalRecordsSkipped.inc()
  },
  /** An integrity check ended: 'clean' (nothing in limbo), 'limbo' (some ledgers stay) or 'failed'. */
  integrityChecked(result: 'clean' | 'limbo' | 'failed'): void {
    integrityChecks.labels(result).inc()
  },
  /** The bookie this process serves state gauges for; null when it stops. */
  setStateSource(source: BookieStateSource | null): void {
    stateSource = source
  },
}

// --- journal -------------------------------------------------------------------------------

const syncLatency = new Histogram({
  name: 'quire_journal_sync_duration_seconds',
  help: 'One journal group commit: the O_DSYNC write that makes the group durable (write + fdatasync)',
  buckets: SYNC_BUCKETS_S,
  registers: [registry],
})
const groupRecords = new Histogram({
  name: 'quire_journal_group_records',
  help: 'Records per journal group commit (an add record holds the entries of one ledger from one add request)',
  buckets: GROUP_RECORD_BUCKETS,
  registers: [registry],
})
const groupBytes = new Histogram({
  name: 'quire_journal_group_bytes',
  help: 'Bytes per journal group commit, record framing included',
  buckets: GROUP_BYTE_BUCKETS,
  registers: [registry],
})
const journalBytes = new Counter({
  name: 'quire_journal_written_bytes_total',
  help: 'Bytes written durably to the journal (record framing included)',
  registers: [registry],
})

export const journalMetrics = {
  /** A group of `records` (`bytes` framed) is on disk; its write took `syncMs`. */
  groupCommitted(records: number, bytes: number, syncMs: number): void {
    syncLatency.observe(syncMs / 1000)
    groupRecords.observe(records)
    groupBytes.observe(bytes)
    journalBytes.inc(bytes)
  },
}

// --- auto-recovery -------------------------------------------------------------------------

const underReplicated = new Gauge({
  name: 'quire_autorecovery_under_replicated_ledgers',
  help: 'Ledgers marked under-replicated, as the auditor last counted them (set on the node holding the auditor lease; take max() over nodes)',
  registers: [registry],
})
const ledgersReplicated = new Counter({
  name: 'quire_replication_ledgers_total',
  help: 'Under-replicated ledgers this node\'s replication worker copied back to full replication (mark cleared)',
  registers: [registry],
})
const entriesReplicated = new Counter({
  name: 'quire_replication_entries_total',
  help: 'Entries this node\'s replication worker copied to replacement bookies',
  registers: [registry],
})
const recoveries = new Counter({
  name: 'quire_replication_recoveries_total',
  help: 'Open ledgers this node\'s replication worker fenced and recovered (closed) before re-replicating them',
  registers: [registry],
})
const replicationFailures = new Counter({
  name: 'quire_replication_failures_total',
  help: 'Replication attempts that failed and left their ledger marked (retried later)',
  registers: [registry],
})

export const autorecoveryMetrics = {
  underReplicatedLedgers(count: number): void {
    underReplicated.set(count)
  },
  ledgerReplicated(): void {
    ledgersReplicated.inc()
  },
  entriesCopied(count: number): void {
    if (count > 0) entriesReplicated.inc(count)
  },
  ledgerRecovered(): void {
    recoveries.inc()
  },
  replicationFailed(): void {
    replicationFailures.inc()
  },
}

// --- NATS ------------------------------------------------------------------------------------

const natsReconnects = new Counter({
  name: 'quire_nats_reconnects_total',
  help: 'Times a NATS connection of this process came back after losing its server',
  registers: [registry],
})

export const natsMetrics = {
  reconnected(): void {
    natsReconnects.inc()
  },
}

// --- client --------------------------------------------------------------------------------

const clientAddLatency = new Histogram({
  name: 'quire_client_add_duration_seconds',
  help: 'A writer\'s append, from the call to its promise resolving (Qa bookies synced it, every earlier entry too)',
  buckets: LATENCY_BUCKETS_S,
  registers: [registry],
})
const tailDelivered = new Counter({
  name: 'quire_client_tail_entries_total',
  help: 'Entries delivered to tailing readers (entries() / tail$) in this process',
  registers: [registry],
})
const bookieTimeouts = new Counter({
  name: 'quire_client_bookie_timeouts_total',
  help: 'Requests to bookies (reads, LAC reads, long polls) that got no answer in time',
  registers: [registry],
})
const speculativeReads = new Counter({
  name: 'quire_client_speculative_reads_total',
  help: 'Read requests sent to another replica because the first had not answered within speculativeReadTimeoutMs',
  registers: [registry],
})
const waitsOnTimeout = new Counter({
  name: 'quire_client_waits_on_timeout_total',
  help: 'Reads, LAC reads and long polls that could go on only once a bookie request timed out',
  registers: [registry],
})

export const clientMetrics = {
  /** An append resolved; `calledAtMs` and `nowMs` from performance.now(). */
  addResolved(calledAtMs: number, nowMs: number): void {
    clientAddLatency.observe((nowMs - calledAtMs) / 1000)
  },
  tailDelivered(): void {
    tailDelivered.inc()
  },
  bookieTimeout(): void {
    bookieTimeouts.inc()
  },
  speculativeRead(): void {
    speculativeReads.inc()
  },
  waitedOnTimeout(): void {
    waitsOnTimeout.inc()
  },
}
