// A bookie's add path: from an add request's groups to the ledger actors' batches, the journal
// record of each accepted batch, and the entry store once that record is synced.
//
// Each group of an add request (one ledger's entries) is checked for size and for the bookie's
// mode, then joins that ledger's open batch of adds; the batch goes to the ledger's actor as one
// `adds` event (machines/bookieLedger.ts decides it at once), in arrival order with the ledger's
// fences and LAC reads, which close the open batch when they take their place (see queue).
//
// Invariants:
// - an add is acknowledged only after the journal synced the record holding it (the actor's
//   `journal.synced` comes from the append's promise; PROTOCOL.md "Add path");
// - entries reach the entry store (write cache, then the entry log) only after that sync;
// - a request for a ledger is never overtaken by an add that arrived after it, nor overtakes one
//   that arrived before it;
// - `inflight` counts batches waiting for their actor and records waiting for their sync, so a
//   draining bookie waits for every add it took.
// Per entry the path allocates one object (a HeldEntry: the machine's BookieEntry and the entry
// store's StoredEntry at once, so the write cache and the entry store take it as it is) besides
// the entry's view of its frame; per add request one object (a HeldAdd, carrying its arrival
// time for the latency metric).

import type { ActorRefFrom } from 'xstate'
import type { BookieAdd, BookieEntry, bookieLedgerMachine } from '../machines/bookieLedger.ts'
import type { StoredEntry } from '../storage/types.ts'
import { headerEntryId, headerLac } from '../transport/entry.ts'
import { RC, type AddRequest } from '../transport/wire.ts'
import type { AddAcks } from './addAcks.ts'
import type { BookieStorage } from './bookieStorage.ts'
import { bookieMetrics } from './metrics.ts'

export type LedgerActor = ActorRefFrom<typeof bookieLedgerMachine>

/**
 * A ledger's batch of adds takes no more once its entries pass this many bytes: one journal
 * record holds a batch, and records stay well under the journal's RECORD_BYTES_MAX.
 */
const ADD_BATCH_BYTES_MAX = 8 * 1024 * 1024

/** An entry as onAdd makes it: what the ledger machine decides on and what the entry store takes. */
interface HeldEntry extends BookieEntry, StoredEntry {}
/** An add request's entries as onAdd makes them, with their arrival (performance.now()). */
interface HeldAdd extends BookieAdd {
  readonly entries: readonly HeldEntry[]
  readonly arrivedAt: number
  readonly bytes: number
}

/** What the add path needs of its bookie. */
export interface AddHost {
  readonly maxEntryBytes: number
  readonly acks: AddAcks
  readonly stats: { adds: number }
  /** Normal adds are taken (else READ_ONLY; recovery adds are taken either way). */
  writable(): boolean
  /** The ledger's actor, created if unknown. */
  ledger(ledgerId: number): Promise<LedgerActor | null>
  storage(): BookieStorage
  /** A failed journal write: true when it turned the bookie read-only (a full disk). */
  writeFailed(err: unknown): boolean
}

export class BookieAdds {
  /** Batches waiting for their ledger's actor, and journal records waiting for their sync. */
  inflight = 0
  /** Per ledger, the batch of adds still open to more (see queue). */
  private readonly open = new Map<number, { adds: BookieAdd[]; bytes: number }>()

  constructor(private readonly host: AddHost) {}

  onAdd(req: AddRequest, replyTo: string): void {
    const { host } = this
    const max = host.maxEntryBytes
    const writable = host.writable()
    const arrivedAt = performance.now()
    for (const g of req.groups) {
      const ledgerId = g.ledgerId
      const entries: HeldEntry[] = []
      let refused: number[] | null = null
      let bytes = 0
      // Validated (transport/validate.ts): every header names this ledger and valid ids.
      for (const data of g.entries) {
        const entryId = headerEntryId(data)
        if (data.byteLength > max) (refused ??= []).push(entryId)
        else {
          entries.push({ ledgerId, entryId, lac: headerLac(data), data })
          bytes += data.byteLength
        }
      }
      if (refused !== null) host.acks.queue(replyTo, ledgerId, RC.TOO_LARGE, refused)
      if (entries.length === 0) continue
      if (!writable && !g.recovery) {
        host.acks.queue(replyTo, ledgerId, RC.READ_ONLY, entries.map((e) => e.entryId))
        continue
      }
      host.stats.adds += entries.length
      const add: HeldAdd = { replyTo, masterKey: g.masterKey, digestType: g.digestType, recovery: g.recovery, entries, arrivedAt, bytes }
      this.queue(ledgerId, add)
    }
  }

  /**
   * Adds go to their ledger's actor in batches (machines/bookieLedger.ts `adds`): the first add
   * of a batch takes the ledger's place in line (a reaction on its actor's promise, the same line
   * fences and LAC reads take), and the adds that arrive before that reaction runs join it, until
   * another request for the ledger takes a place behind it (`closeBatch`). So the actor gets
   * every request in arrival order, as when each add was an event of its own, and a fence is
   * never overtaken by an add that came after it, nor overtakes one that came before.
   */
  private queue(ledgerId: number, add: HeldAdd): void {
    const open = this.open.get(ledgerId)
    if (open && open.bytes < ADD_BATCH_BYTES_MAX) {
      open.adds.push(add)
      open.bytes += add.bytes
      return
    }
    const batch = { adds: [add], bytes: add.bytes }
    this.open.set(ledgerId, batch)
    this.inflight++
    this.host.ledger(ledgerId).then(
      (a) => {
        this.inflight--
        this.closeBatch(ledgerId, batch)
        a!.send({ type: 'adds', adds: batch.adds })
      },
      () => {
        this.inflight--
        this.closeBatch(ledgerId, batch)
        for (const x of batch.adds) this.host.acks.queue(x.replyTo, ledgerId, RC.ERROR, x.entries.map((e) => e.entryId))
      },
    )
  }

  /** Later adds for the ledger start a new batch (behind whatever request took a place now). */
  closeBatch(ledgerId: number, batch?: { adds: BookieAdd[] }): void {
    if (batch === undefined || this.open.get(ledgerId) === batch) this.open.delete(ledgerId)
  }

  /**
   * The ledger actor's `journal.add`: one journal record holding every entry of `adds`; once it
   * is synced the actor hears `journal.synced` (and acknowledges), else each add is answered
   * READ_ONLY (a full disk: the writer moves away) or ERROR.
   */
  journal(ledgerId: number, adds: readonly BookieAdd[], actor: LedgerActor): void {
    this.inflight++
    const data: Uint8Array[] = []
    for (const a of adds) for (const e of a.entries) data.push(e.data)
    this.host.storage().append({ t: 'add', l: ledgerId, e: data }).then(
      () => {
        this.inflight--
        const now = performance.now()
        // Every add reaching the machine was made by onAdd.
        for (const a of adds) bookieMetrics.addAcked((a as HeldAdd).arrivedAt, now)
        actor.send({ type: 'journal.synced', adds })
      },
      (err) => {
        this.inflight--
        const rc = this.host.writeFailed(err) ? RC.READ_ONLY : RC.ERROR
        for (const a of adds) this.host.acks.queue(a.replyTo, ledgerId, rc, a.entries.map((e) => e.entryId))
      },
    )
  }

  /** The ledger actor's `store.put`: the synced entries into the entry store, as onAdd made them. */
  put(entries: readonly BookieEntry[]): void {
    this.host.storage().putEntries(entries as readonly HeldEntry[])
  }
}
