// Copying entries for a replication worker (actors/replicator.ts): which entries a bookie lacks,
// each entry's encoded bytes from another live replica of its write set (digest verified, the
// next replica on an error, a timeout or a corrupt copy: never read as "absent"), and recovery
// adds of those bytes to the target bookie, resolved once it acknowledged all of them.

import type { BookieTransport } from '../client/bookieClient.ts'
import { QuireError } from '../machines/errors.ts'
import { otherReplicas } from '../machines/replicator.ts'
import type { LedgerMetadata, Segment } from '../storage/metadataStore.ts'
import { decodeEntry } from '../transport/entry.ts'
import type { Clock } from '../transport/clock.ts'
import { RC } from '../transport/wire.ts'

export interface CopyIo {
  bookies: BookieTransport
  readTimeoutMs: number
  addTimeoutMs: number
  clock: Clock
}

const READ_REPLY_BYTES = 4 * 1024 * 1024

/** Of `ids`, those `bookieId` does not hold intact (an unknown answer counts as lacking: re-adding is harmless). */
export async function lackingEntries(io: CopyIo, bookieId: string, md: LedgerMetadata, ids: number[], masterKey: Buffer): Promise<number[]> {
  const r = await io.bookies.read(bookieId, md.ledgerId, ids, READ_REPLY_BYTES, io.readTimeoutMs, undefined, masterKey).catch(() => null)
  if (!r || r.rc !== RC.OK) return ids
  const present = new Set<number>()
  r.entries.forEach(([rc, data], k) => {
    const id = ids[k]!
    if (rc !== RC.OK || !data) return
    try {
      decodeEntry(md.digestType, masterKey, data, { ledgerId: md.ledgerId, entryId: id })
      present.add(id)
    } catch {
      // A corrupt copy is rewritten.
    }
  })
  return ids.filter((id) => !present.has(id))
}

/**
 * Each entry's encoded bytes from another bookie of its write set that is alive, digest
 * verified; a bookie that errs, times out or returns a corrupt copy is skipped for the next.
 */
export async function readFromReplicas(
  io: CopyIo, md: LedgerMetadata, seg: Segment, position: number, ids: number[], alive: ReadonlySet<string>, masterKey: Buffer,
): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>()
  const sources = new Map(ids.map((id) => [id, otherReplicas(id, position, seg.ensemble, md.writeQuorum).filter((b) => alive.has(b))]))
  const attempt = new Map(ids.map((id) => [id, 0]))
  // Each round either finishes entries or moves them to their next source; replies carry at
  // least one entry, so the bound is generous.
  for (let round = 0; round < ids.length * (md.writeQuorum + 1) + 4; round++) {
    const byBookie = new Map<string, number[]>()
    for (const id of ids) {
      if (out.has(id)) continue
      const b = sources.get(id)![attempt.get(id)!]
      if (b === undefined) {
        throw new QuireError('BOOKIE_UNAVAILABLE', `entry ${id} of ledger ${md.ledgerId}: no surviving replica returned an intact copy`, {
          ledgerId: md.ledgerId, entryId: id, sources: sources.get(id),
        })
      }
      let list = byBookie.get(b)
      if (!list) byBookie.set(b, (list = []))
      list.push(id)
    }
    if (byBookie.size === 0) return out
    await Promise.all([...byBookie].map(async ([b, list]) => {
      const next = (id: number): void => { attempt.set(id, attempt.get(id)! + 1) }
      const r = await io.bookies.read(b, md.ledgerId, list, READ_REPLY_BYTES, io.readTimeoutMs, undefined, masterKey).catch(() => null)
      if (!r || r.rc !== RC.OK) return list.forEach(next)
      r.entries.forEach(([rc, data], k) => {
        const id = list[k]!
        if (rc !== RC.OK || !data) return next(id)
        try {
          decodeEntry(md.digestType, masterKey, data, { ledgerId: md.ledgerId, entryId: id })
          out.set(id, data)
        } catch {
          next(id)
        }
      })
    }))
  }
  throw new QuireError('BOOKIE_UNAVAILABLE', `ledger ${md.ledgerId}: reading ${ids.length} entries from surviving replicas did not finish`, { ledgerId: md.ledgerId })
}

/** Recovery adds of `ids` to `target`; resolves once it acknowledged every one (journal synced). */
export function addEntries(io: CopyIo, target: string, md: LedgerMetadata, masterKey: Buffer, ids: number[], data: Map<number, Uint8Array>): Promise<void> {
  return new Promise((resolve, reject) => {
    const pending = new Set(ids)
    let unregister: () => void = () => {}
    const timer = io.clock.setTimeout(() => {
      unregister()
      reject(new QuireError('TIMEOUT', `bookie ${target} did not acknowledge ${pending.size} copied entries of ledger ${md.ledgerId} within ${io.addTimeoutMs} ms`, {
        ledgerId: md.ledgerId, bookieId: target,
      }))
    }, io.addTimeoutMs)
    unregister = io.bookies.registerWriter(md.ledgerId, (bookieId, rc, acked) => {
      if (bookieId !== target) return
      for (const id of acked) {
        if (!pending.has(id)) continue
        if (rc !== RC.OK) {
          io.clock.clearTimeout(timer)
          unregister()
          const code = rc === RC.UNAUTHORIZED ? 'UNAUTHORIZED' : 'BOOKIE_UNAVAILABLE'
          return reject(new QuireError(code, `bookie ${target} refused copied entry ${id} of ledger ${md.ledgerId} (rc ${rc})`, { ledgerId: md.ledgerId, bookieId: target }))
        }
        pending.delete(id)
      }
      if (pending.size === 0) {
        io.clock.clearTimeout(timer)
        unregister()
        resolve()
      }
    })
    for (const id of ids) io.bookies.queueAdd(target, md.ledgerId, masterKey, md.digestType, true, data.get(id)!)
  })
}
