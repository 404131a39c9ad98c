// What a simulated client uses to talk to the bookies: the same BookieTransport and TailTransport
// interfaces the real client has over NATS (client/bookieClient.ts: long polls, explicit LACs), carried by the simulated network (sim/network.ts)
// as the same msgpack frames the bookies take over NATS. Adds queued in one tick go out as one
// message per bookie; replies come back to the client's inbox and are routed by request id or,
// for acks, to the writers of the ledger. A dead client sends and receives nothing.

import type { AckHandler, BookieTransport, TailTransport } from '../client/internal.ts'
import { QuireError } from '../machines/errors.ts'
import type { DigestType } from '../machines/responses.ts'
import {
  bookieSubject, decode, encode, readLacRequest, readRequest,
  type AddGroup, type LacItem, type ReadLacResponse, type ReadResponse, type WireMessage,
} from '../transport/wire.ts'
import type { SimEndpoint, SimNetwork } from './network.ts'
import type { World } from './world.ts'

export class SimTransport implements BookieTransport, TailTransport {
  private readonly writers = new Map<number, Set<AckHandler>>()
  private readonly waiters = new Map<number, { resolve: (m: WireMessage) => void; reject: (err: Error) => void; timer: unknown }>()
  private out = new Map<string, AddGroup[]>()
  private flushQueued = false
  private nextReqId = 1
  private readonly endpoint: SimEndpoint
  private readonly inbox: string
  dead = false

  constructor(readonly node: string, private readonly world: World, net: SimNetwork) {
    this.endpoint = net.endpoint(node)
    this.inbox = `_INBOX.${node}`
    this.endpoint.subscribe(this.inbox, (data) => this.deliver(data))
  }

  /** A frame for this client arrived. */
  private deliver(data: Uint8Array): void {
    if (this.dead) return
    const m = decode(data) as WireMessage
    if (m.op === 'addAck') {
      for (const [ledgerId, rc, ids] of m.acks) for (const h of [...(this.writers.get(ledgerId) ?? [])]) h(m.bookieId, rc, ids)
    } else if (m.op === 'readResp' || m.op === 'lacResp') {
      const w = this.waiters.get(m.reqId)
      if (!w) return
      this.waiters.delete(m.reqId)
      this.world.clearTimeout(w.timer as never)
      w.resolve(m)
    }
  }

  registerWriter(ledgerId: number, handler: AckHandler): () => void {
    let set = this.writers.get(ledgerId)
    if (!set) this.writers.set(ledgerId, (set = new Set()))
    set.add(handler)
    return () => { set.delete(handler) }
  }

  queueAdd(bookieId: string, ledgerId: number, masterKey: Uint8Array, digestType: DigestType, recovery: boolean, entry: Uint8Array): void {
    if (this.dead) return
    let groups = this.out.get(bookieId)
    if (!groups) this.out.set(bookieId, (groups = []))
    let g = groups.find((x) => x.ledgerId === ledgerId && x.recovery === recovery)
    if (!g) groups.push((g = { ledgerId, masterKey, digestType, recovery, entries: [] }))
    g.entries.push(entry)
    if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(() => this.flush())
    }
  }

  private flush(): void {
    this.flushQueued = false
    const out = this.out
    this.out = new Map()
    for (const [bookieId, groups] of out) this.toBookie(bookieId, { op: 'add', groups })
  }

  private toBookie(bookieId: string, msg: WireMessage): void {
    if (this.dead) return
    this.endpoint.request(bookieSubject(bookieId), encode(msg), this.inbox)
  }

  read(bookieId: string, ledgerId: number, entryIds: number[], maxBytes: number, timeoutMs: number, fence?: { masterKey: Uint8Array }, masterKey?: Uint8Array): Promise<ReadResponse> {
    const reqId = this.nextReqId++
    return this.request(bookieId, readRequest(reqId, ledgerId, entryIds, maxBytes, fence, masterKey), reqId, timeoutMs) as Promise<ReadResponse>
  }

  readLac(bookieId: string, ledgerId: number, timeoutMs: number, fence?: { masterKey: Uint8Array }): Promise<ReadLacResponse> {
    const reqId = this.nextReqId++
    return this.request(bookieId, readLacRequest(reqId, ledgerId, fence), reqId, timeoutMs) as Promise<ReadLacResponse>
  }

  longPollLac(bookieId: string, ledgerId: number, previousLac: number, pollMs: number, timeoutMs: number, withEntry: boolean, signal?: AbortSignal, masterKey?: Uint8Array): Promise<ReadLacResponse> {
    const reqId = this.nextReqId++
    const msg: WireMessage = { op: 'readLac', reqId, ledgerId, previousLac, timeoutMs: pollMs, withEntry, ...(withEntry && masterKey ? { masterKey } : {}) }
    if (signal?.aborted) return Promise.reject(new QuireError('TIMEOUT', 'long poll cancelled', { bookieId }))
    const answer = this.request(bookieId, msg, reqId, pollMs + timeoutMs) as Promise<ReadLacResponse>
    // Aborted: drop the waiter here and unpark the request at the bookie, as the real client does.
    signal?.addEventListener('abort', () => {
      const w = this.waiters.get(reqId)
      if (!w) return
      this.waiters.delete(reqId)
      this.world.clearTimeout(w.timer as never)
      w.reject(new QuireError('TIMEOUT', 'long poll cancelled', { bookieId }))
      this.toBookie(bookieId, { op: 'cancelPoll', reqId })
    }, { once: true })
    return answer
  }

  writeLac(bookieId: string, ledgerId: number, masterKey: Uint8Array, lac: number, persist: boolean): void {
    this.toBookie(bookieId, { op: 'writeLac', ledgerId, masterKey, lac, persist })
  }

  writeLacs(bookieId: string, items: LacItem[]): void {
    this.toBookie(bookieId, { op: 'writeLacs', items })
  }

  private request(bookieId: string, msg: WireMessage, reqId: number, timeoutMs: number): Promise<WireMessage> {
    return new Promise((resolve, reject) => {
      const timer = this.world.setTimeout(() => {
        this.waiters.delete(reqId)
        reject(new QuireError('TIMEOUT', `bookie ${bookieId} did not answer within ${timeoutMs} ms`, { bookieId }))
      }, timeoutMs)
      this.waiters.set(reqId, { resolve, reject, timer })
      this.toBookie(bookieId, msg)
    })
  }
}
