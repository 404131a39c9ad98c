// Power cuts on real processes (issue 12): a writer process killed with -9 while appending, one
// bookie of the last write set losing power (kill -9, its unsynced RocksDB WAL lost, its last
// journal group torn or rotted: test/support/powerCut.ts), restarted, then recovery from another
// client (test/powercut/scenario.ts does one run). At 3/2/2 and 3/3/2: every acknowledged entry
// reads back, recovery never closes below one, the bookie that lost power never answers
// NO_SUCH_ENTRY for an entry it acknowledged (IN_LIMBO instead, while the ledger is open, even
// after an integrity check), and once recovery has closed the ledger its integrity check leaves
// nothing in limbo and every entry placed on it is back or its ledger is marked for a re-copy.
// Rot in a record before the last group is no torn write: that bookie refuses to start.
// A few runs here; `npm run test:powercut -- --runs N` for long ones. The seed of each run is
// printed with a failure (the kill timing is the machine's, so a seed replays the choices only).

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { RC, rcName } from '../../transport/wire.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'
import { quire, show } from '../support/nodes.ts'
import { describeRun, parseQuorums, powerCutRun, type PowerCutRun } from '../powercut/scenario.ts'
import type { JournalDamage } from '../support/powerCut.ts'

const t = suite<{ c: TestCluster }>('power cut')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

const seed0 = Date.now() % 1_000_000_000
let runs = 0

function check(r: PowerCutRun): void {
  const at = describeRun(r)
  assert.equal(r.lost, [], `acknowledged entries lost: ${at}`)
  assert.ok(r.lastEntryId >= r.maxAcked, `recovery closed below an acknowledged entry: ${at}`)
  assert.equal(r.victimDenied, [], `the bookie that lost power denied acknowledged entries: ${at}`)
  const others = Object.keys(r.victimAnswers).filter((k) => k !== rcName(RC.OK) && k !== rcName(RC.IN_LIMBO))
  assert.equal(others, [], `answers other than OK and IN_LIMBO for acknowledged entries: ${at}`)
  assert.ok(r.checkBefore !== null, `no integrity check answered: ${at}`)
  assert.is(r.checkBefore.result, 'limbo', `the open ledger stays in limbo: ${at}`)
  assert.ok(r.checkBefore.limbo >= 1, at)
  assert.not.ok(r.answersAfterCheck[rcName(RC.NO_SUCH_ENTRY)], `denied after a check while open: ${at}`)
  assert.ok(r.checkAfter !== null, at)
  assert.is(r.checkAfter.result, 'clean', `after recovery nothing stays in limbo: ${at}`)
  assert.not.ok(r.answersAfter[rcName(RC.IN_LIMBO)], `IN_LIMBO once the ledger left limbo: ${at}`)
  assert.ok(r.lackingAfter.length === 0 || r.markedForX, `entries placed on the bookie neither back nor marked for re-copy: ${at}`)
}

async function cutPowerRuns(c: TestCluster, config: string, damages: JournalDamage[]): Promise<void> {
  for (const damage of damages) {
    const r = await powerCutRun(c, { seed: seed0 + runs++, quorums: parseQuorums(config), damage, ackedMin: 30, ackedMax: 150 })
    check(r)
  }
}

t('3/2/2: a power cut with its last journal group rotted, torn or cut at a length field loses nothing', async ({ c }) => {
  await cutPowerRuns(c, '3/2/2', ['rot', 'length', 'torn'])
})

t('3/3/2: the same', async ({ c }) => {
  await cutPowerRuns(c, '3/3/2', ['length', 'rot'])
})

t('quire shell bookieintegritycheck: after the runs (every ledger closed) no bookie has anything in limbo', async ({ c }) => {
  for (const b of c.bookies) {
    const r = await quire(['shell', 'bookieintegritycheck', b.id, '--nats', c.nats.url])
    assert.is(r.code, 0, show(r))
    assert.match(r.stdout, new RegExp(`^bookie ${b.id}: checked, nothing in limbo; `, 'm'), show(r))
  }
})

// Last: the bookie stays down (its journal needs a human); recovery writes back through a fourth.
t('3/2/2: rot in the length field of a record before the last group: the bookie refuses to start (CORRUPT_JOURNAL), nothing is lost', async ({ c }) => {
  await c.startBookie(4)
  const r = await powerCutRun(c, { seed: seed0 + runs++, quorums: parseQuorums('3/2/2'), damage: 'older', ackedMin: 30, ackedMax: 150 })
  const at = describeRun(r)
  assert.ok(r.refused !== null && r.refused.includes('CORRUPT_JOURNAL'), `the bookie started, or failed otherwise: ${at}\n${r.refused ?? ''}`)
  assert.equal(r.lost, [], `acknowledged entries lost: ${at}`)
  assert.ok(r.lastEntryId >= r.maxAcked, `recovery closed below an acknowledged entry: ${at}`)
})

t.run()
