// The defaults of the node roles' options, defined once: each role (actors/, storage/journal.ts)
// takes them when an option is not given, and the settings table (cli/settings.ts) shows and
// documents the same values (test/integration/settings.test.ts holds the two together). Plain data with no
// imports: the settings table loads it for `--help`, which must stay light.

export const ROLE_DEFAULTS = {
  heartbeatMs: 1000,
  journalGroupWaitMs: 0,
  journalGroupBytes: 512 * 1024,
  checkpointMs: 30_000,
  /** 5 MiB of payload, plus the entry's header and digest. */
  maxEntryBytes: 5 * 1024 * 1024 + 1024,
  diskUsageThreshold: 0.95,
  diskUsageLwmThreshold: 0.9,
  diskCheckIntervalMs: 10_000,
  diskQuotaBytes: 0,
  gcIntervalMs: 60_000,
  minorCompactionThreshold: 0.2,
  majorCompactionThreshold: 0.8,
  majorCompactionIntervalMs: 86_400_000,
  lostBookieRecoveryDelayMs: 30_000,
  auditorLeaseMs: 10_000,
  auditIntervalMs: 60_000,
  replicationGraceMs: 10_000,
  claimLeaseMs: 30_000,
} as const
