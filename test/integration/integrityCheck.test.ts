// The integrity check's decisions (machines/integrityCheck.ts, pure), its run over in-memory
// dependencies (actors/integrityCheck.ts), and the pieces of a bookie's start-up it relies on, on
// real files and RocksDB: how journal replay ended (clean, or a damaged tail cut off), and the
// limbo set persisted across a second crash before any check.

import { mkdtemp, open, readFile, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieStorage, CLEAN_STOP_FILE, hasCleanStopMarker, removeCleanStopMarker, type LimboState } from '../../actors/bookieStorage.ts'
import { IntegrityCheck, type IntegrityCheckDeps } from '../../actors/integrityCheck.ts'
import { QuireError } from '../../machines/errors.ts'
import { checkResult, limboVerdict, placedEntryChunks } from '../../machines/integrityCheck.ts'
import { holdsEntry, type LedgerView } from '../../machines/replicator.ts'
import { openJournal, replayJournal, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, type ReplayEnding } from '../../storage/journal.ts'
import type { LedgerMetadata } from '../../storage/metadataStore.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'

const view = (state: LedgerView['state'], segments: Array<[number, string[]]>, lastEntryId = -1): LedgerView => ({
  state, lastEntryId, ensembleSize: segments[0]![1].length, writeQuorum: 2,
  segments: segments.map(([firstEntryId, ensemble]) => ({ firstEntryId, ensemble })),
})

const m = suite('integrity check: decisions')

m('deleted leaves; closed and placed is verified; open or in recovery and placed stays; not placed leaves', () => {
  assert.is(limboVerdict(null, 'b1'), 'leave')
  assert.is(limboVerdict(view('CLOSED', [[0, ['b1', 'b2', 'b3']]], 9), 'b1'), 'verify')
  assert.is(limboVerdict(view('OPEN', [[0, ['b1', 'b2', 'b3']]]), 'b1'), 'keep')
  assert.is(limboVerdict(view('IN_RECOVERY', [[0, ['b1', 'b2', 'b3']]]), 'b1'), 'keep')
  // Placed in an earlier segment only: recovery never asks it, but readers of that segment may,
  // and a ledger that is not closed may still be recovered: it stays.
  assert.is(limboVerdict(view('OPEN', [[0, ['b1', 'b2', 'b3']], [5, ['b4', 'b2', 'b3']]]), 'b1'), 'keep')
  assert.is(limboVerdict(view('OPEN', [[0, ['b4', 'b2', 'b3']]]), 'b1'), 'leave')
  assert.is(limboVerdict(view('CLOSED', [[0, ['b4', 'b2', 'b3']]], 9), 'b1'), 'leave')
})

m('placedEntryChunks: exactly the entries the segments place on the bookie, ascending, in bounded chunks', () => {
  const md = view('CLOSED', [[0, ['b1', 'b2', 'b3']], [10, ['b4', 'b2', 'b1']], [20, ['b4', 'b5', 'b6']]], 2600)
  for (const chunk of [1, 7, 1000]) {
    const got: number[] = []
    for (const ids of placedEntryChunks(md, 'b1', chunk)) {
      assert.ok(ids.length <= chunk)
      got.push(...ids)
    }
    // Brute force: which segment holds each entry, and whether b1's position there holds it.
    const want: number[] = []
    for (let id = 0; id <= 2600; id++) {
      const i = id < 10 ? 0 : id < 20 ? 1 : 2
      const pos = md.segments[i]!.ensemble.indexOf('b1')
      if (pos >= 0 && holdsEntry(id, pos, 3, 2)) want.push(id)
    }
    assert.equal(got, want)
  }
  assert.equal([...placedEntryChunks(view('OPEN', [[0, ['b1', 'b2', 'b3']]]), 'b1', 10)], [], 'an open last segment has no end')
})

m('checkResult: clean only when nothing is left in limbo and the bookie is checked', () => {
  assert.is(checkResult({ limbo: [], unchecked: false }), 'clean')
  assert.is(checkResult({ limbo: [3], unchecked: false }), 'limbo')
  assert.is(checkResult({ limbo: [], unchecked: true }), 'limbo')
})
m.run()

// --- the check over in-memory dependencies --------------------------------------------------

