// Auto-recovery records in KV (PROTOCOL.md "Auto-recovery"), under `autorecovery.` in the
// cluster bucket (quire_cluster, MetadataStore.clusterKv), next to the ledger id counter:
//   autorecovery.auditor          the auditor's lease {holder, expiresAt, acquiredAt}
//   autorecovery.claim.<ledgerId>  a replication worker's claim on a ledger (a lease too)
//   autorecovery.ur.<ledgerId>     an under-replicated mark {missing, damaged, markedAt, ...}
//   autorecovery.enabled           {enabled, changedAt, by}; absent means enabled
// NATS 2.9 KV has no per-key TTL, so leases carry their expiry as a timestamp and every change
// is a CAS on the key's revision (machines/auditor.ts leaseDecision says who may take what).
// Deleting has no CAS: a release or a clear re-reads the key first and deletes only what it read
// (holder and revision unchanged). A mark merged in the instant between that read and the delete
// is lost, and the auditor's next periodic audit marks the ledger again.
// Those re-reads are current: reads of the KV are the stream leader's (storage/kv.ts), so they see
// every acknowledged write, ours or another node's; a lease or mark just written is never read
// back as older (which would make a release or a clear skip, or delete what it should not).

import { QuireError } from '../machines/errors.ts'
import { leaseDecision, leaseValid, type Lease, type LeaseDecision } from '../machines/auditor.ts'
import type { Versioned } from './metadataStore.ts'
import { KvConflict, type VersionedKv } from './types.ts'

export interface UnderReplicatedMark {
  ledgerId: number
  missing: string[]
  damaged: string[]
  /** First marked (the grace period for open ledgers counts from here). */
  markedAt: number
  updatedAt: number
  by: string
}

export interface AutorecoveryFlag {
  enabled: boolean
  changedAt: number
  by: string
}

export type AcquireResult =
  | { acquired: true; revision: number; lease: Lease; decision: LeaseDecision }
  | { acquired: false; current: Lease }

const PREFIX = 'autorecovery.'
export const AUDITOR_KEY = `${PREFIX}auditor`
const ENABLED_KEY = `${PREFIX}enabled`
const MARK_PREFIX = `${PREFIX}ur.`
const CLAIM_PREFIX = `${PREFIX}claim.`
export const claimKey = (ledgerId: number): string => `${CLAIM_PREFIX}${ledgerId}`
const markKey = (ledgerId: number): string => `${MARK_PREFIX}${ledgerId}`

/** Bound on CAS retries against concurrent writers of one key. */
const CAS_ATTEMPTS_MAX = 20

const enc = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v))
const dec = <T>(b: Uint8Array): T => JSON.parse(Buffer.from(b).toString('utf8')) as T

export class AutorecoveryStore {
  constructor(
    private readonly kv: VersionedKv,
    private readonly now: () => number = Date.now,
  ) {}

  // --- leases (auditor election, replication claims) ---

  async readLease(key: string): Promise<Versioned<Lease> | null> {
    const got = await this.kv.get(key)
    return got ? { value: dec<Lease>(got.value), revision: got.revision } : null
  }

  /** Create the lease, take over an expired or released one, or renew our own. One CAS, no retry. */
  async acquireLease(key: string, holder: string, leaseMs: number, clockSkewMarginMs: number): Promise<AcquireResult> {
    const cur = await this.readLease(key)
    const now = this.now()
    const decision = leaseDecision(cur?.value ?? null, holder, now, clockSkewMarginMs)
    if (decision.kind === 'held') return { acquired: false, current: cur!.value }
    const lease: Lease = { holder, expiresAt: now + leaseMs, acquiredAt: decision.kind === 'renew' ? cur!.value.acquiredAt : now }
    try {
      const revision = cur === null ? await this.kv.create(key, enc(lease)) : await this.kv.update(key, enc(lease), cur.revision)
      return { acquired: true, revision, lease, decision }
    } catch (err) {
      if (!(err instanceof KvConflict)) throw err
      const winner = await this.readLease(key)
      return { acquired: false, current: winner?.value ?? { holder: '', expiresAt: 0, acquiredAt: 0 } }
    }
  }

