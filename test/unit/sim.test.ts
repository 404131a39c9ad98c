// The deterministic simulator (sim/) in CI: a fixed batch of seeds holds every checker with the
// protocol as written; a seed replays exactly; each known-broken rule (sim/variants.ts: the public
// TLA+ model's two recovery defects, bookies without limbo after a power cut, a bookie that
// acknowledges before its journal sync, an ensemble change that does not re-send) is caught within
// a bounded number of seeds, which the same seeds pass with the rule in place; named logs get the
// same (a fixed batch of log runs clean, one replayed exactly, a new writer that does not fence
// caught); autorecovery too (a fixed batch of lost and wiped bookies clean, and three broken
// autorecovery rules caught); and the storage doubles lose what a power cut loses.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encodeRecord } from '../../actors/journalRecords.ts'
import { MemoryEntryStore } from '../../storage/memoryEntryStore.ts'
import { MemoryJournal } from '../../storage/memoryJournal.ts'
import { runSeeds } from '../../sim/run.ts'
import type { VariantName } from '../../sim/variants.ts'
import { simulate } from '../../sim/simulate.ts'
import { simulateLog } from '../../sim/simulateLogs.ts'

test('300 mixed seeds and 200 race seeds: no violation', async () => {
  const mixed = await runSeeds({ from: 1, count: 300, mode: 'mixed', quiet: true })
  assert.equal(mixed.failed, [], `failing seeds: ${mixed.failed.join(', ')} (replay: npm run sim -- --seed S)`)
  const race = await runSeeds({ from: 1, count: 200, mode: 'race', quiet: true })
  assert.equal(race.failed, [], `failing seeds: ${race.failed.join(', ')} (replay: npm run sim -- --seed S --mode race)`)
})

test('a seed replays exactly', async () => {
  for (const seed of [7, 149]) {
    const a = await simulate({ seed, mode: 'race' })
    const b = await simulate({ seed, mode: 'race' })
    assert.is(a.summary, b.summary)
    assert.is(a.events, b.events)
    assert.equal(a.violations, b.violations)
  }
})

/** The variant fails some seed within `count` (the first is enough), and that seed passes without it. */
async function caught(variant: VariantName, mode: 'race' | 'mixed', count: number, why: string, scenario: 'ledgers' | 'logs' | 'autorecovery' = 'ledgers'): Promise<void> {
  const where = { logs: scenario === 'logs', autorecovery: scenario === 'autorecovery' }
  const broken = await runSeeds({ from: 1, count, mode, variant, quiet: true, firstFailure: true, ...where })
  assert.ok(broken.failed.length > 0, why)
  const fixed = await runSeeds({ from: broken.failed[0]!, count: 1, mode, quiet: true, ...where })
  assert.equal(fixed.failed, [], `seed ${broken.failed[0]} passes with the rule in place`)
}

test('defect 1 (fencing by LAC reads alone) is found within 300 race seeds', () =>
  caught('lac-fence-only', 'race', 300, 'recovery reads that do not fence must lose an acknowledged entry somewhere'))

test('defect 2 (recovery starting below the last segment) is found within 300 mixed seeds', () =>
  caught('start-below-segment', 'mixed', 300, 'starting below the last segment must close a ledger too early somewhere'))

test('bookies without limbo (no such entry after a power cut that tore an acked record) are caught within 150 mixed seeds', () =>
  caught('no-limbo', 'mixed', 150, 'a bookie denying an entry it acked must let recovery close below it somewhere'))

test('a bookie that acknowledges before its journal sync (the product\'s bookie, handed a journal that resolves at once) is caught within 400 mixed seeds', () =>
  caught('ack-before-sync', 'mixed', 400, 'a crash taking an acknowledged copy must leave an entry short of its ack quorum somewhere'))

test('an ensemble change that does not re-send the entries in flight to the replacement is caught within 50 mixed seeds', () =>
  caught('no-resend', 'mixed', 50, 'entries waiting on the replacement must stay unsettled somewhere'))

