// Auto-recovery commands of `quire shell` (PROTOCOL.md "Auto-recovery"), after BookKeeper's:
// - listunderreplicated: the marks, with their missing/damaged bookies and who has claimed them;
// - whoisauditor: the holder of the auditor lease, and whether it is still valid;
// - triggeraudit: asks the auditor (over NATS) for an audit now, and prints its summary;
// - autorecovery [--enable|--disable]: the cluster-wide switch, or its state;
// - recover <bookieId> (through `recover` in cli/shell.ts) and decommissionbookie <bookieId>:
//   re-replicate everything the bookie held, now, in this process (a replication worker limited
//   to its ledgers, claims and all, so it never races the cluster's workers), with a progress
//   line; decommission then removes the bookie's registration. Both refuse a bookie that is alive,
//   and fail at once with NOT_ENOUGH_BOOKIES when a segment holding it has no live, writable
//   bookie outside it to take its place (checked before starting, and again whenever an attempt
//   fails), rather than waiting for --timeout-s.
// The ledgers are marked first: if this command dies, the cluster's workers finish the job.

import os from 'node:os'
import { errors, type NatsConnection } from '@nats-io/transport-node'
import { TRIGGER_AUDIT_SUBJECT, type AuditSummary } from '../actors/auditor.ts'
import { startReplicator } from '../actors/replicator.ts'
import { QuireError, isQuireError } from '../machines/errors.ts'
import { AUDITOR_KEY, AutorecoveryStore, claimKey } from '../storage/autorecoveryStore.ts'
import {
  MISSED_HEARTBEATS_DEAD, isBookieAlive, pickBookies, type BookieRecord, type LedgerMetadata, type MetadataStore,
} from '../storage/metadataStore.ts'
import { openMetadata } from '../storage/openMetadata.ts'
import { connectNats } from '../transport/nats.ts'
import { natsTargetOf, type NatsCommandOptions, type NatsTarget } from './natsSettings.ts'
import { ledgerPasswords, type PasswordOptions } from './shellPasswords.ts'

interface Parts { nc: NatsConnection; metadata: MetadataStore; store: AutorecoveryStore }

async function withParts<T>({ servers, auth }: NatsTarget, fn: (p: Parts) => Promise<T>): Promise<T> {
  const nc = await connectNats(servers, { name: 'quire-shell', auth })
  try {
    const metadata = await openMetadata(nc)
    return await fn({ nc, metadata, store: new AutorecoveryStore(metadata.clusterKv) })
  } finally {
    await nc.close().catch(() => {})
  }
}

const ago = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
const shellId = (): string => `shell-${os.hostname()}-${process.pid}`

function intOpt(name: string, v: string, min: number): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min) throw new QuireError('INVALID_CONFIG', `${name} must be an integer >= ${min}, got ${v}`)
  return n
}

/** A one-line progress display: redrawn in place on a terminal, a line per change otherwise. */
export class ProgressLine {
  private last = ''
  private lastDone = -1
  private readonly tty: boolean

  constructor(private readonly label: string, private readonly total: number, private readonly out: NodeJS.WriteStream = process.stdout) {
    this.tty = out.isTTY === true
  }

