// Copying entries for a replication worker (actors/replicator.ts): which entries a bookie lacks,
// each entry's encoded bytes from another live replica of its write set (digest verified; the
// rules of machines/copyRead.ts: the next replica on "no such entry" or a corrupt copy, the same
// or another one again on no answer, a bounded number of times, a timeout never read as
// "absent"), and recovery adds of those bytes to the target bookie, resolved once it acknowledged
// all of them (what is not acknowledged in time is sent again, a bounded number of times). Every
// timer is on the injected clock (the transport's read timeouts on its own), so the simulator
// replays a run exactly.

import type { BookieTransport } from '../client/bookieClient.ts'
import {
  COPY_ADD_RESENDS_MAX, COPY_READ_RETRIES_MAX, copyRead, copyReadFailure, stepCopyRead, type CopyAnswer, type CopyRead, type CopyStep,
} from '../machines/copyRead.ts'
import { QuireError } from '../machines/errors.ts'
import { otherReplicas } from '../machines/replicator.ts'
import { entryAnswer } from '../machines/responses.ts'
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
 * verified (machines/copyRead.ts decides per entry): a replica that says "no such entry" or
 * returns a corrupt copy is dropped for the next; one that does not answer is asked again after
 * the others, a bounded number of times. Asks made together go to a bookie as one read.
 */
export async function readFromReplicas(
  io: CopyIo, md: LedgerMetadata, seg: Segment, position: number, ids: number[], alive: ReadonlySet<string>, masterKey: Buffer,
): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>()
  const sources = new Map(ids.map((id) => [id, otherReplicas(id, position, seg.ensemble, md.writeQuorum).filter((b) => alive.has(b))]))
  const reads = new Map<number, CopyRead>()
  /** The bookie each unfinished entry is to be asked of next, in id order. */
  const asking = new Map<number, string>()
  const apply = (id: number, r: { state: CopyRead; step: CopyStep }): void => {
    reads.set(id, r.state)
    if (r.step.kind === 'fail') {
      throw new QuireError('BOOKIE_UNAVAILABLE', `entry ${id} of ledger ${md.ledgerId}: no surviving replica returned an intact copy (${copyReadFailure(r.state)})`, {
        ledgerId: md.ledgerId, entryId: id, sources: sources.get(id),
      })
    }
    if (r.step.kind === 'ask') asking.set(id, r.step.bookieId)
    else asking.delete(id)
  }
  for (const id of ids) apply(id, copyRead(sources.get(id)!))
  // Each round answers at least one ask of each request (a read that stops short of its bytes
  // answers its first entries; the rest are asked of the same bookie again, not counted), and an
  // entry is asked a bounded number of times, so the bound is generous.
  const roundsMax = ids.length * (md.writeQuorum + COPY_READ_RETRIES_MAX + 1) + 4
  for (let round = 0; round < roundsMax; round++) {
    const byBookie = new Map<string, number[]>()
    for (const [id, b] of asking) {
      let list = byBookie.get(b)
      if (!list) byBookie.set(b, (list = []))
      list.push(id)
    }
    if (byBookie.size === 0) return out
    const answers = await Promise.all([...byBookie].map(([b, list]) => askReplica(io, md, b, list, masterKey)))
    for (const answered of answers) {
      for (const [id, a] of answered) {
        if (a.answer === 'ok') out.set(id, a.data)
        apply(id, stepCopyRead(reads.get(id)!, a.answer))
      }
    }
  }
  throw new QuireError('BOOKIE_UNAVAILABLE', `ledger ${md.ledgerId}: reading ${ids.length} entries from surviving replicas did not finish`, { ledgerId: md.ledgerId })
}

type Answered = { answer: 'ok'; data: Uint8Array } | { answer: Exclude<CopyAnswer, 'ok'> }

/** What bookie `b` said of each of `ids` it answered for (none when a short reply left them out). */
async function askReplica(io: CopyIo, md: LedgerMetadata, b: string, ids: number[], masterKey: Buffer): Promise<Map<number, Answered>> {
  const out = new Map<number, Answered>()
  const r = await io.bookies.read(b, md.ledgerId, ids, READ_REPLY_BYTES, io.readTimeoutMs, undefined, masterKey).catch(() => null)
  if (!r || r.rc !== RC.OK) {
    // No answer, or a refusal of the whole read: no such ledger is explicit, anything else unknown.
    const answer = r ? entryAnswer(r.rc, undefined) : 'unknown'
    for (const id of ids) out.set(id, { answer: answer === 'ok' ? 'unknown' : answer })
    return out
  }
  r.entries.forEach((entry, k) => {
    const id = ids[k]
    if (id === undefined) return
    const answer = entryAnswer(r.rc, entry)
    if (answer !== 'ok') return out.set(id, { answer })
    const data = entry[1]!
    try {
      decodeEntry(md.digestType, masterKey, data, { ledgerId: md.ledgerId, entryId: id })
      out.set(id, { answer: 'ok', data })
    } catch {
      out.set(id, { answer: 'corrupt' })
    }
  })
  return out
}

/**
 * Recovery adds of `ids` to `target`; resolves once it acknowledged every one (journal synced).
 * Entries not acknowledged within the add timeout are sent again, the same bytes under the same
 * ids (a bookie takes a recovery add of an entry it holds again), up to COPY_ADD_RESENDS_MAX
 * times; an explicit refusal fails at once. `beforeResend` may throw to stop (the claim is gone).
 */
export function addEntries(
  io: CopyIo, target: string, md: LedgerMetadata, masterKey: Buffer, ids: number[], data: Map<number, Uint8Array>, beforeResend: () => void = () => {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const pending = new Set(ids)
    let resends = 0
    let unregister: () => void = () => {}
    const send = (list: Iterable<number>): void => {
      for (const id of list) io.bookies.queueAdd(target, md.ledgerId, masterKey, md.digestType, true, data.get(id)!)
    }
    const expired = (): void => {
      if (resends < COPY_ADD_RESENDS_MAX) {
        try {
          beforeResend()
        } catch (err) {
          unregister()
          return reject(err)
        }
        resends++
        timer = io.clock.setTimeout(expired, io.addTimeoutMs)
        return send([...pending])
      }
      unregister()
      reject(new QuireError('TIMEOUT', `bookie ${target} did not acknowledge ${pending.size} copied entries of ledger ${md.ledgerId} within ${io.addTimeoutMs} ms, sent ${resends + 1} times`, {
        ledgerId: md.ledgerId, bookieId: target,
      }))
    }
    let timer = io.clock.setTimeout(expired, io.addTimeoutMs)
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
    send(ids)
  })
}