const md = (ledgerId: number, state: LedgerMetadata['state'], ensemble: string[], lastEntryId = -1): LedgerMetadata => ({
  ledgerId, state, lastEntryId, length: 0, ensembleSize: ensemble.length, writeQuorum: 2, ackQuorum: 2, digestType: 'crc32c',
  segments: [{ firstEntryId: 0, ensemble }], customMetadata: {}, createdAt: 0, passwordCheck: '',
} as unknown as LedgerMetadata)

function fakeDeps(limbo: LimboState, ledgers: Map<number, LedgerMetadata | 'unreadable'>, held: (l: number, e: number) => boolean) {
  const marked: number[] = []
  let state = limbo
  const deps: IntegrityCheckDeps = {
    bookieId: 'b1',
    limbo: () => state,
    setLimbo: async (s) => { state = s },
    holdsIntact: async (l, ids) => ids.map((e) => held(l, e)),
    listLedgers: async function* () { yield* [...ledgers.keys()] },
    readLedger: async (id) => {
      const got = ledgers.get(id)
      if (got === undefined) throw new QuireError('NO_SUCH_LEDGER', `no ledger ${id}`)
      if (got === 'unreadable') throw new QuireError('TIMEOUT', 'metadata did not answer')
      return got
    },
    markLacking: async (id) => { marked.push(id) },
    log: () => {},
  }
  return { deps, marked, state: () => state }
}

const c = suite('integrity check: a run')

c('unchecked: open ledgers placed here go into limbo (lost whole or not), closed ones leave, lacking ones are marked, deleted ones leave', async () => {
  const ledgers = new Map<number, LedgerMetadata | 'unreadable'>([
    [1, md(1, 'OPEN', ['b1', 'b2', 'b3'])],
    [2, md(2, 'CLOSED', ['b1', 'b2', 'b3'], 9)],
    [3, md(3, 'CLOSED', ['b1', 'b2', 'b3'], 9)],
    [4, md(4, 'OPEN', ['b2', 'b3', 'b4'])],
    [5, md(5, 'IN_RECOVERY', ['b3', 'b1', 'b2'])],
    [6, 'unreadable'],
  ])
  // Held here: ledger 2 wholly; ledger 3 lacks entry 0. Ledger 7 is local only (deleted from the metadata).
  const f = fakeDeps({ unchecked: true, ledgers: [1, 2, 3, 7] }, ledgers, (l, e) => l === 2 || (l === 3 && e !== 0))
  const r = await new IntegrityCheck(f.deps, 60_000).run('test')
  assert.equal(f.state(), { unchecked: false, ledgers: [1, 5, 6] })
  assert.equal(f.marked, [3])
  assert.is(r.result, 'limbo')
  assert.is(r.released, 3) // 2, 3, 7
  assert.is(r.marked, 1)
  assert.is(r.unreadable, 1)
  assert.ok(r.lackingEntries > 0)
})

c('once the open ledgers are closed, the next run leaves nothing in limbo', async () => {
  const ledgers = new Map<number, LedgerMetadata | 'unreadable'>([[1, md(1, 'OPEN', ['b1', 'b2', 'b3'])]])
  const f = fakeDeps({ unchecked: false, ledgers: [1] }, ledgers, () => true)
  const check = new IntegrityCheck(f.deps, 60_000)
  assert.is((await check.run('first')).result, 'limbo')
  ledgers.set(1, md(1, 'CLOSED', ['b1', 'b2', 'b3'], 20))
  const r = await check.run('second')
  assert.is(r.result, 'clean')
  assert.equal(f.state(), { unchecked: false, ledgers: [] })
  assert.is(check.last, r)
})

c('a failed listing leaves the bookie unchecked and its limbo as it was', async () => {
  const f = fakeDeps({ unchecked: true, ledgers: [4] }, new Map(), () => true)
  f.deps.listLedgers = async function* () { throw new QuireError('TIMEOUT', 'metadata did not answer') }
  const r = await new IntegrityCheck(f.deps, 60_000).run('test')
  assert.is(r.result, 'failed')
  assert.equal(f.state(), { unchecked: true, ledgers: [4] })
})
c.run()

// --- start-up pieces on real files and RocksDB ----------------------------------------------

const key = masterKeyOf('pw')
const entry = (l: number, e: number): Buffer => encodeEntry('crc32c', key, l, e, e - 1, 0, Buffer.from(`L${l}E${e}`))

