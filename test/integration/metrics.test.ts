// Metrics (actors/metrics.ts): the registry's output parsed by a strict Prometheus text-format
// parser; the journal and long-poll hooks in-process; then a real cluster whose bookie processes
// serve HTTP (`quire bookie --http-port N`): scrape, append N entries, scrape again, and the add
// counter, the journal's sync histogram and its bytes written have moved; the admin API answers
// from a live node; a tail's parked long polls show in the gauge; a NATS restart is counted.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { enableDefaultMetrics, journalMetrics, registry } from '../../actors/metrics.ts'
import { LongPolls } from '../../actors/longPolls.ts'
import { metricsText } from '../../cli/adminApi.ts'
import { freePort } from '../../cli/cluster.ts'
import { RECORD_HEADER_BYTES, openJournal } from '../../storage/journal.ts'
import { payloadFor, sleep, startCluster, type TestCluster } from '../support/cluster.ts'

// --- a strict parser of the Prometheus text format (0.0.4) ------------------------------------

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Family { name: string; type: string; help: string; samples: Sample[] }
type Exposition = Map<string, Family>

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

function parseValue(s: string, where: string): number {
  if (s === '+Inf') return Infinity
  if (s === '-Inf') return -Infinity
  if (s === 'NaN') return NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${where}: bad value ${JSON.stringify(s)}`)
  return Number(s)
}

/** `{a="x",b="y"}` from position `i` (at the `{`); returns the labels and the position after `}`. */
function parseLabels(line: string, i: number, where: string): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {}
  i++
  while (line[i] !== '}') {
    const eq = line.indexOf('=', i)
    if (eq < 0) throw new Error(`${where}: label without =`)
    const name = line.slice(i, eq)
    if (!LABEL_NAME.test(name)) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`)
    if (name in labels) throw new Error(`${where}: label ${name} twice`)
    if (line[eq + 1] !== '"') throw new Error(`${where}: label value not quoted`)
    let v = ''
    let j = eq + 2
    for (;; j++) {
      const c = line[j]
      if (c === undefined) throw new Error(`${where}: unterminated label value`)
      if (c === '"') break
      if (c === '\\') {
        const n = line[++j]
        if (n === 'n') v += '\n'
        else if (n === '\\' || n === '"') v += n
        else throw new Error(`${where}: bad escape \\${n ?? ''}`)
      } else v += c
    }
    labels[name] = v
    i = j + 1
    if (line[i] === ',') i++
    else if (line[i] !== '}') throw new Error(`${where}: expected , or } after a label`)
  }
  return { labels, end: i + 1 }
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(name: string, families: Exposition): Family | undefined {
  const direct = families.get(name)
  if (direct) return direct
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const f = families.get(name.slice(0, -suffix.length))
    if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return f
  }
  return undefined
}

export function parsePrometheus(text: string): Exposition {
  const families: Exposition = new Map()
  const seen = new Set<string>()
  const lines = text.split('\n')
  if (lines.at(-1) !== '') throw new Error('the exposition must end with a newline')
  lines.pop()
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`
    if (line === '') return
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (!m) throw new Error(`${where}: a comment that is neither HELP nor TYPE: ${line}`)
      const [, kind, name, rest] = m as unknown as [string, string, string, string]
      if (!NAME.test(name)) throw new Error(`${where}: bad metric name ${name}`)
      let f = families.get(name)
      if (!f) families.set(name, (f = { name, type: '', help: '', samples: [] }))
      if (f.samples.length > 0) throw new Error(`${where}: ${kind} of ${name} after its samples`)
      if (kind === 'TYPE') {
        if (f.type !== '') throw new Error(`${where}: TYPE of ${name} twice`)
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`)
        f.type = rest
      } else f.help = rest
      return
    }
    const nameEnd = line.search(/[{ ]/)
    if (nameEnd <= 0) throw new Error(`${where}: no sample name`)
    const name = line.slice(0, nameEnd)
    if (!NAME.test(name)) throw new Error(`${where}: bad sample name ${name}`)
    let labels: Record<string, string> = {}
    let i = nameEnd
    if (line[i] === '{') ({ labels, end: i } = parseLabels(line, i, where))
    if (line[i] !== ' ') throw new Error(`${where}: no space before the value`)
    const parts = line.slice(i + 1).split(' ')
    if (parts.length < 1 || parts.length > 2) throw new Error(`${where}: expected value [timestamp]`)
    const value = parseValue(parts[0]!, where)
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1]!)) throw new Error(`${where}: bad timestamp`)
    const f = familyOf(name, families)
    if (!f || f.type === '') throw new Error(`${where}: sample ${name} without a TYPE before it`)
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    if (seen.has(key)) throw new Error(`${where}: sample ${key} twice`)
    seen.add(key)
    f.samples.push({ name, labels, value })
  })
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f)
  return families
}

