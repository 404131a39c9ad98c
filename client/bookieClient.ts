// A client's connection to the bookies: one NATS inbox for every reply, adds batched per bookie
// (all entries queued in the same tick go out as one message per bookie), acks routed to the
// writer of their ledger, and reads/LAC reads correlated by request id with a timeout.
// No NATS request() per entry: the hot path is publish + one inbox subscription.
// Adds are coalesced per bookie as Kafka's producer batches (linger.ms, batch.size), except that
// a bookie with nothing in flight and nothing held gets a tick's adds at once, so one add at a
// time keeps its latency, unless they are of another ledger than its last add message, sent less
// than lingerMs before (several writers share it: they coalesce; client/addTracking.ts). Otherwise
// new adds are held and go as one message once they reach `lingerEntries` or `lingerBytes`, or
// `lingerMs` after the first of them was held. One timer serves every bookie: when it fires,
// every bookie's held adds go, in one socket write (a bookie whose adds were held later waits less
// than lingerMs, never more). An answer does not send them early: with many ledgers each written now and then, answers come after
// every few adds, and waiting out lingerMs is what turns one message per entry per bookie into
// one per bookie per lingerMs. A busy single writer fills lingerEntries within a tick or two. The
// bookie group-commits its journal anyway. Any other message to a bookie (read, LAC read,
// explicit LAC) sends its held adds first: per bookie, frames keep the order they were asked for in.
// A large add group (WRITE_SET_GROUP_BYTES_MIN) of a writer whose bookies all take adds on their
// write sets' subjects goes at once, as its own message on its write set's subject, after what its
// bookies had queued: the client writes a 256 KiB entry to the server once instead of once per bookie.
// An add frame never exceeds the server's max_payload (nats.js throws on publish past it): a
// batch is sent before an entry that would take it over, and `maxEntryBytes()` tells writers the
// largest entry one frame can carry, so a larger one is refused at append (ENTRY_TOO_LARGE). A
// publish that fails anyway (connection closed, a new server with a smaller limit) is dropped, not
// thrown: those adds go unanswered and the writer re-sends or times out as for a lost message.
// Anyone can publish on the inbox: every frame is checked against the reply schemas
// (transport/validate.ts) and an invalid one is dropped, so its request stays unknown (it times
// out); a read answer is taken only from the bookie the request went to. A forged ack only moves
// the count of adds in flight that coalescing looks at.

import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import { createInbox, errors } from '@nats-io/transport-node'
import { NO_CLIENT_METRICS, type ClientMetrics } from './telemetry.ts'
import { AddTracking, type AddState } from './addTracking.ts'
import { QuireError } from '../machines/errors.ts'
import { asReply } from '../transport/validate.ts'
import {
  GROUP_ENTRY_BYTES, GROUP_HEADER_BYTES, addGroupBytes, decodeAckFrame, encodeAddGroup, encodeAddGroupOf, isBinaryFrame, type GroupParts,
  type GroupEntry,
} from '../transport/addFrame.ts'
import { HEADER_BYTES, headerEntryId, type DigestType } from '../transport/entry.ts'
import { publishGathered } from '../transport/gatheredPublish.ts'
import {
  WRITE_SET_SUBJECT_BOOKIES_MAX, bookieSubject, bookiesOfSubject, decode, encode, readLacRequest, readRequest, writeSetSubject,
  type AddGroup, type BookieReply, type LacItem, type ReadLacResponse, type ReadResponse, type WireMessage,
} from '../transport/wire.ts'

export type { AddState } from './addTracking.ts'

export type AckHandler = (bookieId: string, rc: number, entryIds: number[]) => void

interface Waiter {
  bookieId: string
  resolve: (m: ReadResponse | ReadLacResponse) => void
  reject: (e: unknown) => void
  timer: NodeJS.Timeout
}

/** A batch is sent early once it passes this many bytes. */
const BATCH_BYTES_MAX = 1024 * 1024
/**
 * A write set's group of at least this many bytes goes once on the write set's subject (file
 * header); a smaller one rides in each bookie's own message with the bookie's other groups, which
 * keeps messages per entry low where many ledgers each add a little.
 */
export const WRITE_SET_GROUP_BYTES_MIN = 64 * 1024

