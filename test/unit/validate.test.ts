// The wire schemas (transport/validate.ts): every frame type accepts what Quire's own client and
// bookie send and refuses, with a reason, each malformed frame issue 11 found (and their kin);
// BAD_REQUEST replies have the shape their sender waits for and pass the client's reply check;
// journal records that an older version wrote unchecked are recognised on replay.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BadFrames } from '../../actors/badFrames.ts'
import { recordProblem } from '../../actors/journalRecords.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { LIMITS, asReply, badRequestReply, entryProblem, opLabel, replyProblem, requestProblem } from '../../transport/validate.ts'
import { RC, decode, encode, rcName, readLacRequest, readRequest, type AddAck, type ReadLacResponse, type ReadResponse } from '../../transport/wire.ts'

const key = masterKeyOf('pw')
const entry = (l: number, e: number, type: 'crc32c' | 'hmac-sha256' | 'none' = 'crc32c'): Buffer =>
  encodeEntry(type, key, l, e, e - 1, (e + 1) * 4, Buffer.from('data'))
const group = (over: Record<string, unknown> = {}) =>
  ({ ledgerId: 7, masterKey: key, digestType: 'crc32c', recovery: false, entries: [entry(7, 0), entry(7, 1)], ...over })
const add = (over: Record<string, unknown> = {}) => ({ op: 'add', groups: [group(over)] })
/** Through msgpack, as a bookie receives it. */
const wire = (m: unknown): unknown => decode(encode(m as never))

test('what Quire sends passes', () => {
  const frames: unknown[] = [
    add(), add({ recovery: true, digestType: 'hmac-sha256', entries: [entry(7, 5, 'hmac-sha256')] }),
    add({ digestType: 'none', entries: [entry(7, 0, 'none')] }),
    readRequest(1, 7, [0, 1, 2], 4 << 20), readRequest(2, 7, [3], 8 << 20, { masterKey: key }),
    readLacRequest(3, 7), readLacRequest(4, 7, { masterKey: key }),
    { op: 'readLac', reqId: 5, ledgerId: 7, previousLac: -1, timeoutMs: 1500, withEntry: true },
    { op: 'writeLac', ledgerId: 7, masterKey: key, lac: 41, persist: false },
    { op: 'writeLac', ledgerId: 7, masterKey: key, lac: -1 },
    { op: 'cancelPoll', reqId: 9 },
  ]
  for (const f of frames) assert.is(requestProblem(wire(f)), null, JSON.stringify(f))
})

test('the frames of issue 11 and their kin are refused with a reason', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /not a map/], [undefined, /not a map/], [42, /not a map/], ['add', /not a map/], [[], /not a map/],
    [{}, /unknown op missing/], [{ op: 'drop' }, /unknown op "drop"/],
    [{ op: 'add' }, /groups is missing/],
    [{ op: 'add', groups: [] }, /groups has 0 items/],
    [{ op: 'add', groups: [{}] }, /groups\[0\]\.ledgerId is missing/],
    [{ op: 'add', groups: [null] }, /groups\[0\] is null/],
    [add({ ledgerId: 2 ** 60 }), /ledgerId is number/],
    [add({ ledgerId: -1 }), /ledgerId/], [add({ ledgerId: 1.5 }), /ledgerId/], [add({ ledgerId: '7' }), /ledgerId/],
    [add({ masterKey: 42 }), /masterKey is number 42/],
    [add({ masterKey: null }), /masterKey is null/],
    [add({ masterKey: Buffer.alloc(0) }), /masterKey is 0 bytes/],
    [add({ masterKey: Buffer.alloc(LIMITS.masterKeyBytes + 1) }), /masterKey is 65 bytes/],
    [add({ digestType: 42 }), /digestType is number 42/],
    [add({ digestType: 'md5' }), /digestType is "md5"/],
    [add({ recovery: 'yes' }), /recovery/],
    [add({ entries: [] }), /entries has 0 items/],
    [add({ entries: [42] }), /entries\[0\]: entry is number/],
    [add({ entries: [Buffer.alloc(10)] }), /shorter than its header/],
    [add({ entries: [entry(8, 0)] }), /names ledger 8, not 7/],
    [add({ entries: [Buffer.concat([entry(7, 0), Buffer.from('x')])] }), /its header and crc32c digest say/],
    [add({ entries: [entry(7, 0, 'none')] }), /its header and crc32c digest say/],
    [{ op: 'writeLac', ledgerId: 7, masterKey: null, lac: 3 }, /masterKey is null/],
    [{ op: 'writeLac', ledgerId: 7, masterKey: key, lac: 1e300 }, /lac is number 1e\+300/],
    [{ op: 'writeLac', ledgerId: 7, masterKey: key, lac: -2 }, /lac/],
    [{ op: 'writeLac', ledgerId: 7, masterKey: key, lac: 3, persist: 1 }, /persist/],
    [{ op: 'read', reqId: 1, ledgerId: 7, entryIds: [2 ** 53], maxBytes: 10 }, /entryIds\[0\]/],
    [{ op: 'read', reqId: 1, ledgerId: 7, entryIds: 3, maxBytes: 10 }, /entryIds is number/],
    [{ op: 'read', reqId: 1, ledgerId: 7, entryIds: new Array(LIMITS.idsPerRead + 1).fill(0), maxBytes: 10 }, /entryIds has 65537 items/],
    [{ op: 'read', reqId: 1, ledgerId: 7, entryIds: [0], maxBytes: -1 }, /maxBytes/],
    [{ op: 'read', reqId: -1, ledgerId: 7, entryIds: [0], maxBytes: 1 }, /reqId/],
    [{ op: 'read', reqId: 1, ledgerId: 7, entryIds: [0], maxBytes: 1, fence: true, masterKey: 'k' }, /masterKey/],
    [{ op: 'readLac', reqId: 1, ledgerId: 7, previousLac: NaN }, /previousLac/],
    [{ op: 'readLac', reqId: 1, ledgerId: 7, timeoutMs: -5 }, /timeoutMs/],
    [{ op: 'readLac', reqId: 1, ledgerId: 7, timeoutMs: Infinity }, /timeoutMs/],
    [{ op: 'readLac', reqId: 1, ledgerId: 7, withEntry: null }, /withEntry/],
    [{ op: 'cancelPoll' }, /reqId is missing/],
  ]
  for (const [frame, why] of cases) {
    const p = requestProblem(wire(frame))
    assert.ok(p !== null, `refused: ${JSON.stringify(frame)?.slice(0, 80)}`)
    assert.match(p!, why)
  }
})