/** Buckets ascending in `le`, cumulative, ending at +Inf equal to _count, per label set. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>()
  for (const s of f.samples) {
    const { le, ...rest } = s.labels
    const key = JSON.stringify(Object.entries(rest).sort())
    let g = groups.get(key)
    if (!g) groups.set(key, (g = { buckets: [] }))
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`)
      g.buckets.push([parseValue(le, f.name), s.value])
    } else if (s.name === `${f.name}_count`) g.count = s.value
    else if (s.name === `${f.name}_sum`) g.sum = s.value
    else throw new Error(`${f.name}: unexpected sample ${s.name}`)
  }
  for (const [key, g] of groups) {
    if (g.count === undefined || g.sum === undefined) throw new Error(`${f.name}${key}: no _count or _sum`)
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i]![0] > g.buckets[i - 1]![0])) throw new Error(`${f.name}${key}: le not ascending`)
      if (g.buckets[i]![1] < g.buckets[i - 1]![1]) throw new Error(`${f.name}${key}: buckets not cumulative`)
    }
    const last = g.buckets.at(-1)
    if (!last || last[0] !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`)
    if (last[1] !== g.count) throw new Error(`${f.name}${key}: +Inf bucket ${last[1]} != _count ${g.count}`)
  }
}

/** The value of one sample; undefined when absent. */
function value(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of e.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue
      const keys = Object.keys(labels)
      if (keys.every((k) => s.labels[k] === labels[k]) && Object.keys(s.labels).length === keys.length) return s.value
    }
  }
  return undefined
}

const num = (e: Exposition, name: string, labels: Record<string, string> = {}): number => {
  const v = value(e, name, labels)
  assert.ok(v !== undefined, `${name}${JSON.stringify(labels)} is exposed`)
  return v!
}

// --- unit ---------------------------------------------------------------------------------

test('the parser is strict: it rejects malformed expositions', () => {
  const ok = '# HELP a_total things\n# TYPE a_total counter\na_total{x="1\\"2"} 3\n'
  assert.is(num(parsePrometheus(ok), 'a_total', { x: '1"2' }), 3)
  for (const bad of [
    'a_total 1\n', // no TYPE
    '# TYPE a counter\na 1', // no final newline
    '# TYPE a counter\na{x=1} 1\n', // unquoted label
    '# TYPE a counter\na one\n', // bad value
    '# TYPE a counter\na 1\na 2\n', // duplicate sample
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', // +Inf != count
    '# a stray comment\n',
  ]) {
    let threw = false
    try {
      parsePrometheus(bad)
    } catch {
      threw = true
    }
    assert.ok(threw, `rejects ${JSON.stringify(bad)}`)
  }
})

test('the registry, default process metrics included, parses strictly and names every Quire metric', async () => {
  enableDefaultMetrics()
  const e = parsePrometheus(await metricsText(registry))
  for (const [name, type] of [
    ['quire_bookie_add_entries_total', 'counter'], ['quire_bookie_add_request_duration_seconds', 'histogram'],
    ['quire_bookie_read_requests_total', 'counter'], ['quire_bookie_read_request_duration_seconds', 'histogram'],
    ['quire_bookie_long_polls_parked', 'gauge'], ['quire_bookie_readonly', 'gauge'], ['quire_bookie_disk_usage_ratio', 'gauge'],
    ['quire_bookie_damaged_entries', 'gauge'], ['quire_bookie_store_repairs_total', 'counter'],
    ['quire_journal_sync_duration_seconds', 'histogram'], ['quire_journal_group_records', 'histogram'],
    ['quire_journal_group_bytes', 'histogram'], ['quire_journal_written_bytes_total', 'counter'],
    ['quire_autorecovery_under_replicated_ledgers', 'gauge'], ['quire_replication_ledgers_total', 'counter'],
    ['quire_replication_entries_total', 'counter'], ['quire_replication_recoveries_total', 'counter'],
    ['quire_replication_failures_total', 'counter'], ['quire_nats_reconnects_total', 'counter'],
    ['quire_client_add_duration_seconds', 'histogram'], ['quire_client_tail_entries_total', 'counter'],
    ['quire_client_bookie_timeouts_total', 'counter'], ['quire_client_speculative_reads_total', 'counter'],
    ['quire_client_waits_on_timeout_total', 'counter'],
    ['process_cpu_user_seconds_total', 'counter'], ['nodejs_eventloop_lag_seconds', 'gauge'],
  ] as const) {
    const f = e.get(name)
    assert.ok(f, `${name} is exposed`)
    assert.is(f!.type, type, name)
    assert.ok(f!.help.length > 0, `${name} has a HELP text`)
  }
  // No bookie in this process: its state gauges have no sample rather than a made-up 0.
  assert.is(e.get('quire_bookie_readonly')!.samples.length, 0)
  assert.is(e.get('quire_bookie_disk_usage_ratio')!.samples.length, 0)
  assert.is(e.get('quire_bookie_damaged_entries')!.samples.length, 0)
})