/** How adds wait while a bookie has adds in flight (see the file header). */
export interface AddCoalescing {
  /** Longest held adds wait before they are sent anyway; 0: never held. */
  lingerMs: number
  /** Held adds go once they make this many bytes... */
  lingerBytes: number
  /** ...or hold this many entries. */
  lingerEntries: number
}
/**
 * 8 ms: with 1,000 ledgers written at 1,000 entries/s in all (bench logs1000_1024B, two runs each),
 * 2.52-2.63 NATS messages per entry at 5 ms, 1.86-2.02 at 8 (p50 6.5 -> 8.7 ms, p99 no worse),
 * 1.07-1.28 at 10 but p50 12-15 ms. A pipelined writer fills 16 entries first; one add at a time is
 * never held.
 */
export const DEFAULT_ADD_COALESCING: Readonly<AddCoalescing> = Object.freeze({ lingerMs: 8, lingerBytes: 64 * 1024, lingerEntries: 16 })
/**
 * Upper bounds on the framing of an add frame, so that what is counted before a publish is never
 * less than what is sent. Adds travel as binary groups (transport/addFrame.ts: a group header plus
 * its master key, a length per entry); these bounds are the msgpack frame's (transport/wire.ts
 * AddRequest: `{op: 'add', groups: [...]}`, per group its keys, ids, flag and master key, per
 * entry a bin32 header), which are larger, so the entry limits hold for either.
 */
export const ADD_FRAME_BYTES = 32
export const ADD_GROUP_BYTES = 128
export const ADD_ENTRY_BYTES = 5
/** Framing of an add frame holding one entry, with the largest master key the wire accepts (64). */
export const ADD_FRAME_OVERHEAD_BYTES = ADD_FRAME_BYTES + ADD_GROUP_BYTES + 64 + ADD_ENTRY_BYTES
/**
 * The same for a bookie's read reply: `{op, reqId, bookieId, rc, entries}` with a bookie id of up
 * to 128 characters, and per entry `[rc, bin32]`. A read asks for no more entry bytes than fit
 * in one reply frame with these (the bookie sends at least one entry, and stops before maxBytes).
 */
export const READ_REPLY_FRAME_BYTES = 256
export const READ_REPLY_ENTRY_BYTES = 8
/**
 * Upper bounds on a writeLacs frame's msgpack: `{op: 'writeLacs', items: [...]}`, and per item
 * its four keys, a 64-bit ledger id and LAC, a flag and a master key of up to 64 bytes (119 at most).
 */
export const LACS_FRAME_BYTES = 32
export const LACS_ITEM_BYTES = 128

/** What writers, readers and recoveries need of the bookies (NATS here; simulated in sim/). */
export interface BookieTransport {
  registerWriter(ledgerId: number, handler: AckHandler): () => void
  queueAdd(bookieId: string, ledgerId: number, masterKey: Uint8Array, digestType: DigestType, recovery: boolean, entry: Uint8Array): void
  /**
   * A writer's new entries of one ledger, each to the bookies of its write set: each entry is
   * encoded (transport/entry.ts, LAC `lac`) once, into the add group its write set shares. Absent
   * (a simulated network): the writer encodes each entry and calls queueAdd per bookie.
   * `writeSetSubjects`: every bookie of the entries' write sets takes adds on its write set's
   * subject, so a large group may go once for all of them.
   */
  queueEntries?(ledgerId: number, masterKey: Uint8Array, digestType: DigestType, lac: number, entries: readonly WriteSetEntry[], writeSetSubjects?: boolean): void
  /** `masterKey`: the proof a ledger with a password asks for (PROTOCOL.md reads; a fencing read carries its own). */
  read(bookieId: string, ledgerId: number, entryIds: number[], maxBytes: number, timeoutMs: number, fence?: { masterKey: Uint8Array }, masterKey?: Uint8Array): Promise<ReadResponse>
  readLac(bookieId: string, ledgerId: number, timeoutMs: number, fence?: { masterKey: Uint8Array }): Promise<ReadLacResponse>
  /**
   * Largest encoded entry (header and digest included) one add frame can carry: the NATS server's
   * max_payload less the framing. Undefined when not known (no server info; a simulated network).
   */
  maxEntryBytes?(): number | undefined
  /**
   * Calls `handler` each time the connection comes back after a loss (its NATS server died, say):
   * what was in flight on the old connection may be gone. Returns the unregister function.
   */
  onReconnect?(handler: () => void): () => void
  /**
   * Where an add of `entryId` to `bookieId`, sent and not acknowledged, stands. A bookie answers
   * adds in the order they were sent to it: `lost` when it answered an add message sent after the
   * one that carried this entry (this one or its answer was lost), `behind` when it answered adds
   * since that message was sent but only older ones, the last within a second (it is catching up:
   * sending the entry again would only add to its load), `silent` otherwise. Absent (a simulated
   * network): not known, every stalled add is sent again.
   */
  addState?(bookieId: string, ledgerId: number, entryId: number): AddState
  /**
   * Calls `handler` each time NATS refuses this client's publish of adds to `bookieId` (its user's
   * permissions): the adds were dropped, and no answer will come. Returns the unregister function.
   * Absent (a simulated network): never.
   */
  onRefused?(handler: (bookieId: string, subject: string) => void): () => void
}