  update(done: number, note = ''): void {
    const width = 30
    const filled = this.total === 0 ? width : Math.round((width * done) / this.total)
    const line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.total} ledgers${note ? `  ${note}` : ''}`
    if (this.tty) {
      this.out.write(`\r${line.padEnd(this.last.length)}`)
      this.last = line
    } else if (done !== this.lastDone) {
      this.out.write(`${line}\n`)
    }
    this.lastDone = done
  }

  finish(): void {
    if (this.tty && this.last !== '') this.out.write('\n')
  }
}

export interface RereplicateOptions {
  passwords: string[]
  /** Open ledgers using the bookie in their last segment are fenced after this; default 0 (now). */
  graceMs: number
  timeoutMs: number
  decommission: boolean
}

/** `recover <bookieId>` and `decommissionbookie <bookieId>`. */
export async function rereplicateBookie(nats: NatsTarget, bookieId: string, opts: RereplicateOptions): Promise<void> {
  await withParts(nats, async ({ nc, metadata, store }) => {
    const started = Date.now()
    const rec = await stoppedBookie(metadata, bookieId)
    const verb = opts.decommission ? 'decommission' : 'recover'
    let targets = await ledgersOn(metadata, bookieId)
    const total = targets.size
    await assertReplaceable(metadata, bookieId, targets)
    const by = shellId()
    for (const id of targets) await store.mark(id, { missing: [bookieId] }, by)
    const progress = new ProgressLine(`${verb} ${bookieId}`, total)
    let lastError = ''
    const worker = await startReplicator({
      nc, metadata, store, nodeId: by, only: (id) => targets.has(id), ignoreDisabled: true,
      replicationGraceMs: opts.graceMs, pollMs: 200, passwords: opts.passwords,
      log: (msg, fields) => { if (/failed/.test(msg)) lastError = `${msg}: ${String(fields?.error ?? '')}` },
    })
    try {
      const deadline = started + opts.timeoutMs
      let failuresSeen = 0
      for (let verified = 0; ;) {
        const marked = (await store.listMarks()).map((m) => m.value.ledgerId).filter((id) => targets.has(id))
        const remaining = marked.length
        progress.update(total - Math.min(total, remaining), worker.stats.failures > 0 ? `(${worker.stats.failures} attempt(s) failed, retrying)` : '')
        // A bookie that died meanwhile can leave a ledger with nowhere to go: retrying would not help.
        if (worker.stats.failures > failuresSeen) {
          failuresSeen = worker.stats.failures
          await assertReplaceable(metadata, bookieId, marked)
        }
        if (remaining === 0) {
          // A mark could be lost in a race with a clear (see storage/autorecoveryStore.ts): check the
          // ledgers themselves, and mark again what still names the bookie.
          const left = await ledgersOn(metadata, bookieId)
          if (left.size === 0) break
          if (++verified > 3) throw new QuireError('METADATA_CONFLICT', `${left.size} ledger(s) still use ${bookieId} after re-replication`, { bookieId })
          for (const id of left) await store.mark(id, { missing: [bookieId] }, by)
          targets = new Set([...targets, ...left])
        }
        if (Date.now() > deadline) {
          throw new QuireError('TIMEOUT', `${remaining} of ${total} ledger(s) still to re-replicate after ${opts.timeoutMs} ms${lastError ? `; last error: ${lastError}` : ''}`, { bookieId })
        }
        await new Promise((r) => setTimeout(r, 250))
      }
    } finally {
      progress.finish()
      await worker.stop()
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1)
    if (opts.decommission) {
      if (rec) await metadata.removeBookie(bookieId)
      console.log(`bookie ${bookieId} decommissioned: ${total} ledger(s) re-replicated in ${seconds} s, registration removed`)
    } else {
      console.log(`bookie ${bookieId} recovered: ${total} ledger(s) re-replicated in ${seconds} s`)
    }
  })
}

/**
 * The bookie's registration (undefined when it has none), once it counts as dead. A bookie killed
 * a moment ago still counts as alive until it has missed 5 heartbeats: when it has missed some
 * already, wait that out; one that is beating is refused with BOOKIE_RUNNING.
 */
async function stoppedBookie(metadata: MetadataStore, bookieId: string): Promise<BookieRecord | undefined> {
  const find = async (): Promise<BookieRecord | undefined> => (await metadata.listBookies()).find((b) => b.bookieId === bookieId)
  let rec = await find()
  if (rec && isBookieAlive(rec, Date.now()) && Date.now() - rec.heartbeatAt > 2 * rec.heartbeatMs) {
    const deadline = rec.heartbeatAt + (MISSED_HEARTBEATS_DEAD + 1) * rec.heartbeatMs
    while (rec && isBookieAlive(rec, Date.now()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(250, rec!.heartbeatMs)))
      rec = await find()
    }
  }
  if (rec && isBookieAlive(rec, Date.now())) {
    throw new QuireError('BOOKIE_RUNNING', `bookie ${bookieId} is alive (heartbeat ${Date.now() - rec.heartbeatAt} ms ago); stop it first`, { bookieId })
  }
  return rec
}

/** Ledgers with a segment on `bookieId`. */
async function ledgersOn(metadata: MetadataStore, bookieId: string): Promise<Set<number>> {
  const out = new Set<number>()
  for await (const id of metadata.listLedgers()) {
    const md = await readIfExists(metadata, id)
    if (md?.segments.some((s) => s.ensemble.includes(bookieId))) out.add(id)
  }
  return out
}

async function readIfExists(metadata: MetadataStore, ledgerId: number): Promise<LedgerMetadata | null> {
  try {
    return (await metadata.readLedger(ledgerId)).value
  } catch (err) {
    if (isQuireError(err, 'NO_SUCH_LEDGER')) return null
    throw err
  }
}

/**
 * NOT_ENOUGH_BOOKIES unless every segment of `ledgerIds` that holds `bookieId` has a live,
 * writable bookie outside it: the one the replication worker's placement (pickBookies, which
 * never picks a bookie already in the segment) would copy it to, or a recovery write-back would
 * replace it with. Without one, re-replication could only retry until --timeout-s.
 */
async function assertReplaceable(metadata: MetadataStore, bookieId: string, ledgerIds: Iterable<number>): Promise<void> {
  const bookies = await metadata.listBookies()
  const stuck: number[] = []
  for (const id of ledgerIds) {
    const md = await readIfExists(metadata, id)
    const held = md?.segments.filter((s) => s.ensemble.includes(bookieId)) ?? []
    const now = Date.now()
    for (const seg of held) {
      try {
        pickBookies(bookies, 1, now, Math.random, seg.ensemble)
      } catch (err) {
        if (!isQuireError(err, 'NOT_ENOUGH_BOOKIES')) throw err
        stuck.push(id)
        break
      }
    }
  }
  if (stuck.length === 0) return
  const live = bookies.filter((b) => b.state === 'writable' && isBookieAlive(b, Date.now())).map((b) => b.bookieId)
  const shown = stuck.slice(0, 20).join(', ') + (stuck.length > 20 ? ', ...' : '')
  throw new QuireError('NOT_ENOUGH_BOOKIES',
    `no live, writable bookie outside the ensemble can replace ${bookieId} in ${stuck.length} ledger(s): ${shown} ` +
    `(live writable bookies: ${live.join(', ') || 'none'}); start or add a bookie, then run this again`,
    { bookieId, ledgers: stuck, live })
}

/** Options shared by `recover <bookieId>` (cli/shell.ts) and `decommissionbookie`. */
export function rereplicateOptions(o: PasswordOptions & { graceMs?: string; timeoutS?: string }, decommission: boolean): RereplicateOptions {
  const passwords = ledgerPasswords(o)
  return {
    passwords, decommission,
    graceMs: intOpt('--grace-ms', o.graceMs ?? '0', 0),
    timeoutMs: intOpt('--timeout-s', o.timeoutS ?? '3600', 1) * 1000,
  }
}

// The commands' actions; cli/shell.ts declares the commands and imports this file when one runs.

export const runListUnderReplicated = (o: NatsCommandOptions): Promise<void> => withParts(natsTargetOf(o), async ({ store }) => {
  const marks = await store.listMarks()
  const now = Date.now()
  for (const { value: m } of marks) {
    const claim = await store.readLease(claimKey(m.ledgerId))
    const claimed = claim && claim.value.expiresAt > now ? `claimed by ${claim.value.holder}` : 'unclaimed'
    const what = [m.missing.length ? `missing=${m.missing.join(',')}` : '', m.damaged.length ? `damaged=${m.damaged.join(',')}` : ''].filter(Boolean).join(' ')
    console.log(`${m.ledgerId}\t${what}\tmarked ${ago(now - m.markedAt)} ago by ${m.by}\t${claimed}`)
  }
  if (marks.length === 0) console.log('no under-replicated ledgers')
})

export const runWhoIsAuditor = (o: NatsCommandOptions): Promise<void> => withParts(natsTargetOf(o), async ({ store }) => {
  const lease = await store.readLease(AUDITOR_KEY)
  const now = Date.now()
  if (!lease) console.log('no auditor: none holds the lease')
  else if (lease.value.expiresAt > now) console.log(`auditor: ${lease.value.holder} (lease expires in ${ago(lease.value.expiresAt - now)}, held for ${ago(now - lease.value.acquiredAt)})`)
  else console.log(`no auditor: ${lease.value.holder}'s lease expired ${ago(now - lease.value.expiresAt)} ago`)
})