test('an entry header with an id past 2^53 is refused (it would fail RocksDB\'s assertion on every replay)', () => {
  const e = entry(7, 0)
  e.writeUInt32BE(2 ** 28, 8) // entry id 2^60
  assert.match(entryProblem(e, 7, null)!, /entry id .* out of range/)
  const lac = entry(7, 0)
  lac.writeUInt32BE(0xffffffff, 16) // LAC + 1 near 2^64
  assert.match(entryProblem(lac, 7, null)!, /LAC .* out of range/)
})

test('BAD_REQUEST replies have the shape their sender waits for, echo a valid reqId, and pass the client check', () => {
  const ack = badRequestReply(wire(add({ digestType: 42 })), 'b1', 'digestType is number 42') as AddAck
  assert.equal(ack.acks, [[7, RC.BAD_REQUEST, [0, 1]]])
  assert.is(ack.error, 'digestType is number 42')
  const noIds = badRequestReply(wire({ op: 'add', groups: [{}] }), 'b1', 'x') as AddAck
  assert.equal([noIds.op, noIds.acks], ['addAck', []])
  const lac = badRequestReply(wire({ op: 'readLac', reqId: 12, ledgerId: 2 ** 60 }), 'b1', 'x') as ReadLacResponse
  assert.equal([lac.op, lac.reqId, lac.rc], ['lacResp', 12, RC.BAD_REQUEST])
  const read = badRequestReply(wire({ op: 'read', reqId: 'one' }), 'b1', 'x') as ReadResponse
  assert.equal([read.op, read.reqId, read.rc, read.entries], ['readResp', -1, RC.BAD_REQUEST, []])
  const nil = badRequestReply(null, 'b1', 'frame is null, not a map') as ReadResponse
  assert.equal([nil.op, nil.reqId, nil.rc], ['readResp', -1, RC.BAD_REQUEST])
  for (const r of [ack, noIds, lac, read, nil]) assert.is(replyProblem(wire(r)), null)
  assert.is(badRequestReply(null, 'b1', 'y'.repeat(5000)).op, 'readResp')
  assert.is((badRequestReply(null, 'b1', 'y'.repeat(5000)) as ReadResponse).error!.length, LIMITS.textChars)
})

test('IN_LIMBO replies pass: per entry and as a whole read or LAC reply (a bookie that cannot vouch)', () => {
  const perEntry: ReadResponse = { op: 'readResp', reqId: 1, bookieId: 'b1', rc: RC.OK, entries: [[RC.OK, Buffer.alloc(40)], [RC.IN_LIMBO, null]] }
  const whole: ReadResponse = { op: 'readResp', reqId: 2, bookieId: 'b1', rc: RC.IN_LIMBO, entries: [] }
  const lac: ReadLacResponse = { op: 'lacResp', reqId: 3, bookieId: 'b1', rc: RC.IN_LIMBO, lac: -1, lastEntryId: -1 }
  for (const r of [perEntry, whole, lac]) assert.is(replyProblem(wire(r)), null)
  assert.is(rcName(RC.IN_LIMBO), 'IN_LIMBO')
})