/** Tailing: long-poll LAC reads, and the writer's explicit LAC. */
export interface TailTransport {
  /** With `signal`: aborting it drops the waiter here and unparks the request at the bookie (rejects with TIMEOUT). */
  longPollLac(bookieId: string, ledgerId: number, previousLac: number, pollMs: number, timeoutMs: number, withEntry: boolean, signal?: AbortSignal, masterKey?: Uint8Array): Promise<ReadLacResponse>
  /** Explicit LAC; `persist: false` for the eager in-memory hint (see transport/wire.ts). */
  writeLac(bookieId: string, ledgerId: number, masterKey: Uint8Array, lac: number, persist: boolean): void
  /** Many ledgers' explicit LACs in one frame (at most LIMITS.lacsPerFrame items; no answer asked). */
  writeLacs?(bookieId: string, items: LacItem[]): void
}

/** An entry for queueEntries, with the bookies of its write set. */
export interface WriteSetEntry extends GroupEntry { bookies: readonly string[] }

/**
 * What is queued for one bookie, in queue order: add groups already encoded (shared with the other
 * bookies of their write set), and groups of entries queued one by one (queueAdd), encoded at flush.
 */
interface Pending {
  parts: Array<Uint8Array | AddGroup>; bytes: number; entries: number; open: { key: string; group: AddGroup } | null
  /** Per ledger in this message, the highest entry id it carries. */
  last: Map<number, number>
}

export class BookieClient implements BookieTransport, TailTransport {
  readonly inbox: string
  private readonly sub: Subscription
  /** Ack handlers by ledger: its writer, and a recovery writing entries back. */
  private readonly writers = new Map<number, Set<AckHandler>>()
  private readonly waiters = new Map<number, Waiter>()
  /** Pending adds per bookie; `bytes` counts the frame they make, framing included (upper bound). */
  private readonly out = new Map<string, Pending>()
  private flushQueued = false
  /** Where each bookie's adds stand: in flight, unanswered per ledger, the last message. */
  private readonly tracking = new AddTracking()
  /** Bookies holding adds, sent at the latest `lingerMs` after the first of them was held by one timer for all. */
  private readonly lingering = new Set<string>()
  private lingerTimer: NodeJS.Timeout | null = null
  private readonly coalescing: AddCoalescing
  private nextReqId = 1
  private readonly reconnectHandlers = new Set<() => void>()
  private readonly refusalHandlers = new Set<(bookieId: string, subject: string) => void>()
  /** Add messages and entries sent; `heldMessages`: of those, the ones that went after holding adds. */
  readonly stats = { addMessages: 0, entriesSent: 0, heldMessages: 0 }

