// `quire log ...` as real processes on a real cluster: create (with rolling options), list by
// prefix, append (positions printed, segments rolled), tail (from the start, with a subscriber
// that commits and resumes, ending when the log is sealed), info, subscribers, truncate, delete;
// and the typed errors printed as `error CODE: message`, exit 1.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startCluster, type TestCluster } from '../support/cluster.ts'
import { cleanEnv, quire, show, type Run } from '../support/nodes.ts'

const test = suite<{ c: TestCluster }>('quire log')
test.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3, heartbeatMs: 300 }) })
test.after(async (ctx) => { await ctx.c?.stop() })

const log = (c: TestCluster, ...args: string[]): Promise<Run> => quire(['log', ...args, '--nats', c.nats.url], cleanEnv(), 60_000)
const lines = (r: Run): string[] => r.stdout.split('\n').filter((l) => l.length > 0)

function typedError(r: Run, code: string): void {
  assert.is(r.code, 1, show(r))
  assert.match(r.stderr, new RegExp(`^error ${code}: `, 'm'), show(r))
  assert.not.match(r.stderr, /\n\s+at /)
}

test('create, append across segments, list, tail with a subscriber, seal, info, truncate, delete', async ({ c }) => {
  assert.equal(lines(await log(c, 'create', 'app/events', '--segment-records-max', '3')), ['log app/events created'])
  typedError(await log(c, 'create', 'app/events'), 'LOG_EXISTS')
  typedError(await log(c, 'create', 'bad name'), 'INVALID_LOG_NAME')
  const appended = await log(c, 'append', 'app/events', 'one', 'two', 'three', 'four', 'five')
  assert.is(appended.code, 0, show(appended))
  assert.equal(lines(appended), ['1:0:0', '1:0:1', '1:0:2', '2:0:0', '2:0:1'])
  assert.equal(lines(await log(c, 'list', 'app/')), ['app/events'])

  const two = await log(c, 'tail', 'app/events', '--subscriber', 's1', '--max', '2')
  assert.equal(lines(two), ['1:0:0\t0\t"one"', '1:0:1\t1\t"two"'])
  assert.match((await log(c, 'subscribers', 'app/events')).stdout, /^s1\t1:0:1\tcommitted /m)
  assert.equal(lines(await log(c, 'tail', 'app/events', '--subscriber', 's1', '--max', '1')), ['1:0:2\t2\t"three"'])
  assert.equal(lines(await log(c, 'tail', 'app/events', '--txid', '3', '--max', '1')), ['2:0:0\t3\t"four"'])

  assert.is((await log(c, 'append', 'app/events', '--seal', 'six')).code, 0)
  const all = await log(c, 'tail', 'app/events')
  assert.is(all.code, 0, show(all))
  assert.equal(lines(all).map((l) => l.split('\t')[2]), ['"one"', '"two"', '"three"', '"four"', '"five"', '"six"', undefined])
  assert.is(lines(all).at(-1), 'log app/events sealed')

  const info = JSON.parse((await log(c, 'info', 'app/events')).stdout) as { sealed: boolean; segments: Array<{ segmentSeq: number; state: string; recordCount: number }>; subscribers: Array<{ subscriber: string }> }
  assert.is(info.sealed, true)
  assert.ok(info.segments.length >= 2 && info.segments.every((s) => s.state === 'closed'), JSON.stringify(info.segments))
  assert.equal(info.subscribers.map((s) => s.subscriber), ['s1'])

  assert.equal(lines(await log(c, 'truncate', 'app/events', '2:0:0')), ['log app/events: segments 1 truncated'])
  typedError(await log(c, 'tail', 'app/events', '--from', '1:0:0'), 'TRUNCATED')
  typedError(await log(c, 'tail', 'app/events', '--from', 'nonsense'), 'INVALID_POSITION')
  assert.equal(lines(await log(c, 'subscribers', 'app/events', '--delete', 's1')), ['subscriber s1 of log app/events deleted'])
  assert.equal(lines(await log(c, 'delete', 'app/events')), ['log app/events deleted'])
  typedError(await log(c, 'info', 'app/events'), 'NO_SUCH_LOG')
})

test.run()