test('a real journal counts each group commit: sync histogram, records, bytes', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-metrics-'))
  try {
    const before = parsePrometheus(await metricsText(registry))
    const journal = await openJournal(dir, { groupWaitMs: 0, metrics: journalMetrics })
    // Two groups: 10 records appended in one turn, then 1 more after the first group synced.
    await Promise.all(Array.from({ length: 10 }, (_, i) => journal.append(payloadFor(i, 100))))
    await journal.append(payloadFor(10, 300))
    await journal.close()
    const after = parsePrometheus(await metricsText(registry))
    const delta = (name: string): number => num(after, name) - num(before, name)
    const framed = 10 * (RECORD_HEADER_BYTES + 100) + (RECORD_HEADER_BYTES + 300)
    assert.is(delta('quire_journal_written_bytes_total'), framed)
    assert.is(delta('quire_journal_group_bytes_sum'), framed)
    assert.is(delta('quire_journal_group_records_sum'), 11)
    assert.is(delta('quire_journal_group_records_count'), delta('quire_journal_sync_duration_seconds_count'))
    assert.ok(delta('quire_journal_sync_duration_seconds_count') >= 2, 'at least two groups')
    assert.ok(delta('quire_journal_sync_duration_seconds_sum') > 0, 'syncs take time')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the parked long polls gauge follows park, wake, cancel and timeout', async () => {
  const gauge = async (): Promise<number> => num(parsePrometheus(await metricsText(registry)), 'quire_bookie_long_polls_parked')
  const base = await gauge()
  const answered: number[] = []
  const polls = new LongPolls((_l, p) => { answered.push(p.reqId) })
  const current = () => ({ lac: 0, lastEntryId: 0 })
  polls.park(1, { replyTo: 'a', reqId: 1, withEntry: false }, 0, 60_000, current)
  polls.park(1, { replyTo: 'a', reqId: 2, withEntry: false }, 5, 60_000, current)
  polls.park(2, { replyTo: 'a', reqId: 3, withEntry: false }, 0, 10, current)
  assert.is(await gauge(), base + 3)
  polls.wake(1, 1, 1) // answers reqId 1 only (reqId 2 waits past LAC 5)
  assert.is(await gauge(), base + 2)
  assert.ok(polls.cancel('a', 2))
  assert.is(await gauge(), base + 1)
  const deadline = Date.now() + 20_000
  while (polls.size > 0 && Date.now() < deadline) await sleep(10)
  assert.is(await gauge(), base)
  assert.equal(answered, [1, 3])
})

// --- integration: bookie processes serving HTTP -------------------------------------------

async function scrape(url: string): Promise<Exposition> {
  const r = await fetch(`${url}/metrics`)
  assert.is(r.status, 200)
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parsePrometheus(await r.text())
}

async function json(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url)
  return { status: r.status, body: (await r.json()) as Record<string, unknown> }
}

/** Poll `fn` until it returns true or 25 s pass. */
async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 25_000
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