export const runTriggerAudit = (o: NatsCommandOptions & { timeoutMs: string }): Promise<void> => withParts(natsTargetOf(o), async ({ nc }) => {
  const timeout = intOpt('--timeout-ms', o.timeoutMs, 1)
  let reply: { ok: boolean; reason?: string } & Partial<AuditSummary>
  try {
    const msg = await nc.request(TRIGGER_AUDIT_SUBJECT, new Uint8Array(0), { timeout })
    reply = JSON.parse(Buffer.from(msg.data).toString('utf8')) as typeof reply
  } catch (err) {
    if (err instanceof errors.NoRespondersError || (err instanceof errors.RequestError && err.isNoResponders())) {
      throw new QuireError('NO_AUDITOR', 'no auditor is running (no node holds the auditor lease); nothing audited')
    }
    if (err instanceof errors.TimeoutError) throw new QuireError('TIMEOUT', `the auditor did not finish an audit within ${timeout} ms`)
    throw err
  }
  if (!reply.ok) {
    console.error(`audit not done by ${reply.auditor ?? 'the auditor'}: ${reply.reason ?? 'unknown reason'}`)
    process.exitCode = 1
    return
  }
  console.log(`audit by ${reply.auditor}: ${reply.checked} ledger(s) checked, ${reply.marked} marked under-replicated, ` +
    `${reply.scanned} scanned for missing entries, ${reply.damaged} with missing entries` +
    (reply.unreadable ? `, ${reply.unreadable} unreadable (checked next time)` : '') +
    (reply.truncated ? `, ${reply.truncated} log segment(s) truncated by retention` : ''))
})

export const runAutorecovery = (o: NatsCommandOptions & { enable?: boolean; disable?: boolean }): Promise<void> => withParts(natsTargetOf(o), async ({ store }) => {
  if (o.enable && o.disable) throw new QuireError('INVALID_CONFIG', 'give --enable or --disable, not both')
  if (o.enable || o.disable) await store.setEnabled(o.enable === true, shellId())
  const flag = await store.readFlag()
  const since = flag.changedAt > 0 ? ` (since ${new Date(flag.changedAt).toISOString()}, by ${flag.by})` : ''
  console.log(`autorecovery is ${flag.enabled ? 'enabled' : 'disabled'}${since}`)
})

