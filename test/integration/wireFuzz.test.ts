// Malformed frames against a real bookie process (issue 11): anyone on the NATS can publish on a
// bookie's subject. Each frame the issue found (a zombie bookie, a dead process, a journal that
// refuses every restart) is sent by hand and must be answered BAD_REQUEST; then a seeded, bounded
// fuzz loop of random msgpack values, random bytes and mutations of valid add / read / readLac /
// writeLac / cancelPoll frames and of binary add frames (transport/addFrame.ts; binary ack frames
// on the client's inbox). Afterwards the bookie must still take adds and serve reads through
// the normal client, every reply it sent must be well-formed, its log must hold at most one
// refusal line per interval, and after kill -9 it must restart on the same data and serve every
// acknowledged entry.

import { createInbox, type NatsConnection } from '@nats-io/transport-node'
import { Packr } from 'msgpackr'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { BookieClient } from '../../client/bookieClient.ts'
import type { WriteHandle } from '../../client/index.ts'
import { BAD_FRAME_LOG_INTERVAL_MS } from '../../actors/badFrames.ts'
import { encodeEntry, masterKeyOf, type DigestType } from '../../transport/entry.ts'
import { decodeAckFrame, encodeAckFrame, encodeAddGroupOf, isBinaryFrame } from '../../transport/addFrame.ts'
import type { AddGroup } from '../../transport/wire.ts'
import { connectNats } from '../../transport/nats.ts'
import { replyProblem } from '../../transport/validate.ts'
import { RC, bookieSubject, decode, writeSetSubject } from '../../transport/wire.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'

const BOOKIE = 'bookie-1'
const SEED = 0x5eed11
const FUZZ_FRAMES = 3000
const FUZZ_MS_MAX = 60_000
/** Ledger ids far from the ones the cluster's counter hands out (the writer's ledger). */
const FUZZ_LEDGER = 2 ** 40
const fuzzKey = masterKeyOf('fuzz')
const packr = new Packr({ useRecords: false })
const pack = (v: unknown): Buffer => packr.pack(v)

interface Ctx {
  c: TestCluster
  nc: NatsConnection
  w: WriteHandle
  /** Entries the writer had acknowledged, in order. */
  acked: Buffer[]
  fuzzStartedAt: number
}

const t = suite<Ctx>('wire fuzz')
t.before(async (ctx) => {
  ctx.c = await startCluster({ bookies: 1 })
  ctx.nc = await connectNats(ctx.c.nats.url)
  const client = await ctx.c.client()
  ctx.w = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
  ctx.acked = []
  for (let i = 0; i < 20; i++) {
    await ctx.w.append(payloadFor(i))
    ctx.acked.push(payloadFor(i))
  }
})
t.after(async (ctx) => {
  await ctx.nc?.close().catch(() => {})
  await ctx.c?.stop()
})

/** Send one frame with a reply subject; the decoded answer, or null when none came in time. */
async function ask(nc: NatsConnection, frame: Uint8Array, timeoutMs = 5000): Promise<Record<string, unknown> | null> {
  try {
    const m = await nc.request(bookieSubject(BOOKIE), frame, { timeout: timeoutMs })
    return decode(m.data) as unknown as Record<string, unknown>
  } catch {
    return null
  }
}

/** An encoded entry of `ledgerId` whose header's entry id is then set to `entryId` (may exceed 2^53). */
function entryWithId(ledgerId: number, entryId: number, type: DigestType = 'crc32c'): Buffer {
  const e = encodeEntry(type, fuzzKey, ledgerId, 0, -1, 4, Buffer.from('fuzz'))
  e.writeUInt32BE(Math.floor(entryId / 2 ** 32), 8)
  e.writeUInt32BE(entryId % 2 ** 32, 12)
  return e
}

const group = (ledgerId: number, over: Record<string, unknown> = {}) =>
  ({ ledgerId, masterKey: fuzzKey, digestType: 'crc32c', recovery: false, entries: [entryWithId(ledgerId, 0)], ...over })