  constructor(
    private readonly nc: NatsConnection,
    private readonly metrics: ClientMetrics = NO_CLIENT_METRICS,
    coalescing: Partial<AddCoalescing> = {},
  ) {
    this.coalescing = { ...DEFAULT_ADD_COALESCING, ...coalescing }
    // Under the connection's inbox prefix (transport/natsAuth.ts inboxPrefix), where its NATS user may subscribe.
    this.inbox = createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix)
    this.watchRefusals()
    this.sub = nc.subscribe(this.inbox, {
      callback: (err, msg) => {
        if (err) return
        let m: BookieReply | null
        try {
          m = isBinaryFrame(msg.data) ? decodeAckFrame(msg.data) : asReply(decode(msg.data))
        } catch {
          return
        }
        if (m) this.onMessage(m)
      },
    })
    // Ends when the connection closes.
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type !== 'reconnect') continue
        this.tracking.connectionLost()
        for (const h of [...this.reconnectHandlers]) h()
      }
    })()
  }

  onReconnect(handler: () => void): () => void {
    this.reconnectHandlers.add(handler)
    return () => { this.reconnectHandlers.delete(handler) }
  }

  onRefused(handler: (bookieId: string, subject: string) => void): () => void {
    this.refusalHandlers.add(handler)
    return () => { this.refusalHandlers.delete(handler) }
  }

  registerWriter(ledgerId: number, handler: AckHandler): () => void {
    let set = this.writers.get(ledgerId)
    if (!set) this.writers.set(ledgerId, (set = new Set()))
    set.add(handler)
    return () => {
      set.delete(handler)
      if (set.size === 0 && this.writers.get(ledgerId) === set) {
        this.writers.delete(ledgerId)
        this.tracking.forgetLedger(ledgerId)
      }
    }
  }

  maxEntryBytes(): number | undefined {
    const maxPayload = this.nc.info?.max_payload
    return maxPayload === undefined ? undefined : maxPayload - ADD_FRAME_OVERHEAD_BYTES
  }

  queueAdd(bookieId: string, ledgerId: number, masterKey: Uint8Array, digestType: DigestType, recovery: boolean, entry: Uint8Array): void {
    const key = `${ledgerId}:${recovery ? 1 : 0}`
    const b = this.pendingFor(bookieId, GROUP_ENTRY_BYTES + entry.byteLength + GROUP_HEADER_BYTES + masterKey.byteLength)
    const joins = b.open?.key === key
    b.bytes += GROUP_ENTRY_BYTES + entry.byteLength + (joins ? 0 : GROUP_HEADER_BYTES + masterKey.byteLength)
    if (!joins) {
      b.open = { key, group: { ledgerId, masterKey, digestType, recovery, entries: [] } }
      b.parts.push(b.open.group)
    }
    b.open!.group.entries.push(entry)
    b.entries++
    if (entry.byteLength >= HEADER_BYTES) b.last.set(ledgerId, Math.max(b.last.get(ledgerId) ?? -1, headerEntryId(entry)))
    this.queued(bookieId, b)
  }

  queueEntries(ledgerId: number, masterKey: Uint8Array, digestType: DigestType, lac: number, entries: readonly WriteSetEntry[], writeSetSubjects = false): void {
    // Entries by write set, in id order; a group never passes what one message may carry.
    const sets = new Map<string, WriteSetEntry[]>()
    for (const e of entries) {
      const k = e.bookies.join('\n')
      const list = sets.get(k)
      if (list) list.push(e)
      else sets.set(k, [e])
    }
    const cap = Math.min(BATCH_BYTES_MAX, this.nc.info?.max_payload ?? BATCH_BYTES_MAX)
    for (const list of sets.values()) {
      let from = 0
      while (from < list.length) {
        let to = from + 1
        let payload = list[from]!.payload.byteLength
        while (to < list.length && addGroupBytes(digestType, masterKey.byteLength, to - from + 1, payload + list[to]!.payload.byteLength) <= cap) {
          payload += list[to++]!.payload.byteLength
        }
        const group = encodeAddGroup(ledgerId, masterKey, digestType, lac, list.slice(from, to))
        const bookies = list[from]!.bookies
        if (writeSetSubjects && group.byteLength >= WRITE_SET_GROUP_BYTES_MIN && bookies.length > 1 && bookies.length <= WRITE_SET_SUBJECT_BOOKIES_MAX) {
          this.publishToWriteSet(bookies, group, to - from, ledgerId, list[to - 1]!.entryId)
        } else {
          for (const bookieId of bookies) this.queueGroup(bookieId, group, to - from, ledgerId, list[to - 1]!.entryId)
        }
        from = to
      }
    }
  }

  /**
   * A large group goes now, once, on its write set's subject (transport/wire.ts writeSetSubject):
   * NATS hands it to each bookie, so the client writes it and the server reads it once, not once
   * per bookie. What each bookie had queued goes first, so its frames keep their order.
   */
  private publishToWriteSet(bookies: readonly string[], group: GroupParts, entries: number, ledgerId: number, lastEntryId: number): void {
    for (const bookieId of bookies) this.flushBookie(bookieId)
    const last = new Map([[ledgerId, lastEntryId]])
    for (const bookieId of bookies) this.noteSent(bookieId, entries, last)
    this.stats.addMessages++
    try {
      publishGathered(this.nc, writeSetSubject(bookies), group.parts, this.inbox)
    } catch {
      // As in flushBookie.
    }
  }

  /** An encoded add group for `bookieId`, the same buffers the other bookies of its write set get. */
  private queueGroup(bookieId: string, group: GroupParts, entries: number, ledgerId: number, lastEntryId: number): void {
    const b = this.pendingFor(bookieId, group.byteLength)
    b.last.set(ledgerId, Math.max(b.last.get(ledgerId) ?? -1, lastEntryId))
    b.parts.push(...group.parts)
    b.open = null
    b.bytes += group.byteLength
    b.entries += entries
    this.queued(bookieId, b)
  }

  /** The bookie's pending adds, sent first if `adding` more bytes would take them past the server's limit. */
  private pendingFor(bookieId: string, adding: number): Pending {
    const pending = this.out.get(bookieId)
    const maxPayload = this.nc.info?.max_payload
    if (pending && maxPayload !== undefined && pending.bytes + adding > maxPayload) this.flushBookie(bookieId)
    let b = this.out.get(bookieId)
    if (!b) this.out.set(bookieId, (b = { parts: [], bytes: 0, entries: 0, open: null, last: new Map() }))
    return b
  }

  private queued(bookieId: string, b: Pending): void {
    if (b.bytes >= BATCH_BYTES_MAX) this.flushBookie(bookieId)
    else if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(() => this.release())
    }
  }

  /** Sends every bookie's queued adds now, held or not. */
  flush(): void {
    this.flushQueued = false
    for (const bookieId of [...this.out.keys()]) this.flushBookie(bookieId)
  }

  /** The end of a tick: each bookie's adds go now, or are held while it has adds in flight (file header). */
  private release(): void {
    this.flushQueued = false
    const now = performance.now()
    for (const [bookieId, b] of [...this.out]) {
      if (this.lingering.has(bookieId)) {
        if (this.full(b)) this.flushBookie(bookieId)
      } else if (!this.full(b) && this.holds(bookieId, b, now)) {
        this.lingering.add(bookieId)
        this.lingerTimer ??= setTimeout(this.lingered, this.coalescing.lingerMs)
      } else this.flushBookie(bookieId)
    }
  }

  /** Whether `b`'s adds wait for more (file header): the bookie has adds in flight, or another writer's went to it just now. */
  private holds(bookieId: string, b: Pending, now: number): boolean {
    const lingerMs = this.coalescing.lingerMs
    return lingerMs > 0 && (this.tracking.busy(bookieId, now) || this.tracking.sharedRecently(bookieId, b.last.keys(), now, lingerMs))
  }

  private full(b: Pending): boolean {
    return b.bytes >= this.coalescing.lingerBytes || b.entries >= this.coalescing.lingerEntries
  }

  addState(bookieId: string, ledgerId: number, entryId: number): AddState {
    return this.tracking.addState(bookieId, ledgerId, entryId)
  }

  /** lingerMs after the first held add: every bookie's held adds go now. */
  private readonly lingered = (): void => {
    this.lingerTimer = null
    for (const bookieId of [...this.lingering]) this.flushBookie(bookieId)
  }

  private flushBookie(bookieId: string): void {
    if (this.lingering.delete(bookieId)) {
      this.stats.heldMessages++
      if (this.lingering.size === 0 && this.lingerTimer !== null) {
        clearTimeout(this.lingerTimer)
        this.lingerTimer = null
      }
    }
    const b = this.out.get(bookieId)
    if (!b) return
    this.out.delete(bookieId)
    this.stats.addMessages++
    this.noteSent(bookieId, b.entries, b.last)
    try {
      const parts = b.parts.map((p) => (p instanceof Uint8Array ? p : encodeAddGroupOf(p)))
      publishGathered(this.nc, bookieSubject(bookieId), parts, this.inbox)
    } catch {
      // Never thrown into the caller's turn (it runs from a microtask): lost like a message to a
      // dead server; the writer re-sends unacknowledged adds and fails the bookie at addTimeoutMs.
    }
  }

  /** `entries` adds went to `bookieId` in one message, carrying ledgers up to `lastOf`'s entry ids. */
  private noteSent(bookieId: string, entries: number, lastOf: ReadonlyMap<number, number>): void {
    this.stats.entriesSent += entries
    this.tracking.sent(bookieId, entries, lastOf, (ledgerId) => this.writers.has(ledgerId))
  }

  /** Read entries; with `fence`, the bookie fences the ledger (persisted) before it reads. */
  read(bookieId: string, ledgerId: number, entryIds: number[], maxBytes: number, timeoutMs: number, fence?: { masterKey: Uint8Array }, masterKey?: Uint8Array): Promise<ReadResponse> {
    const reqId = this.nextReqId++
    // A reply past the server's max_payload could not be sent: the read would time out.
    const maxPayload = this.nc.info?.max_payload
    const fits = maxPayload === undefined ? maxBytes : maxPayload - READ_REPLY_FRAME_BYTES - READ_REPLY_ENTRY_BYTES * entryIds.length
    const replyBytes = Math.max(1, Math.min(maxBytes, fits))
    return this.request(bookieId, readRequest(reqId, ledgerId, entryIds, replyBytes, fence, masterKey), reqId, timeoutMs) as Promise<ReadResponse>
  }

  readLac(bookieId: string, ledgerId: number, timeoutMs: number, fence?: { masterKey: Uint8Array }): Promise<ReadLacResponse> {
    const reqId = this.nextReqId++
    return this.request(bookieId, readLacRequest(reqId, ledgerId, fence), reqId, timeoutMs) as Promise<ReadLacResponse>
  }

  /** Parked at the bookie until its LAC passes `previousLac` or `pollMs` passes. */
  longPollLac(bookieId: string, ledgerId: number, previousLac: number, pollMs: number, timeoutMs: number, withEntry: boolean, signal?: AbortSignal, masterKey?: Uint8Array): Promise<ReadLacResponse> {
    const reqId = this.nextReqId++
    // The entry a poll may bring is read data: a ledger with a password gives it only with the key.
    const msg: WireMessage = { op: 'readLac', reqId, ledgerId, previousLac, timeoutMs: pollMs, withEntry, ...(withEntry && masterKey ? { masterKey } : {}) }
    if (signal?.aborted) return Promise.reject(new QuireError('TIMEOUT', 'long poll cancelled', { bookieId }))
    const answer = this.request(bookieId, msg, reqId, pollMs + timeoutMs) as Promise<ReadLacResponse>
    if (!signal) return answer
    const cancel = (): void => {
      const w = this.waiters.get(reqId)
      if (!w) return
      this.waiters.delete(reqId)
      clearTimeout(w.timer)
      w.reject(new QuireError('TIMEOUT', 'long poll cancelled', { bookieId }))
      try {
        this.flushBookie(bookieId)
        this.nc.publish(bookieSubject(bookieId), encode({ op: 'cancelPoll', reqId }), { reply: this.inbox })
      } catch {
        // The bookie answers it at its timeout instead.
      }
    }
    signal.addEventListener('abort', cancel, { once: true })
    return answer.finally(() => signal.removeEventListener('abort', cancel))
  }

  /** Requests waiting for a bookie's answer (reads and long polls). */
  get pendingRequests(): number {
    return this.waiters.size
  }

  writeLac(bookieId: string, ledgerId: number, masterKey: Uint8Array, lac: number, persist: boolean): void {
    this.tell(bookieId, { op: 'writeLac', ledgerId, masterKey, lac, persist })
  }

  writeLacs(bookieId: string, items: LacItem[]): void {
    // A server with a max_payload under what LIMITS.lacsPerFrame items take gets smaller frames.
    const maxPayload = this.nc.info?.max_payload
    const per = maxPayload === undefined ? items.length : Math.max(1, Math.floor((maxPayload - LACS_FRAME_BYTES) / LACS_ITEM_BYTES))
    for (let i = 0; i < items.length; i += per) this.tell(bookieId, { op: 'writeLacs', items: items.slice(i, i + per) })
  }

  /** No answer asked, best effort: a lost explicit LAC is carried by the ledger's next entry anyway. */
  private tell(bookieId: string, msg: WireMessage): void {
    try {
      this.flushBookie(bookieId)
      this.nc.publish(bookieSubject(bookieId), encode(msg))
    } catch {
      // Connection closed: as lost on a dead server.
    }
  }

  private request(bookieId: string, msg: WireMessage, reqId: number, timeoutMs: number): Promise<ReadResponse | ReadLacResponse> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(reqId)
        this.metrics.bookieTimeout()
        reject(new QuireError('TIMEOUT', `bookie ${bookieId} did not answer ${msg.op} within ${timeoutMs} ms`, { bookieId }))
      }, timeoutMs)
      this.waiters.set(reqId, { bookieId, resolve, reject, timer })
      try {
        this.flushBookie(bookieId)
        this.nc.publish(bookieSubject(bookieId), encode(msg), { reply: this.inbox })
      } catch (err) {
        clearTimeout(timer)
        this.waiters.delete(reqId)
        reject(new QuireError('BOOKIE_UNAVAILABLE', `cannot send to bookie ${bookieId}: ${String(err)}`, { bookieId }))
      }
    })
  }

  private onMessage(m: BookieReply): void {
    if (m.op === 'addAck') {
      let entries = 0
      for (const [ledgerId, rc, ids] of m.acks) {
        entries += ids.length
        this.tracking.heard(m.bookieId, ledgerId, ids)
        const handlers = this.writers.get(ledgerId)
        if (handlers) for (const h of [...handlers]) h(m.bookieId, rc, ids)
      }
      this.tracking.answered(m.bookieId, entries)
    } else {
      const w = this.waiters.get(m.reqId)
      if (!w || w.bookieId !== m.bookieId) return
      this.waiters.delete(m.reqId)
      clearTimeout(w.timer)
      w.resolve(m)
    }
  }

  /**
   * NATS refuses a publish or a subscription when this client's user may not (its permissions):
   * the server drops it and says so on the connection. A request to a bookie whose subject is
   * refused then fails at once with NATS_AUTH instead of waiting out its timeout, and so does
   * every request when the reply inbox itself is refused; writers are told of refused adds.
   */
  private watchRefusals(): void {
    const status = (this.nc as { status?: NatsConnection['status'] }).status
    if (typeof status !== 'function') return
    void (async () => {
      for await (const s of status.call(this.nc)) {
        if (s.type !== 'error' || !(s.error instanceof errors.PermissionViolationError)) continue
        const { operation, subject } = s.error
        const all = operation === 'subscription' && subject === this.inbox
        for (const [id, w] of this.waiters) {
          if (!all && (operation !== 'publish' || subject !== bookieSubject(w.bookieId))) continue
          clearTimeout(w.timer)
          this.waiters.delete(id)
          w.reject(new QuireError('NATS_AUTH', `NATS refused this client's ${operation} ${all ? 'of its reply inbox' : `to ${subject}`} (its user's permissions)`, { bookieId: w.bookieId, subject }))
        }
        if (operation === 'publish') for (const b of bookiesOfSubject(subject)) for (const h of this.refusalHandlers) h(b, subject)
      }
    })().catch(() => {})
  }

  async close(): Promise<void> {
    this.flush()
    for (const [id, w] of this.waiters) {
      clearTimeout(w.timer)
      w.reject(new QuireError('BOOKIE_UNAVAILABLE', 'client closed', { bookieId: w.bookieId }))
      this.waiters.delete(id)
    }
    this.sub.unsubscribe()
    this.reconnectHandlers.clear()
    this.refusalHandlers.clear()
  }
}
