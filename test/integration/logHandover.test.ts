// A log writer in its own process (test/support/logAppender.ts), on a real cluster, replaced by a
// new writer in another process (this one):
// - killed with kill -9 in the middle of a segment (segments roll every 150 records, so it has
//   rolled several times): every record it printed as acknowledged is read back at the same
//   position, in the same order, by two readers, followed by the new writer's records;
// - stopped (SIGSTOP) while a new writer takes the log, then continued (SIGCONT): it gets FENCED
//   and exits, and every ack it printed, before or after the stop, is in the log at its position:
//   none of its records is acknowledged without being there.
// And a subscriber's reader in its own process (test/support/logSubscriber.ts), killed with
// kill -9 while it reads and commits: a new reader process of the same subscriber resumes after
// the last committed position, skipping no record (at least once: what the first read after its
// last commit is read again).

import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'
import type { QuireClient } from '../../client/api.ts'
import { comparePositions, formatPosition, parsePosition } from '../../machines/logPosition.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'
import { waitFor } from '../support/processes.ts'

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

/** A subscriber's reader process: `got <position> <payload>` lines as `<position> <payload>`, `committed` positions. */
function subscriber(url: string, log: string, name: string): Appender & { gots: () => string[]; committed: () => string[] } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/logSubscriber.ts'), url, log, name, '50'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const lines = (prefix: string): string[] => out.split('\n').filter((l, i, a) => l.startsWith(prefix) && i < a.length - 1).map((l) => l.slice(prefix.length))
  return { child, out: () => out, acks: () => [], gots: () => lines('got '), committed: () => lines('committed ') }
}

test('kill -9 of a subscriber\'s reader process: a new one resumes after its last commit, skipping nothing', async ({ c, client }) => {
  const log = await client.logs.createLog('cursor', { ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, segmentRecordsMax: 150 })
  const w = await log.writer()
  const written: string[] = []
  const write = async (n: number): Promise<void> => {
    const ps = Array.from({ length: n }, (_, i) => w.append(`r.${written.length + i}`))
    const base = written.length
    ;(await Promise.all(ps)).forEach((p, i) => { written[base + i] = `${formatPosition(p)} r.${base + i}` })
  }
  await write(1500)
  const first = subscriber(c.nats.url, 'cursor', 'billing')
  await waitFor(() => first.gots().length >= 700, 60_000, () => `the reader printed ${first.gots().length} records:\n${first.out().slice(-2000)}`)
  first.child.kill('SIGKILL')
  await new Promise((r) => first.child.once('exit', r))
  const got1 = first.gots()
  const lastCommitted = first.committed().at(-1)!
  assert.ok(lastCommitted, 'the first reader committed before it was killed')
  assert.equal(got1, written.slice(0, got1.length), 'the first reader read the log in order')

  const second = subscriber(c.nats.url, 'cursor', 'billing')
  await write(300) // while the new reader catches up: it follows the open segment
  await waitFor(() => second.gots().length > 0 && second.gots().at(-1) === written.at(-1), 60_000, () => `the new reader printed ${second.gots().length} records:\n${second.out().slice(-2000)}`)
  await w.markEndOfStream()
  assert.is(await new Promise<number | null>((r) => second.child.once('exit', r)), 0, `the new reader ends with the stream:\n${second.out().slice(-2000)}`)
  const got2 = second.gots()
  const from = written.indexOf(got2[0]!)
  console.log(`  reader killed after ${got1.length} of ${written.length - 300} records (last commit printed ${lastCommitted}); the new one started at record ${from}`)
  assert.ok(from >= 0, 'the new reader starts at a record of the log')
  assert.ok(comparePositions(parsePosition(got2[0]!.split(' ')[0]!), parsePosition(lastCommitted)) > 0, `it starts after the last commit printed (${lastCommitted}), at ${got2[0]}`)
  assert.ok(from <= got1.length, `it skips nothing: it starts at record ${from}, the first reader had read ${got1.length}`)
  assert.equal(got2, written.slice(from), 'then every record, once, in order, to the end')
  assert.ok((await log.listSubscribers()).includes('billing'))
})

test.run()
