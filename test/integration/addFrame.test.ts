// Binary add and ack frames (transport/addFrame.ts): round trips; every malformed frame refused
// with a reason and the adds still readable; a writer's entries encoded once and the same group
// buffer handed to every bookie of its write set (no per-bookie copy); nats.js taking the gathered
// message as it is; and a real bookie that takes binary adds (binary acks back), still takes
// msgpack adds from older clients (msgpack acks back), and answers a bad binary frame BAD_REQUEST.

import { createInbox, type NatsConnection } from '@nats-io/transport-node'
import { Packr } from 'msgpackr'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieClient } from '../../client/bookieClient.ts'
import {
  FRAME_VERSION, GROUP_HEADER_BYTES, decodeAckFrame, decodeAddFrame, encodeAckFrame, encodeAddGroup, encodeAddGroupOf, isBinaryFrame,
  PAYLOAD_PART_BYTES_MIN,
} from '../../transport/addFrame.ts'
import { DIGEST_TYPES, decodeEntry, encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { publishGathered, publishesGathered } from '../../transport/gatheredPublish.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC, bookieSubject, decode } from '../../transport/wire.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'

const key = masterKeyOf('frames')
const payload = (i: number): Buffer => Buffer.from(`entry-${i}-`.repeat(i + 1))
const entries = (ids: number[]) => ids.map((id) => ({ entryId: id, ledgerLength: (id + 1) * 100, payload: payload(id) }))

/** A group as one buffer: its parts side by side, what the bookie receives. */
const group = (...args: Parameters<typeof encodeAddGroup>): Buffer => Buffer.concat(encodeAddGroup(...args).parts)

const unit = suite('add frame codec')

unit('groups of two ledgers decode to the AddRequest a msgpack frame gives, entries as views of the frame', () => {
  for (const type of DIGEST_TYPES) {
    const frame = Buffer.concat([group(7, key, type, 4, entries([5, 6, 7])), encodeAddGroupOf({ ledgerId: 2 ** 40, masterKey: key, digestType: type, recovery: true, entries: [encodeEntry(type, key, 2 ** 40, 0, -1, 3, Buffer.from('abc'))] })])
    assert.ok(isBinaryFrame(frame))
    const r = decodeAddFrame(frame)
    if (!r.ok) throw new Error(r.reason)
    const [a, b] = r.req.groups
    assert.equal([a!.ledgerId, a!.digestType, a!.recovery, Buffer.from(a!.masterKey).equals(key), a!.entries.length], [7, type, false, true, 3])
    a!.entries.forEach((e, i) => {
      const d = decodeEntry(type, key, e, { ledgerId: 7, entryId: 5 + i })
      assert.ok(d.payload.equals(payload(5 + i)), `${type} entry ${5 + i}`)
      assert.equal([d.header.lac, d.header.ledgerLength], [4, (6 + i) * 100])
      assert.is(e.buffer, frame.buffer, 'a view, not a copy')
    })
    assert.equal([b!.ledgerId, b!.recovery, b!.entries.length], [2 ** 40, true, 1])
  }
})

unit('a ledger\'s groups of several write sets decode to one group, as a msgpack frame has it; another key stays apart', () => {
  const other = masterKeyOf('other')
  const frame = Buffer.concat([
    group(7, key, 'crc32c', -1, entries([0, 3])), group(8, key, 'crc32c', -1, entries([0])),
    group(7, key, 'crc32c', -1, entries([2, 5])), group(7, other, 'crc32c', -1, entries([6])),
  ])
  const r = decodeAddFrame(frame)
  if (!r.ok) throw new Error(r.reason)
  const ids = (g: { entries: Uint8Array[] }): number[] => g.entries.map((e) => Buffer.from(e).readUInt32BE(12))
  assert.equal(r.req.groups.map((g) => [g.ledgerId, ids(g)]), [[7, [0, 2, 3, 5]], [8, [0]], [7, [6]]], 'joined in id order')
})

/** A valid frame, mutated by `f`; the reason it is refused. */
function refused(f: (b: Buffer) => Buffer): { reason: string; readable: number } {
  const good = group(9, key, 'crc32c', -1, entries([0, 1]))
  const r = decodeAddFrame(f(Buffer.from(good)))
  assert.not.ok(r.ok, 'refused')
  if (r.ok) throw new Error('accepted')
  return { reason: r.reason, readable: r.readable?.groups.reduce((n, g) => n + g.entries.length, 0) ?? -1 }
}

unit('bad sizes, truncation, unknown versions and bad fields are refused with a reason, never thrown', () => {
  const firstEntryLen = (b: Buffer): number => b.readUInt32BE(GROUP_HEADER_BYTES + key.byteLength)
  const cases: Array<[string, (b: Buffer) => Buffer, RegExp, number]> = [
    ['truncated by one byte', (b) => b.subarray(0, b.length - 1), /truncated/, 1],
    ['only the magic', (b) => b.subarray(0, 1), /truncated/, -1],
    ['cut inside the header', (b) => b.subarray(0, 10), /truncated/, 0],
    ['unknown version', (b) => { b[1] = FRAME_VERSION + 1; return b }, /unknown version/, 0],
    ['unknown kind', (b) => { b[2] = 9; return b }, /kind 9/, -1],
    ['unknown flags', (b) => { b[3] = 0x80; return b }, /flags/, 0],
    ['unknown digest type', (b) => { b[4] = 9; return b }, /digest type 9/, 0],
    ['empty master key', (b) => { b[5] = 0; return b }, /master key of 0 bytes/, 0],
    ['no entries', (b) => { b.writeUInt32BE(0, 8); return b }, /0 entries/, 0],
    ['more entries than bytes', (b) => { b.writeUInt32BE(2 ** 31, 8); return b }, /entries|bytes/, 0],
    ['group longer than the frame', (b) => { b.writeUInt32BE(b.length + 1, 12); return b }, /truncated/, 2],
    ['group shorter than its entries', (b) => { b.writeUInt32BE(b.length - 5, 12); return b }, /says|after|truncated|start/, 1],
    ['ledger id 2^60', (b) => { b.writeUInt32BE(2 ** 28, 16); return b }, /out of range/, 0],
    ['entry length past its group', (b) => { b.writeUInt32BE(1e6, GROUP_HEADER_BYTES + key.byteLength); return b }, /says 1000000 bytes/, 0],
    ['second entry one byte short', (b) => { const o = GROUP_HEADER_BYTES + key.byteLength + 4 + firstEntryLen(b); b.writeUInt32BE(b.readUInt32BE(o) - 1, o); return b }, /entries\[1\]/, 1],
    ['entry of another ledger', (b) => { b.writeUInt32BE(8, GROUP_HEADER_BYTES + key.byteLength + 4 + 4); return b }, /names ledger 8/, 0],
    ['a byte after the last group', (b) => Buffer.concat([b, Buffer.from([0])]), /truncated/, 2],
    ['bytes after the last group', (b) => Buffer.concat([b, Buffer.from([0, 1, 1])]), /does not start/, 2],
    ['a second group of an unknown version', (b) => { const c = Buffer.from(b); c[1] = 2; return Buffer.concat([b, c]) }, /unknown version 2/, 2],
  ]
  for (const [what, f, why, readable] of cases) {
    const r = refused(f)
    assert.match(r.reason, why, `${what}: ${r.reason}`)
    assert.is(r.readable, readable, `${what}: adds still readable for the BAD_REQUEST answer`)
  }
  const empty = decodeAddFrame(new Uint8Array(0))
  assert.not.ok(empty.ok)
})

unit('ack frames: runs of ids round trip; malformed ones decode to null', () => {
  const acks: Array<[number, number, number[]]> = [[3, RC.OK, [0, 1, 2, 7, 8, 4]], [2 ** 50, RC.FENCED, [2 ** 52]], [5, RC.OK, []]]
  const frame = encodeAckFrame('bookie-ä', acks)!
  assert.ok(isBinaryFrame(frame))
  assert.equal(decodeAckFrame(frame), { op: 'addAck', bookieId: 'bookie-ä', acks })
  assert.ok(frame.byteLength < 128, `small: ${frame.byteLength} bytes`)
  assert.is(encodeAckFrame('x'.repeat(256), acks), null, 'a bookie id past 255 bytes goes msgpack')
  assert.is(decodeAckFrame(frame.subarray(0, frame.length - 1)), null, 'truncated')
  assert.is(decodeAckFrame(Buffer.concat([frame, Buffer.from([0])])), null, 'trailing bytes')
  const v2 = Buffer.from(frame)
  v2[1] = 2
  assert.is(decodeAckFrame(v2), null, 'unknown version')
  // A run of 2^32-1 ids must be refused before anything is allocated for it.
  const huge = encodeAckFrame('b', [[1, RC.OK, [0]]])!
  huge.writeUInt32BE(0xffffffff, huge.length - 4)
  assert.is(decodeAckFrame(huge), null, 'run past the entry limit')
})

unit('a writer\'s entries are encoded once: every bookie of a write set is handed the same group buffer', () => {
  const sent: Array<{ subject: string; parts: Uint8Array[] }> = []
  const nc = {
    info: { max_payload: 1024 * 1024 },
    subscribe: () => ({ unsubscribe: () => {} }),
    status: async function* () {},
    isClosed: () => false,
    protocol: {
      outBytes: 0, outMsgs: 0,
      sendCommand(cmd: string, ...parts: Uint8Array[]) {
        sent.push({ subject: cmd.split(' ')[1]!, parts: parts.slice(0, -1) })
      },
    },
  } as unknown as NatsConnection
  const client = new BookieClient(nc)
  // E3/Qw2: entry i goes to bookies i, i+1 (mod 3).
  const ens = ['b0', 'b1', 'b2']
  client.queueEntries(11, key, 'crc32c', 2, [0, 1, 2, 3, 4, 5].map((id) => ({ ...entries([id])[0]!, bookies: [ens[id % 3]!, ens[(id + 1) % 3]!] })))
  client.flush()
  assert.equal(sent.map((m) => m.subject).sort(), ['quire.bookie.b0', 'quire.bookie.b1', 'quire.bookie.b2'], 'one message per bookie')
  const holders = new Map<Uint8Array, string[]>()
  for (const m of sent) for (const p of m.parts) holders.set(p, [...(holders.get(p) ?? []), m.subject.split('.')[2]!])
  assert.is(holders.size, 3, 'one group per write set')
  for (const [group, bookies] of holders) {
    const r = decodeAddFrame(group)
    if (!r.ok) throw new Error(r.reason)
    const ids = r.req.groups[0]!.entries.map((e) => Buffer.from(e).readUInt32BE(12))
    assert.equal(bookies.sort(), [ens[ids[0]! % 3]!, ens[(ids[0]! + 1) % 3]!].sort(), `group of ${ids} shared by its write set`)
  }
  for (const m of sent) {
    const r = decodeAddFrame(Buffer.concat(m.parts))
    assert.ok(r.ok && r.req.groups.length === 1 && r.req.groups[0]!.entries.length === 4, 'each bookie gets the 4 entries of its write sets, one group for the ledger')
  }
})

unit('a payload of PAYLOAD_PART_BYTES_MIN or more is its own part, the caller\'s buffer as it is; the bytes are those of a copied group', () => {
  for (const type of DIGEST_TYPES) {
    const big = Buffer.alloc(PAYLOAD_PART_BYTES_MIN, 7)
    const bigger = Buffer.alloc(PAYLOAD_PART_BYTES_MIN * 4 + 3, 9)
    const small = Buffer.from('small')
    const list = [big, small, bigger, Buffer.alloc(PAYLOAD_PART_BYTES_MIN - 1, 5)].map((p, i) => ({ entryId: 20 + i, ledgerLength: 1000 * (i + 1), payload: p }))
    const g = encodeAddGroup(12, key, type, 19, list)
    assert.ok(g.parts.includes(big) && g.parts.includes(bigger), `${type}: large payloads not copied`)
    assert.not.ok(g.parts.some((p) => p.buffer === small.buffer), `${type}: a small payload is copied into the group`)
    assert.is(g.byteLength, g.parts.reduce((n, p) => n + p.byteLength, 0))
    const copied = encodeAddGroupOf({
      ledgerId: 12, masterKey: key, digestType: type, recovery: false,
      entries: list.map((e) => encodeEntry(type, key, 12, e.entryId, 19, e.ledgerLength, e.payload)),
    })
    assert.ok(Buffer.concat(g.parts).equals(copied), `${type}: same bytes as the group with every payload copied in`)
    const r = decodeAddFrame(Buffer.concat(g.parts))
    assert.ok(r.ok && r.req.groups[0]!.entries.length === 4)
  }
})

unit.run()

// --- on the wire: nats-server and a bookie process -----------------------------------------

interface Ctx { c: TestCluster; nc: NatsConnection }
const wire = suite<Ctx>('add frames on the wire')
wire.before(async (ctx) => {
  ctx.c = await startCluster({ bookies: 1 })
  ctx.nc = await connectNats(ctx.c.nats.url)
})
wire.after(async (ctx) => {
  await ctx.nc?.close().catch(() => {})
  await ctx.c?.stop()
})

/** The first message on a fresh inbox after `send(inbox)`. */
async function answer(nc: NatsConnection, send: (inbox: string) => void): Promise<Uint8Array> {
  const inbox = createInbox()
  const sub = nc.subscribe(inbox, { max: 1, timeout: 10_000 })
  await nc.flush()
  send(inbox)
  for await (const m of sub) return m.data
  throw new Error('no answer')
}

wire('the installed nats.js takes a gathered message as it is, and delivers it whole', async ({ nc }) => {
  assert.ok(publishesGathered(nc), 'gathered path in use (a nats.js upgrade that removed it would copy per bookie)')
  const parts = [Buffer.from('one '), Buffer.alloc(70_000, 7), Buffer.from(' three')]
  const got = await answer(nc, (inbox) => publishGathered(nc, inbox, parts, 'reply.here'))
  assert.ok(Buffer.from(got).equals(Buffer.concat(parts)))
})

wire('a bookie takes binary adds (binary acks), msgpack adds of older clients (msgpack acks), and refuses a bad binary frame', async ({ nc }) => {
  const subject = bookieSubject('bookie-1')
  const ledger = 2 ** 41
  const bin = await answer(nc, (inbox) => nc.publish(subject, group(ledger, key, 'crc32c', -1, entries([0, 1])), { reply: inbox }))
  assert.ok(isBinaryFrame(bin), 'binary ack')
  assert.equal(decodeAckFrame(bin)?.acks, [[ledger, RC.OK, [0, 1]]])

  const old = new Packr({ useRecords: false })
  const oldEntry = encodeEntry('crc32c', key, ledger, 2, 1, 300, payload(2))
  const msg = await answer(nc, (inbox) => nc.publish(subject, old.pack({ op: 'add', groups: [{ ledgerId: ledger, masterKey: key, digestType: 'crc32c', recovery: false, entries: [oldEntry] }] }), { reply: inbox }))
  assert.not.ok(isBinaryFrame(msg), 'an older client gets msgpack acks')
  assert.equal((decode(msg) as { acks: unknown }).acks, [[ledger, RC.OK, [2]]])

  const bad = group(ledger, key, 'crc32c', -1, entries([3, 4]))
  const refusal = decode(await answer(nc, (inbox) => nc.publish(subject, bad.subarray(0, bad.length - 2), { reply: inbox }))) as { acks: unknown; error: string }
  assert.equal(refusal.acks, [[ledger, RC.BAD_REQUEST, [3]]], 'the readable entry is named')
  assert.match(refusal.error, /truncated/)
  const v9 = Buffer.from(bad)
  v9[1] = 9
  const unknown = decode(await answer(nc, (inbox) => nc.publish(subject, v9, { reply: inbox }))) as { op: string; acks: unknown; error: string }
  assert.equal([unknown.op, unknown.acks], ['addAck', []])
  assert.match(unknown.error, /unknown version 9/)

  const read = decode(await answer(nc, (inbox) => nc.publish(subject, old.pack({ op: 'read', reqId: 1, ledgerId: ledger, entryIds: [0, 1, 2, 3], maxBytes: 1 << 20, masterKey: key }), { reply: inbox }))) as { entries: Array<[number, Uint8Array | null]> }
  assert.equal(read.entries.map(([rc]) => rc), [RC.OK, RC.OK, RC.OK, RC.NO_SUCH_ENTRY], 'both formats stored; the refused frame nothing')
  read.entries.slice(0, 3).forEach(([, e], i) => assert.ok(decodeEntry('crc32c', key, e!, { ledgerId: ledger, entryId: i }).payload.equals(payload(i))))
})

wire.run()