t('each malformed frame of issue 11 is answered BAD_REQUEST, and the bookie goes on serving', async ({ c, nc }) => {
  // A ledger this bookie knows (its master key is fuzzKey), so that a bad explicit LAC would have
  // reached its journal.
  const known = FUZZ_LEDGER - 1
  const ok = await ask(nc, pack({ op: 'add', groups: [group(known)] }))
  assert.equal(ok?.acks, [[known, RC.OK, [0]]], 'a valid add is acknowledged')

  // The journal-bricking frames first, then the ones that silenced the bookie or killed it; all are
  // sent before anything is asserted, so that the old code shows each failure.
  const frames: Array<[string, unknown, string, RegExp]> = [
    ['add with entry id 2^60', { op: 'add', groups: [group(FUZZ_LEDGER + 1, { entries: [entryWithId(FUZZ_LEDGER + 1, 2 ** 60)] })] }, 'addAck', /entry id/],
    ['add with a number as master key', { op: 'add', groups: [group(FUZZ_LEDGER + 2, { masterKey: 42 })] }, 'addAck', /masterKey/],
    ['add with digestType 42', { op: 'add', groups: [group(FUZZ_LEDGER + 3, { digestType: 42 })] }, 'addAck', /digestType/],
    ['writeLac with lac 1e300', { op: 'writeLac', ledgerId: known, masterKey: fuzzKey, lac: 1e300 }, 'lacResp', /lac/],
    ['msgpack nil', null, 'readResp', /not a map/],
    ['add without groups', { op: 'add' }, 'addAck', /groups/],
    ['add with groups [{}]', { op: 'add', groups: [{}] }, 'addAck', /ledgerId/],
    ['writeLac with masterKey null', { op: 'writeLac', ledgerId: known, masterKey: null, lac: 3 }, 'lacResp', /masterKey/],
    ['read with entry id 2^60', { op: 'read', reqId: 77, ledgerId: known, entryIds: [2 ** 60], maxBytes: 100 }, 'readResp', /entryIds/],
  ]
  // The writer's explicit LAC goes without a reply subject: so may a bad one.
  nc.publish(bookieSubject(BOOKIE), pack({ op: 'writeLac', ledgerId: known, masterKey: null, lac: 3 }))
  nc.publish(bookieSubject(BOOKIE), pack({ op: 'writeLac', ledgerId: known, masterKey: fuzzKey, lac: 1e300 }))
  const answers: Array<Record<string, unknown> | null> = []
  for (const [, frame] of frames) answers.push(await ask(nc, pack(frame)))
  frames.forEach(([what, frame, op, why], i) => {
    const a = answers[i]
    assert.ok(a, `${what}: answered`)
    assert.is(replyProblem(a), null, `${what}: a well-formed reply`)
    assert.is(a!.op, op, `${what}: answered with ${op}`)
    if (op === 'addAck') {
      for (const [, rc] of a!.acks as Array<[number, number, number[]]>) assert.is(rc, RC.BAD_REQUEST, what)
    } else assert.is(a!.rc, RC.BAD_REQUEST, `${what}: BAD_REQUEST`)
    assert.match(String(a!.error), why, `${what}: says why`)
    if ((frame as { reqId?: number } | null)?.reqId !== undefined) assert.is(a!.reqId, 77, `${what}: reqId echoed`)
  })
  const masterKeyNumber = answers[1]!.acks as unknown[]
  assert.equal(masterKeyNumber, [[FUZZ_LEDGER + 2, RC.BAD_REQUEST, [0]]], 'the entries the writer can tell are named')
  // Bytes that are no msgpack at all.
  const garbage = await ask(nc, Buffer.from([0xc1, 0xff, 0x00]))
  assert.equal([garbage?.op, garbage?.rc], ['readResp', RC.BAD_REQUEST])
  assert.is(c.bookie(BOOKIE).proc.exitCode, null, 'the bookie process is alive')
  const again = await ask(nc, pack({ op: 'readLac', reqId: 78, ledgerId: known }))
  assert.equal([again?.op, again?.rc, again?.reqId, again?.lastEntryId], ['lacResp', RC.OK, 78, 0], 'and still answers')
})

t('on a write-set subject naming the bookie, frames are checked as on its own: garbage is refused, a valid add acknowledged', async ({ c, nc }) => {
  const subject = writeSetSubject(['no-such-bookie', BOOKIE])
  const request = async (frame: Uint8Array): Promise<Record<string, unknown> | null> =>
    nc.request(subject, frame, { timeout: 5000 }).then((m) => decode(m.data) as unknown as Record<string, unknown>, () => null)
  const garbage = await request(Buffer.from([0xc1, 0xff, 0x00]))
  assert.equal([garbage?.op, garbage?.rc], ['readResp', RC.BAD_REQUEST])
  const bad = await request(pack({ op: 'add', groups: [group(FUZZ_LEDGER + 4, { digestType: 42 })] }))
  assert.equal(bad?.acks, [[FUZZ_LEDGER + 4, RC.BAD_REQUEST, [0]]])
  const known = FUZZ_LEDGER - 1
  const ok = await request(pack({ op: 'add', groups: [group(known, { entries: [entryWithId(known, 1)] })] }))
  assert.equal(ok?.acks, [[known, RC.OK, [1]]], 'a valid add is acknowledged')
  assert.is(c.bookie(BOOKIE).proc.exitCode, null, 'the bookie process is alive')
})

