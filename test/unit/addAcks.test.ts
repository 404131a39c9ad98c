// A bookie's add acks (actors/addAcks.ts): everything answered in one turn of the event loop goes
// to each client as one message, also when the answers come from several journal group commits
// finishing one after the other in that turn (each in its own microtask, as the journal runs them
// under load); a later turn gets its own message; binary to clients that sent binary adds.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { AddAcks } from '../../actors/addAcks.ts'
import { decodeAckFrame } from '../../transport/addFrame.ts'
import { RC, type WireMessage } from '../../transport/wire.ts'

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))
const microtask = (): Promise<void> => Promise.resolve()

test('acks of group commits finishing in one turn go to each client as one message', async () => {
  const msgpack: Array<[string, WireMessage]> = []
  const binary: Array<[string, Uint8Array]> = []
  const acks = new AddAcks('b1', (s, m) => msgpack.push([s, m]), (s, f) => binary.push([s, f]))
  acks.speaksBinary('client-a')
  // Three group commits in one turn, each resolving its adds in a microtask of its own.
  acks.queue('client-a', 1, RC.OK, [0, 1])
  acks.queue('client-b', 7, RC.OK, [4])
  await microtask()
  acks.queue('client-a', 2, RC.OK, [0])
  await microtask()
  acks.queue('client-a', 1, RC.OK, [2])
  acks.queue('client-a', 3, RC.FENCED, [9])
  await microtask()
  assert.is(binary.length + msgpack.length, 0, 'nothing sent before the turn ends')
  await turn()
  assert.is(binary.length, 1, 'one message to the binary client')
  assert.is(msgpack.length, 1, 'one message to the msgpack client')
  assert.equal(decodeAckFrame(binary[0]![1])?.acks, [[1, RC.OK, [0, 1, 2]], [2, RC.OK, [0]], [3, RC.FENCED, [9]]])
  assert.equal(msgpack[0], ['client-b', { op: 'addAck', bookieId: 'b1', acks: [[7, RC.OK, [4]]] }])
  // A later turn: its own message.
  acks.queue('client-a', 1, RC.OK, [3])
  await turn()
  assert.is(binary.length, 2)
  assert.equal(decodeAckFrame(binary[1]![1])?.acks, [[1, RC.OK, [3]]])
})

test.run()