test('op labels are bounded: unknown ops and non-maps are `other`', () => {
  assert.equal([opLabel({ op: 'add' }), opLabel({ op: 'writeLac' }), opLabel({ op: 'x'.repeat(100) }), opLabel(null), opLabel({ op: 'toString' })],
    ['add', 'writeLac', 'other', 'other', 'other'])
})

test('the client takes only well-formed replies', () => {
  const ok: unknown[] = [
    { op: 'addAck', bookieId: 'b1', acks: [[7, RC.OK, [0, 1]], [8, RC.FENCED, [3]]] },
    { op: 'readResp', reqId: 4, bookieId: 'b1', rc: RC.OK, entries: [[RC.OK, entry(7, 0)], [RC.NO_SUCH_ENTRY, null]] },
    { op: 'lacResp', reqId: 5, bookieId: 'b1', rc: RC.OK, lac: 3, lastEntryId: 4, entry: entry(7, 3) },
  ]
  for (const m of ok) assert.ok(asReply(wire(m)), JSON.stringify(m))
  const bad: unknown[] = [
    null, 7, { op: 'addAck', bookieId: 'b1' }, { op: 'addAck', bookieId: 'b1', acks: [[7, 0]] },
    { op: 'addAck', bookieId: 'b1', acks: [[7, 0, [2 ** 60]]] }, { op: 'addAck', acks: [] },
    { op: 'addAck', bookieId: 'b1', acks: [[7, -1, [0]]] },
    { op: 'readResp', reqId: 4, bookieId: 'b1', rc: RC.OK, entries: [[RC.OK, 'data']] },
    { op: 'readResp', reqId: 4, bookieId: 'b1', rc: RC.OK },
    { op: 'readResp', reqId: 1.5, bookieId: 'b1', rc: RC.OK, entries: [] },
    { op: 'lacResp', reqId: 5, bookieId: 'b1', rc: RC.OK, lac: 1e300, lastEntryId: 4 },
    { op: 'lacResp', reqId: 5, bookieId: 'b1', rc: RC.OK, lac: 3, lastEntryId: 4, entry: 5 },
    { op: 'add', groups: [] },
  ]
  for (const m of bad) assert.is(asReply(wire(m)), null, JSON.stringify(m))
})

test('a refusal is answered when it has a reply subject, counted always, logged once per interval with a count of the rest', () => {
  const sent: Array<[string, unknown]> = []
  const logs: Array<Record<string, unknown> | undefined> = []
  let now = 0
  const b = new BadFrames('b1', (s, m) => sent.push([s, m]), (_m, f) => logs.push(f), 10_000, () => now)
  b.refuse(null, 'inbox.1', 'frame is null, not a map')
  b.refuse({ op: 'add' }, null, 'groups is missing')
  for (let i = 0; i < 50; i++) b.refuse({ op: 'writeLac' }, null, 'lac is number 1e+300')
  assert.is(b.total, 52)
  assert.is(sent.length, 1)
  assert.is(sent[0]![0], 'inbox.1')
  assert.is(logs.length, 1)
  assert.is(logs[0]!.unloggedSinceLast, 0)
  now = 10_000
  b.refuse({ op: 'read' }, null, 'reqId is missing')
  assert.is(logs.length, 2)
  assert.equal([logs[1]!.op, logs[1]!.unloggedSinceLast], ['read', 51])
})

test('journal records written unchecked by an older version are recognised on replay', () => {
  const big = entry(7, 0)
  big.writeUInt32BE(2 ** 28, 8)
  assert.is(recordProblem({ t: 'add', l: 7, e: [entry(7, 0)] }), null)
  assert.is(recordProblem({ t: 'key', l: 7, k: key, d: 'crc32c' }), null)
  assert.is(recordProblem({ t: 'key', l: 7, k: key }), null, 'older key records carry no digest type')
  assert.is(recordProblem({ t: 'fence', l: 7 }), null)
  assert.is(recordProblem({ t: 'lac', l: 7, lac: -1 }), null)
  assert.match(recordProblem({ t: 'add', l: 7, e: [big] })!, /entry id/)
  assert.match(recordProblem({ t: 'key', l: 7, k: 42, d: 'crc32c' })!, /master key/)
  assert.match(recordProblem({ t: 'key', l: 7, k: key, d: 42 })!, /digest type 42/)
  assert.match(recordProblem({ t: 'lac', l: 7, lac: 1e300 })!, /LAC 1e\+300/)
  assert.match(recordProblem({ t: 'fence', l: -3 })!, /ledger -3/)
  assert.match(recordProblem(null)!, /null/)
  assert.match(recordProblem({ t: 'zap', l: 7 })!, /unknown record type/)
})

test.run()