// --- the fuzz loop -------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32
  }
}

const NUMBERS = [0, 1, -1, -2, 0.5, 7, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 60, 2 ** 64, 1e300, -1e300, NaN, Infinity, -Infinity, -0]
const KEYS = ['op', 'groups', 'ledgerId', 'masterKey', 'digestType', 'recovery', 'entries', 'reqId', 'entryIds', 'maxBytes',
  'fence', 'previousLac', 'timeoutMs', 'withEntry', 'lac', 'persist', '__proto__', 'constructor']
const OPS = ['add', 'read', 'readLac', 'writeLac', 'cancelPoll', 'addAck', 'readResp', 'lacResp', '', 'ADD']
const DIGESTS: DigestType[] = ['crc32c', 'hmac-sha256', 'none']

/** Sets an own property, `__proto__` too (an assignment would change the prototype instead). */
function put(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true })
}

class Fuzz {
  private readonly r: () => number
  constructor(seed: number) { this.r = mulberry32(seed) }
  int(n: number): number { return Math.floor(this.r() * n) }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]! }
  bytes(max: number): Buffer { return Buffer.from(Array.from({ length: this.int(max + 1) }, () => this.int(256))) }

  value(depth = 0): unknown {
    const kinds = depth > 2 ? 6 : 8
    switch (this.int(kinds)) {
      case 0: return null
      case 1: return this.r() < 0.5
      case 2: return this.pick(NUMBERS)
      case 3: return this.int(2 ** 20) - 1000
      case 4: return this.r() < 0.5 ? this.pick(OPS) : this.bytes(12).toString('latin1')
      case 5: return this.bytes(80)
      case 6: return Array.from({ length: this.int(5) }, () => this.value(depth + 1))
      default: {
        const o: Record<string, unknown> = {}
        for (let i = this.int(5); i > 0; i--) put(o, this.r() < 0.8 ? this.pick(KEYS) : this.bytes(6).toString('hex'), this.value(depth + 1))
        return o
      }
    }
  }

  /** A valid frame of one of the request types (or of `kind`), on the fuzz ledgers. */
  template(kind?: number): Record<string, unknown> {
    const ledgerId = FUZZ_LEDGER + this.int(8)
    const reqId = this.int(1e6)
    switch (kind ?? this.int(5)) {
      case 0: {
        const type = this.pick(DIGESTS)
        const first = this.int(50)
        const entries = Array.from({ length: 1 + this.int(3) }, (_, i) =>
          encodeEntry(type, fuzzKey, ledgerId, first + i, first + i - 1, (first + i + 1) * 8, this.bytes(8)))
        return { op: 'add', groups: [{ ledgerId, masterKey: fuzzKey, digestType: type, recovery: this.r() < 0.2, entries }] }
      }
      case 1: return { op: 'read', reqId, ledgerId, entryIds: [this.int(60), this.int(60)], maxBytes: 1 << 20, ...(this.r() < 0.2 ? { fence: true, masterKey: fuzzKey } : {}) }
      case 2: return { op: 'readLac', reqId, ledgerId, ...(this.r() < 0.5 ? { previousLac: this.int(60), timeoutMs: 20 + this.int(200), withEntry: this.r() < 0.5 } : {}) }
      case 3: return { op: 'writeLac', ledgerId, masterKey: fuzzKey, lac: this.int(60) - 1, persist: this.r() < 0.5 }
      default: return { op: 'cancelPoll', reqId }
    }
  }

  /** One to three changes to a valid frame: a field replaced or removed, entry bytes damaged, the op swapped. */
  mutate(frame: Record<string, unknown>): Record<string, unknown> {
    for (let n = 1 + this.int(3); n > 0; n--) {
      const groups = frame.groups as Array<Record<string, unknown>> | undefined
      const target: Record<string, unknown> = groups?.[0] && this.r() < 0.7 && typeof groups[0] === 'object' && groups[0] !== null ? groups[0] : frame
      const key = this.r() < 0.7 ? this.pick(Object.keys(target).length > 0 ? Object.keys(target) : KEYS) : this.pick(KEYS)
      const entries = target.entries
      switch (this.int(6)) {
        case 0: delete target[key]; break
        case 1: put(target, key, this.pick(NUMBERS)); break
        case 2: if (Array.isArray(entries) && entries[0] instanceof Uint8Array) {
          const e = Buffer.from(entries[0])
          const at = this.int(Math.max(1, e.length))
          if (this.r() < 0.5) e.writeUInt32BE(this.int(2 ** 32), Math.min(at, Math.max(0, e.length - 4)) & ~3)
          else e[at] = this.int(256)
          entries[0] = this.r() < 0.2 ? e.subarray(0, this.int(e.length)) : e
          break
        } else put(target, key, this.value()); break
        case 3: frame.op = this.pick(OPS); break
        case 4: if (Array.isArray(groups)) groups.push(...groups.slice(0, 1 + this.int(3))); else put(target, key, this.value()); break
        default: put(target, key, this.value())
      }
    }
    return frame
  }

  /** A valid binary add frame: one to three groups of the fuzz ledgers. */
  binaryAdd(): Buffer {
    return Buffer.concat(Array.from({ length: 1 + this.int(3) }, () => encodeAddGroupOf((this.template(0).groups as AddGroup[])[0]!)))
  }

  /** One to three changes to a binary frame: bytes or header fields replaced, cut, grown, groups repeated. */
  mutateBinary(frame: Buffer): Buffer {
    let f = Buffer.from(frame)
    for (let n = 1 + this.int(3); n > 0 && f.length > 0; n--) {
      switch (this.int(6)) {
        case 0: f[this.int(f.length)] = this.int(256); break
        case 1: { const at = this.pick([0, 4, 8, 12, 16, 20, 24, this.int(f.length)]); if (at + 4 <= f.length) f.writeUInt32BE(this.pick([0, 1, 2 ** 32 - 1, this.int(2 ** 32), f.length, f.length + 1]), at); break }
        case 2: f = f.subarray(0, this.int(f.length)); break
        case 3: f = Buffer.concat([f, this.r() < 0.5 ? this.bytes(30) : f.subarray(0, this.int(f.length))]); break
        case 4: f[this.pick([1, 2, 3, 4, 5])] = this.pick([0, 1, 2, 3, 64, 65, 255]); break
        default: f = Buffer.concat([f, this.binaryAdd()])
      }
    }
    return f
  }

  /** A frame for a client's inbox: random values and bytes, and replies with fields of the wrong kind. */
  replyFrame(): Uint8Array {
    if (this.int(6) === 0) return this.mutateBinary(encodeAckFrame(BOOKIE, [[FUZZ_LEDGER, RC.OK, [0, 1, 5]]])!)
    switch (this.int(5)) {
      case 0: return this.bytes(40)
      case 1: return pack(this.value())
      case 2: return pack({ op: 'addAck', bookieId: this.r() < 0.5 ? BOOKIE : this.value(), acks: this.value() })
      case 3: return pack({ op: 'readResp', reqId: this.r() < 0.5 ? this.int(100) : this.value(), bookieId: BOOKIE, rc: this.value(), entries: this.value() })
      default: return pack({ op: 'lacResp', reqId: this.int(100), bookieId: this.value(), rc: RC.OK, lac: this.pick(NUMBERS), lastEntryId: this.value() })
    }
  }

  frame(): Uint8Array {
    const kind = this.int(12)
    if (kind === 10) return this.binaryAdd()
    if (kind === 11) return this.mutateBinary(this.binaryAdd())
    if (kind === 0) return this.bytes(40)
    if (kind <= 2) return pack(this.value())
    if (kind === 9) return pack(this.template())
    const packed = pack(this.mutate(this.template()))
    return kind === 3 ? packed.subarray(0, this.int(packed.length)) : packed
  }
}