  /** Extend a lease we hold at `revision`; KvConflict means it is no longer ours. */
  async renewLease(key: string, lease: Lease, revision: number, leaseMs: number): Promise<{ revision: number; lease: Lease }> {
    const next: Lease = { ...lease, expiresAt: this.now() + leaseMs }
    return { revision: await this.kv.update(key, enc(next), revision), lease: next }
  }

  /**
   * Give a lease up, if still ours and still valid (past that, someone may be taking it over, and
   * a delete could remove their new lease): then it simply expires.
   */
  async releaseLease(key: string, holder: string, revision: number, clockSkewMarginMs: number): Promise<boolean> {
    const cur = await this.readLease(key)
    if (!cur || cur.revision !== revision || cur.value.holder !== holder) return false
    if (!leaseValid(cur.value.expiresAt, this.now(), clockSkewMarginMs)) return false
    await this.kv.delete(key)
    return true
  }

  // --- under-replicated marks ---

  /** Mark (or add to the mark of) a ledger; 'unchanged' when it already names those bookies. */
  async mark(ledgerId: number, what: { missing?: string[]; damaged?: string[] }, by: string): Promise<'created' | 'merged' | 'unchanged'> {
    const missing = [...new Set(what.missing ?? [])]
    const damaged = [...new Set(what.damaged ?? [])]
    for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt++) {
      const cur = await this.readMark(ledgerId)
      const now = this.now()
      try {
        if (!cur) {
          const m: UnderReplicatedMark = { ledgerId, missing: missing.sort(), damaged: damaged.sort(), markedAt: now, updatedAt: now, by }
          await this.kv.create(markKey(ledgerId), enc(m))
          return 'created'
        }
        const m = cur.value
        const addMissing = missing.filter((b) => !m.missing.includes(b))
        const addDamaged = damaged.filter((b) => !m.damaged.includes(b))
        if (addMissing.length === 0 && addDamaged.length === 0) return 'unchanged'
        const next: UnderReplicatedMark = {
          ...m, missing: [...m.missing, ...addMissing].sort(), damaged: [...m.damaged, ...addDamaged].sort(), updatedAt: now, by,
        }
        await this.kv.update(markKey(ledgerId), enc(next), cur.revision)
        return 'merged'
      } catch (err) {
        if (!(err instanceof KvConflict)) throw err
      }
    }
    throw new QuireError('METADATA_CONFLICT', `could not mark ledger ${ledgerId} under-replicated: too many concurrent updates`, { ledgerId })
  }

  async readMark(ledgerId: number): Promise<Versioned<UnderReplicatedMark> | null> {
    const got = await this.kv.get(markKey(ledgerId))
    return got ? { value: dec<UnderReplicatedMark>(got.value), revision: got.revision } : null
  }

  /** Marks, by ascending ledger id; at most `limit`. */
  async listMarks(limit = Number.MAX_SAFE_INTEGER): Promise<Versioned<UnderReplicatedMark>[]> {
    const ids: number[] = []
    for await (const k of this.kv.keys(MARK_PREFIX)) {
      const id = Number(k.slice(MARK_PREFIX.length))
      if (Number.isSafeInteger(id)) ids.push(id)
    }
    ids.sort((a, b) => a - b)
    const out: Versioned<UnderReplicatedMark>[] = []
    for (const id of ids) {
      if (out.length >= limit) break
      const m = await this.readMark(id)
      if (m) out.push(m)
    }
    return out
  }

  /** Remove the mark if it is still at `revision` (nothing was added since it was planned). */
  async clearMark(ledgerId: number, revision: number): Promise<boolean> {
    const cur = await this.readMark(ledgerId)
    if (!cur || cur.revision !== revision) return false
    await this.kv.delete(markKey(ledgerId))
    return true
  }

  // --- the enabled flag ---

  async readFlag(): Promise<AutorecoveryFlag> {
    const got = await this.kv.get(ENABLED_KEY)
    return got ? dec<AutorecoveryFlag>(got.value) : { enabled: true, changedAt: 0, by: '' }
  }

  async isEnabled(): Promise<boolean> {
    return (await this.readFlag()).enabled
  }

  async setEnabled(enabled: boolean, by: string): Promise<void> {
    await this.kv.put(ENABLED_KEY, enc({ enabled, changedAt: this.now(), by } satisfies AutorecoveryFlag))
  }
}
