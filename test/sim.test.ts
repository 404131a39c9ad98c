// The deterministic simulator (sim/) in CI: a fixed batch of seeds holds every checker with the
// protocol as written; a seed replays exactly; and each known-broken recovery rule (sim/variants.ts,
// the public TLA+ model's two defects) is caught within a bounded number of seeds, which the same
// seeds pass with the rule in place.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { runSeeds } from '../sim/run.ts'
import { simulate } from '../sim/simulate.ts'

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

test('defect 1 (fencing by LAC reads alone) is found within 300 race seeds', async () => {
  const broken = await runSeeds({ from: 1, count: 300, mode: 'race', variant: 'lac-fence-only', quiet: true })
  assert.ok(broken.failed.length > 0, 'recovery reads that do not fence must lose an acknowledged entry somewhere')
  const fixed = await runSeeds({ from: broken.failed[0]!, count: 1, mode: 'race', quiet: true })
  assert.equal(fixed.failed, [], 'the same seed passes with recovery reads fencing')
})

test('defect 2 (recovery starting below the last segment) is found within 300 mixed seeds', async () => {
  const broken = await runSeeds({ from: 1, count: 300, mode: 'mixed', variant: 'start-below-segment', quiet: true })
  assert.ok(broken.failed.length > 0, 'starting below the last segment must close a ledger too early somewhere')
  const fixed = await runSeeds({ from: broken.failed[0]!, count: 1, mode: 'mixed', quiet: true })
  assert.equal(fixed.failed, [])
})

test.run()
