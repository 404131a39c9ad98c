// Retention of named logs (docs/logs.md): whole segments closed longer ago than a log's
// retentionMs, or the oldest while it holds more than retentionBytes (machines/logRules.ts
// retentionDue), are truncated without an operator. The elected auditor runs it at the end of each
// audit, so one node runs it at a time; and a truncation is a compare-and-swap of the log's record
// that chooses again after a conflict (client/logs.ts truncateLog), so two runners (an auditor
// whose lease lapsed mid-pass, an operator's truncate) never remove a segment twice.

import { truncateLog } from '../client/logs.ts'
import { isQuireError } from '../machines/errors.ts'
import { retentionDue } from '../machines/logRules.ts'
import type { LogStore } from '../storage/logStore.ts'

export interface RetentionResult {
  log: string
  segments: number[]
}

/** Apply every log's retention now; stops between logs once `leading()` is false. */
export async function applyRetention(store: LogStore, deleteLedger: (ledgerId: number) => Promise<void>, now: () => number, leading: () => boolean): Promise<RetentionResult[]> {
  const out: RetentionResult[] = []
  for await (const name of store.list()) {
    if (!leading()) break
    const segments = await truncateLog(store, deleteLedger, name, (md) => retentionDue(md, now())).catch((err: unknown) => {
      if (isQuireError(err, 'NO_SUCH_LOG')) return [] // deleted since the listing
      throw err
    })
    if (segments.length > 0) out.push({ log: name, segments })
  }
  return out
}