t(`a seeded fuzz loop (${FUZZ_FRAMES} frames) leaves the bookie serving, and its replies well-formed`, async (ctx) => {
  const { c, nc } = ctx
  const fuzz = new Fuzz(SEED)
  const inbox = createInbox()
  const replies: unknown[] = []
  const clientInbox = (ctx.w as unknown as { w: { bookies: BookieClient } }).w.bookies.inbox
  // Binary adds are acknowledged with binary ack frames (transport/addFrame.ts), the rest in msgpack.
  let binaryAcks = 0
  const sub = nc.subscribe(inbox, {
    callback: (_e, m) => {
      if (isBinaryFrame(m.data)) binaryAcks++
      try { replies.push(isBinaryFrame(m.data) ? decodeAckFrame(m.data) ?? 'undecodable ack' : decode(m.data)) } catch { replies.push('undecodable reply') }
    },
  })
  ctx.fuzzStartedAt = Date.now()
  const deadline = Date.now() + FUZZ_MS_MAX
  let sent = 0
  while (sent < FUZZ_FRAMES && Date.now() < deadline) {
    for (let i = 0; i < 50; i++, sent++) {
      const f = fuzz.frame()
      if (fuzz.int(5) === 0) nc.publish(bookieSubject(BOOKIE), f)
      else nc.publish(bookieSubject(BOOKIE), f, { reply: inbox })
    }
    // The writer's client inbox gets its share: anyone can publish there too.
    for (let i = 0; i < 10; i++) nc.publish(clientInbox, fuzz.replyFrame())
    await nc.flush()
    assert.is(c.bookie(BOOKIE).proc.exitCode, null, `the bookie process is alive after ${sent} frames`)
  }
  // Every frame sent before this LAC read has been taken off the subject: its answer comes after theirs.
  const ping = await ask(nc, pack({ op: 'readLac', reqId: 1, ledgerId: ctx.w.ledgerId }), 30_000)
  assert.equal([ping?.op, ping?.rc], ['lacResp', RC.OK], 'the bookie answers after the fuzz')
  // Valid fuzz frames are answered after their journal sync, RocksDB read or long poll: collect
  // replies until none has come for a second (long polls park up to 220 ms).
  for (let seen = -1, until = Date.now() + 30_000; seen !== replies.length && Date.now() < until;) {
    seen = replies.length
    await new Promise((r) => setTimeout(r, 1000))
  }
  sub.unsubscribe()
  assert.ok(replies.length > sent / 3, `${replies.length} replies to ${sent} frames`)
  const malformed = replies.filter((r) => replyProblem(r) !== null)
  assert.equal(malformed.slice(0, 3), [], 'every reply the bookie sent is well-formed')
  const refused = replies.filter((r) => (r as { error?: string }).error !== undefined).length
  assert.ok(refused > sent / 4, `${refused} BAD_REQUEST replies to ${sent} frames`)
  assert.ok(replies.length - refused > sent / 50, `${replies.length - refused} answers to valid fuzz frames`)
  // Acks are one message per client per journal group commit (far fewer than the adds), in binary
  // once the inbox sent a binary add.
  assert.ok(binaryAcks >= 1, `${binaryAcks} binary acks to binary add frames`)
  console.log(`  fuzz: ${sent} frames in ${Date.now() - ctx.fuzzStartedAt} ms, ${replies.length} replies, ${refused} BAD_REQUEST, ${binaryAcks} binary acks`)
})

