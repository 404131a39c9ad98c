// A log writer in its own process (test/support/logAppender.ts), on a real cluster, replaced by a
// new writer in another process (this one):
// - killed with kill -9 in the middle of a segment (segments roll every 150 records, so it has
//   rolled several times): every record it printed as acknowledged is read back at the same
//   position, in the same order, by two readers, followed by the new writer's records;
// - stopped (SIGSTOP) while a new writer takes the log, then continued (SIGCONT): it gets FENCED
//   and exits, and every ack it printed, before or after the stop, is in the log at its position:
//   none of its records is acknowledged without being there.

import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../cli/cluster.ts'
import type { QuireClient } from '../client/api.ts'
import { formatPosition } from '../machines/logPosition.ts'
import { startCluster, type TestCluster } from './support/cluster.ts'
import { waitFor } from './support/processes.ts'

const test = suite<{ c: TestCluster; client: QuireClient }>('log writer hand-over (processes)')
test.before(async (ctx) => {
  ctx.c = await startCluster({ bookies: 3, heartbeatMs: 300 })
  ctx.client = await ctx.c.client()
})
test.after(async (ctx) => { await ctx.c?.stop() })

interface Appender { child: ChildProcess; out: () => string; acks: () => string[] }

function appender(url: string, log: string, tag: string): Appender {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/logAppender.ts'), url, log, tag, '8'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  return {
    child,
    out: () => out,
    // `ack <position> <payload>`, as `<position> <payload>`; a line cut by the kill is dropped.
    acks: () => out.split('\n').filter((l, i, a) => l.startsWith('ack ') && i < a.length - 1).map((l) => l.slice(4)),
  }
}

/** Every record of the sealed log as `<position> <payload>`. */
async function readAll(client: QuireClient, name: string): Promise<string[]> {
  const out: string[] = []
  for await (const r of (await client.logs.openLog(name)).reader().records()) out.push(`${formatPosition(r.position)} ${Buffer.from(r.payload).toString()}`)
  return out
}

test('kill -9 mid-segment: the next writer (another process) takes over; two readers read every acknowledged record at its position, in order', async ({ c, client }) => {
  await client.logs.createLog('killed', { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, segmentRecordsMax: 150 })
  const a = appender(c.nats.url, 'killed', 'a')
  await waitFor(() => a.acks().length >= 700, 60_000, () => `the appender printed ${a.acks().length} acks:\n${a.out().slice(-2000)}`)
  a.child.kill('SIGKILL')
  await new Promise((r) => a.child.once('exit', r))
  const acked = a.acks()
  const log = await client.logs.openLog('killed')
  const w = await log.writer()
  const mine: string[] = []
  for (let i = 0; i < 20; i++) mine.push(`${formatPosition(await w.append(`b.${i}`))} b.${i}`)
  await w.markEndOfStream()
  const [first, second] = await Promise.all([readAll(client, 'killed'), readAll(await c.client(), 'killed')])
  assert.equal(first, second, 'two readers read one sequence')
  const a2 = first.filter((l) => / a\.\d+$/.test(l))
  assert.equal(a2.slice(0, acked.length), acked, 'every acknowledged record of the killed writer, at its position, in order')
  assert.equal(first.slice(a2.length), mine, 'then the new writer\'s, after every record of the old one')
  const segments = (await log.info()).segments
  assert.ok(segments.length >= 5, `${segments.length} segments: the killed writer rolled`)
  assert.is(segments.filter((s) => s.state === 'open').length, 0)
})

test('SIGSTOP, a new writer takes the log, SIGCONT: the old writer gets FENCED; every ack it printed is in the log at its position', async ({ c, client }) => {
  await client.logs.createLog('stopped', { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, segmentRecordsMax: 150 })
  const a = appender(c.nats.url, 'stopped', 'a')
  await waitFor(() => a.acks().length >= 300, 60_000, () => `the appender printed ${a.acks().length} acks:\n${a.out().slice(-2000)}`)
  a.child.kill('SIGSTOP')
  const w = await (await client.logs.openLog('stopped')).writer()
  const mine: string[] = []
  for (let i = 0; i < 20; i++) mine.push(`${formatPosition(await w.append(`b.${i}`))} b.${i}`)
  a.child.kill('SIGCONT')
  const code = await new Promise<number | null>((r) => a.child.once('exit', r))
  assert.is(code, 3, `the old writer exits FENCED:\n${a.out().slice(-2000)}`)
  assert.match(a.out(), /\nfenced\n/)
  await w.markEndOfStream()
  const all = await readAll(client, 'stopped')
  const acked = a.acks()
  assert.equal(all.slice(0, acked.length), acked, 'every record the old writer printed as acknowledged')
  assert.ok(all.slice(acked.length).every((l) => / a\.\d+$/.test(l) || mine.includes(l)))
  assert.equal(all.filter((l) => / b\.\d+$/.test(l)), mine)
})

test.run()