/** Stop as a kill -9 would: no checkpoint, no close of the journal, no clean-stop marker. */
async function crash(s: BookieStorage): Promise<void> {
  await s.store.close()
  await (s as unknown as { journal: { fh: { close(): Promise<void> } } }).journal.fh.close()
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-limbo-'))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const s = suite('integrity check: start-up state')

s('replay says how it ended: clean at the zero-filled end; damaged when the last record is rotted', async () => {
  await withDir(async (dir) => {
    const j = await openJournal(dir)
    const records = Array.from({ length: 5 }, (_, i) => Buffer.from(`record ${i}`))
    let lastEnd = 0
    for (const r of records) lastEnd = (await j.append(r)).offset
    await j.close()
    const ending: ReplayEnding = { damaged: null }
    let n = 0
    for await (const _ of replayJournal(dir, null, ending)) n++
    assert.is(n, 5)
    assert.is(ending.damaged, null)
    // Rot one byte of the last record's payload. Its start: its position (the offset just past
    // it) less its length; groups are padded to a block boundary, so not the previous record's end.
    const file = path.join(dir, (await readdir(dir)).filter((f) => f.endsWith('.log')).sort().at(-1)!)
    const buf = await readFile(file)
    const last = lastEnd - RECORD_HEADER_BYTES - records.at(-1)!.length
    assert.ok(last > SEGMENT_HEADER_BYTES)
    assert.is(buf.readUInt32BE(last), records.at(-1)!.length, 'the last record\'s header is where its position says')
    assert.ok(buf.subarray(last + RECORD_HEADER_BYTES, lastEnd).equals(records.at(-1)!))
    const fh = await open(file, 'r+')
    await fh.write(Buffer.from([buf[last + RECORD_HEADER_BYTES]! ^ 0xff]), 0, 1, last + RECORD_HEADER_BYTES)
    await fh.close()
    const damaged: ReplayEnding = { damaged: null }
    n = 0
    for await (const _ of replayJournal(dir, null, damaged)) n++
    assert.is(n, 4)
    assert.ok(damaged.damaged !== null, 'a cut-off record is reported')
    assert.is(damaged.damaged.offset, last)
    assert.match(damaged.damaged.reason, /crc32c/)
  })
})

s('an unclean start puts every local ledger in limbo, persisted: a second crash before the check keeps it; a clean stop leaves the marker', async () => {
  await withDir(async (dir) => {
    let st = await BookieStorage.open(dir)
    await st.replayAndOpen()
    await st.startLimbo(true)
    assert.equal(st.limbo, { unchecked: false, ledgers: [] })
    await st.append({ t: 'key', l: 7, k: key, d: 'crc32c' })
    await st.append({ t: 'add', l: 7, e: [entry(7, 0)] })
    await st.append({ t: 'add', l: 8, e: [entry(8, 0)] })
    await crash(st)
    assert.not.ok(await hasCleanStopMarker(dir))
    st = await BookieStorage.open(dir)
    await st.replayAndOpen()
    await st.startLimbo(false)
    assert.equal(st.limbo, { unchecked: true, ledgers: [7, 8] })
    assert.ok(st.inLimbo(7) && st.inLimbo(12345), 'unchecked: an unknown ledger is in limbo too')
    await crash(st)
    // The second start finds a clean-stop marker (as if), but the persisted set still holds.
    st = await BookieStorage.open(dir)
    await st.replayAndOpen()
    await st.startLimbo(true)
    assert.equal(st.limbo, { unchecked: true, ledgers: [7, 8] })
    await st.setLimbo({ unchecked: false, ledgers: [8] })
    assert.ok(!st.inLimbo(7) && st.inLimbo(8) && !st.inLimbo(12345))
    await st.close()
    assert.ok(await hasCleanStopMarker(dir), 'close writes the clean-stop marker')
    await removeCleanStopMarker(dir)
    assert.not.ok(await hasCleanStopMarker(dir))
    st = await BookieStorage.open(dir)
    await st.replayAndOpen()
    await st.startLimbo(true)
    assert.equal(st.limbo, { unchecked: false, ledgers: [8] })
    await st.deleteLedgers([8])
    assert.equal(st.limbo, { unchecked: false, ledgers: [] }, 'a ledger deleted (GC) leaves limbo')
    await st.close()
    assert.is(CLEAN_STOP_FILE, 'clean-stop')
  })
})
s.run()