test('named logs: 300 seeds with hand-overs racing rolls, crashed writers, a bookie stopped, crashed or cut from power, and truncation: no violation; a seed replays exactly', async () => {
  const logs = await runSeeds({ from: 1, count: 300, quiet: true, logs: true })
  assert.equal(logs.failed, [], `failing seeds: ${logs.failed.join(', ')} (replay: npm run sim -- --logs --seed S)`)
  const a = await simulateLog({ seed: 11 })
  const b = await simulateLog({ seed: 11 })
  assert.equal([a.summary, a.events, a.violations], [b.summary, b.events, b.violations])
})

test('autorecovery: 100 seeds of a bookie lost for good or wiped, with the product\'s auditors, workers and bookies: no violation', async () => {
  const r = await runSeeds({ from: 1, count: 100, quiet: true, autorecovery: true })
  assert.equal(r.failed, [], `failing seeds: ${r.failed.join(', ')} (replay: npm run sim -- --autorecovery --seed S)`)
})

test('autorecovery seed 7986 (1% loss, the only surviving replica\'s read answer or a copied entry\'s ack lost): the copy asks again and re-sends within its step, and the ledger is replicated within the bound', async () => {
  const r = await runSeeds({ from: 7986, count: 1, quiet: true, autorecovery: true })
  assert.equal(r.failed, [], 'replay: npm run sim -- --autorecovery --seed 7986')
})

test('an auditor that marks before the lost-bookie delay is caught within 20 autorecovery seeds', () =>
  caught('audit-no-delay', 'mixed', 20, 'marks must come before the delay somewhere', 'autorecovery'))

test('a worker that clears a mark before its copy is acknowledged is caught within 200 autorecovery seeds', () =>
  caught('copy-unacked', 'mixed', 200, 'a mark cleared before the copy is durable on the replacement must be seen somewhere', 'autorecovery'))

test('a worker that picks a replacement already in the segment is caught within 20 autorecovery seeds', () =>
  caught('replace-in-ensemble', 'mixed', 20, 'the lost bookie must stay named somewhere', 'autorecovery'))

test('a new log writer that does not fence what it takes over is caught within 50 log seeds', () =>
  caught('log-no-fence', 'mixed', 50, 'an unfenced old writer must get records acknowledged that are never read somewhere', 'logs'))

test('power cut in the storage doubles: the store keeps only what was flushed, the journal only what was synced, a torn tail ends replay', async () => {
  const store = new MemoryEntryStore()
  const entry = (entryId: number) => ({ ledgerId: 1, entryId, data: Buffer.from(`e${entryId}`) })
  await store.putEntries([entry(0)])
  await store.putMeta('checkpoint', Buffer.from('a'))
  await store.flush()
  await store.putEntries([entry(1)])
  await store.putMeta('checkpoint', Buffer.from('b'))
  store.powerCut()
  assert.equal((await store.getEntries([{ ledgerId: 1, entryId: 0 }, { ledgerId: 1, entryId: 1 }])).map((b) => b?.toString() ?? null), ['e0', null])
  assert.is(await store.lastEntryId(1), 0)
  assert.is((await store.getMeta('checkpoint'))?.toString(), 'a')

  const journal = new MemoryJournal({ autoSync: false })
  const first = journal.append(encodeRecord({ t: 'fence', l: 1 }))
  const second = journal.append(encodeRecord({ t: 'fence', l: 2 }))
  journal.sync()
  await Promise.all([first, second])
  const unsynced = journal.append(encodeRecord({ t: 'fence', l: 3 }))
  journal.crash()
  assert.is(await unsynced.then(() => 'synced', () => 'lost'), 'lost')
  journal.tearTail()
  assert.is(journal.lastRecord, null, 'a torn record is no record')
  const replayed: Buffer[] = []
  for await (const { record } of journal.replay(null)) replayed.push(record)
  assert.equal(replayed, [encodeRecord({ t: 'fence', l: 1 })], 'replay ends before the torn record; the unsynced one never was')
})

test.run()
