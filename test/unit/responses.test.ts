// The response classes (machines/responses.ts, PROTOCOL.md "Response classes"): every code has
// its class; only explicit negatives are evidence, and a read's entry is "absent" only on an
// explicit no.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { RC, classify, entryAnswer, rcName } from '../../machines/responses.ts'
import { RC as WIRE_RC } from '../../transport/wire.ts'

const test = suite('response classes')

test('each code has its class; codes this build does not know are unknown', () => {
  const classes = Object.fromEntries(Object.entries(RC).map(([name, rc]) => [name, classify(rc)]))
  assert.equal(classes, {
    OK: 'ok', NO_SUCH_ENTRY: 'negative', NO_SUCH_LEDGER: 'negative', FENCED: 'negative', UNAUTHORIZED: 'negative',
    READ_ONLY: 'negative', CORRUPT: 'unknown', TOO_LARGE: 'negative', STOPPING: 'unknown', ERROR: 'unknown',
    BAD_REQUEST: 'negative', IN_LIMBO: 'unknown',
  })
  for (const rc of [-1, 12, 99, 255, 1.5]) assert.is(classify(rc), 'unknown', `code ${rc}`)
  assert.is(rcName(RC.IN_LIMBO), 'IN_LIMBO')
  assert.is(rcName(42), 'RC_42')
  assert.is(WIRE_RC, RC, 'one definition: the wire re-exports it')
})

test('an entry of a read reply: absent only on an explicit no; limbo, errors and a short reply are unknown', () => {
  const data = new Uint8Array([1])
  const cases: Array<[number, [number, Uint8Array | null] | undefined, string]> = [
    [RC.OK, [RC.OK, data], 'ok'],
    [RC.OK, [RC.OK, null], 'unknown'],
    [RC.OK, [RC.NO_SUCH_ENTRY, null], 'absent'],
    [RC.OK, [RC.NO_SUCH_LEDGER, null], 'absent'],
    [RC.OK, [RC.IN_LIMBO, null], 'unknown'],
    [RC.OK, [RC.CORRUPT, null], 'corrupt'],
    [RC.OK, [RC.ERROR, null], 'unknown'],
    [RC.OK, undefined, 'unknown'],
    [RC.NO_SUCH_LEDGER, undefined, 'absent'],
    [RC.IN_LIMBO, undefined, 'unknown'],
    [RC.UNAUTHORIZED, undefined, 'unknown'],
    [RC.STOPPING, [RC.OK, data], 'unknown'],
  ]
  for (const [reply, entry, want] of cases) assert.is(entryAnswer(reply, entry), want, `${rcName(reply)} ${JSON.stringify(entry?.[0] === undefined ? null : rcName(entry[0]))}`)
})

test.run()