test('bookie processes serve /metrics and the admin API; counters move with the load', async () => {
  let c: TestCluster | null = null
  let tail: AsyncIterableIterator<unknown> | null = null
  try {
    // Heartbeats at the default 1 s: a KV key listing (listBookies) ends only when no update
    // arrives during it, and much faster heartbeats can keep one going for minutes.
    c = await startCluster({ bookies: 0 })
    const urls: string[] = []
    for (let i = 1; i <= 3; i++) {
      const port = await freePort()
      await c.startBookie(i, ['--http-port', String(port)])
      urls.push(`http://127.0.0.1:${port}`)
    }
    const [b1] = urls as [string]
    const hb = await fetch(`${b1}/heartbeat`)
    assert.is(hb.status, 200)
    assert.is(await hb.text(), 'OK')

    const client = await c.client()
    const writer = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
    const before = await scrape(b1)
    const N = 200
    await Promise.all(Array.from({ length: N }, (_, i) => writer.append(payloadFor(i, 100))))
    const after = await scrape(b1)
    const delta = (name: string, labels: Record<string, string> = {}): number => num(after, name, labels) - num(before, name, labels)
    // Qw = Qa = 3: every entry was acknowledged by bookie-1 before its append resolved.
    assert.ok(delta('quire_bookie_add_entries_total', { result: 'ok' }) >= N, `add counter moved by >= ${N}`)
    assert.ok(delta('quire_bookie_add_request_duration_seconds_count') >= 1, 'add latency observed')
    assert.ok(delta('quire_journal_sync_duration_seconds_count') >= 1, 'fsync histogram count moved')
    assert.ok(delta('quire_journal_written_bytes_total') >= N * 100, 'bytes written moved by at least the payloads')
    assert.is(num(after, 'quire_journal_group_bytes_sum'), num(after, 'quire_journal_written_bytes_total'))
    assert.is(num(after, 'quire_bookie_readonly', { bookie: 'bookie-1' }), 0)
    const usage = num(after, 'quire_bookie_disk_usage_ratio', { bookie: 'bookie-1' })
    assert.ok(usage > 0 && usage <= 1, `disk usage ${usage}`)
    assert.ok(num(after, 'process_resident_memory_bytes') > 0)

    // The admin API of a live node.
    const state = await json(`${b1}/api/v1/bookie/state`)
    assert.is(state.status, 200)
    assert.is(state.body['bookieId'], 'bookie-1')
    assert.is(state.body['state'], 'writable')
    assert.is(state.body['writable'], true)
    const md = await json(`${b1}/api/v1/ledger/metadata?ledger_id=${writer.ledgerId}`)
    assert.is(md.status, 200)
    assert.is(md.body['state'], 'OPEN')
    assert.equal((md.body['segments'] as Array<{ ensemble: string[] }>)[0]!.ensemble.slice().sort(), ['bookie-1', 'bookie-2', 'bookie-3'])
    assert.is(md.body['passwordCheck'], undefined)
    const missing = await json(`${b1}/api/v1/ledger/metadata?ledger_id=${writer.ledgerId + 999_999}`)
    assert.is(missing.status, 404)
    assert.is(missing.body['code'], 'NO_SUCH_LEDGER')
    const list = await json(`${b1}/api/v1/bookie/list_bookies?type=rw`)
    const bookies = list.body['bookies'] as Array<{ bookieId: string; alive: boolean }>
    assert.equal(bookies.map((b) => [b.bookieId, b.alive]), [['bookie-1', true], ['bookie-2', true], ['bookie-3', true]])
    const ids = await json(`${b1}/api/v1/ledger/list`)
    assert.ok((ids.body['ledgers'] as number[]).includes(writer.ledgerId))
    assert.equal(await json(`${b1}/api/v1/autorecovery/list_under_replicated_ledger`), { status: 200, body: { ledgers: [] } })

    // Reads, and a caught-up tail whose long polls park on the bookies.
    const sum = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
      (await Promise.all(urls.map(scrape))).reduce((s, e) => s + (value(e, name, labels) ?? 0), 0)
    const readsBefore = await sum('quire_bookie_read_requests_total', { result: 'ok' })
    const reader = await client.openLedger(writer.ledgerId)
    // The last entries' LAC reaches the bookies with the idle writer's explicit LAC (100 ms).
    const lacDeadline = Date.now() + 10_000
    while ((await reader.readLac()) < N - 1 && Date.now() < lacDeadline) await new Promise((r) => setTimeout(r, 50))
    const lac = reader.lastAddConfirmed
    assert.is(lac, N - 1, `LAC ${lac}`)
    assert.is((await reader.read(0, lac)).length, lac + 1)
    assert.ok((await sum('quire_bookie_read_requests_total', { result: 'ok' })) > readsBefore, 'read requests counted')
    const entries = reader.entries({ from: N, pollMs: 20_000 })
    tail = entries
    const next = entries.next()
    await until('parked long polls', async () => (await sum('quire_bookie_long_polls_parked')) >= 1)
    await writer.append('one more')
    assert.is((await next).value?.payload.toString(), 'one more')
    await entries.return?.()
    await until('long polls unparked', async () => (await sum('quire_bookie_long_polls_parked')) === 0)

    // A NATS restart: every bookie's connections reconnect, and say so.
    const reconnectsBefore = num(await scrape(b1), 'quire_nats_reconnects_total')
    await c.restartNats(300)
    await until('a counted reconnect', async () => num(await scrape(b1), 'quire_nats_reconnects_total') > reconnectsBefore)
    await writer.close().catch(() => {})
  } finally {
    await tail?.return?.()
    await c?.stop()
  }
})

test.run()
