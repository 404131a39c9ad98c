// Disk usage of a bookie's data directory, checked every diskCheckIntervalMs (PROTOCOL.md "Disk
// nearly full"). Usage is the filesystem's (fs.statfs: used / (used + available to us)) or, when
// diskQuotaBytes > 0, the bytes of the files under the data directory divided by the quota (a
// bookie sharing a disk, and tests with a small quota).
//
// Hysteresis: above diskUsageThreshold the disk is full (the bookie turns read-only); it is ok
// again only below diskUsageLwmThreshold, so a bookie near the line does not flap. A write that
// failed with ENOSPC makes it full whatever the measure says; it turns ok at a later check below
// the low-water mark, and only if `prepareOk` (which reopens a failed journal) succeeds: a bookie is
// never left writable over a journal that cannot take records, nor read-only for good.

import { measureDiskUsage, type DiskUsage } from '../storage/bookieDisk.ts'
import { every, realClock, type Clock } from '../transport/clock.ts'
import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { QuireError } from '../machines/errors.ts'

export { directoryBytes, measureDiskUsage, type DiskUsage } from '../storage/bookieDisk.ts'

export interface DiskOptions {
  /** Default 10000. */
  diskCheckIntervalMs?: number
  /** Default 0: measure the filesystem. */
  diskQuotaBytes?: number
  /** Default 0.95. */
  diskUsageThreshold?: number
  /** Default 0.90. */
  diskUsageLwmThreshold?: number
}

export const DISK_DEFAULTS = {
  diskCheckIntervalMs: ROLE_DEFAULTS.diskCheckIntervalMs,
  diskQuotaBytes: ROLE_DEFAULTS.diskQuotaBytes,
  diskUsageThreshold: ROLE_DEFAULTS.diskUsageThreshold,
  diskUsageLwmThreshold: ROLE_DEFAULTS.diskUsageLwmThreshold,
} as const

export function diskOptions(o: DiskOptions): Required<DiskOptions> {
  const r = {
    diskCheckIntervalMs: o.diskCheckIntervalMs ?? DISK_DEFAULTS.diskCheckIntervalMs,
    diskQuotaBytes: o.diskQuotaBytes ?? DISK_DEFAULTS.diskQuotaBytes,
    diskUsageThreshold: o.diskUsageThreshold ?? DISK_DEFAULTS.diskUsageThreshold,
    diskUsageLwmThreshold: o.diskUsageLwmThreshold ?? DISK_DEFAULTS.diskUsageLwmThreshold,
  }
  const ok = Number.isFinite(r.diskCheckIntervalMs) && r.diskCheckIntervalMs > 0 &&
    Number.isSafeInteger(r.diskQuotaBytes) && r.diskQuotaBytes >= 0 &&
    r.diskUsageThreshold > 0 && r.diskUsageThreshold <= 1 &&
    r.diskUsageLwmThreshold > 0 && r.diskUsageLwmThreshold <= r.diskUsageThreshold
  if (!ok) {
    throw new QuireError('INVALID_CONFIG', 'disk settings out of range: need diskCheckIntervalMs > 0, diskQuotaBytes >= 0, ' +
      `0 < diskUsageLwmThreshold <= diskUsageThreshold <= 1; got ${JSON.stringify(r)}`, r)
  }
  return r
}

/** Pure hysteresis: the transition a measured usage calls for, or null to stay. */
export function diskTransition(full: boolean, usage: number, o: Required<DiskOptions>): 'full' | 'ok' | null {
  if (!full && usage > o.diskUsageThreshold) return 'full'
  if (full && usage < o.diskUsageLwmThreshold) return 'ok'
  return null
}

/** True when `err` (or an error in its cause chain) is a full disk. */
export function isDiskFullError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOSPC' || code === 'EDQUOT' || /\bENOSPC\b|No space left on device/i.test(e.message)) return true
  }
  return false
}

export interface DiskMonitorHooks {
  /** The disk became full: turn read-only (and collect garbage). */
  onFull(reason: string, usage: DiskUsage | null): void
  /** Usage fell below the low-water mark: get ready to take writes; false (or a throw) stays read-only. */
  prepareOk(usage: DiskUsage): Promise<boolean>
  /** Ready: turn writable. */
  onOk(usage: DiskUsage): void
  log?: (msg: string, fields?: Record<string, unknown>) => void
  /** The checks' timer; default the real clock. */
  clock?: Clock
}

/** Where the usage comes from: a data folder (the filesystem, or the bytes under it), or a disk's own measure. */
export type UsageSource = string | ((quotaBytes: number) => Promise<DiskUsage>)

export class DiskMonitor {
  private stopTimer: (() => void) | null = null
  private readonly measure: (quotaBytes: number) => Promise<DiskUsage>
  private checking: Promise<void> | null = null
  private isFull = false
  readonly options: Required<DiskOptions>
  /** The last measure, for logs and tests. */
  last: DiskUsage | null = null

  constructor(source: UsageSource, opts: DiskOptions, private readonly hooks: DiskMonitorHooks) {
    this.options = diskOptions(opts)
    this.measure = typeof source === 'string' ? (quota) => measureDiskUsage(source, quota) : source
  }

  get full(): boolean {
    return this.isFull
  }

  start(): void {
    if (this.stopTimer !== null) return
    this.stopTimer = every(this.hooks.clock ?? realClock, this.options.diskCheckIntervalMs, () => { void this.check() })
  }

  stop(): void {
    this.stopTimer?.()
    this.stopTimer = null
  }

  /** Measure once and act on it; checks never overlap. Never rejects. */
  check(): Promise<void> {
    this.checking ??= this.checkOnce().finally(() => { this.checking = null })
    return this.checking
  }

  /** A write failed: if the disk is full, turn read-only now (true); other errors are not ours (false). */
  writeFailed(err: unknown): boolean {
    if (!isDiskFullError(err)) return false
    if (!this.isFull) {
      this.isFull = true
      this.hooks.log?.('disk full: a write failed with ENOSPC', { error: err instanceof Error ? err.message : String(err) })
      this.hooks.onFull('ENOSPC', this.last)
    }
    return true
  }

  private async checkOnce(): Promise<void> {
    const log = this.hooks.log ?? (() => {})
    let u: DiskUsage
    try {
      u = await this.measure(this.options.diskQuotaBytes)
    } catch (err) {
      log('disk check failed', { error: err instanceof Error ? err.message : String(err) })
      return
    }
    this.last = u
    const next = diskTransition(this.isFull, u.usage, this.options)
    if (next === 'full') {
      this.isFull = true
      log('disk full: turning read-only', { ...u })
      this.hooks.onFull('usage', u)
    } else if (next === 'ok') {
      const ok = await this.hooks.prepareOk(u).catch((err: unknown) => {
        log('disk ok, but the bookie cannot turn writable yet', { error: err instanceof Error ? err.message : String(err) })
        return false
      })
      if (ok) {
        // Synchronously with onOk: a write failing from here on finds the disk ok and flips it back.
        this.isFull = false
        log('disk ok: writable again', { ...u })
        this.hooks.onOk(u)
      }
    }
  }
}
