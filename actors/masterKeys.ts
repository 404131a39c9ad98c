// Master keys for replication workers: a bookie answers, on its own admin subject, the master key it
// holds for a ledger, so that autorecovery re-replicates a ledger whatever its password, with no
// password configured anywhere. The subject is separate from the bookie's request subject
// precisely so that NATS permissions can let the replicator role, and no other, publish on it
// (docs/security.md); ordinary clients then never see a ledger's master key they were not given.
// Invariants: the answer is the bookie's stored key, or `NO_SUCH_LEDGER` / `BAD_REQUEST`, never a
// guess; the asker trusts a key only if it matches the ledger metadata's password check value,
// so a bookie (or anyone answering as one) cannot make a worker write with a wrong key; a
// malformed request is answered BAD_REQUEST and the bookie goes on serving.

import type { NatsConnection } from '@nats-io/transport-node'
import type { Network, NetworkSubscription } from '../transport/network.ts'
import { passwordCheckOf, type DigestType } from '../transport/entry.ts'

/** Where a replication worker asks bookie `bookieId` for a ledger's master key. */
export const masterKeySubject = (bookieId: string): string => `quire.bookieadmin.${bookieId}.masterkey`

/** The bookie's side: what it holds of a ledger. */
export interface MasterKeyDeps {
  /** The ledger's master key and digest type as this bookie stored them; null when it knows nothing of it. */
  ledgerKey(ledgerId: number): Promise<{ masterKey: Uint8Array; digestType: DigestType } | null>
}

interface MasterKeyAnswer {
  masterKey?: string
  digestType?: DigestType
  error?: 'NO_SUCH_LEDGER' | 'BAD_REQUEST' | 'ERROR'
}

/** Answers master-key requests on the bookie's admin subject until stopped. */
export function serveMasterKeys(network: Network, bookieId: string, deps: MasterKeyDeps): NetworkSubscription {
  return network.subscribe(masterKeySubject(bookieId), (data, replyTo) => { if (replyTo !== null) void answer(network, data, replyTo, deps) })
}

async function answer(network: Network, data: Uint8Array, replyTo: string, deps: MasterKeyDeps): Promise<void> {
  let reply: MasterKeyAnswer
  const ledgerId = requestedLedger(data)
  if (ledgerId === null) reply = { error: 'BAD_REQUEST' }
  else {
    try {
      const held = await deps.ledgerKey(ledgerId)
      reply = held === null ? { error: 'NO_SUCH_LEDGER' } : { masterKey: Buffer.from(held.masterKey).toString('base64'), digestType: held.digestType }
    } catch {
      reply = { error: 'ERROR' }
    }
  }
  // Never throws: an asker that gave up simply gets nothing.
  network.publish(replyTo, Buffer.from(JSON.stringify(reply)))
}

/** `{"ledgerId": n}` with n a non-negative safe integer, else null. */
function requestedLedger(data: Uint8Array): number | null {
  if (data.byteLength > 256) return null
  try {
    const v = (JSON.parse(Buffer.from(data).toString('utf8')) as { ledgerId?: unknown } | null)?.ledgerId
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null
  } catch {
    return null
  }
}

/**
 * The worker's side: asks `bookies` in turn for the master key of `ledgerId` and returns the first
 * that matches `passwordCheck`; null when none answers with one (dead, unknown, refused by NATS).
 */
export async function fetchMasterKey(nc: NatsConnection, ledgerId: number, passwordCheck: string, bookies: readonly string[], timeoutMs: number): Promise<Buffer | null> {
  const request = Buffer.from(JSON.stringify({ ledgerId }))
  for (const b of bookies) {
    try {
      const msg = await nc.request(masterKeySubject(b), request, { timeout: timeoutMs })
      const a = JSON.parse(Buffer.from(msg.data).toString('utf8')) as MasterKeyAnswer
      if (typeof a.masterKey !== 'string') continue
      const key = Buffer.from(a.masterKey, 'base64')
      if (passwordCheckOf(key) === passwordCheck) return key
    } catch {
      // No answer, or not one of ours: ask the next bookie.
    }
  }
  return null
}