t('after the fuzz the bookie takes adds and serves reads through the client; refusals are logged once per interval', async (ctx) => {
  const { c, w } = ctx
  for (let i = 20; i < 40; i++) {
    await w.append(payloadFor(i))
    ctx.acked.push(payloadFor(i))
  }
  const r = await (await c.client()).openLedger(w.ledgerId)
  const got = await r.read(0, 38) // a reader sees entries up to the LAC the last entry carries
  got.forEach((e, i) => assert.ok(e.payload.equals(ctx.acked[i]!), `entry ${i}`))
  const out = c.bookie(BOOKIE).output()
  const lines = out.split('\n').filter((l) => l.includes('bad request refused')).length
  const intervals = Math.ceil((Date.now() - (ctx.fuzzStartedAt ?? Date.now())) / BAD_FRAME_LOG_INTERVAL_MS) + 2
  assert.ok(lines >= 1 && lines <= intervals, `${lines} refusal log lines (at most ${intervals})`)
})

t('kill -9 and restart on the same data: the bookie starts and serves every acknowledged entry', async (ctx) => {
  const { c, w } = ctx
  const b = c.bookie(BOOKIE)
  b.kill('SIGKILL')
  await b.exited
  await c.startBookie(1)
  assert.match(c.bookie(BOOKIE).output(), /journal replayed/)
  assert.match(c.bookie(BOOKIE).output(), /"skipped":0/, 'nothing invalid was in the journal')
  await w.close()
  const r = await (await c.client()).openLedger(w.ledgerId)
  assert.is(r.lastAddConfirmed, ctx.acked.length - 1)
  const got = await r.read(0, ctx.acked.length - 1)
  got.forEach((e, i) => assert.ok(e.payload.equals(ctx.acked[i]!), `entry ${i} after restart`))
})

t.run()
